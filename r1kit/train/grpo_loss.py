"""GRPO's loss in small pieces (r1kit.train.grpo's module docstring gives the variant and its
sources): group-relative advantages, process-credit advantages, the clipped surrogate, the k3 KL,
per-token log-probs and the MoE routing mismatch. Tensor functions only, each tested on its own
(tests/test_grpo.py has hand-computed examples).

Shape legend: P problems, G completions per problem, B rows of a micro-batch, T tokens of a row;
per-token tensors named _BT hold T - 1 entries: entry t is about token t + 1, predicted at t.
"""

from __future__ import annotations

import torch

from r1kit.model.transformer import Transformer


def group_advantages(rewards_PG: torch.Tensor, kind: str = "group_std", eps: float = 1e-4) -> torch.Tensor:
    """Advantages [P, G] from rewards [P, G] (one row per problem's group).
    group_std (DeepSeekMath): (r - mean) / (std + eps), std with Bessel's correction;
    mean_only (Dr. GRPO): r - mean. A group whose rewards are all equal gets exactly 0."""
    centred_PG = rewards_PG - rewards_PG.mean(dim=-1, keepdim=True)
    if kind == "group_std" and rewards_PG.shape[-1] > 1:
        centred_PG = centred_PG / (rewards_PG.std(dim=-1, keepdim=True) + eps)
    elif kind not in ("group_std", "mean_only"):
        raise ValueError(f"advantage must be 'group_std' or 'mean_only', got {kind!r}")
    all_equal_P1 = (rewards_PG == rewards_PG[:, :1]).all(dim=-1, keepdim=True)
    return centred_PG.masked_fill(all_equal_P1, 0.0)  # no rounding residue, no 0/0 (G = 1 included)


def process_advantages(segments: list[tuple[list[int], list[float]]], lengths: list[int], group_size: int,
                       eps: float = 1e-4) -> list[torch.Tensor]:
    """DeepSeekMath's process supervision (Shao et al. 2024, 4.1.3): each segment reward is
    normalised by the mean and std of all segment rewards in its group, and token t's advantage is
    the sum of the normalised rewards of the segments that end at or after t (its own line and
    every later one, the answer included). A group whose segment rewards are all equal gets 0.
    Returns one [length] tensor per completion."""
    out = []
    for g0 in range(0, len(segments), group_size):
        group, group_lengths = segments[g0 : g0 + group_size], lengths[g0 : g0 + group_size]
        all_rewards = torch.tensor([r for _, rs in group for r in rs], dtype=torch.float64)
        if bool((all_rewards == all_rewards[0]).all()):
            out.extend(torch.zeros(n) for n in group_lengths)
            continue
        mean, std = all_rewards.mean(), all_rewards.std()
        for (ends, rewards), n in zip(group, group_lengths):
            adv_T = torch.zeros(n, dtype=torch.float64)
            for end, r in zip(ends, rewards):  # a segment's normalised reward reaches every token up to its end
                adv_T[: end + 1] += (r - mean) / (std + eps)
            out.append(adv_T.float())
    return out


def clipped_surrogate(
    logp_new_BT: torch.Tensor, logp_old_BT: torch.Tensor, advantages_B: torch.Tensor, mask_BT: torch.Tensor,
    epsilon: float, n_tokens: float | None = None,
) -> tuple[torch.Tensor, float]:
    """PPO's clipped objective as a loss, token-level normalised (DAPO):
        loss = -sum_t mask * min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) / n_tokens
    with ratio = exp(logp_new - logp_old) per token and A the row's advantage ([B]), or each
    token's ([B, T], process credit). `n_tokens` is the
    batch's response-token count (default: this mask's), so micro-batch losses add up to the batch's.
    Also returns the share of this mask's tokens where the clipped term is the one chosen (no gradient)."""
    ratio_BT = torch.exp(logp_new_BT - logp_old_BT)
    adv_B1 = advantages_B[:, None] if advantages_B.dim() == 1 else advantages_B  # per row, or per token [B, T]
    unclipped_BT = ratio_BT * adv_B1
    clipped_BT = ratio_BT.clamp(1 - epsilon, 1 + epsilon) * adv_B1
    per_token_BT = -torch.min(unclipped_BT, clipped_BT)
    denominator = float(mask_BT.sum()) if n_tokens is None else n_tokens
    loss = (per_token_BT * mask_BT).sum() / max(denominator, 1.0)
    with torch.no_grad():
        is_clipped_BT = ((ratio_BT > 1 + epsilon) & (adv_B1 > 0)) | ((ratio_BT < 1 - epsilon) & (adv_B1 < 0))
        clip_fraction = float((is_clipped_BT * mask_BT).sum() / mask_BT.sum().clamp_min(1.0))
    return loss, clip_fraction


def k3_kl(logp_new_BT: torch.Tensor, logp_ref_BT: torch.Tensor) -> torch.Tensor:
    """Per-token KL(new || ref) estimate k3 = exp(ref - new) - (ref - new) - 1 (Schulman's; DeepSeekMath):
    unbiased for tokens sampled from the policy, always >= 0, 0 where the two agree."""
    delta_BT = logp_ref_BT - logp_new_BT
    return torch.exp(delta_BT) - delta_BT - 1


def token_logprobs(model: Transformer, ids_BT: torch.Tensor, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(token t + 1 | tokens <= t) under logits / temperature, and the entropy of each of those
    distributions (no gradient); [B, T - 1] each."""
    logits_BTV = model(ids_BT[:, :-1]).float() / temperature
    logp_BTV = logits_BTV.log_softmax(dim=-1)
    logp_BT = logp_BTV.gather(-1, ids_BT[:, 1:, None]).squeeze(-1)
    with torch.no_grad():
        entropy_BT = -(logp_BTV.exp() * logp_BTV).sum(dim=-1)
    return logp_BT, entropy_BT


def routing_mismatch(own_per_layer: list[torch.Tensor], recorded_per_layer: list[torch.Tensor], mask_BT: torch.Tensor) -> float:
    """Share of (layer, response token, k) assignments whose recorded expert is not among the
    forward's own top-k for that token (order within the top-k does not count)."""
    keep_N = mask_BT.flatten() > 0
    differ, total = 0, 0
    for own_NK, recorded_NK in zip(own_per_layer, recorded_per_layer):
        own_NK, recorded_NK = own_NK[keep_N], recorded_NK[keep_N]
        found_NK = (recorded_NK[:, :, None] == own_NK[:, None, :]).any(dim=-1)
        differ += int((~found_NK).sum())
        total += found_NK.numel()
    return differ / total if total else 0.0
