"""GSM8K questions at the demo's scale: an outside source of phrasings for evaluation (issue 23).

A GSM8K row fits when its solution is a chain the demo model could write: 2-3 calculator
annotations, each one `a op b = c` on whole numbers (op among + - * /, exact), every operand
either an earlier result or a number the question writes in digits and at most `max_operand`,
and the final answer equal to the last result. r1kit trains on none of them: the whole subset is
a test set.

    r1kit data gsm8k-scale ../shared/data/gsm8k/train.jsonl --out runs/data/gsm8k_2-3.jsonl
"""

from __future__ import annotations

import re
from typing import Iterable

from r1kit.data.schema import Example

_STEP = re.compile(r"^\s*(\d+)\s*([-+*/])\s*(\d+)\s*=\s*(\d+)\s*$")


def _question_numbers(question: str) -> set[int]:
    """Whole numbers the question writes in digits ("$1,200" -> 1200; "2.5" gives none)."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", question)
    return {int(m) for m in re.findall(r"(?<![\d.])\d+(?!\.\d)", text)}


def fits_demo_scale(example: Example, steps: tuple[int, int] = (2, 3), max_operand: int = 100) -> Example | None:
    """The example rewritten with r1kit's synthetic step form (`a op b = c`), or None when it does not fit."""
    if not steps[0] <= len(example.steps) <= steps[1]:
        return None
    stated, results, rewritten = _question_numbers(example.question), [], []
    for step in example.steps:
        m = _STEP.match(step.replace("x", "*"))
        if m is None:
            return None
        a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
        exact = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else None}[op]
        if exact != c or c < 1:
            return None
        for operand in (a, b):
            if operand not in results and (operand not in stated or operand > max_operand):
                return None
        results.append(c)
        rewritten.append(f"{a} {op} {b} = {c}")
    if str(results[-1]) != example.answer:
        return None
    meta = {**example.meta, "source": "gsm8k", "template": "gsm8k", "n_steps": len(rewritten)}
    return Example(example.question, rewritten, example.answer, len(rewritten), meta)


def demo_scale(examples: Iterable[Example], steps: tuple[int, int] = (2, 3), max_operand: int = 100) -> list[Example]:
    return [fit for e in examples if (fit := fits_demo_scale(e, steps, max_operand)) is not None]

