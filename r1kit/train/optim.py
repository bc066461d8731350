"""Muon for a transformer's hidden matrices, AdamW for the rest, in one torch Optimizer.

Muon (Keller Jordan, 2024; "Muon is Scalable for LLM Training", Moonshot 2025) replaces each
hidden matrix's update by the nearest semi-orthogonal matrix to its Nesterov momentum (a few
Newton-Schulz iterations), so every direction of the matrix moves at the same rate instead of the
few that dominate the gradient. Embeddings, the output head, norms, biases and small routing
matrices keep AdamW, as in the reference implementation.

Why not `torch.optim.Muon`: it takes 2-D parameters only, and r1kit stores each layer's experts
as one [E, out, in] tensor; here each expert's matrix is orthogonalised on its own (batched).
The update is scaled by 0.2 * sqrt(max(out, in)) (Moonshot's rule), which gives it AdamW's RMS,
so the two kinds of group share one learning rate and one weight decay.

One optimizer (groups flagged `use_muon`), so the trainer's schedule, state saving and
`--resume` treat it like AdamW. The Newton-Schulz iterations run one call per parameter shape, in
bf16 where the hardware multiplies bf16 natively (as the reference's), fp32 elsewhere (`ns_dtype`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import torch
import torch.nn as nn

from r1kit.device import native_bf16

# Keller Jordan's quintic coefficients: push singular values of the normalised matrix towards ~1
# in 5 steps, trading exactness (they land in ~[0.7, 1.2]) for speed.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(g_XMN: torch.Tensor, steps: int = 5, eps: float = 1e-7,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Newton-Schulz approximation of U V^T for G = U S V^T, batched over leading dims: [..., M, N].
    The iterations run in `dtype` (the normalisation in fp32): bf16 as in the reference Muon, where
    the hardware multiplies bf16 natively (`ns_dtype`); the result's singular values stay in the
    quintic's loose band either way."""
    a, b, c = NS_COEFFICIENTS
    x = g_XMN.float()
    tall = x.size(-2) > x.size(-1)
    if tall:  # iterate on the smaller Gram matrix
        x = x.mT
    x = (x / (x.norm(dim=(-2, -1), keepdim=True) + eps)).to(dtype)  # spectral norm <= Frobenius norm <= 1
    x_bMN = x.reshape(-1, *x.shape[-2:])  # one batch dim, so baddbmm fuses the scalings into the matmuls
    for _ in range(steps):
        gram_bMM = x_bMN @ x_bMN.mT
        poly_bMM = torch.baddbmm(gram_bMM, gram_bMM, gram_bMM, beta=b, alpha=c)  # b * gram + c * gram @ gram
        x_bMN = torch.baddbmm(x_bMN, poly_bMM, x_bMN, beta=a)  # a * x + poly @ x
    x = x_bMN.view(x.shape)
    return (x.mT if tall else x).to(g_XMN.dtype)


def muon_param_names(model: nn.Module) -> set[str]:
    """Hidden matrices: every >= 2-D parameter inside the blocks except the attention gate and
    the MoE router (a few logits each; AdamW moves them as it moves biases)."""
    return {
        name for name, p in model.named_parameters()
        if p.dim() >= 2 and name.startswith("layers.") and not name.endswith(("attn.gate.weight", "expert_embed_EC"))
    }


def ns_dtype(requested: str, device) -> tuple[torch.dtype, str]:
    """The precision of Muon's Newton-Schulz iterations for "auto" | "fp32" | "bf16", and why.
    "auto": bf16 on a CUDA GPU with bf16 and on a CPU with native bf16 (on an AVX512-BF16 EPYC the
    demo model's Newton-Schulz took 15.0 against 29.0 ms, its optimiser step 0.60x, ~5% more SFT
    steps a minute; docs/benchmarks.md, "Faster steps"); fp32 elsewhere (emulated bf16 is ~13x slower)."""
    if requested in ("fp32", "bf16"):
        return (torch.bfloat16 if requested == "bf16" else torch.float32), "asked for"
    if requested != "auto":
        raise ValueError(f"unknown Newton-Schulz dtype {requested!r}; allowed: auto, fp32, bf16")
    native, hardware = native_bf16(device)
    return (torch.bfloat16 if native else torch.float32), hardware


def muon_adamw(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
               muon_lr: float | None = None, ns_dtype: torch.dtype = torch.float32) -> "MuonAdamW":
    """Muon on the hidden matrices; AdamW on the other matrices (decayed) and on vectors (not).
    The Muon group's rate is `muon_lr` (default `lr`); each group's `lr_scale` holds its ratio to
    `lr`, so a trainer's schedule sets `group["lr"] = scheduled_lr * group["lr_scale"]`."""
    hidden = muon_param_names(model)
    named = list(model.named_parameters())
    muon_scale = 1.0 if muon_lr is None else muon_lr / lr
    return MuonAdamW([
        {"params": [p for n, p in named if n in hidden], "weight_decay": weight_decay, "use_muon": True,
         "lr": lr * muon_scale, "lr_scale": muon_scale},
        {"params": [p for n, p in named if n not in hidden and p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for n, p in named if p.dim() < 2], "weight_decay": 0.0},
    ], lr=lr, betas=betas, ns_dtype=ns_dtype)


class MuonAdamW(torch.optim.Optimizer):
    """Param groups with `use_muon=True` get Muon (momentum, nesterov); the others AdamW (betas, eps).
    Every group has `lr` and `weight_decay` (decoupled, as in AdamW). `ns_dtype` is the precision
    of the Newton-Schulz iterations (`ns_dtype()` picks it from the hardware); states stay fp32."""

    def __init__(self, groups: Iterable[dict], lr: float, betas: tuple[float, float] = (0.9, 0.95),
                 momentum: float = 0.95, eps: float = 1e-8, ns_steps: int = 5, ns_dtype: torch.dtype = torch.float32):
        defaults = dict(lr=lr, lr_scale=1.0, weight_decay=0.0, betas=betas, momentum=momentum, eps=eps, ns_steps=ns_steps, use_muon=False)
        super().__init__(list(groups), defaults)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            params = [p for p in group["params"] if p.grad is not None]
            if wd and params:
                torch._foreach_mul_(params, 1 - lr * wd)
            if group["use_muon"]:
                self._muon(params, group, lr)
            else:
                for p in params:
                    self._adamw(p, self.state[p], group, lr)
        return loss

    def _muon(self, params: list[torch.Tensor], group: dict, lr: float) -> None:
        """Nesterov momentum, then one Newton-Schulz call per parameter shape: the layers' matrices of
        a shape orthogonalise as one batch (each on its own); in bf16 that took 0.69x the time of a
        call per parameter on the demo model (docs/benchmarks.md, "Faster steps")."""
        by_shape: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = defaultdict(list)
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            buf = state["momentum_buffer"]
            buf.mul_(group["momentum"]).add_(p.grad)
            by_shape[tuple(p.shape)].append((p, p.grad.add(buf, alpha=group["momentum"])))  # Nesterov
        for shape, pairs in by_shape.items():
            ortho_PXMN = orthogonalize(torch.stack([update for _, update in pairs]), group["ns_steps"], dtype=self.ns_dtype)
            scale = -lr * 0.2 * math.sqrt(max(shape[-2:]))
            for (p, _), ortho in zip(pairs, ortho_PXMN):
                p.add_(ortho, alpha=scale)

    @staticmethod
    def _adamw(p: torch.Tensor, state: dict, group: dict, lr: float) -> None:
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        state["exp_avg"].lerp_(p.grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        bias1, bias2 = 1 - beta1 ** state["step"], 1 - beta2 ** state["step"]
        denom = (state["exp_avg_sq"] / bias2).sqrt_().add_(group["eps"])
        p.addcdiv_(state["exp_avg"], denom, value=-lr / bias1)


def adamw(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not norms, biases, gate biases)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)
