"""Where the template-held-out figure is lost (issue 23, part A): accuracy by whether a problem has
a step that adds or takes away a stated number (its sign told by a verb) and whether it carries a
distractor, and for every such step whether the model's trace gives that number the gold sign,
by the verb that tells it. The unseen side's add and take-away verbs are words training never
writes ("wins", "donates"), so a sign the frame does not give away is a guess for a model without
outside English: this is how much of the figure rides on reading those signs.

    r1kit eval CHECKPOINT --data runs/w20/unseen.jsonl --n 500 --rows-out RUN/unseen_rows.jsonl
    python benchmarks/unseen_breakdown.py --data runs/w20/unseen.jsonl RUN_A/unseen_rows.jsonl RUN_B/unseen_rows.jsonl \
        [--results benchmarks/results/unseen_breakdown.json]

The same problems with one held-out factor taken back, to pair against (`benchmarks/paired.py`): every
add and take-away verb swapped for a training verb of the same sign, or the distractor sentence
dropped (the steps and answer do not change):

    python benchmarks/unseen_breakdown.py --data runs/w20/unseen.jsonl --write known_verbs --out runs/w20/unseen_known_verbs.jsonl
    python benchmarks/unseen_breakdown.py --data runs/w20/unseen.jsonl --write no_distractor --out runs/w20/unseen_no_distractor.jsonl
    r1kit eval CHECKPOINT --data runs/w20/unseen_known_verbs.jsonl --n 500 --rows-out RUN/unseen_known_verbs_rows.jsonl
    python benchmarks/unseen_breakdown.py --data runs/w20/unseen.jsonl RUN_A/unseen_rows.jsonl RUN_B/unseen_rows.jsonl \
        --variant known_verbs RUN_A/unseen_known_verbs_rows.jsonl RUN_B/unseen_known_verbs_rows.jsonl

Runs paired problem by problem, each rows file after the first against the first, on every problem
and apart on those with a step whose sign only its verb tells ("By evening she donates 24."): there
a model without outside English guesses, elsewhere the frame gives the sign away ("of the", "also"):

    python benchmarks/unseen_breakdown.py --data runs/u2k/unseen.jsonl RUN_A/unseen_rows.jsonl RUN_B/unseen_rows.jsonl --paired

With `--tokenizer CHECKPOINT` the paired differences are also taken by the prompt's length in the
model's tokens, in thirds of the set: the multi-scale layer's local window (32 tokens) covers less of
a longer question, so what lies further back is read through the global and symbolic branches alone.

Rows must be in the held-out file's order (as `--rows-out` writes them); the figures are pooled
over the rows files given (one per SFT run) and listed per file.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

from paired import interval, paired
from results_file import write_results

from r1kit.data.schema import read_jsonl, write_jsonl
from r1kit.data.synth.lexicon import FRAMES, GAIN, LOSE, SITUATIONS

VERBS = sorted({v for side in SITUATIONS for s in SITUATIONS[side] for v in (*s.gain, *s.lose)}
               | {v for side in GAIN for v in (*GAIN[side], *LOSE[side])}, key=len, reverse=True)


# each unseen-side verb and the training verb of the same sign that stands in for it
KNOWN_VERB = {"acquires": "buys", "wins": "gets", "is handed": "receives", "gathers": "collects", "restocks": "buys",
              "brings": "gets", "trades for": "finds", "arranges": "collects", "donates": "gives away", "throws away": "loses",
              "hands out": "gives away", "ships": "sells", "clears out": "sells", "feeds out": "uses", "swaps away": "gives away",
              "wraps up": "sells"}
KNOWN_VERB_PATTERN = re.compile(r"\b(" + "|".join(map(re.escape, sorted(KNOWN_VERB, key=len, reverse=True))) + r")\b")
# the unseen side's frames that write a sign step with nothing but the verb to tell the sign
VERB_ONLY_FRAMES = {f"lose{FRAMES['lose']['unseen'].index('By evening {s} {v} {n}.')}"}
UNSEEN_DISTRACTOR = re.compile(r"\s*[^.?!]*(went to the park|degrees outside)[^.?!]*\.")


def variant(example: dict, kind: str) -> dict:
    """The example with its unseen verbs swapped for training ones ("known_verbs") or its distractor
    sentence dropped ("no_distractor"); steps and answer unchanged."""
    question = example["question"]
    if kind == "known_verbs":
        question = KNOWN_VERB_PATTERN.sub(lambda m: KNOWN_VERB[m.group(1)], question)
    elif kind == "no_distractor":
        question = UNSEEN_DISTRACTOR.sub("", question).strip()
    else:
        raise ValueError(f"unknown variant {kind!r}")
    return {**example, "question": question, "meta": {**example["meta"], "variant": kind}}


def verb_of(sentence: str) -> str | None:
    """The lexicon's add or take-away verb the sentence writes (the longest match)."""
    return next((v for v in VERBS if re.search(rf"\b{re.escape(v)}\b", sentence)), None)


def sign_steps(example: dict) -> list[dict]:
    """The example's steps that add or take away a number the question states: the operand, the
    gold sign, the frame and the verb of the sentence that states it. The sum after a product of
    groups ("3 more boxes of 8") adds no stated number and is left out."""
    meta, out, previous = example["meta"], [], None
    sign_frames = iter(f for f in meta["frames"] if f.startswith(("gain", "lose")) and not f.startswith("gain_groups"))
    for step, reading in zip(example["steps"], meta["reading"]):
        expression, result = step.split(" = ")
        _, op, b = expression.split()
        if op in "+-" and b != previous:
            last = re.split(r"(?<=[.?!])\s+", (reading or "").strip())[-1]
            out.append({"operand": b, "sign": op, "frame": next(sign_frames, None), "verb": verb_of(last)})
        previous = result
    return out


def sign_by_verb_only(example: dict) -> bool:
    """Whether one of the problem's steps has a sign that only its (unseen) verb tells."""
    return any(frame in VERB_ONLY_FRAMES for frame in example["meta"]["frames"])


def paired_where(rows_x: list[dict], rows_y: list[dict], keep: list[bool]) -> dict:
    """x - y on the problems whose `keep` flag is set (flags in the rows' order)."""
    return paired(*([r for r, k in zip(rows, keep) if k] for rows in (rows_x, rows_y)))


def paired_by_readability(examples: list[dict], rows_x: list[dict], rows_y: list[dict]) -> dict:
    """x - y on every problem, on those with a sign only a verb tells, and on the rest."""
    guess = [sign_by_verb_only(e) for e in examples]
    return {"all": paired(rows_x, rows_y),
            "a sign only its verb tells": paired_where(rows_x, rows_y, guess),
            "every sign told by the frame": paired_where(rows_x, rows_y, [not g for g in guess])}


def length_thirds(lengths: list[int]) -> list[tuple[int, int]]:
    """[lo, hi) bounds cutting `lengths` into thirds of the set (as near as ties allow)."""
    ranked = sorted(lengths)
    cuts = [ranked[0], ranked[len(ranked) // 3], ranked[2 * len(ranked) // 3], ranked[-1] + 1]
    return [(lo, hi) for lo, hi in zip(cuts, cuts[1:]) if lo < hi]


def paired_by_length(lengths: list[int], rows_x: list[dict], rows_y: list[dict]) -> dict:
    """x - y on the problems of each third of the prompt lengths, keyed "prompt of LO-HI tokens" (a third
    with fewer than two of the rows given has no interval, and is left out)."""
    parts = {}
    for lo, hi in length_thirds(lengths):
        inside = [lo <= n < hi for n in lengths[: len(rows_x)]]
        if sum(inside) >= 2:
            parts[f"prompt of {lo}-{hi - 1} tokens"] = paired_where(rows_x, rows_y, inside)
    return parts


def traced_sign(completion: str, operand: str) -> str:
    """The sign the trace gives `operand` in its first + or - step on it: "+", "-", or "unused"."""
    m = re.search(rf"\d+ ([+-]) {operand} =", completion)
    return m.group(1) if m else "unused"


def breakdown(examples: list[dict], rows: list[dict]) -> dict:
    classes, verbs = defaultdict(list), defaultdict(lambda: defaultdict(int))
    for example, row in zip(examples, rows):
        if example["question"] != row["question"]:
            raise SystemExit("rows are not in the held-out file's order (use the rows r1kit eval --rows-out wrote for it)")
        steps = sign_steps(example)
        key = ("a sign step" if steps else "no sign step") + (", a distractor" if example["meta"].get("distractor") else "")
        classes[key].append(row["accuracy"])
        for s in steps:
            got = traced_sign(row["completion"], s["operand"])
            counts = verbs[f"{s['sign']} {s['verb']} ({s['frame']})"]
            counts["n"] += 1
            counts["gold sign" if got == s["sign"] else "other sign" if got != "unused" else "operand unused"] += 1
    return {"classes": {k: {"n": len(v), "accuracy": sum(v) / len(v)} for k, v in sorted(classes.items())},
            "sign_steps": {k: dict(v) for k, v in sorted(verbs.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="*", help="r1kit eval --rows-out files of the held-out set, one per run")
    parser.add_argument("--data", required=True, help="the held-out file the rows were evaluated on")
    parser.add_argument("--results", default="benchmarks/results/unseen_breakdown.json")
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar=("NAME", "ROWS"),
                        help="a variant's name, then its rows files in the order of the rows given: paired with them problem by problem")
    parser.add_argument("--paired", action="store_true",
                        help="each rows file after the first against the first, problem by problem, apart where only a verb tells a sign")
    parser.add_argument("--tokenizer", help="with --paired: a checkpoint whose tokenizer counts each prompt's tokens, to pair by length too")
    parser.add_argument("--write", choices=("known_verbs", "no_distractor"), help="write the held-out file's variant to --out, and stop")
    parser.add_argument("--out", help="where --write puts the variant")
    args = parser.parse_args()
    examples = read_jsonl(args.data).rows
    if args.write:
        if not args.out or Path(args.out).exists():
            parser.error("--write needs --out, a file that does not exist yet")
        write_jsonl(args.out, (variant(e, args.write) for e in examples))
        print(f"wrote {len(examples)} problems ({args.write}) to {args.out}")
        return
    if not args.rows:
        parser.error("give the rows files to break down (or --write a variant)")
    if args.paired and len(args.rows) < 2:
        parser.error("--paired needs two rows files or more: the first and the runs to take against it")
    if args.tokenizer and not args.paired:
        parser.error("--tokenizer splits the paired differences by prompt length: give --paired too")
    per_run, pooled_examples, pooled_rows, rows_of = {}, [], [], {}
    for path in args.rows:
        rows_of[path] = rows = read_jsonl(path).rows
        per_run[path] = breakdown(examples, rows)
        pooled_examples += examples[: len(rows)]
        pooled_rows += rows
    pooled = breakdown(pooled_examples, pooled_rows)
    for name, c in pooled["classes"].items():
        print(f"{name}: {c['accuracy']:.1%} of {c['n']}  (per run: "
              + ", ".join(f"{r['classes'][name]['accuracy']:.1%}" for r in per_run.values()) + ")")
    by_sign = defaultdict(lambda: defaultdict(int))
    for name, c in pooled["sign_steps"].items():
        print(f"  {name}: gold sign {c.get('gold sign', 0) / c['n']:.0%}, other {c.get('other sign', 0) / c['n']:.0%}, "
              f"unused {c.get('operand unused', 0) / c['n']:.0%} of {c['n']}")
        for k, v in c.items():
            by_sign[name[0]][k] += v
    for sign, c in by_sign.items():
        print(f"{sign} steps: gold sign {c.get('gold sign', 0) / c['n']:.1%}, other sign {c.get('other sign', 0) / c['n']:.1%} of {c['n']}")
    figures = {"data": args.data, "pooled": pooled, "by_sign": {k: dict(v) for k, v in by_sign.items()}, "per_run": per_run,
               "variants": {}}
    for name, *paths in args.variant:
        if len(paths) != len(args.rows):
            parser.error(f"--variant {name} needs one rows file per rows file given ({len(args.rows)})")
        by_run = []
        for path, base in zip(paths, args.rows):
            rows, base_rows = read_jsonl(path).rows, read_jsonl(base).rows
            if [r["gold"] for r in rows] != [r["gold"] for r in base_rows]:
                raise SystemExit(f"{path} and {base} are not the same problems in the same order")
            # the variant rewrites the questions by design: the golds are what must agree
            by_run.append({"rows": path, "accuracy": sum(r["accuracy"] for r in rows) / len(rows),
                           **paired(rows, base_rows, same="gold")})
        figures["variants"][name] = by_run
        print(f"{name}: " + ", ".join(f"{r['accuracy']:.1%} ({interval(r)})" for r in by_run))
    if args.paired:
        first, *later = args.rows
        base = rows_of[first]
        figures["paired"] = {}
        if args.tokenizer:
            from r1kit.data.tokenizer import Tokenizer

            tok = Tokenizer.load(args.tokenizer)
            lengths = [len(tok.encode_prompt(e["question"])) for e in examples]
            figures["prompt_tokens"] = {"tokenizer": args.tokenizer, "thirds": length_thirds(lengths)}
        for path in later:
            rows = rows_of[path]
            figures["paired"][path] = by_part = paired_by_readability(examples[: len(rows)], rows, base)
            if args.tokenizer:
                by_part.update(paired_by_length(lengths, rows, base))
            print(f"{path} - {first}: " + "; ".join(f"{part} {interval(p)} (n={p['n']})"
                                                   for part, p in by_part.items()))
    print(f"wrote {write_results(args.results, figures)}")


if __name__ == "__main__":
    main()
