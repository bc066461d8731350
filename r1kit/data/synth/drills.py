"""Arithmetic drills for mixing into SFT data: one claim ("Work out 47 + 38.") or a chain worked
left to right, whose numbers mirror the word problems' steps."""

from __future__ import annotations

import math
import random

from r1kit.data.schema import MIN_MAX_OPERAND, Example
from r1kit.data.synth.core import OPERATIONS


def drills(n: int, seed: int | str, max_operand: int = 100, steps: int | tuple[int, int] = 1) -> list[Example]:
    """`n` arithmetic drills, for mixing into SFT data: one step ("Work out 47 + 38.") or, with
    `steps` above 1, a chain worked left to right ("From left to right, work out 47 + 38 * 3 - 12.",
    steps `47 + 38 = 85`, `85 * 3 = 255`, `255 - 12 = 243`).

    A word problem spends most of its tokens on words (2.5 claims in ~80 tokens, 44 of them the
    question's); a chain spends them on the arithmetic that small models learn slowest, one claim
    per ~10 tokens. The numbers mirror the word problems' steps: sums and differences of an earlier
    result (up to 10 * max_operand) and a stated number (up to max_operand); products of a quantity
    (up to max_operand) and a count (up to max(10, isqrt(max_operand))) or, in chains, another
    quantity; exact quotients by such a count (by any exact divisor up to max_operand in chains).
    `steps`: claims per drill, an int or an inclusive (min, max) range drawn uniformly."""
    if max_operand < MIN_MAX_OPERAND:
        raise ValueError(f"max_operand must be at least {MIN_MAX_OPERAND}, got {max_operand}")
    lo, hi = (steps, steps) if isinstance(steps, int) else steps
    if not 1 <= lo <= hi:
        raise ValueError(f"drill steps must be a count >= 1 or a range lo <= hi, got {steps}")
    rng = random.Random(f"{seed}:drills")
    count_max = max(10, math.isqrt(max_operand))
    out = []
    for _ in range(n):
        op = rng.choice(OPERATIONS)
        if op == "+":
            a, b = rng.randint(1, 10 * max_operand), rng.randint(1, max_operand)
            c = a + b
        elif op == "-":
            a = rng.randint(2, 10 * max_operand)
            b = rng.randint(1, min(a - 1, max_operand))
            c = a - b
        elif op == "*":
            a, b = rng.randint(2, max_operand), rng.randint(2, count_max)
            c = a * b
        else:
            b, c = rng.randint(2, count_max), rng.randint(1, max_operand)
            a = b * c
        claims, expression = [f"{a} {op} {b} = {c}"], f"{a} {op} {b}"
        # a fixed length draws nothing, so one-step drills keep the random stream they always had
        for _ in range(rng.randint(lo, hi) - 1 if hi > lo else lo - 1):
            op, b, c_next = _chain_claim(rng, c, max_operand, count_max)
            claims.append(f"{c} {op} {b} = {c_next}")
            expression += f" {op} {b}"
            c = c_next
        question = f"Work out {expression}." if len(claims) == 1 else f"From left to right, work out {expression}."
        out.append(Example(question=question, steps=claims, answer=str(c), optimal_steps=len(claims),
                           meta={"source": "drill", "template": "drill", "n_steps": len(claims), "max_operand": max_operand}))
    return out


def _chain_claim(rng: random.Random, a: int, max_operand: int, count_max: int) -> tuple[str, int, int]:
    """(op, b, a op b) continuing a chain from the result `a` (>= 1): results stay whole and
    positive, and no larger than the word problems' (a product of an earlier result and a count)."""
    divisors = [d for d in range(2, min(a - 1, max_operand) + 1) if a % d == 0]
    allowed = [op for op, ok in (("+", a <= 10 * max_operand), ("-", a >= 2), ("*", a <= 10 * max_operand),
                                 ("/", bool(divisors))) if ok] or ["+"]
    op = rng.choice(allowed)
    if op == "+":
        b = rng.randint(1, max_operand)
        return op, b, a + b
    if op == "-":
        b = rng.randint(1, min(a - 1, max_operand))
        return op, b, a - b
    if op == "*":
        b = rng.randint(2, max_operand if a <= max_operand and rng.random() < 0.5 else count_max)
        return op, b, a * b
    small = [d for d in divisors if d <= count_max]  # the word problems mostly divide by a count
    b = rng.choice(small if small and (rng.random() < 0.75 or len(small) == len(divisors)) else divisors)
    return op, b, a // b
