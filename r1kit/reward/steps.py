"""The claims in a completion and their judging (the step-validity term of the reward):
extraction, correctness, grounding in the question, question coverage, and `count_steps`, the
optimal step count of a reference solution.

Steps (`extract_steps`, `check_steps`)
    A claim is ``expression = value`` with an operator in the expression: GSM8K calculator
    annotations ``<<48/2=24>>``, and plain text: ``4 * 7 = 28``, ``$4 x 7 = $28``, ``3 + 4 + 5 =
    12``, ``2(3+4) = 14``, ``8 x 1 1/2 = 12``, chains ``2*3 = 6 + 1 = 7`` (two claims; a right side
    that is itself an expression must equal the left, or start with the left's value as a running
    total). On a line with annotations, the prose restates them ("48/2 = <<48/2=24>>24"), so a prose
    claim there counts only for a value no annotation on the line claims. Algebra is not arithmetic:
    "2x + 30 = 160" or "5A/5 = 20" yield no claim. A repeated claim counts once.

    Correct: the expression evaluates exactly to the value. Decimal tolerance: a value written with
    d >= 1 decimal places may be the exact result rounded to d places (10/3 = 3.33; 2/3 = 0.66 is
    wrong); a value written without decimals must be exact (100/3 = 33 is wrong). A value with %
    may be the fraction (17/20 = 85%) or the percentage (100 - 15 = 85%).

    Grounded: every number in the expression is known or an implied constant, and at least one is
    known, so padding such as ``<<1+1=2>>`` or ``<<60*24=1440>>`` is never grounded.
    Known: stated by the question (`question_numbers`: its digits, number words such as three /
    half / a dozen / twice / two-thirds, a stated quantity converted by its unit: 30 minutes as 0.5
    and 1800, and numbers it states by naming or listing: June's 30 days, "Monday to Thursday",
    "Sarah, Mary, and Tuan", "Elisa and her two friends"), or established before the claim: by an
    earlier claim (its value or a partial result) or by the prose before it, read as a grader
    would (`prose_results`: arithmetic written with its words and units, "60 inches + 8 inches =
    68 inches", on known numbers; `prose_equations`: a linear equation in one letter whose numbers
    are known solves the letter, and a later one that still holds grounds the one number it adds,
    "2x + 4 = 120, so 2x = 116"), in any of its forms (0.25 as 25 and 1/4 as 4, 30 as 0.3, 420 as
    420,000,000 where "million" is written; `_forms`). Implied constants: CONSTANTS = {1, 2, 10,
    12, 60, 100}, and the conversion factors of the unit words in the question or the claim's prose
    and the counts some words imply (60 with "minutes", 7 with "week", 100 with "%", 5 with
    "weekdays"; `unit_constants`); they never ground a claim on their own, and a form that is one
    is not a known number. A number written with d decimals matches a known number rounded to d
    places (3.33 stands for 10/3). A correct claim with at least one known number grounds the
    claims after it, even when it also uses a number nothing explains (world knowledge: 4 letters
    in "Grey"): that claim is ungrounded, once, and what builds on it is not tainted. A claim of
    constants and unexplained numbers grounds nothing. 0 is no constant: ``48 + 0 = 48`` is not
    grounded.

    StepValidity = valid claims (correct and grounded) / claims, 0 with no claim; correct but
    ungrounded claims are counted separately in the breakdown. Without a question, grounding is not
    checked (``grounding_checked`` is False) and every correct claim is valid.

    Coverage (`question_coverage`, off by default; RewardConfig.question_coverage): grounding lets
    a step build on earlier steps and constants, so "6 * 2 = 12 / 12 + 2 = 14 / ..." is all valid
    yet ignores the question. With it on, step validity is multiplied by the share of the numbers
    the question writes in digits that valid claims use as operands (in any form the question
    allows: "30 minutes" as 30, 0.5 or 1800). A synthetic problem's gold steps cover all of its
    numbers; GSM8K questions may state numbers a solution never needs, which then lowers every
    completion of that question alike.

Limits
    A completion with more than MAX_EQUALS "=", MAX_ARITHMETIC_CHARS of arithmetic or MAX_CLAIMS
    claims has no steps read (`extract_steps` gives None): `score` counts it MAX_CLAIMS + 1 steps
    and step validity 0. The prose before claims is read up to MAX_ARITHMETIC_CHARS characters in
    all (the nearest to each claim first), in equation chains of up to MAX_CHAIN "=" and
    MAX_EQUATION_CHARS, and at most MAX_EQUATIONS equations are evaluated.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Literal, Sequence

from r1kit.reward.arithmetic import (
    MAX_COMPLETION_CHARS,
    MAX_EXPRESSION_CHARS,
    ExpressionError,
    _evaluate,
    _literal,
    _literals,
    _parse,
    _tokens,
)
from r1kit.reward.question import SCALE_WORDS, read_question, stated_numbers, unit_constants

MAX_ARITHMETIC_CHARS = 8_192  # arithmetic text examined; GSM8K's longest solution has 1,228 chars
MAX_CLAIMS = 64  # GSM8K gold solutions have at most 9
MAX_EQUALS = 4 * MAX_CLAIMS  # "=" signs in a completion; a cheap first check before any parsing
CONSTANTS = frozenset(Fraction(c) for c in (1, 2, 10, 12, 60, 100))  # grounded without a source

_ANNOTATION = re.compile(r"<<([^<>\n]*)>>")
_RUN_CHARS = r"0-9$€£¥.,%()+\-−–*/×÷^·⋅xX \t"
# a maximal run of arithmetic characters holding an "="; the lookbehind makes a failed attempt
# cost O(1) inside a run, so scanning stays linear
_ARITHMETIC_RUN = re.compile(rf"(?<![{_RUN_CHARS}=])(?:[{_RUN_CHARS}]*+=)++[{_RUN_CHARS}]*+")
_VARIABLE = re.compile(r"[A-HJ-Z]\b|[xyzn]\b")  # "30 + M", not "28 a day" or "+ I"
_LATEX_ARITHMETIC = [
    (re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}"), r"((\1)/(\2))"),
    (re.compile(r"\\(?:times|cdot|ast)(?![A-Za-z])"), "*"),
    (re.compile(r"\\div(?![A-Za-z])"), "/"),
    (re.compile(r"\{,\}"), ","),
    (re.compile(r"\\(?:left|right)(?![A-Za-z])|\\[,!;()\[\]]"), ""),
    (re.compile(r"\\([$%])"), r"\1"),
    (re.compile(r"\{"), "("),
    (re.compile(r"\}"), ")"),
]


@dataclass(frozen=True)
class Step:
    """One claim ``expression = value``; `value` is a number, or in a chain an expression.
    `context`: the prose the claim stands in (its line, annotations removed, and the lines since
    the last line that held a claim), which grounding reads for unit words, prose arithmetic and
    equations (`check_steps`); `line`: where it stands (GRPO's process credit rewards lines)."""

    expression: str
    value: str
    source: Literal["annotation", "text"]
    context: str = field(default="", compare=False, repr=False)
    line: int = field(default=-1, compare=False, repr=False)  # the line of the text it stands on (from 0)


def _is_operand_end(kind: str) -> bool:
    return kind in ("num", "rp")


def _chains(tokens: list[tuple[str, str]]) -> list[tuple[list[tuple[str, str]], bool]]:
    """Split a run's tokens where prose punctuation, a variable, an unmatched parenthesis, or a
    number right after an operand (no operator between) shows that one expression has ended; each
    chain holding an "=" comes with whether a word or symbol cut it short."""
    unmatched, stack = set(), []
    for i, (kind, _) in enumerate(tokens):
        if kind == "lp":
            stack.append(i)
        elif kind == "rp":
            (stack.pop() if stack else unmatched.add(i))
    unmatched.update(stack)
    chains, current = [], []
    for i, (kind, text) in enumerate(tokens):
        breaks = kind == "other" or i in unmatched
        if text in ("x", "X") and kind == "other" and current and current[-1][0] == "num":
            current.pop()  # "2x": the number is a coefficient, not an operand
        if breaks or (current and kind == "num" and _is_operand_end(current[-1][0])):
            chains.append((current, breaks))
            current = []
        if not breaks:
            current.append((kind, text))
    chains.append((current, False))
    return [(c, cut) for c, cut in chains if any(kind == "eq" for kind, _ in c)]


def _has_binary_operator(tokens: list[tuple[str, str]]) -> bool:
    """An operator after an operand, or an operand before "(" (2(3+4) multiplies)."""
    return any(kind in ("op", "lp") and i and _is_operand_end(tokens[i - 1][0]) for i, (kind, _) in enumerate(tokens))


def _join(tokens: list[tuple[str, str]]) -> str:
    return " ".join(text for _, text in tokens)


def _claims(text: str, source: Literal["annotation", "text"], glued: tuple[bool, bool] = (False, False)) -> list[Step]:
    """The claims in one annotation or one run of arithmetic. Plain text that does not parse is
    prose, not a claim; an annotation declares a claim, so a malformed one stays (and is wrong).
    `glued`: the run touches a letter at its (start, end), as in "5A", "30mph" or "30 + M", so the
    term there belongs to algebra or a unit and is dropped."""
    if source == "annotation":
        sides = text.split("=")
        if len(sides) < 2 or any(len(s) > MAX_EXPRESSION_CHARS for s in sides):
            return [Step(text[:MAX_EXPRESSION_CHARS], "", source)]
        return [Step(left.strip(), right.strip(), source) for left, right in zip(sides, sides[1:])
                if _has_binary_operator(_tokens(left))]
    steps = []
    tokens = _tokens(text)
    if glued[0] and tokens and tokens[0][0] == "num":
        tokens = tokens[1:]
    if glued[1]:  # "30mph", "= 24/Y": drop the term the letter belongs to
        while tokens and tokens[-1][0] == "op":
            tokens = tokens[:-1]
        tokens = tokens[:-1]
    for chain, cut in _chains(tokens):
        # a chain that starts with an operator continues an expression the prose began ("2x + 3 =
        # 9", "M + 4 = 8"): its first side is only a fragment; so is its last side when an operator
        # runs on into a variable ("21/7 = 90/x"), though not when it runs into prose ("= 28 - so")
        head_fragment = chain[0][0] in ("op", "eq")
        tail_fragment = chain[-1][0] == "eq" or (chain[-1][0] == "op" and cut)
        while chain and chain[-1][0] in ("op", "eq"):
            chain = chain[:-1]
        segments, current = [], []
        for token in chain:
            if token[0] == "eq":
                segments.append(current)
                current = []
            else:
                current.append(token)
        segments.append(current)
        pairs = list(zip(segments, segments[1:]))
        for n, (left, right) in enumerate(pairs):
            if (n == 0 and head_fragment) or (n == len(pairs) - 1 and tail_fragment):
                continue
            if not (left and right and _has_binary_operator(left)):
                continue
            try:
                _parse(left), _parse(right)
            except ExpressionError:
                continue
            steps.append(Step(_join(left), _join(right), source))
    return steps


def _bare(value: str) -> str:
    return re.sub(r"[\s$€£¥,]", "", value)


def extract_steps(text: str) -> list[Step] | None:
    """The claims in `text`, in order, each once; None when it holds more arithmetic than the
    verifier examines (over MAX_CLAIMS claims, MAX_EQUALS "=" or MAX_ARITHMETIC_CHARS)."""
    if len(text) > MAX_COMPLETION_CHARS or text.count("=") > MAX_EQUALS:
        return None
    steps, seen, budget = [], set(), MAX_ARITHMETIC_CHARS
    prose: list[str] = []  # lines since the last line that held a claim
    for line_number, line in enumerate(text.split("\n")):
        if "=" not in line:
            prose.append(line)
            continue
        found = []
        if "<<" in line and (annotations := _ANNOTATION.findall(line)):
            # the prose around annotations restates them ("48/2 = <<48/2=24>>24"): a prose claim
            # counts only for a value no annotation on the line claims ("5*7 = <<35=35>>35")
            found = [s for a in annotations for s in _claims(a, "annotation")]
            budget -= sum(map(len, annotations))
            annotated = {_bare(s.value) for s in found}
            line = _ANNOTATION.sub("", line)
        else:
            annotated = set()
        if "=" in line:
            if "\\" in line or "{" in line:
                for pattern, replacement in _LATEX_ARITHMETIC:
                    line = pattern.sub(replacement, line)
            for m in _ARITHMETIC_RUN.finditer(line):
                run, start, end = m.group(), m.start(), m.end()
                budget -= len(run)
                if budget < 0:
                    return None
                if len(run) > 2 * MAX_EXPRESSION_CHARS:  # one invalid claim, not parsed
                    found.append(Step(run[:MAX_EXPRESSION_CHARS], "", "text"))
                    continue
                glued = (start > 0 and line[start - 1].isalpha() and not run[0].isspace(),
                         end < len(line) and line[end].isalpha() and not run[-1].isspace()
                         or run.rstrip()[-1:] in "+-*/^" and bool(_VARIABLE.match(line, end)))
                found.extend(s for s in _claims(run, "text", glued) if _bare(s.value) not in annotated)
        if budget < 0:
            return None
        if not found:
            prose.append(line)
            continue
        context, prose = "\n".join([*prose, line]), []
        for step in found:
            key = (step.expression.replace(" ", ""), step.value.replace(" ", ""))
            if key not in seen:
                seen.add(key)
                steps.append(replace(step, context=context, line=line_number))
        if len(steps) > MAX_CLAIMS:
            return None
    return steps


def count_steps(solution: str) -> int:
    """The number of claims in a reference solution (e.g. a GSM8K gold answer): its optimal_steps."""
    steps = extract_steps(solution)
    if steps is None:
        raise ValueError("the reference solution holds more arithmetic than the verifier examines")
    return len(steps)


# prose arithmetic read as claims once its words are dropped ("14 pieces/house * 60 houses = 840")
_WORD_OPERATORS = [(re.compile(p, re.IGNORECASE), op) for p, op in (
    (r"\b(?:times|multiplied by)\b", " * "), (r"\bdivided by\b", " / "), (r"\bplus\b", " + "),
    (r"\bminus\b", " - "), (r"\b(?:equals|is equal to)\b", " = "))]
_UNIT_SLASH = re.compile(r"/(?=\s*[A-Za-z])")  # "$0.05/package": a unit, not a division
_PROSE_WORD = re.compile(r"(?![xX]\b)[A-Za-z][A-Za-z'’]*")  # "x" stays: it may multiply
_PRODUCT = re.compile(r"\)(?=\s*\d)")  # "(1/2) 18": a product in prose
_VULGAR_FRACTIONS = str.maketrans({"½": "(1/2)", "⅓": "(1/3)", "⅔": "(2/3)", "¼": "(1/4)", "¾": "(3/4)"})
_SPACED_THOUSANDS = re.compile(r"(?<==)(\s*\$?\d{1,3})((?: \d{3})+)(?![\d.])")  # "= 18 000"


def prose_results(context: str) -> list[Step]:
    """Arithmetic a solution writes in prose with its words and units left in, read as claims once
    they are dropped: "60 inches + 8 inches = 68 inches", "$1.85/bottle * 60 bottles = $111", "12
    times 12 equals 144". They are not steps (no reward counts them); a correct one on grounded
    numbers grounds its result for the claims after it, as a grader reading the prose would."""
    text = _SPACED_THOUSANDS.sub(lambda m: m.group(1) + m.group(2).replace(" ", ""), context)
    text = text.translate(_VULGAR_FRACTIONS)
    for pattern, operator in _WORD_OPERATORS:
        text = pattern.sub(operator, text)
    text = _PRODUCT.sub(") *", _PROSE_WORD.sub(" ", _UNIT_SLASH.sub(" ", text)))
    return [step for m in _ARITHMETIC_RUN.finditer(text) if len(m.group()) <= 2 * MAX_EXPRESSION_CHARS
            for step in _claims(m.group(), "text")]


# linear equations in one letter: "5x + 7 = 52", "Total: x+3x+20+6x=1000"
_NOT_ALGEBRA = re.compile(r"[A-Za-z][A-Za-z'’]+|[^0-9A-Za-z$€£¥.,%()+\-−–*/×÷^ \t=]")  # words, prose punctuation
_LETTER = re.compile(r"(?<![A-Za-z])[A-Za-z](?![A-Za-z])")
MAX_CHAIN = 8  # "=" in one equation chain of prose; every pair of its sides is read
MAX_EQUATION_CHARS = 128  # one chain; GSM8K's gold equations have under 40
MAX_EQUATIONS = 32  # evaluated per completion; a GSM8K gold solution holds at most 9
_TIMES = re.compile(r"(?<=[\d)])\s*[xX](?=\s*[$€£¥(\d.])")  # "8 x 3": a product, not a letter


@dataclass(frozen=True)
class Equation:
    """``left = right``, linear in one `letter`, read from prose; `literals` the numbers it writes."""

    left: str
    right: str
    letter: str
    literals: tuple[str, ...]

    def residual(self, at: Fraction, replace: tuple[int, Fraction] | None = None) -> Fraction:
        """left - right with the letter = `at` (and literal number replace[0] set to replace[1])."""
        sides, n = [], 0
        for side in (self.left, self.right):
            tokens = []
            for kind, text in _tokens(re.sub(rf"(?<![A-Za-z]){self.letter}(?![A-Za-z])", "(#)", side, flags=re.IGNORECASE)):
                if kind == "num":
                    if replace is not None and n == replace[0]:
                        text = f"({replace[1].numerator}/{replace[1].denominator})"
                    n += 1
                elif text == "#":
                    kind, text = "num", f"({at.numerator}/{at.denominator})"
                tokens.extend(_tokens(text) if text.startswith("(") else [(kind, text)])
            sides.append(_evaluate(_parse(tokens)))
        return sides[0] - sides[1]

    def solution(self) -> Fraction | Literal["any"] | None:
        """The letter's value; "any" when the equation holds for every value ("5x + 3x = 8x"); None
        when it is not linear in the letter or holds for none."""
        f0, f1, f2 = (self.residual(Fraction(v)) for v in (0, 1, 2))
        if f2 - f1 != f1 - f0:
            return None
        if f1 == f0:
            return "any" if f0 == 0 else None
        return -f0 / (f1 - f0)

    def holds(self, at: Fraction | Literal["any"], replace: tuple[int, Fraction] | None = None) -> bool:
        """Whether the equation holds at `at` (at every value: "any"), with a number replaced as in `residual`."""
        values = (Fraction(0), Fraction(1), Fraction(2)) if at == "any" else (at,)
        return all(self.residual(v, replace) == 0 for v in values)


def prose_equations(context: str) -> list[Equation]:
    """The equations in a solution's prose that are linear in one letter (x, B, J ...), each pair of
    sides once: "10x+20=1000", "t = 5", "J + 9 = 3(J - 11)"."""
    equations = []
    text = _TIMES.sub(" * ", context)
    for piece in _NOT_ALGEBRA.split(text):
        letters = {letter.lower() for letter in _LETTER.findall(piece)}
        if not 0 < piece.count("=") <= MAX_CHAIN or len(letters) != 1 or len(piece) > MAX_EQUATION_CHARS:
            continue
        letter = letters.pop()
        sides = [side.strip().lstrip(",").rstrip(".,").strip() for side in piece.split("=")]
        for left, right in itertools.combinations(sides, 2):  # a chain claims every pair of sides equal
            if not (left and right) or not _LETTER.search(left + " " + right):
                continue
            literals = tuple(text for side in (left, right) for kind, text in _tokens(side) if kind == "num")
            equations.append(Equation(left, right, letter, literals))
    return equations


def question_coverage(checks: Sequence["StepCheck"], question: str) -> float:
    """The share of the question's numbers (`stated_numbers`) that some valid claim uses as an
    operand; 1 for a question without numbers in digits. Step validity alone cannot tell steps that
    solve the problem from valid steps that ignore it ("6 * 2 = 12 / 12 + 2 = 14 ...", built on the
    constant 2): scaling it by coverage can."""
    stated = stated_numbers(question)
    if not stated:
        return 1.0
    # a valid claim was parsed by _judge already, so its expression parses and its literals read
    used = [_literal(text) for check in checks if check.valid for text in _literals(_parse(_tokens(check.step.expression)))]
    return sum(any(_near(n, half_unit, forms) for n, half_unit in used) for forms in stated) / len(stated)


@dataclass(frozen=True)
class StepCheck:
    """A claim judged: `correct` (the arithmetic), `grounded` (None when there was no question to
    ground against), and `reason`, empty when the claim is valid."""

    step: Step
    correct: bool
    grounded: bool | None
    reason: str = ""

    @property
    def valid(self) -> bool:
        return self.correct and self.grounded is not False


def _near(value: Fraction, half_unit: Fraction, known: frozenset[Fraction] | set[Fraction]) -> bool:
    return value in known or (half_unit > 0 and any(abs(k - value) <= half_unit for k in known))


def _claimed(value: Fraction, literal: str) -> Fraction | None:
    """The number `literal` claims if it matches `value` (within its rounding), else None. A
    literal with % may claim the fraction (17/20 = 85%) or the percentage (100 - 15 = 85%)."""
    claimed, half_unit = _literal(literal)
    if abs(value - claimed) <= half_unit:
        return claimed
    if literal.endswith("%") and abs(value - claimed * 100) <= half_unit * 100:
        return claimed * 100
    return None


def _judge(step: Step) -> tuple[Fraction, list[Fraction], list[str]]:
    """(value, values the claim establishes, the literals it uses); raises ExpressionError when the
    claim is malformed, over a limit, or wrong."""
    if len(step.expression) > MAX_EXPRESSION_CHARS or len(step.value) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"longer than {MAX_EXPRESSION_CHARS} characters")
    left = _parse(_tokens(step.expression))
    partials: list[Fraction] = []
    value = _evaluate(left, partials)
    right_tokens = _tokens(step.value)
    if len(right_tokens) == 1 and right_tokens[0][0] == "num":
        claimed = _claimed(value, right_tokens[0][1])
    else:
        claimed = _evaluate(_parse(right_tokens))
        if claimed != value and right_tokens[0][0] == "num":  # a running total: "2*3 = 6 + 1"
            claimed = _claimed(value, right_tokens[0][1])
        elif claimed != value:
            claimed = None
    if claimed is None:
        shown = f"{float(value):g}" if abs(value) < 10**15 else "over 1e15"
        raise ExpressionError(f"{step.expression} is {shown}, not {step.value}")
    return value, partials + [claimed], _literals(left)


_SCALE = re.compile(r"\b(thousand|million|billion)s?\b", re.IGNORECASE)


def _scales(question: str, context: str) -> tuple[int, ...]:
    """The scales written in the question or the claim's prose: "420 million" is 420,000,000."""
    return tuple({SCALE_WORDS[w.lower()] for w in _SCALE.findall(question) + _SCALE.findall(context)})


def _forms(numbers: set[Fraction] | frozenset[Fraction], implied: frozenset[Fraction]) -> set[Fraction]:
    """The numbers and the other ways a step writes them: a fraction as a percentage (0.25 as 25,
    1.5 as 150) and a proper one by its numerator and denominator (3/4: 3 and 4; 20%, 1/5: 5), a
    percentage as a fraction (30 as 0.3). A form that is an `implied` constant is left out, so
    that no constant turns into a source (1/12 of an hour does not make 12 one)."""
    forms = set()
    for k in numbers:
        if k.denominator != 1:
            forms.add(k * 100)
            if abs(k) < 1 and k.denominator <= 12:
                forms |= {Fraction(abs(k.numerator)), Fraction(k.denominator)}
        elif 0 < k <= 100:
            forms.add(k / 100)
    return set(numbers) | (forms - implied)


def _grounding(literals: list[str], known: set[Fraction], implied: frozenset[Fraction],
               scales: tuple[int, ...] = ()) -> tuple[bool, list[str]]:
    """(whether a literal comes from `known`, the question's and earlier claims' numbers in their
    forms, the literals that come from nowhere: not known, nor an implied constant). `scales`: the
    scale words around ("420 million" as 420,000,000)."""
    sourced, unknown = False, []
    for text in literals:
        number, half_unit = _literal(text)
        written = (number, number * 100) if text.endswith("%") else (number,)
        written += tuple(n * f for n in written for s in scales for f in (Fraction(1, s), Fraction(s)))
        if any(_near(n, half_unit, known) for n in written):
            sourced = True
        elif not _near(number, half_unit, implied):
            unknown.append(text)
    return sourced, unknown


def _read_prose(context: str, known: set[Fraction], implied: frozenset[Fraction], scales: tuple[int, ...],
                solved: dict[str, Fraction], equations_left: int) -> int:
    """Add to `known` what a grader reading the prose before a claim would accept, line by line:
    the results of prose arithmetic on known numbers (`prose_results`) and the algebra of
    `prose_equations`: an equation whose numbers are all known solves its letter; an equation that
    holds (for the letter's solved value, or for every value: "5x + 3x = 8x") and writes one number
    not yet known among known ones (as "2x = 116" after "2x + 4 = 120") grounds that number, if it
    is forced: any other number there would break the equation. Evaluates at most `equations_left`
    equations (those whose numbers could ground something); returns how many it evaluated."""
    solving = equations_left
    for line in context.split("\n"):
        for equation in prose_equations(line) if "=" in line else ():
            sourced, unknown = _grounding(list(equation.literals), known, implied, scales)
            if not (sourced or equation.letter in solved) or len(unknown) > 1 or equations_left == 0:
                continue
            equations_left -= 1
            try:
                solution = equation.solution()
                if solution is None:
                    continue
                if sourced and not unknown and solution != "any":
                    solved[equation.letter] = solution
                    known |= _forms({solution}, implied)
                elif len(unknown) == 1 and (solution == solved.get(equation.letter) or solution == "any" and sourced):
                    number = _literal(unknown[0])[0]
                    if not equation.holds(solution, (equation.literals.index(unknown[0]), number + 1)):
                        known |= _forms({number}, implied)
            except (ValueError, ArithmeticError):
                continue
        for result in prose_results(line) if "=" in line else ():
            try:
                value, established, literals = _judge(result)
            except (ValueError, ArithmeticError):
                continue
            sourced, unknown = _grounding(literals, known, implied, scales)
            if sourced and not unknown:
                known |= _forms({*established, value}, implied)
    return solving - equations_left


def check_steps(steps: Sequence[Step], question: str | None = None,
                constants: frozenset[Fraction] = CONSTANTS) -> list[StepCheck]:
    """Judge each claim in order (see the module docstring): correct, then grounded in the
    question, earlier claims, the prose before it, and `constants`."""
    question_units = constants | unit_constants(question) if question is not None else constants
    if question is not None:  # and earlier claims' numbers, in their forms; a conversion's forms are coincidence
        written, converted = read_question(question)
        known = _forms(written, question_units) | converted
    else:
        known = set()
    solved: dict[str, Fraction] = {}  # letters the prose's equations solve
    prose_left, equations_left = MAX_ARITHMETIC_CHARS, MAX_EQUATIONS  # in all: no completion makes it long
    checks, read = [], None
    for step in steps:
        if question is not None and step.context is not read:  # claims on one line share it
            read = step.context
            implied, scales = question_units | unit_constants(read), _scales(question, read)
            if prose_left > 0:
                prose = read[-prose_left:]  # the prose nearest the claim
                prose_left -= len(prose)
                equations_left -= _read_prose(prose, known, implied, scales, solved, equations_left)
        try:
            value, established, literals = _judge(step)
        except (ValueError, ArithmeticError) as e:  # ExpressionError, and Fraction's own
            checks.append(StepCheck(step, False, None if question is None else False, f"incorrect: {e}"))
            continue
        if question is None:
            checks.append(StepCheck(step, True, None))
            continue
        sourced, unknown = _grounding(literals, known, implied, scales)
        if sourced:  # connected to the problem: later claims may build on it, even if it is not grounded
            known |= _forms({*established, value}, implied)
        reason = (f"ungrounded: {', '.join(unknown)} not in the question or earlier steps" if unknown
                  else "" if sourced else "ungrounded: only constants")
        checks.append(StepCheck(step, True, sourced and not unknown, reason))
    return checks
