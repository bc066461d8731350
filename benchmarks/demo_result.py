"""The figures of a finished `r1kit demo` run (make demo) as a results file: minutes per stage and
in all, and the SFT and GRPO models' greedy accuracy on the demo's 500 held-out 2-3-step problems
(`sft`, `rl`: the report's numbers, which `r1kit eval RUN/sft/final --data RUN/data/test.jsonl`
reproduces) and on each held-out set (`sets`: test, unseen, follow_up, hard, where the run has it).
`--against OTHER_RUN` (a run of the same seed, so the same problems) adds this run's paired
difference from it, per stage and set, with its 95% interval (`against`).

    make demo && python benchmarks/demo_result.py runs/demo [--results benchmarks/results/demo.json]
    r1kit demo --out runs/demo_v model.attention.kind=dense
    python benchmarks/demo_result.py runs/demo_v --against runs/demo --results benchmarks/results/demo_variant.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from paired import interval, paired
from results_file import write_results

from r1kit.recipes.data import EVAL_SETS, rows_file

KEYS = ("n", "accuracy", "step_validity", "mean_steps", "mean_optimal_steps", "reward")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="the demo's output directory (runs/demo)")
    parser.add_argument("--against", metavar="OTHER_RUN", help="a demo run of the same seed to pair this one with, problem by problem")
    parser.add_argument("--results", default="benchmarks/results/demo.json")
    args = parser.parse_args()
    run = Path(args.run_dir)
    meta = json.loads((run / "run.json").read_text())
    model = meta["configs"]["model"]
    figures = {"run": "r1kit demo (make demo)", "quick": meta["quick"], "minutes_budget": meta["minutes_budget"],
               "total_minutes": meta["total_minutes"], "minutes_per_stage": meta["minutes_per_stage"],
               "overrides": meta.get("overrides", []),  # absent in runs made before the demo took overrides
               "model": {"dim": model["dim"], "n_layers": model["n_layers"], "attention": model["attention"]},
               "sft_minutes_planned": meta["configs"]["sft"]["max_minutes"]}
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
    # GRPO's change on each set, paired problem by problem against the SFT model it started from
    figures["rl_minus_sft"] = {name: paired(rl_rows, sft_rows) for name in EVAL_SETS
                               if (sft_rows := eval_rows(run, "sft", name)) and (rl_rows := eval_rows(run, "rl", name))}
    for name, sft in figures["sets"]["sft"].items():
        change = figures["rl_minus_sft"].get(name)
        print(f"  {name}: SFT {sft['accuracy']:.1%} -> GRPO {figures['sets']['rl'].get(name, {}).get('accuracy', float('nan')):.1%}"
              + (f" ({interval(change)})" if change else ""))
    if args.against:
        figures["against"] = {"run": args.against, "paired": against(run, Path(args.against))}
        for stage, sets in figures["against"]["paired"].items():
            print(f"  {stage} against {args.against}: " + ", ".join(f"{name} {interval(d)}" for name, d in sets.items()))
    print(f"wrote {write_results(args.results, figures)}")


def eval_rows(run: Path, stage: str, name: str) -> list[dict] | None:
    """The per-problem rows `r1kit demo` wrote beside a stage's evaluation of one set, if any."""
    path = rows_file(run / stage / EVAL_SETS[name])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else None


def against(run: Path, other: Path) -> dict:
    """This run's paired difference from `other` by stage, then set, where both have the rows. Runs
    of different seeds hold different problems: that is an error, not a comparison."""
    out: dict = {}
    for stage in ("sft", "rl"):
        for name in EVAL_SETS:
            mine, theirs = eval_rows(run, stage, name), eval_rows(other, stage, name)
            if mine is None or theirs is None:
                continue
            if [r["question"] for r in mine] != [r["question"] for r in theirs]:
                raise SystemExit(f"{run} and {other} evaluated different {name} problems: runs of one seed pair, not of two")
            out.setdefault(stage, {})[name] = paired(mine, theirs)
    if not out:
        raise SystemExit(f"{run} and {other} share no evaluation rows to pair (RUN/sft/eval_rows.jsonl and the like)")
    return out


if __name__ == "__main__":
    main()
