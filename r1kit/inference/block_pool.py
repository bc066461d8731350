"""The bookkeeping of KV memory as a bounded pool of fixed-size blocks: reference counts, content
keys for prefix sharing, and least-recently-used eviction (vLLM's automatic prefix caching, in
miniature). The tensors that hold the keys and values live with the cache that uses the pool; here
a block is an id.

A full block is keyed by `block_key(parent key, its token ids, their symbol flags, extra)`: the key
names the whole prefix up to the block's end, so equal keys mean equal K/V. `extra` holds what else
changes the values (a tenant's salt, the precision and the graph that made them). A new sequence
takes the longest chain of cached keys (`lookup`) and computes only the rest. A block's life:

    allocate -> written -> (full) register(key) -> shared by lookups -> release ... ref 0:
        keyed: evictable (kept for later hits, reclaimed least recently used first)
        not keyed (a partial block): free at once

A block with more than one reference is read-only; a sequence that must write into a shared
partial block first takes its own copy (`writable`: copy-on-write).
"""

from __future__ import annotations

import hashlib
import heapq
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

BlockKey = bytes


def block_key(parent: BlockKey | None, token_ids: Sequence[int], symbols: Sequence[bool], extra: tuple = ()) -> BlockKey:
    """The content key of a full block: its parent's key (None for the first block), its tokens and
    their symbol flags (multi-scale attention reads them), and `extra`. A 128-bit BLAKE2 digest:
    keys from different tenants (salts) or prompts never collide in practice, nor can a client
    aim for a collision with another's prompt (builtin hash() could be)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(parent if parent is not None else b"\x00root")
    digest.update(array("q", token_ids).tobytes())
    digest.update(bytes(bool(s) for s in symbols))
    digest.update(repr(extra).encode())
    return digest.digest()


def prefix_keys(token_ids: Sequence[int], symbols: Sequence[bool], block_size: int, extra: tuple = ()) -> list[BlockKey]:
    """The keys of the full blocks of a sequence, in order (a trailing partial block has none)."""
    if len(token_ids) != len(symbols):
        raise ValueError(f"{len(token_ids)} token ids but {len(symbols)} symbol flags")
    keys, parent = [], None
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        parent = block_key(parent, token_ids[start : start + block_size], symbols[start : start + block_size], extra)
        keys.append(parent)
    return keys


class PoolExhausted(RuntimeError):
    """More blocks asked for than are free or evictable."""


@dataclass
class PoolStats:
    total: int
    used: int  # referenced by at least one sequence
    free: int  # holding nothing
    evictable: int  # unreferenced, holding a cached prefix
    hit_blocks: int  # blocks found by lookups, in all
    queried_blocks: int  # blocks looked up, in all
    evictions: int

    @property
    def hit_rate(self) -> float:
        return self.hit_blocks / self.queried_blocks if self.queried_blocks else 0.0


class BlockPool:
    def __init__(self, num_blocks: int, block_size: int):
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"a pool needs at least one block of at least one token, got {num_blocks} x {block_size}")
        self.num_blocks, self.block_size = num_blocks, block_size
        self.ref_count = [0] * num_blocks
        self.key_of: list[BlockKey | None] = [None] * num_blocks
        self._by_key: dict[BlockKey, int] = {}
        # a heap: the lowest free id first, so a cache that grows its storage on demand stays as
        # small as the blocks in use (ids cycling through the whole pool would touch all of it)
        self._free: list[int] = list(range(num_blocks))
        self._evictable: OrderedDict[int, None] = OrderedDict()  # least recently released first
        self._hits = self._queries = self._evictions = 0

    # ------------------------------------------------------------------ taking and giving back

    @property
    def num_available(self) -> int:
        """Blocks an allocation can take now: free ones, then evictable ones."""
        return len(self._free) + len(self._evictable)

    def allocate(self, n: int = 1) -> list[int]:
        """`n` blocks for a sequence to write (reference count 1): free blocks first, then the least
        recently released cached ones, whose keys are forgotten. All or nothing."""
        if n > self.num_available:
            raise PoolExhausted(f"{n} blocks asked for, {self.num_available} of {self.num_blocks} free or evictable")
        blocks = []
        for _ in range(n):
            if self._free:
                block = heapq.heappop(self._free)
            else:
                block, _ = self._evictable.popitem(last=False)
                del self._by_key[self.key_of[block]]
                self.key_of[block] = None
                self._evictions += 1
            self.ref_count[block] = 1
            blocks.append(block)
        return blocks

    def share(self, block: int) -> None:
        """One more sequence holds `block` (the samples of one prompt share its blocks)."""
        if self.ref_count[block] < 1:
            raise ValueError(f"block {block} is not held by anyone; lookup() takes cached blocks")
        self.ref_count[block] += 1

    def release(self, blocks: Sequence[int]) -> None:
        """A sequence lets go of its blocks (finished, aborted, preempted). A block nobody holds is
        kept for later hits if it is keyed, else freed."""
        for block in blocks:
            if self.ref_count[block] < 1:
                raise ValueError(f"block {block} released more often than it was taken")
            self.ref_count[block] -= 1
            if self.ref_count[block] == 0:
                if self.key_of[block] is not None:
                    self._evictable[block] = None  # the most recently used end
                else:
                    heapq.heappush(self._free, block)

    def writable(self, block: int) -> tuple[int, bool]:
        """The block a sequence may write its next tokens into: `block` itself when it holds it alone
        and it is not a cached (keyed, immutable) block, else a new block that replaces it for this
        sequence (copy-on-write). Returns (block, whether the caller must copy the old contents)."""
        if self.ref_count[block] == 1 and self.key_of[block] is None:
            return block, False
        (new,) = self.allocate(1)
        self.release([block])
        return new, True

    # ------------------------------------------------------------------ prefix sharing

    def lookup(self, keys: Sequence[BlockKey]) -> list[int]:
        """The cached blocks of the longest prefix of `keys` (the chain stops at the first miss),
        each now held once more by the caller."""
        found = []
        for key in keys:
            block = self._by_key.get(key)
            if block is None:
                break
            if self.ref_count[block] == 0:
                del self._evictable[block]
            self.ref_count[block] += 1
            found.append(block)
        self._queries += len(keys)
        self._hits += len(found)
        return found

    def register(self, block: int, key: BlockKey) -> None:
        """`block` is full and written: later lookups of `key` may share it. When another block
        already holds the same content (two sequences computed it at once), that one stays the
        cached copy and this one is freed when released."""
        if self.ref_count[block] < 1:
            raise ValueError(f"block {block} is not held by anyone")
        if self.key_of[block] is not None or key in self._by_key:
            return
        self.key_of[block] = key
        self._by_key[key] = block

    # ------------------------------------------------------------------ inspection

    def stats(self) -> PoolStats:
        used = sum(1 for r in self.ref_count if r > 0)
        return PoolStats(self.num_blocks, used, len(self._free), len(self._evictable), self._hits, self._queries,
                         self._evictions)

    def check(self) -> None:
        """Raise if the bookkeeping contradicts itself (tests call it after random operations)."""
        free, evictable = set(self._free), set(self._evictable)
        problems = []
        if len(free) != len(self._free):
            problems.append("a block is on the free list twice")
        for block in range(self.num_blocks):
            held, keyed = self.ref_count[block] > 0, self.key_of[block] is not None
            places = (block in free) + (block in evictable) + held
            if places != 1:
                problems.append(f"block {block} is in {places} of free / evictable / held")
            if block in free and keyed:
                problems.append(f"free block {block} keeps a key")
            if block in evictable and not keyed:
                problems.append(f"evictable block {block} has no key")
            if keyed and self._by_key.get(self.key_of[block]) != block:
                problems.append(f"block {block}'s key maps elsewhere")
        if problems:
            raise AssertionError("; ".join(problems[:5]))
