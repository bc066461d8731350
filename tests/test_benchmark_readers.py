"""The benchmarks that read r1kit eval's files: gate_mix.py (the multi-scale gate's branch weights) and
phrasing_seeds.py (every set's rows)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_gate_mix_reads_what_evaluation_writes_and_a_branch_left_out_weighs_nothing():
    from gate_mix import gate_mix

    from r1kit.config import preset
    from r1kit.data.schema import Example
    from r1kit.data.tokenizer import Tokenizer
    from r1kit.evaluate import evaluate
    from r1kit.train.sft import model_for_tokenizer

    tok = Tokenizer.train(["Tom has 12 apples and buys 7 more. How many?", "12 + 7 = 19\n</think>\n#### 19"] * 20, vocab_size=160)
    examples = [Example(question=f"Tom has {n} apples and buys 7 more. How many?", steps=[f"{n} + 7 = {n + 7}"], answer=str(n + 7), optimal_steps=1)
                for n in (3, 12, 40)]
    sets = {}
    for name, attention in {"two": {"branches": ["local", "global"]}, "three": {}, "dense": {"kind": "dense"}}.items():
        cfg = preset("tiny")
        model = model_for_tokenizer(cfg.model_copy(update={"attention": cfg.attention.model_copy(update=attention)}), tok)
        sets[name] = evaluate(model, tok, examples, batch_size=2, max_new_tokens=8).summary()
    mix = gate_mix({"sets": sets})
    assert set(mix) == {"two", "three"}  # dense attention has no gate
    for name, m in mix.items():
        assert len(m["per_layer"]) == preset("tiny").n_layers
        for layer in m["per_layer"]:
            assert sum(layer.values()) == pytest.approx(1.0, abs=1e-5)
        assert m["mean"]["global"] == pytest.approx(sum(layer["global"] for layer in m["per_layer"]) / len(m["per_layer"]))
    assert all(layer["symbolic"] == 0 for layer in mix["two"]["per_layer"])
    assert all(layer["symbolic"] > 0 for layer in mix["three"]["per_layer"])


def test_phrasing_seeds_reads_every_sets_rows_by_the_file_they_came_from(tmp_path):
    """benchmarks/phrasing_seeds.py pairs the in-template and follow-up sets from RUN/rows[_NAME].jsonl,
    whose rows name their data file; a run without that file is left unpaired there."""
    import json

    from phrasing_seeds import rows_by_set

    rows = [{"data": f"runs/x/{name}.jsonl", "question": f"{name} {i}", "accuracy": float(i % 2)}
            for name in ("test", "unseen", "follow_up") for i in range(3)]
    (tmp_path / "rows_final.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    by_set = rows_by_set(f"{tmp_path}@final")
    assert list(by_set) == ["test", "unseen", "follow_up"]
    assert all([r["question"] for r in by_set[name]] == [f"{name} {i}" for i in range(3)] for name in by_set)
    assert rows_by_set(str(tmp_path)) is None  # RUN/rows.jsonl is absent


def test_phrasings_result_pairs_a_run_with_the_demos_sft_on_each_set_it_was_evaluated_on(tmp_path):
    """benchmarks/phrasings_result.py --against-demo: the run's rows (one file over several of the
    demo's sets) against the demo's SFT rows of the same set, problem by problem."""
    import json

    from phrasings_result import against_demo

    demo = tmp_path / "demo"
    (demo / "sft").mkdir(parents=True)

    def write(path, rows):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    theirs = {name: [{"question": f"{name} {i}", "accuracy": 0.0} for i in range(4)] for name in ("test", "unseen")}
    write(demo / "sft" / "eval_rows.jsonl", theirs["test"])
    write(demo / "sft" / "eval_unseen_rows.jsonl", theirs["unseen"])
    # the run: all of test right, half of unseen; no follow_up rows, so that set is left out
    mine = [{**r, "accuracy": 1.0, "data": str(demo / "data" / "test.jsonl")} for r in theirs["test"]]
    mine += [{**r, "accuracy": float(i % 2), "data": str(demo / "data" / "unseen.jsonl")} for i, r in enumerate(theirs["unseen"])]
    write(tmp_path / "rows.jsonl", mine)
    result = against_demo(tmp_path / "rows.jsonl", demo)
    assert list(result) == ["test", "unseen"]
    assert result["test"]["diff"] == 1.0 and result["unseen"]["diff"] == 0.5 and result["unseen"]["n"] == 4
    write(tmp_path / "shuffled.jsonl", mine[::-1])  # other problems in each place: refused, not paired
    with pytest.raises(AssertionError, match="same problems"):
        against_demo(tmp_path / "shuffled.jsonl", demo)


def test_gate_mix_names_a_file_that_is_not_an_evaluation_and_writes_nothing(tmp_path):
    import subprocess

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gate_mix.py"
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"a": 1}\n{"a": 2}\n')
    other = tmp_path / "other.json"
    other.write_text('{"runs": {}}')
    results = tmp_path / "out.json"
    for bad, why in ((rows, "cannot read it as JSON"), (other, "is not an r1kit eval --out file"),
                     (tmp_path / "missing.json", "No such file")):
        done = subprocess.run([sys.executable, str(script), str(bad), "--results", str(results)], capture_output=True, text=True)
        assert done.returncode == 2 and str(bad) in done.stderr and why in done.stderr
        assert not results.exists()
