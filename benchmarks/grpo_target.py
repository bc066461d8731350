"""The GRPO figure measured the way the README states it: configs/rl_demo.yaml as it is (its budget,
learning rate and reward), from a given SFT checkpoint (the demo's), on the demo's data; the SFT
start and the GRPO result are evaluated greedily on the same held-out problems, as `r1kit eval`
does.

    python benchmarks/grpo_target.py --init runs/demo/sft/final --train runs/demo/data/train.jsonl \\
        --test runs/demo/data/test.jsonl [--out-dir runs/grpo_target] [--overwrite] \\
        [--results benchmarks/results/grpo_demo.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from results_file import write_results

KEYS = ("n", "accuracy", "step_validity", "mean_steps", "mean_optimal_steps", "reward")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", required=True, help="the SFT checkpoint GRPO starts from")
    parser.add_argument("--train", required=True, help="the prompts GRPO samples from (JSONL)")
    parser.add_argument("--test", required=True, help="the held-out problems both models are evaluated on")
    parser.add_argument("--out-dir", default="runs/grpo_target")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out-dir (refused without it)")
    parser.add_argument("--results", default="benchmarks/results/grpo_demo.json")
    args = parser.parse_args()

    from r1kit.data.schema import load_examples
    from r1kit.data.tokenizer import Tokenizer
    from r1kit.evaluate import evaluate
    from r1kit.interop.checkpoint import load_pretrained
    from r1kit.recipes.configs import demo_configs
    from r1kit.train.grpo import train_rl

    _, sft_cfg, rl_cfg = demo_configs(rl={"train_data": args.train, "eval_data": None, "out_dir": args.out_dir})
    final = train_rl(rl_cfg, args.init, overwrite=args.overwrite)
    test = load_examples(args.test).examples
    figures = {"rl_config": rl_cfg.model_dump(), "init": args.init}
    for name, checkpoint in (("sft", Path(args.init)), ("grpo", final)):
        model, tok = load_pretrained(checkpoint), Tokenizer.load(checkpoint)
        summary = evaluate(model, tok, test, batch_size=sft_cfg.eval_batch_size, max_new_tokens=sft_cfg.max_new_tokens).summary()
        figures[name] = {k: summary[k] for k in KEYS}
        print(f"{name}: accuracy {summary['accuracy']:.1%} on {summary['n']} held-out problems")
    records = [json.loads(line) for line in (Path(args.out_dir) / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    figures["steps"], figures["train_minutes"] = records[-1]["step"], records[-1].get("train_minutes")
    figures["accuracy_change_points"] = 100 * (figures["grpo"]["accuracy"] - figures["sft"]["accuracy"])
    print(f"wrote {write_results(args.results, figures)}")


if __name__ == "__main__":
    main()
