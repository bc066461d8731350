"""The runs of a finished `r1kit claims` as a results file: each arm's result.json (steps, minutes,
accuracy, step validity, routing balance), beside docs/claims.md, which `r1kit claims` writes.

    r1kit claims --minutes 50 --out runs/claims && python benchmarks/claims_result.py runs/claims \\
        [--results benchmarks/results/claims.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from results_file import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="the claims' output directory (runs/claims)")
    parser.add_argument("--results", default="benchmarks/results/claims.json")
    args = parser.parse_args()
    from r1kit.recipes.claims import RL_RUNS, SFT_RUNS

    run = Path(args.run_dir)
    missing = [name for name in SFT_RUNS + RL_RUNS if not (run / name / "result.json").is_file()]
    if missing:
        raise SystemExit(f"{run}: runs not finished: {', '.join(missing)} (run r1kit claims again: it resumes)")
    runs = {name: json.loads((run / name / "result.json").read_text()) for name in SFT_RUNS + RL_RUNS}
    for name, result in runs.items():
        print(f"{name:22s} {result['steps']:5d} steps  accuracy {result['accuracy']:.1%}  step validity {result['step_validity']:.3f}")
    print(f"wrote {write_results(args.results, {'run': str(run), 'runs': runs})}")


if __name__ == "__main__":
    main()
