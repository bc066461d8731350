"""The verifier and the composite reward of S11 (docs/verifier.md): the one scorer for RL
rewards and for evaluation.

    R = 0.6 * accuracy + 0.3 * step_validity + 0.1 * efficiency

Pure Python, no torch. The RL loop feeds it arbitrary model output, so nothing a completion
contains makes it raise or run long; bad arguments (weights, optimal_steps) raise ValueError.

    arithmetic.py  the safe evaluator of a claim's arithmetic, and the limits on input size
    answers.py     the final answer: extraction and equivalence (accuracy)
    steps.py       claims: extraction, correctness, grounding, question coverage (step validity)
    score.py       one completion's reward, its config and efficiency; rows for `r1kit reward --jsonl`
    trl.py         TRL-signature adapters: score_batch, composite_reward, format_reward
"""

from r1kit.reward.answers import answers_match, extract_answer, parse_number
from r1kit.reward.arithmetic import ExpressionError, evaluate_expression
from r1kit.reward.score import (
    TRAINING_REWARD, RewardBreakdown, RewardConfig, RowError, efficiency, read_scoring_rows, score,
)
from r1kit.reward.steps import (
    CONSTANTS,
    Step,
    StepCheck,
    check_steps,
    count_steps,
    extract_steps,
    question_coverage,
)
from r1kit.reward.question import question_numbers
from r1kit.reward.trl import composite_reward, format_reward, message_text, score_batch

__all__ = [
    "CONSTANTS",
    "ExpressionError",
    "RewardBreakdown",
    "RewardConfig",
    "TRAINING_REWARD",
    "RowError",
    "Step",
    "StepCheck",
    "answers_match",
    "check_steps",
    "composite_reward",
    "count_steps",
    "efficiency",
    "evaluate_expression",
    "extract_answer",
    "extract_steps",
    "format_reward",
    "message_text",
    "parse_number",
    "question_coverage",
    "question_numbers",
    "read_scoring_rows",
    "score",
    "score_batch",
]
