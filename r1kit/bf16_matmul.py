"""bf16 matrix products, everything else fp32: the "bf16-matmul" compute precision (r1kit.device).

Within `bf16_matmuls()`, each fp32 product of activations with a weight matrix (F.linear, and `@`
or torch.matmul with a 2-D right operand) runs with bf16 inputs (fp32 accumulation inside the
kernel) and returns fp32. Attention's softmax, norms, SiLU, routing and the loss stay fp32, and
autograd sends the gradients through the same bf16 products. This is the part of bf16 autocast that
pays on a CPU with native bf16 at the demo's size: full autocast was measured slower there (bf16
attention and the casts around every op), while its products alone ran 3-4x faster than fp32's
(docs/benchmarks.md, "bf16 products for small models").

Two details make it pay:
- oneDNN builds a bf16 kernel for each new shape (~0.3 ms, as long as a mid-sized product), and a
  training step's row counts change every step (batch length, tokens per expert). Rows are padded
  with zeros up to one of 8 sizes per octave (at most 12.5% more rows), so kernels are reused.
- Products with a weight side under MIN_SIDE stay fp32: nothing to gain, and the MoE router's and
  the multi-scale gate's few logits decide routes and mixes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

MIN_SIDE = 16  # a weight with fewer rows or columns (the router's 4 experts, the gate's 12 logits) stays fp32
MIN_ROWS = 64  # smallest padded row count

_PRODUCTS = frozenset({F.linear, torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__})


def padded_rows(rows: int) -> int:
    """`rows` rounded up to one of 8 sizes per octave (64, 72, 80, ..., 120, 128, 144, ...)."""
    if rows <= MIN_ROWS:
        return MIN_ROWS
    step = 1 << (rows.bit_length() - 4)  # an eighth of the octave below rows
    return -(-rows // step) * step


class _Bf16Matmuls(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _PRODUCTS and len(args) >= 2 and _applies(args[0], args[1]):
            return _bf16_product(func, args[0], args[1], args[2:], kwargs)
        return func(*args, **kwargs)


def _applies(x, weight) -> bool:
    return (isinstance(x, torch.Tensor) and isinstance(weight, torch.Tensor) and x.dim() >= 2 and weight.dim() == 2
            and x.dtype == weight.dtype == torch.float32 and min(weight.shape) >= MIN_SIDE)


def _bf16_product(func, x_NK: torch.Tensor, weight: torch.Tensor, rest: tuple, kwargs: dict) -> torch.Tensor:
    lead, K = x_NK.shape[:-1], x_NK.shape[-1]
    x_MK = x_NK.reshape(-1, K)
    M = x_MK.shape[0]
    x_PK = x_MK.new_zeros(padded_rows(M), K, dtype=torch.bfloat16)  # P >= M rows, the tail zeros
    x_PK[:M] = x_MK  # one pass: cast and copy (differentiable)
    def bf16(a):  # F.linear's bias, positional or by name
        return a.to(torch.bfloat16) if isinstance(a, torch.Tensor) else a

    out_PN = func(x_PK, weight.to(torch.bfloat16), *map(bf16, rest), **{k: bf16(v) for k, v in kwargs.items()})
    return out_PN[:M].float().view(*lead, out_PN.shape[-1])


def bf16_matmuls() -> TorchFunctionMode:
    """The context: `with bf16_matmuls(): loss = model(...)`; backward may run outside it."""
    return _Bf16Matmuls()
