"""Generation engine: batched, KV-cached decoding with continuous batching. Token ids in, tokens,
log-probabilities and (with a tokenizer) text out.

    engine = Engine.from_checkpoint("runs/demo/final")
    out = engine.generate(["Tom has 3 apples ..."], SamplingParams(temperature=0.8, n=4, seed=1))
    for delta in engine.stream("Tom has ..."):  # token by token, reasoning apart from the answer
        print(delta.text, end="")

How a step works (`Engine.step`): waiting requests join the running batch while the step's token
budget allows (`max_batch_tokens`: the new prompts' tokens plus one per running sequence) and the
batch has rows free (`max_batch_size`). Joining requests are prefilled together, once per prompt;
a request with n samples then copies its prompt's cache rows n times. Then every running sequence
samples one token from its pending logits; finished sequences leave the batch (their cache rows are
dropped, so they stop costing compute); the rest run one decode forward together. Requests can be
added between steps, from a server or an RL loop, and join as others finish.

The cache is r1kit.kv_cache.KVCache (slot = position, so rows at different positions share one
batch); the engine uses only its KVCacheLike methods plus `select_rows` and `append_rows`, so a
paged or prefix-sharing cache can replace it without touching the model.

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

Shape legend: B running rows, P longest new prompt, V vocabulary.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Literal, Sequence

import torch

from r1kit.device import autocast, choose_dtype, resolve_device
from r1kit.format import SPECIAL_TOKENS
from r1kit.inference.kv_cache import KVCache
from r1kit.inference.sampling import draw_tokens, signed64
from r1kit.model.transformer import Transformer

if TYPE_CHECKING:  # the engine works on ids alone; a tokenizer only adds text and stop strings
    from r1kit.data.tokenizer import Tokenizer

FinishReason = Literal["stop", "length"]


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_k: int | None = None  # keep the k most likely tokens (None = all)
    top_p: float | None = None  # keep the smallest set reaching this probability (None = all)
    seed: int | None = None  # None: one drawn from the engine's generator (Engine(seed=...) fixes it)
    n: int = 1  # samples per prompt, sharing one prefill (RL draws a group per prompt)
    stop: Sequence[str] = ()  # stop strings (need a tokenizer); the text is cut before them (module docstring)
    stop_token_ids: Sequence[int] = ()  # stop tokens besides the tokenizer's EOS (kept in token_ids)

    def check(self) -> None:
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            problems.append(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            problems.append(f"top_k must be >= 1 or None, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            problems.append(f"top_p must lie in (0, 1], got {self.top_p}")
        if self.n < 1:
            problems.append(f"n must be >= 1, got {self.n}")
        if isinstance(self.stop, str):
            problems.append("stop takes a list of strings, not one string")
        elif any(not isinstance(s, str) or not s for s in self.stop):
            problems.append(f"stop strings must be non-empty strings, got {list(self.stop)!r}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class Sample:
    """One completion of a request."""

    index: int
    token_ids: list[int] = field(default_factory=list)  # the stop token included when one ended it
    logprobs: list[float] = field(default_factory=list)  # per token, under the model's distribution
    finish_reason: FinishReason | None = None
    # what ended a "stop": the stop string, or the id from stop_token_ids; None for EOS or "length"
    stop_reason: str | int | None = None
    text: str | None = None  # with a tokenizer: what the user sees (no special tokens), cut before a stop string


@dataclass
class RequestOutput:
    request_id: int
    prompt_ids: list[int]
    samples: list[Sample]

    @property
    def finished(self) -> bool:
        return all(s.finish_reason is not None for s in self.samples)


@dataclass
class TokenEvent:
    """One token produced by `Engine.step` for sample `index` of request `request_id`."""

    request_id: int
    index: int
    token_id: int
    logprob: float
    finish_reason: FinishReason | None  # set on a sample's last token


@dataclass
class StreamDelta:
    """A piece of streamed text. channel: "reasoning" (inside <think>) or "answer"."""

    text: str
    channel: Literal["reasoning", "answer"]
    token_id: int
    finish_reason: FinishReason | None = None
    stop_reason: str | int | None = None  # as Sample.stop_reason, on the last delta


@dataclass
class _Request:
    request_id: int
    prompt_ids: list[int]
    params: SamplingParams
    output: RequestOutput
    stop_ids: dict[int, str | int | None]  # stop token -> the stop_reason it gives
    total_len: int  # prompt + the most new tokens that fit


@dataclass
class _Sequence:
    """A running sample: its row in the batch is its index in Engine._running."""

    request: _Request
    sample: Sample
    position: int  # where the next token will be written
    seed: int  # the sample's noise seed, in [0, 2**64) (module docstring, Sampling)


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
        dtype: str = "fp32",
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        # rows decoded together; 64 keeps a CPU decode step near its best tokens/s for small models
        self.max_batch_size = max_batch_size
        # new prompt tokens + running rows per step; bounds one step's prefill latency and memory
        self.max_batch_tokens = max_batch_tokens
        self.max_seq_len = model.config.max_seq_len
        self.device = next(model.parameters()).device
        # the compute precision of the forward passes (r1kit.device.choose_dtype decides "auto")
        self.dtype = dtype
        self._generator = torch.Generator(device=self.device).manual_seed(seed % _SEED_SPACE)
        self._ids = itertools.count()
        self._waiting: deque[_Request] = deque()
        self._running: list[_Sequence] = []
        self._cache: KVCache | None = None
        self._next_logits_BV: torch.Tensor | None = None
        self._outputs: dict[int, RequestOutput] = {}  # every request not yet handed back

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", dtype: str = "auto", **kwargs) -> "Engine":
        """The checkpoint's model and tokenizer (`load_for_inference`) in an engine."""
        model, tokenizer, dtype = load_for_inference(path, device, dtype)
        return cls(model, tokenizer, dtype=dtype, **kwargs)

    # ------------------------------------------------------------------ requests

    def encode(self, prompt: str | Sequence[int]) -> list[int]:
        """A question (str, put in the chat format) or ready token ids."""
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("a text prompt needs a tokenizer; pass token ids or build the Engine with one")
            return self.tokenizer.encode_prompt(prompt)
        return [int(t) for t in prompt]

    def add_request(self, prompt: str | Sequence[int], params: SamplingParams | None = None) -> int:
        """Queue a request; it joins the running batch at a later `step`. Returns its id."""
        params = params or SamplingParams()
        params.check()
        stop_ids = self._stop_ids(params)
        prompt_ids = self.encode(prompt)
        if not prompt_ids:
            raise ValueError("a prompt needs at least one token")
        if len(prompt_ids) >= self.max_seq_len:
            raise ValueError(
                f"a prompt of {len(prompt_ids)} tokens leaves no room in the model's context of {self.max_seq_len}")
        bad = [t for t in prompt_ids if not 0 <= t < self.model.config.vocab_size]
        if bad:
            raise ValueError(f"token ids {bad[:5]} lie outside the vocabulary of {self.model.config.vocab_size}")
        request_id = next(self._ids)
        output = RequestOutput(request_id, prompt_ids, [Sample(i) for i in range(params.n)])
        total_len = min(self.max_seq_len, len(prompt_ids) + params.max_new_tokens)
        self._waiting.append(_Request(request_id, prompt_ids, params, output, stop_ids, total_len))
        self._outputs[request_id] = output
        return request_id

    def _stop_ids(self, params: SamplingParams) -> dict[int, str | int | None]:
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
        return self._outputs.pop(request_id)

    def has_unfinished(self) -> bool:
        return bool(self._waiting or self._running)

    @property
    def num_running(self) -> int:
        """Sequences (samples) in the running batch."""
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        """Requests queued, not yet admitted."""
        return len(self._waiting)

    # ------------------------------------------------------------------ the step

    @torch.inference_mode()
    def step(self) -> list[TokenEvent]:
        """Admit and prefill waiting requests, sample one token for every running sequence, drop the
        finished ones, and run one decode forward for the rest."""
        self._admit()
        if not self._running:
            return []
        tokens_B, logprobs_B = self._sample()
        events, keep = [], []
        for row, (seq, token, logprob) in enumerate(zip(self._running, tokens_B.tolist(), logprobs_B.tolist())):
            seq.sample.token_ids.append(token)
            seq.sample.logprobs.append(logprob)
            reason, stop_reason = self._finish(seq, token)
            if reason is not None:
                seq.sample.finish_reason, seq.sample.stop_reason = reason, stop_reason
                self._finalise_text(seq)
            else:
                keep.append(row)
            events.append(TokenEvent(seq.request.request_id, seq.sample.index, token, logprob, reason))

        if len(keep) < len(self._running):
            self._running = [self._running[r] for r in keep]
            if not keep:
                self._cache, self._next_logits_BV = None, None
                return events
            rows = torch.tensor(keep, device=self.device)
            self._cache.select_rows(rows)
            tokens_B = tokens_B[rows]
        positions_B = torch.tensor([s.position for s in self._running], device=self.device)
        with autocast(self.device, self.dtype):
            self._next_logits_BV = self.model(tokens_B[:, None], positions_B[:, None], self._cache)[:, 0].float()
        for seq in self._running:
            seq.position += 1
        return events

    def _admit(self) -> None:
        """Move waiting requests into the batch while the token budget and free rows allow; prefill them."""
        joining: list[_Request] = []
        budget = self.max_batch_tokens - len(self._running)
        rows = len(self._running)
        while self._waiting:
            request = self._waiting[0]
            fits = len(request.prompt_ids) <= budget and rows + request.params.n <= self.max_batch_size
            if not fits and (joining or self._running):  # an idle engine takes one request whatever its size
                break
            joining.append(self._waiting.popleft())
            budget -= len(request.prompt_ids)
            rows += request.params.n
        if joining:
            self._prefill(joining)

    def _prefill(self, requests: list[_Request]) -> None:
        """One forward over the new prompts (right-padded, each row at its own positions), then each
        prompt's cache rows and last logits copied once per sample."""
        B, P = len(requests), max(len(r.prompt_ids) for r in requests)
        ids_BP = torch.zeros((B, P), dtype=torch.long, device=self.device)
        for row, request in enumerate(requests):
            ids_BP[row, : len(request.prompt_ids)] = torch.tensor(request.prompt_ids, device=self.device)
        # capacity for the longest of these requests (in steps of 64 slots), not the model's whole
        # context: less memory to zero and hold; the running cache grows if a longer one joins
        capacity = min(self.max_seq_len, -(-max(r.total_len for r in requests) // 64) * 64)
        cache = KVCache.for_model(self.model, B, max_seq_len=capacity,
                                  dtype=torch.bfloat16 if self.dtype == "bf16" else None)
        last_B = torch.tensor([len(r.prompt_ids) - 1 for r in requests], device=self.device)
        last_BP = torch.arange(P, device=self.device) == last_B[:, None]  # one True per row: logits [B, V] in row order
        with autocast(self.device, self.dtype):
            logits_BV = self.model(ids_BP, torch.arange(P, device=self.device).expand(B, P), cache, logits_at_BT=last_BP).float()

        copies = torch.tensor([row for row, r in enumerate(requests) for _ in range(r.params.n)], device=self.device)
        if len(copies) != B:
            cache.select_rows(copies)
            logits_BV = logits_BV[copies]
        for request in requests:
            request_seed = request.params.seed
            if request_seed is None:  # from the engine's generator: the run's seed decides it
                low, high = torch.randint(0, 1 << 32, (2,), generator=self._generator, device=self.device).tolist()
                request_seed = high << 32 | low
            for sample in request.output.samples:
                seed = (request_seed * 65_537 + sample.index) % _SEED_SPACE
                self._running.append(_Sequence(request, sample, len(request.prompt_ids), seed))
        if self._cache is None:
            self._cache, self._next_logits_BV = cache, logits_BV
        else:
            self._cache.append_rows(cache)
            self._next_logits_BV = torch.cat([self._next_logits_BV, logits_BV])

    def _sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One token per running row, with its log-probability under the model's distribution."""
        logits_BV = self._next_logits_BV.float()
        logprobs_BV = torch.log_softmax(logits_BV, dim=-1)
        tokens_B = logits_BV.argmax(dim=-1)
        params = [seq.request.params for seq in self._running]
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
                torch.tensor([signed64(seq.seed) for seq in self._running], device=device),
                torch.tensor([len(seq.sample.token_ids) for seq in self._running], device=device),
                top_k_B, top_p_B)
            sampled_B = torch.tensor([p.temperature > 0 for p in params], device=device)
            tokens_B = torch.where(sampled_B, drawn_B, tokens_B)
        return tokens_B, logprobs_BV.gather(-1, tokens_B[:, None])[:, 0]

    def _finish(self, seq: _Sequence, token: int) -> tuple[FinishReason | None, str | int | None]:
        """(finish reason, stop reason) after `token`; (None, None) while the sample goes on."""
        request = seq.request
        if token in request.stop_ids:
            return "stop", request.stop_ids[token]
        if request.params.stop:
            hit = _first_stop(self._visible_text(seq), request.params.stop)
            if hit is not None:
                return "stop", hit[1]
        if len(seq.sample.token_ids) >= request.params.max_new_tokens or seq.position + 1 >= request.total_len:
            return "length", None
        return None, None

    def _visible_text(self, seq: _Sequence) -> str:
        """The sample's text as the user sees it: no special tokens, nor the stop token that ended it."""
        ids = seq.sample.token_ids
        if ids and ids[-1] in seq.request.stop_ids:
            ids = ids[:-1]
        return self.tokenizer.decode(ids, skip_special=True)

    def _finalise_text(self, seq: _Sequence) -> None:
        if self.tokenizer is not None:
            seq.sample.text = _cut_at_stop(self._visible_text(seq), seq.request.params.stop, finished=True)

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
        tok = self.tokenizer
        prompt_ids = self.encode(prompt)
        request_id = self.add_request(prompt_ids, params)
        stop_ids = self._stop_ids(params)
        channel = "reasoning" if _inside_think(prompt_ids, tok.think_id, tok.end_think_id) else "answer"
        # the text is decoded whole, as generate() decodes it, so stop strings and held-back tails see
        # across the <think> markers; the markers only record where each channel starts in it
        ids: list[int] = []
        switches: list[tuple[int, str]] = [(0, channel)]  # (offset in the text, channel from there on)
        shown = 0  # characters of the text already yielded
        finished = False
        while not finished:
            for event in self.step():
                if event.request_id != request_id:
                    continue
                finished, token = event.finish_reason is not None, event.token_id
                if token not in stop_ids:  # a stop token is neither text nor a channel marker
                    if token in (tok.think_id, tok.end_think_id):
                        switches.append((len(tok.decode(ids, skip_special=True)),
                                         "reasoning" if token == tok.think_id else "answer"))
                    ids.append(token)
                text = tok.decode(ids, skip_special=True)
                if not finished:  # half a UTF-8 character: wait for the rest (it may be a stop string's)
                    text = text.rstrip("\ufffd")
                text = _cut_at_stop(text, params.stop, finished)
                pieces = _channel_pieces(text, shown, switches)
                shown = max(shown, len(text))
                if not pieces and finished:  # the end still gets a delta, to carry the finish reason
                    pieces = [("", _channel_at(len(text), switches))]
                stop_reason = self._outputs[request_id].samples[0].stop_reason if finished else None
                for k, (piece, piece_channel) in enumerate(pieces):
                    last = k == len(pieces) - 1
                    yield StreamDelta(piece, piece_channel, token, event.finish_reason if last else None,
                                      stop_reason if last else None)
        self._outputs.pop(request_id, None)


def load_for_inference(path: str | Path, device: str = "auto", dtype: str = "auto") -> tuple[Transformer, Tokenizer, str]:
    """(model on `device` ("auto" | "cpu" | "cuda"), tokenizer, compute dtype ("fp32" | "bf16";
    "auto": r1kit.device.choose_dtype)) of a checkpoint."""
    from r1kit.data.tokenizer import Tokenizer
    from r1kit.interop.checkpoint import load_pretrained

    target = resolve_device(device)  # before loading: a missing GPU is the first thing to say
    model = load_pretrained(path, device=target)
    dtype, _reason = choose_dtype(dtype, target, model.num_params())
    return model, Tokenizer.load(path), dtype


def _inside_think(prompt_ids: list[int], think_id: int, end_think_id: int) -> bool:
    """Does the prompt end inside a <think> block (r1kit's prompts do)?"""
    for token in reversed(prompt_ids):
        if token == end_think_id:
            return False
        if token == think_id:
            return True
    return False


def _channel_at(offset: int, switches: list[tuple[int, str]]) -> str:
    """The channel in force at `offset` of the text (the last switch at or before it)."""
    return [channel for at, channel in switches if at <= offset][-1]


def _channel_pieces(text: str, start: int, switches: list[tuple[int, str]]) -> list[tuple[str, str]]:
    """text[start:] as (piece, channel) pieces, split where the channel changes."""
    pieces: list[tuple[str, str]] = []
    bounds = [at for at, _ in switches[1:]] + [len(text)]
    for (at, channel), end in zip(switches, bounds):
        a, b = max(at, start), min(end, len(text))
        if a < b:
            if pieces and pieces[-1][1] == channel:
                pieces[-1] = (pieces[-1][0] + text[a:b], channel)
            else:
                pieces.append((text[a:b], channel))
    return pieces


def _first_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """(where, which) of the stop string that starts first in `text` (the earlier listed on a tie)."""
    hits = [(i, s) for s, i in ((s, text.find(s)) for s in stops) if i >= 0]
    return min(hits, key=lambda hit: hit[0]) if hits else None


def _cut_at_stop(text: str, stops: Sequence[str], finished: bool) -> str:
    """Text up to the first stop string; while generating, also hold back a tail that may be
    the start of one."""
    hit = _first_stop(text, stops)
    if hit is not None:
        return text[: hit[0]]
    if not finished:
        held = max((k for s in stops for k in range(1, min(len(s) - 1, len(text)) + 1) if text.endswith(s[:k])), default=0)
        return text[: len(text) - held]
    return text


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
