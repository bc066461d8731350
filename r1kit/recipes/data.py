"""The demo's data recipe, the one place it is written: synthetic verifiable maths, training
problems of 1-4 steps, half from the 27 templates and half from the phrasing grammar's training
side (a fifth of those are a dialogue's follow-up question), a fifth of their questions' words made
up (word noise) and another fifth swapped for other words of the training side (word swap);
held-out problems of 2-3 steps (the target's) from the templates (`test`) and from the grammar's
unseen side (`unseen`: situations, sentence frames and verbs never trained on), and held-out
follow-ups from that side (`follow_up`); operands below 100; no question shared between the sets
(by question hash).

`r1kit demo`, `r1kit claims` and the README's data command make the same sets: for a seed S,

    r1kit data synth --n 90000 --seed S --steps 1-4 --test-steps 2-3 --max-operand 100 \\
        --grammar-share 0.5 --follow-up-share 0.2 --word-noise 0.2 --word-swap 0.2 --out DIR/train.jsonl \\
        --test-n 500 --test-out DIR/test.jsonl --unseen-n 500 --unseen-out DIR/unseen.jsonl \\
        --follow-up-n 300 --follow-up-out DIR/follow_up.jsonl

writes what `demo_data(DIR, seed=S)` writes (a test checks it). RL's problems come after them:
held-out 5-step ones, one step past the longest trace SFT sees (`hard`), and RL's training
problems of 3-5 steps as questions and final answers only (`rl_train`), sharing no question with
any set above:

    r1kit data synth --n 4000 --seed S --steps 3-5 --test-steps 5 --max-operand 100 --answers-only \\
        --exclude DIR/train.jsonl --exclude DIR/test.jsonl --exclude DIR/unseen.jsonl \\
        --exclude DIR/follow_up.jsonl --out DIR/rl_train.jsonl --test-n 500 --test-out DIR/hard.jsonl
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from r1kit.data.schema import question_hash, write_jsonl
from r1kit.data.synth import synth_splits
from r1kit.data.synth.grammar import splits_with_grammar
from r1kit.data.synth.word_noise import with_word_noise

TRAIN_STEPS = (1, 4)  # around the target's 2-3: training on 2-3-step problems alone did no better (25.8% vs 28.0%, docs/benchmarks.md)
TEST_STEPS = (2, 3)  # the target: 2-3-step problems with operands below 100 (the headline figures' held-out set)
MAX_OPERAND = 100  # the target's operand size
N_TRAIN = 90_000  # beat 30,000 once the fused multi-scale kernel gave 4,000-4,800 SFT steps in 20 minutes (90.8% / 91.4% vs 88.8%, docs/benchmarks.md)
N_TEST = 500  # the headline figures' held-out problems: one standard error is ~2 points
N_UNSEEN = 500  # template-held-out problems, reported beside the test set's
GRAMMAR_SHARE = 0.5  # of the training problems, from the phrasing grammar (docs/benchmarks.md, "Reading beyond the templates")
WORD_NOISE = 0.2  # each word of a training question made up with this probability: 30.8% -> 44.4-49.0% template-held-out at 20 minutes (0.1: 44.0%), in-template 90.4-93.6% (docs/benchmarks.md)
WORD_SWAP = 0.2  # ... or swapped for another training-side word: template-held-out 49.1% mean over three SFT seeds (59.0 / 36.8 / 51.6) against noise alone's 42.5%, paired +6.6 points, in-template 90.1% against 93.3% (docs/benchmarks.md)
FOLLOW_UP_SHARE = 0.2  # of the grammar's problems, a dialogue's follow-up question ("Then she gives away 10. How many now?")
N_FOLLOW_UP = 300  # held-out follow-ups (the grammar's unseen side)
HARD_STEPS = 5  # RL's held-out set: one step past SFT's longest traces, where the SFT model still solves a few (3.5% greedy, pass@8 6%) and RL gains (docs/benchmarks.md)
RL_STEPS = (3, 5)  # RL's training problems, a third at HARD_STEPS: +29 points there in 15 minutes, 2-3 steps kept (2-5: +15; 5 alone: +29 but -19 on 2-3 steps; docs/benchmarks.md)
N_HARD = 500  # held-out hard problems: the RL target's >= 500 paired problems
N_RL = 4000  # RL's training problems, questions and answers only: more than a 15-minute run's ~3,400 prompts

# the held-out sets each stage is evaluated on, by name, and the file its summary goes to: in-template
# (the templates' own test set), template-held-out (situations, frames and verbs never trained on),
# follow-up questions of dialogues on that unseen side, and RL's harder problems
EVAL_SETS = {"test": "eval.json", "unseen": "eval_unseen.json", "follow_up": "eval_follow_up.json", "hard": "eval_hard.json"}


def rows_file(eval_file: str | Path) -> Path:
    """Where the demo writes the per-problem rows beside one of its evaluations: eval_unseen.json ->
    eval_unseen_rows.jsonl."""
    eval_file = Path(eval_file)
    return eval_file.with_name(f"{eval_file.stem}_rows.jsonl")


def demo_data(out_dir: str | Path, n_train: int = N_TRAIN, n_test: int = N_TEST, seed: int = 0,
              n_unseen: int = N_UNSEEN, n_follow_up: int = N_FOLLOW_UP, n_hard: int = N_HARD,
              n_rl: int = N_RL) -> dict[str, Path]:
    """Write the demo's sets to OUT_DIR/{train,test,unseen,follow_up,rl_train,hard}.jsonl; their
    paths by name."""
    sets = splits_with_grammar(n_train, n_test, n_unseen, seed, GRAMMAR_SHARE, FOLLOW_UP_SHARE, n_follow_up,
                               steps=TRAIN_STEPS, test_steps=TEST_STEPS, max_operand=MAX_OPERAND)
    sets["train"] = with_word_noise(sets["train"], WORD_NOISE, seed, swap=WORD_SWAP)  # as `data synth --word-noise --word-swap` writes it
    taken = {question_hash(e.context) for examples in sets.values() for e in examples}
    rl_train, sets["hard"] = synth_splits(n_rl, n_hard, seed, steps=RL_STEPS, test_steps=HARD_STEPS,
                                          max_operand=MAX_OPERAND, exclude=taken)
    sets["rl_train"] = [dataclasses.replace(e, steps=[]) for e in rl_train]  # RL is given no trace
    paths = {name: Path(out_dir) / f"{name}.jsonl" for name in sets}
    for name, examples in sets.items():
        write_jsonl(paths[name], examples)
    return paths
