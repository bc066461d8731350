"""The running batch on a static KV cache (`memory_reuse: false`): one contiguous cache row per
sample, nothing shared. A request's prompt is prefilled once and its cache row copied once per
sample; finished rows are dropped; joining rows are appended (r1kit.inference.kv_cache.KVCache).
Memory grows with the rows and is not bounded by a pool.

Shape legend: B rows, P longest new prompt, V vocabulary.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

import torch

from r1kit.device import autocast
from r1kit.inference.fast_path import PrefillGate
from r1kit.inference.kv_cache import KVCache
from r1kit.inference.requests import Request, SequenceState, row_depths


class ContiguousBatch:
    def __init__(self, model, precision: str, make_sequences: Callable[[Request], list[SequenceState]],
                 gate: PrefillGate | None = None):
        self.model, self.precision, self.make_sequences = model, precision, make_sequences
        self.gate = gate  # routes undecided requests inside their prefill's forward
        self.device = next(model.parameters()).device
        self.max_seq_len, self.n_layers = model.config.max_seq_len, model.config.n_layers
        self.waiting: deque[Request] = deque()
        self.running: list[SequenceState] = []
        self.next_logits_BV: torch.Tensor | None = None
        self._cache: KVCache | None = None
        self.peak_kv_bytes = self.peak_kv_bytes_in_use = 0  # every row is in use

    # ------------------------------------------------------------------ the engine's calls

    def add(self, request: Request) -> None:
        self.waiting.append(request)

    @property
    def reserved_rows(self) -> int:
        return 0

    def admit(self, rows_free: int, token_budget: int, idle: bool) -> int:
        """Move waiting requests in while the token budget and free rows allow (an idle engine takes
        one whatever its size); prefill them together. Returns the prompt tokens computed."""
        joining: list[Request] = []
        used = 0
        while self.waiting:
            request = self.waiting[0]
            fits = len(request.prompt_ids) <= token_budget - used and request.params.n <= rows_free
            if not fits and not (idle and not joining):
                break
            joining.append(self.waiting.popleft())
            used += len(request.prompt_ids)
            rows_free -= request.params.n
        if joining:
            self._prefill(joining)
        return used

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (in order); the others finished."""
        if len(rows) == len(self.running):
            return
        self.running = [self.running[r] for r in rows]
        if not rows:
            self._cache, self.next_logits_BV = None, None
            return
        index = torch.tensor(rows, device=self.device)
        self._cache.select_rows(index)
        self.next_logits_BV = self.next_logits_BV[index] if self.next_logits_BV is not None else None

    def decode(self, tokens_B: torch.Tensor) -> None:
        """One forward of the running rows' last tokens: their next logits."""
        positions_B = torch.tensor([s.position for s in self.running], device=self.device)
        with autocast(self.device, self.precision):
            self.next_logits_BV = self.model(tokens_B[:, None], positions_B[:, None], self._cache,
                                             depth_B=row_depths([s.request for s in self.running], self.n_layers))[:, 0].float()
        for seq in self.running:
            seq.position += 1

    def abort(self, request_id: int) -> None:
        self.waiting = deque(r for r in self.waiting if r.request_id != request_id)
        self.keep([row for row, seq in enumerate(self.running) if seq.request.request_id != request_id])

    def kv_bytes(self) -> int:
        if self._cache is None:
            return 0
        return 2 * self._cache.k_LBGSD.numel() * self._cache.k_LBGSD.element_size()

    # ------------------------------------------------------------------ prefill

    def _prefill(self, requests: list[Request]) -> None:
        """One forward over the new prompts (right-padded, each row at its own positions), then each
        prompt's cache rows and last logits copied once per sample."""
        B, P = len(requests), max(len(r.prompt_ids) for r in requests)
        ids_BP = torch.zeros((B, P), dtype=torch.long, device=self.device)
        for row, request in enumerate(requests):
            ids_BP[row, : len(request.prompt_ids)] = torch.tensor(request.prompt_ids, device=self.device)
        # capacity for the longest of these requests (in steps of 64 slots), not the model's whole
        # context: less memory to zero and hold; the running cache grows if a longer one joins
        capacity = min(self.max_seq_len, -(-max(r.total_len for r in requests) // 64) * 64)
        cache = KVCache.for_model(self.model, B, max_seq_len=capacity,
                                  dtype={"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision))
        last_B = torch.tensor([len(r.prompt_ids) - 1 for r in requests], device=self.device)
        last_BP = torch.arange(P, device=self.device) == last_B[:, None]  # one True per row: logits [B, V] in row order
        depth_B = row_depths(requests, self.n_layers)
        # the gate, for undecided requests: read mid-forward, at the probe's block
        undecided = {row: (r, len(r.prompt_ids) - 1) for row, r in enumerate(requests) if r.undecided}
        route = self.gate.route_after(depth_B, undecided) if self.gate else None
        with autocast(self.device, self.precision):
            logits_BV = self.model(ids_BP, torch.arange(P, device=self.device).expand(B, P), cache, logits_at_BT=last_BP,
                                   depth_B=depth_B, route_after=route).float()

        copies = torch.tensor([row for row, r in enumerate(requests) for _ in range(r.params.n)], device=self.device)
        if len(copies) != B:
            cache.select_rows(copies)
            logits_BV = logits_BV[copies]
        for request in requests:
            self.running.extend(self.make_sequences(request))
        if self._cache is None or not len(self._cache.row_length_B):
            self._cache, self.next_logits_BV = cache, logits_BV
        else:
            self._cache.append_rows(cache)
            self.next_logits_BV = torch.cat([self.next_logits_BV, logits_BV])
        self.peak_kv_bytes = self.peak_kv_bytes_in_use = max(self.peak_kv_bytes, self.kv_bytes())
