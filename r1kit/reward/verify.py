"""The verifier and the composite reward of SPEC S11: answer accuracy, step validity, efficiency.

    R = 0.6 * accuracy + 0.3 * step_validity + 0.1 * efficiency

Pure Python. The RL loop feeds it arbitrary model output, so nothing a completion contains makes it
raise or run long (see Limits); bad *arguments* (weights, optimal_steps) raise ValueError.

Response format
    r1kit's models answer ``<think> reasoning </think>`` and then ``#### N`` on its own line
    (`format_response`, `format_answer`). ``####`` is GSM8K's own marker, so gold solutions and
    model outputs share one form; the other forms below are accepted for models trained elsewhere.

Answer extraction (`extract_answer`)
    Only the text after the last ``</think>`` is searched; a completion that opens ``<think>`` and
    never closes it has no answer (with ``think_in_prompt``, for r1kit's chat template whose prompt
    ends with ``<think>``, a completion without ``</think>`` has none). The first form present wins, and within a form its last
    occurrence (of several ``####``, the last): ``#### 72``; ``\\boxed{72}``; ``the (final) answer
    is 72``, ``Answer: 72`` or a line starting ``A: 72``; then, with ``last_number_fallback`` (on by
    default), the last number. Numbers may carry thousands separators, a currency sign, a percent
    sign, decimals, a sign, or be ``a/b`` or ``\\frac{a}{b}``.

Equivalence (`answers_match`)
    Numbers compare exactly as `fractions.Fraction`: 0.50 == 1/2 == \\frac{1}{2}; 72.4 != 72. A
    percent sign on an answer is a unit and is dropped (25% matches a gold 25). Decimal tolerance
    for answers: only a gold with no finite decimal expansion (1/3) accepts a decimal of >= 2
    places equal to it rounded to the places written (0.33, 0.333; not 0.3). Answers that are not
    plain numbers (``x+1``, ``\\frac{\\sqrt{3}}{2}``) go to Math-Verify after a screen
    (`_safe_for_math_verify`) that keeps out what could make sympy run long; what fails the screen
    compares as text.

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

    Grounded: every number in the expression comes from the question (`question_numbers`: its
    digits, number words such as three / half / a dozen / twice / two-thirds, and the conversion
    factors of its unit words, such as 60 for "hour" and 0.01 for "%"), or from an earlier valid
    claim (its value or a partial result), or from CONSTANTS = {1, 2, 10, 12, 60, 100}; and at
    least one comes from the question or an earlier claim, so padding such as ``<<1+1=2>>`` is
    never grounded. A number written with d decimals matches a known number rounded to d places
    (3.33 stands for 10/3). A correct claim with at least one number from the question or an
    earlier claim grounds the claims after it, even when it also uses a number the question does
    not explain (world knowledge: 4 legs, 5 weekdays): that claim is ungrounded, once, and what
    builds on it is not tainted. A claim of constants and unexplained numbers grounds nothing.

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

Efficiency (`efficiency`)
    "article" (default; SPEC S11 as written): 1 - steps / optimal_steps. It is 1 with no step, 0 at
    the optimal count and negative above it, without a floor: three times the optimal count gives
    -2, which at weight 0.1 costs 0.2, and a long enough chain outweighs a correct answer.
    "bounded": min(1, optimal_steps / steps): 1 at or below the optimal count, falling towards 0
    above it, never negative. Both give 1 with no step; skipping the reasoning is paid for by step
    validity (0 with no claim). Without optimal_steps the efficiency term is None and adds 0;
    `count_steps(gold_solution)` gives the optimal count of a reference solution.

Limits (why the verifier cannot hang)
    A completion over MAX_COMPLETION_CHARS scores 0 throughout, unread. One with more than
    MAX_EQUALS "=", MAX_ARITHMETIC_CHARS of arithmetic or MAX_CLAIMS claims scores step validity 0
    and counts MAX_CLAIMS + 1 steps. A claim side over MAX_EXPRESSION_CHARS, a literal over
    MAX_NUMBER_DIGITS digits, nesting over MAX_NESTING, a non-integer exponent or one over
    MAX_EXPONENT, or any intermediate value over MAX_RESULT_BITS (checked before a power is
    computed) makes the claim incorrect. The evaluator is a recursive-descent parser of its own over
    numbers, + - * / // ^ ** x and parentheses: no eval, no ast.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import Callable, Literal, Mapping, Sequence

from r1kit.format import ANSWER_MARKER, END_THINK, THINK, format_answer, format_response, split_completion

MAX_COMPLETION_CHARS = 65_536  # ~16k tokens, past any budget r1kit samples with
MAX_ARITHMETIC_CHARS = 8_192  # arithmetic text examined; GSM8K's longest solution has 1,228 chars
MAX_CLAIMS = 64  # GSM8K gold solutions have at most 9
MAX_EXPRESSION_CHARS = 256  # one side of a claim; GSM8K's longest annotation has 36
MAX_NUMBER_DIGITS = 24  # digits in one literal
MAX_RESULT_BITS = 1_024  # numerator or denominator of any intermediate value (~308 digits)
MAX_EXPONENT = 64  # |exponent| of a power; exponents must be integers
MAX_NESTING = 32  # parentheses and unary signs
CONSTANTS = frozenset(Fraction(c) for c in (1, 2, 10, 12, 60, 100))  # grounded without a source


class ExpressionError(ValueError):
    """An expression that is malformed or exceeds a limit; as a claim, it is incorrect."""


# --- numbers and the safe evaluator ------------------------------------------------------------

_NUM = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+"
_MIXED = r"\d+ \d+/\d+(?![\d.])"  # 1 1/2, one literal: the space binds tighter than any operator
# "x" multiplies only before a number or "(": in "2x + 3" it is a variable, which ends the claim
_TOKEN = re.compile(
    rf"\s*(?:(?P<num>(?:[$€£¥]\s*)?(?:{_MIXED}|{_NUM})(?:\s*%)?)"
    rf"|(?P<op>\*\*|//|[-+*/^×÷·⋅−–]|[xX](?=\s*[$€£¥(\d.]))"
    rf"|(?P<lp>\()|(?P<rp>\))|(?P<eq>=)|(?P<other>\S))"
)
_OPS = {"+": "+", "-": "-", "−": "-", "–": "-", "*": "*", "×": "*", "·": "*", "⋅": "*", "x": "*",
        "X": "*", "/": "/", "÷": "/", "//": "//", "^": "^", "**": "^"}


def _tokens(text: str) -> list[tuple[str, str]]:
    return [(m.lastgroup, m.group(m.lastgroup)) for m in _TOKEN.finditer(text) if m.lastgroup]


@lru_cache(maxsize=8192)  # the same few literals recur in every solution
def _literal(text: str) -> tuple[Fraction, Fraction]:
    """(value, half a unit in the last written place, 0 for integers) of a literal such as
    $1,200.5, 20% or 1 1/2."""
    body = text.lstrip("$€£¥ ").replace(",", "")
    percent = body.endswith("%")
    body = body.rstrip("% ")
    if len(body) > MAX_NUMBER_DIGITS + 1:
        raise ExpressionError(f"a number longer than {MAX_NUMBER_DIGITS} digits")
    if " " in body:  # a mixed number
        whole, fraction = body.split(" ")
        numerator, denominator = fraction.split("/")
        if int(denominator) == 0:
            raise ExpressionError("division by zero")
        value, half_unit = int(whole) + Fraction(int(numerator), int(denominator)), Fraction(0)
    else:
        decimals = len(body) - body.index(".") - 1 if "." in body else 0
        value, half_unit = Fraction(body), Fraction(1, 2 * 10**decimals) if decimals else Fraction(0)
    if percent:
        value, half_unit = value / 100, half_unit / 100
    return value, half_unit


class _Parser:
    """Recursive descent over tokens: expr := term (+|- term)*; term := unary ((*|/|//)? unary)*,
    where no operator before "(" multiplies, as in 2(3+4); unary := (+|-) unary | power;
    power := atom (^ unary)?; atom := number | ( expr ). ^ and ** bind right to left, tighter than a
    sign: -2^2 = -4. Nodes are ("num", text) | ("neg", node) | ("bin", op, left, right)."""

    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens, self.i, self.depth = tokens, 0, 0

    def parse(self) -> tuple:
        node = self.expr()
        if self.i != len(self.tokens):
            raise ExpressionError(f"unexpected {self.tokens[self.i][1]!r}")
        return node

    def peek_op(self) -> str | None:
        if self.i < len(self.tokens) and self.tokens[self.i][0] == "op":
            return _OPS[self.tokens[self.i][1]]
        return None

    def expr(self) -> tuple:
        node = self.term()
        while (op := self.peek_op()) in ("+", "-"):
            self.i += 1
            node = ("bin", op, node, self.term())
        return node

    def term(self) -> tuple:
        node = self.unary()
        while True:
            if (op := self.peek_op()) in ("*", "/", "//"):
                self.i += 1
            elif self.i < len(self.tokens) and self.tokens[self.i][0] == "lp":
                op = "*"
            else:
                return node
            node = ("bin", op, node, self.unary())

    def unary(self) -> tuple:
        if (op := self.peek_op()) in ("+", "-"):
            self.i += 1
            self.nest(1)
            node = self.unary()
            self.depth -= 1
            return ("neg", node) if op == "-" else node
        node = self.atom()
        if self.peek_op() == "^":
            self.i += 1
            self.nest(1)
            node = ("bin", "^", node, self.unary())
            self.depth -= 1
        return node

    def atom(self) -> tuple:
        if self.i >= len(self.tokens):
            raise ExpressionError("expression ends early")
        kind, text = self.tokens[self.i]
        self.i += 1
        if kind == "num":
            return ("num", text)
        if kind == "lp":
            self.nest(1)
            node = self.expr()
            if self.i >= len(self.tokens) or self.tokens[self.i][0] != "rp":
                raise ExpressionError("unbalanced parenthesis")
            self.i += 1
            self.depth -= 1
            return node
        raise ExpressionError(f"unexpected {text!r}")

    def nest(self, n: int) -> None:
        self.depth += n
        if self.depth > MAX_NESTING:
            raise ExpressionError(f"nested deeper than {MAX_NESTING}")


def _parse(tokens: list[tuple[str, str]]) -> tuple:
    if not tokens:
        raise ExpressionError("empty expression")
    return _Parser(tokens).parse()


def _check_size(value: Fraction) -> Fraction:
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_RESULT_BITS:
        raise ExpressionError(f"an intermediate value over {MAX_RESULT_BITS} bits")
    return value


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1 or abs(exponent) > MAX_EXPONENT:
        raise ExpressionError(f"exponents must be integers of at most {MAX_EXPONENT}")
    size = max(base.numerator.bit_length(), base.denominator.bit_length())
    if size * abs(exponent) > MAX_RESULT_BITS:  # refuse before computing, not after
        raise ExpressionError(f"a power over {MAX_RESULT_BITS} bits")
    if base == 0 and exponent < 0:
        raise ExpressionError("division by zero")
    return base**exponent


def _evaluate(node: tuple, partials: list[Fraction] | None = None) -> Fraction:
    """The exact value of a parsed node; appends every operator's result to `partials`."""
    if node[0] == "num":
        return _literal(node[1])[0]
    if node[0] == "neg":
        return -_evaluate(node[1], partials)
    _, op, left, right = node
    a, b = _evaluate(left, partials), _evaluate(right, partials)
    if op in ("/", "//") and b == 0:
        raise ExpressionError("division by zero")
    if op == "+":
        value = a + b
    elif op == "-":
        value = a - b
    elif op == "*":
        value = a * b
    else:
        value = a / b if op == "/" else Fraction(a // b) if op == "//" else _power(a, b)
    if partials is not None:
        partials.append(value)
    return _check_size(value)


def _literals(node: tuple) -> list[str]:
    if node[0] == "num":
        return [node[1]]
    return _literals(node[1]) if node[0] == "neg" else _literals(node[2]) + _literals(node[3])


def evaluate(expression: str) -> Fraction:
    """The exact value of an arithmetic expression (numbers, + - * / x ^ **, parentheses; $ , % in
    numbers). Raises ExpressionError when it is malformed or exceeds a limit; never runs long."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"longer than {MAX_EXPRESSION_CHARS} characters")
    return _evaluate(_parse(_tokens(expression)))


# --- answers -----------------------------------------------------------------------------------

_ANSWER_NUMBER = re.compile(
    rf"([-−]?)\s*\\?[$€£¥]?\s*([-−]?)\s*({_NUM})(?:\s*/\s*({_NUM}))?\s*(\\?%)?")
_FRAC = re.compile(r"([-−]?)\s*\\[dt]?frac\s*\{\s*([-−]?)\s*(" + _NUM + r")\s*\}\s*\{\s*(" + _NUM + r")\s*\}")
_AFTER_NUMBER_CONTINUES = re.compile(r"\s*[-+*/^=(\\{_]")
# "the (final) answer is 72", "Answer: 72", or a line starting "A: 72"
_ANSWER_PHRASE = re.compile(r"\banswer\s*(?:is|was|:|=)\s*:?|^[ \t*]*a[ \t*]*:", re.IGNORECASE | re.MULTILINE)
_LAST_NUMBER = re.compile(rf"[-−]?\s*\\?[$€£¥]?\s*(?:{_NUM})(?:\s*/\s*(?:{_NUM}))?\s*\\?%?")
_MARKER = re.compile(re.escape(ANSWER_MARKER))
MAX_ANSWER_CHARS = 200  # an extracted answer longer than this is not an answer
MAX_ANSWER_TRIES = 4  # occurrences of a form tried, from the last: skips an empty "####" at the end


def parse_number(text: str) -> Fraction | None:
    """The value of an answer that is one plain number, else None. Accepts -$1,234.50, 3/4,
    \\frac{3}{4}, 25% (a percent sign is a unit here: 25% -> 25) and a trailing period."""
    text = text.strip().rstrip(".").strip()
    if not text or len(text) > MAX_ANSWER_CHARS:
        return None
    if m := _FRAC.fullmatch(text):
        numerator, denominator, negative = m.group(3), m.group(4), bool(m.group(1)) != bool(m.group(2))
    elif m := _ANSWER_NUMBER.fullmatch(text):
        if m.group(1) and m.group(2):
            return None
        numerator, denominator, negative = m.group(3), m.group(4), bool(m.group(1) or m.group(2))
    else:
        return None
    try:
        value = _literal(numerator)[0] / (_literal(denominator)[0] if denominator else 1)
    except (ExpressionError, ZeroDivisionError):
        return None
    return -value if negative else value


def _answer_at(text: str, symbolic: bool) -> str | None:
    """The answer that starts `text` (what follows a marker): a number, or with `symbolic` the
    rest of the line; $...$ math is unwrapped."""
    line = text[: MAX_ANSWER_CHARS + 1].split("\n", 1)[0].strip().strip("*").strip()
    if line.startswith("$") and not line[1:2].isdigit() and line.count("$") >= 2:
        line = line[1:].split("$", 1)[0].strip()
        symbolic = True
    if m := _FRAC.match(line) or _ANSWER_NUMBER.match(line):
        if not _AFTER_NUMBER_CONTINUES.match(line, m.end()):
            return m.group(0).strip()
    if symbolic:
        line = line.rstrip(".").strip()
        return line if 0 < len(line) <= MAX_ANSWER_CHARS else None
    return None


def _last_ends(pattern: re.Pattern, text: str) -> list[int]:
    """Where the last MAX_ANSWER_TRIES matches of `pattern` end, the last first."""
    return [m.end() for m in deque(pattern.finditer(text), maxlen=MAX_ANSWER_TRIES)][::-1]


def _boxed(text: str) -> str | None:
    """The content of the last complete \\boxed{...} (nested braces allowed)."""
    start = len(text)
    for _ in range(MAX_ANSWER_TRIES):
        start = text.rfind("\\boxed{", 0, start)
        if start < 0:
            return None
        depth, first = 0, start + len("\\boxed")
        for j in range(first, min(len(text), first + MAX_ANSWER_CHARS + 2)):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                if content := text[first + 1 : j].strip():
                    return content
                break
    return None


def extract_answer(completion: str, last_number_fallback: bool = True, think_in_prompt: bool = False) -> str | None:
    """The final answer's text (e.g. "72", "\\frac{1}{2}"), or None; see the module docstring.
    `think_in_prompt`: the prompt ended with <think> (r1kit's chat template), so the completion
    starts inside the reasoning and has no answer until it writes </think>."""
    if len(completion) > MAX_COMPLETION_CHARS:
        return None
    final = split_completion(THINK + completion if think_in_prompt else completion)[1]
    if final is None:
        return None
    for end in _last_ends(_MARKER, final):
        if answer := _answer_at(final[end:], symbolic=True):
            return answer
    if answer := _boxed(final):
        return answer
    for end in _last_ends(_ANSWER_PHRASE, final):
        if answer := _answer_at(final[end:], symbolic=False):
            return answer
    if last_number_fallback:
        numbers = _LAST_NUMBER.findall(final[-2_000:])  # a closing sentence or two may follow it
        return numbers[-1].strip() if numbers else None
    return None


def _finite_decimal(value: Fraction) -> bool:
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


_SAFE_LATEX_COMMANDS = frozenset(
    "frac dfrac tfrac sqrt pi cdot times div left right infty pm mp le ge leq geq neq text mathrm "
    "circ degree sin cos tan log ln exp cup cap emptyset in".split())


def _safe_for_math_verify(text: str) -> bool:
    """Whether sympy can take `text` in bounded time: short, numbers under 13 digits, at most three
    powers, each to one digit or letter and never a power of a power, no factorial, sum, product or
    integral, only whitelisted LaTeX commands. What fails the screen compares as text."""
    if len(text) > 120 or re.search(r"\d{13}|!|\\(?:sum|prod|int)", text):
        return False
    if any(cmd not in _SAFE_LATEX_COMMANDS for cmd in re.findall(r"\\([A-Za-z]+)", text)):
        return False
    powers = re.findall(r"\^|\*\*", text)
    safe = re.findall(r"(?:\^|\*\*)\s*(?:\{\s*-?\w\s*\}|-?\w)(?!\s*(?:\^|\*\*|\w|\(|\{))", text)
    return len(powers) == len(safe) <= 3


def _math_verify_match(predicted: str, gold: str) -> bool:
    if not (_safe_for_math_verify(predicted) and _safe_for_math_verify(gold)):
        return False
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException

    # math-verify times out with SIGALRM, which only the main thread may set; elsewhere the screen
    # above is the only guard
    seconds = 2 if threading.current_thread() is threading.main_thread() else None
    try:
        gold_parsed = parse(f"${gold}$", parsing_timeout=seconds)
        predicted_parsed = parse(f"${predicted}$", parsing_timeout=seconds)
        return bool(gold_parsed and predicted_parsed
                    and verify(gold_parsed, predicted_parsed, timeout_seconds=seconds))
    except (Exception, TimeoutException):
        return False


def answers_match(predicted: str | None, gold: str) -> bool:
    """Whether an extracted answer equals the gold one: exactly for numbers, by Math-Verify else."""
    if predicted is None:
        return False
    p, g = parse_number(predicted), parse_number(gold)
    if p is not None and g is not None:
        if p == g:
            return True
        decimals = len(predicted.rstrip(".% ").split(".")[1]) if "." in predicted.rstrip(".") else 0
        return not _finite_decimal(g) and decimals >= 2 and abs(p - g) * 2 * 10**decimals <= 1
    return _as_text(predicted) == _as_text(gold) or _math_verify_match(predicted, gold)


def _as_text(answer: str) -> str:
    return re.sub(r"\s+|\$|\\[,!;]", "", answer).rstrip(".")


# --- steps -------------------------------------------------------------------------------------

MAX_EQUALS = 4 * MAX_CLAIMS  # "=" signs in a completion; a cheap first check before any parsing
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
    """One claim ``expression = value``; `value` is a number, or in a chain an expression."""

    expression: str
    value: str
    source: Literal["annotation", "text"]


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
    for line in text.split("\n"):
        if "=" not in line:
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
        for step in found:
            key = (step.expression.replace(" ", ""), step.value.replace(" ", ""))
            if key not in seen:
                seen.add(key)
                steps.append(step)
        if len(steps) > MAX_CLAIMS:
            return None
    return steps


def count_steps(solution: str) -> int:
    """The number of claims in a reference solution (e.g. a GSM8K gold answer): its optimal_steps."""
    steps = extract_steps(solution)
    if steps is None:
        raise ValueError("the reference solution holds more arithmetic than the verifier examines")
    return len(steps)


# numbers a question states in words; see question_numbers
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS_WORDS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_NUMBER_WORDS.update({w: 10 * i for i, w in enumerate(_TENS_WORDS, 2)})
_SCALE_WORDS = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9, "dozen": 12}
_FRACTION_WORDS = {"half": 2, "third": 3, "quarter": 4, "fourth": 4, "fifth": 5, "sixth": 6,
                   "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10}
_MULTIPLIER_WORDS = {"twice": 2, "double": 2, "doubled": 2, "triple": 3, "tripled": 3, "thrice": 3,
                     "quadruple": 4, "quadrupled": 4, "pair": 2, "couple": 2}
# a unit word brings its conversion factors, and converts the number just before it both ways
_UNIT_WORDS = {
    "percent": (100, Fraction(1, 100)), "cent": (100, Fraction(1, 100)), "penny": (100, Fraction(1, 100)),
    "nickel": (5, Fraction(1, 20)), "dime": (10, Fraction(1, 10)), "quarter": (25, Fraction(1, 4)),
    "second": (60,), "minute": (60,), "hour": (60, 24), "day": (24, 7), "week": (7, 52),
    "weekend": (2,), "fortnight": (14,), "month": (12, 30, 4), "year": (12, 52, 365), "decade": (10,),
    "century": (100,), "inch": (12,), "foot": (12, 3), "feet": (12, 3), "yard": (3, 36), "mile": (5280,),
    "pound": (16,), "ounce": (16,), "gallon": (4, 128), "quart": (4, 32), "pint": (2, 16), "cup": (8, 16),
    "liter": (1000,), "litre": (1000,), "kilogram": (1000,), "kg": (1000,), "kilometer": (1000,),
    "km": (1000,), "meter": (100, 1000), "metre": (100, 1000), "centimeter": (100,), "cm": (100,),
    **{month: (days,) for month, days in zip(
        "january february march april may june july august september october november december".split(),
        (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31))},
}
_UNIT_FACTORS = {word: frozenset(map(Fraction, factors)) for word, factors in _UNIT_WORDS.items()}
# every form of a word the tables know (plurals too) -> its table key
_WORD_FORMS = {form: word for word in (*_NUMBER_WORDS, *_SCALE_WORDS, *_FRACTION_WORDS, *_MULTIPLIER_WORDS,
                                       *_UNIT_WORDS, "and", "a", "an") for form in (word, word + "s")}
_WORD_FORMS.update({"pennies": "penny", "inches": "inch", "halves": "half", "centuries": "century"})
_QUESTION_TOKEN = re.compile(
    rf"(?P<num>{_MIXED}|{_NUM})(?:\s*/\s*(?P<den>\d+))?(?P<pct>\s*%)?|(?P<word>[A-Za-z]+)")


def _percent(p: Fraction) -> set[Fraction]:
    """p% as a step may use it: p/100, and the factors of "p% more" and "p% off"."""
    return {p / 100, 1 + p / 100, 1 - p / 100} | _UNIT_FACTORS["percent"]


@lru_cache(maxsize=4096)  # RL scores a group of completions per question
def question_numbers(question: str) -> frozenset[Fraction]:
    """Every number the question states, as a step may use it:
    digits -- 20% also as 0.2, 1.2 and 0.8 (20% more, 20% off); 1/4 also as 1, 4 and 0.25;
    number words -- three, twenty-five, two hundred, a dozen, four and a half;
    fraction words -- half: 1/2 and 2; two-thirds: 2/3; half an hour: 30;
    multiplier words -- twice, double: 2; triple, thrice: 3; pair, couple: 2;
    unit words -- each brings its conversion factors (hour: 60 and 24, week: 7 and 52, cent: 100
    and 0.01, quarter: 25, 4 and 0.25, June: 30; see _UNIT_WORDS) and converts the number before it
    both ways (30 minutes: also 0.5 and 1800; 50 cents: also 0.5)."""
    numbers: set[Fraction] = set()
    previous: Fraction | None = None  # the number just read: "5 million", "two thirds", "30 minutes"
    whole: Fraction | None = None  # a number before "and": "four and a half", "1 and 1/4"
    for m in _QUESTION_TOKEN.finditer(question[:MAX_COMPLETION_CHARS]):
        if m.group("word"):
            word = _WORD_FORMS.get(m.group("word").lower())
            if word is None:
                previous = whole = None
            elif word == "and":
                whole, previous = previous, None
            elif word not in ("a", "an"):
                previous, whole = _read_word(word, previous, whole, numbers), None
            continue
        try:
            value = _literal(m.group("num"))[0]
        except ExpressionError:
            previous = whole = None
            continue
        numbers.add(value)
        if " " in m.group("num"):  # 2 1/2 also as 2 and 1/2
            numbers.update(map(Fraction, m.group("num").split(" ")))
        if m.group("den") and int(m.group("den")):
            numbers.add(Fraction(int(m.group("den"))))
            value /= int(m.group("den"))
            numbers.add(value)
        if m.group("pct"):
            numbers |= _percent(value)
        if whole is not None and value < 1:
            numbers.add(whole + value)
        previous, whole = value, None
    return frozenset(numbers)


def _read_word(word: str, previous: Fraction | None, whole: Fraction | None, numbers: set[Fraction]) -> Fraction | None:
    """Add what a known word states to `numbers`; return the number it leaves for the next word."""
    value = None
    if word in _NUMBER_WORDS:
        value = Fraction(_NUMBER_WORDS[word])
        if previous is not None and previous in _TENS and value < 10:
            value += previous  # twenty-five
    elif word in _SCALE_WORDS:
        value = _SCALE_WORDS[word] * (previous if previous is not None else Fraction(1))
    elif word in _MULTIPLIER_WORDS:
        numbers.add(Fraction(_MULTIPLIER_WORDS[word]))
    elif word == "percent" and previous is not None:
        numbers |= _percent(previous)
    if word in _FRACTION_WORDS:
        n = _FRACTION_WORDS[word]
        numbers |= {Fraction(n), Fraction(1, n)}
        value = (previous if previous is not None else Fraction(1)) / n  # "two thirds"
        if whole is not None:
            value += whole  # "four and a half"
    if word in _UNIT_FACTORS:
        numbers |= _UNIT_FACTORS[word]
        if previous is not None:
            for factor in _UNIT_FACTORS[word]:
                numbers |= {previous * factor, previous / factor}
    if value is not None:
        numbers.add(value)
    return value


_TENS = frozenset(Fraction(t) for t in range(20, 100, 10))
_NEXT_WORD = re.compile(r"\s*([A-Za-z]+)")


@lru_cache(maxsize=4096)  # RL scores a group of completions per question
def stated_numbers(question: str) -> tuple[frozenset[Fraction], ...]:
    """The numbers a question writes in digits, each as the forms a step may use it in (its value
    and, read with the word after it, the unit conversions and percent forms `question_numbers`
    gives: "30 minutes" is 30, 0.5 or 1800; the unit's own factors, 60 for "minutes", are not
    this number's, unless it is the number written: "an hour has 60 minutes"). One entry per
    distinct number. Number words ("three") are left out."""
    stated: list[frozenset[Fraction]] = []
    text = question[:MAX_COMPLETION_CHARS]
    for m in _QUESTION_TOKEN.finditer(text):
        if not m.group("num"):
            continue
        word = _NEXT_WORD.match(text, m.end())
        word = word.group(1) if word else ""
        forms = question_numbers(f"{m.group(0)} {word}") - question_numbers(word) | question_numbers(m.group(0))
        if m.group("pct"):
            forms -= _UNIT_FACTORS["percent"]  # 20% is 20, 0.2, 1.2 or 0.8; the bare 100 is not this number
        if forms and forms not in stated:
            stated.append(forms)
    return tuple(stated)


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


def check_steps(steps: Sequence[Step], question: str | None = None,
                constants: frozenset[Fraction] = CONSTANTS) -> list[StepCheck]:
    """Judge each claim in order (see the module docstring): correct, then grounded in the
    question, earlier claims and `constants`."""
    from_question = question_numbers(question) if question is not None else frozenset()
    earlier: set[Fraction] = set()
    checks = []
    for step in steps:
        try:
            value, established, literals = _judge(step)
        except (ValueError, ArithmeticError) as e:  # ExpressionError, and Fraction's own
            checks.append(StepCheck(step, False, None if question is None else False, f"incorrect: {e}"))
            continue
        if question is None:
            earlier.update(established, (value,))
            checks.append(StepCheck(step, True, None))
            continue
        sourced, unknown = False, []
        for text in literals:
            number, half_unit = _literal(text)
            written = (number, number * 100) if text.endswith("%") else (number,)
            if any(_near(n, half_unit, from_question) or _near(n, half_unit, earlier) for n in written):
                sourced = True
            elif not _near(number, half_unit, constants):
                unknown.append(text)
        if sourced:  # connected to the problem: later claims may build on it, even if it is not grounded
            earlier.update(established, (value,))
        reason = (f"ungrounded: {', '.join(unknown)} not in the question or earlier steps" if unknown
                  else "" if sourced else "ungrounded: only constants")
        checks.append(StepCheck(step, True, sourced and not unknown, reason))
    return checks


# --- efficiency and the composite reward -------------------------------------------------------

EfficiencyVariant = Literal["article", "bounded"]
# "article": valid / steps written (SPEC S11). "at_least_optimal": valid / max(steps written,
# optimal_steps), so a completion cannot raise it by writing fewer steps than the problem needs:
# under "article", GRPO on the demo model learnt to cut steps (docs/benchmarks.md).
StepValidityVariant = Literal["article", "at_least_optimal"]
RewardFunction = Callable[..., list[float]]  # TRL's convention: fn(completions, **columns)


def efficiency(steps: int, optimal_steps: int, variant: EfficiencyVariant = "article") -> float:
    """The efficiency term. "article": 1 - steps / optimal_steps (unbounded below); "bounded":
    min(1, optimal_steps / steps). Both are 1 with no step."""
    if isinstance(optimal_steps, bool) or not isinstance(optimal_steps, int) or optimal_steps < 1:
        raise ValueError(f"optimal_steps must be a positive integer, got {optimal_steps!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if variant == "article":
        return 1 - steps / optimal_steps
    if variant == "bounded":
        return 1.0 if steps <= optimal_steps else optimal_steps / steps
    raise ValueError(f"efficiency must be 'article' or 'bounded', got {variant!r}")


@dataclass(frozen=True)
class RewardConfig:
    """How `score` weighs and reads a completion; the defaults are SPEC S11's."""

    accuracy_weight: float = 0.6  # SPEC S11
    step_validity_weight: float = 0.3  # SPEC S11
    efficiency_weight: float = 0.1  # SPEC S11
    efficiency: EfficiencyVariant = "article"  # SPEC S11 as written; the RL issue measures "bounded"
    step_validity: StepValidityVariant = "article"  # SPEC S11 as written; see StepValidityVariant
    last_number_fallback: bool = True  # a bare final number still counts; scoring other models' outputs needs it
    # r1kit's chat template ends the prompt with <think>: set True to score its completions, so
    # that one cut off before </think> has no answer (off: plain text from other models is all answer)
    think_in_prompt: bool = False
    constants: frozenset[Fraction] = CONSTANTS  # numbers any step may use without a source
    # scale step validity by `question_coverage` (needs the question): valid steps that ignore the
    # question's numbers stop paying. Off: SPEC S11's term as written; GRPO gamed it (docs/benchmarks.md)
    question_coverage: bool = False

    def __post_init__(self):
        for name in ("accuracy_weight", "step_validity_weight", "efficiency_weight"):
            weight = getattr(self, name)
            if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {weight!r}")
        if self.efficiency not in ("article", "bounded"):
            raise ValueError(f"efficiency must be 'article' or 'bounded', got {self.efficiency!r}")
        if self.step_validity not in ("article", "at_least_optimal"):
            raise ValueError(f"step_validity must be 'article' or 'at_least_optimal', got {self.step_validity!r}")


@dataclass
class RewardBreakdown:
    """One completion's score: `total` = weighted accuracy + step_validity + efficiency (+ extras).
    `steps` counts claims; valid = correct and grounded; `ungrounded_steps` are correct but not
    grounded. `efficiency` is None without optimal_steps. `answer` is the extracted final answer."""

    accuracy: float
    step_validity: float
    efficiency: float | None
    steps: int
    optimal_steps: int | None
    total: float
    valid_steps: int = 0
    correct_steps: int = 0
    ungrounded_steps: int = 0
    answer: str | None = None
    grounding_checked: bool = False
    coverage: float | None = None  # question_coverage, when the config asks for it and there is a question
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def score(completion: str, answer: str | int | float, question: str | None = None,
          optimal_steps: int | None = None, config: RewardConfig = RewardConfig()) -> RewardBreakdown:
    """Score one completion against the gold `answer` (see the module docstring)."""
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a string, got {type(completion).__name__}")
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise TypeError(f"answer must be a string or a number, got {type(answer).__name__}")
    if question is not None and not isinstance(question, str):
        raise TypeError(f"question must be a string or None, got {type(question).__name__}")
    if optimal_steps is not None:
        efficiency(0, optimal_steps)  # validates it
    grounding_checked = question is not None
    if len(completion) > MAX_COMPLETION_CHARS:  # scored 0 throughout, unread
        return RewardBreakdown(0.0, 0.0, None if optimal_steps is None else 0.0, 0, optimal_steps, 0.0,
                               grounding_checked=grounding_checked)
    predicted = extract_answer(completion, config.last_number_fallback, config.think_in_prompt)
    accuracy = float(answers_match(predicted, str(answer)))
    steps = extract_steps(completion)
    if steps is None:  # more arithmetic than the verifier examines
        n_steps, checks = MAX_CLAIMS + 1, []
    else:
        n_steps, checks = len(steps), check_steps(steps, question, config.constants)
    valid = sum(c.valid for c in checks)
    correct = sum(c.correct for c in checks)
    denominator = n_steps
    if config.step_validity == "at_least_optimal" and optimal_steps is not None:
        denominator = max(n_steps, optimal_steps)
    step_validity = valid / denominator if denominator else 0.0
    coverage = None
    if config.question_coverage and question is not None:
        coverage = question_coverage(checks, question)
        step_validity *= coverage
    eff = None if optimal_steps is None else efficiency(n_steps, optimal_steps, config.efficiency)
    total = round(config.accuracy_weight * accuracy + config.step_validity_weight * step_validity
                  + config.efficiency_weight * (eff or 0.0), 12)  # so that 0.6 + 0.3 reads 0.9
    return RewardBreakdown(accuracy, step_validity, eff, n_steps, optimal_steps, total, valid, correct,
                           correct - valid if grounding_checked else 0, predicted, grounding_checked, coverage)


def completion_text(completion: str | Sequence[Mapping]) -> str:
    """A completion as text: TRL passes plain strings, or for chat data a list of messages whose
    last one is the model's."""
    if isinstance(completion, str):
        return completion
    if completion and isinstance(completion[-1], Mapping) and isinstance(completion[-1].get("content"), str):
        return completion[-1]["content"]
    raise TypeError("a completion must be a string or a list of chat messages ending with the model's")


def _column(values, n: int, name: str) -> list:
    if values is None or isinstance(values, (str, int)):
        return [values] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries for {n} completions")
    return values


def score_batch(completions: Sequence, answers: Sequence, questions: Sequence[str | None] | None = None,
                optimal_steps: Sequence[int | None] | int | None = None, config: RewardConfig = RewardConfig(),
                extra_rewards: Mapping[str, tuple[float, RewardFunction]] | None = None,
                **columns) -> list[RewardBreakdown]:
    """Score a batch; a single answer, question or optimal_steps applies to every completion (a
    GRPO group). `extra_rewards` maps a name to (weight, fn); each fn is called TRL's way,
    fn(completions, answer=..., question=..., optimal_steps=..., **columns) -> one float per
    completion, and adds weight * its value to `total` (and to `extra[name]`)."""
    n = len(completions)
    texts = [completion_text(c) for c in completions]
    answers = _column(answers, n, "answers")
    questions = _column(questions, n, "questions")
    optimal = _column(optimal_steps, n, "optimal_steps")
    results = [score(t, a, q, o, config) for t, a, q, o in zip(texts, answers, questions, optimal)]
    for name, (weight, fn) in (extra_rewards or {}).items():
        values = list(fn(list(completions), answer=answers, question=questions, optimal_steps=optimal, **columns))
        if len(values) != n or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise ValueError(f"extra reward {name!r} must return {n} finite numbers, got {values!r:.200}")
        for result, value in zip(results, values):
            result.extra[name] = float(value)
            result.total += weight * value
    return results


def composite_reward(completions: Sequence, answer: Sequence, question: Sequence[str] | None = None,
                     optimal_steps: Sequence[int | None] | None = None, config: RewardConfig = RewardConfig(),
                     **columns) -> list[float]:
    """The composite reward as a TRL reward function: dataset columns `answer` (required),
    `question` and `optimal_steps` (optional); other columns TRL passes (prompts, ...) are ignored.
    Use functools.partial(composite_reward, config=...) for other weights."""
    return [r.total for r in score_batch(completions, answer, question, optimal_steps, config)]


_RESPONSE_FORMAT = re.compile(r"\s*<think>(?:(?!</?think>).)*</think>\s*####[ \t]*\S[^\n]*\s*", re.DOTALL)


def format_reward(completions: Sequence, think_in_prompt: bool = False, **columns) -> list[float]:
    """1.0 for a completion in r1kit's response format (`format_response`), else 0.0: an example
    of an extra reward, in TRL's signature. `think_in_prompt`: the prompt supplied the <think>."""
    texts = [THINK + completion_text(c) if think_in_prompt else completion_text(c) for c in completions]
    return [float(len(t) <= MAX_COMPLETION_CHARS and bool(_RESPONSE_FORMAT.fullmatch(t))) for t in texts]


# --- files of completions to score ---------------------------------------------------------------

class RowError(ValueError):
    """A row of a scoring file that cannot be scored; the message names the file and line."""


def read_scoring_rows(path: str) -> list[dict]:
    """The rows of a JSONL file to score, as keyword arguments of `score`: `completion` (a string)
    and `answer` (a string or number) are required, `question` (a string) and `optimal_steps` (a
    positive integer) optional, other fields ignored, blank lines skipped. Every row is checked
    before any is returned, so a bad line stops a run before it prints anything."""
    rows = []
    with open(path, encoding="utf-8") as f:
        lineno = 0
        try:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    rows.append(_scoring_row(line, f"{path}:{lineno}"))
        except UnicodeDecodeError:
            raise RowError(f"{path}:{lineno + 1}: not UTF-8 text") from None
    return rows


def _scoring_row(line: str, where: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise RowError(f"{where}: not valid JSON ({e.msg}, column {e.colno})") from None
    if not isinstance(row, dict):
        raise RowError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for name in ("completion", "answer"):
        if name not in row:
            raise RowError(f"{where}: missing field {name!r}")
    if not isinstance(row["completion"], str):
        raise RowError(f"{where}: field 'completion' must be a string")
    if isinstance(row["answer"], bool) or not isinstance(row["answer"], (str, int, float)):
        raise RowError(f"{where}: field 'answer' must be a string or a number")
    if row.get("question") is not None and not isinstance(row["question"], str):
        raise RowError(f"{where}: field 'question' must be a string")
    optimal = row.get("optimal_steps")
    if optimal is not None and (isinstance(optimal, bool) or not isinstance(optimal, int) or optimal < 1):
        raise RowError(f"{where}: field 'optimal_steps' must be a positive integer")
    return {"completion": row["completion"], "answer": row["answer"], "question": row.get("question"),
            "optimal_steps": optimal}
