"""The transformer: causality, cached decoding, layer skipping, gradients, and Llama equivalence."""

import itertools

import pytest
import torch

from conftest import ATTENTION_KINDS, BALANCING_MODES, make_model
from r1kit.interop.hf import hf_state_dict
from r1kit.inference.kv_cache import KVCache
from r1kit.model.transformer import LayerSkip

# chunk_size 16 < T makes the multiscale branches run several query chunks
SMALL_CHUNKS = dict(attention=dict(chunk_size=16, window=4, topk=6))


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
@pytest.mark.parametrize("training", [False, True])
def test_changing_token_t_never_changes_earlier_outputs(kind, training):
    model = make_model(attention=dict(kind=kind, chunk_size=16, window=4, topk=6))
    model.train(training)
    ids = torch.randint(0, model.config.vocab_size, (2, 48))
    base = model(ids)
    for t in (1, 17, 33, 47):
        changed = ids.clone()
        changed[:, t] = (changed[:, t] + 1) % model.config.vocab_size
        out = model(changed)
        # equal up to float rounding (matmul blocking varies with the batch's expert counts)
        assert (out[:, :t] - base[:, :t]).abs().max() <= 1e-6, f"output before {t} changed"
        assert (out[:, t:] - base[:, t:]).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
@pytest.mark.parametrize("balancing", BALANCING_MODES)
def test_cached_decoding_equals_full_forward(kind, balancing):
    model = make_model(attention=dict(kind=kind, chunk_size=16, window=4, topk=6), moe=dict(balancing=balancing))
    model.eval()
    with torch.no_grad():  # give the balancing state non-trivial values, as after training
        for moe in model.moe_layers():
            moe.load_E.copy_(torch.tensor([1.6, 0.4, 1.2, 0.8]))
            moe.expert_bias_E.copy_(torch.tensor([-0.1, 0.2, 0.0, 0.05]))
    B, T = 3, 40
    ids = torch.randint(0, model.config.vocab_size, (B, T))
    full = model(ids)

    cache = KVCache.for_model(model, B)
    steps = [model(ids[:, t : t + 1], torch.full((B, 1), t), cache) for t in range(T)]
    assert (torch.cat(steps, 1) - full).abs().max() <= 1e-4

    cache = KVCache.for_model(model, B)  # prefill a prompt, then decode
    prefill = model(ids[:, :23], torch.arange(23).expand(B, 23), cache)
    rest = model(ids[:, 23:], torch.arange(23, T).expand(B, T - 23), cache)
    assert (torch.cat([prefill, rest], 1) - full).abs().max() <= 1e-4


def test_attention_drops_its_mask_only_where_nothing_is_hidden():
    """The tests above check the results; this checks that the mask-free paths are the ones taken."""
    model = make_model(attention=dict(kind="dense")).eval()
    ids = torch.randint(0, 64, (2, 6))
    cache = KVCache.for_model(model, 2)
    prefill = model._context(ids, torch.arange(6).expand(2, 6), cache)  # empty cache: plain causal
    assert prefill.standard_causal and not prefill.all_visible
    lockstep = model._context(ids[:, :1], torch.tensor([[6], [6]]), cache)  # both rows at the last slot
    assert lockstep.all_visible and not lockstep.standard_causal
    ragged = model._context(ids[:, :1], torch.tensor([[7], [4]]), cache)  # row 1 must not see slots 5-7
    assert not ragged.all_visible and not ragged.standard_causal
    more = model._context(ids[:, :2], torch.tensor([[8, 9], [8, 9]]), cache)  # two new tokens: causal among them
    assert not more.all_visible and not more.standard_causal


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_ragged_rows_decode_at_their_own_positions(kind):
    """Right-padded prompts of lengths 5, 11 and 17 decode in one batch, each row at its own
    position; every row matches its own unbatched full forward."""
    model = make_model(attention=dict(kind=kind, chunk_size=16, window=4, topk=6), n_kv_heads=2).eval()
    lengths, new = [5, 11, 17], 9
    seqs = [torch.randint(0, model.config.vocab_size, (n + new,)) for n in lengths]
    P = max(lengths)
    prompt = torch.zeros(3, P, dtype=torch.long)
    for r, n in enumerate(lengths):
        prompt[r, :n] = seqs[r][:n]
    cache = KVCache.for_model(model, 3)
    logits = model(prompt, torch.arange(P).expand(3, P), cache)
    got = [[logits[r, n - 1]] for r, n in enumerate(lengths)]
    for step in range(new):
        ids = torch.stack([seqs[r][n + step] for r, n in enumerate(lengths)])[:, None]
        pos = torch.tensor(lengths)[:, None] + step
        out = model(ids, pos, cache)
        for r in range(3):
            got[r].append(out[r, 0])
    for r, n in enumerate(lengths):
        ref = model(seqs[r][None])[0, n - 1 :]
        assert (torch.stack(got[r]) - ref).abs().max() <= 1e-4


def test_skipping_every_layer_leaves_embedding_through_head():
    model = make_model().eval()
    ids = torch.randint(0, 64, (2, 12))
    out = model(ids, skip=LayerSkip(layers=frozenset({0, 1})))
    torch.testing.assert_close(out, model.lm_head(model.norm(model.embed(ids))))


@pytest.mark.parametrize("skip", [LayerSkip(attention=frozenset({1})), LayerSkip(layers=frozenset({0}))])
def test_cached_decoding_with_skips_equals_full_forward_with_skips(skip):
    model = make_model(**SMALL_CHUNKS).eval()
    ids = torch.randint(0, 64, (2, 30))
    full = model(ids, skip=skip)
    assert not torch.allclose(full, model(ids))
    cache = KVCache.for_model(model, 2)
    steps = [model(ids[:, t : t + 1], torch.full((2, 1), t), cache, skip=skip) for t in range(30)]
    assert (torch.cat(steps, 1) - full).abs().max() <= 1e-4


def test_skipped_attention_still_writes_its_keys_to_the_cache():
    model = make_model(**SMALL_CHUNKS).eval()
    ids = torch.randint(0, 64, (2, 10))
    pos = torch.arange(10).expand(2, 10)
    normal, skipping = KVCache.for_model(model, 2), KVCache.for_model(model, 2)
    model(ids, pos, normal)
    model(ids, pos, skipping, skip=LayerSkip(attention=frozenset({0}), layers=frozenset({1})))
    # layer 0's input is the embedding either way, so its keys must be identical; layer 1's were
    # written from a different residual stream, but written all the same
    torch.testing.assert_close(skipping.k_LBGSD[0, :, :, :10], normal.k_LBGSD[0, :, :, :10])
    assert skipping.k_LBGSD[1, :, :, :10].abs().sum() > 0


def test_layer_drop_skips_whole_layers_in_training_only():
    model = make_model(layer_drop=0.5)
    ids = torch.randint(0, 64, (2, 12))
    model.eval()
    with torch.no_grad():
        combos = {
            frozenset(s): model(ids, skip=LayerSkip(layers=frozenset(s)))
            for r in range(3) for s in itertools.combinations(range(2), r)
        }
        assert torch.equal(model(ids), combos[frozenset()])  # no drop in eval
        model.train()
        seen = set()
        for _ in range(40):
            out = model(ids)
            match = [s for s, ref in combos.items() if torch.allclose(out, ref, atol=1e-6)]
            assert len(match) == 1, "a training forward must equal the model with some set of layers skipped"
            seen.add(match[0])
    assert len(seen) == 4  # p = 0.5 over 2 layers: all four subsets show up in 40 draws


@pytest.mark.parametrize("balancing", BALANCING_MODES)
def test_gradients_reach_every_parameter(balancing):
    model = make_model(moe=dict(balancing=balancing, n_shared=1), **SMALL_CHUNKS).train()
    ids = torch.randint(0, 64, (4, 40))
    logits = model(ids[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
    aux = model.aux_loss()
    assert (aux is not None) == (balancing == "aux_loss")
    (loss + (aux if aux is not None else 0)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if p.dim() == 3:  # stacked experts: every expert's slice must learn
            assert (p.grad.flatten(1).abs().sum(1) > 0).all(), name
        else:
            assert p.grad.abs().sum() > 0, name


def test_logits_at_selected_positions_equal_the_full_forwards_and_carry_its_gradients():
    model = make_model(moe=dict(balancing="none"))
    ids = torch.randint(0, 64, (3, 12))
    at_BT = torch.rand(3, 12) < 0.4
    at_BT[1] = False  # a row with no selected position
    full = model(ids)
    (full[at_BT] ** 2).sum().backward()
    full_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    picked = model(ids, logits_at_BT=at_BT)
    torch.testing.assert_close(picked, full[at_BT])
    (picked ** 2).sum().backward()
    for p, g in zip(model.parameters(), full_grads):
        torch.testing.assert_close(p.grad, g)
    with pytest.raises(ValueError, match="bool mask"):
        model(ids, logits_at_BT=at_BT.long())


def test_position_beyond_context_is_a_clear_error():
    model = make_model()
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_dense_config_is_exactly_llama():
    transformers = pytest.importorskip("transformers", reason="transformers is needed to compare with LlamaForCausalLM")
    model = make_model(attention=dict(kind="dense"), moe=dict(n_experts=0), n_kv_heads=2).eval()
    cfg = model.config
    hf_cfg = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.dense_hidden,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
    )
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    state = hf_state_dict(model)
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    ids = torch.randint(0, cfg.vocab_size, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits, atol=1e-5, rtol=1e-5)


def test_a_branch_left_out_gets_zero_weight_on_every_path():
    """attention.branches=[local, global]: the symbolic branch's gate weight is exactly 0, so the
    symbol flags (read by that branch alone) change nothing, in training (the fused kernel where it
    builds), in a full forward and in cached decoding; with all three branches they do change it."""
    def logits_with_symbols(branches, symbol_share, train):
        model = make_model(symbol_share=symbol_share, attention=dict(chunk_size=64, window=4, topk=6, branches=branches))
        with torch.no_grad():  # a gate that depends on the token, as after training
            for block in model.layers:
                block.attn.gate.weight.normal_(std=0.5)
        model.train(train)
        ids = torch.randint(0, model.config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(5))
        if train:
            logits = model(ids)
            logits.logsumexp(-1).mean().backward()
            assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
            return logits.detach(), model
        with torch.no_grad():
            cache = KVCache.for_model(model, 2)
            steps = [model(ids[:, t : t + 1], torch.full((2, 1), t), cache) for t in range(40)]
            full = model(ids)
        assert (torch.cat(steps, 1) - full).abs().max() <= 1e-4
        return full, model

    for train in (True, False):
        few, model = logits_with_symbols(["local", "global"], 0.1, train)
        many, _ = logits_with_symbols(["local", "global"], 0.6, train)
        torch.testing.assert_close(few, many, atol=0, rtol=0)
        assert all(block.attn.last_gate_mean[2] == 0 for block in model.layers)
        three_few, _ = logits_with_symbols(["local", "global", "symbolic"], 0.1, train)
        three_many, _ = logits_with_symbols(["local", "global", "symbolic"], 0.6, train)
        assert (three_few - three_many).abs().max() > 1e-3


def test_multiscale_with_two_full_branches_trains_exactly_as_dense_attention():
    """window and top-k covering every key, no symbolic branch: the multi-scale layer computes dense
    causal attention, so from the same weights the loss and every shared gradient
    agree with dense attention's, in training (the fused kernel where it builds); the gate gets none."""
    T = 48
    wide = dict(chunk_size=64, window=T, topk=T, branches=["local", "global"])
    multiscale, dense = make_model(seed=2, attention=wide), make_model(seed=2, attention=dict(kind="dense"))
    missing, unexpected = multiscale.load_state_dict(dense.state_dict(), strict=False)  # the same weights; the gate as initialised
    assert not unexpected and missing and all(".attn.gate." in name for name in missing)
    ids = torch.randint(0, dense.config.vocab_size, (3, T), generator=torch.Generator().manual_seed(6))
    grads = []
    for model in (multiscale, dense):
        model.train()
        loss = torch.nn.functional.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        grads.append((loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (loss_m, grads_m), (loss_d, grads_d) = grads
    torch.testing.assert_close(loss_m, loss_d, atol=1e-6, rtol=1e-6)
    for name, grad in grads_d.items():
        torch.testing.assert_close(grads_m[name], grad, atol=1e-6, rtol=1e-4, msg=lambda m: f"{name}: {m}")
    gate_grads = [g for n, g in grads_m.items() if ".attn.gate." in n]
    assert gate_grads and all(g.abs().max() < 1e-6 for g in gate_grads)
