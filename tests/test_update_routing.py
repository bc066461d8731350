"""`r1kit update-routing` (issue 24): refreshing the routing state on data shifted to one operation
raises utilisation there and changes nothing but the routing state; --router-steps changes the
routers and nothing else; bad input is refused with a clear message."""

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_model
from r1kit.cli import main
from r1kit.data.schema import load_examples, write_jsonl
from r1kit.data.synth import synth
from r1kit.data.tokenizer import Tokenizer
from r1kit.interop.checkpoint import load_pretrained, save_pretrained
from r1kit.train.routing import REPORT_FILE, ROUTING_STATE, balance_per_layer, example_sequences
from r1kit.train.sft import training_corpus


@pytest.fixture(autouse=True)
def _one_thread():
    # the machines running the suite are shared: one thread is faster than two fighting for a busy core
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _one_operation(op: str, n: int, seed: int):
    """One-step problems whose step is `op`: a distribution shifted to one operation."""
    return [e for e in synth(n, seed=seed, steps=1, max_operand=20, op_weights={op: 1000.0}) if e.steps[0].split()[1] == op]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("update_routing")
    old, new = synth(64, seed=0, steps=1, max_operand=20), _one_operation("*", 160, seed=1)
    tok = Tokenizer.train(training_corpus(old + new), vocab_size=160)
    write_jsonl(root / "new.jsonl", new[:128])
    write_jsonl(root / "old_test.jsonl", old[:3])
    write_jsonl(root / "new_test.jsonl", new[128:131])
    return root, tok


def _stale_checkpoint(path, tok, balancing, sequences):
    """A checkpoint whose routing state does not fit the new data: routers of a trained model's scale,
    each layer's expert 0 favoured along the new data's mean hidden state (the skew a shift brings),
    loads and biases as they were (uniform, zero): never refreshed on this data. The skew is put in
    by hand because a random tiny model routes mixed and one-operation problems alike (measured:
    their mean hidden states differ by 0.1, a token's is ~5.7 long), so no shift shows by itself."""
    model = make_model(vocab_size=tok.vocab_size, max_seq_len=192,
                       # faster balancing than the demo's, so 30 refresh batches settle
                       moe=dict(balancing=balancing, load_momentum=0.3, bias_gamma=0.01)).eval()
    model.set_symbol_flags(torch.tensor(tok.symbol_flags()))
    with torch.no_grad():
        for i, moe in enumerate(model.moe_layers()):
            moe.expert_embed_EC.normal_(std=0.3)
            hidden = []
            hook = model.layers[i].ffn_norm.register_forward_hook(lambda m, inp, out: hidden.append(out[0]))
            for seq in sequences[:16]:
                model(torch.tensor([seq]))
            hook.remove()
            mean_C = torch.cat(hidden).mean(0)
            moe.expert_embed_EC[0] += 1.5 * mean_C / mean_C.norm()  # ~2 logits on the mean token
    save_pretrained(model, path, extra=tok.save)
    return path


def _run(*argv) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors
        return e.code


def _changed(a_dir, b_dir) -> set[str]:
    a, b = load_file(str(a_dir / "model.safetensors")), load_file(str(b_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    return {k for k in a if not torch.equal(a[k], b[k])}


@pytest.mark.parametrize("balancing", ["load_penalty", "bias"])
def test_refresh_raises_utilisation_on_the_shifted_data_and_changes_only_routing_state(data, tmp_path, capsys, balancing):
    root, tok = data
    new = example_sequences(tok, load_examples(root / "new.jsonl").examples, 192)
    ckpt = _stale_checkpoint(tmp_path / "ckpt", tok, balancing, new)
    out = tmp_path / "refreshed"
    assert _run("update-routing", ckpt, "--data", root / "new.jsonl", "--out", out,
                "--refresh-steps", 30, "--batch-size", 16) == 0
    printed = capsys.readouterr().out

    # balance on the new data, measured afresh on both checkpoints
    before = balance_per_layer(load_pretrained(ckpt), new)
    after = balance_per_layer(load_pretrained(out), new)
    for b, a in zip(before, after):
        assert a["utilisation"] > b["utilisation"] + 0.015 and a["max_vio"] < b["max_vio"]
    report = json.loads((out / REPORT_FILE).read_text())
    for layer, b, a in zip(report["layers"], before, after):
        assert layer["utilisation_before"] == pytest.approx(b["utilisation"])
        assert layer["utilisation_after"] == pytest.approx(a["utilisation"])
    assert "utilisation (before -> after)" in printed and f"{before[0]['utilisation']:.3f} -> {after[0]['utilisation']:.3f}" in printed

    # nothing but the routing state moved: loads in both modes, biases in bias mode only
    changed = _changed(ckpt, out)
    assert changed and all(k.endswith(ROUTING_STATE) for k in changed)
    assert any(k.endswith("load_E") for k in changed)
    assert any(k.endswith("expert_bias_E") for k in changed) == (balancing == "bias")
    assert Tokenizer.load(out).vocab_size == tok.vocab_size and not (out / "trainer_state").exists()


def test_router_steps_change_the_routers_and_nothing_else(data, tmp_path, capsys):
    root, tok = data
    new = example_sequences(tok, load_examples(root / "new.jsonl").examples, 192)
    ckpt = _stale_checkpoint(tmp_path / "ckpt", tok, "aux_loss", new)  # a mode with no routing state to refresh
    out = tmp_path / "tuned"
    assert _run("update-routing", ckpt, "--data", root / "new.jsonl", "--out", out, "--refresh-steps", 2,
                "--router-steps", 3, "--batch-size", 8, "--old-test", root / "old_test.jsonl",
                "--new-test", root / "new_test.jsonl", "--eval-n", 2) == 0
    changed = _changed(ckpt, out)
    routers = {f"layers.{i}.ffn.expert_embed_EC" for i in range(2)}
    assert routers <= changed, "every layer's router was trained"
    assert changed - routers <= {f"layers.{i}.ffn.load_E" for i in range(2)}  # aux_loss has no bias to move
    report = json.loads((out / REPORT_FILE).read_text())
    assert len(report["router_losses"]) == 3
    assert {name: (acc["n"], sorted(acc)) for name, acc in report["accuracy"].items()} == {
        name: (2, ["after", "before", "data", "n"]) for name in ("old", "new")}
    printed = capsys.readouterr().out
    assert "router fine-tune: 3 steps" in printed and "accuracy on the old test set (2 problems)" in printed


def test_bad_input_is_refused_with_a_clear_message(data, tmp_path, capsys):
    root, tok = data
    model = make_model(vocab_size=tok.vocab_size, max_seq_len=192)
    ckpt = save_pretrained(model, tmp_path / "ckpt", extra=tok.save)
    dense = save_pretrained(make_model(vocab_size=tok.vocab_size, max_seq_len=192, moe=dict(n_experts=0)),
                            tmp_path / "dense", extra=tok.save)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    new = root / "new.jsonl"
    cases = [
        (("update-routing", tmp_path / "nowhere", "--data", new, "--out", tmp_path / "o1"), "config.json is missing"),
        (("update-routing", ckpt, "--data", tmp_path / "missing.jsonl", "--out", tmp_path / "o2"), "--data"),
        (("update-routing", ckpt, "--data", new, "--out", tmp_path / "o3", "--new-test", tmp_path / "gone.jsonl"),
         "--new-test"),
        (("update-routing", ckpt, "--data", new, "--out", tmp_path / "taken"), "already exists"),
        (("update-routing", ckpt, "--data", new, "--out", tmp_path / "taken", "--overwrite"), "refusing to write over"),
        (("update-routing", dense, "--data", new, "--out", tmp_path / "o4"), "no MoE layers"),
        (("update-routing", ckpt, "--data", new, "--out", tmp_path / "o5", "--router-steps", -1), "must be >= 0"),
        (("update-routing", ckpt, "--data", new), "--out"),
    ]
    for argv, message in cases:
        assert _run(*argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"  # refused, untouched
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))
    # an existing checkpoint is replaced only when asked
    out = tmp_path / "again"
    assert _run("update-routing", ckpt, "--data", new, "--out", out, "--refresh-steps", 1, "--n", 8) == 0
    assert _run("update-routing", ckpt, "--data", new, "--out", out, "--refresh-steps", 1, "--n", 8) == 2
    assert "already exists" in capsys.readouterr().err
    assert _run("update-routing", ckpt, "--data", new, "--out", out, "--refresh-steps", 1, "--n", 8, "--overwrite") == 0
