"""How the multi-scale layer's gate mixes its branches (local, global, symbolic), per layer and in
the mean over layers, from `r1kit eval --out` files: each set's `gate_mean_per_layer` is the gate's
mean weight over the tokens of that evaluation's forwards (prompts and answers).

    r1kit eval RUN/sft/final --data runs/swap20/test.jsonl runs/u2k/unseen.jsonl --out RUN/eval.json
    python benchmarks/gate_mix.py RUN_A/eval.json RUN_B/eval.json --results benchmarks/results/gate_mix.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from results_file import write_results

from r1kit.model.attention import BRANCHES  # the order of each layer's gate weights


def gate_mix(evaluation: dict) -> dict:
    """{set: {"per_layer": [{branch: weight}], "mean": {branch: weight over layers}}} for the sets with gates."""
    mix = {}
    for name, figures in evaluation["sets"].items():
        layers = figures.get("gate_mean_per_layer") or []
        if not layers:  # dense attention: no gate
            continue
        per_layer = [dict(zip(BRANCHES, weights)) for weights in layers]
        mix[name] = {"per_layer": per_layer,
                     "mean": {b: sum(layer[b] for layer in per_layer) / len(per_layer) for b in BRANCHES}}
    return mix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evals", nargs="+", help="r1kit eval --out files")
    parser.add_argument("--results", default="benchmarks/results/gate_mix.json")
    args = parser.parse_args()
    runs = {}
    for path in args.evals:
        try:
            evaluation = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            parser.error(f"{path}: cannot read it as JSON ({e})")
        if not isinstance(evaluation, dict) or not isinstance(evaluation.get("sets"), dict):
            parser.error(f"{path} is not an r1kit eval --out file (it has no 'sets')")
        runs[path] = {"checkpoint": evaluation.get("checkpoint"), "sets": gate_mix(evaluation)}
        if not runs[path]["sets"]:
            sys.exit(f"{path}: no set carries gate weights (a dense-attention model, or not an r1kit eval --out file)")
        for name, mix in runs[path]["sets"].items():
            print(f"{path} {name}: mean " + ", ".join(f"{b} {w:.2f}" for b, w in mix["mean"].items())
                  + "; global by layer " + " ".join(f"{layer['global']:.2f}" for layer in mix["per_layer"]))
    print(f"wrote {write_results(args.results, {'runs': runs})}")


if __name__ == "__main__":
    main()
