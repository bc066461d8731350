"""RL beyond the SFT distribution (issue 23, part B), measured side by side at equal minutes:
(a) the SFT model; (b) SFT continued for the same minutes on the traces it was trained on;
(c) GRPO on problems of 2-5 steps (`--mix-steps`), a quarter of them 5 steps (one step past its longest trace),
given as questions and answers only, with DAPO's dynamic sampling, for each seed; and, as
ablations, GRPO on 5-step problems alone and on the mix without dynamic sampling. Every model is
evaluated on the held-out 5-step problems (`hard`), the 2-3-step in-template test set (retention)
and the template-held-out set, greedily (rows kept, for paired differences) and with 8 samples at
temperature 1 (pass@1..8).

    python benchmarks/rl_beyond.py --sft runs/g5/sft/final --train runs/g5/train.jsonl \\
        --test runs/g5/test.jsonl --unseen runs/g5/unseen.jsonl --out runs/hard \\
        [--minutes 15] [--seeds 0 1 2] [--mix-steps 2-5] [--results benchmarks/results/rl_beyond.json]

`--mix-steps 3-5` trains (c) on another mix (a third each of 3, 4 and 5 steps); its arms and RL data
get the mix in their names (dm35_0, rl_steps3-5.jsonl), so both mixes' runs live side by side in --out.

Each piece (data, a training run, an evaluation) is skipped when its output exists, so an
interrupted run continues; the commands it runs are the results file's `commands`. Run nothing
else heavy meanwhile: the arms are compared at equal wall-clock training minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

from paired import paired
from results_file import write_results

KEYS = ("n", "accuracy", "step_validity", "mean_steps", "mean_optimal_steps", "reward")
R1KIT = [sys.executable, "-m", "r1kit.cli"]


def run(cmd: list[str], done: Path, log: Path, commands: list[str]) -> None:
    commands.append(shlex.join(["r1kit", *cmd]))
    if done.exists():
        return
    print("+ r1kit " + shlex.join(cmd), flush=True)
    with open(log, "w") as f:
        subprocess.run(["nice", "-n", "-5", *R1KIT, *cmd], stdout=f, stderr=subprocess.STDOUT, check=True)


def write_config(path: Path, section: str, values: dict) -> Path:
    lines = [f"{section}:"] + [f"  {k}: {json.dumps(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft", required=True, help="the SFT checkpoint (the demo recipe's 20-minute run)")
    parser.add_argument("--train", required=True, help="the SFT run's training data: baseline (b) continues on it")
    parser.add_argument("--test", required=True, help="the 2-3-step in-template held-out set (retention)")
    parser.add_argument("--unseen", required=True, help="the template-held-out set")
    parser.add_argument("--out", default="runs/hard")
    parser.add_argument("--minutes", type=float, default=15.0, help="training minutes of (b) and of each (c) run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of (c): GRPO on the 2-5-step mix, dynamic sampling")
    parser.add_argument("--ablation-seeds", type=int, nargs="*", default=[0],
                        help="seeds of the ablations: GRPO on 5-step problems alone (c), and on the mix without dynamic sampling (m)")
    parser.add_argument("--mix-steps", default="2-5", help="step counts of (c)'s RL problems, drawn uniformly (the last is the hard set's 5)")
    parser.add_argument("--results", default="benchmarks/results/rl_beyond.json")
    args = parser.parse_args()
    tag = "" if args.mix_steps == "2-5" else args.mix_steps.replace("-", "") + "_"  # the first runs kept their names
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    commands: list[str] = []

    # data: 500 held-out 5-step problems; for RL, 4,000 problems of 2-5 steps (a quarter of them 5 steps;
    # the shorter ones keep the model's length right on problems it could already do) and 4,000 of
    # 5 steps alone (the ablation), without their steps; no question shared with any other set
    hard, rl_mixed, rl_five = out / "steps5.jsonl", out / f"rl_steps{args.mix_steps}.jsonl", out / "rl_steps5.jsonl"
    run(["data", "synth", "--n", "500", "--seed", "105", "--steps", "5", "--max-operand", "100",
         "--exclude", args.train, "--out", str(hard)], hard, out / "data_hard.log", commands)
    run(["data", "synth", "--n", "4000", "--seed", "301", "--steps", args.mix_steps, "--max-operand", "100", "--answers-only",
         "--exclude", args.train, "--exclude", args.test, "--exclude", args.unseen, "--exclude", str(hard),
         "--out", str(rl_mixed)], rl_mixed, out / "data_rl_mixed.log", commands)
    run(["data", "synth", "--n", "4000", "--seed", "201", "--steps", "5", "--max-operand", "100", "--answers-only",
         "--exclude", args.train, "--exclude", str(hard), "--out", str(rl_five)], rl_five, out / "data_rl_five.log", commands)

    arms = {"a": Path(args.sft)}

    def grpo(name: str, train_data: Path, seed: int, dynamic_sampling: int) -> None:  # configs/rl_demo.yaml's settings
        rl = {"train_data": str(train_data), "eval_data": str(hard), "out_dir": str(out / name), "seed": seed,
              "group_size": 8, "prompts_per_step": 16, "max_steps": 100000, "max_minutes": args.minutes, "lr": 1e-4,
              "warmup_steps": 5, "ppo_epochs": 2, "max_new_tokens": 128, "eval_every": 0, "eval_n": 500, "save_every": 100}
        if dynamic_sampling:
            rl["dynamic_sampling"] = dynamic_sampling
        config = write_config(out / f"{name}.yaml", "rl", rl)
        run(["train", "rl", "--init", args.sft, "--config", str(config), "--no-progress"],
            out / name / "final", out / f"{name}.log", commands)
        arms[name] = out / name / "final"

    for seed in args.seeds:  # (c): the mix with dynamic sampling
        grpo(f"dm{tag}{seed}", rl_mixed, seed, dynamic_sampling=4)
    for seed in args.ablation_seeds:  # what each choice buys: 5-step problems alone; the mix without dynamic sampling
        grpo(f"c{seed}", rl_five, seed, dynamic_sampling=0)
        grpo(f"m{tag}{seed}", rl_mixed, seed, dynamic_sampling=0)
    # (b): SFT continued on its own traces for the same minutes, from its final learning rate down
    sft = {"init": args.sft, "train_data": args.train, "eval_data": str(hard), "out_dir": str(out / "b"), "batch_size": 32,
           "max_minutes": args.minutes, "decay_by": "minutes", "max_steps": 100000, "lr": 3e-4, "min_lr_ratio": 0.1,
           "warmup_steps": 0, "eval_every": 0, "eval_n": 500}
    config = write_config(out / "b.yaml", "sft", sft)
    run(["train", "sft", "--config", str(config), "--no-progress"], out / "b" / "final", out / "b.log", commands)
    arms["b"] = out / "b" / "final"

    figures: dict = {"arms": {}, "minutes": args.minutes, "seeds": args.seeds, "mix_steps": args.mix_steps}
    sft_log = Path(args.sft).parent / "metrics.jsonl"  # the SFT run's, beside its final/ checkpoint
    if sft_log.is_file():
        trained = [r for r in map(json.loads, sft_log.read_text().splitlines()) if "loss" in r and "step" in r]
        figures["sft_minutes"], figures["sft_steps"] = round(trained[-1]["train_minutes"], 1), trained[-1]["step"]
    rows: dict[str, dict[str, list[dict]]] = {}
    sets = {"hard": str(hard), "test": args.test, "unseen": args.unseen}
    for arm, ckpt in arms.items():
        sampled_json, rows_file = out / f"eval_{arm}.json", out / f"rows_{arm}.jsonl"
        run(["eval", str(ckpt), "--data", *sets.values(), "--samples", "8", "--temperature", "1.0", "--seed", "0",
             "--out", str(sampled_json)], sampled_json, out / f"eval_{arm}.log", commands)
        run(["eval", str(ckpt), "--data", *sets.values(), "--rows-out", str(rows_file)], rows_file, out / f"rows_{arm}.log", commands)
        evaluation = json.loads(sampled_json.read_text())["sets"]
        arm_rows = [json.loads(line) for line in rows_file.read_text().splitlines()]
        rows[arm] = {name: [r for r in arm_rows if r["data"] == path] for name, path in sets.items()}
        entry = {name: {**{k: evaluation[path][k] for k in KEYS}, **{k: v for k, v in evaluation[path]["sampled"].items()
                                                                    if k.startswith("pass@")}}
                 for name, path in sets.items()}
        if arm != "a":  # a trained arm: its steps and minutes, and for GRPO its rollout speed
            log = [json.loads(line) for line in (out / arm / "metrics.jsonl").read_text().splitlines()]
            trained = [r for r in log if "train_minutes" in r and "step" in r]
            entry["steps"], entry["train_minutes"] = trained[-1]["step"], trained[-1]["train_minutes"]
            rollouts = [r["rollout_tokens_per_s"] for r in log if "rollout_tokens_per_s" in r]
            if rollouts:
                entry["rollout_tokens_per_s"] = sum(rollouts) / len(rollouts)
        figures["arms"][arm] = entry

    c_arms = [f"dm{tag}{s}" for s in args.seeds]
    summary = {}
    for name in sets:
        values = [figures["arms"][c][name]["accuracy"] for c in c_arms]
        mean = sum(values) / len(values)
        spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        summary[name] = {"c_mean": mean, "c_sd": spread, "c_min": min(values), "c_max": max(values),
                         "a": figures["arms"]["a"][name]["accuracy"], "b": figures["arms"]["b"][name]["accuracy"],
                         "c_minus_a": [paired(rows[c][name], rows["a"][name]) for c in c_arms],
                         "c_minus_b": [paired(rows[c][name], rows["b"][name]) for c in c_arms],
                         "b_minus_a": paired(rows["b"][name], rows["a"][name])}
    figures["summary"] = summary
    figures["commands"] = commands
    for name, s in summary.items():
        print(f"{name}: (a) {s['a']:.1%}  (b) {s['b']:.1%}  (c) {s['c_mean']:.1%} +- {s['c_sd']:.1%} "
              f"[{s['c_min']:.1%}, {s['c_max']:.1%}] over {len(c_arms)} seeds")
    print(f"wrote {write_results(args.results, figures)}")


if __name__ == "__main__":
    main()
