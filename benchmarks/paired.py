"""Paired differences of greedy correctness between two evaluations of the same problems."""

from __future__ import annotations

import math


def paired(rows_x: list[dict], rows_y: list[dict], same: str = "question") -> dict:
    """Mean of the per-problem difference in greedy correctness (x - y) with its 95% interval
    (normal approximation over the paired differences). Rows are paired by place; `same` names the
    key that must agree place by place ("gold" where one set rewrites the other's questions)."""
    assert [r[same] for r in rows_x] == [r[same] for r in rows_y], "paired rows must be the same problems"
    d = [rx["accuracy"] - ry["accuracy"] for rx, ry in zip(rows_x, rows_y)]
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
    half = 1.96 * sd / math.sqrt(len(d))
    return {"n": len(d), "diff": mean, "ci95": [mean - half, mean + half]}


def interval(p: dict) -> str:
    """A paired difference with its 95% interval, as printed: +3.2% [+0.1%, +6.3%]."""
    return f"{p['diff']:+.1%} [{p['ci95'][0]:+.1%}, {p['ci95'][1]:+.1%}]"
