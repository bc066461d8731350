"""Decode speed at a GRPO step's shape (16 prompts x 8 samples): the engine before issue 21 (per-row
sampler, contiguous cache) against today's (batched sampler, shared KV memory), on the demo model.

    python benchmarks/batched_sampling.py [--prompts 16] [--samples 8] [--new-tokens 64] [--rounds 5] [--quick]

The demo preset's shape with random weights; `--prompts` random prompts of `--prompt-len` tokens,
each asking for `--samples` samples (temperature 1.0, seed = the prompt's index), every sample
running to exactly new_tokens (no EOS: the engine has no tokenizer). Three engine configurations:
  before        the per-row sampler (kept here only: sampling_probs and torch.multinomial row by
                row, each sample with its own torch.Generator seeded from (request seed, sample
                index)) on the contiguous cache (memory_reuse: false): the engine before issue 21;
  batched-only  Engine._sample as it is (one Gumbel-max draw for all rows) on the contiguous cache;
  now           the batched sampler on the paged cache (memory_reuse: true, the default), and the
                MoE's dense dispatch for decode steps (before and batched-only run without it, as
                the engine before issue 21 did).
decode tokens/s = rows x (new_tokens - 1) / (time for new_tokens - time for one), a fresh Engine
per call, the best of `--repeats` timings. The configurations alternate `--rounds` times in one
process; each is reported as the median with its range, and each speed-up over `before` as the
median of each round's ratio with its range (a target counts as met by the worst round).
Target (issue 21): now / before >= 2x.
Results: benchmarks/results/batched_sampling.json (not written by --quick).
"""

from __future__ import annotations

import argparse
import statistics
import time
import types
from pathlib import Path

import torch

from results_file import write_results
from r1kit.config import model_config_from
from r1kit.inference.engine import Engine, SamplingParams
import r1kit.model.moe as moe
from r1kit.inference.sampling import sampling_probs
from r1kit.model.transformer import Transformer

TARGET_SPEEDUP = 2.0


def per_row_sample(self: Engine, running, logits_BV) -> tuple[torch.Tensor, torch.Tensor]:
    """Engine._sample before batched sampling: one sampling_probs and torch.multinomial per sampled
    row, each sample drawing from its own generator (created at its first draw here, at prefill
    then, seeded alike: a sample's seed is today's generator seed for a seeded request)."""
    generators = self.__dict__.setdefault("_per_row_generators", {})
    logits_BV = logits_BV.float()
    logprobs_BV = torch.log_softmax(logits_BV, dim=-1)
    tokens_B = logits_BV.argmax(dim=-1)
    for row, seq in enumerate(running):
        params = seq.request.params
        if params.temperature > 0:
            probs_V = sampling_probs(logits_BV[row], params)
            key = (seq.request.request_id, seq.sample.index)
            if key not in generators:
                generators[key] = torch.Generator(device=self.device).manual_seed(seq.seed)
            tokens_B[row] = torch.multinomial(probs_V, 1, generator=generators[key])[0]
    return tokens_B, logprobs_BV.gather(-1, tokens_B[:, None])[:, 0]


def build_model(preset: str) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(model_config_from({"preset": preset})).eval()
    model.set_symbol_flags(torch.rand(model.config.vocab_size) < 0.3)
    return model


CONFIGS = {"before": ("per-row", False), "batched-only": ("batched", False), "now": ("batched", True)}
DENSE_DISPATCH = {"before": 0, "batched-only": 0, "now": moe.DENSE_DISPATCH_MAX}  # the MoE's dense decode path came later


def generate_seconds(model: Transformer, prompts: list[list[int]], samples: int, new_tokens: int, config: str) -> float:
    """Wall time of one generate() call for every prompt, checked to give every sample new_tokens tokens."""
    sampler, reuse = CONFIGS[config]
    moe.DENSE_DISPATCH_MAX = DENSE_DISPATCH[config]
    engine = Engine(model, max_batch_size=len(prompts) * samples, max_batch_tokens=1 << 20,
                    dynamic_inference={"memory_reuse": reuse})
    if sampler == "per-row":
        engine._sample = types.MethodType(per_row_sample, engine)
    params = [SamplingParams(max_new_tokens=new_tokens, temperature=1.0, seed=i, n=samples) for i in range(len(prompts))]
    t0 = time.perf_counter()
    outputs = engine.generate(prompts, params)
    seconds = time.perf_counter() - t0
    lengths = {len(s.token_ids) for out in outputs for s in out.samples}
    if lengths != {new_tokens}:
        raise RuntimeError(f"{config}: samples of {sorted(lengths)} tokens, expected {new_tokens} each")
    return seconds


def decode_tokens_per_s(model, prompts, samples, new_tokens, sampler, repeats) -> float:
    one = min(generate_seconds(model, prompts, samples, 1, sampler) for _ in range(repeats))
    full = min(generate_seconds(model, prompts, samples, new_tokens, sampler) for _ in range(repeats))
    return len(prompts) * samples * (new_tokens - 1) / max(full - one, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="alternate the samplers this many times; medians reported")
    parser.add_argument("--quick", action="store_true", help="tiny model, 4 prompts x 2 samples, 8 tokens, one round: a smoke run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "batched_sampling.json"))
    args = parser.parse_args()
    if args.quick:
        args.preset, args.prompts, args.samples, args.prompt_len = "tiny", 4, 2, 8
        args.new_tokens, args.repeats, args.rounds = 8, 1, 1

    model = build_model(args.preset)
    prompts = torch.randint(3, model.config.vocab_size, (args.prompts, args.prompt_len),
                            generator=torch.Generator().manual_seed(1)).tolist()
    samplers = tuple(CONFIGS)
    runs: dict[str, list[float]] = {name: [] for name in samplers}
    with torch.inference_mode():
        for name in samplers:  # warm-up
            generate_seconds(model, prompts, args.samples, 2, name)
        for round_ in range(args.rounds):
            for name in samplers:
                runs[name].append(decode_tokens_per_s(model, prompts, args.samples, args.new_tokens, name, args.repeats))
            print(f"round {round_ + 1}: " + "  ".join(f"{name} {runs[name][-1]:8.0f} tok/s" for name in samplers), flush=True)

    figures = {name: {"decode_tokens_per_s": statistics.median(rs), "decode_tokens_per_s_range": [min(rs), max(rs)],
                      "rounds": rs} for name, rs in runs.items()}
    speedup = {}
    for name in ("batched-only", "now"):
        ratios = [b / a for a, b in zip(runs["before"], runs[name])]
        speedup[name] = {"median": statistics.median(ratios), "range": [min(ratios), max(ratios)], "rounds": ratios}
        print(f"{name} / before decode: {speedup[name]['median']:.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f})")
    speedup["now"].update(target=TARGET_SPEEDUP, target_met=min(speedup["now"]["rounds"]) >= TARGET_SPEEDUP)
    print(f"target {TARGET_SPEEDUP}x {'met' if speedup['now']['target_met'] else 'not met'} by the worst round")
    settings = {"preset": args.preset, "params": model.num_params(), "prompts": args.prompts, "samples": args.samples,
                "rows": args.prompts * args.samples, "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
                "temperature": 1.0, "repeats": args.repeats, "rounds": args.rounds}
    if not args.quick:
        print(f"wrote {write_results(args.out, {'settings': settings, 'configs': figures, 'speedup': speedup})}")


if __name__ == "__main__":
    main()
