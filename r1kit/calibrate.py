"""`r1kit calibrate CKPT --data FILE`: fit the fast path's gate (S5) and store it in the checkpoint.

What it does, on held-out problems (questions with gold answers):
  1. runs the full graph greedily on every problem, then each candidate early exit (the exits SFT
     trained, `sft.early_exit_layers`, or `--exits`) on the same problems, timing both;
  2. per exit, labels each problem by whether the two graphs' final answers agree, and fits the
     estimator (r1kit.inference.fast_path: a logistic probe on the blocks both graphs share) on a
     seeded `fit_share` of the problems;
  3. on the other problems: the reliability table and its expected calibration error, and the
     gated accuracy at each threshold, from which the threshold that keeps the loss within
     `max_loss` (1 point) by one standard error is suggested (fast_path.suggest_threshold);
  4. keeps the exit that saves the most time at its suggested threshold (share routed x the measured
     per-token saving at batch 1), and writes it, with its estimator and measurements, to fast_path.json.
The engine then gates every request of that checkpoint (r1kit.inference.engine).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from r1kit.data.schema import Example, load_examples
from r1kit.evaluate import completion_text, score_completion
from r1kit.inference.engine import Engine, SamplingParams
from r1kit.inference.fast_path import (
    FAST_PATH_FILE, FastPath, accuracy_at_thresholds, fit_estimator, probe_features, reliability_table, suggest_threshold,
)
from r1kit.reward.answers import parse_number

THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(20)) + (1.0,)


@dataclass
class GraphRun:
    answers: list[str | None]
    correct: torch.Tensor  # [N] bool


def same_answer(a: str | None, b: str | None) -> bool:
    """The two graphs' final answers agree: equal numbers, or equal text where either is no number."""
    if a is None or b is None:
        return a == b
    na, nb = parse_number(a), parse_number(b)
    return na == nb if na is not None and nb is not None else a.strip() == b.strip()


def run_graph(engine: Engine, prompts: list[list[int]], examples: Sequence[Example], graph: str,
              max_new_tokens: int) -> GraphRun:
    """Greedy answers of every problem on one graph, batched as the engine batches them."""
    outs = engine.generate(prompts, SamplingParams(max_new_tokens=max_new_tokens, graph=graph))
    answers, correct = [], []
    for out, ex in zip(outs, examples):
        breakdown = score_completion(completion_text(engine.tokenizer, out.samples[0].token_ids), ex)
        answers.append(breakdown.answer)
        correct.append(breakdown.accuracy == 1.0)
    return GraphRun(answers, torch.tensor(correct))


def batch1_ms_per_token(engine: Engine, prompts: list[list[int]], graph: str, max_new_tokens: int) -> float:
    """Decode latency at batch 1: the prompts one at a time, wall time over tokens generated."""
    engine.generate(prompts[:1], SamplingParams(max_new_tokens=8, graph=graph))  # warm-up
    start, tokens = time.perf_counter(), 0
    for prompt in prompts:
        out = engine.generate([prompt], SamplingParams(max_new_tokens=max_new_tokens, graph=graph))[0]
        tokens += len(out.samples[0].token_ids)
    return 1000 * (time.perf_counter() - start) / max(1, tokens)


def fit_split(n: int, fit_share: float, seed: int) -> tuple[list[int], list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    cut = int(round(fit_share * n))
    return sorted(order[:cut]), sorted(order[cut:])


def calibrate(checkpoint: str | Path, data: str | Path, n: int = 1000, exits: Sequence[int] | None = None,
              max_new_tokens: int = 128, max_loss: float = 0.01, fit_share: float = 0.6, seed: int = 0,
              latency_n: int = 20, device: str = "auto", write: bool = True, overwrite: bool = False, log=print) -> FastPath:
    """The fitted fast path of `checkpoint` (written to its fast_path.json unless write=False; an
    existing one is replaced only with overwrite=True, checked before any work)."""
    if write and not overwrite and (Path(checkpoint) / FAST_PATH_FILE).exists():
        raise ValueError(f"{Path(checkpoint) / FAST_PATH_FILE} exists (an earlier calibration); pass --overwrite to replace it")
    engine = Engine.from_checkpoint(checkpoint, device=device, fast_path=None)
    model, tok = engine.model, engine.tokenizer
    n_layers = model.config.n_layers
    examples = load_examples(str(data))[0][:n]
    if len(examples) < 20:
        raise ValueError(f"{data}: calibration needs at least 20 problems, got {len(examples)}")
    prompts = [tok.encode_conversation(ex.messages) for ex in examples]
    if exits is None:
        exits = list(range(1, n_layers))
    bad = [k for k in exits if not 1 <= k < n_layers]
    if bad:
        raise ValueError(f"exits {bad}: an early exit runs 1 .. {n_layers - 1} of the model's {n_layers} blocks")
    fit_rows, held_rows = fit_split(len(examples), fit_share, seed)

    full = run_graph(engine, prompts, examples, "full", max_new_tokens)
    timed = prompts[:latency_n]  # batch-1 latency, the fast path's point, on a few of the problems
    full_ms = batch1_ms_per_token(engine, timed, "full", max_new_tokens)
    log(f"full graph: accuracy {full.correct.double().mean():.3f}, {full_ms:.2f} ms/token at batch 1")
    candidates = []
    for k in exits:
        engine.fast_path = FastPath.ungated(k)
        fast = run_graph(engine, prompts, examples, "fast", max_new_tokens)
        fast_ms = batch1_ms_per_token(engine, timed, "fast", max_new_tokens)
        agree_N = torch.tensor([same_answer(a, b) for a, b in zip(fast.answers, full.answers)])
        features_NF = probe_features(model, prompts, probe_layers=k)
        fitted = fit_estimator(features_NF[fit_rows], agree_N[fit_rows], exit_after=k, probe_layers=k)
        p_N = fitted.probability(features_NF[held_rows])
        table, ece = reliability_table(p_N, agree_N[held_rows])
        rows = accuracy_at_thresholds(p_N, agree_N[held_rows], full.correct[held_rows], fast.correct[held_rows], THRESHOLDS)
        threshold = suggest_threshold(rows, max_loss)
        at = next(r for r in rows if r["threshold"] == threshold)
        saving = max(0.0, 1 - fast_ms / full_ms)
        fitted.reliability, fitted.ece, fitted.suggested_threshold = table, ece, threshold
        fitted.report.update({
            "checkpoint": str(checkpoint), "data": str(data), "n": len(examples), "fit": len(fit_rows), "held_out": len(held_rows),
            "max_loss": max_loss, "agreement": float(agree_N.double().mean()),
            "full": {"accuracy": float(full.correct.double().mean()), "ms_per_token_batch1": full_ms},
            "fast": {"accuracy": float(fast.correct.double().mean()), "ms_per_token_batch1": fast_ms},
            "per_threshold": rows, "expected_saving": at["fast_share"] * saving})
        log(f"exit after {k} of {n_layers} blocks: accuracy {fast.correct.double().mean():.3f}, answers agree "
            f"{agree_N.double().mean():.3f}, {fast_ms:.2f} ms/token at batch 1; held-out ECE {ece:.3f}; threshold "
            f"{threshold} routes {at['fast_share']:.1%} for a loss of {100 * at['loss']:.1f} +- {100 * at['loss_se']:.1f} points")
        candidates.append(fitted)
    engine.fast_path = None
    best = max(candidates, key=lambda c: (c.report["expected_saving"], c.exit_after))  # a tie: the deeper, surer exit
    best.report["exits"] = {c.exit_after: {k: c.report[k] for k in ("agreement", "fast", "expected_saving")} | {"ece": c.ece,
                            "suggested_threshold": c.suggested_threshold} for c in candidates}
    log(f"kept the exit after {best.exit_after} blocks; suggested complexity_threshold {best.suggested_threshold} "
        f"(accuracy loss within {100 * max_loss:.0f} point by one standard error on held-out problems)")
    if write:
        log(f"wrote {best.save(checkpoint)}")
    return best
