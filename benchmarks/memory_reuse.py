"""Shared KV memory (dynamic_inference.memory_reuse) on against off, and the engine's precisions.

    python benchmarks/memory_reuse.py [--models demo dense-25m] [--rounds 3] [--checkpoint runs/demo/final --data runs/demo/data/test.jsonl] [--quick]

Reuse on is the paged engine (r1kit.inference.paged_batch) with decode attention reading the blocks
in place (the C++ kernel); "gather" is the same engine gathering the blocks into a contiguous tensor
per layer per step instead (decode_kernel: false; grpo and no_sharing only); off is the contiguous
engine it replaced (one cache row per sample, r1kit.inference.contiguous_batch). Models have random weights
(the demo preset, MoE + multi-scale, and a 25.8M dense one), so tokens are synthetic ids; a sample
ends at one of 8 "stop" ids (a random model draws one about every 64 tokens at temperature 1) or at
max_new_tokens. Both engines get the same requests and seeds and give the same tokens (tests), so
their KV memory and times compare the same work. The workloads, sized to the 384-token context:

- dialogue: 5 turns re-sent by format_conversation's convention (BOS, user turns whole, earlier
  assistant turns by their final answer only, then the generation prompt), 48-token system text,
  24-token questions, 48 generated tokens of which the last 6 stand for the answer. Per turn: prompt
  tokens computed against the minimum the convention allows (the tokens after what this prompt
  shares with the previous one: the answer replaces the reasoning, so the previous turn's
  generated blocks cannot match), and peak KV bytes.
- grpo: 16 prompts of 64 tokens x 8 samples (temperature 1, up to 128 new tokens): peak KV bytes
  against today's engine and an exact-length allocation (the most tokens alive at once, each held
  once per row, nothing shared: what sharing saves is the gap between it and reuse on), and tokens/s.
- system_prompt: 64 requests of a 128-token system prompt + a 16-token question, added at once,
  8 new tokens: time to first token p50 / p99.
- no_sharing: 32 distinct 64-token prompts, greedy, 64 new tokens each: decode tokens/s
  (time for 64 tokens minus time for one).
- precision (with --checkpoint and --data): greedy tokens/s and final-answer agreement with fp32 on
  the first 500 problems, for each precision this machine runs (fp16 is refused on a CPU).

Rounds alternate on / off; each figure is the median with its min-max; a ratio's target counts as
met by its worst round. Results: benchmarks/results/memory_reuse.json (not written by --quick).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from results_file import write_results
from r1kit.config import model_config_from
from r1kit.inference.engine import Engine, SamplingParams
from r1kit.model.transformer import Transformer

MODELS = {
    "demo": dict(preset="demo"),
    "dense-25m": dict(preset="demo", dim=512, n_layers=8, n_heads=8, attention=dict(kind="dense"), moe=dict(n_experts=0)),
    "tiny": dict(preset="tiny", vocab_size=512, max_seq_len=384),  # --quick: a smoke run of every workload
}
STOP_IDS = tuple(range(500, 508))  # a random model's "EOS": ~1 in 64 draws at temperature 1 over 512 ids
BOS, USER, ASSISTANT, THINK, NL, EOS = 1, 2, 3, 4, 5, 6  # the chat template's special ids (synthetic)
TARGETS = {"dialogue_slack_blocks": 1, "grpo_kv_ratio": 0.5, "system_prompt_ttft_p50_ratio": 0.5,
           "no_sharing_decode_ratio_demo": 0.9}


def build_model(name: str) -> Transformer:
    torch.manual_seed(0)
    model = Transformer(model_config_from(MODELS[name])).eval()
    model.set_symbol_flags(torch.rand(model.config.vocab_size) < 0.3)
    return model


def engine_for(model, reuse: bool | str, **kwargs) -> Engine:
    """reuse: True (paged, decode reading blocks in place), "gather" (paged, gathering), False (contiguous)."""
    block = {"memory_reuse": bool(reuse), "decode_kernel": reuse is True}
    return Engine(model, dtype="fp32", dynamic_inference=block, **kwargs)


def random_ids(n: int, seed: int, vocab: int) -> list[int]:
    return torch.randint(10, min(vocab, 500), (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def kv_bytes_per_token(model) -> int:
    cfg = model.config
    return 2 * cfg.n_layers * cfg.kv_heads * cfg.head_dim * 4


# ---------------------------------------------------------------------- workloads


def dialogue(model, reuse: bool, scale: float) -> dict:
    """5 turns; per turn the prompt tokens computed and the minimum the convention allows."""
    vocab, K = model.config.vocab_size, 16
    engine = engine_for(model, reuse)
    system, gen = random_ids(int(48 * scale), 1, vocab), max(2, int(48 * scale))
    turns, conversation, previous = [], [BOS, USER] + system, None
    for turn in range(5):
        prompt = conversation + random_ids(int(24 * scale), 10 + turn, vocab) + [ASSISTANT, THINK, NL]
        t0 = time.perf_counter()
        out = engine.generate([prompt], SamplingParams(max_new_tokens=gen, stop_token_ids=()))[0]
        seconds = time.perf_counter() - t0
        shared = 0 if previous is None else next(
            (i for i, (a, b) in enumerate(zip(prompt, previous)) if a != b), min(len(prompt), len(previous)))
        computed, minimum = len(prompt) - out.cached_tokens, len(prompt) - shared
        turns.append({"prompt_tokens": len(prompt), "computed": computed, "minimum": minimum,
                      "slack_tokens": computed - minimum, "seconds": seconds})
        answer = out.samples[0].token_ids[-6:]  # the final part only goes back into the conversation
        conversation = prompt[:-2] + answer + [EOS, USER]  # ...ASSISTANT answer EOS, USER next question
        previous = prompt
    stats = engine.stats()
    exact = max(t["prompt_tokens"] for t in turns) + gen - 1
    return {"turns": turns, "prompt_tokens": sum(t["prompt_tokens"] for t in turns),
            "computed_tokens": sum(t["computed"] for t in turns), "minimum_tokens": sum(t["minimum"] for t in turns),
            "max_slack_tokens": max(t["slack_tokens"] for t in turns), "block_size": K,
            "peak_kv_bytes": stats.peak_kv_bytes, "peak_kv_bytes_in_use": stats.peak_kv_bytes_in_use,
            "exact_kv_bytes": exact * kv_bytes_per_token(model), "seconds": sum(t["seconds"] for t in turns)}


def grpo(model, reuse: bool, scale: float) -> dict:
    """16 prompts x 8 samples: peak KV bytes (and the exact-length peak), tokens/s."""
    prompts = [random_ids(int(64 * scale), 100 + i, model.config.vocab_size) for i in range(16)]
    params = [SamplingParams(max_new_tokens=int(128 * scale), temperature=1.0, seed=i, n=8, stop_token_ids=STOP_IDS)
              for i in range(16)]
    engine = engine_for(model, reuse, max_batch_size=128, max_batch_tokens=1 << 20)
    ids = [engine.add_request(p, sp) for p, sp in zip(prompts, params)]
    live_peak, t0 = 0, time.perf_counter()
    while engine.has_unfinished():
        engine.step()
        live_peak = max(live_peak, sum(seq.position for b in engine._batches.values() for seq in b.running))
    seconds = time.perf_counter() - t0
    outputs = [engine.pop_output(i) for i in ids]
    tokens = sum(len(s.token_ids) for o in outputs for s in o.samples)
    stats = engine.stats()
    return {"peak_kv_bytes": stats.peak_kv_bytes, "peak_kv_bytes_in_use": stats.peak_kv_bytes_in_use,
            "exact_kv_bytes": live_peak * kv_bytes_per_token(model),
            "generated_tokens": tokens, "tokens_per_s": tokens / seconds, "seconds": seconds,
            "samples_digest": hash(tuple(tuple(s.token_ids) for o in outputs for s in o.samples))}


def system_prompt(model, reuse: bool, scale: float) -> dict:
    """64 requests behind one 128-token system prompt, added at once: time to first token."""
    vocab = model.config.vocab_size
    system = random_ids(int(128 * scale), 7, vocab)
    prompts = [system + random_ids(int(16 * scale), 200 + i, vocab) for i in range(64)]
    engine = engine_for(model, reuse)
    t0 = time.perf_counter()
    ids = {engine.add_request(p, SamplingParams(max_new_tokens=8)): None for p in prompts}
    first: dict[int, float] = {}
    while engine.has_unfinished():
        for event in engine.step():
            if event.request_id not in first:
                first[event.request_id] = time.perf_counter() - t0
    ttft = sorted(first[i] for i in ids)
    return {"ttft_p50": statistics.median(ttft), "ttft_p99": ttft[min(len(ttft) - 1, int(0.99 * len(ttft)))],
            "seconds": time.perf_counter() - t0}


def no_sharing(model, reuse: bool, scale: float) -> dict:
    """32 distinct prompts, greedy: decode tokens/s."""
    prompts = [random_ids(int(64 * scale), 300 + i, model.config.vocab_size) for i in range(32)]
    new = max(4, int(64 * scale))

    def seconds(n: int) -> float:
        engine = engine_for(model, reuse, max_batch_size=32)
        t0 = time.perf_counter()
        outs = engine.generate(prompts, SamplingParams(max_new_tokens=n))
        if {len(o.samples[0].token_ids) for o in outs} != {n}:
            raise RuntimeError("a greedy sample stopped early")
        return time.perf_counter() - t0

    one, full = min(seconds(1) for _ in range(2)), min(seconds(new) for _ in range(2))
    return {"decode_tokens_per_s": 32 * (new - 1) / max(full - one, 1e-9)}


WORKLOADS = {"dialogue": dialogue, "grpo": grpo, "system_prompt": system_prompt, "no_sharing": no_sharing}


def summarise(runs: dict) -> dict:
    """Median and range of every numeric figure over the rounds."""
    out = {}
    for key in runs[0]:
        values = [r[key] for r in runs]
        if isinstance(values[0], (int, float)) and not isinstance(values[0], bool) and key != "samples_digest":
            out[key] = {"median": statistics.median(values), "range": [min(values), max(values)]}
        else:
            out[key] = values[0]
    return out


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "range": [min(values), max(values)], "rounds": values}


def ratio(on_runs, off_runs, key) -> dict:
    """on / off per round (rounds alternate which runs first)."""
    return spread([a[key] / b[key] for a, b in zip(on_runs, off_runs)])


# ---------------------------------------------------------------------- precision


def precision_study(checkpoint: str, data: str, n: int) -> dict:
    from r1kit.data.schema import load_examples
    from r1kit.device import cpu_native_bf16
    from r1kit.format import split_completion

    examples = load_examples(data).examples[:n]
    modes = ["fp32"] + (["bf16"] if cpu_native_bf16()[0] else [])
    results, answers = {}, {}
    for mode in modes:
        engine = Engine.from_checkpoint(checkpoint, device="cpu", dynamic_inference={"precision_mode": mode})
        t0 = time.perf_counter()
        outs = engine.generate([e.question for e in examples], SamplingParams(max_new_tokens=128))
        seconds = time.perf_counter() - t0
        tokens = sum(len(o.samples[0].token_ids) for o in outs)
        answers[mode] = [split_completion(o.samples[0].text or "")[1] for o in outs]
        results[mode] = {"tokens_per_s": tokens / seconds, "seconds": seconds, "problems": len(examples)}
    for mode in modes:
        same = sum(a == b for a, b in zip(answers[mode], answers["fp32"]))
        results[mode]["answer_agreement_with_fp32"] = same / len(examples)
    results["fp16"] = {"refused": "fp16 is not supported on a CPU (the engine names bf16 and fp32)"}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["demo", "dense-25m"], choices=list(MODELS))
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checkpoint", help="a trained checkpoint for the precision study (e.g. runs/demo/final)")
    parser.add_argument("--data", help="held-out problems for the precision study (e.g. runs/demo/data/test.jsonl)")
    parser.add_argument("--problems", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="the tiny model at a quarter of the sizes, one round")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "memory_reuse.json"))
    args = parser.parse_args()
    scale = 1.0
    if args.quick:
        args.models, args.rounds, scale, args.problems = ["tiny"], 1, 0.25, 20

    report: dict = {"models": {}}
    with torch.inference_mode():
        for name in args.models:
            model = build_model(name)
            figures = {"params": model.num_params()}
            for workload in args.workloads:
                fn = WORKLOADS[workload]
                fn(model, True, min(scale, 0.25))  # warm-up
                modes = ("on", "off", "gather") if workload in ("grpo", "no_sharing") else ("on", "off")
                runs = {mode: [] for mode in modes}
                for round_ in range(args.rounds):
                    for mode in modes[::-1] if round_ % 2 else modes:
                        runs[mode].append(fn(model, {"on": True, "off": False, "gather": "gather"}[mode], scale))
                entry = {mode: summarise(rs) for mode, rs in runs.items()}
                if workload == "grpo":
                    if runs["on"][0]["samples_digest"] != runs["off"][0]["samples_digest"]:
                        raise RuntimeError("reuse on and off sampled different tokens")
                    entry["kv_ratio_vs_today"] = ratio(runs["on"], runs["off"], "peak_kv_bytes")
                    entry["kv_ratio_vs_exact"] = spread([a["peak_kv_bytes"] / a["exact_kv_bytes"] for a in runs["on"]])
                    entry["today_vs_exact"] = spread([a["peak_kv_bytes"] / a["exact_kv_bytes"] for a in runs["off"]])
                    entry["tokens_per_s_ratio"] = ratio(runs["on"], runs["off"], "tokens_per_s")
                    entry["gather_tokens_per_s_ratio"] = ratio(runs["gather"], runs["off"], "tokens_per_s")
                if workload == "system_prompt":
                    entry["ttft_p50_ratio"] = ratio(runs["on"], runs["off"], "ttft_p50")
                    entry["ttft_p99_ratio"] = ratio(runs["on"], runs["off"], "ttft_p99")
                if workload == "no_sharing":
                    entry["decode_ratio"] = ratio(runs["on"], runs["off"], "decode_tokens_per_s")
                    entry["gather_decode_ratio"] = ratio(runs["gather"], runs["off"], "decode_tokens_per_s")
                if workload == "dialogue":
                    entry["kv_ratio_vs_today"] = ratio(runs["on"], runs["off"], "peak_kv_bytes")
                    entry["kv_in_use_ratio_vs_today"] = ratio(runs["on"], runs["off"], "peak_kv_bytes_in_use")
                    entry["computed_ratio"] = ratio(runs["on"], runs["off"], "computed_tokens")
                figures[workload] = entry
                print(f"{name} {workload}: " + ", ".join(f"{k} {v['median']:.3g} ({v['range'][0]:.3g}-{v['range'][1]:.3g})"
                                                         for k, v in entry.items() if isinstance(v, dict) and "median" in v), flush=True)
            report["models"][name] = figures
    if args.checkpoint and args.data:
        report["precision"] = precision_study(args.checkpoint, args.data, args.problems)
        print("precision:", report["precision"], flush=True)
    report["targets"] = TARGETS
    report["settings"] = {"rounds": args.rounds, "scale": scale, "workloads": args.workloads}
    if not args.quick:
        print(f"wrote {write_results(args.out, report)}")


if __name__ == "__main__":
    main()
