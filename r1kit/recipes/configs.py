"""The demo's settings, read from the one place they are written: configs/demo.yaml (model and sft
sections) and configs/rl_demo.yaml (rl section), the files `r1kit train sft` / `r1kit train rl`
take. `r1kit demo` and `r1kit claims` load them here and change budgets, paths and seed only.

configs/ is found beside the r1kit package, i.e. in the clone the CLI runs from (an editable
install, as `make setup` makes, keeps it there). A wheel does not carry configs/; the recipes then
stop with a ConfigError naming the missing file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from r1kit.config import ConfigError, ModelConfig
from r1kit.train.grpo import RLConfig, load_rl_config
from r1kit.train.sft import SFTConfig, load_run_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DEMO_FILE = CONFIG_DIR / "demo.yaml"  # model + sft
RL_DEMO_FILE = CONFIG_DIR / "rl_demo.yaml"  # rl


def demo_configs(model: dict[str, Any] | None = None, sft: dict[str, Any] | None = None,
                 rl: dict[str, Any] | None = None, overrides: Sequence[str] = ()) -> tuple[ModelConfig, SFTConfig, RLConfig]:
    """The demo files' configurations with changes to their sections (nested dicts for the model:
    {"attention": {"kind": "dense"}}), then `overrides` as the command line writes them
    (model.dim=96, rl.group_size=4; they win), validated as `r1kit train` validates them."""
    bad = [o for o in overrides if not o.startswith(("model.", "sft.", "rl."))]
    if bad:
        raise ConfigError(f"overrides must name their section (model.dim=96, sft.lr=1e-3, rl.group_size=4): {bad}")
    run_overrides = [o for o in overrides if not o.startswith("rl.")]
    rl_overrides = [o for o in overrides if o.startswith("rl.")]
    model_cfg, sft_cfg = load_run_config(str(DEMO_FILE), as_overrides("model", model) + as_overrides("sft", sft) + run_overrides)
    return model_cfg, sft_cfg, load_rl_config(str(RL_DEMO_FILE), as_overrides("rl", rl) + rl_overrides)


def as_overrides(section: str, changes: dict[str, Any] | None) -> list[str]:
    """{"max_minutes": 11.0, "moe": {"alpha": 2}} -> ["SECTION.max_minutes=11.0", "SECTION.moe.alpha=2"].
    Values are written as JSON, which the override parser (YAML) reads back as the same value: a
    path stays a string even when it looks like a number or a boolean."""
    out = []
    for key, value in (changes or {}).items():
        if isinstance(value, dict):
            out += as_overrides(f"{section}.{key}", value)
        else:
            out.append(f"{section}.{key}={json.dumps(value)}")
    return out
