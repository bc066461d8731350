"""The figures of an SFT run evaluated on the held-out sets side by side, as a results file: greedy
accuracy on the templates' test set, the template-held-out set, held-out follow-up questions and
GSM8K at the demo's scale, with the run's SFT steps and minutes (issue 23).

    r1kit train sft --config configs/demo.yaml sft.train_data=RUN/train.jsonl sft.eval_data=null sft.out_dir=RUN/sft
    r1kit eval RUN/sft/final --data RUN/test.jsonl RUN/unseen.jsonl RUN/follow_up.jsonl GSM8K_2-3.jsonl --n 1000 --out RUN/eval.json
    python benchmarks/phrasings_result.py RUN [--results benchmarks/results/phrasings.json]

Several SFT seeds on one data set: `--sft RUN/sft_s1 --eval RUN/eval_s1.json` name the run's pieces.

`--against-demo DEMO_RUN` pairs the run, problem by problem, with that demo's SFT model on the
demo's own held-out sets (the run evaluated on DEMO_RUN/data/*.jsonl with `--rows-out RUN/rows.jsonl`):
a longer or otherwise changed SFT of the demo's model against the demo's SFT, on the same problems.

    r1kit eval RUN/sft/final --data DEMO/data/test.jsonl DEMO/data/unseen.jsonl DEMO/data/follow_up.jsonl --n 500 \
        --out RUN/eval.json --rows-out RUN/rows.jsonl
    python benchmarks/phrasings_result.py RUN --against-demo DEMO --results ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from paired import interval, paired
from results_file import write_results

KEYS = ("n", "accuracy", "step_validity", "mean_steps", "mean_optimal_steps")
OPTIONAL_KEYS = ("gate_mean_per_layer",)  # multi-scale models: each layer's mean weight of local, global, symbolic


def run_figures(run: Path, sft: Path | None = None, evaluation_file: Path | None = None) -> dict:
    """An SFT run's steps, minutes and figures on each evaluated set (by file stem): `sft` (default
    RUN/sft) holds its metrics.jsonl, `evaluation_file` (default RUN/eval.json) is r1kit eval's --out."""
    evaluation = json.loads(Path(evaluation_file or run / "eval.json").read_text())
    records = [json.loads(line) for line in Path(sft or run / "sft", "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in records if "loss" in r]
    return {"run": str(run), "checkpoint": evaluation["checkpoint"], "sft_steps": trained[-1]["step"],
            "sft_minutes": trained[-1]["train_minutes"],
            "sets": {Path(data).stem: {k: summary[k] for k in KEYS + OPTIONAL_KEYS if k in summary}
                     for data, summary in evaluation["sets"].items()}}


def against_demo(rows_path: Path, demo: Path) -> dict:
    """The run's paired difference from the demo's SFT model on each of the demo's sets the run was
    evaluated on (its rows name their data file: DEMO/data/<set>.jsonl)."""
    from r1kit.data.schema import read_metrics  # a JSONL reader that names a bad line
    from r1kit.recipes.data import EVAL_SETS, rows_file

    rows = read_metrics(rows_path)
    if not rows:
        raise SystemExit(f"{rows_path}: no rows (r1kit eval --rows-out RUN/rows.jsonl over the demo's sets)")
    result = {}
    for name, eval_file in EVAL_SETS.items():
        mine = [r for r in rows if Path(r["data"]) == demo / "data" / f"{name}.jsonl"]
        if mine:
            theirs = read_metrics(rows_file(demo / "sft" / eval_file))
            result[name] = paired(mine, theirs[: len(mine)])
    if not result:
        raise SystemExit(f"{rows_path}: no rows from {demo / 'data'}'s sets")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a directory holding sft/ (the run) and eval.json (r1kit eval --out, several --data)")
    parser.add_argument("--results", default="benchmarks/results/phrasings.json")
    parser.add_argument("--sft", help="the SFT run's directory (default RUN/sft)")
    parser.add_argument("--eval", help="r1kit eval's --out file (default RUN/eval.json)")
    parser.add_argument("--against-demo", metavar="DEMO_RUN", help="pair with this demo run's SFT model on its sets (needs RUN/rows.jsonl)")
    parser.add_argument("--rows", help="r1kit eval's --rows-out file for --against-demo (default RUN/rows.jsonl)")
    args = parser.parse_args()
    figures = run_figures(Path(args.run_dir), args.sft, args.eval)
    print(" | ".join(f"{name} {s['accuracy']:.1%} (n={s['n']})" for name, s in figures["sets"].items()))
    if args.against_demo:
        rows = Path(args.rows or Path(args.run_dir) / "rows.jsonl")
        figures["against_demo_sft"] = {"run": args.against_demo, "paired": against_demo(rows, Path(args.against_demo))}
        print(f"  against {args.against_demo}'s SFT: " + ", ".join(f"{name} {interval(d)}" for name, d in figures["against_demo_sft"]["paired"].items()))
    print(f"wrote {write_results(args.results, figures)}")


if __name__ == "__main__":
    main()
