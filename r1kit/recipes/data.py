"""The demo's data recipe, the one place it is written: synthetic verifiable maths, training
problems of 1-4 steps and held-out problems of 2-3 steps (the target's), operands below 100, no
question shared between them (by question hash).

`r1kit demo`, `r1kit claims` and the README's data command make the same sets: for a seed S,

    r1kit data synth --n 90000 --seed S --steps 1-4 --test-steps 2-3 --max-operand 100 \\
        --out DIR/train.jsonl --test-n 500 --test-out DIR/test.jsonl

writes what `demo_data(DIR, seed=S)` writes (a test checks it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from r1kit.data.schema import Example, question_hash, write_jsonl
from r1kit.data.synth import synth

TRAIN_STEPS = (1, 4)  # around the target's 2-3: training on 2-3-step problems alone did no better (25.8% vs 28.0%, docs/benchmarks.md)
TEST_STEPS = (2, 3)  # the target: 2-3-step problems with operands below 100 (the headline figures' held-out set)
MAX_OPERAND = 100  # the target's operand size
N_TRAIN = 90_000  # beat 30,000 once the fused multi-scale kernel gave 4,000-4,800 SFT steps in 20 minutes (90.8% / 91.4% vs 88.8%, docs/benchmarks.md)
N_TEST = 500  # the headline figures' held-out problems: one standard error is ~2 points


def train_test_sets(n_train: int, n_test: int, seed: int, steps: Sequence[int], test_steps: Sequence[int],
                    max_operand: int = MAX_OPERAND, templates: Sequence[str] | None = None,
                    exclude: Iterable[str] = (), op_weights: dict[str, float] | None = None,
                    ) -> tuple[list[Example], list[Example]]:
    """(train, test) sharing no question hash (and none in `exclude`), the held-out set with its own
    step range. The held-out set is drawn first, from the stream `synth_splits` uses (seed
    f"{seed}:test"), so with test_steps == steps the sets are synth_splits' exactly; `op_weights`
    reweights the training set only, so the held-out set keeps the templates' own mix."""
    exclude = set(exclude)
    knobs = dict(max_operand=max_operand, templates=templates)
    test = synth(n_test, f"{seed}:test", steps=test_steps, exclude=exclude, **knobs)
    exclude |= {question_hash(e.question) for e in test}
    return synth(n_train, seed, steps=steps, exclude=exclude, op_weights=op_weights, **knobs), test


def demo_data(out_dir: str | Path, n_train: int = N_TRAIN, n_test: int = N_TEST, seed: int = 0) -> dict[str, Path]:
    """Write the demo's sets to OUT_DIR/train.jsonl and OUT_DIR/test.jsonl; their paths by name."""
    train, test = train_test_sets(n_train, n_test, seed, TRAIN_STEPS, TEST_STEPS)
    paths = {"train": Path(out_dir) / "train.jsonl", "test": Path(out_dir) / "test.jsonl"}
    write_jsonl(paths["train"], train)
    write_jsonl(paths["test"], test)
    return paths
