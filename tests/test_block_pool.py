"""The KV block pool's bookkeeping (r1kit.inference.block_pool): reference counts, prefix keys,
LRU eviction and copy-on-write, checked against a simulation that records what each block holds."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r1kit.inference.block_pool import BlockPool, PoolExhausted, block_key, prefix_keys

BS = 4  # tokens a block


def test_keys_name_the_whole_prefix_and_what_else_changes_the_values():
    tokens, symbols = [5, 6, 7, 8, 9, 10, 11, 12, 13], [False] * 9
    keys = prefix_keys(tokens, symbols, BS)
    assert len(keys) == 2  # the ninth token's block is partial: no key
    assert prefix_keys(tokens[:8], symbols[:8], BS) == keys
    # same second block, other first block: another key (the key chains through the parent)
    assert prefix_keys([1, 6, 7, 8] + tokens[4:8], symbols[:8], BS)[1] != keys[1]
    assert prefix_keys(tokens, [True] + symbols[1:], BS)[0] != keys[0]  # symbol flags change multi-scale attention
    assert prefix_keys(tokens, symbols, BS, extra=("tenant-a",))[0] != prefix_keys(tokens, symbols, BS, extra=("tenant-b",))[0]
    assert block_key(None, [1, 2], [False, False]) != block_key(None, [258], [False])  # no two ids read as one
    with pytest.raises(ValueError, match="symbol flags"):
        prefix_keys([1, 2], [False], BS)


def test_a_cached_chain_is_shared_then_kept_then_evicted_least_recent_first():
    pool = BlockPool(4, BS)
    a_keys = prefix_keys(list(range(8)), [False] * 8, BS)
    a = pool.allocate(2)
    for block, key in zip(a, a_keys):
        pool.register(block, key)
    assert pool.lookup(a_keys) == a  # a second sequence shares both blocks
    pool.release(a)
    pool.release(a)
    s = pool.stats()
    assert (s.used, s.free, s.evictable, s.hit_blocks, s.queried_blocks) == (0, 2, 2, 2, 2)
    b = pool.allocate(2)  # the free blocks go first: the cache survives
    assert set(b).isdisjoint(a) and pool.lookup(a_keys[:1]) == a[:1]
    pool.release(b)
    pool.release(a[:1])
    # free: b's two (never keyed); evictable, least recent first: a[1], then a[0] (released last)
    c = pool.allocate(3)
    assert pool.stats().evictions == 1 and a[1] in c and pool.lookup(a_keys) == [a[0]]
    with pytest.raises(PoolExhausted, match="1 blocks asked for, 0 of 4 free or evictable"):
        pool.allocate(1)
    pool.check()


def test_copy_on_write_for_a_shared_partial_block():
    pool = BlockPool(3, BS)
    (partial,) = pool.allocate(1)
    pool.share(partial)  # two samples of one prompt share its partial last block
    mine, copy = pool.writable(partial)
    assert copy and mine != partial and pool.ref_count[partial] == 1
    assert pool.writable(partial) == (partial, False)  # the other sample now holds it alone
    pool.check()


def test_misuse_is_refused():
    pool = BlockPool(2, BS)
    with pytest.raises(ValueError, match="released more often"):
        pool.release([0])
    with pytest.raises(ValueError, match="not held"):
        pool.share(1)
    with pytest.raises(ValueError, match="at least one block"):
        BlockPool(0, BS)


def _simulate(seed: int, n_requests: int, num_blocks: int) -> BlockPool:
    """Random requests over a few shared prefixes (system prompts, re-sent turns), each with n
    samples that share the prompt's blocks and write their own tokens (copy-on-write of the partial
    block), aborted at random or finished; blocks that fill are registered. A shadow records what
    each block holds, so a lookup that returns a block with other contents fails."""
    rng = random.Random(seed)
    pool = BlockPool(num_blocks, BS)
    holds: dict[int, tuple[int, ...]] = {}  # block -> the tokens written into it
    prefixes = [[rng.randrange(50) for _ in range(rng.randrange(1, 13))] for _ in range(4)]
    running: list[list[int]] = []  # each sequence's block table

    def finish_one() -> None:
        pool.release(running.pop(rng.randrange(len(running))))

    for _ in range(n_requests):
        prompt = rng.choice(prefixes) + [rng.randrange(50) for _ in range(rng.randrange(0, 6))]
        salt = (rng.choice(["a", "b"]),)
        keys = prefix_keys(prompt, [t % 3 == 0 for t in prompt], BS, extra=salt)
        need = -(-len(prompt) // BS)
        if need > num_blocks:  # can never fit: the engine refuses such a request up front
            continue
        while True:  # make room: finish running sequences until the prompt fits (never stuck)
            cached = pool.lookup(keys)
            if need - len(cached) <= pool.num_available:
                break
            pool.release(cached)
            if not running:
                raise AssertionError("an empty pool cannot hold one prompt")
            finish_one()
        for block, start in zip(cached, range(0, len(prompt), BS)):
            assert holds[block] == tuple(prompt[start : start + BS])  # a hit holds exactly this prefix
        table = cached + pool.allocate(need - len(cached))
        for i in range(len(cached), need):
            holds[table[i]] = tuple(prompt[i * BS : (i + 1) * BS])
            if i < len(keys):
                pool.register(table[i], keys[i])
        samples = [table]
        for _ in range(rng.randrange(0, 3)):  # n > 1: the samples share every block
            for block in table:
                pool.share(block)
            samples.append(list(table))
        for sample in samples:
            if len(prompt) % BS and rng.random() < 0.5 and pool.num_available:  # a sample writes a token
                last = sample[-1]
                new, copied = pool.writable(last)
                holds[new] = holds[last] + (rng.randrange(50),)  # copied, or written in place
                sample[-1] = new
            running.append(sample)
        while running and rng.random() < 0.4:  # finish or abort some
            finish_one()
        pool.check()
    while running:
        finish_one()
    return pool


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(4, 24))
def test_random_requests_leave_every_block_free_or_cached(seed, num_blocks):
    pool = _simulate(seed, 40, num_blocks)
    s = pool.stats()
    assert all(r == 0 for r in pool.ref_count) and s.used == 0 and s.free + s.evictable == pool.num_blocks


def test_a_thousand_requests_on_a_small_pool_hit_the_cache_and_evict():
    pool = _simulate(0, 1000, 12)
    s = pool.stats()
    assert all(r == 0 for r in pool.ref_count) and s.free + s.evictable == 12
    assert s.hit_blocks > 100 and s.evictions > 10  # the simulation exercised both sharing and eviction
