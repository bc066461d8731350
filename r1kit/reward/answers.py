"""The final answer of a completion: extraction and equivalence (the accuracy term of the reward).

Response format
    r1kit's models answer ``<think> reasoning </think>`` and then ``#### N`` on its own line
    (r1kit.format's `format_response`, `format_answer`). ``####`` is GSM8K's own marker, so gold
    solutions and model outputs share one form; the other forms below are accepted for models
    trained elsewhere.

Answer extraction (`extract_answer`)
    Only the text after the last ``</think>`` is searched; a completion that opens ``<think>`` and
    never closes it has no answer (with ``think_in_prompt``, for r1kit's chat template whose prompt
    ends with ``<think>``, a completion without ``</think>`` has none). The first form present
    wins, and within a form its last occurrence (of several ``####``, the last): ``#### 72``;
    ``\\boxed{72}``; ``the (final) answer is 72``, ``Answer: 72`` or a line starting ``A: 72``;
    then, with ``last_number_fallback`` (on by default), the last number. Numbers may carry
    thousands separators, a currency sign, a percent sign, decimals, a sign, or be ``a/b`` or
    ``\\frac{a}{b}``.

Equivalence (`answers_match`)
    Numbers compare exactly as `fractions.Fraction`: 0.50 == 1/2 == \\frac{1}{2}; 72.4 != 72. A
    percent sign on an answer is a unit and is dropped (25% matches a gold 25). Decimal tolerance
    for answers: only a gold with no finite decimal expansion (1/3) accepts a decimal of >= 2
    places equal to it rounded to the places written (0.33, 0.333; not 0.3). Answers that are not
    plain numbers (``x+1``, ``\\frac{\\sqrt{3}}{2}``) go to Math-Verify after a screen
    (`_safe_for_math_verify`) that keeps out what could make sympy run long; what fails the screen
    compares as text.
"""

from __future__ import annotations

import re
from collections import deque
from fractions import Fraction

from r1kit.format import ANSWER_MARKER, THINK, split_completion
from r1kit.reward.arithmetic import _NUM, MAX_COMPLETION_CHARS, ExpressionError, _literal
from r1kit.reward.math_verify_worker import math_verify_equal

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
    return math_verify_equal(predicted, gold)  # time-limited in any thread; failures counted


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
