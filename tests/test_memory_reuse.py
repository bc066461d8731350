"""The engine's shared KV memory (memory_reuse: paged blocks, prefix sharing, eviction, preemption,
chunked prefill), its services for a server (abort, thread-safe submission, statistics), the
dynamic_inference block and per-request precision, against the engine without reuse and naive
decoding."""

import json
import random
import threading
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ATTENTION_KINDS, BALANCING_MODES, make_model
from r1kit.inference.dynamic import DynamicInference, load_dynamic_inference
from r1kit.inference.engine import Engine, SamplingParams

BS = 4  # tokens a block: small, so the tiny model's short prompts span several blocks


def _engine(model, reuse=True, pool_tokens=None, **kwargs):
    block = {"memory_reuse": reuse, "block_size": BS, "pool_tokens": pool_tokens}
    return Engine(model, dynamic_inference=block, **kwargs)


def _naive_greedy(model, prompt, max_new, stop=()):
    ids, out = list(prompt), []
    with torch.no_grad():
        for _ in range(max_new):
            token = int(model(torch.tensor([ids]))[0, -1].argmax())
            out.append(token)
            ids.append(token)
            if token in stop or len(ids) >= model.config.max_seq_len:
                break
    return out


class NearTies:
    """Greedy outputs must agree token for token, except at a near-tie: where two runs part, the
    top-2 logit margin of the (uncached) model at that position must be below 1e-4. Such cases are
    counted, and a test bounds how many it meets."""

    def __init__(self, model):
        self.model, self.count, self.compared = model, 0, 0

    def check(self, prompt, a, b):
        self.compared += 1
        if a == b:
            return
        i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        assert i < min(len(a), len(b)), f"one output stops early without a differing token: {a} vs {b}"
        with torch.no_grad():
            logits_V = self.model(torch.tensor([list(prompt) + a[:i]]))[0, -1].float()
        top2 = logits_V.topk(2).values
        margin = float(top2[0] - top2[1])
        assert margin < 1e-4, f"outputs part at token {i} where the top-2 margin is {margin:.2e}, not a near-tie: {a} vs {b}"
        self.count += 1


def _shared_prefix_prompts(rng, n, system_len=9, vocab=64):
    system = [rng.randrange(1, vocab) for _ in range(system_len)]
    return [system + [rng.randrange(1, vocab) for _ in range(rng.randrange(1, 8))] for _ in range(n)]


@pytest.mark.parametrize("balancing", BALANCING_MODES)
@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_greedy_with_reuse_equals_without_and_naive_decoding(kind, balancing):
    """Shared system prompts, ragged prompts, continuous batching, n > 1, a multi-turn re-send, and a
    pool small enough to evict and preempt, for every attention kind and balancing mode."""
    model = make_model(attention=dict(kind=kind, chunk_size=16, window=4, topk=6), moe=dict(balancing=balancing)).eval()
    rng = random.Random(1)
    prompts = _shared_prefix_prompts(rng, 6)
    params = [SamplingParams(max_new_tokens=rng.randrange(4, 20), stop_token_ids=[7], n=rng.choice([1, 3]))
              for _ in prompts]
    ties = NearTies(model)
    without = _engine(model, reuse=False, max_batch_size=4).generate(prompts, params)
    for pool_tokens, batch in [(None, 4), (None, 64), (44, 8)]:  # 44 tokens: 11 blocks, fewer than the work needs
        engine = _engine(model, pool_tokens=pool_tokens, max_batch_size=batch)
        with_reuse = engine.generate(prompts, params)
        for prompt, p, a, b in zip(prompts, params, with_reuse, without):
            naive = _naive_greedy(model, prompt, p.max_new_tokens, {7})
            for sample_a, sample_b in zip(a.samples, b.samples):
                ties.check(prompt, sample_a.token_ids, naive)
                ties.check(prompt, sample_b.token_ids, naive)
        stats = engine.stats()
        assert stats.blocks_used == 0 and stats.blocks_free + stats.blocks_evictable == stats.blocks_total
        if pool_tokens:
            assert stats.evictions > 0 and stats.preemptions > 0  # the small pool really was short
        else:
            assert stats.hit_blocks > 0  # the system prompt was shared

    # a conversation re-sent turn after turn (its answers kept verbatim): the earlier turn's blocks,
    # prompt and generated ones, are found again
    engine = _engine(model)
    history, in_cache = list(prompts[0]), 0
    for turn in range(3):
        out = engine.generate([history], SamplingParams(max_new_tokens=6))[0]
        ties.check(history, out.samples[0].token_ids, _naive_greedy(model, history, 6))
        if turn:  # all full blocks of what the last turn left in the cache (its last token never went in)
            assert out.cached_tokens == min(in_cache, len(history) - 1) // BS * BS
        in_cache = len(history) + len(out.samples[0].token_ids) - 1
        history = history + out.samples[0].token_ids + [rng.randrange(1, 64) for _ in range(3)]
    assert ties.count <= max(1, ties.compared // 50), f"{ties.count} near-ties in {ties.compared} comparisons"


def test_requests_share_a_system_prompt_and_samples_share_their_prompt():
    model = make_model().eval()
    system = list(range(1, 14))  # 13 tokens: three full blocks and one token
    engine = _engine(model)
    first = engine.generate([system + [20, 21]], SamplingParams(max_new_tokens=3))[0]
    second = engine.generate([system + [30]], SamplingParams(max_new_tokens=3))[0]
    assert first.cached_tokens == 0 and second.cached_tokens == 12  # three blocks found
    # 8 samples of an 11-token prompt: 3 blocks held once, the partial third copied for 7 samples
    engine = _engine(model)
    engine.add_request(list(range(1, 12)), SamplingParams(max_new_tokens=30, temperature=1.0, n=8, seed=0))
    engine.step()
    assert engine.stats().blocks_used == 3 + 7
    # with no reuse each sample holds its own row of the whole length (rounded up to 64 slots)
    flat = _engine(model, reuse=False)
    flat.add_request(list(range(1, 12)), SamplingParams(max_new_tokens=30, temperature=1.0, n=8, seed=0))
    flat.step()
    assert engine.stats().kv_bytes < flat.stats().kv_bytes


def test_salts_keep_tenants_apart():
    model = make_model().eval()
    engine = _engine(model)
    prompt = list(range(1, 20))
    runs = [engine.generate([prompt], SamplingParams(max_new_tokens=2, cache_salt=salt))[0]
            for salt in ("tenant-a", "tenant-b", "tenant-a", None)]
    assert [r.cached_tokens for r in runs] == [0, 0, 16, 0]
    assert len({tuple(r.samples[0].token_ids) for r in runs}) == 1


def test_seeded_samples_are_identical_with_reuse_on_and_off():
    model = make_model(attention=dict(kind="multiscale", chunk_size=16, window=4, topk=6)).eval()
    rng = random.Random(4)
    prompts = _shared_prefix_prompts(rng, 5)
    params = [SamplingParams(max_new_tokens=15, temperature=1.0, top_p=0.95, seed=s, n=3) for s in range(5)]
    on = _engine(model, max_batch_size=6).generate(prompts, params)
    off = _engine(model, reuse=False, max_batch_size=6).generate(prompts, params)
    assert [[s.token_ids for s in o.samples] for o in on] == [[s.token_ids for s in o.samples] for o in off]


def test_a_request_that_can_never_fit_is_refused_and_one_that_fits_alone_runs():
    model = make_model().eval()
    engine = _engine(model, pool_tokens=32)  # 8 blocks
    with pytest.raises(ValueError, match=r"needs 9 KV blocks of 4 tokens, but the pool holds 8; raise dynamic_inference.pool_tokens"):
        engine.add_request(list(range(1, 10)), SamplingParams(max_new_tokens=28))  # 36 tokens written
    # three requests that fit one at a time, not together: they run, taking turns
    prompts = [[1, 2, 3, 4, 5], [6, 7, 8, 9], [10, 11, 12]]
    outs = engine.generate(prompts, SamplingParams(max_new_tokens=33 - 5))  # 32 tokens written: 8 blocks
    assert [o.samples[0].token_ids for o in outs] == [_naive_greedy(model, p, 28) for p in prompts]


def test_chunked_prefill_keeps_running_sequences_decoding():
    model = make_model().eval()
    engine = _engine(model, max_batch_tokens=8)
    short = engine.add_request([1, 2, 3], SamplingParams(max_new_tokens=20))
    engine.step()
    long_prompt = list(range(1, 41))
    long = engine.add_request(long_prompt, SamplingParams(max_new_tokens=5))
    steps_while_prefilling = 0
    while not engine._outputs[long].samples[0].token_ids:  # until the long prompt's first token
        events = engine.step()
        assert any(e.request_id == short for e in events)  # the short one got its token this step
        steps_while_prefilling += 1
    assert steps_while_prefilling >= 40 // 8  # 7 tokens a step beside the running one
    while engine.has_unfinished():
        engine.step()
    assert engine.pop_output(long).samples[0].token_ids == _naive_greedy(model, long_prompt, 5)
    assert engine.pop_output(short).samples[0].token_ids == _naive_greedy(model, [1, 2, 3], 20)


def test_abort_frees_blocks_at_once_and_ends_the_request():
    model = make_model().eval()
    engine = _engine(model)
    a = engine.add_request(list(range(1, 12)), SamplingParams(max_new_tokens=40, n=2))
    b = engine.add_request([5, 6], SamplingParams(max_new_tokens=5))
    engine.step()
    engine.step()
    used = engine.stats().blocks_used
    assert engine.abort(a) and not engine.abort(a)  # a second abort finds nothing to stop
    assert engine.stats().blocks_used < used
    assert [s.finish_reason for s in engine.pop_output(a).samples] == ["abort", "abort"]
    while engine.has_unfinished():
        engine.step()
    assert engine.pop_output(b).samples[0].token_ids == _naive_greedy(model, [5, 6], 5)
    stats = engine.stats()
    assert stats.blocks_used == 0 and stats.blocks_free + stats.blocks_evictable == stats.blocks_total
    assert not engine.abort(12345)


def test_requests_submitted_from_threads_while_the_engine_steps():
    model = make_model().eval()
    engine = _engine(model, max_batch_size=8)
    rng = random.Random(7)
    prompts = [[rng.randrange(1, 64) for _ in range(rng.randrange(2, 12))] for _ in range(24)]
    ids: dict[int, int] = {}

    def submit(chunk):
        for k in chunk:
            ids[k] = engine.add_request(prompts[k], SamplingParams(max_new_tokens=6))

    threads = [threading.Thread(target=submit, args=(range(t, 24, 4),)) for t in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads) or engine.has_unfinished():
        engine.step()
    for t in threads:
        t.join()
    assert sorted(ids) == list(range(24)) and len(set(ids.values())) == 24
    for k, request_id in ids.items():
        assert engine.pop_output(request_id).samples[0].token_ids == _naive_greedy(model, prompts[k], 6)


def _drain(engine, rng, abort_share, pending):
    """Step the engine to the end, aborting a random running request now and then."""
    while engine.has_unfinished():
        engine.step()
        if pending and rng.random() < abort_share:
            engine.abort(rng.choice(pending))
        engine.stats()


def _random_requests(engine, rng, count, abort_share):
    systems = [[rng.randrange(1, 64) for _ in range(rng.randrange(4, 14))] for _ in range(3)]
    pending = []
    for _ in range(count):
        prompt = rng.choice(systems) + [rng.randrange(1, 64) for _ in range(rng.randrange(0, 6))]
        params = SamplingParams(max_new_tokens=rng.randrange(1, 12), n=rng.choice([1, 1, 2, 4]),
                                temperature=rng.choice([0.0, 1.0]), seed=rng.randrange(100),
                                cache_salt=rng.choice([None, "a"]))
        pending.append(engine.add_request(prompt, params))
        if rng.random() < 0.3:
            engine.step()
        if rng.random() < abort_share:
            engine.abort(rng.choice(pending))
    _drain(engine, rng, abort_share, pending)
    pool = engine._batches["fp32"].pool
    pool.check()
    assert all(r == 0 for r in pool.ref_count)
    stats = engine.stats()
    assert stats.blocks_free + stats.blocks_evictable == stats.blocks_total and stats.running == stats.waiting == 0


def test_a_thousand_random_requests_with_aborts_leave_every_block_unreferenced():
    model = make_model().eval()
    engine = _engine(model, pool_tokens=160, max_batch_size=16, max_batch_tokens=48)
    _random_requests(engine, random.Random(0), 1000, abort_share=0.05)
    assert engine.stats().preemptions > 0 and engine.stats().evictions > 0


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), pool_tokens=st.sampled_from([64, 96, 400]), batch=st.integers(1, 12),
       budget=st.integers(8, 64), abort_share=st.sampled_from([0.0, 0.1, 0.4]))
def test_random_requests_leave_the_pool_consistent(seed, pool_tokens, batch, budget, abort_share):
    model = _TINY
    engine = _engine(model, pool_tokens=pool_tokens, max_batch_size=batch, max_batch_tokens=budget)
    _random_requests(engine, random.Random(seed), 40, abort_share)


_TINY = make_model().eval()


# ---------------------------------------------------------------------- the dynamic_inference block


def test_the_block_loads_in_the_articles_shape_from_dicts_json_and_yaml(tmp_path):
    article = {"dynamic_inference": {"complexity_threshold": 0.7, "precision_mode": "auto", "memory_reuse": True}}
    as_article = DynamicInference(complexity_threshold=0.7)  # the defaults leave the threshold to calibration (None)
    assert load_dynamic_inference(article) == load_dynamic_inference(article["dynamic_inference"]) == as_article
    (tmp_path / "d.json").write_text(json.dumps(article))
    (tmp_path / "d.yaml").write_text("dynamic_inference:\n  complexity_threshold: 0.5\n  memory_reuse: false\n")
    assert load_dynamic_inference(tmp_path / "d.json") == as_article
    shipped = Path(__file__).parent.parent / "configs" / "dynamic_inference.yaml"  # the README's example: the defaults
    assert load_dynamic_inference(shipped) == DynamicInference()
    yaml_block = load_dynamic_inference(str(tmp_path / "d.yaml"))
    assert yaml_block.complexity_threshold == 0.5 and not yaml_block.memory_reuse
    for bad, message in [
        ({"complexity_threshold": 1.5}, "complexity_threshold: Input should be less than or equal to 1"),
        ({"complexity_treshold": 0.5}, "complexity_treshold: Extra inputs are not permitted"),
        ({"precision_mode": "int4"}, "precision_mode: Input should be 'auto', 'fp32', 'bf16' or 'fp16'"),
        ({"dynamic_inference": {}, "other": 1}, r"unknown top-level key\(s\) \['other'\]"),
        (tmp_path / "missing.yaml", "does not exist"),
    ]:
        with pytest.raises(ValueError, match=message):
            load_dynamic_inference(bad)


def test_memory_reuse_false_is_the_contiguous_engine():
    model = make_model().eval()
    engine = _engine(model, reuse=False)
    out = engine.generate([[1, 2, 3]], SamplingParams(max_new_tokens=4))[0]
    assert type(engine._batches["fp32"]).__name__ == "ContiguousBatch" and out.cached_tokens == 0
    assert engine.stats().blocks_total == 0 and engine.stats().peak_kv_bytes > 0


def test_precision_fp16_is_refused_on_a_cpu_and_exact_requests_run_in_fp32():
    model = make_model().eval()
    with pytest.raises(ValueError, match="fp16 is not supported on a CPU; use bf16 .* or fp32"):
        Engine(model, dynamic_inference={"precision_mode": "fp16"})
    with pytest.raises(ValueError, match="fp16 is not supported on a CPU"):
        Engine(model).add_request([1, 2], SamplingParams(precision="fp16"))
    with pytest.raises(ValueError, match="precision must be one of exact, fp32, bf16, fp16"):
        Engine(model).add_request([1, 2], SamplingParams(precision="fast"))
    # a bf16 engine serving an exact request beside a bf16 one: grouped by precision, KV kept apart
    engine = Engine(model, dynamic_inference={"precision_mode": "bf16", "block_size": BS})
    prompt = list(range(1, 14))
    exact, fast = engine.generate([prompt, prompt], [SamplingParams(max_new_tokens=8, precision="exact"),
                                                     SamplingParams(max_new_tokens=8)])
    assert (exact.precision, fast.precision) == ("fp32", "bf16")
    assert exact.samples[0].token_ids == Engine(model).generate([prompt], SamplingParams(max_new_tokens=8))[0].samples[0].token_ids
    assert set(engine._batches) == {"fp32", "bf16"}
    assert engine._batches["bf16"].cache.kv_LNK2GD.dtype == torch.bfloat16
    again = engine.generate([prompt], SamplingParams(max_new_tokens=2, precision="exact"))[0]
    assert again.cached_tokens == 12  # found among the fp32 blocks, never the bf16 ones


@pytest.mark.parametrize("attention", [dict(kind="dense"), dict(kind="multiscale", chunk_size=16, window=4, topk=6)])
def test_the_decode_kernel_reads_blocks_in_place_as_the_gather_does(attention):
    from r1kit.model.kernels import paged_decode

    if not paged_decode.available():
        pytest.skip(f"the paged decode kernel could not be built here: {paged_decode.unavailable_reason()}")
    model = make_model(attention=attention, n_kv_heads=2).eval()  # 4 query heads on 2 key/value heads
    rng = random.Random(5)
    prompts = _shared_prefix_prompts(rng, 6)
    params = SamplingParams(max_new_tokens=25, temperature=1.0, seed=3, n=2)
    runs = []
    for kernel in (True, False):
        engine = Engine(model, max_batch_size=5, dynamic_inference={"block_size": BS, "decode_kernel": kernel})
        runs.append(engine.generate(prompts, params))
        assert engine._batches["fp32"].cache.decode_kernel is kernel
    for a, b in zip(*runs):
        for sa, sb in zip(a.samples, b.samples):
            assert sa.token_ids == sb.token_ids
            assert sa.logprobs == pytest.approx(sb.logprobs, abs=1e-4)
