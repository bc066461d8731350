"""The verifier: answer extraction and equivalence, step extraction, validity and grounding, the safe
evaluator's limits, efficiency, the composite reward, the `r1kit reward` CLI, and the GSM8K
measurements the issue asks for (docs/verifier.md reports the figures)."""

import json
import os
import signal
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r1kit.cli import main
from r1kit.format import format_response
from r1kit.reward import (
    ExpressionError,
    RewardBreakdown,
    RewardConfig,
    answers_match,
    check_steps,
    composite_reward,
    efficiency,
    evaluate_expression,
    extract_answer,
    extract_steps,
    format_reward,
    question_coverage,
    question_numbers,
    score,
    score_batch,
)
from r1kit.reward.arithmetic import MAX_EXPRESSION_CHARS, MAX_RESULT_BITS
from r1kit.reward.steps import MAX_CLAIMS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from verifier_speed import ADVERSARIAL  # noqa: E402  (the inputs the speed benchmark times)
from verifier_gsm8k import measure  # noqa: E402  (the GSM8K figures: one definition, here and in the benchmark)

GSM8K = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "gsm8k" / "train.jsonl"
# rows copied from the study part of GSM8K's training split (MIT licence, github.com/openai/grade-school-math),
# each with the grounding rule it exercises as "kind"; chosen by the rule mattering on it (benchmarks/verifier_gsm8k.py)
GSM8K_SAMPLE = Path(__file__).resolve().parent / "fixtures" / "gsm8k_sample.jsonl"
NATALIA = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
           "How many clips did Natalia sell altogether in April and May?")


# --- answers -----------------------------------------------------------------------------------

TRICKY_ANSWERS = [
    # (completion, gold, matches)
    ("#### 1,234", "1234", True),
    ("#### $1,234.00", "1234", True),
    ("#### 1,234", "1,234", True),
    ("The answer is 25%.", "25", True),
    ("\\boxed{\\frac{1}{2}}", "0.5", True),
    ("#### 0.50", "1/2", True),
    ("#### 1/2", "\\frac{1}{2}", True),
    ("The answer is $\\frac{3}{4}$.", "0.75", True),
    ("The answer is 72.", "72", True),  # trailing period
    ("The final answer is: **72**", "72", True),
    ("#### 72 clips", "72", True),
    ("#### 5\n#### 7", "7", True),  # several ####: the last counts
    ("#### 5\n#### 7", "5", False),
    ("#### 72\n####", "72", True),  # an empty last marker is skipped
    ("#### -3", "-3", True),
    ("#### −3", "-3", True),  # unicode minus
    ("#### -$3", "-3", True),
    ("#### 72.0", "72", True),
    ("#### 72.4", "72", False),
    ("#### 0.33", "1/3", True),  # a gold with no finite decimal: rounded to the places written
    ("#### 0.3", "1/3", False),  # ... to at least two places
    ("#### 0.33", "0.333", False),  # a finite gold is exact
    ("A: 72", "72", True),
    ("Q: what?\nA: 71", "72", False),
    ("the final answer is 15 gallons\nA: 120", "120", True),  # the later phrase wins
    ("So she has 72 apples left", "72", True),  # last-number fallback
    ("<think>so #### 99</think>\n#### 72", "72", True),  # reasoning is not the answer
    ("<think>so #### 72</think>\n#### 99", "72", False),
    ("<think>the answer is 72", "72", False),  # an unclosed <think> has no answer
    ("<think>72</think>I am not sure.", "72", False),
    ("\\boxed{72} and later #### 71", "71", True),  # #### before \\boxed
]


@pytest.mark.parametrize("completion, gold, matches", TRICKY_ANSWERS)
def test_tricky_answer_formats(completion, gold, matches):
    assert answers_match(extract_answer(completion), gold) is matches


def test_last_number_fallback_is_configurable():
    assert extract_answer("so she has 72 apples") == "72"
    assert extract_answer("so she has 72 apples", last_number_fallback=False) is None
    assert extract_answer("The answer is 72", last_number_fallback=False) == "72"
    assert score("so 72", "72", config=RewardConfig(last_number_fallback=False)).accuracy == 0.0


def test_think_opened_by_the_prompt():
    # r1kit's chat template ends the prompt with <think>: a completion cut off before </think> is
    # all reasoning, and its last number is not an answer
    truncated, finished = "48/2 = 24\n48 + 24 = 72", "48/2 = 24\n48 + 24 = 72\n</think>\n#### 72<|eos|>"
    assert extract_answer(truncated) == "72" and extract_answer(truncated, think_in_prompt=True) is None
    assert extract_answer(finished, think_in_prompt=True) == "72"
    config = RewardConfig(think_in_prompt=True)
    assert (score(truncated, "72", config=config).accuracy, score(finished, "72", config=config).accuracy) == (0.0, 1.0)
    assert format_reward([finished.removesuffix("<|eos|>")], think_in_prompt=True) == [1.0]


def test_symbolic_answers_go_to_math_verify():
    assert answers_match("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}")
    assert answers_match(extract_answer("\\boxed{x+1}"), "1+x")
    assert not answers_match("x+2", "x+1")
    # a tower of powers never reaches sympy: it compares as text and is simply wrong
    assert not answers_match("9^{9^{9^{9}}}", "1")


def test_math_verify_has_a_time_limit_in_any_thread_and_counts_its_failures(monkeypatch, caplog):
    """Outside the main thread (no SIGALRM there) Math-Verify runs in a worker process that is
    killed when it overruns the limit; the overrun is counted and logged, and a fresh worker
    answers the next comparison."""
    from r1kit.reward import math_verify_worker

    def in_a_thread(predicted, gold):
        results = []
        worker = threading.Thread(target=lambda: results.append(answers_match(predicted, gold)))
        worker.start()
        worker.join()
        return results[0]

    assert in_a_thread("\\frac{x}{2}", "x/2") is True and in_a_thread("x+2", "x+1") is False
    before = math_verify_worker.failures()
    stuck = math_verify_worker._worker[0]
    os.kill(stuck.pid, signal.SIGSTOP)  # a worker stuck in sympy, as far as the caller can tell
    monkeypatch.setattr(math_verify_worker, "TIMEOUT_SECONDS", 0.5)
    with caplog.at_level("WARNING", logger="r1kit.reward.math_verify_worker"):
        assert in_a_thread("\\frac{x}{2}", "x/2") is False
    assert math_verify_worker.failures()["timeout"] == before["timeout"] + 1
    assert "Math-Verify timeout" in caplog.text and not stuck.is_alive()  # killed
    monkeypatch.setattr(math_verify_worker, "TIMEOUT_SECONDS", 2.0)
    assert in_a_thread("\\frac{x}{2}", "x/2") is True  # a new worker took over


def test_response_format_round_trips():
    response = format_response("48/2 = 24\n48 + 24 = 72", 72)
    assert response.endswith("</think>\n#### 72") and response.startswith("<think>\n")
    assert extract_answer(response, last_number_fallback=False) == "72"
    others = ["#### 72", "<think>x</think> 72", "<think><think>x</think>\n#### 1"]
    assert format_reward([response, *others]) == [1.0, 0.0, 0.0, 0.0]


# --- steps -------------------------------------------------------------------------------------

STEPS = [
    # (text, [(expression, value, correct)])
    ("4 * 7 = 28", [("4 * 7", "28", True)]),
    ("$4 x 7 = $28", [("$4 x 7", "$28", True)]),
    ("3 + 4 + 5 = 12", [("3 + 4 + 5", "12", True)]),
    ("2*3 = 6 + 1 = 7", [("2 * 3", "6 + 1", True), ("6 + 1", "7", True)]),
    ("2*3 + 1 = 6 + 1 = 7", [("2 * 3 + 1", "6 + 1", True), ("6 + 1", "7", True)]),
    ("<<48/2=24>>", [("48/2", "24", True)]),
    ("Natalia sold 48/2 = <<48/2=24>>24 clips.", [("48/2", "24", True)]),  # prose restates it
    ("In 7 weeks 5*7 = <<35=35>>35 die.", [("5 * 7", "35", True)]),  # no-op annotation: the prose claims
    ("4 * 7 = 29", [("4 * 7", "29", False)]),
    ("10/3 = 3.33", [("10 / 3", "3.33", True)]),  # rounded to the places written
    ("2/3 = 0.66", [("2 / 3", "0.66", False)]),  # truncated is wrong
    ("100/3 = 33", [("100 / 3", "33", False)]),  # an integer must be exact
    ("17/20 = 85%", [("17 / 20", "85%", True)]),
    ("100 - 15 = 85%", [("100 - 15", "85%", True)]),
    ("2(3+4) = 14", [("2 ( 3 + 4 )", "14", True)]),
    ("8 x 1 1/2 = 12 rolls", [("8 x 1 1/2", "12", True)]),
    ("\\(4 \\times 7 = 28\\)", [("4 * 7", "28", True)]),
    ("2x + 30 = 160", []),  # algebra is not arithmetic
    ("100/5 = 5A/5", []),
    ("Total = 72", []),  # no operator, no claim
    ("It costs $5. 2 + 2 = 4, 3 * 3 = 9.", [("2 + 2", "4", True), ("3 * 3", "9", True)]),
    ("4 * 7 = 28\nagain 4*7=28", [("4 * 7", "28", True)]),  # a repeated claim counts once
]


@pytest.mark.parametrize("text, expected", STEPS)
def test_step_extraction_and_correctness(text, expected):
    checks = check_steps(extract_steps(text))
    assert [(c.step.expression, c.step.value, c.correct) for c in checks] == expected


def test_grounded_steps_come_from_the_question_or_earlier_steps():
    checks = check_steps(extract_steps("48/2 = 24 in May, so 48 + 24 = 72"), NATALIA)
    assert [c.valid for c in checks] == [True, True]
    # 7 is not in the question: that claim is ungrounded, but it uses 48, so later claims may build on it
    checks = check_steps(extract_steps("48 * 7 = 336\n336 + 48 = 384"), NATALIA)
    assert [(c.correct, c.grounded) for c in checks] == [(True, False), (True, True)]
    assert "7" in checks[0].reason
    # a claim with no number from the question grounds nothing after it
    checks = check_steps(extract_steps("7 * 13 = 91\n91 + 48 = 139"), NATALIA)
    assert [(c.correct, c.grounded) for c in checks] == [(True, False), (True, False)]


def test_padding_with_constants_is_never_grounded():
    question = "Tom has 5 apples and buys 3 more. How many apples does he have?"
    checks = check_steps(extract_steps("<<1+1=2>> <<2*2=4>> <<5+3=8>>"), question)
    assert [(c.correct, c.grounded) for c in checks] == [(True, False), (True, False), (True, True)]
    result = score("<<1+1=2>> <<2*2=4>> <<5+3=8>>\n#### 8", "8", question, optimal_steps=1)
    assert (result.steps, result.valid_steps, result.correct_steps, result.ungrounded_steps) == (3, 1, 3, 2)


@pytest.mark.parametrize("question, completion", [
    ("She buys three boxes of a dozen eggs and her sister buys twice as many.", "3 * 12 = 36\n36 * 2 = 72"),
    ("He drove for four and a half hours.", "4.5 * 60 = 270"),
    ("A third of the 30 pupils walk; 20% of the rest cycle.", "30 / 3 = 10\n30 - 10 = 20\n20 * 0.2 = 4"),
    ("10 apples are shared by 3 children.", "10/3 = 3.33\n3.33 * 3 = 9.99"),
    ("Two-thirds of 90 pages, and 50 cents a page.", "2/3 * 90 = 60\n60 * 0.5 = 30"),
    ("It rained for 30 minutes.", "30 / 60 = 0.5"),
])
def test_numbers_in_words_and_units_ground_steps(question, completion):
    checks = check_steps(extract_steps(completion), question)
    assert checks and all(c.valid for c in checks), [c.reason for c in checks]


@pytest.mark.parametrize("question, includes", [
    ("three boxes and twenty-five pens", {3, 25}),
    ("half as many", {Fraction(1, 2), 2}),
    ("a dozen eggs and half a dozen rolls", {12, 6}),
    ("twice, triple and a pair", {2, 3}),
    ("two-thirds of them", {Fraction(2, 3), 3}),
    ("four and a half hours", {Fraction(9, 2), 270}),
    ("1 1/2 cups and 3/4 of it", {Fraction(3, 2), Fraction(3, 4), 4}),
    ("20% off $1,200.50", {20, Fraction(1, 5), Fraction(4, 5), Fraction(6, 5), Fraction("1200.5")}),
    ("5 million people", {5, 5_000_000}),
])
def test_question_numbers(question, includes):
    assert includes <= question_numbers(question)


CHLOE = ("Chloe is 6 years old. Her father is 8 times as old as her. Her grandfather is 21 years older "
         "than her father. What is the sum of the ages of Chloe, her father and her grandfather?")
# what GRPO learnt from a model that writes too few steps: valid by grounding, yet solving nothing
CONSTANT_CHAIN = "6 * 2 = 12\n12 + 2 = 14\n14 + 2 = 16\n16 + 2 = 18"


def test_question_coverage_tells_valid_steps_that_ignore_the_question():
    hack, gold = check_steps(extract_steps(CONSTANT_CHAIN), CHLOE), check_steps(extract_steps("6 * 8 = 48\n48 + 21 = 69\n6 + 48 + 69 = 123"), CHLOE)
    assert all(c.valid for c in hack) and all(c.valid for c in gold)
    assert question_coverage(hack, CHLOE) == pytest.approx(1 / 3)  # uses 6 of 6, 8, 21
    assert question_coverage(gold, CHLOE) == 1.0
    # a number counts as used in the forms its unit allows, and the unit's own factor is not it
    assert question_coverage(check_steps(extract_steps("30 / 60 = 0.5"), "It rained for 30 minutes."), "It rained for 30 minutes.") == 1.0
    week = "Maya goes on holiday for 5 weeks. A week has 7 days. How many days is that?"
    assert question_coverage(check_steps(extract_steps("5 * 7 = 35"), week), week) == 1.0
    assert question_coverage(check_steps(extract_steps("5 * 2 = 10"), week), week) == 0.5
    # invalid claims use nothing; a question without digits is covered by anything
    assert question_coverage(check_steps(extract_steps("6 * 8 = 49"), CHLOE), CHLOE) == 0.0
    assert question_coverage([], "three apples and two pears") == 1.0


def test_coverage_scales_step_validity_only_when_asked():
    completion = f"{CONSTANT_CHAIN}\n#### 18"
    plain = score(completion, "123", CHLOE, optimal_steps=3)
    covered = score(completion, "123", CHLOE, optimal_steps=3, config=RewardConfig(question_coverage=True))
    assert plain.step_validity == 1.0 and plain.coverage is None
    assert covered.coverage == pytest.approx(1 / 3) and covered.step_validity == pytest.approx(1 / 3)
    assert covered.total == pytest.approx(plain.total - 0.3 * 2 / 3)
    solved = score("6 * 8 = 48\n48 + 21 = 69\n6 + 48 + 69 = 123\n#### 123", "123", CHLOE, optimal_steps=3,
                   config=RewardConfig(question_coverage=True))
    assert (solved.step_validity, solved.coverage, solved.total) == (1.0, 1.0, pytest.approx(0.9))


def test_synthetic_gold_steps_cover_their_questions():
    from r1kit.data.synth import TEMPLATES, synth
    examples = synth(600, seed=7, steps=range(1, 7))
    assert {e.meta["template"] for e in examples} == set(TEMPLATES)  # every situation is exercised
    for e in examples:
        checks = check_steps(extract_steps("\n".join(e.steps)), e.question)
        assert question_coverage(checks, e.question) == 1.0, (e.question, e.steps)


def test_without_a_question_grounding_is_not_checked():
    result = score("48 * 7 = 336\n#### 336", "336")
    assert (result.grounding_checked, result.step_validity, result.ungrounded_steps) == (False, 1.0, 0)


# --- the safe evaluator ------------------------------------------------------------------------

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


@st.composite
def _expression(draw, depth=0):
    """(text, exact value or None when evaluation must fail, precedence) of a random expression,
    parenthesised only where precedence and left associativity need it."""
    kind = draw(st.sampled_from(["num", "dec"] if depth >= 4 else ["num", "dec", "bin", "bin", "neg", "pow"]))
    if kind == "num":
        n = draw(st.integers(0, 10**6))
        return (f"{n:,}" if draw(st.booleans()) else str(n)), Fraction(n), 9
    if kind == "dec":
        text = f"{draw(st.integers(0, 9999))}.{draw(st.integers(0, 999)):03d}"
        return text, Fraction(text), 9
    if kind == "neg":
        text, value, prec = draw(_expression(depth + 1))
        return "-" + (text if prec >= 3 else f"({text})"), None if value is None else -value, 2.5
    if kind == "pow":
        text, value, prec = draw(_expression(depth + 1))
        exponent = draw(st.integers(0, 3))
        base = text if prec == 9 else f"({text})"
        result = None if value is None else value**exponent
        return f"{base}{draw(st.sampled_from(['^', '**']))}{exponent}", result, 3
    op = draw(st.sampled_from("+-*/"))
    (lt, lv, lp), (rt, rv, rp) = draw(_expression(depth + 1)), draw(_expression(depth + 1))
    left = lt if lp >= _PRECEDENCE[op] else f"({lt})"
    right = rt if rp > _PRECEDENCE[op] else f"({rt})"
    symbol = {"*": draw(st.sampled_from(["*", "×", "x" if right[0] in "0123456789(" else "*"]))}.get(op, op)
    if lv is None or rv is None or (op == "/" and rv == 0):
        value = None
    else:
        value = {"+": lv + rv, "-": lv - rv, "*": lv * rv, "/": lv / rv if rv else None}[op]
    return f"{left} {symbol} {right}", value, _PRECEDENCE[op]


def _fits(value: Fraction) -> bool:
    return max(value.numerator.bit_length(), value.denominator.bit_length()) <= MAX_RESULT_BITS


@settings(max_examples=300, deadline=None)
@given(_expression())
def test_random_expressions_evaluate_to_the_exact_fraction(expression):
    text, value, _ = expression
    if value is None or len(text) > MAX_EXPRESSION_CHARS or not _fits(value):
        with pytest.raises(ExpressionError):
            evaluate_expression(text)
    else:
        assert evaluate_expression(text) == value


def test_evaluator_precedence_and_limits():
    assert evaluate_expression("2 + 3 * 4") == 14
    assert evaluate_expression("-2^2") == -4 and evaluate_expression("2^3^2") == 512
    assert evaluate_expression("2**-1") == Fraction(1, 2)
    assert evaluate_expression("7 // 2") == 3 and evaluate_expression("$1,200 * 5%") == 60
    for bad in ("9**9**9**9", "1/0", "2^0.5", "2^65", "((((((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))))))",
                "1" * 30, "1 +", "(1", "__import__('os')", "x"):
        with pytest.raises(ExpressionError):
            evaluate_expression(bad)




# The speed figure (each under 50 ms) is benchmarks/verifier_speed.py's; a test only catches a
# blow-up: quadratic or exponential work on these inputs takes minutes, so a bound 20x over the
# figure holds on a busy 2-core machine and still fails on one.
BLOW_UP_SECONDS = 1.0


def _timed_score(text: str, **kwargs) -> tuple[RewardBreakdown, float]:
    """The result and the best of three times: a bound on the work, not on a noisy neighbour."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        result = score(text, "72", NATALIA, **kwargs)
        best = min(best, time.perf_counter() - start)
    return result, best


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_adversarial_inputs_score_invalid_without_blowing_up(name):
    result, seconds = _timed_score(ADVERSARIAL[name], optimal_steps=3)
    assert result.accuracy == 0.0 and result.step_validity == 0.0 and result.valid_steps == 0
    assert seconds < BLOW_UP_SECONDS, f"{name}: {seconds * 1000:.1f} ms"


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["9", "99", "12345"]), st.integers(2, 200), st.sampled_from(["**", "^"]),
       st.sampled_from(["{} = 5", "<<{}=5>>", "#### {}", "\\boxed{{{}}}"]))
def test_generated_towers_score_invalid_without_blowing_up(base, height, power, template):
    result, seconds = _timed_score(template.format(power.join([base] * height)))
    assert result.accuracy == 0.0 and result.valid_steps == 0
    assert seconds < BLOW_UP_SECONDS


ARITHMETIC_TEXT = st.text(alphabet="0123456789+-*/=()<>#$%.,x^ \n\\{}boxedthinkA:answeris", max_size=400)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=2000), ARITHMETIC_TEXT), st.one_of(st.none(), st.text(max_size=200)))
def test_arbitrary_text_never_raises(completion, question):
    result = score(completion, "72", question, optimal_steps=3, config=RewardConfig(efficiency="bounded"))
    assert 0 <= result.accuracy <= 1 and 0 <= result.step_validity <= 1 and 0 <= result.efficiency <= 1
    assert result.valid_steps <= result.correct_steps <= result.steps
    assert result.total == pytest.approx(0.6 * result.accuracy + 0.3 * result.step_validity + 0.1 * result.efficiency)


# --- efficiency and the composite reward -------------------------------------------------------

@pytest.mark.parametrize("steps, article, bounded", [
    (0, 1.0, 1.0), (2, 1 / 3, 1.0), (3, 0.0, 1.0), (6, -1.0, 0.5), (30, -9.0, 0.1)])
def test_efficiency_variants(steps, article, bounded):
    assert efficiency(steps, 3, "article") == pytest.approx(article)
    assert efficiency(steps, 3, "bounded") == pytest.approx(bounded)


@pytest.mark.parametrize("call", [
    lambda: efficiency(1, 0), lambda: efficiency(1, 2.5), lambda: efficiency(1, 3, "linear"),
    lambda: RewardConfig(accuracy_weight=-1), lambda: RewardConfig(efficiency="linear"),
    lambda: score("#### 1", "1", optimal_steps=0),
])
def test_bad_arguments_raise_clear_errors(call):
    with pytest.raises(ValueError):
        call()


def test_composite_reward_weights_and_breakdown():
    completion = format_response("48/2 = 24 clips in May.\n48 + 24 = 72 altogether.", 72)
    result = score(completion, "72", NATALIA, optimal_steps=2)
    assert (result.accuracy, result.step_validity, result.efficiency, result.steps, result.total) == (1.0, 1.0, 0.0, 2, 0.9)
    wrong = score(completion.replace("#### 72", "#### 71"), "72", NATALIA, optimal_steps=1)
    assert (wrong.accuracy, wrong.efficiency, wrong.total) == (0.0, -1.0, pytest.approx(0.3 - 0.1))
    custom = score(completion, "72", NATALIA, 4, RewardConfig(1.0, 0.0, 1.0, efficiency="bounded"))
    assert custom.total == 2.0
    assert score(completion, "72", NATALIA).efficiency is None  # no optimal_steps, no efficiency term


def test_step_validity_at_least_optimal_does_not_pay_for_cutting_steps():
    one_step = format_response("48/2 = 24 clips in May.", 72)  # one valid step of the two needed
    article = score(one_step, "72", NATALIA, optimal_steps=2)
    strict = score(one_step, "72", NATALIA, optimal_steps=2, config=RewardConfig(step_validity="at_least_optimal"))
    assert (article.step_validity, strict.step_validity) == (1.0, 0.5)
    both = format_response("48/2 = 24 clips in May.\n48 + 24 = 72 altogether.", 72)
    for variant in ("article", "at_least_optimal"):  # as many steps as needed: the same
        assert score(both, "72", NATALIA, optimal_steps=2, config=RewardConfig(step_validity=variant)).step_validity == 1.0
    # no optimal step count known: nothing to compare against, so the article's fraction
    assert score(one_step, "72", NATALIA, config=RewardConfig(step_validity="at_least_optimal")).step_validity == 1.0
    with pytest.raises(ValueError, match="step_validity"):
        RewardConfig(step_validity="strict")


def test_too_many_claims_score_zero_validity():
    text = "".join(f"{i} + 1 = {i + 1}\n" for i in range(MAX_CLAIMS + 5)) + "#### 72"
    result = score(text, "72", optimal_steps=2)
    assert (result.steps, result.step_validity, result.accuracy) == (MAX_CLAIMS + 1, 0.0, 1.0)


def test_batch_api_with_extra_rewards_in_trl_signature():
    completions = [format_response("48/2 = 24\n48 + 24 = 72", 72), "#### 71", "72"]
    seen = {}

    def length_penalty(completions, answer, **columns):
        seen.update(columns, answer=answer)
        return [-len(c) / 100 for c in completions]

    results = score_batch(completions, ["72"] * 3, [NATALIA] * 3, 2, extra_rewards={"length": (0.5, length_penalty)},
                          source=["a", "b", "c"])
    assert seen["source"] == ["a", "b", "c"] and seen["answer"] == ["72"] * 3 and seen["question"] == [NATALIA] * 3
    for completion, result in zip(completions, results):
        assert result.extra["length"] == -len(completion) / 100
        assert result.total == pytest.approx(score(completion, "72", NATALIA, 2).total - 0.5 * len(completion) / 100)
    with pytest.raises(ValueError, match="length"):
        score_batch(completions, ["72"] * 3, extra_rewards={"length": (1.0, lambda completions, **_: [0.0])})
    with pytest.raises(ValueError, match="answers"):
        score_batch(completions, ["72"] * 2)


def test_composite_reward_takes_trl_columns_and_chat_completions():
    chat = [[{"role": "assistant", "content": "#### 72"}], [{"role": "assistant", "content": "#### 7"}]]
    rewards = composite_reward(chat, answer=["72", "72"], prompts=["q", "q"], completion_ids=[[1], [2]])
    assert rewards == [0.6, 0.0]


# --- the CLI -----------------------------------------------------------------------------------

def test_cli_scores_one_completion(capsys, tmp_path):
    args = ["reward", "--answer", "72", "--question", NATALIA, "--optimal-steps", "2"]
    assert main([*args, "--completion", "48/2 = 24 and 48 + 24 = 72\n#### 72"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {k: out[k] for k in ("accuracy", "step_validity", "efficiency", "steps", "optimal_steps", "total")} == {
        "accuracy": 1.0, "step_validity": 1.0, "efficiency": 0.0, "steps": 2, "optimal_steps": 2, "total": 0.9}
    assert main(["reward", "--answer", "123", "--question", CHLOE, "--completion", CONSTANT_CHAIN, "--question-coverage"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["coverage"] == pytest.approx(1 / 3) and out["step_validity"] == pytest.approx(1 / 3)
    with pytest.raises(SystemExit):
        main(["reward", "--answer", "123", "--completion", CONSTANT_CHAIN, "--question-coverage"])
    assert "--question-coverage needs --question" in capsys.readouterr().err
    assert main(["reward", "--answer", "72", "--completion", "48 + 24 = 72", "--think-in-prompt"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 0.0  # cut off inside the reasoning
    path = tmp_path / "completion.txt"
    path.write_text("48/2 = 24\n48 + 24 = 72\n48 * 9 = 432\n#### 72")
    assert main([*args, "--completion-file", str(path), "--efficiency", "bounded", "--weights", "1,1,1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["steps"], out["ungrounded_steps"], out["efficiency"]) == (3, 1, pytest.approx(2 / 3))
    assert out["total"] == pytest.approx(1 + 2 / 3 + 2 / 3)


def test_cli_scores_a_jsonl_file_in_order(capsys, tmp_path):
    rows = [{"completion": "#### 72", "answer": "72"}, {"completion": "#### 5", "answer": 6, "note": "x"},
            {"completion": "4 * 7 = 28\n#### 28", "answer": "28", "question": "4 boxes of 7", "optimal_steps": 1}]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert main(["reward", "--jsonl", str(path)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["accuracy"] for o in out] == [1.0, 0.0, 1.0]
    assert out[2]["total"] == 0.9 and out[2]["grounding_checked"] is True


@pytest.mark.parametrize("lines, message", [
    (['{"completion": "#### 1", "answer": "1"}', '{"completion": "#### 1", "answer": '], ":2: not valid JSON"),
    (['{"completion": "#### 1"}'], ":1: missing field 'answer'"),
    (['', '[1, 2]'], ":2: expected a JSON object"),
    (['{"completion": 5, "answer": "1"}'], ":1: field 'completion' must be a string"),
    (['{"completion": "x", "answer": "1", "optimal_steps": 0}'], ":1: field 'optimal_steps' must be a positive integer"),
])
def test_cli_bad_rows_exit_2_naming_file_and_line(capsys, tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["reward", "--jsonl", str(path)])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and f"{path}{message}" in captured.err


def test_cli_usage_errors_exit_2(capsys, tmp_path):
    assert main(["reward", "--jsonl", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    for args in (["--completion", "#### 1"], ["--completion", "#### 1", "--answer", "1", "--weights", "1,2"],
                 ["--completion", "#### 1", "--answer", "1", "--optimal-steps", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["reward", *args])
        assert exit_info.value.code == 2 and "r1kit reward: error:" in capsys.readouterr().err


# --- GSM8K: the measurements of docs/verifier.md -------------------------------------------------

@pytest.fixture(scope="module")
def gsm8k():
    """The counts of benchmarks/verifier_gsm8k.py per part of the training split: "study" (the
    grounding rules were written looking at it), "report" (only measured) and "all"."""
    if not GSM8K.is_file():
        pytest.skip(f"GSM8K not found at {GSM8K} (the shared data folder beside the repository)")
    stats = measure([json.loads(line) for line in GSM8K.open()])
    print(f"GSM8K: {stats}")  # the figures docs/verifier.md reports (pytest -s shows them)
    return stats


def test_gsm8k_answer_extraction_recovers_every_gold_answer(gsm8k):
    assert gsm8k["all"]["extracted"] == gsm8k["all"]["rows"]
    assert gsm8k["all"]["variants"] == gsm8k["all"]["rows"]  # in every accepted form, reasoning not mistaken for it


def test_gsm8k_gold_steps_are_valid_and_grounded(gsm8k):
    assert gsm8k["all"]["correct"] / gsm8k["all"]["steps"] >= 0.99, gsm8k
    # on the part no grounding rule was written from, as on the whole file
    for part in ("report", "all"):
        assert gsm8k[part]["valid"] / gsm8k[part]["steps"] >= 0.98, gsm8k[part]


def test_gsm8k_a_changed_step_result_is_detected(gsm8k):
    stats = gsm8k["all"]
    # 95 solutions have no annotation and a few only no-op ones (<<35=35>>): nothing to change
    assert stats["perturbed"] >= 0.97 * stats["rows"]
    # arithmetic validity (correct claims / claims) drops in >= 99% of rows
    assert stats["correct_drops"] / stats["perturbed"] >= 0.99, stats
    # step validity (correct and grounded) drops in every row where the changed claim was valid;
    # where it was already ungrounded it has nothing to lose (docs/verifier.md gives the share)
    assert stats["validity_drops_when_it_was"] == stats["changed_step_was_valid"], stats
    assert gsm8k["report"]["validity_drops"] / gsm8k["report"]["perturbed"] >= 0.985, gsm8k["report"]


# --- grounding kinds on real solutions (a committed sample: runs without ../shared) ----------------

SAMPLE = [json.loads(line) for line in GSM8K_SAMPLE.open()]
KINDS = sorted({row["kind"] for row in SAMPLE} - {"left ungrounded"})


@pytest.mark.parametrize("kind", KINDS)
def test_each_grounding_kind_grounds_every_claim_of_its_sample_rows(kind):
    rows = [row for row in SAMPLE if row["kind"] == kind]
    assert rows
    for row in rows:
        checks = check_steps(extract_steps(row["answer"]), row["question"])
        assert checks and all(c.valid for c in checks), (row["answer"], [c.reason for c in checks])


def test_a_corrupted_step_is_detected_on_every_sample_row():
    stats = measure([row for row in SAMPLE if row["kind"] != "left ungrounded"])["all"]
    # every row whose solution has an annotated claim to change (a few write only <<5=5>>)
    assert stats["validity_drops"] == stats["perturbed"] >= 0.8 * stats["rows"], stats


def test_what_no_rule_explains_stays_ungrounded_on_the_sample():
    # 0 for "no stripes" (0 would let 48 + 0 = 48 pass) and 20 fingers and toes (world knowledge)
    ungrounded = [f"{c.step.expression}={c.step.value}" for row in SAMPLE if row["kind"] == "left ungrounded"
                  for c in check_steps(extract_steps(row["answer"]), row["question"]) if not c.valid]
    assert ungrounded == ["6*0=0", "3*20=60"]


TOM = "Tom reads 5 pages a day."


@pytest.mark.parametrize("question, completion, valid", [
    # unit constants: 7 only where a word names the week or day, in the question or the claim's prose
    (TOM, "5*7 = 35", [True]),
    ("Tom reads 5 pages.", "5*7 = 35", [False]),
    ("Tom reads 5 pages.", "In a week he reads 5*7 = 35 pages.", [True]),
    # ... and never ground a claim on their own, nor what builds on it
    (TOM, "There are 24 hours in a day, so 60*24 = 1440 minutes.\n1440*7 = 10080", [False, False]),
    # prose results: arithmetic with words and units in it grounds its result when it is right
    # and uses known numbers; not when it is wrong or brings in a number from nowhere
    (NATALIA, "She sold 48 clips / 2 = 24 clips in May.\n48+24 = 72", [True]),
    (NATALIA, "She sold 48 clips / 2 = 25 clips in May.\n48+25 = 73", [False]),
    (NATALIA, "She sold 48 clips + 7 clips = 55 clips.\n55+2 = 57", [False]),
    # equations in one letter: solved from known numbers, a step that still holds grounds its new number
    (NATALIA, "Let x be the clips in May: 2x = 48\nx = 24\n48 + 24 = 72", [True]),
    (NATALIA, "2x + 4 = 52\n2x = 48\nx = 48/2 = 24", [True]),
    (NATALIA, "Let x = 7.\n48*7 = 336", [False]),  # an assignment grounds nothing
    (NATALIA, "x = 48/2 = 24\n(x - 24)*7 = 24 - 24\n48*7 = 336", [True, False]),  # 7 is not forced there
    (NATALIA, "48x + 7x - 7x = 48x\n48*7 = 336", [False]),  # nor here
    # forms: 25% as 1/4 gives 4; a unit conversion's fractions give nothing (6 days / 24 = 1/4 is no 4)
    ("Jen spent 25% of her $80.", "80/4 = 20", [True]),
    ("Jen works 6 days a week and earns $576.", "576/4 = 144", [False]),
    # counted: a list of three names states 3, two names do not
    ("Sarah, Mary, and Tuan share $63 equally.", "63/3 = 21", [True]),
    ("Sarah and Tuan share $63 with a friend.", "63/3 = 21", [False]),
    ("He sleeps 8 hours a night from Monday to Thursday.", "8*4 = 32", [True]),
    # 0 is no constant: a trivially true step on a question number is not grounded
    (NATALIA, "48 + 0 = 48", [False]),
])
def test_grounding_rules_are_narrow(question, completion, valid):
    checks = check_steps(extract_steps(completion), question)
    assert [c.valid for c in checks] == valid, [c.reason for c in checks]


def test_unit_constants_and_trivially_true_steps_score_no_step_validity():
    question = "Ann works 5 hours a day, 6 days a week, for 3 weeks at $12 an hour, plus 20% on Sundays."
    padding = "60*24 = 1440\n1440*7 = 10080\n7*52 = 364\n24*7 = 168\n1+1 = 2\n2*2 = 4\n60/60 = 1\n100/100 = 1\n10*10 = 100"
    result = score(f"{padding}\n#### 1080", "1080", question, optimal_steps=3)
    assert (result.steps, result.correct_steps, result.valid_steps, result.step_validity) == (9, 9, 0, 0.0)
    # the same completion with the solution's steps: only those count
    solved = score(f"{padding}\n5*6*3 = 90\n90*12 = 1080\n#### 1080", "1080", question, optimal_steps=2)
    assert (solved.valid_steps, solved.steps) == (2, 11)
