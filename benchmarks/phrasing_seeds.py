"""Recipes compared over SFT seeds (issue 23, part A): each arm's runs on one data set with other SFT
seeds, their held-out figures, mean and spread, and the paired difference of each later arm
against the first, seed by seed on the same template-held-out problems. One run's paired interval covers the choice
of problems, not the training run; the seeds show how far the run moves the figure.

    python benchmarks/phrasing_seeds.py --arm "noise 0.2" runs/w20 runs/w20s1 runs/w20s2 \
        --arm "noise 0.2, swap 0.2" runs/swap20 runs/swap20s1 runs/swap20s2 --results benchmarks/results/phrasings_seeds.json

Each run directory holds sft/ (metrics.jsonl), eval.json (`r1kit eval --out`, the sets below) and
unseen_rows.jsonl (`r1kit eval --rows-out` on the template-held-out set); the k-th run of each arm
is SFT seed k's. RUN@NAME is another checkpoint of the same run (a weight average beside final/):
its figures are RUN/eval_NAME.json and RUN/unseen_rows_NAME.jsonl.

    python benchmarks/phrasing_seeds.py --arm "final" runs/avg_s0@final runs/avg_s1@final runs/avg_s2@final \
        --arm "ema 0.999" runs/avg_s0@average_ema_0.999 ... --results benchmarks/results/phrasings_averages.json

--pair OF AGAINST (repeatable) names the differences to take instead, for designs where the first
arm is not everyone's control (a factorial: each factor against the arm that lacks only it).

Where every run also holds RUN/rows.jsonl (RUN/rows_NAME.jsonl: `r1kit eval --rows-out` over all the
sets), the in-template and follow-up sets are paired too, seed by seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from paired import interval, paired
from phrasings_result import run_figures
from results_file import write_results

SETS = ("test", "unseen", "follow_up")  # in-template, template-held-out, unseen-side follow-ups


def run_files(run: str) -> tuple[Path, Path, Path, Path]:
    """(run directory, its eval file, its template-held-out rows, every set's rows) for RUN or RUN@NAME."""
    directory, _, name = run.partition("@")
    suffix = f"_{name}" if name else ""
    return (Path(directory), Path(directory, f"eval{suffix}.json"), Path(directory, f"unseen_rows{suffix}.jsonl"),
            Path(directory, f"rows{suffix}.jsonl"))


def seed_figures(run: str) -> dict:
    directory, evaluation, *_ = run_files(run)
    figures = run_figures(directory, evaluation_file=evaluation)
    missing = [s for s in SETS if s not in figures["sets"]]
    if missing:
        raise SystemExit(f"{evaluation} has no {missing} set(s); evaluate on {SETS}")
    return {"run": run, "sft_steps": figures["sft_steps"], **{s: figures["sets"][s]["accuracy"] for s in SETS}}


def rows(run: str) -> list[dict]:
    return [json.loads(line) for line in run_files(run)[2].read_text().splitlines()]


def rows_by_set(run: str) -> dict[str, list[dict]] | None:
    """RUN/rows[_NAME].jsonl (every set's rows, each naming its data file) by set, or None without one."""
    path = run_files(run)[3]
    if not path.exists():
        return None
    by_set: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        by_set.setdefault(Path(row["data"]).stem, []).append(row)
    return by_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", nargs="+", action="append", required=True, metavar=("NAME", "RUN"),
                        help="an arm's name, then its run directories in SFT seed order")
    parser.add_argument("--pair", nargs=2, action="append", metavar=("OF", "AGAINST"),
                        help="take arm OF against arm AGAINST (repeatable); default: every later arm against the first")
    parser.add_argument("--results", default="benchmarks/results/phrasings_seeds.json")
    args = parser.parse_args()
    if any(len(arm) < 2 for arm in args.arm):
        parser.error("each --arm needs a name and at least one run directory")
    runs_of = {name: runs for name, *runs in args.arm}
    unknown = sorted({name for pair in args.pair or [] for name in pair} - set(runs_of))
    if unknown:
        parser.error(f"--pair names no arm called {unknown}; the arms: {sorted(runs_of)}")
    arms = {}
    for name, *runs in args.arm:
        per_seed = [seed_figures(r) for r in runs]
        summary = {s: {"mean": statistics.mean(f[s] for f in per_seed),
                       "sd": statistics.stdev(f[s] for f in per_seed) if len(per_seed) > 1 else 0.0,
                       "min": min(f[s] for f in per_seed), "max": max(f[s] for f in per_seed)} for s in SETS}
        arms[name] = {"seeds": per_seed, "summary": summary}
        print(f"{name}: " + " | ".join(f"{s} {summary[s]['mean']:.1%} (sd {summary[s]['sd']:.1%}; "
                                       + ", ".join(f"{f[s]:.1%}" for f in per_seed) + ")" for s in SETS))
    figures = {"arms": arms}
    pairs = args.pair or [(name, args.arm[0][0]) for name, *_ in args.arm[1:]]
    figures["paired_unseen"] = []  # seed by seed, on the same problems
    for second, first in pairs:
        by_seed = [paired(rows(b), rows(a)) for a, b in zip(runs_of[first], runs_of[second])]
        figures["paired_unseen"].append({"of": second, "against": first, "by_seed": by_seed,
                                         "mean_diff": statistics.mean(p["diff"] for p in by_seed)})
        print(f"{second} - {first}, template-held-out: " + ", ".join(
            interval(p) for p in by_seed)
            + f"; mean {figures['paired_unseen'][-1]['mean_diff']:+.1%}")
    all_rows = {r: rows_by_set(r) for runs in runs_of.values() for r in runs}
    if all(all_rows.values()):
        figures["paired_other_sets"] = []
        for second, first in pairs:
            for name in ("test", "follow_up"):
                if not all(name in all_rows[r] for r in (*runs_of[first], *runs_of[second])):
                    continue  # a set some run was not evaluated on
                by_seed = [paired(all_rows[b][name], all_rows[a][name]) for a, b in zip(runs_of[first], runs_of[second])]
                figures["paired_other_sets"].append({"of": second, "against": first, "set": name, "by_seed": by_seed,
                                                     "mean_diff": statistics.mean(p["diff"] for p in by_seed)})
                print(f"{second} - {first}, {name}: " + ", ".join(
                    interval(p) for p in by_seed)
                    + f"; mean {figures['paired_other_sets'][-1]['mean_diff']:+.1%}")
    print(f"wrote {write_results(args.results, figures)}")


if __name__ == "__main__":
    main()
