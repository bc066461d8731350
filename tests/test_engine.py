"""The generation engine against naive decoding (a full forward per token, no cache), and its
sampling, stopping, streaming and continuous-batching rules."""

import pytest
import torch

from conftest import ATTENTION_KINDS, BALANCING_MODES, make_model
from r1kit.config import preset
from r1kit.format import SPECIAL_TOKENS
from r1kit.inference.engine import Engine, SamplingParams, generate
from r1kit.inference.sampling import draw_tokens, sampling_probs, splitmix64
from r1kit.model.transformer import Transformer
from r1kit.data.tokenizer import Tokenizer

CORPUS = [
    "Tom has 12 apples and buys 7 more. How many apples does he have?",
    "12 + 7 = 19\n</think>\n#### 19",
    "Ana reads 30 pages a day for 4 days. How many pages?",
    "30 * 4 = 120\n</think>\n#### 120",
] * 10


def _naive_greedy(model, prompt, max_new, stop):
    ids, out = list(prompt), []
    for _ in range(max_new):
        tok = int(model(torch.tensor([ids]))[0, -1].argmax())
        out.append(tok)
        ids.append(tok)
        if tok in stop or len(ids) >= model.config.max_seq_len:
            break
    return out


def _ragged_prompts(n_tokens=(3, 9, 14, 6, 11), vocab=64, seed=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, vocab, (n,), generator=g).tolist() for n in n_tokens]


@pytest.mark.parametrize("balancing", BALANCING_MODES)
@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_greedy_engine_equals_naive_greedy_with_continuous_batching(kind, balancing):
    model = make_model(attention=dict(kind=kind, chunk_size=16, window=4, topk=6), moe=dict(balancing=balancing)).eval()
    prompts = _ragged_prompts()
    # two rows at a time: later prompts join the batch as earlier ones finish
    engine = Engine(model, max_batch_size=2)
    params = [SamplingParams(max_new_tokens=n, stop_token_ids=[7]) for n in (20, 5, 12, 20, 8)]
    outputs = engine.generate(prompts, params)
    with torch.no_grad():
        for prompt, p, out in zip(prompts, params, outputs):
            assert out.samples[0].token_ids == _naive_greedy(model, prompt, p.max_new_tokens, {7})


def test_logprobs_are_the_model_distribution_at_each_token():
    model = make_model().eval()
    prompt = [5, 9, 2, 11]
    out = Engine(model).generate([prompt], SamplingParams(max_new_tokens=8, temperature=1.0, seed=2))[0].samples[0]
    ids = torch.tensor([prompt + out.token_ids])
    with torch.no_grad():
        logprobs_TV = torch.log_softmax(model(ids)[0].float(), -1)
    expected = [float(logprobs_TV[len(prompt) - 1 + i, t]) for i, t in enumerate(out.token_ids)]
    assert out.logprobs == pytest.approx(expected, abs=1e-4)


def _token_ids(output):
    return [s.token_ids for s in output.samples]


def test_a_seeded_sample_is_the_same_alone_in_any_batch_and_joining_a_running_one():
    model = make_model().eval()
    prompt, params = [1, 2, 3], SamplingParams(max_new_tokens=12, temperature=0.9, top_k=20, top_p=0.9, seed=11, n=3)
    alone = _token_ids(Engine(model).generate([prompt], params)[0])
    assert alone == _token_ids(Engine(model).generate([prompt], params)[0])
    others = [  # other prompts, seeds, n, temperatures, filters, and a greedy row with the same seed
        ([9, 8], SamplingParams(max_new_tokens=20, temperature=1.3, n=2)),
        ([4], SamplingParams(max_new_tokens=6, seed=11)),
        ([5, 6, 7, 8], SamplingParams(max_new_tokens=9, temperature=0.5, top_k=3, seed=2, n=4)),
        ([7, 7, 7], SamplingParams(max_new_tokens=15, temperature=1.0, top_p=0.5, seed=11)),
    ]
    crowded = Engine(model, max_batch_size=16).generate(
        [others[0][0], prompt, *(p for p, _ in others[1:])], [others[0][1], params, *(sp for _, sp in others[1:])])
    assert _token_ids(crowded[1]) == alone
    assert _token_ids(crowded[2]) == _token_ids(Engine(model).generate([[4]], others[1][1])[0])  # greedy stays greedy

    engine = Engine(model, max_batch_size=16)  # the others run three steps before the request joins
    for p, sp in others:
        engine.add_request(p, sp)
    for _ in range(3):
        engine.step()
    late = engine.add_request(prompt, params)
    while engine.has_unfinished():
        engine.step()
    assert _token_ids(engine.pop_output(late)) == alone


def test_the_samples_of_a_request_differ_and_unseeded_runs_follow_the_engine_seed():
    model = make_model().eval()
    samples = _token_ids(Engine(model).generate([[1, 2, 3]], SamplingParams(max_new_tokens=10, temperature=1.0, seed=4, n=6))[0])
    assert len({tuple(s) for s in samples}) == 6
    unseeded = SamplingParams(max_new_tokens=10, temperature=1.0, n=2)
    runs = [_token_ids(Engine(model, seed=seed).generate([[1, 2, 3]], unseeded)[0]) for seed in (5, 5, 6)]
    assert runs[0] == runs[1] != runs[2] and runs[0][0] != runs[0][1]


def test_noise_hash_is_splitmix64_in_wrapping_int64_arithmetic():
    def reference(x):  # splitmix64's output for state x, in Python's unbounded ints
        mask = (1 << 64) - 1
        z = (x + 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    states = [0, 1, 1234567, 2**63 - 1, 2**63, 2**64 - 1, 0x0123456789ABCDEF]
    as_int64 = [x - 2**64 if x >= 2**63 else x for x in states]
    assert [x % 2**64 for x in splitmix64(torch.tensor(as_int64)).tolist()] == [reference(x) for x in states]
    assert reference(1234567) == 6457827717110365317  # the published first output for seed 1234567


def test_batched_draws_follow_each_rows_sampling_probs():
    """20,000 draws per parameter set from fixed logits, the sets interleaved row by row in one
    batch, over 1,000 seeds x 80 steps: never a filtered token, and counts within a chi-square bound."""
    V, draws, cases = 12, 20_000, [
        SamplingParams(temperature=1.0),
        SamplingParams(temperature=0.7, top_k=6),
        SamplingParams(temperature=1.3, top_p=0.8),
        SamplingParams(temperature=0.8, top_k=8, top_p=0.9),
    ]
    logits_V = torch.randn(V, generator=torch.Generator().manual_seed(0)) * 1.5
    rows = torch.arange(draws * len(cases))
    case_B = rows % len(cases)
    tokens_B = draw_tokens(
        logits_V.expand(len(rows), V),
        torch.tensor([c.temperature for c in cases])[case_B],
        rows % 1000, rows // 1000,
        torch.tensor([c.top_k or V for c in cases])[case_B],
        torch.tensor([c.top_p or 1.0 for c in cases])[case_B])
    for k, params in enumerate(cases):
        counts_V = torch.bincount(tokens_B[case_B == k], minlength=V).double()
        probs_V = sampling_probs(logits_V, params).double()
        kept = probs_V > 0
        assert counts_V[~kept].sum() == 0
        assert (params.top_k is None and params.top_p is None) or not kept.all()  # filters drop tokens here
        expected = draws * probs_V[kept]
        chi2, dof = float(((counts_V[kept] - expected) ** 2 / expected).sum()), int(kept.sum()) - 1
        assert chi2 < dof + 6 * (2 * dof) ** 0.5, (params, chi2, dof)  # six standard deviations of chi2(dof)


def test_temperature_zero_is_deterministic_and_samples_agree():
    model = make_model().eval()
    out = Engine(model).generate([[3, 1, 4, 1, 5]], SamplingParams(max_new_tokens=10, n=3))[0]
    assert len({tuple(s.token_ids) for s in out.samples}) == 1


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0])
    probs = sampling_probs(logits, SamplingParams(temperature=1.0, top_k=2))
    assert (probs[2:] == 0).all() and probs[:2].sum() == pytest.approx(1.0)
    full = logits.softmax(-1)  # 0.64, 0.24, 0.09, ...: the top two reach 0.87 >= 0.8
    probs = sampling_probs(logits, SamplingParams(temperature=1.0, top_p=0.8))
    assert (probs[2:] == 0).all() and probs[0] / probs[1] == pytest.approx(float(full[0] / full[1]))
    probs = sampling_probs(logits, SamplingParams(temperature=1.0, top_p=0.5))
    assert probs.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_max_new_tokens_and_stop_tokens_and_finish_reasons():
    model = make_model().eval()
    engine = Engine(model)
    free = engine.generate([[1, 2, 3]], SamplingParams(max_new_tokens=12))[0].samples[0]
    assert len(free.token_ids) == 12 and free.finish_reason == "length"
    stop_tok = free.token_ids[4]
    stopped = engine.generate([[1, 2, 3]], SamplingParams(max_new_tokens=12, stop_token_ids=[stop_tok]))[0].samples[0]
    first = free.token_ids.index(stop_tok)
    assert stopped.token_ids == free.token_ids[: first + 1] and stopped.finish_reason == "stop"
    assert stopped.stop_reason == stop_tok and free.stop_reason is None
    # the context is a hard limit: a prompt of 60 tokens in a 64-token model gets 4 at most
    long = engine.generate([list(range(1, 61))], SamplingParams(max_new_tokens=50))[0].samples[0]
    assert len(long.token_ids) == 4 and long.finish_reason == "length"


def test_prompt_longer_than_context_or_bad_params_fail_clearly():
    engine = Engine(make_model())
    with pytest.raises(ValueError, match="context of 64"):
        engine.add_request(list(range(1, 64)) + [1, 2])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        engine.add_request([1, 500])
    with pytest.raises(ValueError, match="top_p"):
        engine.add_request([1], SamplingParams(top_p=1.5))
    with pytest.raises(ValueError, match="tokenizer"):
        engine.add_request([1], SamplingParams(stop=["x"]))
    with pytest.raises(ValueError, match="at least one token"):
        generate(make_model(), [[]], SamplingParams(), stop_ids=set())


def test_token_budget_limits_what_joins_a_step():
    engine = Engine(make_model(), max_batch_tokens=25)
    for _ in range(3):
        engine.add_request(list(range(1, 11)), SamplingParams(max_new_tokens=30))
    engine.step()
    assert engine.num_running == 2 and engine.num_waiting == 1  # 10 + 10 prompt tokens fit, 30 would not
    engine.step()  # 10 new prompt tokens + 2 running rows = 12 <= 25
    assert engine.num_running == 3 and engine.num_waiting == 0


# ----------------------------------------------------------------------------- with a tokenizer


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(CORPUS, vocab_size=200)


def _scripted(tok, script: str, prompt_len: int):
    """A tiny model whose greedy output is `script` (its token ids forced by a logits hook), so
    text-level rules can be tested on a known completion."""
    cfg = preset("tiny").model_copy(update={"vocab_size": tok.vocab_size, "max_seq_len": 128})
    model = Transformer(cfg).eval()
    script_ids = tok.encode(script)

    def force(_module, args, kwargs, logits):
        ids_BT = args[0]
        positions_BT = args[1] if len(args) > 1 and args[1] is not None else torch.arange(ids_BT.shape[1]).expand(ids_BT.shape)
        if kwargs.get("logits_at_BT") is not None:  # logits [N, V] only at these positions (prefill)
            positions_BT = positions_BT[kwargs["logits_at_BT"]]
        step = (positions_BT - prompt_len + 1).clamp(0, len(script_ids) - 1)
        return logits + 1e4 * torch.nn.functional.one_hot(torch.tensor(script_ids)[step], tok.vocab_size)

    model.register_forward_hook(force, with_kwargs=True)
    return model, script_ids


def test_text_stop_strings_and_streaming_keep_reasoning_apart(tok):
    prompt = tok.encode_prompt("Tom has 12 apples and buys 7 more.")
    model, script_ids = _scripted(tok, "12 + 7 = 19\n</think>\n#### 19<|eos|>", len(prompt))
    engine = Engine(model, tok)
    out = engine.generate([prompt], SamplingParams(max_new_tokens=40))[0].samples[0]
    assert out.token_ids == script_ids and out.finish_reason == "stop" and out.stop_reason is None
    assert out.text == "12 + 7 = 19\n\n#### 19"  # what the user sees: no special tokens

    cut = engine.generate([prompt], SamplingParams(max_new_tokens=40, stop=["= 19"]))[0].samples[0]
    assert cut.text == "12 + 7 " and cut.finish_reason == "stop"

    deltas = list(engine.stream(prompt, SamplingParams(max_new_tokens=40)))
    reasoning = "".join(d.text for d in deltas if d.channel == "reasoning")
    answer = "".join(d.text for d in deltas if d.channel == "answer")
    assert reasoning == "12 + 7 = 19\n" and answer == "\n#### 19"
    assert deltas[-1].finish_reason == "stop" and all(d.finish_reason is None for d in deltas[:-1])

    held = list(engine.stream(prompt, SamplingParams(max_new_tokens=40, stop=["= 19"])))
    assert "".join(d.text for d in held) == "12 + 7 "  # "= 1" was held back, never shown


SCRIPT = "12 + 7 = 19\n</think>\n#### 19<|eos|>"  # the user sees "12 + 7 = 19\n" + "\n#### 19"
REASONING = "12 + 7 = 19\n"


def _generate_and_stream(engine, prompt, params):
    """generate()'s sample and stream()'s deltas for one request, checked to show the same text:
    the joined deltas equal the sample's text, which holds no special token, and both end alike."""
    out = engine.generate([prompt], params)[0].samples[0]
    deltas = list(engine.stream(prompt, params))
    assert "".join(d.text for d in deltas) == out.text
    assert not any(special in out.text for special in SPECIAL_TOKENS)
    assert (deltas[-1].finish_reason, deltas[-1].stop_reason) == (out.finish_reason, out.stop_reason)
    assert all(d.finish_reason is None and d.stop_reason is None for d in deltas[:-1])
    return out, deltas


@pytest.mark.parametrize("stop, max_new, text, stop_reason", [
    (["= 19"], 40, "12 + 7 ", "= 19"),  # plain text, spread over four tokens
    (["</think>"], 40, REASONING, "</think>"),  # a special token's text stops at that token
    (["<|eos|>"], 40, "12 + 7 = 19\n\n#### 19", "<|eos|>"),
    (["19\n\n#"], 40, "12 + 7 = ", "19\n\n#"),  # across </think>, as the user sees the text
    (["####", "+ 7", "never"], 40, "12 ", "+ 7"),  # several: the first in the text
    (["= 19\n\n####", "9\n"], 40, "12 + 7 = 1", "9\n"),  # several: the first completed ends the sample
    (["\nQ"], 40, "12 + 7 = 19\n\n#### 19", None),  # never hit: "\n" held at </think> is shown after all
    (["19\nQ"], 11, "12 + 7 = 19", None),  # "length" while "19" is held back: it is shown at the end
], ids=["text", "</think>", "<|eos|>", "across-</think>", "several", "first-completed", "never-hit", "length"])
def test_stop_strings_cut_generate_and_stream_alike(tok, stop, max_new, text, stop_reason):
    prompt = tok.encode_prompt("Tom has 12 apples and buys 7 more.")
    model, script_ids = _scripted(tok, SCRIPT, len(prompt))
    out, deltas = _generate_and_stream(Engine(model, tok), prompt, SamplingParams(max_new_tokens=max_new, stop=stop))
    assert out.text == text and out.stop_reason == stop_reason
    assert out.finish_reason == ("length" if max_new < len(script_ids) else "stop")
    assert out.token_ids == script_ids[: len(out.token_ids)]
    if stop_reason in SPECIAL_TOKENS:  # the stop token ends token_ids, as a stop token id does
        assert tok.decode(out.token_ids[-1:]) == stop_reason
    # each channel holds its own part of the text: the reasoning up to </think>, then the answer
    reasoning = "".join(d.text for d in deltas if d.channel == "reasoning")
    assert reasoning == text[: len(REASONING)] and "".join(d.text for d in deltas if d.channel == "answer") == text[len(REASONING):]


@pytest.mark.parametrize("seed", [0, 18, 23])  # samples holding <think>, </think>, and <|user|> then EOS
def test_stop_strings_taken_from_a_sampled_text_cut_it_there(tok, seed):
    model = make_model(vocab_size=tok.vocab_size, max_seq_len=128).eval()
    engine = Engine(model, tok)
    prompt = tok.encode_prompt("Tom has 12 apples and buys 7 more.")
    free = engine.generate([prompt], SamplingParams(max_new_tokens=40, temperature=1.0, seed=seed))[0].samples[0]
    full = free.text
    specials = [t for t in free.token_ids if tok.decode([t]) in SPECIAL_TOKENS and t != tok.eos_id]
    assert specials and len(full) > 20  # the sample crosses special tokens: the cases below mean something
    # three-character pieces of the text (random bytes decode to U+FFFD in places; a stop takes clean ones)
    pieces = [full[i : i + 3] for i in range(len(full) - 2) if "\ufffd" not in full[i : i + 3]]
    stops = [[pieces[len(pieces) // 4]], [pieces[-1]], [pieces[len(pieces) // 2], pieces[len(pieces) // 4]], [tok.decode([specials[0]])]]
    for stop in stops:
        params = SamplingParams(max_new_tokens=40, temperature=1.0, seed=seed, stop=stop)
        out, _ = _generate_and_stream(engine, prompt, params)
        assert out.finish_reason == "stop" and out.stop_reason in stop  # hit, not run out
        assert out.token_ids == free.token_ids[: len(out.token_ids)]  # same seed, same tokens up to the stop
        if stop[0] in SPECIAL_TOKENS:
            assert out.token_ids[-1] == specials[0] and out.text == tok.decode(out.token_ids, skip_special=True)
        else:
            assert out.text == full[: min(full.find(s) for s in stop)]


def test_bad_stop_strings_fail_clearly(tok):
    engine = Engine(make_model(vocab_size=tok.vocab_size), tok)
    with pytest.raises(ValueError, match="non-empty"):
        engine.add_request([1], SamplingParams(stop=[""]))
    with pytest.raises(ValueError, match="contains the special token '</think>'"):
        engine.add_request([1], SamplingParams(stop=["</think>\n####"]))


def test_cli_generate_stops_after_the_reasoning(tok, monkeypatch, capsys):
    import json

    import r1kit.inference.engine as engine_mod
    from r1kit.cli import main

    question = "Tom has 12 apples and buys 7 more."
    model, _ = _scripted(tok, SCRIPT, len(tok.encode_prompt(question)))
    monkeypatch.setattr(engine_mod, "load_for_inference", lambda path, device, dtype: (model, tok, "fp32"))
    args = ["generate", "ckpt", "--prompt", question, "--stop", "</think>"]
    assert main(args) == 0
    assert capsys.readouterr().out == "[reasoning] " + REASONING + "\n"  # piped: the reasoning marked, no answer
    assert main(args + ["--json"]) == 0
    sample = json.loads(capsys.readouterr().out)["samples"][0]
    assert sample["text"] == REASONING and sample["token_ids"][-1] == tok.end_think_id
    assert (sample["finish_reason"], sample["stop_reason"]) == ("stop", "</think>")
    assert main(args + ["--stop", "+ 7", "--json"]) == 0  # --stop repeats
    sample = json.loads(capsys.readouterr().out)["samples"][0]
    assert (sample["text"], sample["stop_reason"]) == ("12 ", "+ 7")


def test_cache_rows_of_different_capacity_join_without_losing_what_is_written():
    from r1kit.inference.kv_cache import KVCache

    model = make_model().eval()
    short, long = KVCache.for_model(model, 1, max_seq_len=8), KVCache.for_model(model, 2, max_seq_len=16)
    with torch.no_grad():
        model(torch.tensor([[3, 4, 5]]), torch.arange(3)[None], short)
        model(torch.tensor([[6, 7, 8, 9]] * 2), torch.arange(4).expand(2, 4), long)
    k_short = short.k_LBGSD[:, :, :, :3].clone()
    short.append_rows(long)
    assert short.max_seq_len == 16 and short.batch_size == 3 and short.length == 4
    assert torch.equal(short.k_LBGSD[:, :1, :, :3], k_short) and torch.equal(short.k_LBGSD[:, 1:, :, :4], long.k_LBGSD[:, :, :, :4])
    assert short.k_LBGSD[:, :1, :, 3:].abs().sum() == 0  # new slots are zero (masked, and finite)


def test_cli_generate_reads_the_dynamic_inference_block(tok, monkeypatch, capsys, tmp_path):
    import json

    import r1kit.inference.engine as engine_mod
    from r1kit.cli import main

    question = "Tom has 12 apples and buys 7 more."
    model, _ = _scripted(tok, SCRIPT, len(tok.encode_prompt(question)))
    monkeypatch.setattr(engine_mod, "load_for_inference", lambda path, device, dtype: (model, tok, dtype))
    config = tmp_path / "dynamic.yaml"
    outputs = []
    for block in ({"memory_reuse": True, "block_size": 4}, {"memory_reuse": False}):
        config.write_text(json.dumps({"dynamic_inference": block}))
        assert main(["generate", "ckpt", "--prompt", question, "--json", "--dynamic-config", str(config),
                     "--precision", "exact"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0]["samples"] == outputs[1]["samples"] and outputs[0]["precision"] == "fp32"
    config.write_text("dynamic_inference:\n  complexity_threshold: 2\n")
    assert main(["generate", "ckpt", "--prompt", question, "--dynamic-config", str(config)]) == 2
    assert "complexity_threshold: Input should be less than or equal to 1" in capsys.readouterr().err
