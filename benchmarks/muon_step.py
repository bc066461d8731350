"""Muon's optimiser step on the demo model: Newton-Schulz one call per parameter against one call
per parameter shape, in fp32 and in bf16, and the whole MuonAdamW step in each precision.

The model is configs/demo.yaml's (random weights, random gradients: the step's cost does not depend
on their values). Every variant runs in turn within each round, so drift of a shared machine falls
on all of them alike; medians over the rounds.

    python benchmarks/muon_step.py [--rounds 40] [--results benchmarks/results/muon_step.json]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

from results_file import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--results", default="benchmarks/results/muon_step.json")
    args = parser.parse_args()

    import torch

    from r1kit.model.transformer import Transformer
    from r1kit.train.optim import muon_adamw, muon_param_names, ns_dtype, orthogonalize
    from r1kit.train.sft import load_run_config

    torch.manual_seed(0)
    model_cfg, _ = load_run_config(args.config, [])
    model = Transformer(model_cfg.model_copy(update={"vocab_size": 1024}))  # the demo's BPE size
    hidden = muon_param_names(model)
    updates = [torch.randn_like(p) for n, p in model.named_parameters() if n in hidden]
    by_shape = defaultdict(list)
    for u in updates:
        by_shape[tuple(u.shape)].append(u)
    stacks = [torch.stack(us) for us in by_shape.values()]
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    precisions = {"fp32": torch.float32, "bf16": torch.bfloat16}
    optimizers = {name: muon_adamw(model, 1e-6, 0.1, (0.9, 0.95), ns_dtype=dtype) for name, dtype in precisions.items()}

    variants = {}
    for name, dtype in precisions.items():
        variants[f"newton_schulz_per_parameter_{name}"] = lambda d=dtype: [orthogonalize(u, dtype=d) for u in updates]
        variants[f"newton_schulz_per_shape_{name}"] = lambda d=dtype: [orthogonalize(s, dtype=d) for s in stacks]
        variants[f"optimizer_step_{name}"] = optimizers[name].step
    times = {k: [] for k in variants}
    for r in range(args.rounds + 3):
        for key, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            if r >= 3:  # warm-up rounds: allocation, kernel selection
                times[key].append(time.perf_counter() - t0)
    medians_ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
    for key, ms in medians_ms.items():
        print(f"{key:36s} {ms:6.1f} ms")
    auto, reason = ns_dtype("auto", "cpu")
    figures = {
        "muon_parameters": len(updates), "shapes": {str(list(s)): len(us) for s, us in by_shape.items()},
        "rounds": args.rounds, "median_ms": medians_ms,
        "ratios": {
            "per_shape_over_per_parameter_fp32": medians_ms["newton_schulz_per_shape_fp32"] / medians_ms["newton_schulz_per_parameter_fp32"],
            "per_shape_over_per_parameter_bf16": medians_ms["newton_schulz_per_shape_bf16"] / medians_ms["newton_schulz_per_parameter_bf16"],
            "bf16_over_fp32_step": medians_ms["optimizer_step_bf16"] / medians_ms["optimizer_step_fp32"],
        },
        "auto_here": {"dtype": str(auto).removeprefix("torch."), "reason": reason},
    }
    print(f"wrote {write_results(args.results, figures)}")


if __name__ == "__main__":
    main()
