"""Bad input to the real CLI gets exit code 2 and a message naming the problem, never a traceback
(issue 20's list, table-driven), and what was asked for is never silently dropped."""

import json
import os
from pathlib import Path

import pytest
import torch

from conftest import make_model
from r1kit.cli import main
from r1kit.data.schema import write_jsonl
from r1kit.data.synth import synth
from r1kit.data.tokenizer import Tokenizer
from r1kit.interop.checkpoint import save_pretrained


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_errors")
    tok = Tokenizer.train(["Tom has 12 apples and buys 7 more. How many?", "12 + 7 = 19\n</think>\n#### 19"] * 20, vocab_size=160)
    model = make_model(vocab_size=tok.vocab_size, max_seq_len=128)
    model.set_symbol_flags(torch.tensor(tok.symbol_flags()))
    save_pretrained(model, root / "ckpt", extra=tok.save)
    write_jsonl(root / "test.jsonl", synth(3, seed=1, steps=1, max_operand=10))
    row = json.loads((root / "test.jsonl").read_text().splitlines()[0])
    (root / "zero_steps.jsonl").write_text(json.dumps({**row, "optimal_steps": 0}) + "\n")
    (root / "a_dir").mkdir()
    (root / "a_file").write_text("x")
    return root


DENIED = ("Permission denied", "Operation not permitted")  # making a folder in sysfs: EPERM, even for root
CASES = [  # (argv with {root} / {locked} for the fixtures' folders, a fragment of the message, or alternatives)
    (["eval", "{root}/ckpt", "--data", "{root}/test.jsonl", "--n", "0"], "argument --n: must be >= 1, got 0"),
    (["eval", "{root}/ckpt", "--data", "{root}/test.jsonl", "--n", "-5"], "argument --n: must be >= 1, got -5"),
    (["eval", "{root}/ckpt", "--data", "{root}/test.jsonl", "--batch-size", "0"], "argument --batch-size: must be >= 1"),
    (["eval", "{root}/ckpt", "--data", "{root}/test.jsonl", "--samples", "-1"], "argument --samples: must be >= 0"),
    (["eval", "{root}/ckpt", "--data", "{root}/a_dir"], "Is a directory"),
    (["eval", "{root}/ckpt", "--data", "{root}/zero_steps.jsonl"], "zero_steps.jsonl:1: 'optimal_steps' must be a whole number >= 1"),
    (["eval", "{root}/a_dir", "--data", "{root}/test.jsonl"], "is not a checkpoint"),
    (["generate", "{root}/ckpt", "--prompt", "hi", "--n", "0"], "argument --n: must be >= 1"),
    (["generate", "{root}/ckpt", "--prompt", "hi", "--max-new-tokens", "0"], "argument --max-new-tokens: must be >= 1"),
    (["data", "synth", "--n", "0", "--out", "{root}/x.jsonl"], "argument --n: must be >= 1"),
    (["data", "synth", "--n", "3", "--out", "{root}/a_dir"], "Is a directory"),
    (["data", "synth", "--n", "3", "--out", "{root}/a_file/x.jsonl"], "File exists"),  # its folder is a file
    (["tokenizer", "train", "--data", "{root}/test.jsonl", "--out", "{root}/tok", "--vocab-size", "10"], "--vocab-size: must be >= 64"),
    (["init", "--preset", "tiny", "--out", "{root}/a_file"], "refusing to write over"),
    (["reward", "--completion-file", "{root}/missing.txt", "--answer", "3"], "No such file or directory"),
    (["demo", "--quick", "--minutes", "0", "--out", "{root}/demo"], "argument --minutes: must be a finite number > 0"),
    (["claims", "--n-test", "0"], "argument --n-test: must be >= 1"),
    (["train", "sft", "--config", "{root}/missing.yaml"], "config file not found"),
    (["train", "sft", "--resume", "--overwrite", "sft.train_data=x"], "not allowed with argument --resume"),
    (["data", "synth", "--n", "3", "--out", "{locked}/x.jsonl"], "Permission denied"),
    (["init", "--preset", "tiny", "--out", "{locked}/ckpt"], DENIED),
    (["eval", "{root}/ckpt", "--data", "{root}/test.jsonl", "--out", "{locked}/eval.json"], "Permission denied"),
    (["tokenizer", "train", "--data", "{root}/test.jsonl", "--out", "{locked}/tok"], DENIED),
]


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    """A folder this process may not write in: a read-only folder, or for root (whom file modes do
    not stop) sysfs, where the kernel refuses to create files."""
    folder = tmp_path_factory.mktemp("locked")
    folder.chmod(0o555)
    candidates = [folder] if os.geteuid() != 0 else [Path("/sys")]
    for candidate in candidates:
        try:
            (candidate / "r1kit-probe").open("w").close()
        except PermissionError:
            yield candidate
            break
        else:
            (candidate / "r1kit-probe").unlink()
    else:
        pytest.skip("no folder here refuses writes with PermissionError")
    folder.chmod(0o755)


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(a[:2]) + f" #{i}" for i, (a, _) in enumerate(CASES)])
def test_bad_input_exits_2_naming_the_problem(files, locked, capsys, argv, message):
    argv = [a.format(root=files, locked=locked) for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and any(m in err for m in ((message,) if isinstance(message, str) else message)), err
    assert "Traceback" not in err


def test_completion_text_is_text_even_when_it_names_a_file(files, capsys):
    (files / "72").write_text("#### 72")  # a file whose name is the completion
    assert main(["reward", "--completion", "72", "--answer", "72"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "72"  # the text "72", last-number fallback
    assert main(["reward", "--completion-file", str(files / "a_file"), "--answer", "72"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 0.0  # the file's text, "x"


def test_rows_out_is_written_without_out(files, tmp_path):
    rows = tmp_path / "rows.jsonl"
    assert main(["eval", str(files / "ckpt"), "--data", str(files / "test.jsonl"), "--rows-out", str(rows)]) == 0
    assert len(rows.read_text().splitlines()) == 3


def test_derived_sampling_seeds_past_64_bits_still_sample():
    """rl.seed of ~300 made the rollout seeds overflow torch's generator (r1kit demo --seed 300 died
    after its SFT); seeds wrap into 64 bits, and a seed that fits samples as before."""
    from r1kit.inference.engine import Engine, SamplingParams

    model = make_model().eval()
    params = [SamplingParams(max_new_tokens=6, temperature=1.0, seed=s, n=2) for s in (2**70 + 5, 5)]
    huge, small = Engine(model).generate([[1, 2, 3], [1, 2, 3]], params)
    assert len(huge.samples[0].token_ids) == 6
    wrapped = Engine(model).generate([[1, 2, 3]], SamplingParams(max_new_tokens=6, temperature=1.0, seed=(2**70 + 5) % 2**64, n=2))[0]
    assert [s.token_ids for s in huge.samples] == [s.token_ids for s in wrapped.samples]
