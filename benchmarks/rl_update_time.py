"""GRPO's update phase on one rollout batch: the rollout policy's log-probs from a separate no-grad
forward before the passes (r1kit before 2026-12-07) against from the first pass's own forward (now).

Samples one step's rollouts (16 prompts x 8, configs/rl_demo.yaml's settings) from a checkpoint,
then times the update of that batch both ways, in turn within each round (ppo_epochs passes, AdamW,
balancing update; the weights move between rounds as training would move them). Medians.

    python benchmarks/rl_update_time.py runs/demo/sft/final --data runs/demo/data/rl_train.jsonl \\
        [--rounds 8] [--results benchmarks/results/rl_update_time.json]
"""

from __future__ import annotations

import argparse
import statistics
import time

from results_file import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data", required=True, help="RL training problems (JSONL)")
    parser.add_argument("--config", default="configs/rl_demo.yaml")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--results", default="benchmarks/results/rl_update_time.json")
    args = parser.parse_args()

    import torch

    from r1kit.data.schema import load_examples
    from r1kit.data.tokenizer import Tokenizer
    from r1kit.interop.checkpoint import load_pretrained
    from r1kit.train.grpo import completion_rewards, load_rl_config, make_micro_batches, policy_update, rollout
    from r1kit.train.grpo_loss import group_advantages, token_logprobs
    from r1kit.train.optim import adamw

    torch.manual_seed(0)
    cfg = load_rl_config(args.config, [f"rl.train_data={args.data}"])
    tok, model = Tokenizer.load(args.checkpoint), load_pretrained(args.checkpoint)
    problems = load_examples(args.data).examples[: cfg.prompts_per_step]
    prompts = [tok.encode_conversation(ex.messages) for ex in problems]
    completions = rollout(model, tok, prompts, cfg, step=0)
    G = cfg.group_size
    rewards, _ = completion_rewards(tok, completions, [ex for ex in problems for _ in range(G)], cfg, [])
    advantages_N = group_advantages(torch.tensor(rewards, dtype=torch.float64).view(len(problems), G), cfg.advantage).flatten().float()
    rows = [p for p in prompts for _ in range(G)]
    optimizer = adamw(model, cfg.lr, cfg.weight_decay, (0.9, 0.95))
    tokens = sum(map(len, rows + completions))

    def update(separate_old_forward: bool) -> float:
        batches = make_micro_batches(rows, completions, advantages_N, tok.pad_id, cfg.micro_batch_size, "cpu")
        started = time.perf_counter()
        if separate_old_forward:
            model.train()
            with torch.no_grad():
                for mb in batches:
                    mb.logp_old_BT, _ = token_logprobs(model, mb.ids_BT, cfg.temperature)
                    mb.topk_old = model.last_routing()
        for _ in range(cfg.ppo_epochs):
            policy_update(model, optimizer, batches, cfg)
        return time.perf_counter() - started

    times = {"separate_old_forward": [], "first_pass": []}
    for r in range(args.rounds + 1):
        for arm in times:
            seconds = update(arm == "separate_old_forward")
            if r:  # round 0 warms up
                times[arm].append(seconds)
    medians = {arm: statistics.median(v) for arm, v in times.items()}
    for arm, s in medians.items():
        print(f"{arm:22s} {s:.2f} s an update ({cfg.ppo_epochs * tokens / s:,.0f} tokens/s as train_rl counts them)")
    print(f"first pass / separate forward: {medians['first_pass'] / medians['separate_old_forward']:.2f}")
    figures = {"checkpoint": args.checkpoint, "rollouts": len(completions), "prompt_and_completion_tokens": tokens,
               "ppo_epochs": cfg.ppo_epochs, "rounds": args.rounds, "median_seconds": medians,
               "first_pass_over_separate": medians["first_pass"] / medians["separate_old_forward"]}
    print(f"wrote {write_results(args.results, figures)}")


if __name__ == "__main__":
    main()
