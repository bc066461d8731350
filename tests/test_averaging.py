"""Weight averaging in SFT: the averages' arithmetic, final/ as the average of the run's own
trajectory, exact resume, and clear errors."""

from pathlib import Path

import pytest
import torch
from torch import nn

from r1kit.config import ConfigError
from r1kit.data.schema import read_metrics, write_jsonl
from r1kit.data.synth import synth
from r1kit.interop.checkpoint import load_pretrained
from r1kit.train.averaging import WeightAverage, parse_average
from r1kit.train.sft import load_run_config, train_sft

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")


@pytest.fixture(scope="module")
def toy_train(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    write_jsonl(path, synth(48, seed=0, steps=1, max_operand=10, templates=["stickers", "temperature"]))
    return path


def _run(toy_train, out, *extra, stop_at=None, resume=False):
    model_cfg, cfg = load_run_config(TINY, [f"sft.train_data={toy_train}", "sft.eval_data=null", f"sft.out_dir={out}",
                                            "sft.max_steps=4", "sft.save_every=2", "model.layer_drop=0.2", *extra])
    return train_sft(model_cfg, cfg, progress=False, stop_at=stop_at, resume=resume)


def _weights(path) -> dict[str, torch.Tensor]:
    """The parameters (what is averaged), without the buffers."""
    return {k: v.detach() for k, v in load_pretrained(path).named_parameters()}


def _buffers(path) -> dict[str, torch.Tensor]:
    return dict(load_pretrained(path).named_buffers())


def test_ema_and_tail_follow_their_definitions():
    model = nn.Linear(2, 1, bias=False)
    model.register_buffer("load", torch.zeros(1))
    with torch.no_grad():
        model.weight.zero_()
    ema, tail = WeightAverage(model, "ema:0.5"), WeightAverage(model, "tail:0.4")
    expected_ema = 0.0
    for t in range(1, 6):  # the weights after step t are t; the budget is 5 steps
        with torch.no_grad():
            model.weight.fill_(float(t))
        ema.update(model, progress=t / 5)
        tail.update(model, progress=t / 5)
        expected_ema = 0.5 * expected_ema + 0.5 * t
    assert ema.count == 5 and torch.allclose(ema.params["weight"], torch.full((1, 2), expected_ema))
    assert tail.count == 4 and torch.allclose(tail.params["weight"], torch.full((1, 2), 3.5))  # steps 2..5
    model.load.fill_(7.0)
    averaged = tail.averaged_copy(model)
    assert torch.allclose(averaged.weight, torch.full((1, 2), 3.5)) and averaged.load.item() == 7.0  # buffers are the model's
    assert model.weight[0, 0].item() == 5.0  # the copy leaves the model alone


@pytest.mark.parametrize("spec", ["ema", "ema:1", "ema:1.5", "tail:-0.1", "swa:0.5", "ema:0.9x"])
def test_bad_average_specs_are_named(spec, toy_train):
    with pytest.raises(ValueError, match="weight average"):
        parse_average(spec)
    with pytest.raises(ConfigError, match="weight average"):
        load_run_config(TINY, [f"sft.train_data={toy_train}", f"sft.average={spec}"])
    with pytest.raises(ConfigError, match="twice"):
        load_run_config(TINY, [f"sft.train_data={toy_train}", "sft.average=ema:0.9", "sft.weight_averages=['ema:0.9']"])


def test_final_is_the_uniform_mean_of_the_trajectory_and_last_keeps_the_trained_weights(toy_train, tmp_path):
    # the weights after each step k, from runs interrupted there (the run is deterministic)
    steps = []
    for k in range(1, 5):
        _run(toy_train, tmp_path / f"stop{k}", stop_at=k)
        steps.append(_weights(tmp_path / f"stop{k}" / "last"))
    final = _run(toy_train, tmp_path / "avg", "sft.average=tail:0.5", "sft.weight_averages=['ema:0','tail:0']")
    trained, averaged = _weights(tmp_path / "avg" / "last"), _weights(final)
    for name, value in trained.items():
        assert torch.equal(value, steps[-1][name])
        # tail:0.5 over 4 steps: the steps whose end reaches half the budget, 2..4
        assert torch.allclose(averaged[name], torch.stack([s[name] for s in steps[1:]]).mean(0), atol=1e-6), name
    beside = {d: _weights(tmp_path / "avg" / d) for d in ("average_ema_0", "average_tail_0")}
    for name, value in trained.items():
        assert torch.equal(beside["average_ema_0"][name], value)  # decay 0 keeps only the newest point
        assert torch.allclose(beside["average_tail_0"][name], torch.stack([s[name] for s in steps]).mean(0), atol=1e-6)
    assert not torch.equal(averaged["embed.weight"], trained["embed.weight"])
    # the routing state (load EMA, biases) is the trained model's, the one its routing was balanced for
    last_buffers, final_buffers = _buffers(tmp_path / "avg" / "last"), _buffers(final)
    assert any("load_E" in k for k in last_buffers) and all(torch.equal(v, final_buffers[k]) for k, v in last_buffers.items())
    events = [r for r in read_metrics(tmp_path / "avg" / "metrics.jsonl") if r.get("event") == "average"]
    assert [(e["spec"], e["steps_averaged"], e["saved_in"]) for e in events] == [
        ("tail:0.5", 3, "final"), ("ema:0", 4, "average_ema_0"), ("tail:0", 4, "average_tail_0")]


def test_resume_restores_the_running_averages(toy_train, tmp_path):
    extra = ("sft.average=ema:0.7", "sft.weight_averages=['tail:0.3']")
    _run(toy_train, tmp_path / "full", *extra)
    _run(toy_train, tmp_path / "split", *extra, stop_at=2)  # the tail starts at step 2: it spans the interruption
    _run(toy_train, tmp_path / "split", *extra, resume=True)
    for d in ("final", "average_tail_0.3"):
        a, b = _weights(tmp_path / "full" / d), _weights(tmp_path / "split" / d)
        assert all(torch.equal(a[k], b[k]) for k in a), d
    # a resumed run must keep the averages it was saved with
    _run(toy_train, tmp_path / "other", *extra, stop_at=2)
    with pytest.raises(ValueError, match="average"):
        _run(toy_train, tmp_path / "other", "sft.average=ema:0.9", "sft.weight_averages=['tail:0.3']", resume=True)


def test_overwrite_removes_an_earlier_runs_averages(toy_train, tmp_path):
    _run(toy_train, tmp_path / "run", "sft.weight_averages=['ema:0.5']")
    assert (tmp_path / "run" / "average_ema_0.5").is_dir()
    model_cfg, cfg = load_run_config(TINY, [f"sft.train_data={toy_train}", "sft.eval_data=null", f"sft.out_dir={tmp_path / 'run'}",
                                            "sft.max_steps=2"])
    train_sft(model_cfg, cfg, progress=False, overwrite=True)
    assert not (tmp_path / "run" / "average_ema_0.5").exists()  # not left to be taken for the new run's


def test_snapshots_keep_the_averages_as_they_stood_at_that_minute(toy_train, tmp_path):
    # the snapshot at minute 0 comes after step 1; a 1-step run ends on the same step (same batch,
    # same rate at step 0 of either cosine schedule), so its final/ is the EMA as it stood then
    _run(toy_train, tmp_path / "run", "sft.average=ema:0.5", "sft.weight_averages=['tail:0.5']", "sft.snapshot_minutes=[0]")
    _run(toy_train, tmp_path / "one", "sft.average=ema:0.5", "sft.max_steps=1")
    at_minute, one_step = _weights(tmp_path / "run" / "minutes_0_average_ema_0.5"), _weights(tmp_path / "one" / "final")
    raw = _weights(tmp_path / "run" / "minutes_0")
    assert all(torch.allclose(at_minute[k], one_step[k], atol=1e-6) for k in raw)
    assert not torch.equal(at_minute["embed.weight"], raw["embed.weight"])  # half the first weights: not the step's own
    # the tail starts at half the budget (step 2 of 4): nothing of it to keep at step 1
    assert not (tmp_path / "run" / "minutes_0_average_tail_0.5").exists()
    events = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r.get("event") == "snapshot"]
    assert [(e["step"], e["averages"]) for e in events] == [(1, {"ema:0.5": "minutes_0_average_ema_0.5"})]
