"""`r1kit report RUN_DIR`: a run's report.md and its plots, rebuilt from the metrics the run saved.

Reads RUN_DIR/sft/metrics.jsonl, RUN_DIR/rl/metrics.jsonl (SFT and GRPO trainers),
RUN_DIR/{sft,rl}/eval.json (evaluations of the final checkpoints) and RUN_DIR/run.json (the
demo's plan and timings), whichever exist, and writes RUN_DIR/report.md with PNG plots in
RUN_DIR/plots/: training loss; reward and its components over RL steps; expert load per layer
(heat map); mean gate weight per attention branch per layer; SFT vs RL accuracy, step validity
and steps. matplotlib is imported here only, and only with the Agg backend (no display needed).
"""

from __future__ import annotations

import json
from pathlib import Path

from r1kit.data.schema import atomic_file, read_metrics, write_text
from r1kit.recipes.data import EVAL_SETS

BRANCHES = ("local", "global", "symbolic")


# GRPO against SFT continued for the same minutes, measured by benchmarks/rl_beyond.py
RL_BASELINE = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "rl_beyond_mix35.json"  # the recipe's 3-5-step mix


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def write_report(run_dir: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"no run directory {run}")
    plots = run / "plots"
    plots.mkdir(exist_ok=True)
    sft_log, rl_log = read_metrics(run / "sft" / "metrics.jsonl"), read_metrics(run / "rl" / "metrics.jsonl")
    # per stage, each held-out set's summary (recipes.data.EVAL_SETS)
    evals = {f"{stage} {name}": _json(run / stage / file) for stage in ("sft", "rl") for name, file in EVAL_SETS.items()}
    evals = {k: v for k, v in evals.items() if v}
    meta = _json(run / "run.json") or {}
    if not sft_log and not rl_log and not evals:
        raise FileNotFoundError(f"{run} holds no sft/ or rl/ metrics or evaluations to report")
    figures: list[tuple[str, str]] = []

    def save(fig, name: str, caption: str) -> None:
        fig.tight_layout()
        with atomic_file(plots / name, "wb") as f:
            fig.savefig(f, format="png", dpi=110)
        plt.close(fig)
        figures.append((caption, f"plots/{name}"))

    train_sft = [r for r in sft_log if "loss" in r and "step" in r]
    if train_sft:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["step"] for r in train_sft], [r["loss"] for r in train_sft], lw=1)
        ax.set(xlabel="SFT step", ylabel="training loss (response tokens)", yscale="log", title="SFT loss")
        save(fig, "sft_loss.png", "SFT training loss")

    train_rl = [r for r in rl_log if "reward" in r]
    if train_rl:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        steps = [r["step"] for r in train_rl]
        for key in ("reward", "accuracy", "step_validity", "efficiency"):
            ax.plot(steps, [r[key] for r in train_rl], label=key, lw=1.5 if key == "reward" else 1)
        ax.set(xlabel="GRPO step", ylabel="mean over the step's rollouts", title="RL reward and its components")
        ax.legend(fontsize=8)
        save(fig, "rl_reward.png", "GRPO: reward and its components per step (sampled rollouts)")

    with_load = {k: v for k, v in evals.items() if k.endswith("test") and v.get("tokens_per_expert_per_layer")}
    if with_load:
        fig, axes = plt.subplots(1, len(with_load), figsize=(4 * len(with_load), 3), squeeze=False)
        for ax, (name, ev) in zip(axes[0], with_load.items()):
            counts = ev["tokens_per_expert_per_layer"]
            shares = [[c / max(sum(row), 1) for c in row] for row in counts]
            im = ax.imshow(shares, cmap="viridis", vmin=0, aspect="auto")
            ax.set(xlabel="expert", ylabel="layer", title=f"{name.upper()}: share of assignments")
            ax.set_xticks(range(len(shares[0])))
            ax.set_yticks(range(len(shares)))
            fig.colorbar(im, ax=ax)
        save(fig, "expert_load.png", "Expert load per layer during evaluation (share of the layer's token assignments; uniform = 1/E)")

    with_gates = {k: v for k, v in evals.items() if k.endswith("test") and v.get("gate_mean_per_layer")}
    if with_gates:
        fig, axes = plt.subplots(1, len(with_gates), figsize=(4.5 * len(with_gates), 3), squeeze=False)
        for ax, (name, ev) in zip(axes[0], with_gates.items()):
            gates = ev["gate_mean_per_layer"]
            width = 0.8 / len(BRANCHES)
            for b, branch in enumerate(BRANCHES):
                ax.bar([layer + b * width for layer in range(len(gates))], [g[b] for g in gates], width, label=branch)
            ax.set(xlabel="layer", ylabel="mean gate weight", ylim=(0, 1), title=f"{name.upper()}: attention branches")
            ax.set_xticks([layer + width for layer in range(len(gates))], [str(i) for i in range(len(gates))])
            ax.legend(fontsize=8)
        save(fig, "gates.png", "Mean gate weight per attention branch per layer during evaluation")

    if evals:  # accuracy per held-out set, SFT beside RL
        set_names = list(dict.fromkeys(name.split()[1] for name in evals))
        stages = list(dict.fromkeys(name.split()[0] for name in evals))
        fig, ax = plt.subplots(figsize=(6, 3.5))
        width = 0.8 / len(stages)
        for i, stage in enumerate(stages):
            values = [evals.get(f"{stage} {name}", {}).get("accuracy", 0.0) for name in set_names]
            ax.bar([k + i * width for k in range(len(set_names))], values, width, label=stage.upper())
        ax.set_xticks([k + width * (len(stages) - 1) / 2 for k in range(len(set_names))], set_names)
        ax.set(title="Held-out accuracy (greedy) by set", ylabel="accuracy", ylim=(0, 1))
        ax.legend()
        save(fig, "sft_vs_rl.png", "SFT vs RL: greedy accuracy on each held-out set")

    report = run / "report.md"
    write_text(report, _markdown(run, meta, evals, sft_log, rl_log, figures))
    return report


def _architecture(model: dict | None) -> str:
    """The model line's shape from run.json's model config: '4 layers x 128, dense attention, MoE 4
    experts top-2 (load_penalty); '."""
    if not model:
        return ""
    attention = model["attention"]
    kind = (f"multi-scale attention ({' + '.join(attention['branches'])}, mixed by learned gates)"
            if attention["kind"] == "multiscale" else "dense attention")
    moe = model["moe"]
    ffn = (f"MoE {moe['n_experts']} experts top-{moe['top_k']} ({moe['balancing']})" if moe["n_experts"] else "dense FFN")
    return f"{model['n_layers']} layers x {model['dim']}, {kind}, {ffn}; "


def _markdown(run: Path, meta: dict, evals: dict, sft_log: list[dict], rl_log: list[dict], figures) -> str:
    lines = [f"# r1kit run report: {run}", ""]
    if meta:
        kind = "quick smoke run (tiny model)" if meta.get("quick") else f"{meta.get('minutes_budget')}-minute demo"
        lines += [f"A {kind}, seed {meta.get('seed')}, finished in {meta.get('total_minutes', 0):.1f} minutes.", ""]
        if meta.get("overrides"):  # a variant of the demo, not the demo's own settings
            lines += [f"The config files' settings changed by: `{' '.join(meta['overrides'])}`.", ""]
        if meta.get("minutes_per_stage"):
            lines += ["| stage | minutes |", "|---|---|"]
            lines += [f"| {k} | {v:.2f} |" for k, v in meta["minutes_per_stage"].items()]
            lines.append("")
    start = next((r for r in sft_log if r.get("event") == "start"), None)
    if start:
        shape = _architecture(meta.get("configs", {}).get("model"))
        lines += [f"Model: {shape}{start['params']:,} parameters ({start['active_params']:,} active per token), "
                  f"vocabulary {start['vocab_size']}; SFT on {start['examples']:,} examples.", ""]
    if evals:
        lines += ["## Held-out evaluation (greedy decoding, the verifier's scores)", "",
                  "`test`: the templates' own held-out problems; `unseen`: template-held-out problems, whose "
                  "situations, sentence frames and verbs training never saw; `follow_up`: a dialogue's second "
                  "question on that unseen side; `hard`: held-out 5-step problems, one step past the longest trace "
                  "SFT saw (RL trains on 3-5-step problems given as questions and answers; docs/data.md).", "",
                  "| model | set | problems | accuracy | step validity | mean steps (optimal) | reward | expert utilisation per layer |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, ev in evals.items():
            util = " ".join(f"{u:.2f}" for u in ev.get("utilisation_per_layer", [])) or "-"
            stage, set_name = name.split()
            lines.append(f"| {stage.upper()} | {set_name} | {ev['n']} | {ev['accuracy']:.1%} | {ev['step_validity']:.3f} | "
                         f"{ev['mean_steps']:.2f} ({ev['mean_optimal_steps']:.2f}) | {ev['reward']:.3f} | {util} |")
        lines += ["", "Reproduce any row with `r1kit eval CHECKPOINT --data DATA --n N` (same greedy settings):", ""]
        lines += [f"    r1kit eval {ev['checkpoint']} --data {ev['data']} --n {ev['n']}" for ev in evals.values()]
        lines.append("")
    train_sft = [r for r in sft_log if "loss" in r]
    train_rl = [r for r in rl_log if "reward" in r]
    if train_sft:
        last = train_sft[-1]
        lines += [f"SFT: {last['step']} steps in {last['train_minutes']:.1f} training minutes, final training loss "
                  f"{last['loss']:.3f}, {last['tokens_per_s']:.0f} tokens/s.", ""]
    if train_rl:
        first, last = train_rl[0], train_rl[-1]
        lines += [f"GRPO: {last['step']} steps in {last['train_minutes']:.1f} training minutes; rollout reward "
                  f"{first['reward']:.3f} at the first step, {last['reward']:.3f} at the last "
                  f"(accuracy of sampled rollouts {first['accuracy']:.2f} -> {last['accuracy']:.2f}).", ""]
        start = next((r for r in rl_log if r.get("event") == "start"), {})
        share = start.get("rl", {}).get("update_share", 1.0)
        if share < 1:
            lines += [f"The RL rows are final/: the SFT weights plus {share:g} of GRPO's change to them (rl.update_share); "
                      f"the trained weights are in rl/last.", ""]
    baseline = _json(RL_BASELINE)
    if baseline and evals.get("rl hard"):
        hard = baseline["summary"]["hard"]
        lines += [f"Baseline at equal minutes ({RL_BASELINE.relative_to(RL_BASELINE.parents[2])}, docs/benchmarks.md): "
                  f"from a {baseline.get('sft_minutes', 20):g}-minute SFT model at {hard['a']:.1%} on 5-step problems, "
                  f"{baseline['minutes']:g} more minutes of SFT on its own traces gave {hard['b']:.1%}, and "
                  f"{baseline['minutes']:g} minutes of GRPO {hard['c_mean']:.1%} (mean of {len(baseline['seeds'])} seeds). "
                  f"This run's GRPO stage took {meta.get('minutes_per_stage', {}).get('rl', 0):.1f} minutes.", ""]
    for caption, path in figures:
        lines += [f"### {caption}", "", f"![{caption}]({path})", ""]
    return "\n".join(lines)
