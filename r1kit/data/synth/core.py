"""The generator's draw loop: `synth` and `synth_splits` pick a step count and a template for each
problem, draw again when the numbers do not fit the knobs, reweight operations on request and keep
every question distinct (the templates are listed in docs/data.md).

Train / test disjointness
    `question_hash` hashes the normalised question (lower case, runs of whitespace folded to one
    space, stripped). `synth` never returns two questions with the same hash and skips any hash
    given in `exclude`; `synth_splits` draws the test set first (from its own random stream, so it
    does not change with n_train) and excludes its hashes from the training set.
"""

from __future__ import annotations

import math
import random
from typing import Iterable, Sequence

from r1kit.data.schema import MAX_STEPS, MIN_MAX_OPERAND, MIN_STEPS, Example, question_hash
# No cycle: the Draft lives in draft.py, which the templates and this loop both import, so the
# templates never import this loop and it imports their finished table directly (no lazy import).
from r1kit.data.synth.draft import Draft, Reject
from r1kit.data.synth.templates import TEMPLATES, Template


_TRIES_PER_PROBLEM = 50  # draws before a (template, steps) pair counts as having failed once
_FAILURES_BEFORE_DROP = 20  # failed problems in a row before a (template, steps) pair is given up


def steps_range(steps: int | Sequence[int] | range) -> tuple[int, ...]:
    """The allowed step counts: an int k -> (k,); a pair (lo, hi) -> lo..hi inclusive; a range -> its
    members. Each count must lie in 1..6."""
    if isinstance(steps, bool):
        raise ValueError(f"steps must be an int, a (min, max) pair or a range, got {steps!r}")
    if isinstance(steps, int):
        counts: tuple[int, ...] = (steps,)
    elif isinstance(steps, range):
        counts = tuple(steps)
    elif isinstance(steps, (tuple, list)) and len(steps) == 2 and all(isinstance(s, int) for s in steps):
        counts = tuple(range(steps[0], steps[1] + 1))
    else:
        raise ValueError(f"steps must be an int, a (min, max) pair or a range, got {steps!r}")
    if not counts or not all(MIN_STEPS <= k <= MAX_STEPS for k in counts):
        raise ValueError(f"steps must lie in {MIN_STEPS}..{MAX_STEPS}, got {steps!r}")
    return counts


def _attempt(template: Template, k: int, rng: random.Random, max_operand: int) -> Example | None:
    for _ in range(_TRIES_PER_PROBLEM):
        draft = Draft(rng, max_operand)
        try:
            question = template.build(draft, k)
        except Reject:
            continue
        if len(draft.steps) != k:  # a template bug, not bad luck
            raise AssertionError(f"template {template.name} made {len(draft.steps)} steps for k={k}")
        meta = {"source": "synth", "template": template.name, "n_steps": k, "max_operand": max_operand,
                "facts": sorted(set(draft.facts)), **draft.meta}
        answer = draft.steps[-1].rsplit(" = ", 1)[1]
        return Example(question, draft.steps, answer, k, meta)
    return None


OPERATIONS = "+-*/"


def _check_op_weights(op_weights: dict[str, float] | None) -> dict[str, float] | None:
    """Weights per operation for `synth(op_weights=...)`: keys among + - * /, finite values > 0, a
    missing operation weighs 1. None stays None (no reweighting)."""
    if op_weights is None:
        return None
    if unknown := [op for op in op_weights if op not in OPERATIONS]:
        raise ValueError(f"op_weights: unknown operation(s) {unknown}; allowed: + - * / (add sub mul div in the CLI)")
    if bad := {op: w for op, w in op_weights.items() if not (math.isfinite(w) and w > 0)}:
        raise ValueError(f"op_weights must be finite and > 0, got {bad}")
    return {op: float(op_weights.get(op, 1.0)) for op in OPERATIONS}


def _mean_op_weight(example: Example, op_weights: dict[str, float]) -> float:
    return sum(op_weights[step.split()[1]] for step in example.steps) / len(example.steps)


def _synth(n: int, rng: random.Random, steps, max_operand: int, templates, exclude: Iterable[str],
           op_weights: dict[str, float] | None = None) -> list[Example]:
    op_weights = _check_op_weights(op_weights)
    top_weight = max(op_weights.values()) if op_weights else 1.0
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a whole number >= 0, got {n!r}")
    if isinstance(max_operand, bool) or not isinstance(max_operand, int) or max_operand < MIN_MAX_OPERAND:
        raise ValueError(f"max_operand must be a whole number >= {MIN_MAX_OPERAND}, got {max_operand!r}")
    counts = steps_range(steps)
    names = list(TEMPLATES) if templates is None else list(templates)
    unknown = [t for t in names if not isinstance(t, Template) and t not in TEMPLATES]
    if unknown or not names:
        raise ValueError(f"unknown template(s) {unknown or names}; known: {', '.join(TEMPLATES)}")
    chosen = [t if isinstance(t, Template) else TEMPLATES[t] for t in names]
    names = [t.name for t in chosen]
    usable = {k: [t for t in chosen if k in t.steps] for k in counts}
    if missing := [k for k in counts if not usable[k]]:
        raise ValueError(f"no chosen template makes {missing}-step problems; templates: {', '.join(names)}")

    seen, out = set(exclude), []
    failures: dict[tuple[str, int], int] = {}
    duplicates_left = 100 + 20 * n  # repeated questions tolerated before the space counts as exhausted
    while len(out) < n:
        k = rng.choice(counts)
        if not usable[k]:
            raise ValueError(f"cannot make {k}-step problems with max_operand={max_operand} from the "
                             f"templates {', '.join(names)}: narrow `steps` or raise max_operand")
        template = rng.choice(usable[k])
        example = _attempt(template, k, rng, max_operand)
        if example is None:
            key = (template.name, k)
            failures[key] = failures.get(key, 0) + 1
            if failures[key] >= _FAILURES_BEFORE_DROP:
                usable[k] = [t for t in usable[k] if t is not template]
            continue
        failures[(template.name, k)] = 0
        # keep a problem with probability (mean weight of its steps' operations) / (largest weight);
        # the draw happens only with weights, so unweighted data stays exactly what it was
        if op_weights and rng.random() * top_weight > _mean_op_weight(example, op_weights):
            continue
        h = question_hash(example.context)  # a dialogue: its earlier turns too
        if h in seen:
            duplicates_left -= 1
            if duplicates_left < 0:
                raise ValueError(f"only {len(out)} distinct problems found for n={n} (steps {counts}, "
                                 f"max_operand {max_operand}): ask for fewer or widen the knobs")
            continue
        seen.add(h)
        out.append(example)
    return out


def synth(n: int, seed: int | str, steps: int | Sequence[int] | range = (1, 6), max_operand: int = 100,
          templates: Sequence[str] | None = None, exclude: Iterable[str] = (),
          op_weights: dict[str, float] | None = None) -> list[Example]:
    """`n` distinct synthetic problems, the same for the same arguments.

    seed         seeds a private random.Random (never the global RNG)
    steps        step counts to draw from, uniformly: an int, a (min, max) pair (inclusive) or a
                 range; default (1, 6), every count the generator makes
    max_operand  every number drawn for the question is at most this (>= 10); default 100, the
                 operand size of the SFT target. Stated facts (60 minutes) are exempt
    templates    names from TEMPLATES (or Template objects, such as grammar.GRAMMAR[split]) to draw
                 from; default None = all. For each step count a
                 template that can make it is chosen uniformly
    exclude      question hashes never to return (e.g. a test set's)
    op_weights   e.g. {"-": 3, "/": 3}: keep each drawn problem with probability proportional to
                 the mean weight of its steps' operations (missing ones weigh 1), so the slowest-
                 learnt operations are seen more often in training; default None = the templates'
                 own mix. A rejected problem is replaced by a fresh draw (step count included)

    A (template, steps) pair that keeps failing to fit the knobs (e.g. 6-step shopping with
    change when every number is at most 10) is dropped. ValueError for bad knobs, for a step count
    left with no template, and for knobs that allow fewer than n distinct questions."""
    return _synth(n, random.Random(seed), steps, max_operand, templates, exclude, op_weights)


def synth_splits(n_train: int, n_test: int, seed: int, steps: int | Sequence[int] | range = (1, 6),
                 max_operand: int = 100, templates: Sequence[str] | None = None,
                 exclude: Iterable[str] = (), op_weights: dict[str, float] | None = None,
                 test_steps: int | Sequence[int] | range | None = None,
                 ) -> tuple[list[Example], list[Example]]:
    """(train, test) sharing no question hash (and none in `exclude`). The test set comes from its
    own stream (seed f"{seed}:test"), so it does not change with n_train, with its own step range
    `test_steps` (None: `steps`); the train set is synth(n_train, seed, ...) with every test
    question skipped. Knobs as `synth`; `op_weights` reweights the train set only, so the test set
    keeps the templates' own mix."""
    exclude = set(exclude)
    test_steps = steps if test_steps is None else test_steps
    test = _synth(n_test, random.Random(f"{seed}:test"), test_steps, max_operand, templates, exclude)
    exclude |= {question_hash(e.context) for e in test}
    train = _synth(n_train, random.Random(seed), steps, max_operand, templates, exclude, op_weights)
    return train, test
