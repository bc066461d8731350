"""GRPO (S11): reinforcement learning from the verifier's reward, readable top to bottom.

    r1kit train rl --init runs/demo/sft/final --config configs/rl_demo.yaml [rl.max_steps=100 ...]

What one step does:
  1. picks `prompts_per_step` training problems, a pure function of (seed, step) as SFT's batches;
  2. samples `group_size` completions per problem (`rollout`, the engine, model in eval mode), at
     `temperature` / `top_p` with a sampling seed derived from (seed, step);
  3. scores each with the verifier (`r1kit.reward.score` on the decoded text, EOS stripped):
     R = 0.6 accuracy + 0.3 step validity + 0.1 efficiency with reward.TRAINING_REWARD's two guards
     (below), plus any extra reward functions (`reward_fns`, in TRL's signature
     fn(completions, answer=, question=, optimal_steps=) -> floats, as r1kit.reward.trl's);
  4. turns rewards into advantages within each problem's group (`group_advantages`);
  5. with beta > 0 the frozen init (SFT) model gives reference log-probs (with beta = 0 no
     reference model is built at all);
  6. `ppo_epochs` passes over the rollout batch, each one optimiser step over all its micro-batches;
     the first pass's forward, on the rollout policy's weights, also gives the rollout ("old")
     policy's per-token log-probs and each MoE layer's expert choices for the later passes:
     clipped surrogate + beta * k3 KL, summed over every response token of the batch and divided by
     their number; AdamW, gradient clipping, then the MoE balancing update (model.update_balancing);
  7. logs metrics as JSONL, evaluates greedily on held-out problems (evaluate.evaluate), writes
     `last/` (with trainer state) every `save_every` steps and `final/` at the end, atomically;
     with update_share < 1, final/ lies that share of the way from the init to the trained weights.
RL never applies layer drop: the model runs with a copy of its config with layer_drop = 0 (a
dropped layer would change the policy between rollout and update); checkpoints keep the init's value.

The variant, and where it follows or departs from the papers
  DeepSeekMath (Shao et al. 2024, GRPO). Followed: group-relative advantages
      A_i = (r_i - mean(r)) / (std(r) + eps)            advantage="group_std" (default)
  (std with Bessel's correction and eps = 1e-4, as TRL), the same advantage on every token of a
  completion, the PPO-clipped ratio with epsilon = 0.2, and the KL to the reference model as a loss
  term with the k3 estimator exp(ref - new) - (ref - new) - 1 (not a reward penalty as in PPO).
  One pass per rollout batch by default (ppo_epochs = 1, DeepSeekMath's mu = 1, TRL's
  num_iterations = 1): the ratio is then exactly 1 and the clip never acts; the objective is the
  plain policy gradient. ppo_epochs > 1 reuses each rollout batch (rollouts dominate the cost on a
  CPU) and then the clip matters. Departures: beta = 0 by default (no KL term; Dr. GRPO, DAPO and
  TRL's default since 2025 drop it: the clip and a small learning rate keep each step close, and it
  saves the reference model's memory and forward), and the loss is normalised per token over the
  whole batch instead of per completion then per group (below).
  Dr. GRPO (Liu et al. 2025). advantage="mean_only" drops the division by std, which up-weights
  groups whose rewards barely differ (nearly all right or all wrong). Dr. GRPO also drops the
  per-completion 1/|o_i|, which favours long wrong answers (their per-token penalty is diluted);
  r1kit does too, but divides by the batch's token count (DAPO) rather than Dr. GRPO's constant.
  DAPO (Yu et al. 2025). Followed: token-level normalisation, sum over all response tokens of the
  batch / their number (TRL's "dapo"/"bnpo"), so every token weighs the same; dynamic sampling as
  an option (`dynamic_sampling` = N: groups whose rewards are all equal are dropped and up to N
  more rounds of fresh problems are rolled out to fill the batch; DAPO oversamples the same way).
  Not taken: clip-higher, overlong filtering and shaping (completions cut at max_new_tokens are
  trained on like the others).
  Log-probs are those of logits / temperature, as TRL computes them, so the ratio compares the
  distribution that sampled; top-p truncation is not modelled in the ratio.
  Process credit (credit="process", off by default): DeepSeekMath's GRPO with process supervision
  (section 4.1.3), with the verifier's step checks as the process reward model. Each reasoning
  line that holds claims is a step, rewarded step_validity_weight when all its claims are valid;
  the answer (the rest) is rewarded accuracy_weight if right, plus the efficiency term when
  credited. Rewards are normalised over all the steps of a group (mean, std), and each token's
  advantage is the sum of the normalised rewards of its own step and every later one, so a wrong
  line's tokens are pushed down more than the right lines before it. Outcome credit gives every
  token of a completion one advantage, and cannot tell which line went wrong.

The trap in the reward
  Group normalisation rescales whatever differs within a group to unit size. In a group that is
  all right or all wrong, accuracy is constant, so step validity and the small efficiency term
  become the whole signal; where step validity is equal too, the 0.1-weighted efficiency term alone
  decides, at full strength. And the article's efficiency 1 - steps / optimal is 1 with no step at
  all: an empty completion scores 0.1, more than a wrong attempt with invalid steps. In an
  all-wrong group that teaches the model to write nothing. `efficiency_only_if_correct` (default on,
  as open-r1's length reward credits only correct answers) gives the efficiency term to correct
  completions only, so garbage and empty completions score exactly 0. Off, the reward is the
  article's R exactly, the `reward` that evaluate.py reports.
  The second trap, measured (docs/benchmarks.md): step validity is the share of *written* steps
  that are valid, so stopping after the first, easy step raises it. GRPO at lr 3e-4 on the demo
  model learnt exactly that (2.48 -> 1.75-2.16 steps, accuracy down). `step_validity` defaults to
  "at_least_optimal": valid steps / max(steps written, optimal steps), which removed the cut
  (2.51 steps) in the same run; "article" is S11's fraction.
  The third, measured too: "valid" means correct arithmetic on grounded numbers, and constants
  (2, 10, ...) and earlier results are grounded, so steps such as "6 * 2 = 12 / 12 + 2 = 14 / ..."
  are all valid while ignoring the question. Started from a model that writes too few steps for
  its problems, GRPO learnt them (step validity 0.27 -> 0.76, accuracy down). `question_coverage`
  (on by default) multiplies step validity by the share of the question's numbers that valid steps
  use, so such steps pay a fraction of the term.

MoE routing: record, measure, replay
  Rollouts decode with the KV cache; the first update pass recomputes the same tokens in one full
  forward. Routing is per token and causal (load_penalty reads loads frozen between optimiser
  steps; capacity_factor must stay None, its train-mode drops depend on the batch), so the
  forward's expert choices equal the cached decode's up to float rounding: they are recorded as the
  rollout's routing. After an optimiser step (ppo_epochs > 1) or a balancing update the router may
  choose differently for the same token; `routing_mismatch` logs the share of (layer, response
  token, k) assignments where an update forward's own choice differs from the recorded one. With
  `routing_replay` (off by default; GSPO's "Routing Replay", R3) update forwards dispatch to the
  recorded experts, the weights still the current router's probabilities there, so the router
  still learns.

Metrics (out_dir/metrics.jsonl, one line per log_every steps, averaged over them)
  reward, reward_std (over the step's rollouts), accuracy, step_validity, efficiency (component
  means, efficiency before efficiency_only_if_correct), reward_extra (with reward_fns),
  response_tokens, truncated (share without a stop token), all_equal_groups (share of groups with
  zero advantage; with dynamic_sampling, of every group sampled, and then sampled_groups and
  sampled_accuracy count them, the other figures being the trained batch's), loss,
  clip_fraction, kl (beta > 0), entropy (mean per response token),
  routing_mismatch (MoE), grad_norm, skipped (optimiser steps skipped for a non-finite loss or
  gradient), rollout_tokens_per_s (completion tokens / rollout time), update_tokens_per_s
  (ppo_epochs x prompt+completion tokens / time of the reference and update passes), lr,
  utilisation / max_vio (MoE, last forward), train_minutes. Evaluation lines carry eval_* keys
  (evaluate.EvalResult.summary, whose `reward` is the article's R), at step 0 (the init model),
  every eval_every steps and at the end.

Determinism: the problems and the sampling seed of a step are functions of (seed, step), and the
trainer state holds the optimiser's tensors and torch's RNG state, so `--resume` reproduces the
uninterrupted run's rewards and losses exactly (a test checks it).

Shape legend: P problems per step, G completions per problem, N = P * G rollouts, B rows of a
micro-batch, T tokens of a row (prompt + completion), K experts per token. Per-token tensors
named _BT hold T - 1 entries: entry t is about token t + 1, predicted at t.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import torch
from pydantic import Field

from r1kit import config as config_mod
from r1kit.data.schema import Example, load_examples
from r1kit.data.tokenizer import Tokenizer
from r1kit.device import resolve_device
from r1kit.evaluate import completion_text, evaluate
from r1kit.format import END_THINK
from r1kit.inference.engine import Engine, SamplingParams
from r1kit.interop.checkpoint import load_pretrained, save_pretrained
from r1kit.model.transformer import Transformer
from r1kit.train.averaging import interpolate_from, parameters_of
from r1kit.train.grpo_loss import (
    clipped_surrogate, group_advantages, k3_kl, process_advantages, routing_mismatch, token_logprobs,
)
from r1kit.train.loop import RunConfig, TrainingLoop, batch_indices
from r1kit.train.optim import adamw
from r1kit.reward import RewardConfig, TRAINING_REWARD, check_steps, extract_steps, score
from r1kit.reward.trl import RewardFunction



class RLConfig(RunConfig):
    """GRPO's own fields; the run-level ones are RunConfig's (r1kit.train.loop), four with RL's defaults."""

    out_dir: str = Field("runs/rl", description="where checkpoints and metrics go")
    max_steps: int = Field(200, ge=1, description="rollout batches (each gives ppo_epochs optimiser steps)")
    log_every: int = Field(1, ge=1, description="steps between metric lines (averaged over the window); RL steps take seconds, so every one")
    save_every: int = Field(50, ge=1, description="steps between last/ checkpoints")

    group_size: int = Field(8, ge=2, description="G completions per problem; advantages compare within a group, so >= 2; 8 is TRL's default, a CPU-sized cut of DeepSeekMath's 64")
    prompts_per_step: int = Field(8, ge=1, description="problems per step; 8 x G=8 = 64 rollouts, a step of seconds on a CPU")
    micro_batch_size: int = Field(32, ge=1, description="sequences per forward/backward; gradients accumulate over the rollout batch, so this changes memory, not the result")
    lr: float = Field(1e-4, gt=0, description="~1/30 of SFT's 3e-3: RL nudges the SFT policy rather than rewriting it (7B RL runs use 1e-6 after SFT at ~2e-5)")
    warmup_steps: int = Field(10, ge=0, description="linear warm-up, then constant (DeepSeekMath uses a constant lr); Adam's first steps are full-size whatever the gradient's noise")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decay on matrices; 0 as TRL's GRPO: decay pulls towards zero, not towards the SFT policy")
    grad_clip: float = Field(1.0, gt=0, description="max global gradient norm (TRL's default)")
    epsilon: float = Field(0.2, gt=0, lt=1, description="PPO clip range: the ratio is clipped to [1 - eps, 1 + eps] (PPO, DeepSeekMath)")
    beta: float = Field(0.0, ge=0, description="weight of the k3 KL to the init model; 0 (Dr. GRPO, DAPO, TRL's default) skips the reference model entirely; DeepSeekMath used 0.04")
    ppo_epochs: int = Field(1, ge=1, description="optimisation passes per rollout batch (TRL's num_iterations); 1 = DeepSeekMath's mu = 1, on-policy, the clip never acts")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of rollouts (and of the log-probs); 1 samples the policy itself, for exploration")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling of rollouts; 1 = off, so the ratio's distribution is the sampling one")
    advantage: Literal["group_std", "mean_only"] = Field("group_std", description="'group_std' = DeepSeekMath's (r - mean) / (std + eps); 'mean_only' = Dr. GRPO's r - mean")
    credit: Literal["outcome", "process"] = Field(
        "outcome", description="'outcome': one advantage per completion (GRPO); 'process': DeepSeekMath's process "
        "supervision, each reasoning line rewarded by the verifier's step checks and each token credited with the "
        "normalised rewards of its own and later lines (see the module docstring)")
    # the reward's defaults are r1kit.reward.TRAINING_REWARD's: the article's R with RL's two guards
    accuracy_weight: float = Field(TRAINING_REWARD.accuracy_weight, ge=0, description="reward weight of the final answer's accuracy (S11)")
    step_validity_weight: float = Field(TRAINING_REWARD.step_validity_weight, ge=0, description="reward weight of step validity (S11)")
    efficiency_weight: float = Field(TRAINING_REWARD.efficiency_weight, ge=0, description="reward weight of efficiency (S11)")
    efficiency: Literal["article", "bounded"] = Field(TRAINING_REWARD.efficiency, description="efficiency variant (reward.efficiency): 'article' 1 - steps/optimal as S11; 'bounded' min(1, optimal/steps)")
    step_validity: Literal["article", "at_least_optimal"] = Field(TRAINING_REWARD.step_validity, description="'at_least_optimal' valid / max(steps, optimal): cutting steps cannot raise it (the article's share of written steps was gamed so, docs/benchmarks.md); 'article' valid / steps written (S11)")
    question_coverage: bool = Field(TRAINING_REWARD.question_coverage, description="scale step validity by the share of the question's numbers that valid steps use (reward.question_coverage): chains of valid steps on constants that ignore the question, which GRPO learnt, stop paying (docs/benchmarks.md); False = S11's term")
    efficiency_only_if_correct: bool = Field(True, description="credit efficiency only to correct completions (open-r1's length reward does): else an empty completion scores 0.1 (see the module docstring)")
    dynamic_sampling: int = Field(0, ge=0, description="DAPO's dynamic sampling: up to this many more rollout rounds a step, on fresh problems, until prompts_per_step groups with differing rewards are in hand (an all-equal group has zero advantage and only dilutes the batch); 0 = off")
    routing_replay: bool = Field(False, description="MoE: update forwards use the rollout's recorded experts (GSPO's Routing Replay); off = standard GRPO")
    update_share: float = Field(1.0, gt=0, le=1, description="final/ keeps this share of RL's change to the weights, init + share x (trained - init), last/ the trained weights (WiSE-FT's interpolation); 1 = the trained weights")
    eval_at_start: bool = Field(True, description="evaluate the init model first: the baseline RL has to beat, on the same problems and settings")


def load_rl_config(path: str | None, overrides: list[str]) -> RLConfig:
    """The `rl:` section of a config file, with `rl.x=..` overrides. The model comes from the init
    checkpoint, so a `model:` section is an error."""
    data = config_mod.read_file(path) if path else {}
    if "model" in data:
        raise config_mod.ConfigError(f"{path}: RL takes the model from the --init checkpoint; remove the model: section")
    unknown = set(data) - {"rl"}
    if unknown:
        raise config_mod.ConfigError(f"unknown section(s) {sorted(unknown)} in {path}; allowed: rl")
    bad = [o for o in overrides if not o.startswith("rl.")]
    if bad:
        raise config_mod.ConfigError(f"overrides must name their section (rl.lr=1e-4, rl.group_size=4): {bad}")
    data = config_mod.apply_overrides(data, overrides)
    return config_mod.build(RLConfig, data.get("rl") or {}, "rl")


def reward_config(cfg: RLConfig) -> RewardConfig:
    # the prompt ends inside <think> (as in evaluate.py): a completion without </think> has no answer
    return dataclasses.replace(
        TRAINING_REWARD, accuracy_weight=cfg.accuracy_weight, step_validity_weight=cfg.step_validity_weight,
        efficiency_weight=cfg.efficiency_weight, efficiency=cfg.efficiency, step_validity=cfg.step_validity,
        question_coverage=cfg.question_coverage)


# ----------------------------------------------------------------------------- rollouts and rewards


def rollout_seed(seed: int, step: int) -> int:
    """The sampling seed of a step's rollouts. Prompt p of the step samples with seed + p (its G
    samples with their own streams from that, engine.py), so steps are 2**20 apart: no two
    prompts of a run share a random stream (below a million prompts per step)."""
    return (seed * 1_000_003 + step) << 20


def rollout(model: Transformer, tok: Tokenizer, prompt_ids: list[list[int]], cfg: RLConfig, step: int,
            first_prompt: int = 0) -> list[list[int]]:
    """`group_size` sampled completions per prompt, prompt-major (rows p*G .. p*G + G-1 answer prompt
    p), each with its stop token when one ended it. One engine request per prompt with n = G, so
    the group shares one prefill of its prompt. The only place rollouts are made. `first_prompt`
    numbers the prompts of a step's later rounds (dynamic sampling) on from the earlier ones', so
    every prompt of a step samples its own stream."""
    model.eval()
    base = rollout_seed(cfg.seed, step) + first_prompt
    params = [SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                             seed=base + p, n=cfg.group_size, stop_token_ids=[tok.eos_id])
              for p in range(len(prompt_ids))]
    engine = Engine(model, max_batch_size=len(prompt_ids) * cfg.group_size)
    return [sample.token_ids for out in engine.generate(prompt_ids, params) for sample in out.samples]


def completion_rewards(
    tok: Tokenizer, completions: list[list[int]], examples: list[Example], cfg: RLConfig, reward_fns: Sequence[RewardFunction] = (),
) -> tuple[list[float], dict[str, list[float]]]:
    """The reward of each completion (token ids, scored against the example in the same row), and
    its parts: accuracy, step_validity, efficiency (before `efficiency_only_if_correct`), extra, and
    coverage (the factor in step_validity; 1 when `question_coverage` is off)."""
    reward_cfg = reward_config(cfg)
    texts = [completion_text(tok, ids) for ids in completions]
    rewards: list[float] = []
    parts: dict[str, list[float]] = {"accuracy": [], "step_validity": [], "efficiency": [], "coverage": [],
                                     "extra": [0.0] * len(texts)}
    for text, ex in zip(texts, examples):
        b = score(text, ex.answer, question=ex.context, optimal_steps=ex.optimal_steps, config=reward_cfg)
        efficiency = b.efficiency or 0.0
        total = b.total
        if cfg.efficiency_only_if_correct and not b.accuracy:
            total = round(total - reward_cfg.efficiency_weight * efficiency, 12)
        rewards.append(total)
        parts["accuracy"].append(b.accuracy)
        parts["step_validity"].append(b.step_validity)
        parts["efficiency"].append(efficiency)
        parts["coverage"].append(1.0 if b.coverage is None else b.coverage)
    for fn in reward_fns:
        # TRL's convention (r1kit.reward.trl): fn(completions, **dataset columns) -> one float each
        values = list(fn(texts, answer=[ex.answer for ex in examples], question=[ex.context for ex in examples],
                         optimal_steps=[ex.optimal_steps for ex in examples]))
        if len(values) != len(texts) or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise ValueError(f"reward function {getattr(fn, '__name__', fn)!r} must return {len(texts)} finite numbers, got {values!r:.200}")
        for i, value in enumerate(values):
            rewards[i] += float(value)
            parts["extra"][i] += float(value)
    return rewards, parts


def completion_segments(
    tok: Tokenizer, completion: list[int], example: Example, cfg: RLConfig, reward: float, step_validity: float,
    coverage: float = 1.0,
) -> tuple[list[int], list[float]]:
    """Process rewards of one completion: (the index of each segment's last token, its reward).

    Segments are the reasoning lines that hold claims, in order, then the answer (the rest of the
    completion). A line scores step_validity_weight when every claim on it is valid (correct and
    grounded in the question and earlier lines, the verifier's step check), else 0, times the
    completion's question `coverage` (completion_rewards' part; 1 when the config does not use it),
    as its step validity is. The answer
    scores the rest of the completion's `reward` (completion_rewards'), i.e. the reward less its
    step-validity term: accuracy, the efficiency term where credited, and the reward functions'.
    A completion whose token pieces do not decode to its text (never for r1kit's byte-level BPE on
    ASCII) gets one segment, its whole reward."""
    ids = completion[:-1] if completion and completion[-1] == tok.eos_id else completion
    last = max(len(completion) - 1, 0)
    pieces = [tok.decode([i]) for i in ids]
    text = tok.decode(ids)
    if "".join(pieces) != text:
        return [last], [reward]
    char_end_T = list(itertools.accumulate(map(len, pieces)))  # characters of text up to and including token t
    reasoning = text.split(END_THINK)[0]
    # the claims read from the whole reasoning, as score() reads them (each claim once, grounded on
    # the prose before it), then grouped by the line they stand on
    steps = (extract_steps(reasoning) or []) if "=" in reasoning else []
    checks = check_steps(steps, example.context, reward_config(cfg).constants)
    valid_by_line: dict[int, bool] = {}
    for step, check in zip(steps, checks):
        valid_by_line[step.line] = valid_by_line.get(step.line, True) and check.valid
    line_end_char = [end - 1 for end in itertools.accumulate(len(line) + 1 for line in reasoning.split("\n"))]
    line_weight = cfg.step_validity_weight * coverage
    ends, rewards = [], []
    for line, valid in sorted(valid_by_line.items()):
        end_char = line_end_char[line]
        t = bisect.bisect_left(char_end_T, end_char)  # the token that ends the line
        if ends and t <= ends[-1]:  # two lines ended by one token: one segment, both must be valid
            rewards[-1] = min(rewards[-1], line_weight * valid)
            continue
        ends.append(t)
        rewards.append(line_weight * valid)
    answer_reward = reward - cfg.step_validity_weight * step_validity
    if ends and ends[-1] >= last:  # the answer shares the last token: fold it in
        rewards[-1] += answer_reward
    else:
        ends.append(last)
        rewards.append(answer_reward)
    return ends, rewards


# ----------------------------------------------------------------------------- the rollout batch


@dataclass
class MicroBatch:
    ids_BT: torch.Tensor  # prompt + completion, right-padded to the longest row
    mask_BT: torch.Tensor  # [B, T-1] float: 1 where token t+1 is a completion token (its stop token included)
    advantages_B: torch.Tensor  # [B] per completion, or [B, T-1] per token (process credit; 0 off the mask)
    logp_old_BT: torch.Tensor | None = None  # the rollout policy's log-probs
    logp_ref_BT: torch.Tensor | None = None  # the init model's (beta > 0 only)
    topk_old: list[torch.Tensor] = field(default_factory=list)  # the rollout policy's experts, [B*(T-1), K] per MoE layer


def make_micro_batches(
    prompts: list[list[int]], completions: list[list[int]], advantages_N: torch.Tensor | list[torch.Tensor],
    pad_id: int, size: int, device: torch.device | str = "cpu",
) -> list[MicroBatch]:
    """Rows sorted by length (less padding), `size` per micro-batch, each padded to its longest.
    advantages_N: one per completion [N], or one tensor per completion with one per token."""
    seqs = [p + c for p, c in zip(prompts, completions)]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    per_token = isinstance(advantages_N, list)
    batches = []
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        T = max(len(seqs[i]) for i in rows)
        ids_BT = torch.full((len(rows), T), pad_id, dtype=torch.long)
        mask_BT = torch.zeros(len(rows), T - 1)
        adv = torch.zeros(len(rows), T - 1) if per_token else advantages_N[rows]
        for r, i in enumerate(rows):
            ids_BT[r, : len(seqs[i])] = torch.tensor(seqs[i])
            mask_BT[r, len(prompts[i]) - 1 : len(seqs[i]) - 1] = 1.0
            if per_token:
                adv[r, len(prompts[i]) - 1 : len(seqs[i]) - 1] = advantages_N[i]
        batches.append(MicroBatch(ids_BT.to(device), mask_BT.to(device), adv.to(device)))
    return batches


@torch.no_grad()
def record_reference(ref_model: Transformer, batches: list[MicroBatch], temperature: float,
                     autocast: Callable = contextlib.nullcontext) -> None:
    for mb in batches:
        with autocast():
            mb.logp_ref_BT, _ = token_logprobs(ref_model, mb.ids_BT, temperature)


def policy_update(model: Transformer, optimizer: torch.optim.Optimizer, batches: list[MicroBatch], cfg: RLConfig,
                  autocast: Callable = contextlib.nullcontext) -> dict:
    """One pass over the rollout batch: gradients accumulate over its micro-batches, then one
    optimiser step and the MoE balancing update. A non-finite loss or gradient norm skips the step
    (gradients dropped, parameters and optimiser untouched) and reports skipped = 1.
    The first pass runs on the rollout policy's own weights, so a micro-batch without the rollout
    ("old") policy's log-probs and experts takes them from that pass's forward (ratio exactly 1, as
    TRL does) instead of a separate no-grad forward: one forward of the batch fewer a step."""
    model.train()
    n_tokens = sum(float(mb.mask_BT.sum()) for mb in batches)
    sums = {"loss": 0.0, "clip_fraction": 0.0, "entropy": 0.0}
    if cfg.beta > 0:
        sums["kl"] = 0.0
    if model.moe_layers():
        sums["routing_mismatch"] = 0.0
    skipped = False
    for mb in batches:
        replay = model.replay_routing(mb.topk_old) if cfg.routing_replay and mb.logp_old_BT is not None else contextlib.nullcontext()
        with replay, autocast():
            logp_BT, entropy_BT = token_logprobs(model, mb.ids_BT, cfg.temperature)
        if mb.logp_old_BT is None:  # the first pass: these weights are the rollout policy
            mb.logp_old_BT, mb.topk_old = logp_BT.detach(), model.last_routing()
        loss, clip_fraction = clipped_surrogate(logp_BT, mb.logp_old_BT, mb.advantages_B, mb.mask_BT, cfg.epsilon, n_tokens)
        if cfg.beta > 0:
            kl = (k3_kl(logp_BT, mb.logp_ref_BT) * mb.mask_BT).sum() / n_tokens
            loss = loss + cfg.beta * kl
            sums["kl"] += kl.item()
        aux = model.aux_loss()
        if aux is not None:
            loss = loss + aux / len(batches)
        if not torch.isfinite(loss):
            skipped = True
            break
        loss.backward()
        share = float(mb.mask_BT.sum()) / n_tokens
        sums["loss"] += loss.item()
        sums["clip_fraction"] += clip_fraction * share
        sums["entropy"] += float((entropy_BT * mb.mask_BT).sum()) / n_tokens
        if "routing_mismatch" in sums:
            sums["routing_mismatch"] += routing_mismatch(model.last_routing(), mb.topk_old, mb.mask_BT) * share
    grad_norm = float("nan")
    if not skipped:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        skipped = not math.isfinite(grad_norm)
    if skipped:
        optimizer.zero_grad(set_to_none=True)
        return {"skipped": 1}
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.update_balancing()
    return {**sums, "grad_norm": grad_norm, "skipped": 0}


# ----------------------------------------------------------------------------- optimisation


def warmup_lr(step: int, cfg: RLConfig) -> float:
    """Linear warm-up to cfg.lr, then constant."""
    return cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr


# ----------------------------------------------------------------------------- the run


def train_rl(
    cfg: RLConfig, init_checkpoint: str | Path, resume: bool = False, progress: bool = True,
    stop_at: int | None = None, reward_fns: Sequence[RewardFunction] | None = None, overwrite: bool = False,
) -> Path:
    """Run GRPO from an SFT checkpoint; returns the final checkpoint directory. `reward_fns` are
    added to the verifier's reward. `stop_at` ends the run after that step as an interruption would
    (last/ written, no final/): tests use it to check --resume, which continues from last/ (the
    init checkpoint is still needed then, for the reference model when beta > 0)."""
    last = Path(cfg.out_dir) / "last"
    reward_fns = list(reward_fns or [])
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)

    if resume and not (last / "trainer_state").is_dir():
        raise FileNotFoundError(f"--resume: no {last}/trainer_state to resume from")
    source = last if resume else Path(init_checkpoint)
    tok = Tokenizer.load(source)
    model = load_pretrained(source).to(device)
    saved_model_cfg = model.config
    model.config = saved_model_cfg.model_copy(update={"layer_drop": 0.0})  # RL never drops layers
    ref_model = None
    if cfg.beta > 0:
        ref_model = load_pretrained(init_checkpoint).to(device).eval().requires_grad_(False)
        ref_model.config = ref_model.config.model_copy(update={"layer_drop": 0.0})

    train_examples, _ = load_examples(cfg.train_data)
    eval_examples = load_examples(cfg.eval_data)[0][: cfg.eval_n] if cfg.eval_data else []
    pool, prompts = [], []
    for ex in train_examples:  # a prompt must leave room for at least one new token
        ids = tok.encode_conversation(ex.messages)
        if len(ids) < model.config.max_seq_len:
            pool.append(ex)
            prompts.append(ids)
    if not pool:
        raise ValueError(f"no training prompt fits the model's context of {model.config.max_seq_len} tokens")
    lengths = [len(p) for p in prompts]

    def save_with_init_config(model_: Transformer, directory: Path, extra) -> None:
        rl_model_cfg, model_.config = model_.config, saved_model_cfg  # the checkpoint keeps the init's layer_drop
        try:
            save_pretrained(model_, directory, extra=extra)
        finally:
            model_.config = rl_model_cfg

    init_params = parameters_of(load_pretrained(init_checkpoint)) if cfg.update_share < 1 else None  # the init's, on resume too
    optimizer = adamw(model, cfg.lr, cfg.weight_decay, (0.9, 0.95))  # SFT's betas
    loop = TrainingLoop(cfg, "rl", model, optimizer, resume, save_extra=tok.save, save_model=save_with_init_config, overwrite=overwrite,
                        before_final=(lambda: interpolate_from(model, init_params, cfg.update_share)) if init_params else None,
                        start_record={"init": str(init_checkpoint), "problems": len(pool),
                                      "dropped_too_long": len(train_examples) - len(pool), "params": model.num_params(),
                                      "model": saved_model_cfg.model_dump(), "rl": cfg.model_dump()})
    P, G = cfg.prompts_per_step, cfg.group_size

    def sample_groups(step: int):
        """The step's problems, completions, rewards and reward parts, prompt-major. With
        dynamic_sampling, only groups whose rewards differ, up to P, drawn over up to
        1 + dynamic_sampling rounds of P fresh problems (round r's order is seeded by seed + r);
        when no group differs, the first round's (zero advantages: a step that changes nothing)."""
        kept = ([], [], [], {})  # problem indices, completions, rewards, reward parts
        sampled = {"groups": 0, "all_equal": 0, "tokens": 0, "correct": 0.0, "seconds": 0.0}
        first = None
        for round_ in range(1 + cfg.dynamic_sampling):
            idx = batch_indices(lengths, P, step, cfg.seed + 1_000_003 * round_)
            started = time.perf_counter()
            with loop.generation_autocast():
                completions = rollout(model, tok, [prompts[i] for i in idx], cfg, step, first_prompt=round_ * P)
            sampled["seconds"] += time.perf_counter() - started
            rewards, parts = completion_rewards(tok, completions, [pool[i] for i in idx for _ in range(G)], cfg, reward_fns)
            first = first or (idx, completions, rewards, parts)
            sampled["groups"] += P
            sampled["tokens"] += sum(map(len, completions))
            sampled["correct"] += sum(parts["accuracy"])
            for p, i in enumerate(idx):
                rows = slice(p * G, (p + 1) * G)
                equal = len(set(rewards[rows])) == 1
                sampled["all_equal"] += equal
                if cfg.dynamic_sampling and (equal or len(kept[0]) == P):
                    continue
                kept[0].append(i)
                kept[1].extend(completions[rows])
                kept[2].extend(rewards[rows])
                for k, v in parts.items():
                    kept[3].setdefault(k, []).extend(v[rows])
            if len(kept[0]) == P:
                break
        return (*(kept if kept[0] else first), sampled)

    def train_step(step: int, train_seconds: float) -> dict:
        lr = warmup_lr(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx, completions, rewards, parts, sampled = sample_groups(step)
        examples = [pool[i] for i in idx for _ in range(G)]
        prompt_rows = [prompts[i] for i in idx for _ in range(G)]
        rewards_PG = torch.tensor(rewards, dtype=torch.float64).view(len(idx), G)
        advantages_N = group_advantages(rewards_PG, cfg.advantage).flatten().float()
        if cfg.credit == "process":
            segments = [completion_segments(tok, c, ex, cfg, r, sv, cov) for c, ex, r, sv, cov
                        in zip(completions, examples, rewards, parts["step_validity"], parts["coverage"])]
            advantages_N = process_advantages(segments, [len(c) for c in completions], G)

        t1 = time.perf_counter()
        batches = make_micro_batches(prompt_rows, completions, advantages_N, tok.pad_id, cfg.micro_batch_size, device)
        if ref_model is not None:
            record_reference(ref_model, batches, cfg.temperature, loop.autocast)
        passes = [policy_update(model, optimizer, batches, cfg, loop.autocast) for _ in range(cfg.ppo_epochs)]
        t_update = time.perf_counter() - t1

        record = _step_record(rewards_PG, parts, completions, passes, tok.eos_id, bool(reward_fns))
        if cfg.dynamic_sampling:  # the share among all groups sampled, and the work it took
            record["all_equal_groups"] = sampled["all_equal"] / sampled["groups"]
            record["sampled_groups"] = sampled["groups"]
            record["sampled_accuracy"] = sampled["correct"] / (sampled["groups"] * G)
        record["rollout_tokens_per_s"] = sampled["tokens"] / sampled["seconds"]
        record["update_tokens_per_s"] = cfg.ppo_epochs * sum(map(len, prompt_rows + completions)) / t_update
        record["lr"] = lr
        if record["skipped"]:
            loop.note(f"rl step {step + 1}: non-finite loss or gradient, {record['skipped']} optimiser step(s) skipped")
        return record

    def log_line(records: list[dict], _seconds: float) -> dict:
        return {"lr": records[-1]["lr"], **_mean_records([{k: v for k, v in r.items() if k != "lr"} for r in records])}

    def postfix(line: dict) -> dict:
        return dict(reward=f"{line['reward']:.3f}", acc=f"{line['accuracy']:.2f}", len=f"{line['response_tokens']:.0f}")

    def evaluate_greedy() -> dict:
        return evaluate(model, tok, eval_examples, batch_size=cfg.eval_batch_size, max_new_tokens=cfg.max_new_tokens).summary()

    return loop.run(train_step, log_line, postfix, evaluate=evaluate_greedy if eval_examples else None,
                    eval_at_start=cfg.eval_at_start, stop_at=stop_at, progress=progress)


def _step_record(rewards_PG, parts, completions, passes, eos_id: int, with_extra: bool) -> dict:
    """One step's metrics (the module docstring lists them), timings aside."""
    N = len(completions)
    record = {
        "reward": float(rewards_PG.mean()), "reward_std": float(rewards_PG.std(correction=0)),
        **{k: sum(parts[k]) / N for k in ("accuracy", "step_validity", "efficiency")},
        "response_tokens": sum(map(len, completions)) / N,
        "truncated": sum(not c or c[-1] != eos_id for c in completions) / N,
        "all_equal_groups": float((rewards_PG == rewards_PG[:, :1]).all(dim=-1).double().mean()),
    }
    if with_extra:
        record["reward_extra"] = sum(parts["extra"]) / N
    done = [p for p in passes if not p["skipped"]]
    if done:  # loss, clip_fraction, entropy, grad_norm (+ kl, routing_mismatch): mean over the passes
        record.update({k: sum(p[k] for p in done) / len(done) for k in done[0] if k != "skipped"})
    record["skipped"] = len(passes) - len(done)
    return record


def _mean_records(records: list[dict]) -> dict:
    """Each key's mean over the steps that have it; `skipped` is summed."""
    keys = dict.fromkeys(k for r in records for k in r)
    sums = {k: sum(r[k] for r in records if k in r) for k in keys}
    return {k: v if k == "skipped" else v / sum(k in r for r in records) for k, v in sums.items()}
