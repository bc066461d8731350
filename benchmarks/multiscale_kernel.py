"""One layer's multi-scale attention, forward + backward: the fused CPU kernel against the three
SDPA branches it replaces in training (r1kit/model/kernels/multiscale.py vs r1kit.model.attention.multiscale_chunk).

Same inputs for both (the demo model's shape: 4 heads of 32, window 32, top-64, ~40% symbol
keys), gate mixing included; the two run alternately, medians over `--steps` repetitions per
round, and the largest difference of outputs and gradients is printed first. The speed-up is
the median of the rounds' ratios with their range (on a shared machine a figure counts by its worst
round). Results: benchmarks/results/multiscale_kernel.json.

    python benchmarks/multiscale_kernel.py [--lengths 40,77,100,130] [--batch 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from results_file import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="40,77,100,130", help="sequence lengths T (comma-separated)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--topk", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/multiscale_kernel.json")
    args = parser.parse_args()

    import torch

    from r1kit.model.kernels import multiscale as multiscale_kernel
    from r1kit.model.attention import multiscale_chunk

    if not multiscale_kernel.available():
        raise SystemExit(f"the fused kernel is not available here: {multiscale_kernel.unavailable_reason()}")
    B, H, D = args.batch, args.heads, args.head_dim

    def sdpa_branches(q, k, v, gate_logits, symbols):
        T = q.shape[2]
        pos = torch.arange(T).expand(B, T)
        gate_3BHT1 = torch.softmax(gate_logits, -1).permute(3, 0, 2, 1).unsqueeze(-1)
        return (gate_3BHT1 * multiscale_chunk(q, k, v, pos, pos, symbols, 0, args.window, args.topk)).sum(0)

    def fused(q, k, v, gate_logits, symbols):
        gate_BHT3 = torch.softmax(gate_logits, -1).transpose(1, 2)
        return multiscale_kernel.fused_multiscale_attention(q, k, v, gate_BHT3, symbols, args.window, args.topk)

    def run(fn, inputs):
        for x in inputs[:4]:
            x.grad = None
        out = fn(*inputs)
        out.sum().backward()
        return out.detach(), [x.grad for x in inputs[:4]]

    def median_ms(fn, inputs):
        times = []
        for i in range(args.steps + 2):
            start = time.perf_counter()
            run(fn, inputs)
            if i >= 2:  # warm-up
                times.append(time.perf_counter() - start)
        return statistics.median(times) * 1000

    print(f"B={B}, H={H}, D={D}, window {args.window}, top-{args.topk}, {torch.get_num_threads()} threads; "
          f"forward + backward of one layer's branches, medians of {args.steps}, {args.rounds} alternating rounds")
    print("| T | SDPA branches ms | fused ms | speed-up, median of rounds (min-max) | max abs difference (out, grads) |")
    print("|---|---|---|---|---|")
    rows = []
    for T in (int(t) for t in args.lengths.split(",")):
        g = torch.Generator().manual_seed(T)
        inputs = [torch.randn(B, H, T, D, generator=g).requires_grad_() for _ in range(3)]
        inputs += [torch.randn(B, T, H, 3, generator=g).requires_grad_(), torch.rand(B, T, generator=g) < 0.4]
        (out_a, grads_a), (out_b, grads_b) = run(sdpa_branches, inputs), run(fused, inputs)
        diff = max(float((a - b).abs().max()) for a, b in zip([out_a, *grads_a], [out_b, *grads_b]))
        ref, new = [], []
        for _ in range(args.rounds):
            ref.append(median_ms(sdpa_branches, inputs))
            new.append(median_ms(fused, inputs))
        ratios = [r / n for r, n in zip(ref, new)]
        rows.append({"T": T, "sdpa_ms": ref, "fused_ms": new, "speedup_rounds": ratios,
                     "speedup_median": statistics.median(ratios), "max_abs_difference": diff})
        print(f"| {T} | {statistics.median(ref):.1f} ({min(ref):.1f}-{max(ref):.1f}) | {statistics.median(new):.1f} "
              f"({min(new):.1f}-{max(new):.1f}) | {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) "
              f"| {diff:.1e} |")
    settings = {k: getattr(args, k) for k in ("batch", "heads", "head_dim", "window", "topk", "steps", "rounds")}
    print(f"wrote {write_results(args.out, {'settings': settings, 'rows': rows})}")


if __name__ == "__main__":
    main()
