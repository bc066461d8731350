"""The composite reward of S11 for one completion (`score`), its weights and variants
(`RewardConfig`), the efficiency term, and the JSONL rows `r1kit reward --jsonl` scores.

    R = 0.6 * accuracy + 0.3 * step_validity + 0.1 * efficiency

Accuracy is whether the extracted answer matches the gold one (r1kit.reward.answers); step
validity is the share of valid claims (r1kit.reward.steps). A completion over MAX_COMPLETION_CHARS
scores 0 throughout, unread; nothing a completion contains makes `score` raise, while bad
*arguments* (weights, optimal_steps) raise ValueError.

Efficiency (`efficiency`)
    "article" (default; S11 as written): 1 - steps / optimal_steps. It is 1 with no step, 0 at
    the optimal count and negative above it, without a floor: three times the optimal count gives
    -2, which at weight 0.1 costs 0.2, and a long enough chain outweighs a correct answer.
    "bounded": min(1, optimal_steps / steps): 1 at or below the optimal count, falling towards 0
    above it, never negative. Both give 1 with no step; skipping the reasoning is paid for by step
    validity (0 with no claim). Without optimal_steps the efficiency term is None and adds 0;
    `count_steps(gold_solution)` gives the optimal count of a reference solution.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Literal

from r1kit.reward.answers import answers_match, extract_answer
from r1kit.reward.arithmetic import MAX_COMPLETION_CHARS
from r1kit.reward.steps import CONSTANTS, MAX_CLAIMS, check_steps, extract_steps, question_coverage

EfficiencyVariant = Literal["article", "bounded"]
# "article": valid / steps written (S11). "at_least_optimal": valid / max(steps written,
# optimal_steps), so a completion cannot raise it by writing fewer steps than the problem needs:
# under "article", GRPO on the demo model learnt to cut steps (docs/benchmarks.md).
StepValidityVariant = Literal["article", "at_least_optimal"]


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
    """How `score` weighs and reads a completion; the defaults are S11's."""

    accuracy_weight: float = 0.6  # S11
    step_validity_weight: float = 0.3  # S11
    efficiency_weight: float = 0.1  # S11
    efficiency: EfficiencyVariant = "article"  # S11 as written; the RL issue measures "bounded"
    step_validity: StepValidityVariant = "article"  # S11 as written; see StepValidityVariant
    last_number_fallback: bool = True  # a bare final number still counts; scoring other models' outputs needs it
    # r1kit's chat template ends the prompt with <think>: set True to score its completions, so
    # that one cut off before </think> has no answer (off: plain text from other models is all answer)
    think_in_prompt: bool = False
    constants: frozenset[Fraction] = CONSTANTS  # numbers any step may use without a source
    # scale step validity by `question_coverage` (needs the question): valid steps that ignore the
    # question's numbers stop paying. Off: S11's term as written; GRPO gamed it (docs/benchmarks.md)
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


# Evaluation and `r1kit reward` score with RewardConfig's defaults, the article's R. GRPO trains on the
# same weights with two guards on, the one difference between them: step validity over
# max(steps written, optimal) and question coverage, which stopped RL from gaming step validity by
# cutting steps or chaining valid steps on constants (docs/benchmarks.md, "GRPO after SFT").
TRAINING_REWARD = RewardConfig(step_validity="at_least_optimal", question_coverage=True, think_in_prompt=True)


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
