"""Fused CPU kernel for multi-scale attention in training: one score matrix for the three branches.

The reference path (r1kit.attention.multiscale_chunk) runs three masked SDPA calls and a top-k per
layer; on a CPU at training lengths (T ~ 100, head size 32) that costs three dense attentions and
more. This path computes the scores once (torch.bmm), does each query row's masks, top-k, three
softmaxes and gated mix in C++ (csrc/multiscale.cpp), and the value product once; its backward
likewise. Same results as the reference up to float rounding (tests/test_multiscale_kernel.py);
forward and backward of one demo layer are 2.7-3.9x faster at T = 77-130 (docs/benchmarks.md).

The training layout only: the keys are the queries, at positions 0..T-1 in every row, so query t
sees keys 0..t and the work per row is proportional to t. It keeps the [B*H, T, T] scores, mixed
probabilities and a byte of the global branch's mask per entry for the backward pass, so the
model uses it for one chunk of queries (T <= attention.chunk_size), with gradients on, and keeps
the reference path for inference and longer inputs.

The C++ is compiled on first use (r1kit.model.kernels.build). Where that fails, `available()` is
False, `unavailable_reason()` says why, and the model keeps the reference path.
"""

from __future__ import annotations

import torch

from r1kit.model.kernels.build import CppKernel

_KERNEL = CppKernel("r1kit_multiscale", "multiscale.cpp", "fused multi-scale attention kernel")


def available() -> bool:
    return _KERNEL.available()


def unavailable_reason() -> str | None:
    _KERNEL.load()
    return _KERNEL.error


class _FusedMultiScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q_BHTD, k_BHTD, v_BHTD, gate_NT3, k_symbol_BT, window, topk):
        B, H, T, D = q_BHTD.shape
        scale = D**-0.5
        q_NTD, k_NTD, v_NTD = (x.reshape(B * H, T, D) for x in (q_BHTD, k_BHTD, v_BHTD))
        scores_NTT = torch.bmm(q_NTD, k_NTD.transpose(1, 2)).mul_(scale)
        probs_NTT, global_mask_NTT, stats_NT32 = _KERNEL.load().forward(scores_NTT, k_symbol_BT, gate_NT3, H, window, topk)
        ctx.save_for_backward(q_NTD, k_NTD, v_NTD, scores_NTT, probs_NTT, global_mask_NTT, stats_NT32, gate_NT3, k_symbol_BT)
        ctx.scale, ctx.window, ctx.topk = scale, window, topk
        return torch.bmm(probs_NTT, v_NTD).view(B, H, T, D)

    @staticmethod
    def backward(ctx, d_out_BHTD):
        q_NTD, k_NTD, v_NTD, scores_NTT, probs_NTT, global_mask_NTT, stats_NT32, gate_NT3, k_symbol_BT = ctx.saved_tensors
        B, H, T, D = d_out_BHTD.shape
        d_out_NTD = d_out_BHTD.reshape(B * H, T, D)
        d_probs_NTT = torch.bmm(d_out_NTD, v_NTD.transpose(1, 2))
        d_v = torch.bmm(probs_NTT.transpose(1, 2), d_out_NTD)
        d_scores_NTT, d_gate_NT3 = _KERNEL.load().backward(
            d_probs_NTT, scores_NTT, k_symbol_BT, global_mask_NTT, stats_NT32, gate_NT3, H, ctx.window, ctx.topk
        )
        d_scores_NTT.mul_(ctx.scale)
        d_q = torch.bmm(d_scores_NTT, k_NTD)
        d_k = torch.bmm(d_scores_NTT.transpose(1, 2), q_NTD)
        return d_q.view(B, H, T, D), d_k.view(B, H, T, D), d_v.view(B, H, T, D), d_gate_NT3, None, None, None


def fused_multiscale_attention(
    q_BHTD: torch.Tensor,
    k_BHTD: torch.Tensor,
    v_BHTD: torch.Tensor,
    gate_BHT3: torch.Tensor,
    k_symbol_BT: torch.Tensor,
    window: int,
    topk: int,
) -> torch.Tensor:
    """sum_b gate_b * branch_b(q, k, v) over the local, global top-k and symbolic branches: [B, H, T, D].

    The training layout only: the keys are the queries, at positions 0..T-1 in every row (causal
    by index). float32 CPU tensors; call `available()` first. gate_BHT3 holds each query's and
    head's mix weights in the order of attention.BRANCHES.
    """
    if not _KERNEL.available():
        raise RuntimeError(f"the fused multi-scale kernel is not available: {_KERNEL.error}")
    B, H, T, _ = q_BHTD.shape
    if k_BHTD.shape[2] != T:
        raise ValueError(f"the fused kernel needs keys = queries (training layout); got {T} queries and {k_BHTD.shape[2]} keys")
    gate_NT3 = gate_BHT3.reshape(B * H, T, 3).contiguous()
    return _FusedMultiScale.apply(q_BHTD, k_BHTD, v_BHTD, gate_NT3, k_symbol_BT.contiguous(), window, topk)
