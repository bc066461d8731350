"""Generation engine: batched, KV-cached decoding with continuous batching. Token ids in, tokens,
log-probabilities and (with a tokenizer) text out.

    engine = Engine.from_checkpoint("runs/demo/final")
    out = engine.generate(["Tom has 3 apples ..."], SamplingParams(temperature=0.8, n=4, seed=1))
    for delta in engine.stream("Tom has ..."):  # token by token, reasoning apart from the answer
        print(delta.text, end="")

How a step works (`Engine.step`): waiting requests join the running batch while the step's token
budget allows (`max_batch_tokens`: the new prompts' tokens plus one per running sequence) and the
batch has rows free (`max_batch_size`). Joining requests are prefilled together, once per prompt.
Then every running sequence samples one token from its pending logits; finished sequences leave
the batch (their KV memory goes back at once); the rest run one decode forward together. Requests
can be added between steps, from a server's threads or an RL loop, and join as others finish;
`abort(request_id)` ends one at once.

KV memory (the `dynamic_inference` block, r1kit.inference.dynamic): with `memory_reuse: true` (the
default) a paged cache in a bounded pool of blocks, shared across requests (a system prompt, a
re-sent conversation) and across a request's n samples, with chunked prefill and preemption
(r1kit.inference.paged_batch); with `memory_reuse: false`, one contiguous cache row per sample,
copied n times (r1kit.inference.contiguous_batch). Both give the same tokens. Requests run in the
engine's precision (`precision_mode`, or `dtype`) unless they ask for another
(`SamplingParams.precision`, "exact" = fp32): each precision has its own batch and KV memory, and
every step decodes each batch in its own forward. `expert_activation` (the block's key) below 1
keeps that share of each MoE layer's experts, the most used, and frees the rest
(r1kit.inference.experts); `engine.experts` says which. A calibrated checkpoint (`r1kit calibrate`,
fast_path.json) brings the complexity-gated fast path (r1kit.inference.fast_path): in a request's
prefill, after the probe's first blocks, the gate reads the estimate p from the stream at the
prompt's last token (no forward of its own); the request then goes on to the early exit iff p >
`complexity_threshold` (the block's key; 1.0 never, 0.0 always; unset: the threshold calibrate
suggested; `SamplingParams.graph` forces a graph), or through the full graph, in that same forward.
Fast and full rows share one batch and one forward every step: the fast rows leave it at their
exit, and the later blocks run on the full rows alone (the model's depth_B). The graph that made a
block is part of its prefix key, so blocks a fast row wrote (its exit's layers only) are never read
by another graph; `RequestOutput.graph` and `.fast_p` say which ran and the estimate.

Stop rules: EOS, `stop_token_ids`, and stop strings. A stop string is matched in the text the user
sees, the completion decoded without special tokens (across the <think> / </think> boundary, as the
stream shows it); the text is cut before it. A stop string that is a special token's spelling
(`</think>`, `<|eos|>`) stops at that token, as a stop token id does: the text never shows special
tokens, so there is nothing else to match. `generate()`'s text and `stream()`'s joined deltas are
the same string for the same request and seed.

Sampling: greedy (temperature 0), temperature, top-k, top-p, applied to all rows at once (`draw_tokens`:
each row's parameters in [B] tensors), then one Gumbel-max draw for every sampled row: the argmax of
logits / temperature plus Gumbel noise over the kept tokens, which draws from `sampling_probs` (r1kit.inference.sampling). The
noise is counter-based, a hash (splitmix64) of (the sample's seed, its step, the token id), so a
sample's tokens depend on its own seed and step count only, never on its row or its batch-mates:
the same (request seed, sample index) gives the same tokens alone, in any batch, and when it joins
a running batch later (up to logits that differ in the last bits between batch shapes, which move a
draw only at a near-tie). A request without a seed takes one from the engine's generator when it is
admitted, so `Engine(seed=...)` makes a whole run reproducible. Greedy rows are the logits' argmax.
Reported log-probabilities are those of the model's distribution (raw logits, before temperature /
top-k / top-p), as RL importance ratios and evaluation need.

Shape legend: B running rows, V vocabulary.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import torch

from r1kit.device import resolve_device
from r1kit.format import SPECIAL_TOKENS
from r1kit.inference.contiguous_batch import ContiguousBatch
from r1kit.inference.dynamic import DynamicInference, check_precision, engine_precision, load_dynamic_inference
from r1kit.inference.experts import activate_experts
from r1kit.inference.fast_path import FastPath, PrefillGate, gate_open
from r1kit.inference.paged_batch import PagedBatch
from r1kit.inference.requests import (  # noqa: F401  (re-exported: the engine's public types)
    FinishReason,
    Request,
    RequestOutput,
    Sample,
    SamplingParams,
    SequenceState,
    StreamDelta,
    TokenEvent,
)
from r1kit.inference.sampling import draw_tokens, signed64
from r1kit.inference.text_stream import TextStream, cut_at_stop, first_stop
from r1kit.model.transformer import Transformer

if TYPE_CHECKING:  # the engine works on ids alone; a tokenizer only adds text and stop strings
    from r1kit.data.tokenizer import Tokenizer

@dataclass
class EngineStats:
    running: int = 0  # sequences (samples) in the batch
    waiting: int = 0  # requests or preempted samples queued
    blocks_total: int = 0  # KV pool blocks (memory_reuse), summed over precisions
    blocks_used: int = 0  # held by a sequence
    blocks_free: int = 0
    blocks_evictable: int = 0  # cached prefixes nobody holds, reclaimed least recently used first
    hit_blocks: int = 0  # prefix blocks found in the cache, in all
    queried_blocks: int = 0  # prefix blocks looked up, in all
    evictions: int = 0
    preemptions: int = 0
    kv_bytes: int = 0  # KV storage held now
    peak_kv_bytes: int = 0  # the most KV storage held at once (with memory_reuse: cached blocks nobody holds included)
    peak_kv_bytes_in_use: int = 0  # the most KV memory held by sequences at once

    @property
    def hit_rate(self) -> float:
        return self.hit_blocks / self.queried_blocks if self.queried_blocks else 0.0


# seeds live in 64 bits; derived seeds (a run's seed times a stride, shifted by a step) can pass
# that, so they wrap around (a seed that fits is unchanged: same seed, same samples)
_SEED_SPACE = 1 << 64


class Engine:
    """Continuous-batching generation for one model (and optionally its tokenizer)."""

    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer | None = None,
        max_batch_size: int = 64,
        max_batch_tokens: int = 8192,
        seed: int = 0,
        dtype: str | None = None,
        dynamic_inference: DynamicInference | dict | str | Path | None = None,
        expert_calibration: Sequence[Sequence[int]] | None = None,
        fast_path: FastPath | None = None,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.dynamic = load_dynamic_inference(dynamic_inference)
        # expert_activation < 1 drops experts from `model` itself (in place: their memory is the
        # point), chosen by use on `expert_calibration` (token sequences) or the model's routing statistics
        self.experts = activate_experts(model, self.dynamic.expert_activation, expert_calibration)
        self._fast_path: FastPath | None = None
        # rows decoded together; 64 keeps a CPU decode step near its best tokens/s for small models
        self.max_batch_size = max_batch_size
        # new prompt tokens + running rows per step; bounds one step's prefill latency and memory (a
        # longer prompt is prefilled in chunks over several steps with memory_reuse)
        self.max_batch_tokens = max_batch_tokens
        self.max_seq_len = model.config.max_seq_len
        self.device = next(model.parameters()).device
        # the compute precision of the forward passes: `dtype` when given, else the block's precision_mode
        self.dtype, self.dtype_reason = engine_precision(
            dtype or self.dynamic.precision_mode, self.device, model.num_params())
        block_size = self.dynamic.block_size
        self.pool_blocks = (self.dynamic.pool_tokens or max_batch_size * self.max_seq_len) // block_size
        if self.dynamic.memory_reuse and self.pool_blocks < 1:
            raise ValueError(f"dynamic_inference.pool_tokens={self.dynamic.pool_tokens} holds no block of {block_size} tokens")
        self._generator = torch.Generator(device=self.device).manual_seed(seed % _SEED_SPACE)
        self._ids = itertools.count()
        self._batches: dict[str, ContiguousBatch | PagedBatch] = {}  # one per precision in use
        self._outputs: dict[int, RequestOutput] = {}  # every request not yet handed back
        self._gate = PrefillGate(lambda: self.fast_path, lambda: self.complexity_threshold, self.model)
        # add_request / abort may come from other threads (a server's handlers) while one thread steps
        self._lock = threading.RLock()
        self.fast_path = fast_path

    @property
    def fast_path(self) -> FastPath | None:
        """The early-exit graph and its gate, from `r1kit calibrate`; None: every request runs the full graph."""
        return self._fast_path

    @fast_path.setter
    def fast_path(self, fast_path: FastPath | None) -> None:
        """Swap the fast path (calibration measures one exit after another). Requests already routed
        keep their exit, and the exit is part of the prefix key, so no KV crosses from one to the other;
        requests not yet routed meet the new gate (or, without one, the full graph)."""
        if fast_path is not None:
            fast_path.check(self.model)
        with self._lock:
            self._fast_path = fast_path

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", dtype: str | None = None,
                        dynamic_inference: DynamicInference | dict | str | Path | None = None, **kwargs) -> "Engine":
        """The checkpoint's model and tokenizer (`load_for_inference`) in an engine, with the
        dynamic_inference block (a DynamicInference, a dict, or a JSON / YAML file); `dtype`, when
        given and not "auto", overrides the block's precision_mode."""
        block = load_dynamic_inference(dynamic_inference)
        model, tokenizer, dtype = load_for_inference(path, device, block.precision_mode if dtype in (None, "auto") else dtype)
        if "fast_path" not in kwargs:
            kwargs["fast_path"] = FastPath.load(path)  # None unless `r1kit calibrate` ran on it
        return cls(model, tokenizer, dtype=dtype, dynamic_inference=block, **kwargs)

    def _batch(self, precision: str) -> ContiguousBatch | PagedBatch:
        if precision not in self._batches:
            if self.dynamic.memory_reuse:
                self._batches[precision] = PagedBatch(self.model, precision, self._sequences, self.pool_blocks,
                                                      self.dynamic.block_size, self.dynamic.decode_kernel, self._gate)
            else:
                self._batches[precision] = ContiguousBatch(self.model, precision, self._sequences, self._gate)
        return self._batches[precision]

    @property
    def complexity_threshold(self) -> float:
        """The gate's threshold: the block's, else the calibrated suggestion, else the article's 0.7."""
        if self.dynamic.complexity_threshold is not None:
            return self.dynamic.complexity_threshold
        suggested = self.fast_path.suggested_threshold if self.fast_path is not None else None
        return 0.7 if suggested is None else suggested

    def _fixed_graph(self, params: SamplingParams) -> str | None:
        """The request's graph when nothing needs estimating (asked for, or no open gate); None: the gate decides."""
        if params.graph == "fast" and self.fast_path is None:
            raise ValueError("graph='fast' needs a calibrated checkpoint (r1kit calibrate writes its fast_path.json)")
        if params.graph != "auto":
            return params.graph
        if not gate_open(self.fast_path, self.complexity_threshold):
            return "full"  # no gate, or a shut one: no estimate
        return None

    # ------------------------------------------------------------------ requests

    def encode(self, prompt: str | Sequence[int]) -> list[int]:
        """A question (str, put in the chat format) or ready token ids."""
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("a text prompt needs a tokenizer; pass token ids or build the Engine with one")
            return self.tokenizer.encode_prompt(prompt)
        return [int(t) for t in prompt]

    def check_request(self, prompt: str | Sequence[int], params: SamplingParams) -> tuple[list[int], dict, str, int]:
        """(prompt ids, stop ids, precision, total length) of a request the engine can serve, or a
        ValueError naming what is wrong. Reads no state a step changes, so a server can check a
        request without waiting for the step in progress."""
        params.check()
        stop_ids = self.stop_ids(params)
        precision = check_precision(params.precision or self.dtype, self.device)
        prompt_ids = self.encode(prompt)
        if not prompt_ids:
            raise ValueError("a prompt needs at least one token")
        if len(prompt_ids) >= self.max_seq_len:
            raise ValueError(
                f"a prompt of {len(prompt_ids)} tokens leaves no room in the model's context of {self.max_seq_len}")
        bad = [t for t in prompt_ids if not 0 <= t < self.model.config.vocab_size]
        if bad:
            raise ValueError(f"token ids {bad[:5]} lie outside the vocabulary of {self.model.config.vocab_size}")
        total_len = min(self.max_seq_len, len(prompt_ids) + params.max_new_tokens)
        if self.dynamic.memory_reuse:  # one sample must fit the pool alone, or it would wait forever
            block_size = self.dynamic.block_size
            need = -(-(total_len - 1) // block_size)  # the last token sampled is never written
            if need > self.pool_blocks:
                raise ValueError(
                    f"a request of {len(prompt_ids)} prompt tokens and up to {total_len - len(prompt_ids)} new ones "
                    f"needs {need} KV blocks of {block_size} tokens, but the pool holds {self.pool_blocks}; "
                    f"raise dynamic_inference.pool_tokens or lower max_new_tokens")
        return prompt_ids, stop_ids, precision, total_len

    def add_request(self, prompt: str | Sequence[int], params: SamplingParams | None = None) -> int:
        """Queue a request; it joins the running batch at a later `step`. Returns its id. Safe to call
        from another thread while one thread steps."""
        params = params or SamplingParams()
        prompt_ids, stop_ids, precision, total_len = self.check_request(prompt, params)
        with self._lock:
            graph = self._fixed_graph(params)
            request_id = next(self._ids)
            output = RequestOutput(request_id, prompt_ids, [Sample(i) for i in range(params.n)], precision=precision)
            request = Request(request_id, prompt_ids, params, output, stop_ids, total_len, precision)
            if graph is None:  # the gate decides at the end of its prefill
                request.undecided = True
            else:
                request.run_on(self.fast_path.exit_after if graph == "fast" else None)
            self._batch(precision).add(request)
            self._outputs[request_id] = output
        return request_id

    def abort(self, request_id: int) -> bool:
        """Stop a request now: it leaves the queue or the batch and its KV blocks go back to the pool
        at once; its unfinished samples end with finish_reason "abort". False if it had already
        finished (or was never added). Safe to call from another thread."""
        with self._lock:
            output = self._outputs.get(request_id)
            if output is None or output.finished:
                return False
            for batch in self._batches.values():
                batch.abort(request_id)
            for sample in output.samples:
                if sample.finish_reason is None:
                    sample.finish_reason = "abort"
            return True

    def stop_ids(self, params: SamplingParams) -> dict[int, str | int | None]:
        """The tokens that end a sample of `params`, each with the stop_reason it gives: EOS (None),
        `stop_token_ids` (the id), and the special tokens spelled by stop strings (the string)."""
        stop_ids: dict[int, str | int | None] = {}
        if self.tokenizer is not None:
            stop_ids[self.tokenizer.eos_id] = None
        stop_ids.update({int(t): int(t) for t in params.stop_token_ids})
        if params.stop and self.tokenizer is None:
            raise ValueError("stop strings need a tokenizer")
        for stop in params.stop:
            if stop in SPECIAL_TOKENS:
                (token,) = self.tokenizer.encode(stop)
                stop_ids[token] = stop
                continue
            inside = [special for special in SPECIAL_TOKENS if special in stop]
            if inside:  # the text never shows a special token, so such a string could never match
                raise ValueError(
                    f"stop string {stop!r} contains the special token {inside[0]!r}, which the text never shows; "
                    f"give the special token as a stop string of its own")
        return stop_ids

    def pop_output(self, request_id: int) -> RequestOutput:
        """A request's output (finished or not), forgotten by the engine once taken."""
        with self._lock:
            return self._outputs.pop(request_id)

    def has_unfinished(self) -> bool:
        return any(b.waiting or b.running for b in self._batches.values())

    @property
    def num_running(self) -> int:
        """Sequences (samples) in the running batch."""
        return sum(len(b.running) for b in self._batches.values())

    @property
    def num_waiting(self) -> int:
        """Requests (or preempted samples) queued, not yet running."""
        return sum(len(b.waiting) for b in self._batches.values())

    def stats(self) -> EngineStats:
        """Counts for a server's metrics: sequences, KV pool blocks (summed over precisions), prefix
        hits, evictions, preemptions, KV bytes held."""
        with self._lock:
            stats = EngineStats(running=self.num_running, waiting=self.num_waiting)
            for batch in self._batches.values():
                stats.kv_bytes += batch.kv_bytes()
                stats.peak_kv_bytes += batch.peak_kv_bytes
                stats.peak_kv_bytes_in_use += batch.peak_kv_bytes_in_use
                if isinstance(batch, PagedBatch):
                    pool = batch.pool.stats()
                    stats.blocks_total += pool.total
                    stats.blocks_used += pool.used
                    stats.blocks_free += pool.free
                    stats.blocks_evictable += pool.evictable
                    stats.hit_blocks += pool.hit_blocks
                    stats.queried_blocks += pool.queried_blocks
                    stats.evictions += pool.evictions
                    stats.preemptions += batch.preemptions
            return stats

    # ------------------------------------------------------------------ the step

    @torch.inference_mode()
    def step(self) -> list[TokenEvent]:
        """Admit and prefill waiting requests, sample one token for every running sequence, drop the
        finished ones, and run one decode forward for the rest."""
        with self._lock:
            self._admit()
            batches = [b for b in self._batches.values() if b.running]
            if not batches:
                return []
            running = [seq for b in batches for seq in b.running]
            tokens_B, logprobs_B = self._sample(running, torch.cat([b.next_logits_BV for b in batches]))
            events, keep = [], []
            for row, (seq, token, logprob) in enumerate(zip(running, tokens_B.tolist(), logprobs_B.tolist())):
                seq.sample.token_ids.append(token)
                seq.sample.logprobs.append(logprob)
                reason, stop_reason = self._finish(seq, token)
                if reason is not None:
                    seq.sample.finish_reason, seq.sample.stop_reason = reason, stop_reason
                    self._finalise_text(seq)
                else:
                    keep.append(row)
                events.append(TokenEvent(seq.request.request_id, seq.sample.index, token, logprob, reason))

            first = 0
            for batch in batches:  # one decode forward per precision
                n = len(batch.running)
                rows = [r - first for r in keep if first <= r < first + n]
                batch.keep(rows)
                if rows:
                    batch.decode(tokens_B[torch.tensor(rows, device=self.device) + first])
                first += n
            return events

    def _admit(self) -> None:
        """Let each precision's batch take waiting work while free rows and the step's token budget
        (new prompt tokens plus one per running sequence) allow; an idle engine takes any request."""
        running = self.num_running
        rows_free = self.max_batch_size - running - sum(b.reserved_rows for b in self._batches.values())
        budget = self.max_batch_tokens - running
        idle = running == 0
        for batch in self._batches.values():
            if not batch.waiting:
                continue
            before = len(batch.running) + batch.reserved_rows
            budget -= batch.admit(rows_free, budget, idle)
            taken = len(batch.running) + batch.reserved_rows - before
            rows_free -= taken
            idle = idle and taken == 0

    def _sequences(self, request: Request) -> list[SequenceState]:
        """A request's samples as running sequences, each with its noise seed (module docstring)."""
        request_seed = request.params.seed
        if request_seed is None:  # from the engine's generator: the run's seed decides it
            low, high = torch.randint(0, 1 << 32, (2,), generator=self._generator, device=self.device).tolist()
            request_seed = high << 32 | low
        return [SequenceState(request, sample, len(request.prompt_ids), (request_seed * 65_537 + sample.index) % _SEED_SPACE)
                for sample in request.output.samples]

    def _sample(self, running: list[SequenceState], logits_BV: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One token per running row, with its log-probability under the model's distribution."""
        logits_BV = logits_BV.float()
        logprobs_BV = torch.log_softmax(logits_BV, dim=-1)
        tokens_B = logits_BV.argmax(dim=-1)
        params = [seq.request.params for seq in running]
        if any(p.temperature > 0 for p in params):
            V, device = logits_BV.shape[-1], self.device
            top_k_B = top_p_B = None
            if any(p.top_k is not None for p in params):
                top_k_B = torch.tensor([p.top_k or V for p in params], device=device)
            if any(p.top_p is not None for p in params):
                top_p_B = torch.tensor([1.0 if p.top_p is None else p.top_p for p in params], device=device)
            drawn_B = draw_tokens(
                logits_BV,
                torch.tensor([p.temperature or 1.0 for p in params], device=device),  # greedy rows: replaced below
                torch.tensor([signed64(seq.seed) for seq in running], device=device),
                torch.tensor([len(seq.sample.token_ids) for seq in running], device=device),
                top_k_B, top_p_B)
            sampled_B = torch.tensor([p.temperature > 0 for p in params], device=device)
            tokens_B = torch.where(sampled_B, drawn_B, tokens_B)
        return tokens_B, logprobs_BV.gather(-1, tokens_B[:, None])[:, 0]

    def _finish(self, seq: SequenceState, token: int) -> tuple[FinishReason | None, str | int | None]:
        """(finish reason, stop reason) after `token`; (None, None) while the sample goes on."""
        request = seq.request
        if token in request.stop_ids:
            return "stop", request.stop_ids[token]
        if request.params.stop:
            hit = first_stop(self._visible_text(seq), request.params.stop)
            if hit is not None:
                return "stop", hit[1]
        if len(seq.sample.token_ids) >= request.params.max_new_tokens or seq.position + 1 >= request.total_len:
            return "length", None
        return None, None

    def _visible_text(self, seq: SequenceState) -> str:
        """The sample's text as the user sees it: no special tokens, nor the stop token that ended it."""
        ids = seq.sample.token_ids
        if ids and ids[-1] in seq.request.stop_ids:
            ids = ids[:-1]
        return self.tokenizer.decode(ids, skip_special=True)

    def _finalise_text(self, seq: SequenceState) -> None:
        if self.tokenizer is not None:
            seq.sample.text = cut_at_stop(self._visible_text(seq), seq.request.params.stop, finished=True)

    # ------------------------------------------------------------------ blocking and streaming calls

    def generate(
        self, prompts: Sequence[str | Sequence[int]], params: SamplingParams | Sequence[SamplingParams] | None = None
    ) -> list[RequestOutput]:
        """Run every prompt to completion (continuous batching under the engine's budgets); outputs
        in the prompts' order."""
        if not prompts:
            return []
        if params is None or isinstance(params, SamplingParams):
            params = [params or SamplingParams()] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling params")
        ids = [self.add_request(p, sp) for p, sp in zip(prompts, params)]
        while not all(self._outputs[i].finished for i in ids):
            self.step()
        return [self._outputs.pop(i) for i in ids]

    def stream(self, prompt: str | Sequence[int], params: SamplingParams | None = None) -> Iterator[StreamDelta]:
        """Text as it is generated, for one prompt with n = 1: the reasoning (inside <think>) and
        the answer come on separate channels; the <think> markers themselves are not shown. Text
        that could be the start of a stop string is held back until it is known not to be one; the
        deltas joined are generate()'s text for the same request and seed."""
        if self.tokenizer is None:
            raise ValueError("streaming text needs a tokenizer")
        params = params or SamplingParams()
        if params.n != 1:
            raise ValueError("stream() follows one sample; use generate() for n > 1")
        prompt_ids = self.encode(prompt)
        request_id = self.add_request(prompt_ids, params)
        text = TextStream(self.tokenizer, prompt_ids, self.stop_ids(params), params.stop)
        finished = False
        while not finished:
            for event in self.step():
                if event.request_id != request_id:
                    continue
                finished = event.finish_reason is not None
                stop_reason = self._outputs[request_id].samples[0].stop_reason if finished else None
                yield from text.feed(event.token_id, event.finish_reason, stop_reason)
        self._outputs.pop(request_id, None)


def load_for_inference(path: str | Path, device: str = "auto", dtype: str = "auto") -> tuple[Transformer, Tokenizer, str]:
    """(model on `device` ("auto" | "cpu" | "cuda"), tokenizer, compute precision ("fp32" | "bf16" |
    "fp16"; "auto": r1kit.device.choose_dtype)) of a checkpoint."""
    from r1kit.data.tokenizer import Tokenizer
    from r1kit.interop.checkpoint import load_pretrained

    target = resolve_device(device)  # before loading: a missing GPU is the first thing to say
    if dtype != "auto":
        check_precision(dtype, target)  # before loading: an impossible precision is the next
    model = load_pretrained(path, device=target)
    dtype, _reason = engine_precision(dtype, target, model.num_params())
    return model, Tokenizer.load(path), dtype


@torch.no_grad()
def generate(
    model: Transformer,
    prompts: list[list[int]],
    params: SamplingParams,
    stop_ids: set[int],
    max_batch_size: int = 256,
) -> list[list[int]]:
    """Token ids of one completion per prompt (the stop token included when one ended it); a thin
    call of Engine for code that has ids and no tokenizer. Prompt r is sampled with seed
    `params.seed + r`, so equal prompts in one call still give different samples."""
    engine = Engine(model, max_batch_size=max_batch_size, max_batch_tokens=1 << 30)
    per_prompt = []
    for r in range(len(prompts)):
        seed = None if params.seed is None else params.seed + r
        per_prompt.append(SamplingParams(
            max_new_tokens=params.max_new_tokens, temperature=params.temperature, top_k=params.top_k,
            top_p=params.top_p, seed=seed, n=1, stop_token_ids=tuple(stop_ids) + tuple(params.stop_token_ids)))
    return [out.samples[0].token_ids for out in engine.generate(prompts, per_prompt)]
