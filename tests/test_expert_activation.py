"""expert_activation (issue 24): 1.0 is exactly today's model; below it the dropped experts' weights
are gone from memory, routing chooses among the kept experts only (the full router with the dropped
experts' scores at -inf), the kept ones are the most used, and the engine still generates."""

import copy
import gc
import json
import weakref

import pytest
import torch
import torch.nn.functional as F

from conftest import BALANCING_MODES, make_model
from r1kit.cli import main
from r1kit.data.schema import write_jsonl
from r1kit.data.synth import synth
from r1kit.data.tokenizer import Tokenizer
from r1kit.inference.dynamic import DynamicInference, load_dynamic_inference
from r1kit.inference.engine import Engine, SamplingParams
from r1kit.inference.experts import activate_experts, choose_experts, count_expert_use, kept_count, parameter_bytes
from r1kit.interop.checkpoint import load_pretrained, save_pretrained
from r1kit.train.sft import training_corpus

EXPERT_TENSORS = ("expert_embed_EC", "gate_up_proj_E2FC", "down_proj_ECF")


def _prompts(n_tokens=(5, 9, 14, 7), seed=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 64, (n,), generator=g).tolist() for n in n_tokens]


def _most_used(usage_per_layer, k):
    """The k most used experts per layer, ties to the lower id, ascending."""
    return [sorted(sorted(range(len(u)), key=lambda e: -float(u[e]))[:k]) for u in usage_per_layer]


def _eight_experts(balancing="load_penalty", seed=0):
    """The tiny model with 8 experts (top-2), routers strong enough that experts differ in use."""
    model = make_model(seed=seed, moe=dict(n_experts=8, top_k=2, balancing=balancing)).eval()
    with torch.no_grad():
        for moe in model.moe_layers():
            moe.expert_embed_EC.normal_(std=0.3)
            moe.expert_bias_E.normal_(std=0.05)  # a trained bias-mode model's, so the masked reference must handle it
    return model


def test_kept_count_rounds_halves_up_and_never_below_top_k():
    assert kept_count(4, 0.7, 2) == 3  # the article's 0.7 on the demo's 4 experts
    assert kept_count(8, 0.75, 2) == 6 and kept_count(8, 0.5, 2) == 4
    assert kept_count(8, 0.3125, 2) == 3  # 2.5 -> 3
    assert kept_count(4, 0.25, 2) == 2 and kept_count(4, 0.01, 2) == 2  # never fewer than top_k
    assert kept_count(4, 1.0, 2) == 4
    # the most used, ties to the lower id, listed ascending
    assert choose_experts([torch.tensor([5.0, 1.0, 5.0, 9.0, 0.0, 5.0, 2.0, 3.0])], 0.5, 2) == [[0, 2, 3, 5]]


def test_full_activation_is_exactly_todays_model():
    prompts = _prompts()
    params = [SamplingParams(max_new_tokens=10), SamplingParams(max_new_tokens=10, temperature=1.0, seed=4, n=2)] * 2
    today = Engine(make_model().eval()).generate(prompts, params)
    model = make_model().eval()
    tensors = {k: (v.data_ptr(), v.clone()) for k, v in model.state_dict().items()}
    engine = Engine(model, dynamic_inference={"expert_activation": 1.0})
    assert engine.experts.source == "all kept" and engine.experts.bytes_after == engine.experts.bytes_before
    # untouched: the same tensors, the same values
    assert {k: v.data_ptr() for k, v in model.state_dict().items()} == {k: p for k, (p, _) in tensors.items()}
    assert all(torch.equal(model.state_dict()[k], v) for k, (_, v) in tensors.items())
    for a, b in zip(today, engine.generate(prompts, params)):
        assert [s.token_ids for s in a.samples] == [s.token_ids for s in b.samples]
        assert [s.logprobs for s in a.samples] == [s.logprobs for s in b.samples]  # bitwise, not close


def test_keeping_every_expert_through_the_pruning_path_is_bitwise_equal():
    model = _eight_experts()
    ids = torch.randint(0, 64, (3, 20))
    with torch.no_grad():
        before = model(ids)
        model.keep_experts([list(range(8))] * 2)
        assert torch.equal(model(ids), before)


@pytest.mark.parametrize("source", ["routing statistics", "calibration"])
def test_dropped_experts_are_freed(source):
    model = _eight_experts()
    with torch.no_grad():
        for moe in model.moe_layers():
            moe.load_E.copy_(torch.rand(8) * 2)  # a trained model's uneven loads
    calibration = _prompts((30, 40, 25, 33)) if source == "calibration" else None
    usage = count_expert_use(model, calibration) if calibration else [m.load_E.clone() for m in model.moe_layers()]
    old = [weakref.ref(getattr(m, name)) for m in model.moe_layers() for name in EXPERT_TENSORS]
    full_params = sum(p.numel() for p in model.parameters())

    report = activate_experts(model, 0.5, calibration)

    assert report.source == source
    # the kept ones are the four most used of each layer
    assert report.kept == _most_used(usage, 4)
    C, F2 = model.config.dim, 2 * model.config.expert_hidden
    for moe, kept in zip(model.moe_layers(), report.kept):
        assert moe.n_experts == 4 and moe.expert_ids == kept
        assert moe.gate_up_proj_E2FC.shape == (4, F2, C) and moe.load_E.shape == (4,)
        for name in EXPERT_TENSORS:  # fresh storage of its own: no view keeps the old tensor's bytes alive
            t = getattr(moe, name)
            assert t.untyped_storage().nbytes() == t.numel() * t.element_size()
    gc.collect()
    assert all(ref() is None for ref in old), "a dropped expert's tensor is still alive"
    # per layer and dropped expert: its router row, gate/up and down matrices, and 4 routing floats
    dropped_numel = 2 * 4 * (C + F2 * C + C * F2 // 2)
    assert full_params - sum(p.numel() for p in model.parameters()) == dropped_numel
    assert report.bytes_before - report.bytes_after == 4 * (dropped_numel + 2 * 4 * 4)
    assert report.bytes_after == parameter_bytes(model)
    state = model.state_dict()
    assert all(state[f"layers.{i}.ffn.{name}"].shape[0] == 4 for i in range(2) for name in EXPERT_TENSORS)
    assert model.config.moe.n_experts == 4 and model.num_params() == sum(p.numel() for p in model.parameters())


def _masked_reference(full, x_NC, keep):
    """The full layer's routing with the dropped experts' scores at -inf, then the kept experts'
    outputs token by token: what routing among the kept experts means."""
    scores_NE = (x_NC @ full.expert_embed_EC.t()).float()
    if full.balancing == "load_penalty":
        scores_NE = scores_NE - full.alpha * full.load_E
    dropped = torch.ones(full.n_experts, dtype=torch.bool)
    dropped[keep] = False
    probs_NE = torch.softmax(scores_NE.masked_fill(dropped, float("-inf")), dim=-1)
    selection_NE = probs_NE + full.expert_bias_E if full.balancing == "bias" else probs_NE
    topk_NK = selection_NE.masked_fill(dropped, float("-inf")).topk(full.top_k, dim=-1).indices
    weights_NK = probs_NE.gather(-1, topk_NK)
    weights_NK = weights_NK / weights_NK.sum(-1, keepdim=True)
    out = []
    for n in range(x_NC.shape[0]):
        y = torch.zeros(x_NC.shape[1])
        for e, w in zip(topk_NK[n].tolist(), weights_NK[n]):
            gate_F, up_F = (full.gate_up_proj_E2FC[e] @ x_NC[n]).chunk(2)
            y = y + w * (full.down_proj_ECF[e] @ (F.silu(gate_F) * up_F))
        out.append(y)
    return torch.stack(out), topk_NK


@pytest.mark.parametrize("balancing", BALANCING_MODES)
def test_routing_among_the_kept_equals_the_full_router_with_dropped_scores_masked(balancing):
    model = _eight_experts(balancing)
    with torch.no_grad():
        for moe in model.moe_layers():
            moe.load_E.copy_(torch.rand(8) * 2)
    full = copy.deepcopy(model.moe_layers()[0])
    keep = [1, 2, 5, 6]
    pruned = model.moe_layers()[0]
    pruned.keep_experts(keep)
    x_NC = torch.randn(40, model.config.dim)
    with torch.no_grad():
        expected, topk_NK = _masked_reference(full, x_NC, keep)
        for grad in (False, True):  # the dense dispatch (inference) and the routed one
            with torch.set_grad_enabled(grad):
                torch.testing.assert_close(pruned(x_NC[None])[0], expected, atol=1e-5, rtol=1e-5)
    chosen = torch.tensor(pruned.expert_ids)[pruned.last_topk_NK]  # back to the checkpoint's ids
    assert torch.equal(chosen.sort(-1).values, topk_NK.sort(-1).values)


def test_engine_routes_no_token_to_a_dropped_expert_and_still_generates():
    model = _eight_experts("bias")
    calibration = _prompts((30, 40, 25, 33), seed=5)
    usage = count_expert_use(model, calibration)
    engine = Engine(model, dynamic_inference={"expert_activation": 0.5}, expert_calibration=calibration, max_batch_size=3)
    assert engine.experts.kept == _most_used(usage, 4)
    routed = [set() for _ in model.moe_layers()]
    hooks = [moe.register_forward_hook(lambda m, _i, _o, seen=seen: seen.update(
        torch.tensor(m.expert_ids)[m.last_topk_NK].flatten().tolist())) for moe, seen in zip(model.moe_layers(), routed)]
    prompts = _prompts((6, 12, 9, 15, 4))
    outputs = engine.generate(prompts, SamplingParams(max_new_tokens=12))
    for h in hooks:
        h.remove()
    for seen, kept in zip(routed, engine.experts.kept):
        assert seen and seen <= set(kept), f"tokens went to {sorted(seen - set(kept))}, which were dropped"
    # generation goes on, and it is the pruned model's greedy decoding, token by token
    with torch.no_grad():
        for prompt, out in zip(prompts, outputs):
            ids = list(prompt)
            for _ in range(12):
                ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
            assert out.samples[0].token_ids == ids[len(prompt):]


def test_a_pruned_model_saves_and_loads_as_a_smaller_moe(tmp_path):
    model = _eight_experts()
    activate_experts(model, 0.75)
    save_pretrained(model, tmp_path / "ckpt")
    loaded = load_pretrained(tmp_path / "ckpt").eval()
    ids = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        assert loaded.config.moe.n_experts == 6 and torch.equal(loaded(ids), model(ids))


def test_bad_expert_activation_is_a_clear_error():
    for bad in (0, 0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="expert_activation"):
            load_dynamic_inference({"dynamic_inference": {"expert_activation": bad}})
        with pytest.raises(ValueError, match=r"expert_activation must lie in \(0, 1\]"):
            activate_experts(make_model(), bad)
    assert DynamicInference().expert_activation == 1.0
    with pytest.raises(ValueError, match="has no MoE layers"):
        activate_experts(make_model(moe=dict(n_experts=0)), 0.5)
    with pytest.raises(ValueError, match="fewer than top_k"):
        make_model().moe_layers()[0].keep_experts([3])
    with pytest.raises(ValueError, match="holds no tokens"):
        activate_experts(make_model(), 0.5, calibration=[[]])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("expert_activation")
    problems = synth(12, seed=0, steps=1, max_operand=20)
    tok = Tokenizer.train(training_corpus(problems), vocab_size=160)
    model = make_model(vocab_size=tok.vocab_size, max_seq_len=192, moe=dict(n_experts=8))
    model.set_symbol_flags(torch.tensor(tok.symbol_flags()))
    save_pretrained(model, root / "ckpt", extra=tok.save)
    write_jsonl(root / "problems.jsonl", problems)
    return root


def test_cli_generate_and_eval_keep_the_share_asked_for(files, capsys):
    ckpt = str(files / "ckpt")
    args = ["generate", ckpt, "--prompt", "Tom has 12 apples.", "--max-new-tokens", "6", "--json", "--expert-activation", "0.5"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)["samples"][0]["token_ids"]) == 6
    assert "kept 4 of 8 experts per layer (most used by routing statistics" in captured.err
    out = files / "eval.json"
    assert main(["eval", ckpt, "--data", str(files / "problems.jsonl"), "--n", "2", "--max-new-tokens", "8",
                 "--expert-activation", "0.75", "--expert-calibration", str(files / "problems.jsonl"), "--out", str(out)]) == 0
    record = json.loads(out.read_text())["expert_activation"]
    assert record["source"] == "calibration" and [len(k) for k in record["kept"]] == [6, 6]
    assert record["bytes_after"] < record["bytes_before"]


def _exit_code(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own errors
        return e.code


@pytest.mark.parametrize("argv, message", [
    (["generate", "{ckpt}", "--prompt", "hi", "--expert-activation", "0"], "must be a finite number > 0"),
    (["generate", "{ckpt}", "--prompt", "hi", "--expert-activation", "1.2"], "must lie in (0, 1]"),
    (["serve", "{ckpt}", "--expert-activation", "-1"], "must be a finite number > 0"),
    (["eval", "{ckpt}", "--data", "{problems}", "--expert-activation", "nan"], "must be a finite number > 0"),
    (["eval", "{ckpt}", "--data", "{problems}", "--expert-calibration", "{problems}"], "give both"),
    (["eval", "{ckpt}", "--data", "{problems}", "--expert-activation", "0.5", "--expert-calibration", "{missing}"],
     "No such file"),
])
def test_cli_bad_expert_activation(files, capsys, argv, message):
    names = dict(ckpt=files / "ckpt", problems=files / "problems.jsonl", missing=files / "missing.jsonl")
    assert _exit_code([a.format(**names) for a in argv]) == 2
    assert message in capsys.readouterr().err
