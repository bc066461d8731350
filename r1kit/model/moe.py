"""Feed-forward layers: the dense SwiGLU (Llama) and a mixture of experts with load-aware routing (S1).

Routing. The router scores expert i for token x as s_i = x . e_i (e_i a learned expert embedding).
Balancing modes (MoEConfig.balancing):
  none          probs = softmax(s); the top-k of probs process the token.
  load_penalty  the article's: adjusted = s - alpha * load; probs = softmax(adjusted); top-k.
                load_i is the running (EMA) share of tokens routed to expert i, scaled so that a
                uniform load is 1. It comes from earlier optimiser steps only, so no token's
                routing depends on other tokens of its batch: routing stays causal and a token
                routes the same in training, cached decoding and batch inference.
  aux_loss      Switch Transformer: probs = softmax(s); the layer also returns
                coef * E * sum_i f_i * P_i (f_i share of assignments, P_i mean router prob),
                which the trainer adds to its loss.
  bias          DeepSeek-V3 auxiliary-loss-free: top-k of (probs + b) chooses the experts, the
                weights still come from probs; b_i += gamma * sign(1 - load_i) after each step.
Loads and biases change only through `update_balancing()`, which a trainer calls after each
optimiser step with the counts gathered by training forwards since the last call (or a caller
passes counts it measured without training: `r1kit update-routing`); inference uses them frozen.
Both are buffers, saved with the checkpoint.

Keeping a subset of experts (`keep_experts`, expert_activation): the dropped experts' weights and
routing state are deleted and the router scores the kept ones only, which is the full router with
the dropped experts' scores at -inf (softmax, balancing terms and top-k over the kept ones).

Routing replay (for RL): while `replay_topk_NK` is set (Transformer.replay_routing sets it), the
layer sends each token to those experts instead of its own top-k; the weights are still the
router's probabilities gathered at those ids (renormalised as usual), so the router still gets
gradients. `last_topk_NK` always holds the router's own choice, so a trainer can measure how often
it differs from the replayed one.

Dispatch is batched: assignments are sorted by expert and each expert runs one matmul over its
tokens (a loop over experts, never over tokens); results are scattered back with index_add.
Dropless by default; an optional capacity factor drops overflow assignments in training
(which makes a token's output depend on its batch, hence off by default).

Shape legend: N tokens (B*T flattened), C model dim, E routed experts, K experts per token,
F hidden width of one expert, A assignments (N*K, fewer after capacity drops).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from r1kit.config import ModelConfig


class SwiGLU(nn.Module):
    """The Llama feed-forward: down(silu(gate(x)) * up(x)), no biases. gate and up are one matrix
    (rows: gate's, then up's), so they cost one matmul; export splits it again."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_up_proj = nn.Linear(dim, 2 * hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


def balance_metrics(tokens_per_expert_E: torch.Tensor) -> dict[str, float]:
    """utilisation = exp(entropy(load share)) / E (1 = perfectly even, 1/E = one expert takes all);
    max_vio = max_i load_i / mean load - 1 (0 = perfectly even)."""
    counts = tokens_per_expert_E.double()
    total = counts.sum()
    if total <= 0:
        return {"utilisation": float("nan"), "max_vio": float("nan")}
    share = counts / total
    entropy = -(share * share.clamp_min(1e-30).log()).sum()
    return {
        "utilisation": float(entropy.exp() / counts.numel()),
        "max_vio": float(counts.max() / counts.mean() - 1),
    }


# inference forwards with at most this many (token, expert) pairs run every expert on every token
# (_dense_dispatch): a decode step of up to 128 rows of 4 experts. Above it the routed dispatch's
# saved FLOPs outweigh its per-expert loop (measured: docs/benchmarks.md, "Shared KV memory").
DENSE_DISPATCH_MAX = 512


class MoEFeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        mc = cfg.moe
        self.n_experts, self.top_k, self.balancing = mc.n_experts, mc.top_k, mc.balancing
        self.alpha, self.load_momentum, self.bias_gamma = mc.alpha, mc.load_momentum, mc.bias_gamma
        self.aux_loss_coef, self.capacity_factor = mc.aux_loss_coef, mc.capacity_factor
        # with top_k = 1 renormalising makes every weight 1 and cuts the router off from the gradient
        self.norm_topk_prob = mc.norm_topk_prob and mc.top_k > 1
        E, C, Fh = mc.n_experts, cfg.dim, cfg.expert_hidden
        # the checkpoint's id of each expert held here (they differ once keep_experts dropped some)
        self.expert_ids = list(range(E))

        self.expert_embed_EC = nn.Parameter(torch.empty(E, C))  # router: s = x @ e.T
        # stacked expert weights, one slice per expert, in SwiGLU's layout: gate and up rows together
        self.gate_up_proj_E2FC = nn.Parameter(torch.empty(E, 2 * Fh, C))
        self.down_proj_ECF = nn.Parameter(torch.empty(E, C, Fh))
        self.shared = SwiGLU(C, mc.n_shared * Fh) if mc.n_shared else None

        # routing state, saved with checkpoints
        self.register_buffer("load_E", torch.ones(E))  # EMA load, 1 = uniform share
        self.register_buffer("expert_bias_E", torch.zeros(E))
        # counts since the last update_balancing() (training forwards only) and of the last forward
        self.register_buffer("pending_counts_E", torch.zeros(E), persistent=False)
        self.register_buffer("last_counts_E", torch.zeros(E), persistent=False)
        self.aux_loss: torch.Tensor | None = None
        # the last forward's expert choices [N, K] (the router's own, even under replay), for routing analysis
        self.last_topk_NK: torch.Tensor | None = None
        # expert ids [N, K] to dispatch to instead of the router's own choice (routing replay); None = off
        self.replay_topk_NK: torch.Tensor | None = None

    # ------------------------------------------------------------------ routing

    def route(self, x_NC: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Choose experts. Returns (expert ids [N, K], weights [N, K], router probs [N, E])."""
        scores_NE = (x_NC @ self.expert_embed_EC.t()).float()
        if self.balancing == "load_penalty":
            scores_NE = scores_NE - self.alpha * self.load_E
        probs_NE = torch.softmax(scores_NE, dim=-1)
        selection_NE = probs_NE + self.expert_bias_E if self.balancing == "bias" else probs_NE
        topk_NK = selection_NE.topk(self.top_k, dim=-1).indices
        return topk_NK, self._weights(probs_NE, topk_NK).to(x_NC.dtype), probs_NE

    def _weights(self, probs_NE: torch.Tensor, topk_NK: torch.Tensor) -> torch.Tensor:
        weights_NK = probs_NE.gather(-1, topk_NK)
        if self.norm_topk_prob:
            weights_NK = weights_NK / weights_NK.sum(dim=-1, keepdim=True)
        return weights_NK

    def forward(self, x_BTC: torch.Tensor) -> torch.Tensor:
        B, T, C = x_BTC.shape
        x_NC = x_BTC.reshape(-1, C)
        topk_NK, weights_NK, probs_NE = self.route(x_NC)
        own_topk_NK = topk_NK
        if self.replay_topk_NK is not None:
            if self.replay_topk_NK.shape != topk_NK.shape:
                raise ValueError(f"routing replay holds {tuple(self.replay_topk_NK.shape)} expert ids, this forward needs {tuple(topk_NK.shape)}")
            topk_NK = self.replay_topk_NK.to(topk_NK.device)
            weights_NK = self._weights(probs_NE, topk_NK).to(x_NC.dtype)
        counts_E = torch.bincount(topk_NK.flatten(), minlength=self.n_experts).to(self.last_counts_E.dtype)

        with torch.no_grad():
            self.last_counts_E.copy_(counts_E)
            self.last_topk_NK = own_topk_NK
            if self.training:
                self.pending_counts_E += counts_E
        if self.balancing == "aux_loss" and self.training:
            share_E = counts_E / counts_E.sum()
            self.aux_loss = self.aux_loss_coef * self.n_experts * (share_E * probs_NE.mean(dim=0)).sum()
        else:
            self.aux_loss = None

        if not torch.is_grad_enabled() and x_NC.shape[0] * self.n_experts <= DENSE_DISPATCH_MAX:
            out_NC = self._dense_dispatch(x_NC, topk_NK, weights_NK)
        else:
            out_NC = self._dispatch(x_NC, topk_NK, weights_NK)
        if self.shared is not None:
            out_NC = out_NC + self.shared(x_NC)
        return out_NC.view(B, T, C)

    def _dispatch(self, x_NC: torch.Tensor, topk_NK: torch.Tensor, weights_NK: torch.Tensor) -> torch.Tensor:
        N, K = topk_NK.shape
        expert_A = topk_NK.flatten()
        order_A = expert_A.argsort(stable=True)  # assignments grouped by expert, token order kept
        counts = torch.bincount(expert_A, minlength=self.n_experts)
        if self.capacity_factor is not None and self.training:
            capacity = math.ceil(self.capacity_factor * N * K / self.n_experts)
            start_E = torch.cumsum(counts, 0) - counts
            rank_A = torch.arange(N * K, device=x_NC.device) - start_E[expert_A[order_A]]
            order_A = order_A[rank_A < capacity]
            counts = counts.clamp(max=capacity)
        token_A = order_A // K
        x_AC = x_NC.index_select(0, token_A)  # its backward is index_add_; x_NC[token_A]'s sorts (index_put), ~2x dearer on CPU
        outs = []
        for e, x_eC in enumerate(x_AC.split(counts.tolist())):
            gate_eF, up_eF = (x_eC @ self.gate_up_proj_E2FC[e].t()).chunk(2, dim=-1)
            h_eF = F.silu(gate_eF) * up_eF
            outs.append(h_eF @ self.down_proj_ECF[e].t())
        y_AC = torch.cat(outs) * weights_NK.flatten()[order_A, None]
        return torch.zeros_like(x_NC).index_add_(0, token_A, y_AC)

    def _dense_dispatch(self, x_NC: torch.Tensor, topk_NK: torch.Tensor, weights_NK: torch.Tensor) -> torch.Tensor:
        """Every expert on every token, in three batched products, each token's output the same
        weighted sum of its chosen experts (the others weigh zero). E/K times the routed FLOPs, but
        no per-expert Python loop, sort or scatter: faster for the few tokens of a decode step
        (inference only; DENSE_DISPATCH_MAX bounds N x E). Equal to `_dispatch` up to float rounding."""
        N, C = x_NC.shape
        gate_up_ENF2 = torch.matmul(x_NC, self.gate_up_proj_E2FC.transpose(1, 2))  # [E, N, 2F]
        gate_ENF, up_ENF = gate_up_ENF2.chunk(2, dim=-1)
        y_ENC = torch.matmul(F.silu(gate_ENF) * up_ENF, self.down_proj_ECF.transpose(1, 2))  # [E, N, C]
        combine_NE = torch.zeros(N, self.n_experts, dtype=y_ENC.dtype, device=x_NC.device)
        combine_NE.scatter_(1, topk_NK, weights_NK.to(y_ENC.dtype))
        return torch.einsum("enc,ne->nc", y_ENC, combine_NE).to(x_NC.dtype)

    # ------------------------------------------------------------------ balancing state

    @torch.no_grad()
    def update_balancing(self, counts_E: torch.Tensor | None = None) -> None:
        """Apply the counts gathered since the last call: EMA load (all modes; routing uses it only
        in load_penalty) and, in bias mode, the bias nudge. Call once after each optimiser step.
        `counts_E` (tokens per expert, measured by the caller) is applied instead of the gathered
        counts, which stay pending: a routing refresh on data without training."""
        pending = counts_E is None
        counts_E = self.pending_counts_E if pending else counts_E.to(self.pending_counts_E)
        if counts_E.shape != (self.n_experts,):
            raise ValueError(f"balancing counts must have shape ({self.n_experts},), got {tuple(counts_E.shape)}")
        total = counts_E.sum()
        if total <= 0:
            return
        load_E = counts_E * self.n_experts / total
        self.load_E.lerp_(load_E, self.load_momentum)
        if self.balancing == "bias":
            self.expert_bias_E += self.bias_gamma * torch.sign(1.0 - load_E)
        if pending:
            self.pending_counts_E.zero_()

    @torch.no_grad()
    def keep_experts(self, keep: Sequence[int]) -> None:
        """Keep only the experts at these positions (0 .. n_experts - 1; the layer's order is kept),
        deleting the others' weights and routing state. The kept rows are copies, so the dropped
        ones' memory is freed once nothing else holds the old tensors (an optimiser would). Loads
        and biases keep their values, so routing equals the full router's with the dropped
        experts' scores at -inf."""
        keep = [int(i) for i in keep]
        if sorted(set(keep)) != keep or not keep or keep[0] < 0 or keep[-1] >= self.n_experts:
            raise ValueError(f"experts to keep must be distinct positions in 0..{self.n_experts - 1}, ascending; got {keep}")
        if len(keep) < self.top_k:
            raise ValueError(f"keeping {len(keep)} experts leaves fewer than top_k={self.top_k}")
        index_E = torch.tensor(keep, device=self.expert_embed_EC.device)
        for name in ("expert_embed_EC", "gate_up_proj_E2FC", "down_proj_ECF"):
            old = getattr(self, name)
            setattr(self, name, nn.Parameter(old.index_select(0, index_E), requires_grad=old.requires_grad))
        for name in ("load_E", "expert_bias_E", "pending_counts_E", "last_counts_E"):
            setattr(self, name, getattr(self, name).index_select(0, index_E))  # stays a buffer, same persistence
        self.expert_ids = [self.expert_ids[i] for i in keep]
        self.n_experts = len(keep)
        self.last_topk_NK = None

    def routing_stats(self) -> dict:
        """The last forward's tokens per expert with its utilisation and MaxVio."""
        return {"tokens_per_expert": self.last_counts_E.tolist(), **balance_metrics(self.last_counts_E)}
