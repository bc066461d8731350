"""Evaluation: greedy decoding on held-out problems, scored by the same verifier the RL reward uses.

Reports final-answer accuracy, mean step validity, mean steps vs optimal, and expert utilisation
per MoE layer (tokens per expert summed over every forward of the evaluation). `sampled_accuracy`
adds pass@k from several sampled completions per problem: how much of what the model can sample
right it does not yet answer greedily, the headroom RL has to work with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from r1kit.data.schema import Example
from r1kit.inference.engine import Engine, SamplingParams, generate
from r1kit.model.transformer import Transformer
from r1kit.model.moe import balance_metrics
from r1kit.data.tokenizer import Tokenizer
from r1kit.reward import RewardConfig, score

# r1kit's prompt ends inside <think>: a completion cut off before </think> has no answer yet
SCORING = RewardConfig(think_in_prompt=True)


@dataclass
class EvalResult:
    rows: list[dict]  # one per problem: question, gold, completion, and the reward breakdown
    routing: list[dict] = field(default_factory=list)  # per MoE layer: tokens_per_expert, utilisation, max_vio
    gates: list[list[float]] = field(default_factory=list)  # per multi-scale layer: mean gate weight (local, global, symbolic)
    prompts_too_long: int = 0  # prompts that left no room in the context: scored as wrong

    def summary(self) -> dict:
        n = len(self.rows)
        mean = lambda key: sum(r[key] for r in self.rows) / n  # noqa: E731
        out = {
            "n": n,
            "accuracy": mean("accuracy"),
            "step_validity": mean("step_validity"),
            "mean_steps": mean("steps"),
            "mean_optimal_steps": mean("optimal_steps"),
            "reward": mean("total"),
        }
        if self.prompts_too_long:
            out["prompts_too_long"] = self.prompts_too_long
        if self.routing:
            out["utilisation_per_layer"] = [r["utilisation"] for r in self.routing]
            out["max_vio_per_layer"] = [r["max_vio"] for r in self.routing]
            out["tokens_per_expert_per_layer"] = [r["tokens_per_expert"] for r in self.routing]
        if self.gates:
            out["gate_mean_per_layer"] = self.gates
        return out


def completion_text(tok: Tokenizer, ids: list[int]) -> str:
    """A generated completion as the verifier reads it: </think> and the rest kept, the stop token dropped."""
    return tok.decode(ids[:-1] if ids and ids[-1] == tok.eos_id else ids)


def score_completion(text: str, example: Example):
    """The verifier's breakdown of one completion of `example`, as evaluation scores it."""
    return score(text, example.answer, question=example.context, optimal_steps=example.optimal_steps, config=SCORING)


@torch.no_grad()
def evaluate(
    model: Transformer, tok: Tokenizer, examples: list[Example], batch_size: int = 64, max_new_tokens: int = 128
) -> EvalResult:
    model.eval()
    moe_layers = model.moe_layers()
    device = next(model.parameters()).device
    counts = [torch.zeros(m.n_experts, device=device) for m in moe_layers]
    gate_layers = [b.attn for b in model.layers if b.attn.kind == "multiscale"]
    gate_sums = [torch.zeros(4, device=device) for _ in gate_layers]  # local, global, symbolic weight sums; token count
    rows: list[dict] = []
    # decode prompts of similar length together: less padding in the prefill
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].context))
    completions: dict[int, str] = {}
    too_long = 0
    params = SamplingParams(max_new_tokens=max_new_tokens)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        prompts = [tok.encode_conversation(examples[i].messages) for i in chunk]
        fits = [len(p) < model.config.max_seq_len for p in prompts]
        for i, ok in zip(chunk, fits):
            if not ok:  # no room to answer: scored as an empty (wrong) completion, and counted
                completions[i] = ""
                too_long += 1
        chunk, prompts = [i for i, ok in zip(chunk, fits) if ok], [p for p, ok in zip(prompts, fits) if ok]
        if not chunk:
            continue
        hooks = [m.register_forward_hook(_counter(c)) for m, c in zip(moe_layers, counts)]
        hooks += [a.register_forward_hook(_gate_sum(g)) for a, g in zip(gate_layers, gate_sums)]
        try:
            outs = generate(model, prompts, params, stop_ids={tok.eos_id})
        finally:
            for h in hooks:
                h.remove()
        for i, ids in zip(chunk, outs):
            completions[i] = completion_text(tok, ids)
    for i, ex in enumerate(examples):
        breakdown = score_completion(completions[i], ex)
        rows.append({"question": ex.question, "gold": ex.answer, "completion": completions[i], **breakdown.to_dict()})
    routing = [{"tokens_per_expert": c.tolist(), **balance_metrics(c.cpu())} for c in counts]
    gates = [(g[:3] / g[3].clamp_min(1)).tolist() for g in gate_sums]
    return EvalResult(rows=rows, routing=routing, gates=gates, prompts_too_long=too_long)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are right (Chen et al. 2021): the chance that k of
    them, drawn without replacement, hold at least one right answer, 1 - C(n - c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


@torch.no_grad()
def sampled_accuracy(
    model: Transformer,
    tok: Tokenizer,
    examples: list[Example],
    samples: int,
    temperature: float = 1.0,
    top_p: float | None = None,
    seed: int = 0,
    batch_size: int = 64,
    max_new_tokens: int = 128,
) -> dict:
    """`samples` completions per problem at `temperature` (the engine's sampling, each problem's
    group sharing its prefill, as GRPO's rollouts do); returns pass@k for k = 1, 2, 4, ..., samples
    (pass@1 is the mean accuracy of a sampled completion) and each problem's count of right ones.
    A prompt with no room to answer counts as no right sample."""
    model.eval()
    counts: list[int] = [0] * len(examples)
    prompts = {i: tok.encode_conversation(ex.messages) for i, ex in enumerate(examples)}
    fits = [i for i, p in prompts.items() if len(p) < model.config.max_seq_len]
    per_call = max(1, batch_size // samples)  # prompts per engine call: their samples fill the batch
    engine = Engine(model, max_batch_size=max(batch_size, samples))
    for start in range(0, len(fits), per_call):
        chunk = fits[start : start + per_call]
        params = [SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                 seed=seed * 1_000_003 + i, n=samples, stop_token_ids=[tok.eos_id]) for i in chunk]
        for i, out in zip(chunk, engine.generate([prompts[i] for i in chunk], params)):
            counts[i] = sum(bool(score_completion(completion_text(tok, s.token_ids), examples[i]).accuracy) for s in out.samples)
    ks = [2**j for j in range(samples.bit_length())]  # 1, 2, 4, ... up to samples
    if ks[-1] != samples:
        ks.append(samples)
    n = max(1, len(examples))
    return {
        "samples": samples,
        "temperature": temperature,
        **{f"pass@{k}": sum(pass_at_k(samples, c, k) for c in counts) / n for k in ks},
        "right_per_problem": counts,
    }


def _counter(total_E: torch.Tensor):
    def hook(module, _inputs, _output):
        total_E.add_(module.last_counts_E)

    return hook


def _gate_sum(sums_4: torch.Tensor):
    """Accumulate a multi-scale layer's mean gate weights, weighted by the forward's token count."""
    def hook(module, inputs, _output):
        tokens = inputs[0].shape[0] * inputs[0].shape[1]
        sums_4[:3] += module.last_gate_mean * tokens
        sums_4[3] += tokens

    return hook


def print_table(summary: dict, title: str = "") -> None:
    """The summary as an aligned two-column table on the terminal."""
    if title:
        print(title)
    for key, value in summary.items():
        if isinstance(value, list) and value and isinstance(value[0], list):
            value = " | ".join(" ".join(f"{v:.2f}" if abs(v) < 10 else f"{v:.0f}" for v in row) for row in value)
        elif isinstance(value, list):
            value = "  ".join(f"{v:.2f}" for v in value)
        elif isinstance(value, float):
            value = f"{value:.4f}"
        print(f"  {key:<24} {value}")
