"""From which model size does bf16 autocast pay on this CPU? (r1kit.device.BF16_CPU_MIN_PARAMS)

Times a training step (forward, backward, AdamW) of the demo architecture (MoE top-2 of 4 experts,
multi-scale attention) at growing widths, fp32 against bf16 autocast, the two alternating step by
step in one process so that both see the same machine; reports medians and the bf16/fp32 ratio.
fp32 takes the fused multi-scale kernel where it is built (as training does); bf16 cannot.

    python benchmarks/bf16_cpu.py [--dims 128,256,512,1024] [--steps 8] [--out benchmarks/results/bf16_cpu.json]
"""

from __future__ import annotations

import argparse
import statistics
import time

from results_file import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", default="128,256,512,1024")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=96, help="tokens a row (the demo's problems take ~60-130)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per dtype, after 2 warm-up steps each")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--out", default="benchmarks/results/bf16_cpu.json")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    from r1kit.config import model_config_from
    from r1kit.device import autocast, cpu_native_bf16
    from r1kit.model.transformer import Transformer

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for dim in [int(d) for d in args.dims.split(",")]:
        torch.manual_seed(0)
        cfg = model_config_from({"preset": "demo", "vocab_size": 1024, "dim": dim, "n_layers": args.layers,
                                 "n_heads": max(4, dim // 64)})
        model = Transformer(cfg).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        ids = torch.randint(8, 1024, (args.batch, args.seq + 1))
        times = {"fp32": [], "bf16": []}
        for i in range(2 * (args.steps + 2)):
            dtype = "fp32" if i % 2 == 0 else "bf16"
            t0 = time.perf_counter()
            with autocast("cpu", dtype):
                logits = model(ids[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if i >= 4:
                times[dtype].append(time.perf_counter() - t0)
        fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
        row = {"dim": dim, "layers": args.layers, "params": model.num_params(), "fp32_ms": 1000 * fp32,
               "bf16_ms": 1000 * bf16, "bf16_over_fp32": bf16 / fp32}
        rows.append(row)
        print(f"dim {dim:5d}  {row['params'] / 1e6:7.1f}M params  fp32 {row['fp32_ms']:8.1f} ms  "
              f"bf16 {row['bf16_ms']:8.1f} ms  bf16/fp32 {row['bf16_over_fp32']:.2f}", flush=True)
        del model, optimizer
    native, flags = cpu_native_bf16()
    write_results(args.out, {"native_bf16": native, "bf16_flags": flags, "batch": args.batch, "seq": args.seq, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
