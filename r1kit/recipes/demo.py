"""`r1kit demo`: the whole system end to end on the demo config, in about 20 minutes on 2 CPU cores.

    r1kit demo [--minutes 20] [--sft-share 0.65] [--quick] [--out runs/demo] [KEY=VALUE ...]

Stages (each shows progress; the time budget is split between the two trainings):
  1. data       the demo's data recipe (r1kit.recipes.data): 90,000 training problems (1-4 steps,
                operands below 100, half from the phrasing grammar, a fifth of their words made
                up and a fifth swapped for other training words), 500 held-out problems (2-3
                steps) from the templates and 500 template-held-out ones, sharing no question;
                RL's problems (3-5 steps, a third one step past SFT's traces), questions and
                answers only, and 500 held-out 5-step ones;
  2. SFT        tokenizer trained on the training text, then supervised fine-tuning of the demo
                model (MoE with load-penalty routing, dense attention: configs/demo.yaml says why),
                65% of the budget (SFT_SHARE; --sft-share);
  3. eval       greedy accuracy, step validity, steps, expert use and a multi-scale model's gates, on each
                held-out set (recipes.data.EVAL_SETS: test, unseen, follow_up, hard);
  4. GRPO       RL from the SFT checkpoint with the composite reward on the harder problems, for
                what the budget has left (less RL's evaluation and the report; `rl_minutes`);
  5. eval       the same evaluation on the RL model;
  6. report     runs/demo/report.md with its plots (r1kit.recipes.report), runs/demo/summary.json
                (minutes and accuracies per stage and set, for scripts) and runs/demo/final, the
                model to chat with.
Evaluation uses exactly `r1kit eval`'s settings, so `r1kit eval runs/demo/sft/final --data
runs/demo/data/test.jsonl runs/demo/data/unseen.jsonl runs/demo/data/hard.jsonl --n N` reproduces the report's numbers.

The settings are configs/demo.yaml's (model, sft) and configs/rl_demo.yaml's (rl), as `r1kit train`
reads them (r1kit.recipes.configs); the demo changes only the budgets (`plan`), the paths and the
seed, then applies the KEY=VALUE overrides a user gives (model.attention.kind=multiscale). `--quick`
runs the same pipeline on the tiny model with small data (about a minute), a smoke run of every
stage, not a result: its changes to the files are the one dict QUICK.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from r1kit.config import ConfigError, ModelConfig
from r1kit.data.schema import load_examples, write_json, write_jsonl
from r1kit.data.tokenizer import Tokenizer
from r1kit.evaluate import evaluate, print_table
from r1kit.interop.checkpoint import atomic_directory, load_pretrained
from r1kit.recipes.configs import demo_configs
from r1kit.recipes.data import EVAL_SETS, N_RL, N_TEST, N_TRAIN, demo_data, rows_file
from r1kit.recipes.report import write_report
from r1kit.train.grpo import RLConfig, train_rl
from r1kit.train.loop import RunDirError
from r1kit.train.sft import SFTConfig, train_sft


@dataclass(frozen=True)
class DemoPlan:
    """What a demo run changes in configs/demo.yaml and configs/rl_demo.yaml; `plan` sizes it."""

    n_train: int
    n_test: int  # of each held-out set
    n_rl: int  # RL's training problems
    model: dict  # changes to the model section (nested as in the file)
    sft: dict  # changes to the sft section
    rl: dict  # changes to the rl section


# SFT's share of the budget. RL gets what is left once SFT is evaluated, less RL's own evaluation
# and the report (`rl_minutes`; a fixed share left minutes unused). 0.65 since SFT's products run in
# bf16 (r1kit.bf16_matmul): ~5,300 steps in 13 minutes read held-out phrasings better than ~4,500 in
# 11 (+4.6 points on seed 0), and RL's ~6 minutes still gain about 60 points on 5 steps, as its ~7
# did at 0.55 (docs/benchmarks.md, twenty-fourth stop). 0.45 had given RL a weaker start.
SFT_SHARE = 0.65
# What a full run spends outside the trainings, planned before it starts: data, the tokenizer, two
# evaluations and the report took 0.9 minutes on 2 cores (docs/benchmarks.md); margin for slower CPUs.
PLANNED_OTHER_MINUTES = 1.5
# The report's minutes and a margin for RL's evaluation writing longer answers than SFT's.
REPORT_MINUTES, RL_EVAL_MARGIN = 0.25, 1.25
# A cap on RL's steps, above the 8-17 a minute measured on 2 CPU cores (16 prompts x 8 samples,
# 2 passes, with and without dynamic sampling): the clock ends the run. (SFT's schedule decays
# over its minutes.)
RL_STEPS_PER_MINUTE = 20

# `--quick`: the pipeline on the tiny model with small data, every stage in about a minute: a smoke
# run, not a result. What it changes in the files; everything else is the demo's own setting.
QUICK = {
    "data": {
        "n_train": 2000,  # about one epoch of 150 steps of 16
        "n_test": 40,  # one evaluation batch
        "n_rl": 200,  # more than the 6 steps x 4 prompts RL takes
    },
    "model": {
        "preset": "tiny",  # a training step in milliseconds, every mechanism on
        "max_seq_len": 256,  # the tiny preset's 64 positions cannot hold a problem and its trace
    },
    "sft": {
        "vocab_size": 256,  # a BPE sized to the tiny model
        "max_len": 256,  # the model's max_seq_len
        "batch_size": 16,  # smaller steps, more of them in the budget
        "max_steps": 150,  # enough to see the loss fall
        "max_minutes": 0.4,  # budget
        "lr": 1e-2,  # a tiny model takes (and needs, in 150 steps) a high rate
        "warmup_steps": 10,  # the file's 50 would be a third of the run
        "eval_batch_size": 40,  # the whole test set in one batch
        "max_new_tokens": 64,  # halves decoding time: a smoke run needs no complete traces
    },
    "rl": {
        "group_size": 4,  # 16 rollouts a step instead of 128
        "prompts_per_step": 4,
        "max_steps": 6,  # budget
        "max_minutes": 0.15,  # budget
        "max_new_tokens": 64,  # as the quick evaluation
        "lr": 1e-3,  # a handful of steps on a tiny model: a visible move needs a higher rate
        "warmup_steps": 1,  # the file's 5 would outlast the run
        "dynamic_sampling": 0,  # one rollout round a step: a random tiny model's groups are nearly all alike
    },
}


def plan(minutes: float = 20.0, quick: bool = False, sft_share: float = SFT_SHARE) -> DemoPlan:
    """The demo's changes to the config files: for a full run the budgets only (the time split
    between the trainings, SFT's `sft_share` of it; RL's step cap) and the data recipe's sizes; for
    --quick, QUICK."""
    if not 0 < sft_share < 1:
        raise ConfigError(f"the SFT share of the budget must lie strictly between 0 and 1 (RL gets the rest), got {sft_share}")
    if quick:
        return DemoPlan(**QUICK["data"], model=dict(QUICK["model"]), sft=dict(QUICK["sft"]), rl=dict(QUICK["rl"]))
    sft_minutes = sft_share * minutes
    return DemoPlan(n_train=N_TRAIN, n_test=N_TEST, n_rl=N_RL, model={}, sft={"max_minutes": sft_minutes},
                    rl=rl_budget(minutes - sft_minutes - PLANNED_OTHER_MINUTES))


def rl_budget(rl_minutes: float) -> dict:
    """RL's budget keys: its minutes (at least one) and the step cap that goes with them."""
    rl_minutes = max(1.0, rl_minutes)
    return {"max_minutes": rl_minutes, "max_steps": max(5, int(RL_STEPS_PER_MINUTE * rl_minutes))}


def rl_minutes(budget: float, elapsed: float, sft_eval_minutes: float) -> float:
    """RL's training minutes, measured rather than planned: what the budget has left after `elapsed`
    minutes, less RL's evaluation (the SFT model's took `sft_eval_minutes`) and the report. A fast
    CPU so spends its budget on RL rather than ending early; a slow one still gets a minute."""
    return max(1.0, budget - elapsed - RL_EVAL_MARGIN * sft_eval_minutes - REPORT_MINUTES)


# Keys the demo sets itself, and the flag that sets each: an override of one would be overwritten
# by the budget's split or the run's paths, or would silently undo them.
DEMO_OWNED = {**{f"{section}.{key}": "--out" for section in ("sft", "rl") for key in ("train_data", "eval_data", "out_dir")},
              "sft.seed": "--seed", "rl.seed": "--seed", "sft.max_minutes": "--minutes", "rl.max_minutes": "--minutes",
              "rl.max_steps": "--minutes"}


def resolve(p: DemoPlan, out: Path, seed: int, overrides: Sequence[str] = ()) -> tuple[ModelConfig, SFTConfig, RLConfig]:
    """The configurations a run trains with: the files' with the plan's changes, the run's paths
    and its seed, then the user's `overrides` (model.dim=96 sft.lr=2e-3 rl.group_size=4)."""
    owned = [key for key in (o.split("=", 1)[0].strip() for o in overrides) if key in DEMO_OWNED]
    if owned:
        raise ConfigError(f"the demo sets {', '.join(owned)} itself; use {', '.join(sorted({DEMO_OWNED[k] for k in owned}))} instead")
    # eval_data None: the demo evaluates each final model on the whole test set (stages 3 and 5);
    # periodic evaluation during training would spend minutes outside the budget
    sft = {**p.sft, "train_data": str(out / "data" / "train.jsonl"), "eval_data": None, "out_dir": str(out / "sft"), "seed": seed}
    rl = {**p.rl, "train_data": str(out / "data" / "rl_train.jsonl"), "eval_data": None, "out_dir": str(out / "rl"), "seed": seed}
    return demo_configs(p.model, sft, rl, overrides)


def run_demo(out_dir: str | Path = "runs/demo", minutes: float = 20.0, quick: bool = False, seed: int = 0,
             progress: bool = True, overwrite: bool = False, overrides: Sequence[str] = (), sft_share: float = SFT_SHARE) -> Path:
    """The whole pipeline into `out_dir`, which must be empty or new unless `overwrite` (then the
    earlier demo's data, checkpoints and metrics there are replaced). `overrides` change the
    config files' settings for this run (`resolve`)."""
    out = Path(out_dir)
    p = plan(minutes, quick, sft_share)
    model_cfg, sft_cfg, rl_cfg = resolve(p, out, seed, overrides)  # before any work: a bad config fails at once
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise RunDirError(f"{out} is not empty (an earlier demo?): --overwrite replaces that run, or --out another directory")
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def stage(name: str, title: str) -> None:
        elapsed = (time.perf_counter() - started) / 60
        print(f"\n== {title}  (at {elapsed:.1f} min of a {minutes if not quick else 1:.0f}-minute budget)", flush=True)
        timings[name] = time.perf_counter()

    if overrides:
        print(f"the config files' settings, changed by: {' '.join(overrides)}")
    stage("data", "1/6 data: synthetic verifiable maths problems")
    data = demo_data(out / "data", p.n_train, p.n_test, seed, n_unseen=p.n_test, n_follow_up=p.n_test, n_hard=p.n_test, n_rl=p.n_rl)
    print(f"{p.n_train} training problems (1-4 steps, half from the phrasing grammar, a fifth of their words made up and a fifth swapped), {p.n_test} held-out (2-3 steps) "
          f"from the templates, {p.n_test} from the grammar's unseen side and {p.n_test} follow-up questions there; "
          f"for RL {p.n_rl} problems of 3-5 steps (questions and answers only) and {p.n_test} held-out 5-step ones; "
          f"operands below 100 -> {out / 'data'}")

    stage("sft", "2/6 SFT: tokenizer, then supervised fine-tuning")
    sft_final = train_sft(model_cfg, sft_cfg, progress=progress, overwrite=overwrite)

    stage("sft_eval", "3/6 evaluation of the SFT model")
    sft_eval = _evaluate_sets(sft_final, data, sft_cfg, out / "sft")

    stage("rl", "4/6 GRPO: reinforcement learning with the composite reward, on harder problems")
    if not quick:  # the minutes the budget has left, now that SFT's are spent
        budget = rl_budget(rl_minutes(minutes, (timings["rl"] - started) / 60, (timings["rl"] - timings["sft_eval"]) / 60))
        rl_cfg = rl_cfg.model_copy(update=budget)
        print(f"{budget['max_minutes']:.1f} minutes of RL: what the budget has left after its evaluation and the report")
    rl_final = train_rl(rl_cfg, sft_final, progress=progress, overwrite=overwrite)

    stage("rl_eval", "5/6 evaluation of the RL model")
    rl_eval = _evaluate_sets(rl_final, data, sft_cfg, out / "rl")

    stage("report", "6/6 report")
    atomic_directory(out / "final", lambda d: _copy_checkpoint(rl_final, d))
    timings["end"] = time.perf_counter()
    names = list(timings)
    minutes_per_stage = {a: (timings[b] - timings[a]) / 60 for a, b in zip(names, names[1:])}
    write_json(out / "run.json", {
        "quick": quick, "minutes_budget": minutes, "seed": seed, "sft_share": sft_share, "overrides": list(overrides),
        "minutes_per_stage": minutes_per_stage,
        "total_minutes": (timings["end"] - started) / 60, "plan": asdict(p),
        "configs": {"model": model_cfg.model_dump(), "sft": sft_cfg.model_dump(), "rl": rl_cfg.model_dump()},
    })
    write_json(out / "summary.json", {  # for scripts; accuracies in [0, 1]
        "minutes": {"total": (timings["end"] - started) / 60, "sft": minutes_per_stage["sft"], "rl": minutes_per_stage["rl"]},
        "stages": {stage_name: {name: {"accuracy": ev["accuracy"], "n": ev["n"], "step_validity": ev["step_validity"]}
                                for name, ev in evals.items()}
                   for stage_name, evals in (("sft", sft_eval), ("rl", rl_eval))},
    })
    report = write_report(out)
    for name in sft_eval:
        print(f"\n{name}: SFT accuracy {sft_eval[name]['accuracy']:.1%} -> RL {rl_eval[name]['accuracy']:.1%} "
              f"on {sft_eval[name]['n']} held-out problems", end="")
    print()
    print(f"done in {(timings['end'] - started) / 60:.1f} minutes. Everything is in {out}/:")
    print(f"  report     {report}")
    print(f"  models     {out / 'sft' / 'final'} (SFT), {out / 'final'} (SFT + RL)")
    print(f"  metrics    {out / 'sft' / 'metrics.jsonl'}, {out / 'rl' / 'metrics.jsonl'}")
    print(f"chat with the result:  r1kit chat {out / 'final'}")
    return out


def _evaluate_sets(checkpoint: Path, data: dict[str, Path], settings: SFTConfig, out_dir: Path) -> dict[str, dict]:
    return {name: _evaluate(checkpoint, data[name], settings, out_dir / file) for name, file in EVAL_SETS.items()}


def _evaluate(checkpoint: Path, data: Path, settings: SFTConfig, out_json: Path) -> dict:
    """Greedy evaluation on the whole test set with the SFT config's evaluation settings (batch size,
    max_new_tokens: `r1kit eval`'s defaults in the full run), for both models alike."""
    model, tok = load_pretrained(checkpoint), Tokenizer.load(checkpoint)
    examples = load_examples(data).examples
    result = evaluate(model, tok, examples, batch_size=settings.eval_batch_size, max_new_tokens=settings.max_new_tokens)
    summary = {"checkpoint": str(checkpoint), "data": str(data), **result.summary()}
    write_json(out_json, summary)
    write_jsonl(rows_file(out_json), result.rows)
    print_table(result.summary(), title=f"{checkpoint} on {len(examples)} held-out problems")
    return summary


def _copy_checkpoint(src: Path, dst: Path) -> None:
    for item in Path(src).iterdir():
        if item.is_file():
            shutil.copy2(item, dst / item.name)
