"""The SFT targets (>= 90% at 20 minutes, >= 60% at 10) measured the way the README states them.

Makes the demo's data (r1kit.recipes.data: 90,000 training problems of 1-4 steps, 500 held-out
2-3-step problems, operands below 100), trains configs/demo.yaml's SFT for --minutes of training
time (the schedule decays over them) with a snapshot at half of them, and evaluates the final
model, the snapshot (the last step's weights) and the weight average at the same minute (the
config's sft.average, what final/ holds at the end) greedily on the 500 held-out problems, as
`r1kit eval` does.

    python benchmarks/sft_target.py [--minutes 20] [--seed 0] [--out-dir runs/sft_target] \\
        [--results benchmarks/results/sft_target_20min.json] [--snapshots 1,2,5] [--overwrite] [KEY=VALUE ...]

KEY=VALUE changes the config file's model or sft settings as `r1kit train sft` takes them
(model.attention.kind=multiscale: the article's attention layer, which the README's figure measured).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from results_file import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="SFT training minutes (evaluation excluded)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the data's seed is the demo's, 0)")
    parser.add_argument("--out-dir", default="runs/sft_target")
    parser.add_argument("--results", default=None, help="default: benchmarks/results/sft_target_<minutes>min.json")
    parser.add_argument("--snapshots", default="", help="more snapshot minutes for benchmarks/sft_curves.py, e.g. 1,2,5")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out-dir (refused without it)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="model.* or sft.* settings, e.g. model.attention.kind=multiscale")
    args = parser.parse_args()
    if any(o.startswith("rl.") for o in args.overrides):
        parser.error("only model.* and sft.* settings apply to SFT")

    from r1kit.data.schema import load_examples, read_metrics
    from r1kit.data.tokenizer import Tokenizer
    from r1kit.evaluate import evaluate
    from r1kit.interop.checkpoint import load_pretrained
    from r1kit.recipes.configs import demo_configs
    from r1kit.recipes.data import demo_data
    from r1kit.train.sft import train_sft

    out = Path(args.out_dir)
    data = demo_data(out / "data")
    half = args.minutes / 2
    model_cfg, sft_cfg, _ = demo_configs(sft={
        "train_data": str(data["train"]), "eval_data": None, "out_dir": str(out / "sft"), "seed": args.seed,
        "max_minutes": args.minutes,
        "snapshot_minutes": sorted({half, *(float(m) for m in args.snapshots.split(",") if m)})}, overrides=args.overrides)
    final = train_sft(model_cfg, sft_cfg, overwrite=args.overwrite)
    test = load_examples(data["test"]).examples
    figures = {"sft_config": sft_cfg.model_dump(), "model_config": model_cfg.model_dump(), "overrides": args.overrides}
    records = read_metrics(out / "sft" / "metrics.jsonl")
    # the snapshot at half the minutes holds the last step's weights; its event names the weight
    # averages saved beside it (sft.average among them: the kind of weights final/ holds)
    snapshot = next(e for e in records if e.get("event") == "snapshot" and e["minutes"] == half)
    snapshot_dir = f"minutes_{half:g}"
    checkpoints = [(f"minute_{half:g}", out / "sft" / snapshot_dir)]
    checkpoints += [(f"minute_{half:g}{d.removeprefix(snapshot_dir)}", out / "sft" / d) for d in snapshot.get("averages", {}).values()]
    for name, checkpoint in (*checkpoints, (f"minute_{args.minutes:g}", final)):
        model, tok = load_pretrained(checkpoint), Tokenizer.load(checkpoint)
        summary = evaluate(model, tok, test, batch_size=sft_cfg.eval_batch_size, max_new_tokens=sft_cfg.max_new_tokens).summary()
        figures[name] = {k: summary[k] for k in ("n", "accuracy", "step_validity", "mean_steps", "mean_optimal_steps")}
        print(f"{name}: accuracy {summary['accuracy']:.1%} on {summary['n']} held-out problems")
    start = records[0]  # the run's hardware choices (dtype, Newton-Schulz precision) and their reasons
    figures["choices"] = {k: v for k, v in start.items() if k.startswith(("dtype", "muon_ns_dtype"))}
    last = [r for r in records if "loss" in r][-1]
    figures["steps"], figures["train_minutes"] = last["step"], last["train_minutes"]
    path = write_results(args.results or f"benchmarks/results/sft_target_{args.minutes:g}min.json", figures)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
