"""The demo recipe has one source: `r1kit demo` and `r1kit claims` train with configs/demo.yaml and
configs/rl_demo.yaml changed only in budgets, paths and seed (and --quick's named overrides), and
the demo, claims and the README's data command write the same data sets."""

import itertools
from pathlib import Path

import pytest
import yaml

from r1kit.cli import build_parser, main
from r1kit.config import ConfigError, model_config_from
from r1kit.data.schema import load_examples, question_hash
from r1kit.data.synth import synth_splits
from r1kit.data.tokenizer import DEFAULT_VOCAB_SIZE, Tokenizer
from r1kit.recipes import claims
from r1kit.recipes.configs import CONFIG_DIR, DEMO_FILE, RL_DEMO_FILE, demo_configs
from r1kit.recipes.data import N_TEST, N_TRAIN, demo_data
from r1kit.recipes.demo import PLANNED_OTHER_MINUTES, QUICK, REPORT_MINUTES, RL_EVAL_MARGIN, SFT_SHARE, plan, resolve, rl_minutes
from r1kit.train.sft import SFTConfig

PATHS = {"train_data", "eval_data", "out_dir", "seed"}
SFT_BUDGET = {"max_minutes"}
RL_BUDGET = {"max_minutes", "max_steps"}
README_DATA = ["data", "synth", "--seed", "0", "--steps", "1-4", "--test-steps", "2-3", "--max-operand", "100",
               "--grammar-share", "0.5", "--follow-up-share", "0.2", "--word-noise", "0.2", "--word-swap", "0.2"]


def _files() -> dict:
    """The sections as written in the files."""
    return {**yaml.safe_load(DEMO_FILE.read_text()), **yaml.safe_load(RL_DEMO_FILE.read_text())}


def _changed(cfg, base) -> set[str]:
    a, b = cfg.model_dump(), base.model_dump()
    return {k for k in a if a[k] != b[k]}


def test_the_config_files_are_found_beside_the_package():
    assert CONFIG_DIR == Path(__file__).resolve().parents[1] / "configs"
    assert DEMO_FILE.is_file() and RL_DEMO_FILE.is_file()


@pytest.mark.parametrize("minutes", [20.0, 8.0])
def test_a_full_demo_trains_with_the_files_settings_but_budgets_paths_and_seed(minutes):
    model_cfg, sft, rl = resolve(plan(minutes), Path("runs/x"), seed=3)
    files = _files()
    assert model_cfg == model_config_from(files["model"])
    for key, value in files["sft"].items():
        if key not in SFT_BUDGET | PATHS:
            assert getattr(sft, key) == value, key
    for key, value in files["rl"].items():
        if key not in RL_BUDGET | PATHS:
            assert getattr(rl, key) == value, key
    _, file_sft, file_rl = demo_configs()  # and every field the files leave to the defaults
    assert _changed(sft, file_sft) <= SFT_BUDGET | PATHS and _changed(rl, file_rl) <= RL_BUDGET | PATHS
    assert sft.max_minutes == pytest.approx(SFT_SHARE * minutes)
    assert rl.max_minutes == pytest.approx((1 - SFT_SHARE) * minutes - PLANNED_OTHER_MINUTES)  # planned; measured at run time
    assert (sft.train_data, sft.out_dir, rl.out_dir) == ("runs/x/data/train.jsonl", "runs/x/sft", "runs/x/rl")
    assert sft.seed == rl.seed == 3
    p = plan(minutes)
    assert (p.n_train, p.n_test) == (N_TRAIN, N_TEST) == (90_000, 500)


def test_overrides_change_only_what_they_name():
    base_model, base_sft, base_rl = resolve(plan(), Path("runs/x"), seed=3)
    model_cfg, sft, rl = resolve(plan(), Path("runs/x"), seed=3, overrides=[
        "model.dim=96", "model.attention.branches=[local,global]", "sft.lr=2e-3", "rl.group_size=4"])
    assert (model_cfg.dim, model_cfg.attention.branches) == (96, ["local", "global"])
    assert model_cfg.attention.window == base_model.attention.window  # a nested key leaves its siblings
    assert _changed(model_cfg, base_model) == {"dim", "attention"}
    assert _changed(sft, base_sft) == {"lr"} and sft.lr == 2e-3
    assert _changed(rl, base_rl) == {"group_size"} and rl.group_size == 4


@pytest.mark.parametrize("override, flag", [("sft.max_minutes=5", "--minutes"), ("rl.max_steps=10", "--minutes"),
                                            ("rl.out_dir=elsewhere", "--out"), ("sft.seed=1", "--seed")])
def test_an_override_of_what_the_demo_sets_itself_is_refused(override, flag):
    with pytest.raises(ConfigError, match=flag):
        resolve(plan(), Path("runs/x"), seed=0, overrides=[override])


def test_the_sft_share_splits_the_budget_and_must_leave_rl_some():
    assert plan(20.0, sft_share=0.7).sft["max_minutes"] == pytest.approx(14.0)
    assert plan(20.0, sft_share=0.7).rl["max_minutes"] == pytest.approx(20.0 - 14.0 - PLANNED_OTHER_MINUTES)
    for share in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match="SFT share"):
            plan(20.0, sft_share=share)


def test_r1kit_demo_refuses_a_bad_override_before_any_work(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--sft-share", "1"]) == 2
    assert "SFT share" in capsys.readouterr().err
    assert main(["demo", "--out", str(out), "dim=96"]) == 2  # no section
    assert "name their section" in capsys.readouterr().err
    assert main(["demo", "--out", str(out), "model.dim=ninety"]) == 2  # not a number
    assert "dim" in capsys.readouterr().err
    assert not out.exists()


def test_rl_gets_what_the_budget_has_left():
    # 10.5 of 20 minutes spent, the SFT model's evaluation took 0.4: RL's evaluation (with margin)
    # and the report come off the rest
    assert rl_minutes(20.0, 10.5, 0.4) == pytest.approx(20.0 - 10.5 - RL_EVAL_MARGIN * 0.4 - REPORT_MINUTES)
    assert rl_minutes(20.0, 9.0, 0.4) - rl_minutes(20.0, 10.5, 0.4) == pytest.approx(1.5)  # a faster SFT stage: more RL
    assert rl_minutes(20.0, 19.5, 0.4) == 1.0  # a slow CPU still trains RL for a minute


def test_quick_differs_from_the_files_only_in_its_named_overrides():
    model_cfg, sft, rl = resolve(plan(quick=True), Path("runs/q"), seed=0)
    file_model, file_sft, file_rl = demo_configs()
    assert model_cfg == model_config_from({**_files()["model"], **QUICK["model"]}) != file_model
    assert _changed(sft, file_sft) <= set(QUICK["sft"]) | PATHS
    assert _changed(rl, file_rl) <= set(QUICK["rl"]) | PATHS
    assert all(getattr(sft, k) == v for k, v in QUICK["sft"].items())
    assert all(getattr(rl, k) == v for k, v in QUICK["rl"].items())
    assert (plan(quick=True).n_train, plan(quick=True).n_test) == (QUICK["data"]["n_train"], QUICK["data"]["n_test"])


def test_the_demo_evaluates_with_r1kit_evals_settings():
    _, sft, _ = resolve(plan(), Path("runs/x"), seed=0)
    defaults = build_parser().parse_args(["eval", "ckpt", "--data", "test.jsonl"])
    assert (sft.eval_batch_size, sft.max_new_tokens) == (defaults.batch_size, defaults.max_new_tokens)


def test_claims_trains_with_the_files_settings(tmp_path, monkeypatch):
    class Captured(Exception):
        pass

    seen = {}

    def capture(name):
        def train(*args, **kwargs):
            seen[name] = args
            raise Captured

        return train

    monkeypatch.setattr(claims, "train_sft", capture("sft"))
    monkeypatch.setattr(claims, "train_rl", capture("rl"))
    data = {name: tmp_path / f"{name}.jsonl" for name in ("train", "test", "rl_train", "hard")}
    with pytest.raises(Captured):
        claims._sft_run("sft_dense", tmp_path, data, 2.5, 7, False, ({}, {}, {}))
    with pytest.raises(Captured):
        claims._rl_run("rl_composite", tmp_path, data, 1.5, 7, False, ({}, {}, {}))
    model_cfg, sft = seen["sft"]
    rl, _init = seen["rl"]
    file_model, file_sft, file_rl = demo_configs()
    assert model_cfg.attention.kind == "dense" and model_cfg.moe.balancing == "load_penalty"
    assert model_cfg.model_dump(exclude={"attention"}) == file_model.model_dump(exclude={"attention"})
    assert _changed(sft, file_sft) <= SFT_BUDGET | PATHS and sft.max_minutes == 2.5 and sft.seed == 7
    assert _changed(rl, file_rl) <= RL_BUDGET | PATHS | set(claims.REWARDS["composite"]) and rl.max_minutes == 1.5
    assert sft.train_data == str(data["train"]) and rl.train_data == str(data["rl_train"])  # RL: the demo's harder problems


def test_demo_data_is_the_recipe_and_the_readme_command_writes_the_same_files(tmp_path, capsys):
    paths = demo_data(tmp_path / "demo", n_train=300, n_test=40, seed=0, n_unseen=30, n_follow_up=20, n_hard=20, n_rl=50)
    train, test, unseen, follow_up = (load_examples(paths[k]).examples for k in ("train", "test", "unseen", "follow_up"))
    assert (len(train), len(test), len(unseen), len(follow_up)) == (300, 40, 30, 20)
    assert {e.optimal_steps for e in train} == {1, 2, 3, 4} and {e.optimal_steps for e in test + unseen} == {2, 3}
    assert {e.meta.get("split") for e in train} == {None, "train"} and {e.meta["split"] for e in unseen} == {"unseen"}
    assert sum(bool(e.history) for e in train) == 30 and all(e.history for e in follow_up)  # 0.2 of the grammar's 150
    hashes = [{question_hash(e.context) for e in split} for split in (train, test, unseen, follow_up)]
    assert sum(map(len, hashes)) == len(set().union(*hashes))

    names = ("train", "test", "unseen", "follow_up")
    out, test_out, unseen_out, follow_up_out = (tmp_path / "cli" / f"{k}.jsonl" for k in names)
    assert main(README_DATA + ["--n", "300", "--out", str(out), "--test-n", "40", "--test-out", str(test_out),
                               "--unseen-n", "30", "--unseen-out", str(unseen_out),
                               "--follow-up-n", "20", "--follow-up-out", str(follow_up_out)]) == 0
    assert "wrote 40 problems (2-3 steps" in capsys.readouterr().out
    for path, name in zip((out, test_out, unseen_out, follow_up_out), names):
        assert path.read_bytes() == paths[name].read_bytes()
    # RL's sets: harder problems, its training ones without steps, no question shared with any other set
    rl_out, hard_out = tmp_path / "cli" / "rl_train.jsonl", tmp_path / "cli" / "hard.jsonl"
    earlier = [arg for name in names for arg in ("--exclude", str(tmp_path / "cli" / f"{name}.jsonl"))]
    assert main(["data", "synth", "--n", "50", "--seed", "0", "--steps", "3-5", "--test-steps", "5", "--max-operand", "100",
                 "--answers-only", *earlier, "--out", str(rl_out), "--test-n", "20", "--test-out", str(hard_out)]) == 0
    assert rl_out.read_bytes() == paths["rl_train"].read_bytes() and hard_out.read_bytes() == paths["hard"].read_bytes()
    rl_train, hard = (load_examples(paths[k]).examples for k in ("rl_train", "hard"))
    assert all(not e.steps for e in rl_train) and all(len(e.steps) == 5 for e in hard)
    assert {e.optimal_steps for e in rl_train} == {3, 4, 5}
    hashes += [{question_hash(e.context) for e in split} for split in (rl_train, hard)]
    assert sum(map(len, hashes)) == len(set().union(*hashes)) == 300 + 40 + 30 + 20 + 50 + 20

    claims_data = claims._data(tmp_path / "claims", 300, 40, 0)
    assert claims_data["train"].read_bytes() == paths["train"].read_bytes()
    assert claims_data["test"].read_bytes() == paths["test"].read_bytes()


def test_one_step_range_gives_synth_splits_sets():
    knobs = dict(max_operand=50, exclude={"0" * 16}, op_weights={"-": 3})
    ours = synth_splits(60, 15, 4, steps=(1, 3), test_steps=(1, 3), **knobs)
    theirs = synth_splits(60, 15, 4, steps=(1, 3), **knobs)
    assert [[e.to_json() for e in split] for split in ours] == [[e.to_json() for e in split] for split in theirs]


def test_test_steps_needs_a_test_set(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "synth", "--n", "5", "--out", str(tmp_path / "x.jsonl"), "--test-steps", "2-3"])
    assert exit_info.value.code == 2 and "--test-steps" in capsys.readouterr().err


def test_the_tokenizer_defaults_to_sfts_vocabulary_size(tmp_path):
    assert DEFAULT_VOCAB_SIZE == SFTConfig.model_fields["vocab_size"].default == 1024
    args = build_parser().parse_args(["tokenizer", "train", "--data", "d.jsonl", "--out", str(tmp_path)])
    assert args.vocab_size == DEFAULT_VOCAB_SIZE
    words = ["".join(letters) for letters in itertools.product("abcdefghij", repeat=3)]  # 1000 distinct words
    corpus = [" ".join(words[i:i + 10]) for i in range(0, len(words), 10)]
    assert Tokenizer.train(corpus, min_frequency=1).vocab_size == DEFAULT_VOCAB_SIZE
