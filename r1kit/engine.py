"""Generation: batched, KV-cached decoding with greedy or sampled tokens. Token ids in and out.

One prefill for the whole batch (prompts right-padded, each row at its own positions), then one
decode step per token for the live rows; a row that finishes (EOS or a stop id) leaves the
batch, so finished sequences stop costing compute.

Shape legend: B live rows, P longest prompt, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from r1kit.kv_cache import KVCache
from r1kit.model import Transformer


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None


def sample_next(logits_BV: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> torch.Tensor:
    if params.temperature <= 0:
        return logits_BV.argmax(dim=-1)
    logits_BV = logits_BV.float() / params.temperature
    if params.top_k is not None and params.top_k < logits_BV.shape[-1]:
        kth = logits_BV.topk(params.top_k, dim=-1).values[:, -1:]
        logits_BV = logits_BV.masked_fill(logits_BV < kth, float("-inf"))
    if params.top_p is not None and params.top_p < 1:
        sorted_BV, order_BV = logits_BV.sort(dim=-1, descending=True)
        cum = sorted_BV.softmax(-1).cumsum(-1)
        drop = cum - sorted_BV.softmax(-1) > params.top_p  # keep the smallest prefix reaching top_p
        sorted_BV = sorted_BV.masked_fill(drop, float("-inf"))
        logits_BV = torch.full_like(logits_BV, float("-inf")).scatter(-1, order_BV, sorted_BV)
    probs_BV = logits_BV.softmax(dim=-1)
    return torch.multinomial(probs_BV, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model: Transformer,
    prompts: list[list[int]],
    params: SamplingParams,
    stop_ids: set[int],
    pad_id: int = 0,
) -> list[list[int]]:
    """Completions (token ids, the stop token included when one ended it) for each prompt."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    max_len = model.config.max_seq_len
    longest = max(len(p) for p in prompts)
    if longest >= max_len:
        raise ValueError(f"a prompt of {longest} tokens leaves no room in the model's context of {max_len}")
    total_len = min(max_len, longest + params.max_new_tokens)
    device = next(model.parameters()).device
    generator = None
    if params.seed is not None:
        generator = torch.Generator(device=device).manual_seed(params.seed)

    B = len(prompts)
    ids_BP = torch.full((B, longest), pad_id, dtype=torch.long, device=device)
    for r, p in enumerate(prompts):
        ids_BP[r, : len(p)] = torch.tensor(p, device=device)
    lengths_B = torch.tensor([len(p) for p in prompts], device=device)
    cache = KVCache.for_model(model, B, max_seq_len=total_len)
    logits_BPV = model(ids_BP, torch.arange(longest, device=device).expand(B, longest), cache)
    next_logits_BV = logits_BPV[torch.arange(B, device=device), lengths_B - 1]

    rows = list(range(B))  # original index of each live row
    outputs: list[list[int]] = [[] for _ in range(B)]
    positions_B = lengths_B.clone()
    for _ in range(params.max_new_tokens):
        tokens_B = sample_next(next_logits_BV, params, generator)
        keep = []
        for i, (row, tok, pos) in enumerate(zip(rows, tokens_B.tolist(), positions_B.tolist())):
            outputs[row].append(tok)
            if tok not in stop_ids and pos + 1 < total_len:  # pos: where this token sits
                keep.append(i)
        if not keep:
            break
        if len(keep) < len(rows):
            idx = torch.tensor(keep, device=device)
            cache.select_rows(idx)
            rows = [rows[i] for i in keep]
            tokens_B, positions_B = tokens_B[idx], positions_B[idx]
        next_logits_BV = model(tokens_B[:, None], positions_B[:, None], cache)[:, 0]
        positions_B = positions_B + 1
    return outputs
