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
        expected_ema = t if t == 1 else 0.5 * expected_ema + 0.5 * t  # the first update replaces the first weights (0)
    assert ema.count == 5 and torch.allclose(ema.params["weight"], torch.full((1, 2), expected_ema))
    assert tail.count == 4 and torch.allclose(tail.params["weight"], torch.full((1, 2), 3.5))  # steps 2..5
    model.load.fill_(7.0)
    averaged = tail.averaged_copy(model)
    assert torch.allclose(averaged.weight, torch.full((1, 2), 3.5)) and averaged.load.item() == 7.0  # buffers are the model's
    assert model.weight[0, 0].item() == 5.0  # the copy leaves the model alone


def test_an_ema_is_the_plain_mean_until_it_has_its_memorys_steps_and_never_holds_the_first_weights():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(-100.0)  # the random first weights: must not count
    ema = WeightAverage(model, "ema:0.75")  # 4 steps of memory
    means = []
    for t in range(1, 7):
        with torch.no_grad():
            model.weight.fill_(float(t))
        ema.update(model, progress=t / 6)
        means.append(ema.params["weight"][0, 0].item())
    assert means[:4] == pytest.approx([1.0, 1.5, 2.0, 2.5])  # the mean of steps 1..t while 1/t >= 1 - D
    assert means[4] == pytest.approx(0.75 * 2.5 + 0.25 * 5) and means[5] == pytest.approx(0.75 * means[4] + 0.25 * 6)


def test_a_power_ema_weighs_step_i_of_t_by_i_to_the_g_plus_1_minus_i_minus_1_to_the_g_plus_1():
    # after T steps, step i carries (i^(G+1) - (i-1)^(G+1)) / T^(G+1) (the decays telescope): G = 0 is the
    # plain mean, larger G leans on recent steps by the same share of a short run as of a long one
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(-100.0)  # the first weights never count
    averages = {g: WeightAverage(model, f"power:{g}") for g in (0, 2, 8.5)}
    for t in range(1, 41):
        with torch.no_grad():
            model.weight.fill_(float(t))
        for average in averages.values():
            average.update(model, progress=t / 40)
        for g, average in averages.items():
            expected = sum(i * (i ** (g + 1) - (i - 1) ** (g + 1)) for i in range(1, t + 1)) / t ** (g + 1)
            assert average.params["weight"].item() == pytest.approx(expected, rel=1e-5), (g, t)
    assert averages[0].params["weight"].item() == pytest.approx(20.5)  # the mean of 1..40
    # the average's mean step sits about T / (G + 2) back from the end: the same share of 200 steps as of 2,000
    lag = {T: T - sum(i * (i ** 9.5 - (i - 1) ** 9.5) for i in range(1, T + 1)) / T ** 9.5 for T in (200, 2000)}
    assert lag[200] / 200 == pytest.approx(lag[2000] / 2000, rel=0.05) and lag[2000] / 2000 == pytest.approx(1 / 10.5, rel=0.01)


@pytest.mark.parametrize("spec", ["ema", "ema:1", "ema:1.5", "tail:-0.1", "swa:0.5", "ema:0.9x", "power:-1", "power"])
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
    # after one step the EMA is that step's weights: the first weights never count
    assert all(torch.allclose(at_minute[k], raw[k], atol=1e-6) for k in raw)
    # the tail starts at half the budget (step 2 of 4): nothing of it to keep at step 1
    assert not (tmp_path / "run" / "minutes_0_average_tail_0.5").exists()
    events = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r.get("event") == "snapshot"]
    assert [(e["step"], e["averages"]) for e in events] == [(1, {"ema:0.5": "minutes_0_average_ema_0.5"})]


def test_sft_curves_evaluates_last_step_weights_and_the_average_final_holds(toy_train, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from sft_curves import _checkpoints

    run = tmp_path / "run"
    _run(toy_train, run, "sft.average=ema:0.5", "sft.weight_averages=['ema:0.9']", "sft.snapshot_minutes=[0]")
    log = read_metrics(run / "metrics.jsonl")
    checkpoints = _checkpoints(run, log)
    # the last step's weights (the snapshot, then last/), then final/'s average (ema:0.5, not ema:0.9) at the same points
    assert [(c[1], c[2], c[3]) for c in checkpoints] == [
        (1, run / "minutes_0", "last step"), (4, run / "last", "last step"),
        (1, run / "minutes_0_average_ema_0.5", "ema:0.5"), (4, run / "final", "ema:0.5")]
    assert all(c[2].is_dir() for c in checkpoints)
    assert _checkpoints(run, log, last_step=True) == checkpoints[:2]
    # a run without an average: its final/ holds the last step's weights, one curve
    plain = tmp_path / "plain"
    _run(toy_train, plain, "sft.average=null", "sft.snapshot_minutes=[0]")
    assert [c[2:] for c in _checkpoints(plain, read_metrics(plain / "metrics.jsonl"))] == \
        [(plain / "minutes_0", "last step"), (plain / "final", "last step")]
