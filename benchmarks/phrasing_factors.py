"""Which held-out factor the model cannot read (issue 23, part A): greedy accuracy of a checkpoint on
2-3-step problems of the phrasing grammar's training side with none, one or all of its factors
(situations, frames, generic verbs, distractor sentences) taken from the unseen side.

    python benchmarks/phrasing_factors.py CHECKPOINT --train TRAIN.jsonl [--n 500] \\
        [--results benchmarks/results/phrasing_factors.json]

`seen` is the training side itself (fresh questions: no question of TRAIN.jsonl), `unseen` the
template-held-out set's side (every factor unseen); a one-factor set differs from `seen` only in
that factor, so its drop from `seen` is what that factor costs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from results_file import write_results

KEYS = ("n", "accuracy", "step_validity", "mean_steps", "mean_optimal_steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--train", required=True, help="the checkpoint's training data: its questions are never tested")
    parser.add_argument("--n", type=int, default=500, help="problems per set")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--results", default="benchmarks/results/phrasing_factors.json")
    args = parser.parse_args()

    from r1kit.data.schema import load_examples, question_hash
    from r1kit.data.synth import synth
    from r1kit.data.synth.grammar import GRAMMAR, ONE_UNSEEN
    from r1kit.data.tokenizer import Tokenizer
    from r1kit.evaluate import evaluate
    from r1kit.interop.checkpoint import load_pretrained

    exclude = {question_hash(e.context) for e in load_examples(args.train).examples}
    templates = {"seen": GRAMMAR["train"], **{f"unseen {f}": t for f, t in ONE_UNSEEN.items()}, "unseen": GRAMMAR["unseen"]}
    model, tok = load_pretrained(args.checkpoint), Tokenizer.load(args.checkpoint)
    sets = {}
    for name, template in templates.items():
        examples = synth(args.n, f"{args.seed}:{name}", (2, 3), templates=[template], exclude=exclude)
        summary = evaluate(model, tok, examples, batch_size=64, max_new_tokens=128).summary()  # r1kit eval's settings
        sets[name] = {k: summary[k] for k in KEYS}
        print(f"{name:24s} {summary['accuracy']:6.1%}  step validity {summary['step_validity']:.3f}", flush=True)
    print(f"wrote {write_results(args.results, {'checkpoint': str(Path(args.checkpoint)), 'train': args.train, 'sets': sets})}")


if __name__ == "__main__":
    main()
