"""Where a trained checkpoint's reasoning goes wrong, step by step, on synthetic problems.

For each held-out problem, greedy-decode, then compare each written claim `a op b = c` with the
gold step in the same place: did the model copy the right operands (binding the question's
numbers), and is its result right for the operands it wrote (arithmetic), per operation.

    python benchmarks/sft_errors.py CHECKPOINT --data runs/data/test_2-3_100.jsonl [--n 200]
"""

from __future__ import annotations

import argparse
import json
import re
from fractions import Fraction

CLAIM = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data", required=True)
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()

    from r1kit.interop.checkpoint import load_pretrained
    from r1kit.data.schema import load_examples
    from r1kit.inference.engine import SamplingParams, generate
    from r1kit.data.tokenizer import Tokenizer

    model, tok = load_pretrained(args.checkpoint).eval(), Tokenizer.load(args.checkpoint)
    examples = load_examples(args.data).examples[: args.n]
    outputs = generate(model, [tok.encode_prompt(e.question) for e in examples],
                       SamplingParams(max_new_tokens=96), stop_ids={tok.eos_id})
    first_step_operands_right, claims, operands_right = 0, 0, 0
    by_op: dict[str, list[int]] = {}
    for example, ids in zip(examples, outputs):
        written = CLAIM.findall(tok.decode(ids))
        gold = [CLAIM.match(step).groups() for step in example.steps]
        for i, (g, w) in enumerate(zip(gold, written)):
            same_operands = g[:3] == w[:3]
            claims += 1
            operands_right += same_operands
            first_step_operands_right += same_operands and i == 0
            a, op, b, c = int(w[0]), w[1], int(w[2]), int(w[3])
            value = {"+": a + b, "-": a - b, "*": a * b, "/": Fraction(a, b) if b else None}[op]
            right = by_op.setdefault(op, [0, 0])
            right[0] += value == c
            right[1] += 1
    report = {
        "problems": len(examples),
        "first_step_operands_right": first_step_operands_right / len(examples),
        "claims_compared": claims,
        "operands_right": operands_right / max(claims, 1),
        "result_right_given_operands": {op: r / n for op, (r, n) in sorted(by_op.items())},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
