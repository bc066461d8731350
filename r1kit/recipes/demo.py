"""`r1kit demo`: the whole system end to end on one embedded default, in about 20 minutes on 2 CPU cores.

    r1kit demo [--minutes 20] [--quick] [--out runs/demo]

Stages (each shows progress; the time budget is split between the two trainings):
  1. data       synthetic verifiable maths: training problems (1-4 steps, operands below 100) and
                held-out problems (2-3 steps, operands below 100) sharing no question;
  2. SFT        tokenizer trained on the training text, then supervised fine-tuning of the demo
                model (MoE with load-penalty routing + multi-scale attention), ~55% of the budget;
  3. eval       greedy accuracy, step validity, steps, expert use and attention gates;
  4. GRPO       RL from the SFT checkpoint with the composite reward, ~20% of the budget;
  5. eval       the same evaluation on the RL model;
  6. report     runs/demo/report.md with its plots (r1kit.recipes.report), and runs/demo/final, the
                model to chat with.
Evaluation uses exactly `r1kit eval`'s settings, so `r1kit eval runs/demo/sft/final --data
runs/demo/data/test.jsonl --n N` reproduces the report's numbers.

`--quick` runs the same pipeline on the tiny model with small data (about a minute): a smoke run
of every stage, not a result.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from r1kit.interop.checkpoint import atomic_directory, load_pretrained
from r1kit.config import model_config_from
from r1kit.data.schema import load_examples, question_hash, write_json, write_jsonl
from r1kit.evaluate import evaluate, print_table
from r1kit.train.grpo import RLConfig, train_rl
from r1kit.recipes.report import write_report
from r1kit.train.sft import SFTConfig, train_sft
from r1kit.data.synth import synth
from r1kit.data.tokenizer import Tokenizer


@dataclass(frozen=True)
class DemoPlan:
    """What a demo run does; `plan(minutes, quick)` sizes it."""

    model: dict  # the model section (a preset plus changes)
    n_train: int
    n_test: int
    sft: dict  # SFTConfig fields besides data and out_dir
    rl: dict  # RLConfig fields besides data and out_dir
    eval_batch_size: int = 64
    max_new_tokens: int = 128


# Measured on 2 CPU cores (docs/benchmarks.md): a GRPO step of 16 prompts x 8 samples (2 passes)
# takes ~5 s. (SFT needs no such figure: its schedule decays over its minutes.)
RL_STEPS_PER_MINUTE = 12


def plan(minutes: float = 20.0, quick: bool = False) -> DemoPlan:
    if quick:  # the tiny model, small data: every stage runs, in about a minute
        return DemoPlan(
            model={"preset": "tiny", "max_seq_len": 256}, n_train=2000, n_test=40,
            sft=dict(vocab_size=256, max_len=256, batch_size=16, max_steps=150, max_minutes=0.4, lr=1e-2,
                     warmup_steps=10, log_every=10, save_every=1000),
            rl=dict(group_size=4, prompts_per_step=4, max_steps=6, max_minutes=0.15, max_new_tokens=64, lr=1e-3,
                    warmup_steps=1, save_every=1000),
            eval_batch_size=40, max_new_tokens=64,
        )
    sft_minutes, rl_minutes = 0.55 * minutes, 0.2 * minutes
    return DemoPlan(
        model={"preset": "demo"}, n_train=30000, n_test=500,
        # the cosine schedule decays over the time budget, at whatever speed the CPU gives
        sft=dict(batch_size=32, max_steps=10**6, max_minutes=sft_minutes, decay_by="minutes",
                 lr=3e-3, warmup_steps=50, save_every=1000),
        # GRPO settings of the best 8-minute run in docs/benchmarks.md (lr 1e-4 with 8 prompts a step lost accuracy)
        rl=dict(group_size=8, prompts_per_step=16, lr=5e-5, ppo_epochs=2,
                max_steps=max(5, int(RL_STEPS_PER_MINUTE * rl_minutes)), max_minutes=rl_minutes, save_every=1000),
    )


def run_demo(out_dir: str | Path = "runs/demo", minutes: float = 20.0, quick: bool = False, seed: int = 0,
             progress: bool = True) -> Path:
    out = Path(out_dir)
    p = plan(minutes, quick)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def stage(name: str, title: str) -> None:
        elapsed = (time.perf_counter() - started) / 60
        print(f"\n== {title}  (at {elapsed:.1f} min of a {minutes if not quick else 1:.0f}-minute budget)", flush=True)
        timings[name] = time.perf_counter()

    stage("data", "1/6 data: synthetic verifiable maths problems")
    test = synth(p.n_test, seed=seed + 1, steps=(2, 3), max_operand=100)
    train = synth(p.n_train, seed=seed, steps=(1, 4), max_operand=100, exclude={question_hash(e.question) for e in test})
    data_dir = out / "data"
    write_jsonl(data_dir / "train.jsonl", train)
    write_jsonl(data_dir / "test.jsonl", test)
    print(f"{len(train)} training problems (1-4 steps), {len(test)} held-out (2-3 steps), operands below 100 -> {data_dir}")

    stage("sft", "2/6 SFT: tokenizer, then supervised fine-tuning")
    model_cfg = model_config_from(dict(p.model))
    sft_cfg = SFTConfig(train_data=str(data_dir / "train.jsonl"), eval_data=None, out_dir=str(out / "sft"), seed=seed, **p.sft)
    sft_final = train_sft(model_cfg, sft_cfg, progress=progress)

    stage("sft_eval", "3/6 evaluation of the SFT model")
    sft_eval = _evaluate(sft_final, data_dir / "test.jsonl", p, out / "sft" / "eval.json")

    stage("rl", "4/6 GRPO: reinforcement learning with the composite reward")
    rl_cfg = RLConfig(train_data=str(data_dir / "train.jsonl"), eval_data=None, out_dir=str(out / "rl"), seed=seed,
                      eval_at_start=False, **p.rl)
    rl_final = train_rl(rl_cfg, sft_final, progress=progress)

    stage("rl_eval", "5/6 evaluation of the RL model")
    rl_eval = _evaluate(rl_final, data_dir / "test.jsonl", p, out / "rl" / "eval.json")

    stage("report", "6/6 report")
    atomic_directory(out / "final", lambda d: _copy_checkpoint(rl_final, d))
    timings["end"] = time.perf_counter()
    names = list(timings)
    minutes_per_stage = {a: (timings[b] - timings[a]) / 60 for a, b in zip(names, names[1:])}
    write_json(out / "run.json", {
        "quick": quick, "minutes_budget": minutes, "seed": seed, "minutes_per_stage": minutes_per_stage,
        "total_minutes": (timings["end"] - started) / 60, "plan": p.__dict__,
    })
    report = write_report(out)
    print(f"\nSFT accuracy {sft_eval['accuracy']:.1%} -> RL {rl_eval['accuracy']:.1%} on {sft_eval['n']} held-out problems")
    print(f"done in {(timings['end'] - started) / 60:.1f} minutes. Everything is in {out}/:")
    print(f"  report     {report}")
    print(f"  models     {out / 'sft' / 'final'} (SFT), {out / 'final'} (SFT + RL)")
    print(f"  metrics    {out / 'sft' / 'metrics.jsonl'}, {out / 'rl' / 'metrics.jsonl'}")
    print(f"chat with the result:  r1kit chat {out / 'final'}")
    return out


def _evaluate(checkpoint: Path, data: Path, p: DemoPlan, out_json: Path) -> dict:
    model, tok = load_pretrained(checkpoint), Tokenizer.load(checkpoint)
    examples = load_examples(data).examples
    result = evaluate(model, tok, examples, batch_size=p.eval_batch_size, max_new_tokens=p.max_new_tokens)
    summary = {"checkpoint": str(checkpoint), "data": str(data), **result.summary()}
    write_json(out_json, summary)
    write_jsonl(out_json.with_name("eval_rows.jsonl"), result.rows)
    print_table(result.summary(), title=f"{checkpoint} on {len(examples)} held-out problems")
    return summary


def _copy_checkpoint(src: Path, dst: Path) -> None:
    for item in Path(src).iterdir():
        if item.is_file():
            shutil.copy2(item, dst / item.name)
