"""The safe arithmetic evaluator the verifier judges claims with, and the limits that keep the
verifier from hanging on any completion.

The evaluator is a recursive-descent parser of its own over numbers, + - * / // ^ ** x and
parentheses: no eval, no ast. Values are exact (`fractions.Fraction`). A literal may carry
thousands separators, a currency sign, decimals or a percent sign (20% is 1/5), or be a mixed
number (1 1/2).

Limits (why the verifier cannot hang)
    A claim side over MAX_EXPRESSION_CHARS, a literal over MAX_NUMBER_DIGITS digits, nesting over
    MAX_NESTING, a non-integer exponent or one over MAX_EXPONENT, or any intermediate value over
    MAX_RESULT_BITS (checked before a power is computed) raises ExpressionError: as a claim, it is
    incorrect. MAX_COMPLETION_CHARS bounds a whole completion: one over it is not read at all. It
    lives here, in the module the others build on, because answers, steps and score all check it.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

MAX_COMPLETION_CHARS = 65_536  # ~16k tokens, past any budget r1kit samples with
MAX_EXPRESSION_CHARS = 256  # one side of a claim; GSM8K's longest annotation has 36
MAX_NUMBER_DIGITS = 24  # digits in one literal
MAX_RESULT_BITS = 1_024  # numerator or denominator of any intermediate value (~308 digits)
MAX_EXPONENT = 64  # |exponent| of a power; exponents must be integers
MAX_NESTING = 32  # parentheses and unary signs


class ExpressionError(ValueError):
    """An expression that is malformed or exceeds a limit; as a claim, it is incorrect."""


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


def evaluate_expression(expression: str) -> Fraction:
    """The exact value of an arithmetic expression (numbers, + - * / x ^ **, parentheses; $ , % in
    numbers). Raises ExpressionError when it is malformed or exceeds a limit; never runs long."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"longer than {MAX_EXPRESSION_CHARS} characters")
    return _evaluate(_parse(_tokens(expression)))
