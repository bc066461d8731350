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
from r1kit.data.schema import write_jsonl
from r1kit.data.synth import synth_splits

TRAIN_STEPS = (1, 4)  # around the target's 2-3: training on 2-3-step problems alone did no better (25.8% vs 28.0%, docs/benchmarks.md)
TEST_STEPS = (2, 3)  # the target: 2-3-step problems with operands below 100 (the headline figures' held-out set)
MAX_OPERAND = 100  # the target's operand size
N_TRAIN = 90_000  # beat 30,000 once the fused multi-scale kernel gave 4,000-4,800 SFT steps in 20 minutes (90.8% / 91.4% vs 88.8%, docs/benchmarks.md)
N_TEST = 500  # the headline figures' held-out problems: one standard error is ~2 points


def demo_data(out_dir: str | Path, n_train: int = N_TRAIN, n_test: int = N_TEST, seed: int = 0) -> dict[str, Path]:
    """Write the demo's sets to OUT_DIR/train.jsonl and OUT_DIR/test.jsonl; their paths by name."""
    train, test = synth_splits(n_train, n_test, seed, steps=TRAIN_STEPS, max_operand=MAX_OPERAND, test_steps=TEST_STEPS)
    paths = {"train": Path(out_dir) / "train.jsonl", "test": Path(out_dir) / "test.jsonl"}
    write_jsonl(paths["train"], train)
    write_jsonl(paths["test"], test)
    return paths
