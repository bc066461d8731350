"""The dynamic inference engine (issue 24): the complexity-gated fast path (S5) and the whole engine
with every dynamic feature on (S8), beside the article's claims.

    python benchmarks/dynamic_inference.py CHECKPOINT --mixed MIXED.jsonl --simple SIMPLE.jsonl \\
        --sessions FOLLOW_UP.jsonl [--n 1000] [--latency-n 60] [--results benchmarks/results/dynamic_inference.json]

CHECKPOINT must be calibrated (`r1kit calibrate`, fast_path.json). What it measures, greedy throughout:
- accuracy over a mixed workload (--mixed: 1-6 steps, never the calibration data): every problem on
  the full graph and on the fast graph, the gate's estimate p per problem; the gated accuracy at
  each threshold (0.3 ... 0.9, the calibrated one, the article's 0.7) as a paired difference from
  the full graph with a 95% interval. At the calibrated threshold and 0.7 the engine itself runs
  the gated workload, and its accuracy is reported beside the paired figure;
- batch-1 latency on simple inputs (--simple: 1-step problems) that the gate sends to the fast path
  at the calibrated threshold: the same prompts on each graph, one at a time (ms per request, ms per
  token, tokens): forced onto each graph, and gated as the engine serves them (the gate reads p
  inside the prefill's forward, which then stops at the exit); the article: 120 ms -> 35 ms (3.4x);
- throughput of a mixed batch (the first --batch-n mixed problems submitted at once): all on the
  full graph against gated, tokens/s and the share routed to the fast path;
- S8: the plain engine (memory_reuse off, gate shut, fp32) against every dynamic feature on (memory
  reuse, the gate at the calibrated threshold, precision "auto") on one workload of multi-turn
  sessions (--sessions: each dialogue's first question, then the whole conversation, which shares
  its prefix) and mixed problems, all submitted at once: tokens/s and accuracy; the article: 3.2x
  at unchanged accuracy. A third arm, memory reuse and precision "auto" with the gate shut, says
  what the gate itself adds. Each arm runs twice, interleaved, and each ratio is given per round.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from paired import paired
from results_file import write_results

ARTICLE = {"fast_path_latency_ms": [120, 35], "fast_path_speedup": 3.4, "whole_engine_throughput": 3.2,
           "whole_engine_accuracy": "unchanged (92%)", "expert_activation_0.7": "-40% memory, -3% accuracy"}


def rows_of(engine, examples, prompts, params):
    """Greedy outputs scored as `r1kit eval` scores them: (rows with question and accuracy, outputs, seconds)."""
    from r1kit.evaluate import completion_text, score_completion

    start = time.perf_counter()
    outs = engine.generate(prompts, params)
    seconds = time.perf_counter() - start
    rows = []
    for ex, out in zip(examples, outs):
        breakdown = score_completion(completion_text(engine.tokenizer, out.samples[0].token_ids), ex)
        rows.append({"question": ex.question, "accuracy": breakdown.accuracy, "answer": breakdown.answer})
    return rows, outs, seconds


def tokens_of(outs) -> int:
    return sum(len(s.token_ids) for o in outs for s in o.samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--mixed", required=True, help="held-out problems of 1-6 steps (not the calibration data)")
    parser.add_argument("--simple", required=True, help="held-out 1-step problems (batch-1 latency)")
    parser.add_argument("--sessions", required=True, help="held-out follow-up dialogues (meta.history), for S8")
    parser.add_argument("--n", type=int, default=1000, help="mixed problems for the accuracy comparison")
    parser.add_argument("--latency-n", type=int, default=60, help="simple problems timed at batch 1")
    parser.add_argument("--batch-n", type=int, default=256, help="mixed problems in the throughput batch")
    parser.add_argument("--sessions-n", type=int, default=150, help="dialogues in the S8 workload")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--results", default="benchmarks/results/dynamic_inference.json")
    args = parser.parse_args()

    import torch

    from r1kit.data.schema import Example, load_examples
    from r1kit.inference.engine import Engine, SamplingParams
    from r1kit.calibrate import same_answer
    from r1kit.inference.fast_path import FastPath, probe_features, reliability_table

    fast_path = FastPath.load(args.checkpoint)
    if fast_path is None:
        raise SystemExit(f"{args.checkpoint} has no fast_path.json: run r1kit calibrate on it first")
    calibrated = fast_path.suggested_threshold
    greedy = SamplingParams(max_new_tokens=args.max_new_tokens)

    def engine(threshold: float = 1.0, **block) -> Engine:
        return Engine.from_checkpoint(args.checkpoint, dynamic_inference={"complexity_threshold": threshold, **block})

    base = engine()
    tok, model = base.tokenizer, base.model
    mixed = load_examples(args.mixed).examples[: args.n]
    mixed_prompts = [tok.encode_conversation(ex.messages) for ex in mixed]

    # --- accuracy over the mixed workload: both graphs on every problem, then the gate's choice per threshold
    full_rows, _, _ = rows_of(base, mixed, mixed_prompts, greedy)
    fast_rows, _, _ = rows_of(base, mixed, mixed_prompts, SamplingParams(max_new_tokens=args.max_new_tokens, graph="fast"))
    p_N = fast_path.probability(probe_features(model, mixed_prompts, fast_path.probe_layers))
    agree_N = torch.tensor([same_answer(f["answer"], u["answer"]) for f, u in zip(fast_rows, full_rows)])
    table, ece = reliability_table(p_N, agree_N)  # on problems neither calibrate nor the fit saw
    print(f"the gate on this workload: ECE {ece:.3f}; answers agree on {agree_N.double().mean():.1%}", flush=True)
    steps = [ex.optimal_steps for ex in mixed]
    curve = {}
    for t in sorted(set(args.thresholds) | {calibrated}):
        gated = [fr if p > t else ur for p, fr, ur in zip(p_N.tolist(), fast_rows, full_rows)]
        change = paired(gated, full_rows)
        routed_N = p_N > t
        curve[str(t)] = {"fast_share": float(routed_N.double().mean()), "accuracy": sum(r["accuracy"] for r in gated) / len(gated),
                         "agreement_routed": float(agree_N[routed_N].double().mean()) if routed_N.any() else None,
                         "change_vs_full": change["diff"], "ci95": change["ci95"],
                         "fast_share_by_steps": {s: float((p_N[[i for i, k in enumerate(steps) if k == s]] > t).double().mean())
                                                 for s in sorted(set(steps))}}
        print(f"threshold {t:4.2f}: {curve[str(t)]['fast_share']:6.1%} fast (agreeing {curve[str(t)]['agreement_routed']}), accuracy {curve[str(t)]['accuracy']:6.1%} "
              f"({100 * change['diff']:+.1f} points, 95% [{100 * change['ci95'][0]:+.1f}, {100 * change['ci95'][1]:+.1f}])", flush=True)
    full_accuracy = sum(r["accuracy"] for r in full_rows) / len(full_rows)
    engine_gated = {}
    for t in sorted({calibrated, 0.7}):
        rows, outs, _ = rows_of(engine(t), mixed, mixed_prompts, greedy)
        change = paired(rows, full_rows)
        engine_gated[str(t)] = {"fast_share": sum(o.graph == "fast" for o in outs) / len(outs),
                                "accuracy": sum(r["accuracy"] for r in rows) / len(rows), "change_vs_full": change["diff"], "ci95": change["ci95"]}
        print(f"engine at {t}: {engine_gated[str(t)]}", flush=True)

    # --- batch-1 latency on the simple inputs the gate sends to the fast path
    simple = load_examples(args.simple).examples
    simple_prompts = [tok.encode_conversation(ex.messages) for ex in simple]
    p_simple = fast_path.probability(probe_features(model, simple_prompts, fast_path.probe_layers))
    routed = [i for i, p in enumerate(p_simple.tolist()) if p > calibrated][: args.latency_n]
    latency = {"simple_routed_share": float((p_simple > calibrated).double().mean()), "timed": len(routed)}
    if routed:
        gated_engine = engine(calibrated)
        arms = {"full": (base, "full"), "fast": (base, "fast"), "gated": (gated_engine, "auto")}
        for name in ("full", "fast", "gated") * 2:  # twice each, interleaved; the second pass counts
            e, params = arms[name][0], SamplingParams(max_new_tokens=args.max_new_tokens, graph=arms[name][1])
            e.generate([simple_prompts[routed[0]]], params)  # warm
            start, tokens, correct, on_fast = time.perf_counter(), 0, 0, 0
            for i in routed:
                rows, outs, _ = rows_of(e, [simple[i]], [simple_prompts[i]], params)
                tokens += tokens_of(outs)
                correct += rows[0]["accuracy"]
                on_fast += outs[0].graph == "fast"
            seconds = time.perf_counter() - start
            latency[name] = {"ms_per_request": 1000 * seconds / len(routed), "ms_per_token": 1000 * seconds / tokens,
                             "tokens_per_request": tokens / len(routed), "accuracy": correct / len(routed),
                             "on_fast_path": on_fast / len(routed)}
        for name in ("fast", "gated"):
            latency[f"speedup_per_request_{name}"] = latency["full"]["ms_per_request"] / latency[name]["ms_per_request"]
            latency[f"speedup_per_token_{name}"] = latency["full"]["ms_per_token"] / latency[name]["ms_per_token"]
        print(f"batch-1 latency on {len(routed)} routed 1-step problems: {latency}", flush=True)

    # --- throughput of one mixed batch
    batch_examples, batch_prompts = mixed[: args.batch_n], mixed_prompts[: args.batch_n]
    throughput = {}
    for name, t in (("full", 1.0), ("gated", calibrated), ("gated_full", 1.0), ("gated_again", calibrated)):
        rows, outs, seconds = rows_of(engine(t), batch_examples, batch_prompts, greedy)
        throughput[name] = {"tokens_per_s": tokens_of(outs) / seconds, "requests_per_s": len(outs) / seconds,
                            "fast_share": sum(o.graph == "fast" for o in outs) / len(outs),
                            "accuracy": sum(r["accuracy"] for r in rows) / len(rows)}
    throughput["speedup"] = (throughput["gated_again"]["tokens_per_s"] / throughput["gated_full"]["tokens_per_s"])
    print(f"mixed batch of {len(batch_prompts)}: {throughput}", flush=True)

    # --- S8: plain against every dynamic feature on, one workload of sessions and problems
    dialogues = load_examples(args.sessions).examples[: args.sessions_n]
    work_examples, work_prompts = [], []
    for d in dialogues:
        first_q, first_a = d.history[0]["content"], d.history[1]["content"].split("####")[-1].strip()
        first = Example(question=first_q, steps=[], answer=first_a, optimal_steps=None, meta={})
        work_examples += [first, d]
        work_prompts += [tok.encode_conversation(first.messages), tok.encode_conversation(d.messages)]
    work_examples += mixed[: args.batch_n]
    work_prompts += mixed_prompts[: args.batch_n]
    whole = {}
    plain, dynamic = (1.0, {"memory_reuse": False, "precision_mode": "fp32"}), (calibrated, {"memory_reuse": True, "precision_mode": "auto"})
    reuse_only = (1.0, {"memory_reuse": True, "precision_mode": "auto"})  # what the gate adds on top of the rest
    arms = (("plain", plain), ("dynamic", dynamic), ("reuse_only", reuse_only))
    for name, (threshold, block) in arms + tuple((f"{n}_again", arm) for n, arm in arms):
        e = engine(threshold, **block)
        rows, outs, seconds = rows_of(e, work_examples, work_prompts, greedy)
        whole[name] = {"tokens_per_s": tokens_of(outs) / seconds, "seconds": seconds,
                       "accuracy": sum(r["accuracy"] for r in rows) / len(rows),
                       "fast_share": sum(o.graph == "fast" for o in outs) / len(outs),
                       "cached_prompt_share": sum(o.cached_tokens for o in outs) / sum(len(p) for p in work_prompts),
                       "precision": e.dtype, "rows": rows}
    change = paired(whole["dynamic_again"]["rows"], whole["plain_again"]["rows"])
    for name in whole:
        whole[name].pop("rows")
    # each ratio from arms run side by side, in both rounds (the rounds differ: the machine is shared)
    whole["throughput_ratio"] = [whole[f"dynamic{r}"]["tokens_per_s"] / whole[f"plain{r}"]["tokens_per_s"] for r in ("", "_again")]
    whole["gate_share_of_it"] = [whole[f"dynamic{r}"]["tokens_per_s"] / whole[f"reuse_only{r}"]["tokens_per_s"] for r in ("", "_again")]
    whole["accuracy_change"] = {"mean": change["diff"], "ci95": change["ci95"]}
    whole["workload"] = {"sessions": len(dialogues), "requests": len(work_prompts), "mixed_problems": min(args.batch_n, len(mixed))}
    print(f"S8: {whole}", flush=True)

    write_results(args.results, {
        "checkpoint": str(Path(args.checkpoint)), "mixed": args.mixed, "simple": args.simple, "sessions": args.sessions,
        "fast_path": {"exit_after": fast_path.exit_after, "n_layers": model.config.n_layers, "probe_layers": fast_path.probe_layers,
                      "calibrated_threshold": calibrated, "calibration_ece": fast_path.ece},
        "gate_on_workload": {"ece": ece, "agreement": float(agree_N.double().mean()), "reliability": table},
        "accuracy": {"n": len(mixed), "full": full_accuracy, "fast_graph_alone": sum(r["accuracy"] for r in fast_rows) / len(fast_rows),
                     "by_threshold_paired": curve, "engine_gated": engine_gated},
        "latency_batch1": latency, "mixed_batch_throughput": throughput, "whole_engine_s8": whole, "article": ARTICLE,
        "threads": torch.get_num_threads()})
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
