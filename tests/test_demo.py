"""The demo pipeline end to end on the tiny model (`r1kit demo --quick`): every artefact exists,
loads, and agrees with the metrics and a separate evaluation."""

import json

import pytest

from r1kit.interop.checkpoint import load_pretrained
from r1kit.cli import main
from r1kit.data.schema import load_examples
from r1kit.evaluate import evaluate, pass_at_k, sampled_accuracy
from r1kit.data.tokenizer import Tokenizer
from r1kit.recipes.data import EVAL_SETS, HARD_STEPS, RL_STEPS


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    # an override of a setting --quick also changes: the user's wins
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "sft.warmup_steps=5"]) == 0
    return out


def test_quick_demo_writes_every_artefact(run):
    for ckpt in ("sft/final", "rl/final", "final"):
        model, tok = load_pretrained(run / ckpt), Tokenizer.load(run / ckpt)
        assert model.num_params() > 0 and tok.vocab_size == model.config.vocab_size
    report = (run / "report.md").read_text()
    meta = json.loads((run / "run.json").read_text())
    # the demo's attention is configs/demo.yaml's, dense: no branch gates to plot (a multi-scale model's: below)
    assert meta["configs"]["model"]["attention"]["kind"] == "dense" and "dense attention" in report
    assert not (run / "plots" / "gates.png").exists() and "gates.png" not in report
    for plot in ("sft_loss", "rl_reward", "expert_load", "sft_vs_rl"):
        png = run / "plots" / f"{plot}.png"
        assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG", plot
        assert f"plots/{plot}.png" in report
    assert meta["quick"] and set(meta["minutes_per_stage"]) == {"data", "sft", "sft_eval", "rl", "rl_eval", "report"}
    assert meta["overrides"] == ["sft.warmup_steps=5"] and meta["configs"]["sft"]["warmup_steps"] == 5
    assert "changed by: `sft.warmup_steps=5`" in report
    # RL trains on the harder problems with questions and answers only, and is evaluated on held-out ones
    assert meta["configs"]["rl"]["train_data"] == str(run / "data" / "rl_train.jsonl")
    rl_train, hard = (load_examples(run / "data" / f"{name}.jsonl").examples for name in ("rl_train", "hard"))
    assert all(e.steps == [] and e.answer for e in rl_train) and all(len(e.steps) == HARD_STEPS for e in hard)
    assert {e.optimal_steps for e in hard} == {HARD_STEPS} and not {e.question for e in rl_train} & {e.question for e in hard}
    assert {e.optimal_steps for e in rl_train} <= set(range(RL_STEPS[0], RL_STEPS[1] + 1))
    assert set(json.loads((run / "summary.json").read_text())["stages"]["rl"]) == set(EVAL_SETS)


def test_metrics_and_report_agree_with_a_separate_evaluation(run):
    sft_log = [json.loads(line) for line in (run / "sft" / "metrics.jsonl").read_text().splitlines()]
    rl_log = [json.loads(line) for line in (run / "rl" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in sft_log if "loss" in r]
    assert steps == sorted(steps) and steps[-1] >= 10
    rl_steps = [r["step"] for r in rl_log if "reward" in r]
    assert rl_steps == list(range(1, len(rl_steps) + 1)) and rl_steps
    summary = json.loads((run / "summary.json").read_text())
    assert summary["minutes"]["sft"] > 0 and summary["minutes"]["rl"] > 0
    for name in ("sft", "rl"):
        model, tok = load_pretrained(run / name / "final"), Tokenizer.load(run / name / "final")
        for set_name, file in EVAL_SETS.items():
            saved = json.loads((run / name / file).read_text())
            examples = load_examples(run / "data" / f"{set_name}.jsonl").examples
            again = evaluate(model, tok, examples, batch_size=40, max_new_tokens=64).summary()
            assert again["accuracy"] == saved["accuracy"] and again["step_validity"] == saved["step_validity"]
            assert f"| {name.upper()} | {set_name} | {saved['n']} | {saved['accuracy']:.1%} |" in (run / "report.md").read_text()
            assert summary["stages"][name][set_name] == {"accuracy": saved["accuracy"], "n": saved["n"],
                                                         "step_validity": saved["step_validity"]}


def test_report_states_the_equal_minutes_baseline_beside_the_rl_result(run):
    from r1kit.recipes.report import RL_BASELINE

    text = (run / "report.md").read_text()
    assert "| RL | hard |" in text
    hard = json.loads(RL_BASELINE.read_text())["summary"]["hard"]  # measured, shipped with the repository
    assert f"more minutes of SFT on its own traces gave {hard['b']:.1%}" in text


def test_report_plots_the_gates_of_a_multiscale_model(run, tmp_path):
    """A run of the multi-scale layer (`r1kit demo model.attention.kind=multiscale`) gets the gate
    plot: the quick run's directory with its evaluations redone by a multi-scale model."""
    import shutil

    from r1kit.config import preset
    from r1kit.model.transformer import Transformer
    from r1kit.recipes.report import write_report

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    tok = Tokenizer.load(run / "sft" / "final")
    config = preset("tiny").model_copy(update={"vocab_size": tok.vocab_size, "max_seq_len": 256})
    model = Transformer(config)
    assert model.config.attention.kind == "multiscale"
    examples = load_examples(run / "data" / "test.jsonl").examples[:4]
    summary = evaluate(model, tok, examples, batch_size=4, max_new_tokens=8).summary()
    gates = summary["gate_mean_per_layer"]  # per layer: the mean weight of local, global, symbolic
    assert len(gates) == config.n_layers and all(sum(g) == pytest.approx(1, abs=1e-4) for g in gates)
    for stage in ("sft", "rl"):  # the saved evaluation, with the multi-scale model's figures
        saved = copy / stage / EVAL_SETS["test"]
        saved.write_text(json.dumps({**json.loads(saved.read_text()), **summary}))
    meta = json.loads((copy / "run.json").read_text())
    meta["configs"]["model"] = config.model_dump()
    (copy / "run.json").write_text(json.dumps(meta))
    report = write_report(copy).read_text()
    assert (copy / "plots" / "gates.png").stat().st_size > 1000 and "plots/gates.png" in report
    assert "multi-scale attention (local + global + symbolic, mixed by learned gates)" in report


def test_report_rebuilds_from_saved_metrics(run):
    (run / "report.md").unlink()
    assert main(["report", str(run)]) == 0
    assert "Held-out evaluation" in (run / "report.md").read_text()


def test_claims_pipeline_writes_the_table_and_resumes(tmp_path):
    from r1kit.recipes.claims import RL_RUNS, SFT_RUNS, run_claims

    kwargs = dict(minutes=0.5, doc=tmp_path / "claims.md", n_test=6, n_train=300, progress=False,
                  model={"preset": "tiny", "max_seq_len": 256},
                  sft_changes=dict(vocab_size=256, max_len=256, batch_size=8, lr=1e-2, warmup_steps=2),
                  rl_changes=dict(group_size=2, prompts_per_step=2, max_new_tokens=32))
    doc = run_claims(tmp_path / "runs", **kwargs)
    text = doc.read_text()
    for claim in ("S1:", "S2-S4:", "S11:"):
        assert claim in text
    for name in SFT_RUNS + RL_RUNS:
        assert f"| {name} |" in text
    assert (tmp_path / "claims" / "balancing.png").stat().st_size > 1000
    stamps = {n: (tmp_path / "runs" / n / "result.json").stat().st_mtime_ns for n in SFT_RUNS + RL_RUNS}
    (tmp_path / "runs" / "rl_composite" / "result.json").unlink()  # as if interrupted in the last runs
    run_claims(tmp_path / "runs", **kwargs)
    for name in SFT_RUNS:  # finished runs are kept, not run again
        assert (tmp_path / "runs" / name / "result.json").stat().st_mtime_ns == stamps[name]
    assert (tmp_path / "runs" / "rl_composite" / "result.json").is_file()


def test_pass_at_k_matches_hand_computed_values():
    assert pass_at_k(4, 1, 1) == 0.25
    assert pass_at_k(4, 1, 2) == 0.5  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(5, 2, 3) == pytest.approx(0.9)  # 1 - C(3,3)/C(5,3) = 1 - 1/10
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 4, 1) == 1.0 and pass_at_k(4, 3, 2) == 1.0
    with pytest.raises(ValueError, match="pass@k"):
        pass_at_k(4, 5, 1)


def test_greedy_samples_give_pass_at_k_equal_to_greedy_accuracy(run, monkeypatch):
    """At temperature 0 every sample is the greedy completion, so pass@k for every k must equal the
    greedy evaluation's accuracy. The real verifier finds the quick model right on almost nothing,
    so a stand-in marks a completion right by the parity of its length plus its problem's answer
    digits (the quick model may write equally long text for every problem): the check then compares
    the sampled path's completions with the greedy path's on about half right, half wrong."""
    import dataclasses

    import r1kit.evaluate as evaluate_module

    real_score = evaluate_module.score

    def parity_score(text, answer, **kwargs):
        right = (len(text) + sum(map(ord, str(answer)))) % 2 == 0
        return dataclasses.replace(real_score(text, answer, **kwargs), accuracy=float(right))

    monkeypatch.setattr(evaluate_module, "score", parity_score)
    model, tok = load_pretrained(run / "sft" / "final"), Tokenizer.load(run / "sft" / "final")
    examples = load_examples(run / "data" / "test.jsonl").examples[:24]
    greedy = evaluate(model, tok, examples, batch_size=8, max_new_tokens=48).summary()["accuracy"]
    assert 0 < greedy < 1
    sampled = sampled_accuracy(model, tok, examples, samples=4, temperature=0.0, batch_size=8, max_new_tokens=48)
    assert set(sampled["right_per_problem"]) <= {0, 4}
    assert sampled["pass@1"] == sampled["pass@2"] == sampled["pass@4"] == pytest.approx(greedy)
    # sampling proper: the samples of a problem differ (some problems get some right, some wrong),
    # each pass@k is the unbiased estimator over the problems' counts, and the same seed repeats
    hot = sampled_accuracy(model, tok, examples, samples=4, temperature=1.0, batch_size=8, max_new_tokens=48)
    assert any(0 < c < 4 for c in hot["right_per_problem"])
    for k in (1, 2, 4):
        assert hot[f"pass@{k}"] == pytest.approx(sum(pass_at_k(4, c, k) for c in hot["right_per_problem"]) / len(examples))
    assert sampled_accuracy(model, tok, examples, samples=4, temperature=1.0, batch_size=8, max_new_tokens=48) == hot


def test_demo_result_pairs_a_run_with_another_of_its_seed_and_refuses_other_problems(run, tmp_path):
    """benchmarks/demo_result.py --against: per stage and set, this run's paired difference from the
    other, read from the rows the demo writes; runs of different problems are refused."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]

    def rewrite(path, change):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        change(rows)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return rows

    other = tmp_path / "other"
    shutil.copytree(run, other)
    flipped = rewrite(other / "sft" / "eval_unseen_rows.jsonl", lambda rows: rows[0].update(accuracy=1.0 - rows[0]["accuracy"]))
    results = tmp_path / "variant.json"
    command = [sys.executable, str(root / "benchmarks" / "demo_result.py"), str(run), "--against", str(other), "--results", str(results)]
    subprocess.run(command, check=True, capture_output=True, cwd=root)
    figures = json.loads(results.read_text())
    assert figures["overrides"] == ["sft.warmup_steps=5"] and figures["model"]["n_layers"] >= 1
    pairs = figures["against"]["paired"]
    assert set(pairs) == {"sft", "rl"} and set(pairs["sft"]) == set(EVAL_SETS)
    mine = 1.0 - flipped[0]["accuracy"]  # the run's own row 0
    assert pairs["sft"]["unseen"]["diff"] == pytest.approx((mine - flipped[0]["accuracy"]) / len(flipped))
    assert all(d["diff"] == 0 for stage, sets in pairs.items() for name, d in sets.items() if (stage, name) != ("sft", "unseen"))
    for name, change in figures["rl_minus_sft"].items():  # GRPO's change within the run, set by set
        assert change["diff"] == pytest.approx(figures["sets"]["rl"][name]["accuracy"] - figures["sets"]["sft"][name]["accuracy"])

    rewrite(other / "rl" / "eval_rows.jsonl", lambda rows: rows[0].update(question=rows[0]["question"] + " Then?"))
    results.unlink()
    failed = subprocess.run(command, capture_output=True, text=True, cwd=root)
    assert failed.returncode != 0 and "evaluated different test problems" in failed.stderr
    assert not results.exists()
