"""Held-out greedy accuracy against SFT minutes, by difficulty, from one run's snapshots.

Train with snapshots, then evaluate every snapshot on a grid of held-out sets (steps 1..4 x
operands up to 10, 100, 1000; none of their questions is in the training file):

    r1kit train sft --config configs/demo.yaml sft.out_dir=runs/curves sft.max_minutes=30 \\
        sft.max_steps=6000 "sft.snapshot_minutes=[1,2,5,10,20]" ...
    python benchmarks/sft_curves.py runs/curves --train runs/data/train_1-4_100.jsonl [--n 100]

Prints a markdown table, writes benchmarks/results/sft_curves.json and a plot (one panel per
operand size, one line per step count). The run's own minutes come from its metrics (snapshot
events; `final` is the end of the run).
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="SFT output directory holding minutes_* snapshots and final/")
    parser.add_argument("--train", required=True, help="the run's training JSONL (its questions are excluded)")
    parser.add_argument("--n", type=int, default=100, help="held-out problems per (steps, operands) cell")
    parser.add_argument("--steps", default="1,2,3,4")
    parser.add_argument("--operands", default="10,100,1000")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sft_curves.json"))
    parser.add_argument("--plot", type=Path, default=Path("docs/sft_curves.png"))
    parser.add_argument("--plot-only", action="store_true", help="redraw the plot from --out's JSON, evaluating nothing")
    args = parser.parse_args()
    steps, operands = [int(s) for s in args.steps.split(",")], [int(s) for s in args.operands.split(",")]
    if args.plot_only:
        from r1kit.data import atomic_file

        _plot(json.loads(args.out.read_text())["rows"], steps, operands, args.plot, atomic_file)
        return

    from r1kit.checkpoint import load_pretrained
    from r1kit.data import atomic_file, load_examples, question_hash, read_metrics, write_json
    from r1kit.evaluate import evaluate
    from r1kit.synth import synth
    from r1kit.tokenizer import Tokenizer

    exclude = {question_hash(e.question) for e in load_examples(args.train).examples}
    cells = {(s, m): synth(args.n, f"curves:{s}:{m}", steps=s, max_operand=m, exclude=exclude)
             for s in steps for m in operands}

    log = read_metrics(args.run / "metrics.jsonl")
    checkpoints = [(e["train_minutes"], e["step"], args.run / f"minutes_{e['minutes']:g}")
                   for e in log if e.get("event") == "snapshot"]
    last = max((r for r in log if "train_minutes" in r and "step" in r), key=lambda r: r["step"])
    checkpoints.append((last["train_minutes"], last["step"], args.run / "final"))

    rows = []
    for minutes, step, path in checkpoints:
        model, tok = load_pretrained(path), Tokenizer.load(path)
        row = {"checkpoint": path.name, "train_minutes": round(minutes, 2), "step": step, "accuracy": {}}
        for (s, m), examples in cells.items():
            row["accuracy"][f"{s}x{m}"] = evaluate(model, tok, examples).summary()["accuracy"]
        rows.append(row)
        print(path.name, f"{minutes:.1f} min", json.dumps(row["accuracy"]), flush=True)

    header = "| minutes (step) | " + " | ".join(f"{s} steps, <= {m}" for s in steps for m in operands) + " |"
    print("\n" + header + "\n|" + "---|" * (1 + len(cells)))
    for row in rows:
        cells_text = " | ".join(f"{100 * row['accuracy'][f'{s}x{m}']:.0f}%" for s in steps for m in operands)
        print(f"| {row['train_minutes']:.1f} ({row['step']}) | {cells_text} |")

    write_json(args.out, {"date": str(date.today()), "machine": platform.processor() or platform.machine(),
                          "run": str(args.run), "n_per_cell": args.n, "rows": rows})
    _plot(rows, steps, operands, args.plot, atomic_file)


def _plot(rows, steps, operands, path: Path, atomic_file) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, len(operands), figsize=(4 * len(operands), 3.4), sharey=True)
    minutes = [r["train_minutes"] for r in rows]
    for ax, m in zip(axes, operands):
        for s in steps:
            ax.plot(minutes, [100 * r["accuracy"][f"{s}x{m}"] for r in rows], marker="o", label=f"{s} step{'s' * (s > 1)}")
        ax.set_title(f"operands <= {m}")
        ax.set_xscale("log")
        ax.set_xticks([round(t) for t in minutes])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("SFT minutes (2 CPU cores)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("greedy accuracy (%)")
    axes[0].legend()
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
