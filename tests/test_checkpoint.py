"""Checkpoints: bit-exact round trip, clear errors on mismatch, atomic writes."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import make_model
from r1kit.interop.checkpoint import CheckpointError, load_pretrained, save_pretrained
from r1kit.model.transformer import Transformer


def test_round_trip_is_bit_exact_including_routing_state(tmp_path):
    model = make_model(moe=dict(balancing="bias"))
    model.train()
    model(torch.randint(0, 64, (2, 16)))
    model.update_balancing()  # non-trivial loads and biases must survive the trip
    save_pretrained(model, tmp_path / "ckpt")
    loaded = load_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.config
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(b["layers.0.ffn.expert_bias_E"], torch.zeros(4))
    assert torch.equal(b["symbol_flags_V"], model.symbol_flags_V)
    model.eval(), loaded.eval()
    ids = torch.randint(0, 64, (2, 16))
    assert torch.equal(model(ids), loaded(ids))


def test_mismatched_tensors_are_listed(tmp_path):
    save_pretrained(make_model(), tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    tensors = load_file(weights)
    del tensors["layers.1.attn.qkv_proj.weight"]
    tensors["layers.0.attn.o_proj.weight"] = torch.zeros(3, 3)
    tensors["extra.weight"] = torch.zeros(1)
    save_file(tensors, weights)
    with pytest.raises(CheckpointError) as err:
        load_pretrained(tmp_path / "ckpt")
    msg = str(err.value)
    assert "missing tensors (1): layers.1.attn.qkv_proj.weight" in msg
    assert "unexpected tensors (1): extra.weight" in msg
    assert "layers.0.attn.o_proj.weight: checkpoint (3, 3) vs model (32, 32)" in msg


def test_checkpoints_with_unfused_projections_still_load(tmp_path):
    """Checkpoints from before q/k/v and gate/up were fused hold them as separate tensors."""
    model = make_model()  # MoE: expert gate/up stacks
    dense_ffn = Transformer(model.config.model_copy(update={"moe": model.config.moe.model_copy(update={"n_experts": 0})}))
    for m, name in ((model, "moe"), (dense_ffn, "dense")):
        save_pretrained(m, tmp_path / name)
        weights = tmp_path / name / "model.safetensors"
        legacy, cfg = {}, m.config
        q_rows, kv_rows = cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
        for key, t in load_file(weights).items():
            if key.endswith("qkv_proj.weight"):
                for part, rows in zip("qkv", t.split([q_rows, kv_rows, kv_rows])):
                    legacy[key.replace("qkv_proj", f"{part}_proj")] = rows.clone()
            elif key.endswith("gate_up_proj.weight"):
                legacy[key.replace("gate_up_proj", "gate_proj")], legacy[key.replace("gate_up_proj", "up_proj")] = (
                    x.clone() for x in t.chunk(2))
            elif key.endswith("gate_up_proj_E2FC"):
                gate, up = t.chunk(2, dim=1)
                legacy[key.replace("gate_up_proj_E2FC", "gate_proj_EFC")] = gate.clone()
                legacy[key.replace("gate_up_proj_E2FC", "up_proj_EFC")] = up.clone()
            else:
                legacy[key] = t
        assert not any("qkv" in k or "gate_up" in k for k in legacy)
        save_file(legacy, weights)
        loaded = load_pretrained(tmp_path / name)
        m.eval(), loaded.eval()
        ids = torch.randint(0, 64, (2, 16))
        assert torch.equal(m(ids), loaded(ids)), name


def test_bad_directories_fail_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"dim": 32, "n_layerz": 2}))
    with pytest.raises(ValueError, match="unknown key 'n_layerz'"):
        load_pretrained(tmp_path)


def test_failed_save_leaves_last_good_checkpoint_intact(tmp_path):
    first = make_model(seed=1)
    save_pretrained(first, tmp_path / "ckpt")

    def crash(_dir):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_pretrained(make_model(seed=2), tmp_path / "ckpt", extra=crash)
    loaded = load_pretrained(tmp_path / "ckpt")
    assert torch.equal(loaded.embed.weight, first.embed.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary debris

    save_pretrained(make_model(seed=2), tmp_path / "ckpt", extra=lambda d: (d / "note.txt").write_text("hi"))
    assert (tmp_path / "ckpt" / "note.txt").read_text() == "hi"
    assert not torch.equal(load_pretrained(tmp_path / "ckpt").embed.weight, first.embed.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_write_never_replaces_a_directory_r1kit_did_not_write(tmp_path, capsys):
    from r1kit.cli import main

    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("my thesis")
    assert main(["init", "--preset", "tiny", "--out", str(project)]) == 2
    assert "refusing to write over" in capsys.readouterr().err
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt"] and (project / "notes.txt").read_text() == "my thesis"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]  # no debris beside it

    hf_like = tmp_path / "hf"  # a Hugging Face folder has config.json and model.safetensors too
    hf_like.mkdir()
    save_file({"w": torch.zeros(2)}, str(hf_like / "model.safetensors"), metadata={"format": "pt"})
    (hf_like / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not a directory r1kit wrote"):
        save_pretrained(make_model(), hf_like)
    assert (hf_like / "config.json").read_text() == "{}"

    empty = tmp_path / "empty"
    empty.mkdir()
    save_pretrained(make_model(seed=1), empty)  # an empty directory is fair game, and so is r1kit's own
    save_pretrained(make_model(seed=2), empty)
    assert torch.equal(load_pretrained(empty).embed.weight, make_model(seed=2).embed.weight)


_KILL_AT_RENAME = """
import os, signal, sys
import torch
sys.path.insert(0, {tests!r})
from conftest import make_model
from r1kit.interop import checkpoint
kill_after, calls = int(sys.argv[1]), []
real_replace = os.replace
def replace(src, dst):
    real_replace(src, dst)
    calls.append(dst)
    if len(calls) == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)  # a crash right after this rename, before any cleanup
checkpoint.os.replace = replace
def die_while_writing(d):
    if kill_after == 0:
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.save_pretrained(make_model(seed=2), sys.argv[2], extra=die_while_writing)
"""


@pytest.mark.parametrize("kill_after, survivor", [(0, 1), (1, 1), (2, 2)])
def test_a_save_killed_at_any_point_leaves_a_loadable_checkpoint(tmp_path, kill_after, survivor):
    """SIGKILL while writing (0), after the old checkpoint moved aside (1), after the new one moved
    in (2): loading gives the old checkpoint in the first two cases, the new in the last."""
    import subprocess
    import sys
    from pathlib import Path

    ckpt = tmp_path / "ckpt"
    save_pretrained(make_model(seed=1), ckpt)
    script = _KILL_AT_RENAME.format(tests=str(Path(__file__).parent))
    proc = subprocess.run([sys.executable, "-c", script, str(kill_after), str(ckpt)], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert (kill_after == 1) == (not ckpt.exists())  # the window this test is about
    loaded = load_pretrained(ckpt)  # restores a stranded checkpoint
    assert torch.equal(loaded.embed.weight, make_model(seed=survivor).embed.weight)
    save_pretrained(make_model(seed=3), ckpt)  # and the directory takes new saves
    assert torch.equal(load_pretrained(ckpt).embed.weight, make_model(seed=3).embed.weight)
