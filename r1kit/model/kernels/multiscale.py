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

The C++ is compiled on first use with torch.utils.cpp_extension (a C++ compiler and ninja;
~40 s, cached under ~/.cache/torch_extensions). Where that fails, `available()` is False,
`unavailable_reason()` says why, and the model keeps the reference path.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

import torch

_SOURCE = Path(__file__).parent / "csrc" / "multiscale.cpp"
_lock = threading.Lock()
_module = None
_error: str | None = None


def _load():
    """The compiled extension, built on first call; None (and `_error` set) where it cannot be."""
    global _module, _error
    with _lock:
        if _module is None and _error is None:
            try:
                from torch.utils.cpp_extension import load

                _put_pip_ninja_on_path()
                started = time.perf_counter()
                _module = load(
                    name="r1kit_multiscale", sources=[str(_SOURCE)], extra_cflags=_compile_flags(), extra_ldflags=["-fopenmp"], verbose=False
                )
                if (seconds := time.perf_counter() - started) > 5:  # compiled now, not loaded from the cache
                    print(f"r1kit: compiled the fused multi-scale attention kernel in {seconds:.0f} s (cached for later runs)", file=sys.stderr)
            except Exception as e:  # no compiler, no ninja, a read-only cache ...: keep the reference path
                _error = f"{type(e).__name__}: {e}".strip()
        return _module


def _put_pip_ninja_on_path() -> None:
    """torch runs `ninja` from PATH; the pip package's binary is not on it when the venv's python
    is called without activating the venv (as `make test` does)."""
    if shutil.which("ninja") is None:
        try:
            import ninja
        except ImportError:
            return
        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def _compile_flags() -> list[str]:
    """-fopenmp: at::parallel_for is OpenMP code inlined from torch's headers, serial without it
    (torch's own libgomp is the one loaded). ATen's Vectorized<float> is compiled for AVX2 on x86
    machines that have it (AVX-512 ones too: no faster on rows of ~100 keys), else for ATen's
    portable default."""
    flags = ["-O3", "-fopenmp"]
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        return flags + ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"]
    return flags + ["-DCPU_CAPABILITY=DEFAULT"]


def available() -> bool:
    return _load() is not None


def unavailable_reason() -> str | None:
    _load()
    return _error


class _FusedMultiScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q_BHTD, k_BHTD, v_BHTD, gate_NT3, k_symbol_BT, window, topk):
        B, H, T, D = q_BHTD.shape
        scale = D**-0.5
        q_NTD, k_NTD, v_NTD = (x.reshape(B * H, T, D) for x in (q_BHTD, k_BHTD, v_BHTD))
        scores_NTT = torch.bmm(q_NTD, k_NTD.transpose(1, 2)).mul_(scale)
        probs_NTT, global_mask_NTT, stats_NT32 = _module.forward(scores_NTT, k_symbol_BT, gate_NT3, H, window, topk)
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
        d_scores_NTT, d_gate_NT3 = _module.backward(
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
    if _load() is None:
        raise RuntimeError(f"the fused multi-scale kernel is not available: {_error}")
    B, H, T, _ = q_BHTD.shape
    if k_BHTD.shape[2] != T:
        raise ValueError(f"the fused kernel needs keys = queries (training layout); got {T} queries and {k_BHTD.shape[2]} keys")
    gate_NT3 = gate_BHT3.reshape(B * H, T, 3).contiguous()
    return _FusedMultiScale.apply(q_BHTD, k_BHTD, v_BHTD, gate_NT3, k_symbol_BT.contiguous(), window, topk)
