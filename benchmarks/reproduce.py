"""Re-run every headline figure of the README, each by the exact command the README gives for it.

    python benchmarks/reproduce.py [--stages sft,curves,kernel,generate,throughput,bf16,demo,grpo,claims,memory]
                                   [--runs runs/reproduce] [--claims-minutes 50] [--redo STAGE,...] [--dry-run]

Each stage runs its commands one after another in fresh processes (printed before they start), and
each command writes its figures to benchmarks/results/ (command, date, CPU model and flags, torch
version, figures) through benchmarks/results_file.py. A finished stage leaves
RUNS/STAGE.done.json (its commands, the git commit, start and end time); a later call skips it,
so an interrupted reproduction resumes at the stage it was in (`--redo` runs a stage again). A
stage's scratch runs live under RUNS and are replaced when the stage runs again; `r1kit claims`
resumes by itself, arm by arm. The stages, in the order they run:

  sft         SFT of the demo config for 20 minutes, evaluated at minutes 10 and 20
  demo        `r1kit demo`, then its figures
  grpo        GRPO on harder problems from the sft stage's model, against SFT continued (3 seeds, ~80 min)
  claims      `r1kit claims`: the ablations of docs/claims.md (7 minutes of SFT per arm at the default)
  curves      accuracy against minutes by difficulty, from the sft stage's snapshots
  kernel      the fused multi-scale kernel against the SDPA branches, one layer
  generate    the engine against transformers' generate(), batch 1 and 32, two model sizes
  throughput  MoE against dense, multi-scale against dense: training tokens/s and memory
  bf16        bf16 against fp32 training steps by model size on this CPU
  memory      shared KV memory on against off, precisions (on the demo stage's model), batched sampling

Timing ratios are taken from alternating rounds and reported as the median with the range; a
target counts as met by the worst round. Run it with nothing else busy on the machine.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

STAGES = ("sft", "demo", "grpo", "claims", "curves", "kernel", "generate", "throughput", "bf16", "memory")
STAGE_TIMEOUT_S = 3 * 3600  # a command that hangs is stopped; the stage stays unfinished


def commands(stage: str, runs: Path, claims_minutes: float) -> list[list[str]]:
    py = "python"
    r1kit = ["r1kit"]
    results = "benchmarks/results"
    sft_run = runs / "sft_target"
    demo = runs / "demo"
    return {
        "sft": [[py, "benchmarks/sft_target.py", "--minutes", "20", "--out-dir", str(sft_run), "--snapshots", "1,2,5",
                 "--overwrite", "--results", f"{results}/sft_target_20min.json"]],
        "curves": [[py, "benchmarks/sft_curves.py", str(sft_run / "sft"), "--train", str(sft_run / "data" / "train.jsonl"),
                    "--n", "100", "--out", f"{results}/sft_curves_fused.json", "--plot", "docs/sft_curves_fused.png"]],
        "kernel": [[py, "benchmarks/multiscale_kernel.py", "--out", f"{results}/multiscale_kernel.json"]],
        "generate": [[py, "benchmarks/generate.py", "--batches", "1,32", "--models", "dense-demo,dense-25m",
                      "--out", f"{results}/generate.json"],
                     [py, "benchmarks/generate.py", "--batches", "1", "--models", "dense-25m", "--rounds", "5",
                      "--out", f"{results}/generate_b1_25m.json"]],
        "throughput": [[py, "benchmarks/model_throughput.py", "--out", f"{results}/model_throughput.json"],
                       [py, "benchmarks/muon_step.py", "--rounds", "40", "--results", f"{results}/muon_step.json"]],
        "bf16": [[py, "benchmarks/bf16_cpu.py", "--dims", "128,256,512,1024", "--layers", "4", "--batch", "16", "--seq", "96",
                  "--steps", "6", "--threads", "0", "--out", f"{results}/bf16_cpu.json"]],
        "demo": [[*r1kit, "demo", "--out", str(demo), "--overwrite"],
                 [py, "benchmarks/demo_result.py", str(demo), "--results", f"{results}/demo.json"],
                 [py, "benchmarks/rl_update_time.py", str(demo / "sft" / "final"), "--data", str(demo / "data" / "rl_train.jsonl"),
                  "--rounds", "8", "--results", f"{results}/rl_update_time.json"]],
        "grpo": [[py, "benchmarks/rl_beyond.py", "--sft", str(sft_run / "sft" / "final"),
                  "--train", str(sft_run / "data" / "train.jsonl"), "--test", str(sft_run / "data" / "test.jsonl"),
                  "--unseen", str(sft_run / "data" / "unseen.jsonl"), "--out", str(runs / "rl_beyond"),
                  "--results", f"{results}/rl_beyond.json"]],
        "memory": [[py, "benchmarks/memory_reuse.py", "--rounds", "3", "--checkpoint", str(demo / "final"),
                    "--data", str(demo / "data" / "test.jsonl"), "--out", f"{results}/memory_reuse.json"],
                   [py, "benchmarks/batched_sampling.py", "--rounds", "3", "--out", f"{results}/batched_sampling.json"]],
        "claims": [[*r1kit, "claims", "--minutes", f"{claims_minutes:g}", "--out", str(runs / "claims"),
                    "--doc", "docs/claims.md"],
                   [py, "benchmarks/claims_result.py", str(runs / "claims"), "--results", f"{results}/claims.json"]],
    }[stage]


def _resolve(command: list[str]) -> list[str]:
    """The printed command, made runnable here: `python` is this interpreter, `r1kit` its entry point."""
    if command[0] == "python":
        return [sys.executable, *command[1:]]
    if command[0] == "r1kit":
        entry = Path(sys.executable).with_name("r1kit")
        return [str(entry), *command[1:]] if entry.exists() else [sys.executable, "-c", "import sys; from r1kit.cli import main; sys.exit(main())", *command[1:]]
    return command


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of: " + ", ".join(STAGES))
    parser.add_argument("--runs", type=Path, default=Path("runs/reproduce"), help="scratch runs and the stages' done markers")
    parser.add_argument("--claims-minutes", type=float, default=50.0,
                        help="r1kit claims' budget: 70%% of it shared by 5 SFT arms (50: 7 minutes each), 20%% by 3 GRPO arms")
    parser.add_argument("--redo", default="", help="stages to run again although they finished")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args()

    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages + [s for s in args.redo.split(",") if s]) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    redo = set(s for s in args.redo.split(",") if s)
    if not Path("benchmarks/results_file.py").is_file():
        parser.error("run it from the repository root (benchmarks/results_file.py not found here)")
    args.runs.mkdir(parents=True, exist_ok=True)

    for stage in (s for s in STAGES if s in stages):
        marker = args.runs / f"{stage}.done.json"
        cmds = commands(stage, args.runs, args.claims_minutes)
        if marker.is_file() and stage not in redo:
            print(f"[{stage}] finished earlier ({json.loads(marker.read_text())['finished']}), kept", flush=True)
            continue
        if args.dry_run:
            print(f"[{stage}]\n" + "\n".join("  " + shlex.join(c) for c in cmds))
            continue
        if stage == "claims" and stage in redo and (args.runs / "claims").exists():
            shutil.rmtree(args.runs / "claims")  # reproduce's own scratch; without --redo claims resumes arm by arm
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        t0 = time.perf_counter()
        for command in cmds:
            print(f"\n[{stage}] $ {shlex.join(command)}", flush=True)
            result = subprocess.run(_resolve(command), timeout=STAGE_TIMEOUT_S)
            if result.returncode != 0:
                sys.exit(f"[{stage}] failed (exit {result.returncode}): {shlex.join(command)}\n"
                         f"fix it and run this script again: finished stages are kept")
        record = {"stage": stage, "commands": [shlex.join(c) for c in cmds], "commit": _commit(), "started": started,
                  "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "minutes": (time.perf_counter() - t0) / 60}
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(marker)
        print(f"[{stage}] done in {record['minutes']:.1f} min", flush=True)


if __name__ == "__main__":
    main()
