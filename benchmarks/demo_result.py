"""The figures of a finished `r1kit demo` run (make demo) as a results file: minutes per stage and
in all, and the SFT and GRPO models' greedy accuracy on the demo's 500 held-out 2-3-step problems
(`sft`, `rl`: the report's numbers, which `r1kit eval RUN/sft/final --data RUN/data/test.jsonl`
reproduces) and on each held-out set (`sets`: test, unseen, follow_up, hard, where the run has it).

    make demo && python benchmarks/demo_result.py runs/demo [--results benchmarks/results/demo.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from results_file import write_results

from r1kit.recipes.data import EVAL_SETS

KEYS = ("n", "accuracy", "step_validity", "mean_steps", "mean_optimal_steps", "reward")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="the demo's output directory (runs/demo)")
    parser.add_argument("--results", default="benchmarks/results/demo.json")
    args = parser.parse_args()
    run = Path(args.run_dir)
    meta = json.loads((run / "run.json").read_text())
    figures = {"run": "r1kit demo (make demo)", "quick": meta["quick"], "minutes_budget": meta["minutes_budget"],
               "total_minutes": meta["total_minutes"], "minutes_per_stage": meta["minutes_per_stage"]}
    for stage in ("sft", "rl"):
        summary = json.loads((run / stage / "eval.json").read_text())
        figures[stage] = {k: summary[k] for k in KEYS}
        steps = [json.loads(line) for line in (run / stage / "metrics.jsonl").read_text().splitlines()]
        figures[stage]["train_steps"] = max(r.get("step", 0) for r in steps)
        figures.setdefault("sets", {})[stage] = {
            name: {k: json.loads(path.read_text())[k] for k in ("n", "accuracy", "step_validity")}
            for name, path in ((name, run / stage / file) for name, file in EVAL_SETS.items()) if path.is_file()}
    print(f"SFT {figures['sft']['accuracy']:.1%} -> GRPO {figures['rl']['accuracy']:.1%} on {figures['sft']['n']} problems, "
          f"{figures['total_minutes']:.1f} minutes in all")
    for name, sft in figures["sets"]["sft"].items():
        print(f"  {name}: SFT {sft['accuracy']:.1%} -> GRPO {figures['sets']['rl'].get(name, {}).get('accuracy', float('nan')):.1%}")
    print(f"wrote {write_results(args.results, figures)}")


if __name__ == "__main__":
    main()
