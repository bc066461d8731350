"""Held-out greedy accuracy against SFT minutes, by difficulty, from runs' snapshots.

Train with snapshots, then evaluate every snapshot on a grid of held-out sets (steps 1..4 x
operands up to 10, 100, 1000; none of their questions is in the training file):

    r1kit train sft --config configs/demo.yaml sft.out_dir=runs/curves20 "sft.snapshot_minutes=[1,2,5,10]" ...
    r1kit train sft --config configs/demo.yaml sft.out_dir=runs/curves60 sft.max_steps=9000 sft.max_minutes=60 ...
    python benchmarks/sft_curves.py runs/curves20 runs/curves60 --train runs/data/train_1-4_100.jsonl [--n 100]

Prints a markdown table per run, writes benchmarks/results/sft_curves.json and a plot (one panel
per operand size, one colour per step count, one line style per run and kind of weights). A run's minutes come from
its metrics (snapshot events; `final` is the end of the run). Each row names its `weights`: a
snapshot's last step's weights (`minutes_<m>/`, then last/ at the end), and, where final/ is a
weight average (`sft.average`) and the snapshots kept it as it stood at their minute (runs since
the twenty-second stop), that average too (`minutes_<m>_average_.../`, then final/): two curves,
the second drawn dashed. `--last-step` evaluates the first alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from results_file import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="SFT output directories holding minutes_* snapshots and final/")
    parser.add_argument("--train", required=True, help="the runs' training JSONL (its questions are excluded)")
    parser.add_argument("--n", type=int, default=100, help="held-out problems per (steps, operands) cell")
    parser.add_argument("--steps", default="1,2,3,4")
    parser.add_argument("--operands", default="10,100,1000")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sft_curves.json"))
    parser.add_argument("--plot", type=Path, default=Path("docs/sft_curves.png"))
    parser.add_argument("--plot-only", action="store_true", help="redraw the plot from --out's JSON, evaluating nothing")
    parser.add_argument("--last-step", action="store_true", help="evaluate only the last-step weights (snapshots, then last/), not final/'s average")
    args = parser.parse_args()
    steps, operands = [int(s) for s in args.steps.split(",")], [int(s) for s in args.operands.split(",")]
    if args.plot_only:
        from r1kit.data.schema import atomic_file

        _plot(json.loads(args.out.read_text())["rows"], steps, operands, args.plot, atomic_file)
        return

    from r1kit.interop.checkpoint import load_pretrained
    from r1kit.data.schema import atomic_file, load_examples, question_hash, read_metrics
    from r1kit.evaluate import evaluate
    from r1kit.data.synth import synth
    from r1kit.data.tokenizer import Tokenizer

    exclude = {question_hash(e.question) for e in load_examples(args.train).examples}
    cells = {(s, m): synth(args.n, f"curves:{s}:{m}", steps=s, max_operand=m, exclude=exclude)
             for s in steps for m in operands}

    rows = []
    for run in args.runs:
        for minutes, step, path, weights in _checkpoints(run, read_metrics(run / "metrics.jsonl"), args.last_step):
            model, tok = load_pretrained(path), Tokenizer.load(path)
            row = {"run": str(run), "checkpoint": path.name, "weights": weights, "train_minutes": round(minutes, 2), "step": step,
                   "accuracy": {}}
            for (s, m), examples in cells.items():
                row["accuracy"][f"{s}x{m}"] = evaluate(model, tok, examples).summary()["accuracy"]
            rows.append(row)
            print(path, f"{minutes:.1f} min ({weights})", json.dumps(row["accuracy"]), flush=True)

    header = "| minutes (step) | weights | " + " | ".join(f"{s} steps, <= {m}" for s in steps for m in operands) + " |"
    for run in args.runs:
        print(f"\n{run}\n\n" + header + "\n|" + "---|" * (2 + len(cells)))
        for row in (r for r in rows if r["run"] == str(run)):
            cells_text = " | ".join(f"{100 * row['accuracy'][f'{s}x{m}']:.0f}%" for s in steps for m in operands)
            print(f"| {row['train_minutes']:.1f} ({row['step']}) | {row.get('weights', 'last step')} | {cells_text} |")

    write_results(args.out, {"runs": [str(r) for r in args.runs], "n_per_cell": args.n, "rows": rows})
    _plot(rows, steps, operands, args.plot, atomic_file)


def _checkpoints(run: Path, log: list[dict], last_step: bool = False) -> list[tuple[float, int, Path, str]]:
    """(training minutes, step, directory, which weights) of a run's snapshots and of its end: the
    last step's weights (snapshots, then last/; final/ where it holds them), then, unless
    `last_step`, the average final/ holds, where the snapshots kept it (their events name it)."""
    start = next((e for e in log if e.get("event") == "start"), {})
    final_average = (start.get("sft") or {}).get("average")  # None: final/ holds the last step's weights
    snapshots = [e for e in log if e.get("event") == "snapshot"]
    end = max((r for r in log if "train_minutes" in r and "step" in r), key=lambda r: r["step"])
    at_end = (end["train_minutes"], end["step"])
    last = [(e["train_minutes"], e["step"], run / f"minutes_{e['minutes']:g}", "last step") for e in snapshots]
    last.append((*at_end, run / ("last" if final_average else "final"), "last step"))
    if final_average is None or last_step:
        return last
    averaged = [(e["train_minutes"], e["step"], run / e["averages"][final_average], final_average)
                for e in snapshots if final_average in e.get("averages", {})]
    return last + averaged + [(*at_end, run / "final", final_average)]


def _plot(rows, steps, operands, path: Path, atomic_file) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, len(operands), figsize=(4 * len(operands), 3.6), sharey=True)

    def series_of(row: dict) -> tuple[str, str]:
        return row.get("run", ""), row.get("weights", "last step")  # older JSON has neither

    series = list(dict.fromkeys(series_of(r) for r in rows))  # in order: one line style each
    n_runs, n_weights = len({run for run, _ in series}), len({weights for _, weights in series})
    longest = max(r["train_minutes"] for r in rows)
    for ax, m in zip(axes, operands):
        for s in steps:
            for (run, weights), style in zip(series, ["-", "--", ":", "-."]):
                points = sorted((r for r in rows if series_of(r) == (run, weights)), key=lambda r: r["train_minutes"])
                names = [Path(run).name] * (n_runs > 1) + [weights] * (n_weights > 1)
                label = f"{s} step{'s' * (s > 1)}" + (f" ({', '.join(names)})" if names else "")
                ax.plot([r["train_minutes"] for r in points], [100 * r["accuracy"][f"{s}x{m}"] for r in points],
                        marker="o", markersize=3, linestyle=style, color=f"C{s - 1}", label=label)
        ax.set_title(f"operands <= {m}")
        ax.set_xscale("log")
        ax.set_xticks([t for t in (1, 2, 5, 10, 20, 30, 45, 60) if t <= longest * 1.05])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("SFT minutes (2 CPU cores)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("greedy accuracy (%)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
