"""SFT: batches and masks, schedule, real learning on a toy set, exact resume, evaluation."""

import json
from pathlib import Path

import pytest
import torch

from r1kit.interop.checkpoint import load_pretrained
from r1kit.cli import main
from r1kit.data.schema import load_examples, read_metrics, write_jsonl
from r1kit.evaluate import evaluate
from r1kit.data.synth import synth
from r1kit.train import loop as loop_module
from r1kit.train.loop import batch_indices, out_of_time
from r1kit.data.schema import Example
from r1kit.train.sft import SFTConfig, decayed_lr, load_run_config, make_batch, reasoning_text, train_sft
from r1kit.data.tokenizer import Tokenizer

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_jsonl(root / "train.jsonl", synth(64, seed=0, steps=1, max_operand=10, templates=["stickers", "temperature"]))
    write_jsonl(root / "test.jsonl", synth(8, seed=1, steps=1, max_operand=10, templates=["stickers"]))
    return root


def _configs(toy_data, out, *extra):
    return load_run_config(TINY, [f"sft.train_data={toy_data / 'train.jsonl'}", f"sft.eval_data={toy_data / 'test.jsonl'}",
                                  f"sft.out_dir={out}", *extra])


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_batches_mask_prompt_and_padding():
    encoded = [([1, 2, 3, 4, 5], 3), ([1, 2, 6], 2)]
    inputs, targets, weights = make_batch(encoded, [0, 1], pad_id=0, prompt_weight=0.0)
    assert inputs.tolist() == [[1, 2, 3, 4], [1, 2, 6, 0]]
    assert targets.tolist() == [[2, 3, 4, 5], [2, 6, 0, 0]]
    # targets 4, 5 (response) and 6 (response) count; prompt targets and padding do not
    assert weights.tolist() == [[0, 0, 1, 1], [0, 1, 0, 0]]
    _, _, weights = make_batch(encoded, [0, 1], pad_id=0, prompt_weight=0.25)
    assert weights.tolist() == [[0.25, 0.25, 1, 1], [0.25, 1, 0, 0]]


def test_operands_first_trace_names_what_the_steps_read_before_computing():
    # a product, then a sum of a stated number and an earlier result, then a division
    ex = Example("q", ["4 * 70 = 280", "9 + 280 = 289", "289 / 17 = 17"], "17", 3)
    assert reasoning_text(ex) == "4 * 70 = 280\n9 + 280 = 289\n289 / 17 = 17"
    assert reasoning_text(ex, "operands_first") == "Given: 4, 70, 9, 17\n4 * 70 = 280\n9 + 280 = 289\n289 / 17 = 17"
    # the line is prose to the verifier: the completion's steps are the same
    from r1kit.reward.steps import extract_steps
    assert [s.value for s in extract_steps(reasoning_text(ex, "operands_first"))] == ["280", "289", "17"]


@pytest.mark.parametrize("window", [1, 4])
def test_batch_order_is_a_function_of_step_covering_each_epoch(window):
    lengths = [7, 3, 9, 1, 5, 8, 2, 6, 4, 10, 11, 12]
    epoch = [i for s in range(4) for i in batch_indices(lengths, 3, s, seed=3, window=window)]
    assert sorted(epoch) == list(range(12))  # 4 micro-batches of 3 cover the 12 examples once
    assert batch_indices(lengths, 3, 7, seed=3, window=window) == batch_indices(lengths, 3, 7, seed=3, window=window)
    assert batch_indices(lengths, 3, 0, seed=3, window=window) != batch_indices(lengths, 3, 0, seed=4, window=window)
    if window > 1:  # within a window, batches hold examples of similar length
        batches = [batch_indices(lengths, 3, s, seed=3, window=window) for s in range(4)]
        spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches)
        assert all(hi < next_lo for (_, hi), (next_lo, _) in zip(spans, spans[1:]))


def test_schedule_warms_up_then_decays_to_floor():
    cfg = SFTConfig(train_data="x", lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert decayed_lr(0, cfg) == pytest.approx(0.1) and decayed_lr(9, cfg) == pytest.approx(1.0)
    assert decayed_lr(60, cfg) == pytest.approx(0.55) and decayed_lr(110, cfg) == pytest.approx(0.1)
    assert all(decayed_lr(s, cfg) >= decayed_lr(s + 1, cfg) for s in range(10, 110))
    # cosine sits above the straight line in the first half of the decay, below it in the second
    linear = cfg.model_copy(update={"schedule": "linear", "min_lr_ratio": 0.0})
    assert decayed_lr(35, linear) == pytest.approx(0.75) and decayed_lr(110, linear) == 0.0
    assert decayed_lr(35, cfg) > 0.1 + 0.9 * 0.75 and decayed_lr(85, cfg) < 0.1 + 0.9 * 0.25


def test_schedule_can_decay_over_the_time_budget():
    cfg = SFTConfig(train_data="x", lr=1.0, warmup_steps=10, max_steps=10**6, max_minutes=2, min_lr_ratio=0.1, decay_by="minutes")
    assert decayed_lr(5, cfg, train_seconds=50) == pytest.approx(0.6)  # warm-up still counts steps
    # the step count no longer matters after warm-up; the share of the 120 s budget does
    assert decayed_lr(20, cfg, train_seconds=60) == decayed_lr(5000, cfg, train_seconds=60) == pytest.approx(0.55)
    assert decayed_lr(20, cfg, train_seconds=120) == pytest.approx(0.1) == decayed_lr(20, cfg, train_seconds=500)
    with pytest.raises(ValueError, match="max_minutes"):
        SFTConfig(train_data="x", decay_by="minutes")


def test_muon_lr_without_muon_is_an_error():
    with pytest.raises(ValueError, match="no Muon group"):
        load_run_config(TINY, ["sft.train_data=x", "sft.optimizer=adamw", "sft.muon_lr=1e-2"])


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_tiny_model_learns_the_toy_set(toy_data, tmp_path, optimizer):
    model_cfg, cfg = _configs(toy_data, tmp_path / "run", "sft.max_steps=60", f"sft.optimizer={optimizer}")
    final = train_sft(model_cfg, cfg, progress=False)
    losses = _losses(tmp_path / "run")
    # cross-entropy on response tokens starts near ln(vocab) ~ 5 and must fall at least 3x
    assert losses[0] > 3.0 and losses[-1] < losses[0] / 3, losses
    model, tok = load_pretrained(final), Tokenizer.load(final)
    assert torch.equal(model.symbol_flags_V, torch.tensor(tok.symbol_flags()))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "eval_accuracy" in records[-1] and "utilisation" in records[-2]


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_reproduces_the_uninterrupted_run(toy_data, tmp_path, optimizer):
    extra = ("model.layer_drop=0.2", "sft.eval_data=null", f"sft.optimizer={optimizer}")
    model_cfg, cfg = _configs(toy_data, tmp_path / "full", *extra)
    train_sft(model_cfg, cfg, progress=False)
    full = _losses(tmp_path / "full")

    model_cfg, cfg = _configs(toy_data, tmp_path / "split", *extra)
    train_sft(model_cfg, cfg, progress=False, stop_at=20)  # interrupted after step 20
    assert not (tmp_path / "split" / "final").exists()
    train_sft(model_cfg, cfg, resume=True, progress=False)
    assert _losses(tmp_path / "split") == full
    a, b = load_pretrained(tmp_path / "full" / "final"), load_pretrained(tmp_path / "split" / "final")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    # training time carries over the interruption (max_minutes and snapshots count from the start)
    minutes = [r["train_minutes"] for r in read_metrics(tmp_path / "split" / "metrics.jsonl") if "train_minutes" in r]
    assert minutes == sorted(minutes) and len(minutes) > 2


def test_init_continues_from_a_checkpoint_with_its_model_and_tokenizer(toy_data, tmp_path):
    model_cfg, cfg = _configs(toy_data, tmp_path / "first", "sft.eval_data=null", "sft.max_steps=40")
    first = train_sft(model_cfg, cfg, progress=False)
    # sft.init: the model and tokenizer are the checkpoint's, so a model: section is refused
    with pytest.raises(ValueError, match="brings its own model"):
        _configs(toy_data, tmp_path / "x", f"sft.init={first}")
    with pytest.raises(ValueError, match="tokenizer"):
        load_run_config(None, [f"sft.train_data={toy_data / 'train.jsonl'}", f"sft.init={first}", "sft.tokenizer=somewhere"])
    model_cfg, cfg = load_run_config(None, [f"sft.train_data={toy_data / 'train.jsonl'}", "sft.eval_data=null", "sft.max_steps=5",
                                            "sft.warmup_steps=0", "sft.lr=1e-9", f"sft.out_dir={tmp_path / 'more'}", f"sft.init={first}"])
    assert model_cfg == load_pretrained(first).config
    more = train_sft(model_cfg, cfg, progress=False)
    # at a vanishing rate the continued run's losses are the first run's end, not a fresh start's
    fresh, continued = _losses(tmp_path / "first"), _losses(tmp_path / "more")
    assert continued[0] < fresh[0] / 2 and abs(continued[0] - fresh[-1]) < 0.5 * fresh[-1], (fresh, continued)
    assert (more / "tokenizer.json").read_bytes() == (first / "tokenizer.json").read_bytes()


def test_snapshots_keep_the_weights_at_given_minutes(toy_data, tmp_path):
    model_cfg, cfg = _configs(toy_data, tmp_path / "run", "sft.eval_data=null", "sft.max_steps=5",
                              "sft.snapshot_minutes=[0, 1000]")
    final = train_sft(model_cfg, cfg, progress=False)
    events = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r.get("event") == "snapshot"]
    assert [(e["step"], e["minutes"]) for e in events] == [(1, 0)]  # 1000 minutes never came
    assert not (tmp_path / "run" / "minutes_1000").exists()
    snap = load_pretrained(tmp_path / "run" / "minutes_0")
    assert Tokenizer.load(tmp_path / "run" / "minutes_0").vocab_size == snap.config.vocab_size
    # taken after step 1, so it differs from the final weights
    assert any(not torch.equal(x, y) for x, y in zip(snap.state_dict().values(), load_pretrained(final).state_dict().values()))


def test_cli_train_then_eval(toy_data, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["train", "sft", "--config", TINY, "--no-progress", f"sft.train_data={toy_data / 'train.jsonl'}",
                 f"sft.eval_data={toy_data / 'test.jsonl'}", f"sft.out_dir={out}", "sft.max_steps=10"]) == 0
    assert main(["eval", str(out / "final"), "--data", str(toy_data / "test.jsonl"), "--n", "4",
                 "--out", str(tmp_path / "eval.json"), "--max-new-tokens", "32"]) == 0
    summary = json.loads((tmp_path / "eval.json").read_text())
    # the command's figures are evaluate()'s on the same checkpoint and the first 4 problems
    model, tok = load_pretrained(out / "final"), Tokenizer.load(out / "final")
    direct = evaluate(model, tok, load_examples(toy_data / "test.jsonl").examples[:4], max_new_tokens=32).summary()
    assert summary["n"] == 4 and len(summary["utilisation_per_layer"]) == 2
    assert {k: summary[k] for k in ("accuracy", "step_validity", "mean_steps")} == {k: direct[k] for k in ("accuracy", "step_validity", "mean_steps")}
    printed = capsys.readouterr().out
    assert f"accuracy {summary['accuracy']:.4f}".split() == next(l.split() for l in printed.splitlines() if l.split()[:1] == ["accuracy"])
    # several sets side by side (one of dialogues' follow-ups): each the same as alone
    from r1kit.data.schema import write_jsonl
    from r1kit.data.synth import synth
    from r1kit.data.synth.grammar import FOLLOW_UP

    follow_ups = tmp_path / "follow_up.jsonl"
    write_jsonl(follow_ups, synth(3, 0, steps=1, templates=[FOLLOW_UP["unseen"]]))
    assert main(["eval", str(out / "final"), "--data", str(toy_data / "test.jsonl"), str(follow_ups), "--n", "4",
                 "--out", str(tmp_path / "both.json"), "--max-new-tokens", "32"]) == 0
    both = json.loads((tmp_path / "both.json").read_text())["sets"]
    assert both[str(toy_data / "test.jsonl")]["accuracy"] == summary["accuracy"] and both[str(follow_ups)]["n"] == 3
    assert "accuracy: " in capsys.readouterr().out


def test_config_sections_and_overrides_are_validated():
    with pytest.raises(ValueError, match="must name their section"):
        load_run_config(TINY, ["lr=1"])
    with pytest.raises(ValueError, match="unknown key 'sft.learning_rate'"):
        load_run_config(TINY, ["sft.learning_rate=1"])


def test_max_minutes_is_a_budget_no_step_overruns():
    cfg = SFTConfig(train_data="x", max_minutes=1, max_steps=1000, eval_every=0, save_every=1000)
    assert not out_of_time(cfg, 55.0, 4.0)  # the next 4-second step ends at 59 s, within the minute
    assert out_of_time(cfg, 57.0, 4.0)  # it would end at 61 s: stop now, at 57
    assert not out_of_time(cfg, 59.9, 0.05) and not out_of_time(cfg, 60.0, 0.0) and out_of_time(cfg, 60.1, 0.0)
    assert not out_of_time(cfg.model_copy(update={"max_minutes": None}), 1e9, 1e9)  # no budget, never out of time


def test_a_minutes_schedule_ends_with_the_budget_and_muon_lr_reaches_its_group(toy_data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    model_cfg, cfg = _configs(toy_data, out, "sft.max_minutes=0.1", "sft.decay_by=minutes", "sft.max_steps=100000",
                              "sft.optimizer=muon", "sft.muon_lr=2e-2", "sft.eval_data=null", "sft.log_every=1",
                              "sft.warmup_steps=2")
    # a scripted training clock: steps of these lengths in turn, so the test checks the stop rule
    # exactly and no load on the machine can change it (the real clock is time.perf_counter)
    lengths = [0.4, 0.9, 0.5, 0.7, 0.3, 1.1]
    calls = iter(range(10**6))

    def scripted_clock() -> float:
        i = next(calls)  # two calls a step: before and after it
        return sum(lengths[k % len(lengths)] for k in range(i // 2)) + (lengths[(i // 2) % len(lengths)] if i % 2 else 0.0)

    monkeypatch.setattr(loop_module, "training_clock", scripted_clock)
    train_sft(model_cfg, cfg, progress=False)
    log = [r for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    # the rule, replayed: a step starts only if the time so far plus the longest step so far fit the budget
    expected, elapsed, longest = 0, 0.0, 0.0
    while True:
        step = lengths[expected % len(lengths)]
        expected, elapsed, longest = expected + 1, elapsed + step, max(longest, step)
        if out_of_time(cfg, elapsed, longest):
            break
    assert [r["step"] for r in log] == list(range(1, expected + 1)) and expected > cfg.warmup_steps + 2
    assert log[-1]["train_minutes"] * 60 == pytest.approx(elapsed) and elapsed <= cfg.max_minutes * 60
    lrs = [r["lr"] for r in log]
    assert all(a >= b for a, b in zip(lrs[cfg.warmup_steps:], lrs[cfg.warmup_steps + 1:]))
    # each step's rate is the schedule at the training time before it (log_every=1: the record
    # before holds that time)
    seconds_before = [0.0] + [r["train_minutes"] * 60 for r in log[:-1]]
    for r, t in zip(log, seconds_before):
        assert r["lr"] == pytest.approx(decayed_lr(r["step"] - 1, cfg, t), rel=1e-6)
    assert lrs[-1] < lrs[cfg.warmup_steps]  # and the rate had decayed from its peak
    meta = json.loads((out / "last" / "trainer_state" / "state.json").read_text())
    muon_group = next(g for g in meta["param_groups"] if g["use_muon"])
    assert muon_group["lr"] == pytest.approx(lrs[-1] * 2e-2 / cfg.lr)


def test_the_kernel_is_built_before_the_training_clock_starts(toy_data, tmp_path, monkeypatch):
    """A first compile of the fused kernel takes ~40 s: it must not eat a clock-scheduled budget."""
    from r1kit.model.transformer import Transformer

    clock_calls, built_at = [], []
    monkeypatch.setattr(loop_module, "training_clock", lambda: clock_calls.append(1) or float(len(clock_calls)))
    monkeypatch.setattr(Transformer, "build_kernels", lambda self: built_at.append(len(clock_calls)))
    model_cfg, cfg = _configs(toy_data, tmp_path / "run", "sft.max_steps=2", "sft.eval_data=null")
    train_sft(model_cfg, cfg, progress=False)
    assert built_at == [0] and len(clock_calls) == 4  # built once, before the first of two timed steps
