"""A run never clobbers another, and survives being killed: a non-empty out_dir needs --resume or
--overwrite; a resume with other settings is refused, naming them; kill -9 between saves (and
mid-way through a metrics line), then --resume, gives the uninterrupted run's losses bit for bit."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from r1kit.cli import main
from r1kit.data.schema import read_metrics, write_jsonl
from r1kit.data.synth import synth
from r1kit.train.loop import truncate_metrics

ROOT = Path(__file__).resolve().parents[1]
TINY, RL_TINY = str(ROOT / "configs" / "tiny.yaml"), str(ROOT / "configs" / "rl_tiny.yaml")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_jsonl(root / "train.jsonl", synth(48, seed=0, steps=1, max_operand=10, templates=["stickers", "temperature"]))
    return root / "train.jsonl"


def _sft(data, out, *extra):
    return ["train", "sft", "--config", TINY, "--no-progress", f"sft.train_data={data}", "sft.eval_data=null",
            f"sft.out_dir={out}", "sft.max_steps=12", "sft.save_every=5", "sft.log_every=1", "sft.grad_accum=2",
            "sft.batch_size=8", "model.attention.chunk_size=256", *extra]  # one chunk: training takes the fused kernel


def _losses(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(out / "metrics.jsonl") if "loss" in r]


def test_a_new_run_refuses_a_non_empty_out_dir_and_overwrite_starts_clean(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_sft(data, out, "sft.max_steps=3", "sft.snapshot_minutes=[0]")) == 0
    (out / "my_notes.txt").write_text("keep me")
    before = (out / "metrics.jsonl").read_text()
    assert main(_sft(data, out, "sft.max_steps=3")) == 2
    assert "is not empty: --resume continues" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_text() == before  # nothing touched

    assert main(_sft(data, out, "sft.max_steps=3", "--overwrite")) == 0
    assert not (out / "minutes_0").exists()  # the earlier run's snapshot cannot pass for this run's
    assert (out / "my_notes.txt").read_text() == "keep me" and (out / "final").is_dir()
    assert sum(r.get("event") == "start" for r in read_metrics(out / "metrics.jsonl")) == 1


def test_the_demo_refuses_a_non_empty_out_before_any_work(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "data.jsonl").write_text("mine")
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 2
    assert "--overwrite replaces that run" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["data.jsonl"]


def test_a_resume_with_other_settings_is_refused_naming_them(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_sft(data, out, "sft.max_steps=6")) == 0
    assert main(_sft(data, out, "sft.max_steps=6", "sft.lr=2e-2", "--resume")) == 2
    assert "sft.lr: 0.01 -> 0.02" in capsys.readouterr().err
    assert main(_sft(data, out, "sft.max_steps=6", "model.dim=64", "--resume")) == 2
    assert "model.dim: 32 -> 64" in capsys.readouterr().err


def test_a_metrics_line_cut_by_a_crash_is_dropped_and_damage_elsewhere_is_named(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"event": "start"}\n{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    assert read_metrics(path) == [{"event": "start"}, {"step": 1, "loss": 2.0}]  # reports of a killed run work
    truncate_metrics(path, 5)
    assert path.read_text() == '{"event": "start"}\n{"step": 1, "loss": 2.0}\n'
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON line"):
        truncate_metrics(path, 5)
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not valid JSON"):
        read_metrics(path)


# A child process runs the real CLI and is killed (SIGKILL) right after it has written the metric
# line of step KILL_AT and half of the next one: between two saves, mid-write.
_KILLED_RUN = """
import os, signal, sys
from r1kit.cli import main
from r1kit.train import loop
kill_at, real_log = int(sys.argv[1]), loop.log_metrics
def log_then_die(path, record):
    real_log(path, record)
    if record.get("step") == kill_at and "loss" in record:
        with open(path, "a") as f:
            f.write('{"step": %d, "lo' % (kill_at + 1))
        os.kill(os.getpid(), signal.SIGKILL)
loop.log_metrics = log_then_die
main(sys.argv[2:])
"""


def _killed(kill_at: int, argv: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(kill_at), *argv], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def test_sft_killed_between_saves_resumes_to_the_uninterrupted_losses(data, tmp_path):
    assert main(_sft(data, tmp_path / "full")) == 0
    _killed(8, _sft(data, tmp_path / "split"))  # last/ holds step 5; steps 6-8 are logged, then cut
    assert json.loads((tmp_path / "split" / "last" / "trainer_state" / "state.json").read_text())["step"] == 5
    assert main(_sft(data, tmp_path / "split", "--resume")) == 0
    assert _losses(tmp_path / "split") == _losses(tmp_path / "full")
    steps = [s for s, _ in _losses(tmp_path / "split")]
    assert steps == list(range(1, 13))  # no step repeated, none skipped


def test_grpo_killed_between_saves_resumes_to_the_uninterrupted_rewards(data, tmp_path):
    assert main(_sft(data, tmp_path / "sft", "sft.max_steps=3")) == 0
    init = str(tmp_path / "sft" / "final")

    def rl(out, *extra):
        return ["train", "rl", "--init", init, "--config", RL_TINY, "--no-progress", f"rl.train_data={data}",
                "rl.eval_data=null", f"rl.out_dir={out}", "rl.max_steps=5", "rl.save_every=2", *extra]

    assert main(rl(tmp_path / "full")) == 0
    _killed(3, rl(tmp_path / "split"))
    assert main(rl(tmp_path / "split", "--resume")) == 0
    keys = ("step", "reward", "loss")
    full = [[r.get(k) for k in keys] for r in read_metrics(tmp_path / "full" / "metrics.jsonl") if "reward" in r]
    split = [[r.get(k) for k in keys] for r in read_metrics(tmp_path / "split" / "metrics.jsonl") if "reward" in r]
    assert split == full and [r[0] for r in split] == [1, 2, 3, 4, 5]


def test_a_clock_scheduled_run_killed_between_saves_continues_from_the_saved_step_and_clock(data, tmp_path):
    """With decay_by=minutes losses depend on timing, so no bit-equality: the resumed run goes on
    from the saved step and training time, and logs every step exactly once."""
    out = tmp_path / "run"
    clock = ["sft.decay_by=minutes", "sft.max_minutes=0.25", "sft.max_steps=40", "sft.warmup_steps=2"]
    _killed(8, _sft(data, out, *clock))  # saved at step 5
    saved = read_metrics(out / "metrics.jsonl")
    minutes_at_5 = next(r["train_minutes"] for r in saved if r.get("step") == 5 and "loss" in r)
    assert main(_sft(data, out, *clock, "--resume")) == 0
    log = read_metrics(out / "metrics.jsonl")
    steps = [r["step"] for r in log if "loss" in r]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) > 5  # none repeated, none skipped
    resumed = next(r for r in log if r.get("event") == "resume")
    assert resumed["step"] == 5
    minutes = [r["train_minutes"] for r in log if "loss" in r]
    assert minutes == sorted(minutes) and minutes[5] > minutes_at_5  # the clock went on from step 5's time


def test_these_runs_train_through_the_fused_kernel(monkeypatch):
    """The resume tests above use one attention chunk, so their training forwards take the fused
    multi-scale kernel (where it builds) and exact resume is checked on the path training uses."""
    import torch

    from r1kit.config import load_model_config
    from r1kit.model.kernels import multiscale as kernel
    from r1kit.model.transformer import Transformer

    if not kernel.available():
        pytest.skip(f"the fused kernel is not built here: {kernel.unavailable_reason()}")
    calls = []
    real = kernel.fused_multiscale_attention
    monkeypatch.setattr(kernel, "fused_multiscale_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = Transformer(load_model_config(TINY, ["attention.chunk_size=256"])).train()
    model(torch.randint(0, 64, (2, 60))).sum().backward()
    assert len(calls) == model.config.n_layers
