"""What a model's wrong answers on a held-out set look like, by the numbers its steps use (issue 23,
part A): an operand neither in the text nor an earlier result (a number misread), more or fewer
steps than the problem needs, a stated number left unused (a distractor taken for a step's), or
the right numbers and count with a wrong operation or order.

    r1kit eval CHECKPOINT --data runs/data/unseen.jsonl --n 500 --rows-out runs/x/unseen_rows.jsonl
    python benchmarks/reading_errors.py runs/x/unseen_rows.jsonl [--results benchmarks/results/reading_errors.json]

Numbers are read as the grammar writes them: digits, and the number words up to twelve. The first
rule that applies names a wrong answer, in the order above.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from results_file import write_results

from r1kit.data.synth.lexicon import NUMBER_WORDS

STEP = re.compile(r"(\d+)\s*[-+*/]\s*(\d+)\s*=\s*(\d+)")
WORDS = {w: i for i, w in enumerate(NUMBER_WORDS)}


def grammar_numbers(text: str) -> list[int]:
    """The numbers a grammar question writes: digits and number words (not the verifier's wider reading)."""
    return [int(x) for x in re.findall(r"\d+", text)] + [WORDS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in WORDS]


def kind_of_answer(row: dict) -> str:
    """One row of `r1kit eval --rows-out`: "right", or what its wrong answer did."""
    if row["accuracy"]:
        return "right"
    steps = STEP.findall(row["completion"])
    if not steps:
        return "no step"
    available, used, misread = set(grammar_numbers(row["question"])), set(), False
    for a, b, c in steps:
        for operand in (int(a), int(b)):
            misread |= operand not in available
            used.add(operand)
        available.add(int(c))
    if misread:
        return "an operand neither stated nor computed"
    if len(steps) != row["optimal_steps"]:
        return "more steps than needed" if len(steps) > row["optimal_steps"] else "fewer steps than needed"
    if set(grammar_numbers(row["question"])) - used:
        return "a stated number unused"
    return "right numbers, wrong operation or order"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="+", help="JSONL files written by `r1kit eval --rows-out`")
    parser.add_argument("--results", help="also write the counts to this results file")
    args = parser.parse_args()
    figures = {}
    for path in args.rows:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
        counts = Counter(map(kind_of_answer, rows))
        figures[path] = {"n": len(rows), **{k: v / len(rows) for k, v in counts.most_common()}}
        print(f"{path} ({len(rows)} problems): " + ", ".join(f"{k} {v / len(rows):.1%}" for k, v in counts.most_common()))
    if args.results:
        print(f"wrote {write_results(args.results, figures)}")


if __name__ == "__main__":
    main()
