"""Drawing tokens: `sampling_probs` (one row's distribution: temperature, top-k, top-p) and
`draw_tokens`, which draws from it for every row of a batch at once by Gumbel-max with
counter-based noise (`gumbel_noise`: splitmix64 of seed, step and token id), so a row's token
depends on its own logits, parameters, seed and step alone (r1kit.inference.engine, "Sampling").

Shape legend: B rows, V vocabulary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from r1kit.inference.engine import SamplingParams


def sampling_probs(logits_V: torch.Tensor, params: "SamplingParams") -> torch.Tensor:
    """The distribution a sample draws from: temperature, then top-k, then top-p (nucleus)."""
    logits_V = logits_V.float() / params.temperature
    if params.top_k is not None and params.top_k < logits_V.shape[-1]:
        kth = logits_V.topk(params.top_k).values[-1]
        logits_V = logits_V.masked_fill(logits_V < kth, float("-inf"))
    if params.top_p is not None and params.top_p < 1:
        sorted_V, order_V = logits_V.sort(descending=True)
        probs_sorted_V = sorted_V.softmax(-1)
        drop_V = probs_sorted_V.cumsum(-1) - probs_sorted_V >= params.top_p  # keep the smallest prefix reaching top_p
        logits_V = logits_V.index_put((order_V[drop_V],), torch.tensor(float("-inf")))
    return logits_V.softmax(-1)


def draw_tokens(
    logits_BV: torch.Tensor,
    temperature_B: torch.Tensor,
    seed_B: torch.Tensor,
    step_B: torch.Tensor,
    top_k_B: torch.Tensor | None = None,
    top_p_B: torch.Tensor | None = None,
) -> torch.Tensor:
    """One token per row from `sampling_probs` with the row's parameters (temperature_B > 0; top_k_B
    and top_p_B: None for no row, else per row, V and 1.0 where a row keeps every token), drawn by
    Gumbel-max with `gumbel_noise(seed_B, step_B)`: row b's token depends on its logits, parameters,
    seed and step alone."""
    scaled_BV = logits_BV.float() / temperature_B[:, None].float()
    scores_BV = scaled_BV.double() + gumbel_noise(seed_B, step_B, logits_BV.shape[-1])
    if top_k_B is not None or top_p_B is not None:
        scores_BV = scores_BV.masked_fill(~_kept_tokens(scaled_BV, top_k_B, top_p_B), float("-inf"))
    return scores_BV.argmax(dim=-1)


def _kept_tokens(scaled_BV: torch.Tensor, top_k_B: torch.Tensor | None, top_p_B: torch.Tensor | None) -> torch.Tensor:
    """[B, V] True where a token survives top-k then top-p, by `sampling_probs`'s rules, per row."""
    sorted_BV, order_BV = scaled_BV.sort(dim=-1, descending=True)
    keep_BV = torch.ones_like(sorted_BV, dtype=torch.bool)  # in sorted order until the scatter
    if top_k_B is not None:  # ties with the k-th value are kept, as sampling_probs keeps them
        kth_B1 = sorted_BV.gather(-1, (top_k_B.clamp(1, sorted_BV.shape[-1]) - 1)[:, None])
        keep_BV = sorted_BV >= kth_B1
    if top_p_B is not None:
        probs_BV = sorted_BV.masked_fill(~keep_BV, float("-inf")).softmax(-1)
        # a row with top_p 1 keeps everything: float cumsums can reach 1 before the tail
        limit_B1 = torch.where(top_p_B < 1, top_p_B, torch.inf)[:, None]
        keep_BV = keep_BV & (probs_BV.cumsum(-1) - probs_BV < limit_B1)
    return torch.zeros_like(keep_BV).scatter(-1, order_BV, keep_BV)


# splitmix64 (Steele, Lea, Flood 2014) on int64 tensors, whose arithmetic wraps like uint64's
_GAMMA, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def signed64(value: int) -> int:
    """The int64 with the bits of `value` in [0, 2**64)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's output for state x (int64 read as uint64): x + gamma, then its finaliser."""
    z = x + signed64(_GAMMA)
    for shift, multiplier in ((30, _MIX1), (27, _MIX2), (31, None)):
        z ^= (z >> shift) & ((1 << (64 - shift)) - 1)  # a logical shift: int64's >> copies the sign bit
        if multiplier is not None:
            z *= signed64(multiplier)
    return z


def gumbel_noise(seed_B: torch.Tensor, step_B: torch.Tensor, V: int) -> torch.Tensor:
    """[B, V] float64 standard Gumbel noise, a hash of (seed, step, token id) per element."""
    row_B = splitmix64(splitmix64(seed_B.long()) + step_B.long())
    bits_BV = splitmix64(row_B[:, None] + torch.arange(V, device=seed_B.device))
    # the top 52 bits, centred in their interval: uniform in (0, 1), 0 and 1 excluded
    uniform_BV = ((bits_BV >> 12) & ((1 << 52) - 1)).double().add_(0.5).mul_(2.0**-52)
    return uniform_BV.log_().neg_().log_().neg_()
