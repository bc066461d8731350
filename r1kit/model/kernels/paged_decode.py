"""Decode attention over a paged KV cache, read in place (csrc/paged_decode.cpp): the paged
cache's alternative to gathering every visible key and value into a contiguous tensor per layer
per step (r1kit.inference.paged_cache). One query per row; dense attention, or the three
multi-scale branches and their gated mix, as r1kit.model.attention computes them for a query at
the row's last position (tests/test_memory_reuse.py checks the two agree). float32 only.

Built on first use (r1kit.model.kernels.build); where that fails `available()` is False and the
cache gathers instead.
"""

from __future__ import annotations

import torch

from r1kit.model.kernels.build import CppKernel

_KERNEL = CppKernel("r1kit_paged_decode", "paged_decode.cpp", "paged decode attention kernel")
_NO_GATE = torch.empty(0)


def available() -> bool:
    return _KERNEL.available()


def unavailable_reason() -> str | None:
    _KERNEL.load()
    return _KERNEL.error


def paged_decode_attention(
    q_BHD: torch.Tensor,
    kv_NK2GD: torch.Tensor,
    table_BM: torch.Tensor,
    length_B: torch.Tensor,
    symbol_NK: torch.Tensor,
    gate_BH3: torch.Tensor | None,
    window: int,
    topk: int,
) -> torch.Tensor:
    """[B, H, D]: each row's one query against its `length_B[b]` visible keys, found through its
    block table (storage block ids) in one layer's storage kv [N, K, 2, G, D]. gate_BH3: the
    multi-scale mix (local, global, symbolic), or None for dense attention."""
    module = _KERNEL.load()
    if module is None:
        raise RuntimeError(f"the paged decode kernel is not available: {_KERNEL.error}")
    gate = _NO_GATE if gate_BH3 is None else gate_BH3.float()
    return module.paged_decode(q_BHD, kv_NK2GD, table_BM, length_B, symbol_NK, gate, window, topk)
