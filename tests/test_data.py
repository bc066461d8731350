"""r1kit.data.schema: the synthetic generator's guarantees (exact, grounded, minimal, within the knobs,
deterministic), train/test disjointness, the GSM8K mapping, and JSONL errors."""

import json
import os
import random
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from r1kit.data import schema as data, synth
from r1kit.cli import main
from r1kit.data.schema import DataError, Example

GSM8K = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "gsm8k" / "train.jsonl"
STEP = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)")  # `a op b = c`, single spaces, plain integers
NUMBER = re.compile(r"\d+(?:\.\d+)?")
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}


def check_example(ex: Example, max_operand: int) -> None:
    """Every guarantee the generator makes about one problem."""
    stated = [Fraction(x) for x in NUMBER.findall(ex.question)]
    known = set(stated)
    parsed = []
    for step in ex.steps:
        m = STEP.fullmatch(step)
        assert m, f"step {step!r} is not `a op b = c`"
        a, op, b, c = Fraction(m[1]), m[2], Fraction(m[3]), Fraction(m[4])
        assert OPS[op](a, b) == c, f"{step} is wrong"
        assert a in known and b in known, f"{step}: operand neither in the question nor an earlier result\n{ex.question}"
        assert c >= 1
        known.add(c)
        parsed.append((a, b, c))
    # minimal: every result but the last is an operand of a later step
    for i, (_, _, c) in enumerate(parsed[:-1]):
        assert any(c in (a, b) for a, b, _ in parsed[i + 1:]), f"result {c} of step {i + 1} is never used: {ex.steps}"
    assert ex.answer == str(parsed[-1][2])
    assert ex.optimal_steps == len(ex.steps) == ex.meta["n_steps"]
    facts = set(ex.meta["facts"])
    assert all(x <= max_operand or x in facts for x in stated), f"a number above {max_operand}: {ex.question}"
    assert all(c <= max([max_operand, *facts]) ** 2 for _, _, c in parsed)
    assert "," not in "".join(NUMBER.findall(ex.question))


def test_same_seed_same_problems_and_global_rng_untouched():
    state = random.getstate()
    a = [e.to_json() for e in synth.synth(60, seed=3)]
    assert random.getstate() == state
    assert a == [e.to_json() for e in synth.synth(60, seed=3)]
    assert a != [e.to_json() for e in synth.synth(60, seed=4)]


def test_every_template_makes_every_step_count_it_declares_exactly_and_grounded():
    assert len(synth.TEMPLATES) >= 20
    for max_operand in (100, 1000):
        for name, template in synth.TEMPLATES.items():
            for k in template.steps:
                examples = synth.synth(6, seed=k, steps=k, max_operand=max_operand, templates=[name])
                for ex in examples:
                    assert ex.meta["template"] == name
                    check_example(ex, max_operand)


def test_default_mix_uses_at_least_20_templates_and_questions_are_distinct():
    examples = synth.synth(1500, seed=0)
    assert len({e.meta["template"] for e in examples}) >= 20
    assert len({data.question_hash(e.question) for e in examples}) == len(examples)
    assert Counter(len(e.steps) for e in examples).keys() == {1, 2, 3, 4, 5, 6}
    for ex in examples:
        check_example(ex, 100)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
def test_requested_step_count_is_respected(k):
    examples = synth.synth(40, seed=k, steps=k)
    assert {len(e.steps) for e in examples} == {k}
    assert len({e.meta["template"] for e in examples}) > 1


def test_step_range_forms():
    assert {len(e.steps) for e in synth.synth(80, seed=1, steps=(2, 3))} == {2, 3}
    assert {len(e.steps) for e in synth.synth(80, seed=1, steps=range(4, 6))} == {4, 5}
    for bad in (0, 7, (3, 2), (0, 2), "2-3", True):
        with pytest.raises(ValueError, match="steps"):
            synth.synth(5, seed=0, steps=bad)


@pytest.mark.parametrize("max_operand", [10, 100, 1000])
def test_max_operand_bounds_every_drawn_number(max_operand):
    examples = synth.synth(400, seed=7, max_operand=max_operand)
    for ex in examples:
        check_example(ex, max_operand)
    drawn = [int(x) for e in examples for x in NUMBER.findall(e.question) if int(x) not in e.meta["facts"]]
    assert max(drawn) > max_operand // 2, "the knob should reach up to its bound, not just stay below it"


def test_bad_knobs_fail_clearly():
    with pytest.raises(ValueError, match="max_operand"):
        synth.synth(5, seed=0, max_operand=5)
    with pytest.raises(ValueError, match="unknown template"):
        synth.synth(5, seed=0, templates=["shopping", "ages"])
    with pytest.raises(ValueError, match=r"\[1\]-step"):
        synth.synth(5, seed=0, steps=1, templates=["percent_of"])
    with pytest.raises(ValueError, match="distinct"):  # 10-bounded percentages: only a handful exist
        synth.synth(50, seed=0, steps=2, max_operand=10, templates=["percent_of"])


def test_question_hash_normalises_case_and_whitespace():
    assert data.question_hash("Ana has  3 pens.\n") == data.question_hash("ana has 3 pens.")
    assert data.question_hash("Ana has 3 pens.") != data.question_hash("Ana has 4 pens.")


def test_train_and_test_share_no_question():
    # a small problem space (1-step, numbers up to 10), so collisions happen and must be excluded
    knobs = dict(steps=1, max_operand=10)
    train, test = synth.synth_splits(1500, 300, seed=0, **knobs)
    assert (len(train), len(test)) == (1500, 300)
    train_hashes = {data.question_hash(e.question) for e in train}
    test_hashes = {data.question_hash(e.question) for e in test}
    assert len(train_hashes) == 1500 and len(test_hashes) == 300
    assert not train_hashes & test_hashes
    unfiltered = {data.question_hash(e.question) for e in synth.synth(1500, seed=0, **knobs)}
    assert unfiltered & test_hashes, "this space should produce collisions, or the test proves nothing"
    # the test set does not depend on how much training data is asked for
    assert [e.question for e in synth.synth_splits(10, 300, seed=0, **knobs)[1]] == [e.question for e in test]


def test_gsm8k_loader_maps_every_row():
    if not GSM8K.is_file():
        pytest.skip(f"GSM8K training file not found at {GSM8K}")
    raw = [json.loads(line) for line in GSM8K.read_text().splitlines() if line.strip()]
    examples = data.load_gsm8k(GSM8K)
    assert len(examples) == len(raw) == 7473
    for row, ex in zip(raw, examples):
        annotations = re.findall(r"<<([^<>]*)>>", row["answer"])
        assert len(ex.steps) == len(annotations)
        if annotations:
            assert ex.optimal_steps == len(annotations) and ex.meta["optimal_steps_from"] == "annotations"
        else:
            assert ex.optimal_steps >= 1 and ex.meta["optimal_steps_from"] == "lines"
        assert ex.answer == row["answer"].split("####")[-1].strip().replace(",", "")
        assert ex.question == row["question"].strip()
    assert examples[0].steps == ["48/2 = 24", "48+24 = 72"]
    assert (examples[0].answer, examples[0].optimal_steps) == ("72", 2)
    assert sum(ex.meta["optimal_steps_from"] == "lines" for ex in examples) == 95
    assert data.load_examples(GSM8K).examples[5].to_json() == examples[5].to_json()


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


GOOD = json.dumps({"question": "Ana has 3 bags of 4 pens. How many pens?", "steps": ["3 * 4 = 12"], "answer": "12", "optimal_steps": 1})


def test_malformed_line_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.jsonl", [GOOD, "", '{"question": "x", oops', GOOD])
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:3: not valid JSON"):
        data.load_examples(path)
    with pytest.raises(DataError, match=r":3:"):
        data.read_jsonl(path)
    loaded = data.load_examples(path, skip_bad=True)
    assert (len(loaded.examples), loaded.skipped) == (2, 1)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(GOOD.encode() + b"\n\xff\xfe{}\n")
    with pytest.raises(DataError, match=r":2: not UTF-8"):
        data.load_examples(binary)
    assert data.read_jsonl(path, skip_bad=True) == ([json.loads(GOOD)] * 2, 1)


def test_schema_errors_name_the_line_and_the_field(tmp_path):
    wrong_type = json.dumps({"question": "q?", "steps": "3 * 4 = 12", "answer": "12", "optimal_steps": 1})
    path = write(tmp_path / "schema.jsonl", [GOOD, wrong_type, "[1, 2]", json.dumps({"text": "hi"})])
    with pytest.raises(DataError, match=r":2: 'steps' must be a list"):
        data.load_examples(path)
    assert data.load_examples(path, skip_bad=True).skipped == 3
    with pytest.raises(DataError, match=r":2: .*#### N"):
        data.load_gsm8k(write(tmp_path / "g.jsonl", ['{"question": "q", "answer": "7 #### 7"}', '{"question": "q", "answer": "7"}']))


def test_empty_dataset_fails_clearly(tmp_path):
    for lines in ([], ["", "   "]):
        with pytest.raises(DataError, match="empty"):
            data.load_examples(write(tmp_path / "empty.jsonl", lines))
    with pytest.raises(DataError, match=r"empty.*2 malformed"):
        data.load_examples(write(tmp_path / "allbad.jsonl", ["nope", "{"]), skip_bad=True)


def test_write_jsonl_round_trips_and_is_atomic(tmp_path):
    examples = synth.synth(20, seed=5)
    path = tmp_path / "sub" / "train.jsonl"
    assert data.write_jsonl(path, examples) == 20
    assert [e.to_json() for e in data.load_examples(path).examples] == [e.to_json() for e in examples]
    before = path.read_bytes()

    def rows_then_crash():
        yield examples[0].to_json()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        data.write_jsonl(path, rows_then_crash())
    assert path.read_bytes() == before, "a failed write must leave the old file whole"
    assert os.listdir(path.parent) == ["train.jsonl"], "no temporary file left behind"


def test_drop_long_counts_what_it_drops():
    examples = synth.synth(50, seed=2, steps=(1, 6))
    limit = sorted(data.example_chars(e) for e in examples)[29]
    kept, dropped = data.drop_long(examples, limit)
    assert len(kept) >= 30 and len(kept) + dropped == 50
    assert dropped == sum(data.example_chars(e) > limit for e in examples) > 0
    assert all(data.example_chars(e) <= limit for e in kept)
    by_steps = data.drop_long(examples, 3, length_fn=lambda e: len(e.steps))
    assert by_steps.dropped == sum(len(e.steps) > 3 for e in examples)
    with pytest.raises(ValueError, match="limit"):
        data.drop_long(examples, 0)


def _op_shares(examples: list[Example]) -> dict[str, float]:
    ops = Counter(step.split()[1] for e in examples for step in e.steps)
    return {op: ops[op] / sum(ops.values()) for op in "+-*/"}


def test_op_weights_shift_the_mix_towards_the_weighted_operations():
    knobs = dict(steps=(1, 4), max_operand=100)
    plain = synth.synth(1500, seed=3, **knobs)
    weighted = synth.synth(1500, seed=3, op_weights={"-": 4, "/": 4}, **knobs)
    before, after = _op_shares(plain), _op_shares(weighted)
    assert after["-"] > before["-"] + 0.04 and after["/"] > before["/"] + 0.04, (before, after)
    assert after["*"] < before["*"] and after["+"] < before["+"]
    assert len({data.question_hash(e.question) for e in weighted}) == 1500
    for ex in weighted:
        check_example(ex, 100)
    # every step count still comes up, in similar numbers (each ~375 of 1500)
    counts = Counter(len(e.steps) for e in weighted)
    assert set(counts) == {1, 2, 3, 4} and min(counts.values()) > 250, counts


def test_op_weights_reweight_the_train_set_only_and_bad_weights_fail_clearly():
    knobs = dict(steps=(1, 3), max_operand=50)
    _, test = synth.synth_splits(100, 50, seed=0, **knobs)
    _, test_weighted = synth.synth_splits(100, 50, seed=0, op_weights={"-": 5}, **knobs)
    assert [e.question for e in test_weighted] == [e.question for e in test]
    with pytest.raises(ValueError, match="unknown operation"):
        synth.synth(5, seed=0, op_weights={"x": 2})
    with pytest.raises(ValueError, match="finite and > 0"):
        synth.synth(5, seed=0, op_weights={"-": 0})
    with pytest.raises(ValueError, match="finite and > 0"):
        synth.synth(5, seed=0, op_weights={"/": float("inf")})


def test_cli_op_weights(tmp_path, capsys):
    out = tmp_path / "w.jsonl"
    assert main(["data", "synth", "--n", "20", "--seed", "1", "--steps", "1-2", "--out", str(out),
                 "--op-weights", "sub=3, /=2"]) == 0
    named = data.load_examples(out).examples
    assert len(named) == 20
    assert main(["data", "synth", "--n", "20", "--seed", "1", "--steps", "1-2", "--out", str(out),
                 "--op-weights=-=3,div=2"]) == 0
    assert data.load_examples(out).examples == named  # names and symbols mean the same
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "synth", "--n", "5", "--out", str(out), "--op-weights", "sub=three"])
    assert exit_info.value.code == 2 and "OP=WEIGHT" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "synth", "--n", "5", "--out", str(out), "--op-weights", "pow=2"])
    assert "unknown operation" in capsys.readouterr().err


def test_cli_data_synth_writes_n_rows_and_a_disjoint_test_set(tmp_path, capsys):
    out, test_out = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    argv = ["data", "synth", "--n", "30", "--seed", "1", "--out", str(out), "--steps", "2-3",
            "--max-operand", "50", "--test-n", "10", "--test-out", str(test_out)]
    assert main(argv) == 0
    assert "wrote 30 problems" in capsys.readouterr().out
    train = data.load_examples(out).examples
    test = data.load_examples(test_out).examples
    assert (len(train), len(test)) == (30, 10)
    assert {len(e.steps) for e in train + test} <= {2, 3}
    assert not {data.question_hash(e.question) for e in train} & {data.question_hash(e.question) for e in test}
    for ex in train + test:
        check_example(ex, 50)

    assert main(["data", "inspect", str(out)]) == 0
    report = capsys.readouterr().out
    assert "30 examples" in report and "optimal steps:" in report

    again = tmp_path / "again.jsonl"
    assert main(["data", "synth", "--n", "30", "--seed", "1", "--steps", "2-3", "--max-operand", "50",
                 "--out", str(again), "--exclude", str(test_out)]) == 0
    assert not {data.question_hash(e.question) for e in data.load_examples(again).examples} & {
        data.question_hash(e.question) for e in test}


def test_cli_data_errors_exit_2_with_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "synth", "--n", "5", "--out", str(tmp_path / "x.jsonl"), "--steps", "7"])
    assert exit_info.value.code == 2 and "steps must lie in 1..6" in capsys.readouterr().err
    bad = write(tmp_path / "bad.jsonl", [GOOD, "{"])
    with pytest.raises(SystemExit):
        main(["data", "inspect", str(bad)])
    assert f"{bad}:2:" in capsys.readouterr().err
    assert main(["data", "inspect", str(bad), "--skip-bad"]) == 0
    assert "1 malformed" in capsys.readouterr().out


def test_drills_are_exact_one_step_problems_within_the_knobs():
    examples = synth.drills(400, seed=0, max_operand=50)
    assert [e.to_json() for e in examples] == [e.to_json() for e in synth.drills(400, seed=0, max_operand=50)]
    ops = Counter()
    for e in examples:
        a, op, b, _, c = e.steps[0].split()
        ops[op] += 1
        value = {"+": Fraction(int(a)) + int(b), "-": Fraction(int(a)) - int(b),
                 "*": Fraction(int(a)) * int(b), "/": Fraction(int(a), int(b))}[op]
        assert value == int(c) and value >= 0 and e.answer == c and e.optimal_steps == 1
        assert e.question == f"Work out {a} {op} {b}."
        assert int(b) <= 50 and int(a) <= (500 if op in "+-" else 50 * 10)
    assert set(ops) == set("+-*/") and min(ops.values()) > 60


def test_chained_drills_are_exact_left_to_right_chains():
    examples = synth.drills(300, seed=1, max_operand=100, steps=(4, 8))
    assert [e.to_json() for e in examples] == [e.to_json() for e in synth.drills(300, seed=1, max_operand=100, steps=(4, 8))]
    lengths = Counter()
    for e in examples:
        lengths[len(e.steps)] += 1
        assert e.optimal_steps == len(e.steps) and e.question.startswith("From left to right, work out ")
        expression = e.question.removeprefix("From left to right, work out ").removesuffix(".").split()
        value = Fraction(int(expression[0]))
        for i, step in enumerate(e.steps):
            a, op, b, _, c = step.split()
            assert Fraction(int(a)) == value and [op, b] == expression[2 * i + 1: 2 * i + 3]  # the chain is the question's
            value = {"+": value + int(b), "-": value - int(b), "*": value * int(b), "/": value / int(b)}[op]
            assert value == int(c) and value >= 1 and int(b) <= 100  # exact, whole and positive
        assert len(expression) == 2 * len(e.steps) + 1 and e.answer == e.steps[-1].split()[-1]
    assert set(lengths) == set(range(4, 9))
    with pytest.raises(ValueError, match="drill steps"):
        synth.drills(1, seed=0, steps=(3, 2))
