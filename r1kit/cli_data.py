"""`r1kit data`: its arguments and dispatch (the work: r1kit/data/)."""

from __future__ import annotations

import argparse
import sys
from typing import Callable


def steps_arg(text: str) -> tuple[int, int]:
    """'2-3' -> (2, 3); '3' -> (3, 3)."""
    lo, _, hi = text.partition("-")
    try:
        return int(lo), int(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a step count or a range such as 2-3, got {text!r}") from None


OP_NAMES = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def op_weights_arg(text: str) -> dict[str, float]:
    """'sub=3,div=3' -> {'-': 3.0, '/': 3.0}. Names, so the value never starts with '-' (which
    argparse would read as an option) and '*' never meets the shell; the symbols work too."""
    weights = {}
    for item in text.split(","):
        name, eq, value = item.strip().partition("=")
        try:
            weights[OP_NAMES.get(name.strip(), name.strip())] = float(value)
        except ValueError:
            eq = ""
        if not eq:
            raise argparse.ArgumentTypeError(f"expected OP=WEIGHT pairs such as 'sub=3,div=3' "
                                             f"(OP one of {', '.join(OP_NAMES)}), got {text!r}")
    return weights


def cmd_data(args: argparse.Namespace) -> None:
    import dataclasses
    from collections import Counter

    from r1kit.data import schema as data, synth
    from r1kit.data.synth.grammar import splits_with_grammar

    try:
        if args.data_command == "drills":
            n = data.write_jsonl(args.out, synth.drills(args.n, args.seed, args.max_operand, args.steps))
            print(f"wrote {n} arithmetic drills ({args.steps[0]}-{args.steps[1]} steps, max operand {args.max_operand}) to {args.out}")
            return
        if args.data_command == "gsm8k-scale":
            from r1kit.data.gsm8k_scale import demo_scale

            rows = data.load_gsm8k(args.file)
            n = data.write_jsonl(args.out, demo_scale(rows, args.steps, args.max_operand))
            print(f"wrote {n} of {len(rows)} GSM8K problems ({args.steps[0]}-{args.steps[1]} steps of whole numbers, "
                  f"operands from the question at most {args.max_operand}) to {args.out}")
            return
        if args.data_command == "inspect":
            examples, skipped = data.load_examples(args.file, skip_bad=args.skip_bad)
            print(f"{args.file}: {len(examples)} examples, {skipped} malformed line(s) skipped")
            by_steps = Counter(e.optimal_steps for e in examples)
            print("optimal steps: " + ", ".join(f"{k}: {by_steps[k]}" for k in sorted(by_steps)))
            by_kind = Counter(e.meta.get("template", e.meta.get("source", "unknown")) for e in examples)
            print("templates: " + ", ".join(f"{k}: {v}" for k, v in sorted(by_kind.items())))
            lengths = [len(e.question) for e in examples]
            print(f"question length: mean {sum(lengths) / len(lengths):.0f} characters, max {max(lengths)}")
            return
        if args.steps and (args.min_steps is not None or args.max_steps is not None):
            raise ValueError("give --steps or --min-steps/--max-steps, not both")
        if args.steps:
            steps = args.steps
        else:
            steps = (data.MIN_STEPS if args.min_steps is None else args.min_steps,
                     data.MAX_STEPS if args.max_steps is None else args.max_steps)
        if (args.test_n is None) != (args.test_out is None):
            raise ValueError("--test-n and --test-out go together")
        if args.test_steps and args.test_n is None:
            raise ValueError("--test-steps is the held-out set's: it goes with --test-n and --test-out")
        templates = args.templates.split(",") if args.templates else None
        exclude = {data.question_hash(e.context) for f in args.exclude for e in data.load_examples(f).examples}
        knobs = dict(max_operand=args.max_operand, templates=templates, exclude=exclude, op_weights=args.op_weights)
        for held_out in ("unseen", "follow_up"):
            if (getattr(args, f"{held_out}_n") is None) != (getattr(args, f"{held_out}_out") is None):
                raise ValueError(f"--{held_out.replace('_', '-')}-n and --{held_out.replace('_', '-')}-out go together")
        if args.grammar_share or args.unseen_n is not None or args.follow_up_n is not None:
            if args.test_n is None:
                raise ValueError("--grammar-share, --unseen-n and --follow-up-n go with --test-n and --test-out")
            test_steps = args.test_steps or steps
            sets = splits_with_grammar(args.n, args.test_n, args.unseen_n or 0, args.seed, args.grammar_share,
                                       args.follow_up_share, args.follow_up_n or 0, steps=steps, test_steps=test_steps, **knobs)
            outputs = [(sets["train"], args.out, steps), (sets["test"], args.test_out, test_steps)]
            if args.unseen_n is not None:
                outputs.append((sets["unseen"], args.unseen_out, test_steps))
            if args.follow_up_n is not None:
                outputs.append((sets["follow_up"], args.follow_up_out, (1, 1)))
        elif args.test_n is not None:
            test_steps = args.test_steps or steps
            train, test = synth.synth_splits(args.n, args.test_n, args.seed, steps=steps, test_steps=test_steps, **knobs)
            outputs = [(train, args.out, steps), (test, args.test_out, test_steps)]
        else:
            outputs = [(synth.synth(args.n, args.seed, steps=steps, **knobs), args.out, steps)]
        if args.word_noise or args.word_insert or args.word_swap or args.new_nouns:  # training questions only: held-out sets are read as written
            from r1kit.data.synth.word_noise import with_word_noise

            noisy = with_word_noise(outputs[0][0], args.word_noise, args.seed, insert=args.word_insert, swap=args.word_swap,
                                    new_nouns=args.new_nouns)
            outputs[0] = (noisy, *outputs[0][1:])
        if args.answers_only:  # RL data: the reward reads the answer, and no trace is given away
            outputs[0] = ([dataclasses.replace(e, steps=[]) for e in outputs[0][0]], *outputs[0][1:])
        for examples, path, (lo, hi) in outputs:
            data.write_jsonl(path, examples)
            used = sorted({e.meta["template"] for e in examples})
            print(f"wrote {len(examples)} problems ({lo}-{hi} steps, max operand {args.max_operand}, "
                  f"{len(used)} templates: {', '.join(used)}) to {path}")
    except ValueError as e:  # bad knobs, or a malformed file (data.DataError: FILE:LINE: why)
        print(f"r1kit data {args.data_command}: error: {e}", file=sys.stderr)
        sys.exit(2)


def add_data(sub, at_least: Callable) -> None:
    """The command's parser on `sub` (cli.py's subparsers), with cli.py's argument types."""
    p = sub.add_parser("data", help="make or inspect maths datasets (JSONL)")
    data_sub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    q = data_sub.add_parser("drills", help="write arithmetic drills (one step, or chains worked left to right) to mix into SFT data")
    q.add_argument("--n", type=at_least(1), required=True)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--max-operand", type=at_least(1), default=100)
    q.add_argument("--steps", type=steps_arg, default=(1, 1), help="claims per drill, e.g. 1 (default) or a chain of 4-8")
    q.add_argument("--out", required=True)
    q.set_defaults(func=cmd_data)
    q = data_sub.add_parser("synth", help="write synthetic verifiable word problems (docs/data.md)")
    q.add_argument("--n", type=at_least(1), required=True, help="number of problems")
    q.add_argument("--seed", type=int, default=0, help="same seed and knobs, same problems")
    q.add_argument("--out", required=True, help="JSONL file to write")
    q.add_argument("--steps", type=steps_arg, help="steps per problem, e.g. 3 or 2-3 (default 1-6)")
    q.add_argument("--min-steps", type=int, help="fewest steps (default 1)")
    q.add_argument("--max-steps", type=int, help="most steps (default 6)")
    q.add_argument("--max-operand", type=at_least(1), default=100, help="largest number drawn for a question (default 100)")
    q.add_argument("--templates", help="comma-separated template names (default: all; see docs/data.md)")
    q.add_argument("--op-weights", type=op_weights_arg, metavar="OP=W,...",
                   help="e.g. sub=3,div=3 (add, sub, mul, div): keep problems in proportion to their operations' "
                        "mean weight (missing ones weigh 1), for training sets; --test-out keeps the natural mix")
    q.add_argument("--test-n", type=at_least(1), help="also write this many held-out problems sharing no question with --out")
    q.add_argument("--test-out", help="JSONL file for the held-out problems")
    q.add_argument("--test-steps", type=steps_arg,
                   help="steps per held-out problem, e.g. 2-3 (the demo's target; default: as --steps)")
    q.add_argument("--exclude", action="append", default=[], metavar="FILE",
                   help="a JSONL file whose questions must not be generated (repeatable), e.g. an existing test set")
    q.add_argument("--grammar-share", type=float, default=0.0, metavar="F",
                   help="this share of --n from the phrasing grammar's training side (the demo's: 0.5; docs/data.md)")
    q.add_argument("--unseen-n", type=at_least(1),
                   help="also write this many template-held-out problems: situations, frames and verbs never in training")
    q.add_argument("--unseen-out", help="JSONL file for the template-held-out problems")
    q.add_argument("--follow-up-share", type=float, default=0.0, metavar="F",
                   help="this share of the grammar's problems as a dialogue's follow-up question (the demo's: 0.2)")
    q.add_argument("--follow-up-n", type=at_least(1), help="also write this many held-out follow-up questions (unseen side)")
    q.add_argument("--follow-up-out", help="JSONL file for the held-out follow-ups")
    q.add_argument("--word-noise", type=float, default=0.0, metavar="P",
                   help="replace each word of --out's questions with a made-up one with probability P (numbers kept; docs/data.md)")
    q.add_argument("--word-insert", type=float, default=0.0, metavar="Q",
                   help="put one or two made-up words into each sentence of --out's questions with probability Q (docs/data.md)")
    q.add_argument("--word-swap", type=float, default=0.0, metavar="W",
                   help="replace each word of --out's questions with another word of the training side with probability W (docs/data.md)")
    q.add_argument("--new-nouns", type=float, default=0.0, metavar="N",
                   help="give this share of --out's grammar problems made-up nouns for their things, containers and sharers, "
                        "one word each wherever written, and keep noise and swap off every grammar problem's nouns (docs/data.md)")
    q.add_argument("--answers-only", action="store_true",
                   help="write --out's problems without their steps: questions and final answers, for RL (held-out sets keep theirs)")
    q.set_defaults(func=cmd_data)
    q = data_sub.add_parser("gsm8k-scale", help="GSM8K problems at the demo's scale (2-3 whole-number steps), for evaluation")
    q.add_argument("file", help="GSM8K JSONL (question, answer with <<annotations>> and '#### N')")
    q.add_argument("--out", required=True, help="JSONL file to write, in r1kit's schema")
    q.add_argument("--steps", type=steps_arg, default=(2, 3), help="annotations per solution (default 2-3)")
    q.add_argument("--max-operand", type=at_least(1), default=100, help="largest number taken from the question (default 100)")
    q.set_defaults(func=cmd_data)
    q = data_sub.add_parser("inspect", help="count a JSONL dataset's examples by steps and template")
    q.add_argument("file", help="JSONL file (r1kit or GSM8K schema)")
    q.add_argument("--skip-bad", action="store_true", help="skip and count malformed lines instead of failing")
    q.set_defaults(func=cmd_data)
