"""Forward+backward throughput and peak memory of the model on CPU, side by side.

(a) dense SwiGLU feed-forward vs a mixture of experts with the same active parameters per token;
(b) dense causal SDPA vs multi-scale attention at several sequence lengths.

Each configuration runs in a fresh subprocess so that its peak resident memory is its own:
peak memory = peak RSS over the training steps minus RSS just before them (model, gradient
buffers and Python already resident): the activations and temporaries a step needs. Prints a table and writes JSON.

    python benchmarks/model_throughput.py [--quick] [--out benchmarks/results/model_throughput.json]
"""

from __future__ import annotations

import argparse
import resource
import time

from child import run_child
from results_file import write_results


CHILD_TIMEOUT_S = 1800  # one measurement's ceiling: a child that hangs is killed, one that dies is reported at once

def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _measure(config: dict, batch: int, seq_len: int, steps: int, queue) -> None:
    import torch

    from r1kit.config import ModelConfig
    from r1kit.model.transformer import Transformer

    torch.manual_seed(0)
    model = Transformer(ModelConfig(**config)).train()
    model.set_symbol_flags(torch.rand(model.config.vocab_size) < 0.3)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq_len + 1))

    def step():
        logits = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        aux = model.aux_loss()
        (loss if aux is None else loss + aux).backward()
        model.zero_grad(set_to_none=False)
        model.update_balancing()

    for p in model.parameters():  # gradients are resident in any training run: not part of the peak
        p.grad = torch.zeros_like(p)
    base = _rss_bytes()
    step()  # warm-up: first-call overheads
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put({
        "tokens_per_s": batch * seq_len * steps / elapsed,
        "peak_mem_mib": max(0, peak - base) / 2**20,
        "params": model.num_params(),
        "active_params": model.num_params(active=True),
    })


def measure(config: dict, batch: int, seq_len: int, steps: int) -> dict:
    return run_child(_measure, (config, batch, seq_len, steps), timeout_s=CHILD_TIMEOUT_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and no T=4096 (a smoke run)")
    parser.add_argument("--out", default="benchmarks/results/model_throughput.json")
    args = parser.parse_args()

    rows = []
    base = dict(vocab_size=512, dim=256, n_layers=4, n_heads=8, max_seq_len=4096, ffn_hidden=704, moe=dict(n_experts=0))

    # (a) dense FFN vs MoE, equal active parameters: 8 experts, top-2, each half the dense width
    dense_attn = dict(kind="dense")
    ffn_cases = {
        "dense FFN": dict(base, attention=dense_attn),
        "MoE 8x(352) top-2, load_penalty": dict(base, attention=dense_attn, moe=dict(n_experts=8, top_k=2, expert_hidden=352)),
        "MoE 8x(352) top-2, bias": dict(base, attention=dense_attn, moe=dict(n_experts=8, top_k=2, expert_hidden=352, balancing="bias")),
    }
    steps = 3 if args.quick else 8
    for name, cfg in ffn_cases.items():
        r = measure(cfg, batch=16, seq_len=256, steps=steps)
        rows.append({"part": "a", "name": name, "seq_len": 256, "batch": 16, **r})
        print(f"(a) {name:34s} T=256  {r['tokens_per_s']:9.0f} tok/s  peak {r['peak_mem_mib']:7.1f} MiB  active {r['active_params']:,}", flush=True)

    # (b) dense SDPA vs multi-scale attention, dense FFN, equal tokens per step (4096)
    lengths = [256, 1024] if args.quick else [256, 1024, 4096]
    for T in lengths:
        for kind in ("dense", "multiscale"):
            cfg = dict(base, attention=dict(kind=kind))
            r = measure(cfg, batch=4096 // T, seq_len=T, steps=2 if args.quick else 4)
            rows.append({"part": "b", "name": f"{kind} attention", "seq_len": T, "batch": 4096 // T, **r})
            print(f"(b) {kind + ' attention':34s} T={T:<5d}{r['tokens_per_s']:9.0f} tok/s  peak {r['peak_mem_mib']:7.1f} MiB", flush=True)

    def get(part, name, T):
        return next(r for r in rows if r["part"] == part and r["name"] == name and r["seq_len"] == T)

    dense = get("a", "dense FFN", 256)
    summary = {
        f"moe_vs_dense_tokens_per_s[{r['name']}]": r["tokens_per_s"] / dense["tokens_per_s"]
        for r in rows if r["part"] == "a" and r is not dense
    }
    for T in lengths:
        d, m = get("b", "dense attention", T), get("b", "multiscale attention", T)
        summary[f"multiscale_vs_dense_peak_mem[T={T}]"] = m["peak_mem_mib"] / max(d["peak_mem_mib"], 1e-9)
        summary[f"multiscale_vs_dense_tokens_per_s[T={T}]"] = m["tokens_per_s"] / d["tokens_per_s"]
    print("\nratios:")
    for k, v in summary.items():
        print(f"  {k:60s} {v:6.2f}")

    print(f"\nwrote {write_results(args.out, {'config_base': base, 'rows': rows, 'ratios': summary})}")


if __name__ == "__main__":
    main()
