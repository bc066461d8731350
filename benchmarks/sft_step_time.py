"""Where one SFT training step's time goes: forward, backward, clipping, optimiser (medians).

Builds the model of a config (with overrides), encodes training problems with a checkpoint's
tokenizer, and times real steps of the trainer's own functions (length-grouped batches, weighted
loss, clipping, Muon/AdamW, balancing update) after a few warm-up steps.

    python benchmarks/sft_step_time.py --config configs/demo.yaml --tokenizer runs/curves20/final \\
        --data runs/data/train_1-4_100.jsonl [model.attention.kind=dense model.moe.n_experts=0 ...]

On a shared or noisy machine, run the configurations to compare one after another, more than once.
`--compile attention` / `--compile model` times the same steps with torch.compile (dynamic shapes)
around each block's attention or the whole model (the first step, which compiles, reported apart);
`--examples N` encodes more of the file, so the length-grouped batches pad as a real run's do (the
padding share is printed). `--dtypes fp32,bf16-matmul` times compute precisions alternately, step
by step on the same batches, with each one's ratio to the first. `--results FILE` writes the
figures (benchmarks/results_file.py).
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--tokenizer", required=True, help="a directory holding tokenizer.json (a checkpoint)")
    parser.add_argument("--data", required=True, help="training JSONL")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--examples", type=int, default=4000, help="training problems encoded (batches are drawn from these)")
    parser.add_argument("--compile", choices=("none", "attention", "model"), default="none",
                        help="torch.compile(dynamic=True) around each block's attention or the whole model")
    parser.add_argument("--dtypes", help="comma-separated compute dtypes to time alternately on the same batches "
                        "(e.g. fp32,bf16-matmul; ratios against the first); default: what training would take (sft.dtype)")
    parser.add_argument("--results", help="write the figures to this JSON")
    parser.add_argument("overrides", nargs="*", help="model.x=.. / sft.y=.. as for r1kit train sft")
    args = parser.parse_args()

    import torch

    from r1kit.data.schema import load_examples
    from r1kit.device import autocast, choose_dtype
    from r1kit.train.loop import batch_indices
    from r1kit.train.sft import encode_examples, load_run_config, make_batch, model_for_tokenizer, sft_optimizer, weighted_loss
    from r1kit.data.tokenizer import Tokenizer

    torch.manual_seed(0)
    model_cfg, cfg = load_run_config(args.config, [f"sft.train_data={args.data}", *args.overrides])
    tok = Tokenizer.load(args.tokenizer)
    encoded, _ = encode_examples(tok, load_examples(args.data).examples[: args.examples], cfg.max_len)
    lengths = [len(ids) for ids, _ in encoded]
    model = model_for_tokenizer(model_cfg, tok)
    optimizer, optimizer_choice = sft_optimizer(model, cfg)
    dtype, dtype_reason = choose_dtype(cfg.dtype, "cpu", model.num_params(), training=True)  # what training would take
    model.train()
    stepped = model  # what the step calls; `model` keeps the parameters and the balancing state
    if args.compile == "attention":
        for block in model.layers:
            block.attn = torch.compile(block.attn, dynamic=True)
    elif args.compile == "model":
        stepped = torch.compile(model, dynamic=True)

    # the dtypes to time: what training would take (sft.dtype), or --dtypes, alternating step by step
    # on the same batches so that each sees the same machine
    dtypes = [(d, "asked for") for d in args.dtypes.split(",")] if args.dtypes else [(dtype, dtype_reason)]
    parts = {d: {"forward": [], "backward": [], "clip": [], "optimiser": [], "step": []} for d, _ in dtypes}
    tokens, padded, first_step = [], [], None
    for step in range(5 + args.steps):
        idx = batch_indices(lengths, cfg.batch_size, step, cfg.seed, cfg.length_window)
        inputs, targets, weights = make_batch(encoded, idx, tok.pad_id, cfg.prompt_loss_weight)
        for name, _ in dtypes:
            t0 = time.perf_counter()
            with autocast("cpu", name):
                loss = weighted_loss(stepped, inputs, targets, weights)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            t3 = time.perf_counter()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            model.update_balancing()
            t4 = time.perf_counter()
            first_step = t4 - t0 if first_step is None else first_step
            if step >= 5:  # the first steps allocate and warm caches (and compile)
                for part, seconds in zip(parts[name], (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                    parts[name][part].append(seconds)
        if step >= 5:
            tokens.append(int((targets != tok.pad_id).sum()))
            padded.append(targets.numel())
    print(f"{' '.join(args.overrides) or 'config as is'}: B={cfg.batch_size}, {statistics.mean(tokens):.0f} tokens a step, "
          f"{torch.get_num_threads()} threads, medians of {args.steps} steps"
          + (f", Newton-Schulz in {optimizer_choice['muon_ns_dtype']}" if optimizer_choice else ""))
    for name, reason in dtypes:
        print(f"  {name} ({reason}): " + "  ".join(f"{part} {statistics.median(v) * 1000:.0f} ms" for part, v in parts[name].items())
              + f"  (step mean {statistics.mean(parts[name]['step']) * 1000:.0f} ms)")
    print(f"  first step {first_step:.1f} s; padding {1 - sum(tokens) / sum(padded):.1%}; compile: {args.compile}")
    by_dtype = {name: {"reason": reason, "step_mean_ms": 1000 * statistics.mean(parts[name]["step"]),
                       "median_ms": {part: 1000 * statistics.median(v) for part, v in parts[name].items()}}
                for name, reason in dtypes}
    if len(dtypes) > 1:
        base = dtypes[0][0]
        for name, _ in dtypes[1:]:
            ratio = {"median": by_dtype[name]["median_ms"]["step"] / by_dtype[base]["median_ms"]["step"],
                     "mean": by_dtype[name]["step_mean_ms"] / by_dtype[base]["step_mean_ms"]}
            by_dtype[name][f"step_over_{base}"] = ratio
            print(f"  {name} / {base}: step median {ratio['median']:.2f}x, mean {ratio['mean']:.2f}x")
    if args.results:
        from results_file import write_results

        first = by_dtype[dtypes[0][0]]
        write_results(args.results, {
            "config": args.config, "overrides": args.overrides, "compile": args.compile, "batch_size": cfg.batch_size,
            "length_window": cfg.length_window, "examples": len(encoded), "steps_timed": args.steps,
            "tokens_per_step": statistics.mean(tokens), "padding_share": 1 - sum(tokens) / sum(padded),
            "first_step_s": first_step, "dtype": dtypes[0][0], "step_mean_ms": first["step_mean_ms"], "median_ms": first["median_ms"],
            "by_dtype": by_dtype})

if __name__ == "__main__":
    main()
