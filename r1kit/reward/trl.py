"""The reward in TRL's convention: a reward function is `fn(completions, **columns) -> list[float]`,
where a completion is a string or, for chat data, a list of messages whose last one is the model's.
`score_batch` scores a batch (a GRPO group) and adds extra rewards of that signature;
`composite_reward` is S11's reward as one; `format_reward` is an example extra reward.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Mapping, Sequence

from r1kit.format import THINK
from r1kit.reward.arithmetic import MAX_COMPLETION_CHARS
from r1kit.reward.score import RewardBreakdown, RewardConfig, score

RewardFunction = Callable[..., list[float]]  # TRL's convention: fn(completions, **columns)


def message_text(completion: str | Sequence[Mapping]) -> str:
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
    texts = [message_text(c) for c in completions]
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
    texts = [THINK + message_text(c) if think_in_prompt else message_text(c) for c in completions]
    return [float(len(t) <= MAX_COMPLETION_CHARS and bool(_RESPONSE_FORMAT.fullmatch(t))) for t in texts]
