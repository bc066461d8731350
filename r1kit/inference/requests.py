"""What a generation request is made of: its sampling parameters, its output, the events and
stream deltas the engine hands out, and the engine's own record of a request and of each running
sample (shared by the engine and its batches)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

FinishReason = Literal["stop", "length", "abort"]  # "abort": Engine.abort ended it


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
    # None: the engine's precision; "exact": fp32 whatever the engine runs (the article's finance
    # example); "fp32" / "bf16" / "fp16" name one (r1kit.inference.dynamic.check_precision)
    precision: str | None = None
    # prefix-cache tenant: cached KV is shared only between requests with the same salt (vLLM's cache_salt)
    cache_salt: str | None = None
    # "auto": the fast-path gate decides (complexity_threshold; r1kit.inference.fast_path); "full" /
    # "fast" force a graph ("fast" needs a calibrated checkpoint)
    graph: Literal["auto", "full", "fast"] = "auto"

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
        if self.precision not in (None, "exact", "fp32", "bf16", "fp16"):
            problems.append(f"precision must be one of exact, fp32, bf16, fp16 (or None: the engine's), got {self.precision!r}")
        if self.graph not in ("auto", "full", "fast"):
            problems.append(f"graph must be one of auto, full, fast, got {self.graph!r}")
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
    cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache (not computed)
    precision: str = "fp32"  # the compute precision the request ran in
    graph: str = "full"  # "full", or "fast": the early-exit graph the gate chose (or the request asked for)
    fast_p: float | None = None  # the gate's estimate that the fast graph answers as the full one; None: not estimated

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
class Request:
    request_id: int
    prompt_ids: list[int]
    params: SamplingParams
    output: RequestOutput
    stop_ids: dict[int, str | int | None]  # stop token -> the stop_reason it gives
    total_len: int  # prompt + the most new tokens that fit
    precision: str  # "fp32" | "bf16" | "fp16": the batch it runs in
    exit_after: int | None = None  # on the fast graph: the blocks it runs (its early exit); None: all of them
    undecided: bool = False  # the gate picks its graph inside its prefill's forward (PrefillGate)

    def run_on(self, exit_after: int | None) -> None:
        """Run on the fast path's graph (stopping after `exit_after` blocks), or (None) the full one."""
        self.exit_after = exit_after
        self.output.graph = "full" if exit_after is None else "fast"


@dataclass
class SequenceState:
    """A running sample: its row in the batch is its index in its batch's `running` list."""

    request: Request
    sample: Sample
    position: int  # where the next token will be written
    seed: int  # the sample's noise seed, in [0, 2**64) (module docstring, Sampling)
    blocks: list[int] = field(default_factory=list)  # paged cache: the pool blocks holding its tokens, in order
    keys: list[bytes] = field(default_factory=list)  # paged cache: the content keys of its full blocks

    def tokens(self) -> list[int]:
        """Every token of the sequence so far: the prompt, then the sampled ones."""
        return self.request.prompt_ids + self.sample.token_ids


def row_depths(requests: Sequence[Request], n_layers: int) -> list[int] | None:
    """The blocks each row's forward runs (the model's depth_B): a fast-path row stops at its exit;
    None when every row runs the full graph (the plain forward)."""
    if all(r.exit_after is None for r in requests):
        return None
    return [n_layers if r.exit_after is None else r.exit_after for r in requests]
