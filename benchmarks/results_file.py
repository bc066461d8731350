"""What every benchmark's results JSON carries besides its figures: the command, the date, the CPU
model and flags that matter for speed, torch's version and threads (DEVELOPERS: figures are
compared as ratios within one run, and only with the machine named)."""

from __future__ import annotations

import json
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path


def machine() -> dict:
    import torch

    info = {"cpu": platform.processor() or "unknown", "cpu_flags": [], "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        info["cpu"] = fields.get("Model name", info["cpu"]).strip()
        flags = set(fields.get("Flags", "").split())
        info["cpu_flags"] = sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    except OSError:
        pass
    return info


def write_results(path: str | Path, figures: dict) -> Path:
    """Write {command, date, machine, **figures} to `path` (atomically: a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"command": "python " + shlex.join(sys.argv), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              **machine(), **figures}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)
    return path
