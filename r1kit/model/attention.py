"""Attention: rotary positions, dense causal SDPA, and multi-scale attention (S2-S4).

Multi-scale attention uses one set of q/k/v projections feeding three branches:
  local     causal sliding window of `window` positions (S2);
  global    causal sparse top-k: each query keeps only its `topk` highest-scoring keys (S3);
  symbolic  only keys whose token is a mathematical symbol (S4);
mixed per token and head by a learned softmax gate over the three, computed from the hidden state
(initialised to equal weights; `gate_local_bias` gives NSA's local-first start; `branches` leaves
some out, for ablations). A query with no allowed key in a branch (no symbol before it, say) gets
exactly zero from that branch.

Each branch is torch's fused SDPA under a boolean mask, so no score matrix is kept for autograd;
the global branch picks its top-k keys from a chunk's scores without gradient. Queries are
processed in chunks of `chunk_size`, so no branch holds more than chunk x keys scores per head,
and in training each chunk is recomputed in the backward pass (activation checkpointing) when
there is more than one, so the masks of all chunks are never alive at once.

In training (keys = the queries at positions 0..T-1, one chunk, float32 on a CPU) the three
branches run instead on r1kit.model.kernels.multiscale: one score matrix, each row's masks, top-k,
softmaxes and gated mix in C++; the same results to ~1e-6, in about a third of the time.

Positions: every query and key carries an explicit position (int). Masks are computed from
positions (key_pos <= query_pos; query_pos - key_pos < window). With a KV cache, a token at
position p lives in cache slot p, so keys' positions are simply 0..S-1.

Shape legend: B batch, T new tokens (queries), S keys visible (cache length, or T), H query
heads, G key/value heads (GQA), D head dim, C model dim, c queries in a chunk, k top-k.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

import r1kit.model.kernels.multiscale as multiscale_kernel
from r1kit.config import ModelConfig

BRANCHES = ("local", "global", "symbolic")


class KVCacheLike(Protocol):
    """All that the model needs from a KV cache; r1kit.kv_cache.KVCache is one implementation,
    and a paged or prefix-shared cache can be another without touching model code."""

    length: int  # visible key slots after `start`: 1 + the largest position written

    def start(self, positions_BT: torch.Tensor, is_symbol_BT: torch.Tensor) -> None:
        """Begin a forward step writing tokens at these positions (the model calls it once)."""
        ...

    def update(self, layer: int, k_BGTD: torch.Tensor, v_BGTD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's keys/values for `layer`; return all visible ones, [B, G, S, D] each."""
        ...

    def visible_symbols(self) -> torch.Tensor:
        """[B, S] bool: which visible keys are maths-symbol tokens."""
        ...

    # Needed for forwards with depth_B (rows leaving at different blocks):
    #   narrow(rows_N) -> None: for the rest of this forward only these of its rows (positions
    #   among the rows still running) write and read keys and values; the next `start` ends it.
    # Optional: a cache that can run attention over its own storage (the paged cache's decode
    # kernel, which reads blocks in place instead of gathering them) defines
    #   attend(layer, q_BHTD, k_BGTD, v_BGTD, gate_BTH3 | None, window, topk) -> out_BHTD | None
    # storing the new keys and values and returning the attention output (gate_BTH3: the
    # multi-scale mix, None for dense attention), or None where it cannot (then `update` is used).


# ----------------------------------------------------------------------------- rotary positions


def rope_tables(head_dim: int, max_seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables [max_seq_len, head_dim] in the Hugging Face Llama layout (halves, not
    interleaved pairs), so weights export to `LlamaForCausalLM` without permuting q/k."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float64), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x_BHTD: torch.Tensor, cos_BTD: torch.Tensor, sin_BTD: torch.Tensor) -> torch.Tensor:
    cos, sin = cos_BTD.unsqueeze(1).to(x_BHTD.dtype), sin_BTD.unsqueeze(1).to(x_BHTD.dtype)
    x1, x2 = x_BHTD.chunk(2, dim=-1)
    return x_BHTD * cos + torch.cat([-x2, x1], dim=-1) * sin


# ----------------------------------------------------------------------------- per-forward context


@dataclass
class AttentionContext:
    """What every layer's attention needs about this forward call; built once by the model."""

    cos_BTD: torch.Tensor  # rotary tables at the queries' positions
    sin_BTD: torch.Tensor
    q_pos_BT: torch.Tensor  # int64 positions of the new tokens
    k_pos_BS: torch.Tensor  # int64 positions of all visible keys
    k_symbol_BS: torch.Tensor  # bool: key token is a maths symbol
    standard_causal: bool  # keys are exactly the queries at positions 0..T-1: SDPA's is_causal applies
    all_visible: bool  # every query may see every visible key (decode of rows in lockstep): no mask at all
    # per query chunk: (t0, t1, lo, hi) -- queries t0:t1 may see key slots lo:hi (local) and :hi (others)
    chunks: list[tuple[int, int, int, int]]
    # multi-scale training on the fused CPU kernel (r1kit.model.kernels.multiscale): keys are the queries at
    # positions 0..T-1, one chunk, gradients on; decided once per forward by the model
    fused_multiscale: bool = False
    _causal_B1TS: torch.Tensor | None = None

    def select_rows(self, rows_N: torch.Tensor) -> "AttentionContext":
        """The context of these rows alone (rows leaving the forward at an early exit). The chunks'
        key ranges, planned for all rows, still cover the rows kept."""
        def pick(t: torch.Tensor) -> torch.Tensor:
            return t.index_select(0, rows_N)
        return AttentionContext(
            cos_BTD=pick(self.cos_BTD), sin_BTD=pick(self.sin_BTD), q_pos_BT=pick(self.q_pos_BT),
            k_pos_BS=pick(self.k_pos_BS), k_symbol_BS=pick(self.k_symbol_BS), standard_causal=self.standard_causal,
            all_visible=self.all_visible, chunks=self.chunks, fused_multiscale=self.fused_multiscale,
            _causal_B1TS=None if self._causal_B1TS is None else pick(self._causal_B1TS))

    def causal_mask(self) -> torch.Tensor:
        """[B, 1, T, S] bool: key_pos <= query_pos; built once per forward, shared by the layers."""
        if self._causal_B1TS is None:
            self._causal_B1TS = (self.k_pos_BS[:, None, :] <= self.q_pos_BT[:, :, None]).unsqueeze(1)
        return self._causal_B1TS


def plan_chunks(q_slot_BT: torch.Tensor | None, T: int, chunk_size: int, window: int) -> list[tuple[int, int, int, int]]:
    """Split T queries into chunks and find, per chunk, the key slots each branch may need.

    q_slot_BT: each query's own slot among the keys (its position, with a cache), or None when the
    queries are the keys themselves (no cache): slot t. Slots must increase along T.
    """
    chunks = []
    for t0 in range(0, T, chunk_size):
        t1 = min(T, t0 + chunk_size)
        if q_slot_BT is None:
            first, last = t0, t1 - 1
        else:
            first, last = int(q_slot_BT[:, t0].min()), int(q_slot_BT[:, t1 - 1].max())
        chunks.append((t0, t1, max(0, first - window + 1), last + 1))
    return chunks


# ----------------------------------------------------------------------------- branch kernels


def multiscale_chunk(
    q_BHcD: torch.Tensor,
    k_BHSD: torch.Tensor,
    v_BHSD: torch.Tensor,
    q_pos_Bc: torch.Tensor,
    k_pos_BS: torch.Tensor,
    k_symbol_BS: torch.Tensor,
    lo: int,
    window: int,
    topk: int,
) -> torch.Tensor:
    """The three branches for one chunk of queries against keys 0:S. Returns [3, B, H, c, D].

    Each branch is torch's fused SDPA under a boolean mask, so no branch keeps a score matrix
    for autograd. SDPA returns exact zeros for a query whose mask row is empty (torch >= 2.5),
    which is the "no allowed key gives zero" rule; a test guards it.
    """
    causal_BcS = k_pos_BS[:, None, :] <= q_pos_Bc[:, :, None]

    # local: only the last `window` positions, so slice the keys down to lo:S first
    dist_BcW = q_pos_Bc[:, :, None] - k_pos_BS[:, None, lo:]
    local_B1cW = ((dist_BcW >= 0) & (dist_BcW < window)).unsqueeze(1)
    out_local = F.scaled_dot_product_attention(q_BHcD, k_BHSD[:, :, lo:], v_BHSD[:, :, lo:], attn_mask=local_B1cW)

    # symbolic: causal keys whose token is a maths symbol
    symbol_B1cS = (causal_BcS & k_symbol_BS[:, None, :]).unsqueeze(1)
    out_symbol = F.scaled_dot_product_attention(q_BHcD, k_BHSD, v_BHSD, attn_mask=symbol_B1cS)

    # global: each query's top-k causal keys. The selection is discrete, so it needs no gradient;
    # the softmax over the selected keys' scores (inside SDPA) carries it, exactly as a masked
    # softmax over top-k values would. A query with at most k causal keys keeps them all, so scores
    # and top-k run only from the first query (in any row) that has more; every query before it
    # just keeps its causal keys. In training at T ~ 100 with k = 64 this skips two thirds of the
    # top-k work.
    B, H, S = q_BHcD.shape[0], q_BHcD.shape[1], k_BHSD.shape[2]
    causal_B1cS = causal_BcS.unsqueeze(1)
    if S <= topk or not bool((over_k_c := causal_BcS.sum(dim=-1).amax(dim=0) > topk).any()):  # over_k_c: [c]
        top_BHcS = causal_B1cS
    else:
        first = int(over_k_c.int().argmax())  # index of the first query over k
        with torch.no_grad():
            late_causal_B1lS = causal_B1cS[:, :, first:]
            scores_BHlS = (q_BHcD[:, :, first:] @ k_BHSD.transpose(-1, -2)).masked_fill_(~late_causal_B1lS, float("-inf"))
            top_idx_BHlk = scores_BHlS.topk(topk, dim=-1, sorted=False).indices
            # the mask in SDPA's additive form (0 = may look, -inf = may not), written in place: a
            # boolean [B, H, c, S] mask would be concatenated, then converted by SDPA (~4 ms a call at T = 130)
            top_BHcS = q_BHcD.new_full((B, H, q_BHcD.shape[2], S), float("-inf"))
            top_BHcS[:, :, :first].masked_fill_(causal_B1cS[:, :, :first], 0.0)
            late_BHlS = top_BHcS[:, :, first:].scatter_(-1, top_idx_BHlk, 0.0)
            late_BHlS.masked_fill_(~late_causal_B1lS, float("-inf"))  # fewer than k earlier keys in some row: -inf entries were picked too
    out_global = F.scaled_dot_product_attention(q_BHcD, k_BHSD, v_BHSD, attn_mask=top_BHcS)

    return torch.stack([out_local, out_global, out_symbol])


def multiscale_attention(
    q_BHTD: torch.Tensor, k_BHSD: torch.Tensor, v_BHSD: torch.Tensor, ctx: AttentionContext, window: int, topk: int
) -> torch.Tensor:
    """All chunks of the three branches: [3, B, H, T, D]."""
    recompute = torch.is_grad_enabled() and len(ctx.chunks) > 1
    outs = []
    for t0, t1, lo, hi in ctx.chunks:
        args = (
            q_BHTD[:, :, t0:t1], k_BHSD[:, :, :hi], v_BHSD[:, :, :hi],
            ctx.q_pos_BT[:, t0:t1], ctx.k_pos_BS[:, :hi], ctx.k_symbol_BS[:, :hi], lo, window, topk,
        )
        if recompute:
            outs.append(checkpoint(multiscale_chunk, *args, use_reentrant=False))
        else:
            outs.append(multiscale_chunk(*args))
    return torch.cat(outs, dim=3) if len(outs) > 1 else outs[0]


def dense_attention(q_BHTD: torch.Tensor, k_BHSD: torch.Tensor, v_BHSD: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
    """Plain causal attention with torch's fused SDPA (the Llama reference)."""
    if ctx.standard_causal:
        return F.scaled_dot_product_attention(q_BHTD, k_BHSD, v_BHSD, is_causal=True)
    if ctx.all_visible:
        return F.scaled_dot_product_attention(q_BHTD, k_BHSD, v_BHSD)
    return F.scaled_dot_product_attention(q_BHTD, k_BHSD, v_BHSD, attn_mask=ctx.causal_mask())


# ----------------------------------------------------------------------------- the module


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.kind = cfg.attention.kind
        self.window, self.topk = cfg.attention.window, cfg.attention.topk
        # q, k and v in one matrix (rows: H*D of q, then G*D of k, then G*D of v): one matmul
        # instead of three, in training and in decoding (gpt-fast's wqkv). Export splits it again.
        self.q_size, self.kv_size = cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
        self.qkv_proj = nn.Linear(cfg.dim, self.q_size + 2 * self.kv_size, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)
        if self.kind == "multiscale":
            # gate logits per (head, branch) from the hidden state; the bias sets the starting mix
            self.gate = nn.Linear(cfg.dim, cfg.n_heads * len(BRANCHES), bias=True)
            # -inf on the gate logit of each branch the config leaves out (an ablation): weight exactly 0;
            # None with all three, so the default forward does no extra work
            left_out_3 = torch.tensor([b not in cfg.attention.branches for b in BRANCHES])
            mask_3 = torch.zeros(len(BRANCHES)).masked_fill(left_out_3, float("-inf")) if left_out_3.any() else None
            self.register_buffer("gate_logit_mask_3", mask_3, persistent=False)
        # mean gate weight per branch over the last forward's tokens and heads (for reports)
        self.last_gate_mean: torch.Tensor | None = None

    def _store_kv(self, k_BGTD: torch.Tensor, v_BGTD: torch.Tensor, cache: KVCacheLike | None):
        """Put this step's (rotated) keys and the values in the cache; all visible ones, [B, G, S, D]."""
        if cache is not None:
            return cache.update(self.layer_idx, k_BGTD, v_BGTD)
        return k_BGTD, v_BGTD

    @staticmethod
    def _rotated(k_BTGD: torch.Tensor, v_BTGD: torch.Tensor, ctx: AttentionContext) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's keys rotated to their positions and the values, both [B, G, T, D]."""
        return apply_rope(k_BTGD.transpose(1, 2), ctx.cos_BTD, ctx.sin_BTD), v_BTGD.transpose(1, 2)

    def write_cache_only(self, x_BTC: torch.Tensor, ctx: AttentionContext, cache: KVCacheLike) -> None:
        """For a skipped attention layer: still store this step's keys/values, so that later steps
        that do run the layer see a complete history. Costs the k/v part of the projection."""
        B, T, _ = x_BTC.shape
        kv_BT2GD = F.linear(x_BTC, self.qkv_proj.weight[self.q_size:]).view(B, T, 2, self.n_kv_heads, self.head_dim)
        self._store_kv(*self._rotated(kv_BT2GD[:, :, 0], kv_BT2GD[:, :, 1], ctx), cache)

    def forward(self, x_BTC: torch.Tensor, ctx: AttentionContext, cache: KVCacheLike | None = None) -> torch.Tensor:
        B, T, _ = x_BTC.shape
        q_BTC, k_BTC, v_BTC = self.qkv_proj(x_BTC).split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q_BHTD = apply_rope(q_BTC.view(B, T, self.n_heads, self.head_dim).transpose(1, 2), ctx.cos_BTD, ctx.sin_BTD)
        k_BTGD, v_BTGD = k_BTC.view(B, T, self.n_kv_heads, self.head_dim), v_BTC.view(B, T, self.n_kv_heads, self.head_dim)
        gate_BTH3 = None
        if self.kind == "multiscale":
            gate_logits_BTH3 = self.gate(x_BTC).view(B, T, self.n_heads, len(BRANCHES)).float()
            if self.gate_logit_mask_3 is not None:
                gate_logits_BTH3 = gate_logits_BTH3 + self.gate_logit_mask_3
            gate_BTH3 = torch.softmax(gate_logits_BTH3, dim=-1)
            self.last_gate_mean = gate_BTH3.detach().mean(dim=(0, 1, 2))

        k_BGTD, v_BGTD = self._rotated(k_BTGD, v_BTGD, ctx)
        attend = getattr(cache, "attend", None)
        if attend is not None:  # the cache runs attention over its own storage where it can (KVCacheLike)
            out_BHTD = attend(self.layer_idx, q_BHTD, k_BGTD, v_BGTD, gate_BTH3, self.window, self.topk)
            if out_BHTD is not None:
                return self.o_proj(out_BHTD.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))
        k_BGSD, v_BGSD = self._store_kv(k_BGTD, v_BGTD, cache)

        if self.kind == "dense":
            out_BHTD = dense_attention(q_BHTD, *self._repeat_kv(k_BGSD, v_BGSD), ctx)
        else:
            k_BHSD, v_BHSD = self._repeat_kv(k_BGSD, v_BGSD)
            if ctx.fused_multiscale and q_BHTD.dtype == torch.float32:
                out_BHTD = multiscale_kernel.fused_multiscale_attention(
                    q_BHTD, k_BHSD, v_BHSD, gate_BTH3.transpose(1, 2), ctx.k_symbol_BS, self.window, self.topk
                )
            else:
                branches_3BHTD = multiscale_attention(q_BHTD, k_BHSD, v_BHSD, ctx, self.window, self.topk)
                gate_3BHT1 = gate_BTH3.to(q_BHTD.dtype).permute(3, 0, 2, 1).unsqueeze(-1)
                out_BHTD = (gate_3BHT1 * branches_3BHTD).sum(dim=0)
        return self.o_proj(out_BHTD.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))

    def _repeat_kv(self, k_BGSD: torch.Tensor, v_BGSD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rep = self.n_heads // self.n_kv_heads
        if rep == 1:
            return k_BGSD, v_BGSD
        return k_BGSD.repeat_interleave(rep, dim=1), v_BGSD.repeat_interleave(rep, dim=1)
