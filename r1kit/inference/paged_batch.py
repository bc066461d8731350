"""The running batch on the paged KV cache (`memory_reuse: true`): blocks shared across requests,
turns and samples, a bounded pool, chunked prefill and preemption.

- **Prefix sharing.** A request's prompt is cut into blocks keyed by content (block_pool.block_key:
  parent key, token ids, symbol flags, and `extra` = (cache salt, precision, the fast path's exit
  or None)). Admission takes the longest chain of cached blocks and computes only the rest; at
  least the prompt's last token is always computed, for its logits. Full blocks are registered as
  soon as they are written, in prefill and in decode, so a later request (a re-sent conversation)
  can find them.
- **Samples.** A request's n samples share its prompt's blocks; the last, partial block is copied
  for each sample but the first (copy-on-write), as they write different tokens into it.
- **Requests arriving together.** A request whose next uncached block is being computed by an
  earlier request in the same step waits one step and then finds it cached (64 requests behind one
  system prompt compute it once, not 64 times); the requests behind it are not held up.
- **Chunked prefill.** A prompt longer than the step's token budget is computed over several steps
  while the running sequences keep decoding; only the queue's head may be part-way.
- **Both graphs in one batch.** Fast-path rows (an early exit) and full-graph rows run in one
  forward (the model's depth_B); a fast row's blocks hold K/V of its exit's blocks only, and its
  exit is in its keys, so no other graph ever reads them. A request the gate routes is decided in
  its prefill's forward, after the probe's blocks (PrefillGate, the model's route_after).
- **Bounded and never stuck.** Blocks come from a pool of fixed size; unreferenced cached blocks
  are evicted least recently used first. A running sequence that cannot get a block preempts the
  newest sequence (a part-way prefill first, then the latest running one, itself if it is the
  latest): its blocks are released and it is recomputed later from its tokens (vLLM V1). The
  oldest sequence always gets the whole pool, so it always progresses; a request that could not
  fit even alone is refused when it is added.

Shape legend: B rows, T new tokens, V vocabulary.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import torch

from r1kit.device import autocast
from r1kit.inference.block_pool import BlockKey, PoolExhausted, block_key
from r1kit.inference.fast_path import PrefillGate
from r1kit.inference.paged_cache import PagedKVCache
from r1kit.inference.requests import Request, SequenceState, row_depths


@dataclass
class Prefill:
    """Work waiting to enter the batch: a new request's prompt (starting all its samples), or a
    preempted sample's prompt and tokens so far (resuming it)."""

    request: Request
    resumed: SequenceState | None = None  # the preempted sample this prefill resumes
    blocks: list[int] = field(default_factory=list)
    keys: list[BlockKey] = field(default_factory=list)  # keys of the full blocks computed or found so far
    computed: int = 0  # tokens whose KV is in `blocks` (found in the cache or computed)
    started: bool = False  # its prefix lookup is done (and its found blocks held)
    pending_key: BlockKey | None = None  # the key of the first full block it must compute itself

    def tokens(self) -> list[int]:
        return self.resumed.tokens() if self.resumed is not None else self.request.prompt_ids

    @property
    def rows(self) -> int:
        return 1 if self.resumed is not None else self.request.params.n


class PagedBatch:
    def __init__(self, model, precision: str, make_sequences: Callable[[Request], list[SequenceState]],
                 num_blocks: int, block_size: int, decode_kernel: bool = True, gate: PrefillGate | None = None):
        self.model, self.precision, self.make_sequences = model, precision, make_sequences
        self.gate = gate  # routes undecided requests inside their prefill's forward
        self.device = next(model.parameters()).device
        self.symbol_flags = model.symbol_flags_V.tolist()
        kv_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
        self.cache = PagedKVCache(model, num_blocks, block_size, kv_dtype, decode_kernel)
        self.pool, self.block_size = self.cache.pool, block_size
        self.max_seq_len, self.n_layers = model.config.max_seq_len, model.config.n_layers
        self.waiting: deque[Prefill] = deque()
        self.running: list[SequenceState] = []
        self.next_logits_BV: torch.Tensor | None = None
        self.preemptions = 0
        self.peak_kv_bytes = self.cache.allocated_bytes  # storage held (cached blocks nobody uses included)
        self.peak_kv_bytes_in_use = 0  # blocks held by sequences

    # ------------------------------------------------------------------ the engine's calls

    def add(self, request: Request) -> None:
        self.waiting.append(Prefill(request))

    @property
    def reserved_rows(self) -> int:
        """Rows promised to a part-way prefill (its samples join when it completes)."""
        return sum(item.rows for item in self.waiting if item.started)

    def admit(self, rows_free: int, token_budget: int, idle: bool) -> int:
        """Prefill waiting work, in order, while rows, the token budget and the pool allow; the last
        one taken may be cut short (chunked prefill). Returns the prompt tokens computed."""
        chunks: list[tuple[Prefill, int, int]] = []  # (work, first token to compute, end)
        in_flight: set[BlockKey] = set()  # block keys the chunks of this step will compute
        used, index = 0, 0
        while index < len(self.waiting) and used < token_budget:
            item = self.waiting[index]
            tokens = item.tokens()
            if not item.started:
                if item.rows > rows_free and not (idle and not chunks):  # an idle engine takes any request
                    break
                self._start(item, tokens)
                if item.pending_key in in_flight:  # an earlier request computes it now: find it cached next
                    self._reset(item)              # step; the requests behind it go on
                    index += 1
                    continue
            end = min(len(tokens), item.computed + token_budget - used)
            end = self._reserve(item, end)
            if end <= item.computed:  # no block free: wait (only the head keeps what it found)
                if index:
                    self._reset(item)
                break
            chunks.append((item, item.computed, end))
            in_flight.update(self._keys_between(item, tokens, item.computed, end))
            used += end - item.computed
            del self.waiting[index]
            if end < len(tokens):  # part-way: back at the head, the one place a started prefill waits
                self.waiting.appendleft(item)
                break
            rows_free -= item.rows
        if chunks:
            self._prefill(chunks)
        return used

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (in order); the others finished: their blocks go back to the pool."""
        if len(rows) == len(self.running):
            return
        kept = set(rows)
        for row, seq in enumerate(self.running):
            if row not in kept:
                self._release(seq)
        self.running = [self.running[r] for r in rows]
        if self.next_logits_BV is not None:
            self.next_logits_BV = self.next_logits_BV[torch.tensor(rows, dtype=torch.long, device=self.device)]

    def decode(self, tokens_B: torch.Tensor) -> None:
        """One forward of the running rows' last tokens (each row first gets a block for it, preempting
        the newest sequences if the pool is short): their next logits."""
        tokens = tokens_B.tolist()
        row = 0
        while row < len(self.running):
            seq = self.running[row]
            if seq.position // self.block_size < len(seq.blocks):
                row += 1
                continue
            try:
                seq.blocks += self.cache.allocate(1)
                row += 1
            except PoolExhausted:
                if not self._preempt_part_way():
                    victim = len(self.running) - 1
                    self._preempt(self.running.pop(victim))
                    tokens.pop(victim)
        self.next_logits_BV = None
        if not self.running:
            return
        positions = [seq.position for seq in self.running]
        self.cache.bind([seq.blocks for seq in self.running], [p + 1 for p in positions], decode=True)
        ids_B1 = torch.tensor(tokens, device=self.device)[:, None]
        with autocast(self.device, self.precision):
            self.next_logits_BV = self.model(ids_B1, torch.tensor(positions, device=self.device)[:, None], self.cache,
                                             depth_B=row_depths([seq.request for seq in self.running], self.n_layers))[:, 0].float()
        for seq in self.running:
            seq.position += 1
            if seq.position % self.block_size == 0:  # its last block is full: later requests may share it
                self._register_full_blocks(seq, seq.tokens()[: seq.position], seq.blocks, seq.keys)
        self._note_peak()

    def abort(self, request_id: int) -> None:
        for item in [item for item in self.waiting if item.request.request_id == request_id]:
            self.pool.release(item.blocks)
            self.waiting.remove(item)
        self.keep([row for row, seq in enumerate(self.running) if seq.request.request_id != request_id])

    def kv_bytes(self) -> int:
        return self.cache.allocated_bytes

    def _note_peak(self) -> None:
        in_use = (self.pool.num_blocks - self.pool.num_available) * self.cache.bytes_per_block
        self.peak_kv_bytes = max(self.peak_kv_bytes, self.cache.allocated_bytes)
        self.peak_kv_bytes_in_use = max(self.peak_kv_bytes_in_use, in_use)

    # ------------------------------------------------------------------ prefix keys

    def _extra(self, request: Request) -> tuple:
        # the graph too: a fast-path row holds K/V of its exit's blocks only, never another graph's
        return (request.params.cache_salt, self.precision, request.exit_after)

    def _key_of_block(self, parent: BlockKey | None, tokens: list[int], index: int, request: Request) -> BlockKey:
        K = self.block_size
        ids = tokens[index * K : (index + 1) * K]
        return block_key(parent, ids, [self.symbol_flags[t] for t in ids], self._extra(request))

    def _keys_between(self, item: Prefill, tokens: list[int], start: int, end: int) -> list[BlockKey]:
        """Keys of the full blocks that computing tokens start:end completes (for in-flight checks)."""
        K, keys, parent = self.block_size, [], item.keys[-1] if item.keys else None
        for index in range(len(item.keys), end // K):
            parent = self._key_of_block(parent, tokens, index, item.request)
            keys.append(parent)
        return keys

    def _register_full_blocks(self, owner, tokens: list[int], blocks: list[int], keys: list[BlockKey]) -> None:
        """Key every full block of `tokens` not keyed yet (in `keys`, extended in place) and offer it
        to later lookups."""
        request = owner.request
        for index in range(len(keys), len(tokens) // self.block_size):
            keys.append(self._key_of_block(keys[-1] if keys else None, tokens, index, request))
            self.pool.register(blocks[index], keys[-1])

    # ------------------------------------------------------------------ admission

    def _start(self, item: Prefill, tokens: list[int]) -> None:
        """First admission: find the longest cached prefix (leaving the last token to compute)."""
        item.started = True
        K = self.block_size
        keys, parent = [], None
        for index in range((len(tokens) - 1) // K):
            parent = self._key_of_block(parent, tokens, index, item.request)
            keys.append(parent)
        found = self.pool.lookup(keys)
        item.blocks, item.keys, item.computed = found, keys[: len(found)], len(found) * K
        # the key of the first block this prefill must compute, if it is a full one
        item.pending_key = keys[len(found)] if len(found) < len(keys) else None
        if item.resumed is None:
            item.request.output.cached_tokens = item.computed

    def _reset(self, item: Prefill) -> None:
        """Undo `_start` and any chunks computed: the work waits, its blocks go back (the full ones
        stay cached, so a restart finds them)."""
        self.pool.release(item.blocks)
        item.blocks, item.keys, item.computed, item.started, item.pending_key = [], [], 0, False, None

    def _reserve(self, item: Prefill, end: int) -> int:
        """Blocks for tokens up to `end`; fewer tokens when the pool has fewer blocks. Returns the end reached."""
        K = self.block_size
        need = -(-end // K) - len(item.blocks)
        take = min(need, self.pool.num_available)
        if take > 0:
            item.blocks += self.cache.allocate(take)
        return min(end, len(item.blocks) * K)

    # ------------------------------------------------------------------ prefill

    def _prefill(self, chunks: list[tuple[Prefill, int, int]]) -> None:
        """One forward over the chunks (right-padded; each row from its first uncached token), then the
        completed ones join the batch with their samples."""
        B, T = len(chunks), max(end - start for _, start, end in chunks)
        ids_BT = torch.zeros((B, T), dtype=torch.long)
        positions_BT = torch.zeros((B, T), dtype=torch.long)
        logits_at_BT = torch.zeros((B, T), dtype=torch.bool)
        for row, (item, start, end) in enumerate(chunks):
            tokens = item.tokens()
            ids_BT[row, : end - start] = torch.tensor(tokens[start:end])
            # padding continues the row's positions (capped at the context), written to scratch
            positions_BT[row] = torch.clamp(torch.arange(start, start + T), max=self.max_seq_len - 1)
            logits_at_BT[row, end - start - 1] = end == len(tokens)
        self.cache.bind([item.blocks for item, _, _ in chunks], [end for _, _, end in chunks])
        depth_B = row_depths([item.request for item, _, _ in chunks], self.n_layers)
        # the gate, for requests whose prompt completes here: read mid-forward, at the probe's block
        undecided = {row: (item.request, end - start - 1) for row, (item, start, end) in enumerate(chunks)
                     if item.request.undecided and end == len(item.tokens())}
        route = self.gate.route_after(depth_B, undecided) if self.gate else None
        with autocast(self.device, self.precision):
            logits_NV = self.model(ids_BT.to(self.device), positions_BT.to(self.device), self.cache,
                                   logits_at_BT=logits_at_BT.to(self.device), depth_B=depth_B, route_after=route).float()
        done = 0
        for item, start, end in chunks:
            tokens = item.tokens()
            item.computed = end
            self._register_full_blocks(item, tokens[:end], item.blocks, item.keys)  # keyed by the graph that made them
            if end == len(tokens):
                self._join(item, logits_NV[done])
                done += 1
        self._note_peak()

    def _join(self, item: Prefill, logits_V: torch.Tensor) -> None:
        """A completed prefill's samples enter the batch, sharing its blocks (the partial last one copied)."""
        sequences = [item.resumed] if item.resumed is not None else self.make_sequences(item.request)
        position = len(item.tokens())
        joined = []
        for k, seq in enumerate(sequences):
            seq.position, seq.keys = position, list(item.keys)
            if k == 0:
                seq.blocks = item.blocks
            else:
                for block in item.blocks:
                    self.pool.share(block)
                seq.blocks = list(item.blocks)
                if position % self.block_size:  # a shared partial block: this sample writes into its own copy
                    try:
                        seq.blocks[-1] = self.cache.writable(seq.blocks[-1])
                    except PoolExhausted:  # no block for the copy: this sample recomputes its prompt later
                        self._release(seq)
                        self.preemptions += 1
                        # behind a part-way head, which must stay first
                        self.waiting.insert(1 if self.waiting and self.waiting[0].started else 0,
                                            Prefill(item.request, resumed=seq))
                        continue
            joined.append(seq)
        self.running.extend(joined)
        rows = logits_V[None].expand(len(joined), -1)
        self.next_logits_BV = rows if self.next_logits_BV is None else torch.cat([self.next_logits_BV, rows])

    # ------------------------------------------------------------------ preemption

    def _release(self, seq: SequenceState) -> None:
        self.pool.release(seq.blocks)
        seq.blocks, seq.keys = [], []

    def _preempt(self, seq: SequenceState) -> None:
        """Free a running sequence's blocks; it is recomputed from its tokens when there is room."""
        self._release(seq)
        self.preemptions += 1
        self._preempt_part_way()  # the head of the queue must be the one that may be part-way
        self.waiting.appendleft(Prefill(seq.request, resumed=seq))

    def _preempt_part_way(self) -> bool:
        """Reset a started prefill at the queue's head (it may hold blocks but is not running); True
        if it held any."""
        if self.waiting and self.waiting[0].started:
            held = bool(self.waiting[0].blocks)
            self._reset(self.waiting[0])
            return held
        return False
