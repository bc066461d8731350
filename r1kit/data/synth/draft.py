"""One synthetic problem being built: the Draft that draws its numbers and records its steps, the
people who appear in the questions, and two helpers the templates share.

What every synthetic problem guarantees
    Every operand of every step is a number written in the question or an earlier step's result,
    so a verifier can check grounding literally. That includes the constants of conversions and
    percentages: the question states "An hour has 60 minutes." or "35 out of every 100 sheep",
    never a bare "percent". Such stated constants are the problem's `facts`; they are exempt from
    `max_operand` (an hour has 60 minutes whatever the difficulty). Results are positive whole
    numbers: divisions divide evenly, no intermediate goes below 1, and every result is at most
    max(max_operand, largest fact) ** 2.

    Why the numbers are drawn the way they are (learnability for a ~1M-parameter model): a
    multiplication pairs a quantity (up to max_operand) with a count (how many items, hours,
    weeks, people: up to max(10, isqrt(max_operand)), at most max_operand), as real word problems
    do, so a 2-step problem with operands below 100 multiplies a 2-digit number by a 1- or
    2-digit count, not two 2-digit numbers. Steps follow the order in which the question states
    its numbers wherever the arithmetic allows.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Sequence


class Reject(Exception):
    """The numbers drawn do not fit the template's constraints; draw again."""


@dataclass(frozen=True)
class Person:
    name: str
    female: bool

    @property
    def she(self) -> str:
        return "she" if self.female else "he"

    @property
    def his(self) -> str:
        return "her" if self.female else "his"

    @property
    def him(self) -> str:
        return "her" if self.female else "him"

    @property
    def She(self) -> str:
        return self.she.capitalize()

    @property
    def His(self) -> str:
        return self.his.capitalize()


_FEMALE = ("Ana Maya Lena Priya Sofia Grace Amara Yuki Chloe Nadia "
           "Hannah Zara Mei Olivia Fatima Ingrid Rosa Aisha Emma Leila").split()
_MALE = ("Tom Leo Omar Ravi Jonas Diego Kenji Samuel Ethan Malik "
         "Arjun Felix Hugo Noah Tariq Mateo Kofi Ivan Liam Daniel").split()
PEOPLE = [Person(n, True) for n in _FEMALE] + [Person(n, False) for n in _MALE]


class Draft:
    """One problem being built: draws numbers within the knobs and records each step, rejecting
    (raising Reject) any result that is not a whole number in [1, result_max]."""

    def __init__(self, rng: random.Random, max_operand: int):
        self.rng = rng
        self.max_operand = max_operand
        self.count_max = min(max_operand, max(10, math.isqrt(max_operand)))
        self.steps: list[str] = []
        self.facts: list[int] = []
        self.meta: dict[str, Any] = {}  # what a builder records about its choices (grammar.py), kept in Example.meta

    @property
    def result_max(self) -> int:
        return max([self.max_operand, *self.facts]) ** 2

    def num(self, lo: int = 2, hi: int | None = None) -> int:
        """A quantity in [lo, min(hi, max_operand)]."""
        hi = self.max_operand if hi is None else min(hi, self.max_operand)
        if hi < lo:
            raise Reject
        return self.rng.randint(lo, hi)

    def count(self, lo: int = 2, hi: int | None = None) -> int:
        """A count (items, hours, people) in [lo, min(hi, count_max)]."""
        return self.num(lo, self.count_max if hi is None else min(hi, self.count_max))

    def divisor(self, value: int, lo: int = 2, hi: int | None = None) -> int:
        """A divisor of `value` in [lo, min(hi, value - 1)] (default hi: count_max), so the quotient is >= 2."""
        hi = min(self.count_max if hi is None else min(hi, self.max_operand), value - 1)
        options = [d for d in range(lo, hi + 1) if value % d == 0]
        if not options:
            raise Reject
        return self.rng.choice(options)

    def fact(self, value: int) -> int:
        """A constant the question states (60 minutes in an hour): exempt from max_operand."""
        self.facts.append(value)
        return value

    def pick(self, options: Sequence[Any]) -> Any:
        return self.rng.choice(options)

    def sample(self, options: Sequence[Any], k: int) -> list[Any]:
        return self.rng.sample(list(options), k)

    def person(self) -> Person:
        return self.rng.choice(PEOPLE)

    def op(self, a: int, sym: str, b: int) -> int:
        """Record the step `a sym b = c` and return c."""
        if sym == "+":
            c = a + b
        elif sym == "-":
            c = a - b
        elif sym == "*":
            c = a * b
        elif sym == "/":
            if b == 0 or a % b:
                raise Reject
            c = a // b
        else:
            raise ValueError(f"unknown operation {sym!r}")
        if not 1 <= c <= self.result_max or (sym in "*/" and b == 1) or (sym == "*" and a == 1):
            raise Reject
        self.steps.append(f"{a} {sym} {b} = {c}")
        return c

    def total(self, values: Sequence[int]) -> int:
        """Sum `values` left to right, one step per addition."""
        acc = values[0]
        for v in values[1:]:
            acc = self.op(acc, "+", v)
        return acc


def join_and(parts: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def pairs_within(d: Draft, n: int, budget: int) -> list[tuple[int, int]]:
    """n (count, quantity) pairs whose products sum to at most `budget` (each product >= 4)."""
    pairs, spent = [], 0
    for i in range(n):
        cap = budget - spent - 4 * (n - i - 1)
        q = d.count(2, cap // 2)
        p = d.num(2, cap // q)
        pairs.append((q, p))
        spent += q * p
    return pairs
