"""The r1kit transformer: decoder-only, pre-norm RMSNorm, rotary positions, SwiGLU, no biases.

With `attention.kind = "dense"` and `moe.n_experts = 0` it is exactly the Llama architecture.
Otherwise attention is multi-scale (attention.py) and feed-forward layers are mixtures of
experts (moe.py).

    logits = model(ids_BT, positions_BT=None, cache=None, skip=None, logits_at_BT=None, depth_B=None)
    full_logits, exit_logits = model.forward_with_exit(ids_BT, exit_after, logits_at_BT=None)  # training

- positions: int64 [B, T]; default 0..T-1 (or, with a cache, continuing after what it holds is
  the caller's job: the engine passes them). Positions must increase along T.
- cache: an explicit KV cache object (kv_cache.KVCache or anything with its interface).
- skip: a LayerSkip naming blocks to skip entirely or only their attention (the dynamic engine
  uses this; `LayerSkip.early_exit(k, n_layers)` is the fast path's graph: the first k blocks, then
  the head); training applies stochastic layer drop (config.layer_drop) so skipping degrades
  gracefully, and `forward_with_exit` gives an early exit's logits beside the full ones (its loss
  trains the fast path).
- depth_B: blocks each row runs before the head (a list of B ints; None: every block). Rows whose
  depth is reached leave the batch there: the later blocks run on the other rows only (and the
  cache carries only those rows' K/V for them, `narrow`), so one forward serves rows of the full
  graph and of early exits alike (the engine's fast path in one batch with full-graph requests).
- route_after: (n, route): depths decided mid-forward. After the first n blocks, route(h_NTC, rows)
  gets the residual stream of the rows still running (`rows`: their indices) and returns each one's
  depth from there (>= n): the engine's gate reads a prefill's stream at its probe's block and sends
  a row to the early exit or on through the full graph, in the one forward.
- logits_at_BT: bool [B, T]; if given, only those positions get logits, [N, V] in row-major
  order. The output head is a tenth of a small model's compute: SFT needs logits only where the
  loss is (the response), prefill only at each prompt's last token.
- The vocabulary's symbol flags (which token ids are maths symbols) are a buffer, set with
  `set_symbol_flags` from the tokenizer and saved with the checkpoint; the symbolic attention
  branch reads them.
The model knows nothing of training, tokenizers or HTTP. Trainers call `update_balancing()` after
each optimiser step and add `aux_loss()` to their loss; an RL trainer can read each MoE layer's
expert choices (`last_routing`) and replay them in a later forward (`replay_routing`);
`keep_experts` drops routed experts from memory (the inference engine's expert_activation).

Shape legend: B batch, T tokens, C model dim, V vocabulary, S visible keys.
"""

from __future__ import annotations

import functools
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

import r1kit.model.kernels.multiscale as multiscale_kernel
from r1kit.model.attention import Attention, AttentionContext, KVCacheLike, plan_chunks, rope_tables
from r1kit.config import ModelConfig
from r1kit.model.moe import MoEFeedForward, SwiGLU


@dataclass(frozen=True)
class LayerSkip:
    """Blocks to skip this forward: `layers` entirely, or only the attention of `attention`.
    `write_cache`: a skipped layer still writes its K/V to the cache, so that later forwards that
    run it find them; False for a cache that only this graph ever reads (the engine's fast path)."""

    layers: frozenset[int] = field(default_factory=frozenset)
    attention: frozenset[int] = field(default_factory=frozenset)
    write_cache: bool = True

    @classmethod
    def early_exit(cls, n_blocks: int, n_layers: int) -> "LayerSkip":
        """The graph that runs the first `n_blocks` blocks, then the final norm and head."""
        if not 1 <= n_blocks < n_layers:
            raise ValueError(f"an early exit runs 1 .. {n_layers - 1} of the model's {n_layers} blocks, got {n_blocks}")
        return cls(layers=frozenset(range(n_blocks, n_layers)), write_cache=False)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg, layer_idx)
        self.ffn_norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.ffn = MoEFeedForward(cfg) if cfg.moe.n_experts else SwiGLU(cfg.dim, cfg.dense_hidden)

    def forward(self, h_BTC, ctx: AttentionContext, cache: KVCacheLike | None, skip_attention: bool = False):
        if skip_attention:
            if cache is not None:
                self.attn.write_cache_only(self.attn_norm(h_BTC), ctx, cache)
        else:
            h_BTC = h_BTC + self.attn(self.attn_norm(h_BTC), ctx, cache)
        return h_BTC + self.ffn(self.ffn_norm(h_BTC))


def upgrade_state_dict(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Checkpoints written before q/k/v and gate/up were fused kept them as separate tensors; this
    concatenates them into today's names (rows in the same order the modules split them), so
    older checkpoints still load. Tensors already in today's layout pass through unchanged."""
    fusions = [  # (old name suffixes in row order, new suffix, concatenation dim)
        ((".q_proj.weight", ".k_proj.weight", ".v_proj.weight"), ".qkv_proj.weight", 0),
        ((".gate_proj.weight", ".up_proj.weight"), ".gate_up_proj.weight", 0),
        ((".gate_proj_EFC", ".up_proj_EFC"), ".gate_up_proj_E2FC", 1),
    ]
    out = dict(tensors)
    for old_suffixes, new_suffix, dim in fusions:
        for name in [n for n in tensors if n.endswith(old_suffixes[0])]:
            stem = name[: -len(old_suffixes[0])]
            parts = [stem + suffix for suffix in old_suffixes]
            if all(p in out for p in parts):
                out[stem + new_suffix] = torch.cat([out.pop(p) for p in parts], dim=dim)
    return out


@functools.cache
def _warn_once(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def _from_zero(positions_BT: torch.Tensor) -> bool:
    """Every row holds positions 0..T-1."""
    return bool((positions_BT == torch.arange(positions_BT.shape[1], device=positions_BT.device)).all())


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.register_buffer("symbol_flags_V", torch.zeros(cfg.vocab_size, dtype=torch.bool))
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    # ------------------------------------------------------------------ set-up

    @torch.no_grad()
    def reset_parameters(self) -> None:
        cfg = self.config
        std = cfg.init_std
        # output projections feed the residual stream: scale so its variance does not grow with depth
        out_std = std / math.sqrt(2 * cfg.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            elif name.endswith(("o_proj.weight", "down_proj.weight", "down_proj_ECF")):
                nn.init.normal_(p, std=out_std)
            elif name.endswith("attn.gate.weight"):
                nn.init.zeros_(p)  # the gate starts from its bias alone, the same for every token
            elif name.endswith("attn.gate.bias"):
                bias_H3 = p.view(cfg.n_heads, 3)
                bias_H3.zero_()
                bias_H3[:, 0] = cfg.attention.gate_local_bias  # branch 0 is local
            else:
                nn.init.normal_(p, std=std)

    def set_symbol_flags(self, flags_V: torch.Tensor) -> None:
        """Which vocabulary ids are maths symbols (digits, operators, '=', brackets, '.')."""
        if flags_V.shape != (self.config.vocab_size,):
            raise ValueError(f"symbol flags must have shape ({self.config.vocab_size},), got {tuple(flags_V.shape)}")
        self.symbol_flags_V.copy_(flags_V.to(torch.bool))

    def num_params(self, active: bool = False) -> int:
        """All parameters, or (active=True) those one token uses: top_k of the routed experts."""
        total = sum(p.numel() for p in self.parameters())
        if active and self.config.moe.n_experts:
            mc = self.config.moe
            per_expert = 3 * self.config.dim * self.config.expert_hidden
            total -= self.config.n_layers * (mc.n_experts - mc.top_k) * per_expert
        return total

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        ids_BT: torch.Tensor,
        positions_BT: torch.Tensor | None = None,
        cache: KVCacheLike | None = None,
        skip: LayerSkip | None = None,
        logits_at_BT: torch.Tensor | None = None,
        depth_B: list[int] | None = None,
        route_after: tuple[int, Callable[[torch.Tensor, list[int]], list[int]]] | None = None,
    ) -> torch.Tensor:
        B, T = ids_BT.shape
        if positions_BT is None:
            if cache is not None:
                raise ValueError("pass positions_BT with a cache: the model cannot guess where each row continues")
            positions_BT = torch.arange(T, device=ids_BT.device).expand(B, T)
        if positions_BT.shape != (B, T):
            raise ValueError(f"positions_BT must have shape {(B, T)}, got {tuple(positions_BT.shape)}")
        ctx = self._context(ids_BT, positions_BT, cache)
        n_layers = self.config.n_layers
        if route_after is None and (depth_B is None or min(depth_B) >= n_layers):
            h_BTC, _ = self._blocks(self.embed(ids_BT), ctx, cache, skip)
            return self._head(h_BTC, logits_at_BT)
        if skip is not None:
            raise ValueError("give a forward skip, or depth_B and route_after, not both")
        if depth_B is not None and (len(depth_B) != B or min(depth_B) < 1):
            raise ValueError(f"depth_B must give 1 .. {n_layers} blocks for each of the {B} rows, got {depth_B}")
        if route_after is not None and not 0 <= route_after[0] < n_layers:
            raise ValueError(f"route_after's block count must lie in 0 .. {n_layers - 1}, got {route_after[0]}")
        h_BTC = self._blocks_to_depth(self.embed(ids_BT), ctx, cache, list(depth_B or [n_layers] * B), route_after)
        return self._head(h_BTC, logits_at_BT)

    def forward_with_exit(
        self, ids_BT: torch.Tensor, exit_after: int, logits_at_BT: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(full-graph logits, early-exit logits) of one training-style forward (no cache): the
        early exit reads the hidden state after the first `exit_after` blocks through the same final
        norm and head (LayerSkip's early-exit loss; the engine's fast path runs that graph alone)."""
        B, T = ids_BT.shape
        if not 1 <= exit_after < self.config.n_layers:
            raise ValueError(f"exit_after must lie in 1 .. {self.config.n_layers - 1}, got {exit_after}")
        ctx = self._context(ids_BT, torch.arange(T, device=ids_BT.device).expand(B, T), None)
        h_BTC, exit_BTC = self._blocks(self.embed(ids_BT), ctx, None, None, capture_after=exit_after)
        return self._head(h_BTC, logits_at_BT), self._head(exit_BTC, logits_at_BT)

    @torch.no_grad()
    def hidden_after(self, ids_BT: torch.Tensor, n_blocks: int) -> torch.Tensor:
        """The residual stream after the first `n_blocks` blocks (0: the embeddings), [B, T, C], no
        cache: what a probe reads from layers every graph computes alike."""
        B, T = ids_BT.shape
        if not 0 <= n_blocks <= self.config.n_layers:
            raise ValueError(f"n_blocks must lie in 0 .. {self.config.n_layers}, got {n_blocks}")
        h_BTC = self.embed(ids_BT)
        if n_blocks == 0:
            return h_BTC
        ctx = self._context(ids_BT, torch.arange(T, device=ids_BT.device).expand(B, T), None)
        h_BTC, captured_BTC = self._blocks(h_BTC, ctx, None, None, capture_after=n_blocks, stop_after_capture=True)
        return h_BTC if captured_BTC is None else captured_BTC  # n_blocks == n_layers: every block ran

    def _blocks(self, h_BTC, ctx: AttentionContext, cache: KVCacheLike | None, skip: LayerSkip | None,
                capture_after: int | None = None, stop_after_capture: bool = False):
        """(the residual stream after every block, the stream after the first `capture_after` blocks or None)."""
        captured_BTC = None
        for i, block in enumerate(self.layers):
            if i == capture_after:
                captured_BTC = h_BTC
                if stop_after_capture:
                    return h_BTC, captured_BTC
            if skip is not None and i in skip.layers:
                if cache is not None and skip.write_cache:  # keep the cache complete for later steps that run this layer
                    block.attn.write_cache_only(block.attn_norm(h_BTC), ctx, cache)
                continue
            if self.training and self.config.layer_drop > 0 and torch.rand(()) < self.config.layer_drop:
                continue
            h_BTC = block(h_BTC, ctx, cache, skip_attention=skip is not None and i in skip.attention)
        return h_BTC, captured_BTC

    def _blocks_to_depth(self, h_BTC, ctx: AttentionContext, cache: KVCacheLike | None, depth_B: list[int],
                         route_after: tuple[int, Callable] | None = None) -> torch.Tensor:
        """The residual stream of each row after its own number of blocks: before block i, the rows
        of depth i leave (their stream is kept for the head) and the rest go on alone; `route_after`
        may set the depths of the rows still running on the way (forward's docstring)."""
        out_BTC = h_BTC.new_empty(h_BTC.shape)
        alive = list(range(len(depth_B)))  # rows still running, in the order of h_BTC's rows
        for i, block in enumerate(self.layers):
            if route_after is not None and i == route_after[0] and alive:
                for row, depth in zip(alive, route_after[1](h_BTC, list(alive))):
                    if depth < i:
                        raise ValueError(f"route_after: row {row} cannot stop after {depth} blocks, {i} have run")
                    depth_B[row] = depth
            staying = [j for j, row in enumerate(alive) if depth_B[row] > i]
            if len(staying) < len(alive):
                leaving = [j for j, row in enumerate(alive) if depth_B[row] <= i]
                out_BTC[[alive[j] for j in leaving]] = h_BTC[leaving]
                alive = [alive[j] for j in staying]
                if not alive:
                    break
                staying_N = torch.tensor(staying, device=h_BTC.device)
                h_BTC, ctx = h_BTC.index_select(0, staying_N), ctx.select_rows(staying_N)
                if cache is not None:
                    cache.narrow(staying_N)
            h_BTC = block(h_BTC, ctx, cache)
        if alive:
            out_BTC[alive] = h_BTC
        return out_BTC

    def _head(self, h_BTC: torch.Tensor, logits_at_BT: torch.Tensor | None) -> torch.Tensor:
        if logits_at_BT is not None:
            B, T = h_BTC.shape[:2]
            if logits_at_BT.shape != (B, T) or logits_at_BT.dtype != torch.bool:
                raise ValueError(f"logits_at_BT must be a bool mask of shape {(B, T)}, got {logits_at_BT.dtype} {tuple(logits_at_BT.shape)}")
            return self.lm_head(self.norm(h_BTC[logits_at_BT]))  # [N, V]
        return self.lm_head(self.norm(h_BTC))

    def _context(self, ids_BT: torch.Tensor, positions_BT: torch.Tensor, cache: KVCacheLike | None) -> AttentionContext:
        cfg = self.config
        if int(positions_BT.max()) >= cfg.max_seq_len:
            raise ValueError(f"position {int(positions_BT.max())} is beyond max_seq_len={cfg.max_seq_len}")
        symbol_BT = self.symbol_flags_V[ids_BT]
        B, T = ids_BT.shape
        # dense attention reads the two mask-free flags, multi-scale attention its query chunks;
        # neither pays for the other's (host-synchronising) checks
        dense = cfg.attention.kind == "dense"
        if cache is None:
            k_pos_BS, k_symbol_BS, q_slot_BT = positions_BT, symbol_BT, None
            standard, all_visible = dense and _from_zero(positions_BT), False
        else:
            was_empty = cache.length == 0
            cache.start(positions_BT, symbol_BT)
            S = cache.length
            k_pos_BS = torch.arange(S, device=ids_BT.device).expand(B, S)
            k_symbol_BS, q_slot_BT = cache.visible_symbols(), positions_BT
            # prefill into an empty cache: the keys are the queries themselves, plain causal attention
            standard = dense and was_empty and _from_zero(positions_BT)
            # one new token per row, every row at the last visible slot: nothing to mask
            all_visible = dense and T == 1 and bool((positions_BT == S - 1).all())
        chunks = [] if dense else plan_chunks(q_slot_BT, T, cfg.attention.chunk_size, cfg.attention.window)
        return AttentionContext(
            cos_BTD=self.rope_cos[positions_BT], sin_BTD=self.rope_sin[positions_BT],
            q_pos_BT=positions_BT, k_pos_BS=k_pos_BS, k_symbol_BS=k_symbol_BS,
            standard_causal=standard, all_visible=all_visible, chunks=chunks,
            fused_multiscale=not dense and cache is None and len(chunks) == 1 and self._fused_multiscale_applies(positions_BT),
        )

    def build_kernels(self) -> None:
        """Compile the fused multi-scale kernel now where training may use it: the first build takes
        ~40 s, which a trainer should not count as training time (it calls this before its clock)."""
        attention = self.config.attention
        if attention.kind == "multiscale" and attention.kernel != "sdpa" and next(self.parameters()).device.type == "cpu":
            multiscale_kernel.available()

    def _fused_multiscale_applies(self, positions_BT: torch.Tensor) -> bool:
        """Whether this training forward runs multi-scale attention on the fused CPU kernel."""
        kernel = self.config.attention.kernel
        if kernel == "sdpa" or not torch.is_grad_enabled() or positions_BT.device.type != "cpu":
            return False
        if not multiscale_kernel.available():
            if kernel == "fused":
                raise RuntimeError(f"attention.kernel=fused, but the fused kernel is not available: {multiscale_kernel.unavailable_reason()}")
            _warn_once(f"the fused multi-scale kernel is not available ({multiscale_kernel.unavailable_reason()}); "
                       "training uses three SDPA calls a layer instead (same results, slower)")
            return False
        return _from_zero(positions_BT)

    # ------------------------------------------------------------------ MoE hooks for trainers

    def moe_layers(self) -> list[MoEFeedForward]:
        return [b.ffn for b in self.layers if isinstance(b.ffn, MoEFeedForward)]

    def update_balancing(self, counts_per_layer: list[torch.Tensor] | None = None) -> None:
        """Call after each optimiser step: applies the load EMA and bias updates (S1). With
        `counts_per_layer` (tokens per expert [E] per MoE layer, counted by the caller), applies
        those instead: a routing refresh without training."""
        layers = self.moe_layers()
        if counts_per_layer is not None and len(counts_per_layer) != len(layers):
            raise ValueError(f"balancing needs counts for {len(layers)} MoE layers, got {len(counts_per_layer)}")
        for i, moe in enumerate(layers):
            moe.update_balancing(None if counts_per_layer is None else counts_per_layer[i])

    def keep_experts(self, keep_per_layer: list[list[int]]) -> None:
        """Keep only these routed experts in each MoE layer (positions, ascending; the same number in
        every layer), freeing the others' weights; routing then chooses among the kept ones
        (MoEFeedForward.keep_experts). The config then says that number of experts, so the model
        saves and loads as an ordinary MoE of that width."""
        layers = self.moe_layers()
        if not layers:
            raise ValueError("the model has no MoE layers: no experts to keep or drop")
        if len(keep_per_layer) != len(layers):
            raise ValueError(f"expert choices needed for {len(layers)} MoE layers, got {len(keep_per_layer)}")
        if len({len(keep) for keep in keep_per_layer}) > 1:
            raise ValueError(f"every MoE layer must keep the same number of experts, got {[len(k) for k in keep_per_layer]}")
        for moe, keep in zip(layers, keep_per_layer):
            moe.keep_experts(keep)
        cfg = self.config
        self.config = cfg.model_copy(update={"moe": cfg.moe.model_copy(update={"n_experts": len(keep_per_layer[0])})})

    def aux_loss(self) -> torch.Tensor | None:
        """Sum of the last training forward's auxiliary balance losses (aux_loss mode), else None."""
        losses = [m.aux_loss for m in self.moe_layers() if m.aux_loss is not None]
        return torch.stack(losses).sum() if losses else None

    def routing_stats(self) -> list[dict]:
        return [m.routing_stats() for m in self.moe_layers()]

    def last_routing(self) -> list[torch.Tensor]:
        """Each MoE layer's own expert choices in the last forward, [B*T, K] per layer."""
        return [m.last_topk_NK for m in self.moe_layers()]

    @contextmanager
    def replay_routing(self, topk_per_layer: list[torch.Tensor]):
        """Within the block, every MoE layer sends its tokens to the given experts ([B*T, K] per
        layer, as `last_routing` returns them) instead of its own top-k (routing replay, RL)."""
        layers = self.moe_layers()
        if len(topk_per_layer) != len(layers):
            raise ValueError(f"routing replay needs expert ids for {len(layers)} MoE layers, got {len(topk_per_layer)}")
        for moe, topk_NK in zip(layers, topk_per_layer):
            moe.replay_topk_NK = topk_NK
        try:
            yield
        finally:
            for moe in layers:
                moe.replay_topk_NK = None

    def gate_stats(self) -> list[list[float] | None]:
        """Mean gate weight per branch (local, global, symbolic) per layer, last forward."""
        return [None if b.attn.last_gate_mean is None else b.attn.last_gate_mean.tolist() for b in self.layers]
