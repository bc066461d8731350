"""RL's weights part of the way from its init (issue 23, the demo's RL stage): for each demo run,
the models init + s x (trained - init) for each share s, evaluated greedily on the demo's held-out
sets, and paired against the SFT model (s = 0) and the trained one (s = 1) on the same problems.
WiSE-FT (Wortsman et al. 2022) and WARP (Rame et al. 2024) interpolate so; `rl.update_share` writes
such a final/.

    python benchmarks/rl_interpolation.py runs/demo_ema0 runs/demo_ema1 runs/demo_sw runs/demo_sw1 runs/demo_sw2 \
        --shares 0.5 0.7 0.85 --results benchmarks/results/rl_interpolation.json

Each run directory is a demo's (`r1kit demo --out DIR`): DIR/sft/final the init, DIR/rl/last the
trained weights (DIR/rl/final where last/ is missing), DIR/data/{test,unseen,follow_up,hard}.jsonl
the sets. Share 0 is the SFT model itself; every other share keeps the trained model's buffers (the
MoE load statistics), as rl.update_share does. A run whose rl/final was interpolated and whose
rl/last is gone is refused.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from paired import paired
from results_file import write_results
from r1kit.data.schema import load_examples
from r1kit.evaluate import evaluate
from r1kit.inference.engine import load_for_inference
from r1kit.train.averaging import interpolate_from, parameters_of

SETS = ("test", "unseen", "follow_up", "hard")  # in-template, template-held-out, unseen-side follow-ups, RL's 5 steps


def trained_checkpoint(run: Path) -> Path:
    """The RL stage's trained weights: last/ (final/ may be interpolated already)."""
    for name in ("last", "final"):
        if (run / "rl" / name / "model.safetensors").is_file():
            return run / "rl" / name
    raise FileNotFoundError(f"{run}: no rl/last or rl/final checkpoint")


def update_share_of(run: Path) -> float:
    """The run's rl.update_share (1 before the option existed), from its metrics' start record."""
    with open(run / "rl" / "metrics.jsonl") as f:
        start = json.loads(f.readline())
    return float(start.get("rl", {}).get("update_share", 1.0))


def run_figures(run: Path, shares: list[float], n: int) -> dict:
    sets = {name: load_examples(run / "data" / f"{name}.jsonl").examples[:n] for name in SETS}
    model, tok, _ = load_for_inference(trained_checkpoint(run), "cpu", "fp32")
    init, _, _ = load_for_inference(run / "sft" / "final", "cpu", "fp32")
    start, trained = parameters_of(init), parameters_of(model)
    rows = {0.0: {name: evaluate(init, tok, examples).rows for name, examples in sets.items()}}  # the SFT model, its own buffers
    for share in sorted({1.0, *shares} - {0.0}):
        with torch.no_grad():
            for name, p in model.named_parameters():  # back to the trained weights, then part of the way
                if name in trained:
                    p.copy_(trained[name])
        interpolate_from(model, start, share)
        rows[share] = {name: evaluate(model, tok, examples).rows for name, examples in sets.items()}
    for share in rows:
        print(f"{run} share {share:g}: " + " | ".join(f"{s} {accuracy(rows[share][s]):.1%}" for s in SETS), flush=True)
    figures = {}
    for share, by_set in rows.items():
        figures[f"{share:g}"] = {
            name: {"accuracy": accuracy(r), "n": len(r),
                   "against_sft": _pct(paired(r, rows[0.0][name])), "against_rl": _pct(paired(r, rows[1.0][name]))}
            for name, r in by_set.items()}
    return figures


def accuracy(rows: list[dict]) -> float:
    return sum(r["accuracy"] for r in rows) / len(rows)


def _pct(p: dict) -> dict:
    return {"diff": p["diff"], "ci95": p["ci95"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="demo run directories (r1kit demo --out DIR)")
    ap.add_argument("--shares", nargs="+", type=float, default=[0.5, 0.7, 0.85], help="shares of RL's change to keep (0 and 1 are always evaluated)")
    ap.add_argument("--n", type=int, default=500, help="problems per set")
    ap.add_argument("--results", default="benchmarks/results/rl_interpolation.json")
    args = ap.parse_args()
    for run in args.runs:
        if not (run / "rl" / "last").is_dir() and update_share_of(run) < 1:
            raise SystemExit(f"{run}: rl/final is already interpolated and rl/last is missing: the trained weights are gone")
    runs = {str(run): run_figures(run, args.shares, args.n) for run in args.runs}
    shares = list(next(iter(runs.values())))
    mean = {share: {name: {"accuracy": statistics.fmean(r[share][name]["accuracy"] for r in runs.values()),
                           "against_sft": statistics.fmean(r[share][name]["against_sft"]["diff"] for r in runs.values()),
                           "against_rl": statistics.fmean(r[share][name]["against_rl"]["diff"] for r in runs.values())}
                    for name in SETS} for share in shares}
    for share in shares:
        print(f"mean over {len(runs)} runs, share {share}: " + " | ".join(
            f"{name} {m['accuracy']:.1%} ({m['against_sft']:+.1%} vs SFT)" for name, m in mean[share].items()))
    write_results(args.results, {"sets": list(SETS), "runs": runs, "mean": mean})
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
