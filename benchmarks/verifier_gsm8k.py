"""The verifier on GSM8K's gold solutions, on two halves of the training split: one studied while
extending grounding, one only reported on (a held-out check that the rules generalise).

The split is by question: sha256 of the question's UTF-8 text, first byte even -> "study", odd ->
"report" (`part`). Per part: answers extracted, gold claims correct, gold grounded step validity
(valid claims / claims), and corrupted-step detection: one annotated claim's result changed
(`perturb`, one random.Random(0) over the file in order, so a row's change does not depend on the
split) and the share of changed solutions whose step validity drops.

    python benchmarks/verifier_gsm8k.py [--data ../shared/data/gsm8k/train.jsonl] \\
        [--results benchmarks/results/verifier_gsm8k.json] [--kinds] [--ablate]

--kinds prints the study part's still-ungrounded gold claims grouped by kind, with examples;
--ablate counts the study part's valid gold claims with each grounding rule switched off in turn.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from r1kit.format import format_response  # noqa: E402
from r1kit.reward import Step, answers_match, check_steps, extract_answer, extract_steps  # noqa: E402
from r1kit.reward import question as question_reading, steps  # noqa: E402
from r1kit.reward.arithmetic import _literal  # noqa: E402

GSM8K = ROOT / ".." / "shared" / "data" / "gsm8k" / "train.jsonl"
PARTS = ("study", "report")


def part(question: str) -> str:
    """The half a GSM8K row belongs to: "study" (rules may be tuned on it) or "report" (only measured)."""
    return PARTS[hashlib.sha256(question.encode("utf-8")).digest()[0] % 2]


def perturb(solution: str, rng: random.Random) -> tuple[str, Step] | None:
    """The solution with one annotated claim's result changed (and its restatement after >>), and
    the claim as it was; None when the solution has no annotated claim."""
    claims = [m for m in re.finditer(r"<<([^<>=]+)=([^<>=]+)>>", solution) if extract_steps(m.group())]
    if not claims:
        return None
    m = rng.choice(claims)
    old = m.group(2)
    new = str(Decimal(old) + rng.choice((-3, -2, -1, 1, 2, 3, 10)))
    after = solution[m.end():]
    after = new + after[len(old):] if after.startswith(old) else after
    return f"{solution[:m.start()]}<<{m.group(1)}={new}>>{after}", extract_steps(m.group())[0]


def _key(step: Step) -> tuple[str, str]:
    """A claim as extract_steps counts it once: "20 + 10 = 30" in prose is "<<20+10=30>>"."""
    return step.expression.replace(" ", ""), step.value.replace(" ", "")


def _share(checks: list, attribute: str) -> float:
    return sum(getattr(c, attribute) for c in checks) / len(checks)


def measure(rows: list[dict]) -> dict[str, dict[str, int]]:
    """Counts per part (and "all") for the rows of a GSM8K file, in file order."""
    rng = random.Random(0)
    keys = ("rows", "extracted", "variants", "steps", "correct", "valid", "perturbed", "correct_drops",
            "validity_drops", "changed_step_was_valid", "validity_drops_when_it_was")
    stats = {name: dict.fromkeys(keys, 0) for name in (*PARTS, "all")}
    for row in rows:
        solution, question = row["answer"], row["question"]
        counts = dict.fromkeys(keys, 0)
        counts["rows"] = 1
        gold = solution.rsplit("####", 1)[1].strip()
        reasoning = solution.rsplit("####", 1)[0].strip()
        counts["extracted"] = answers_match(extract_answer(solution, last_number_fallback=False), gold)
        variants = [format_response(reasoning, gold), f"{reasoning}\n\\boxed{{{gold}}}",
                    f"<think>\n{reasoning}\n#### 999999\n</think>\nThe answer is {gold}.", f"{reasoning}\nA: {gold}"]
        counts["variants"] = all(answers_match(extract_answer(v, last_number_fallback=False), gold) for v in variants)
        checks = check_steps(extract_steps(solution), question)
        counts["steps"] = len(checks)
        counts["correct"] = sum(c.correct for c in checks)
        counts["valid"] = sum(c.valid for c in checks)
        if (perturbation := perturb(solution, rng)) is not None:
            perturbed, changed = perturbation
            after = check_steps(extract_steps(perturbed), question)
            counts["perturbed"] = 1
            counts["correct_drops"] = _share(after, "correct") < _share(checks, "correct")
            counts["validity_drops"] = _share(after, "valid") < _share(checks, "valid")
            if next(c.valid for c in checks if _key(c.step) == _key(changed)):
                counts["changed_step_was_valid"] = 1
                counts["validity_drops_when_it_was"] = counts["validity_drops"]
        for name in (part(question), "all"):
            for key, value in counts.items():
                stats[name][key] += int(value)
    return stats


def figures(stats: dict[str, int]) -> dict[str, float]:
    """The ratios docs/verifier.md reports, from one part's counts."""
    return {"answers_extracted": stats["extracted"] / stats["rows"],
            "gold_claims_correct": stats["correct"] / stats["steps"],
            "gold_step_validity": stats["valid"] / stats["steps"],
            "corrupted_step_detected": stats["validity_drops"] / stats["perturbed"]}


# --- --kinds and --ablate: what the study part's ungrounded gold claims are, what each rule grounds

_CLOCK = re.compile(r"\d:\d\d")
_WORDS = dict(zip(("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                   "fifteen sixteen seventeen eighteen nineteen twenty").split(), range(21)))


def _kind(check, question: str) -> str:
    """A label for why a correct gold claim is still ungrounded (a heuristic on its reason and prose)."""
    if check.reason.endswith("only constants"):
        return "only constants (1+1, 2*2, 60/2: counts the solution knows)"
    unknown = re.findall(r"ungrounded: (.*) not in the question", check.reason)[0].split(", ")
    numbers = {_literal(text)[0] for text in unknown}
    context = check.step.context
    if numbers == {0}:
        return "zero for 'no points', 'did not rain' (0 is left out: x + 0 = x would pass)"
    if _CLOCK.search(context):
        return "clock times (8:00 - 7:15 = 45 minutes)"
    if steps.prose_equations(context):
        return "algebra the equation reader does not follow (two unknowns in a step, words for the letter)"
    before = context[:context.rfind(check.step.expression.split()[0])] if check.step.expression else context
    words = {w for w, n in _WORDS.items() if n in numbers}
    if any(re.search(rf"(?<![\d.,]){re.escape(t.lstrip('$').rstrip('%'))}(?![\d])", before) for t in unknown) or any(
            re.search(rf"\b{w}\b", before, re.IGNORECASE) for w in words):
        return "stated first in the solution's prose: a count, a fact or a total it does not derive"
    return "unexplained: world knowledge or an implied count (5 people, 4 wheels, 20 fingers and toes)"


def kinds(rows: list[dict], examples: int = 4) -> dict[str, list]:
    """The study part's correct but ungrounded gold claims by kind: {kind: [count, [examples]]}."""
    found: dict[str, list] = defaultdict(lambda: [0, []])
    for row in rows:
        if part(row["question"]) != "study":
            continue
        for check in check_steps(extract_steps(row["answer"]), row["question"]):
            if check.correct and not check.grounded:
                label = _kind(check, row["question"])
                found[label][0] += 1
                if len(found[label][1]) < examples:
                    line = check.step.context.strip().split("\n")[-1]
                    found[label][1].append(f"{check.step.expression} = {check.step.value}  [{check.reason}]  | {line[:110]}")
    return dict(sorted(found.items(), key=lambda item: -item[1][0]))


RULES = {  # each grounding rule of r1kit.reward.steps / .question, and how to switch it off
    "prose results (60 inches + 8 inches = 68 inches)": (steps, "prose_results", lambda context: []),
    "equations in one letter (10x + 20 = 1000)": (steps, "prose_equations", lambda context: []),
    "forms of known numbers (25% as 25, 1/4 as 4)": (steps, "_forms", lambda numbers, implied: set(numbers)),
    "counted in the question (lists, weekdays, June, a party)": (question_reading, "_counted", lambda question: set()),
}


def ablate(rows: list[dict]) -> dict[str, int]:
    """Valid gold claims of the study part with every rule, and with each rule in turn switched off."""
    study = [row for row in rows if part(row["question"]) == "study"]

    def valid() -> int:
        question_reading.read_question.cache_clear()
        return sum(c.valid for row in study for c in check_steps(extract_steps(row["answer"]), row["question"]))

    counts = {"all rules": valid()}
    for name, (module, attribute, off) in RULES.items():
        on = getattr(module, attribute)
        setattr(module, attribute, off)
        try:
            counts[f"without {name}"] = valid()
        finally:
            setattr(module, attribute, on)
    question_reading.read_question.cache_clear()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(GSM8K), help="GSM8K JSONL rows with question and answer")
    parser.add_argument("--results", default="benchmarks/results/verifier_gsm8k.json")
    parser.add_argument("--kinds", action="store_true", help="print the study part's ungrounded gold claims by kind")
    parser.add_argument("--ablate", action="store_true", help="count the study part's valid gold claims without each rule")
    args = parser.parse_args()
    rows = [json.loads(line) for line in Path(args.data).open()]
    stats = measure(rows)
    for name in (*PARTS, "all"):
        s, f = stats[name], figures(stats[name])
        print(f"{name:6s} rows {s['rows']:5d}  answers {f['answers_extracted']:.2%}  correct {s['correct']}/{s['steps']} "
              f"({f['gold_claims_correct']:.2%})  valid {s['valid']}/{s['steps']} ({f['gold_step_validity']:.2%})  "
              f"corrupted detected {s['validity_drops']}/{s['perturbed']} ({f['corrupted_step_detected']:.2%})")
    record = {"data": args.data, "split": "sha256(question)[0] even: study, odd: report",
              **{name: {**stats[name], **figures(stats[name])} for name in (*PARTS, "all")}}
    if args.kinds:
        record["study_ungrounded_kinds"] = {}
        for label, (count, shown) in kinds(rows).items():
            record["study_ungrounded_kinds"][label] = count
            print(f"\n{label}: {count}")
            for example in shown:
                print(f"    {example}")
    if args.ablate:
        record["study_valid_claims"] = ablate(rows)
        print()
        for name, count in record["study_valid_claims"].items():
            print(f"{name:70s} {count}")
    from results_file import write_results
    print(f"wrote {write_results(args.results, record)}")


if __name__ == "__main__":
    main()
