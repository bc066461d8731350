"""The `dynamic_inference` block (S9), in the article's shape, and the precision rule (S6).

    {"dynamic_inference": {"complexity_threshold": 0.7, "precision_mode": "auto", "memory_reuse": true}}

`load_dynamic_inference` takes the inner block or the whole object, as a dict or a JSON / YAML
file, and validates it (an unknown key, or a value out of range, is an error naming it). The keys
beyond the article's three size the KV pool and keep a share of the experts (expert_activation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PrecisionMode = Literal["auto", "fp32", "bf16", "fp16"]


class DynamicInference(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # a request takes the approximate (fast) graph when its estimated p exceeds this; 1.0 never, 0.0
    # always (0.7 is the article's example). None: the threshold `r1kit calibrate` suggested for the
    # checkpoint (its accuracy loss within 1 point on held-out problems), else the article's 0.7.
    # Without a calibrated checkpoint there is no fast graph and it does nothing.
    complexity_threshold: float | None = Field(None, ge=0.0, le=1.0)
    # the engine's compute precision; "auto" is r1kit.device.choose_dtype's rule (fp32 for small models
    # on a CPU, where bf16 was measured slower); a request may ask for "exact" (fp32) whatever this is
    precision_mode: PrecisionMode = "auto"
    # paged KV blocks shared across requests, turns and samples; false: one contiguous cache row per
    # sample, nothing shared (the engine before the pool)
    memory_reuse: bool = True
    # tokens a KV block holds: 16 as in vLLM; smaller shares more of a ragged prefix, larger gathers
    # fewer, bigger pieces per forward
    block_size: int = Field(16, ge=1, le=1024)
    # the pool's bound in tokens (rounded down to whole blocks); None: max_batch_size x the model's
    # context, the most the engine could ever hold without sharing. Storage grows on demand up to it.
    pool_tokens: int | None = Field(None, ge=1)
    # decode attention reads the KV blocks in place (a C++ kernel; fp32 on a CPU) instead of gathering
    # them into a contiguous tensor per layer per step; false: always gather (measured in docs/benchmarks.md)
    decode_kernel: bool = True
    # the share of each MoE layer's routed experts the engine keeps (the most used; the others'
    # weights are freed and never routed to; r1kit.inference.experts). 1.0 keeps all: the model as
    # trained. The article's example is 0.7 ("-40% memory for -3% accuracy").
    expert_activation: float = Field(1.0, gt=0.0, le=1.0)


def load_dynamic_inference(spec: DynamicInference | dict | str | Path | None) -> DynamicInference:
    """The block from a DynamicInference, a dict (the inner block or {"dynamic_inference": {...}}),
    or a JSON / YAML file holding either; None gives the defaults."""
    if spec is None:
        return DynamicInference()
    if isinstance(spec, DynamicInference):
        return spec
    source = "the dynamic_inference block"
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"dynamic inference config {path} does not exist")
        source = str(path)
        text = path.read_text()
        kind = "JSON" if path.suffix == ".json" else "YAML"
        try:
            if kind == "JSON":
                spec = json.loads(text)
            else:
                import yaml

                spec = yaml.safe_load(text)
        except Exception as e:  # json.JSONDecodeError, yaml.YAMLError
            raise ValueError(f"{source} is not valid {kind}: {e}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{source} must be a mapping, got {type(spec).__name__}")
    if "dynamic_inference" in spec:
        if len(spec) != 1:
            extra = sorted(k for k in spec if k != "dynamic_inference")
            raise ValueError(f"{source}: unknown top-level key(s) {extra} beside 'dynamic_inference'")
        spec = spec["dynamic_inference"]
        if not isinstance(spec, dict):
            raise ValueError(f"{source}: 'dynamic_inference' must be a mapping, got {type(spec).__name__}")
    try:
        return DynamicInference(**spec)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ValueError(f"{source}: {problems}") from None


def check_precision(precision: str, device: Any) -> str:
    """A concrete compute precision ("fp32" | "bf16" | "fp16") that `device` can run, or a ValueError.
    "exact" is fp32. fp16 is refused on a CPU: its autocast has no fp16 fast path there and its range
    (max 65504) overflows where bf16 does not."""
    import torch

    if precision == "exact":
        return "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"unknown precision {precision!r}; allowed: exact, fp32, bf16, fp16")
    if precision == "fp16" and torch.device(device).type == "cpu":
        raise ValueError("fp16 is not supported on a CPU; use bf16 (native on CPUs with avx512_bf16 / amx_bf16) or fp32")
    return precision


def engine_precision(mode: str, device: Any, n_params: int) -> tuple[str, str]:
    """(the engine's compute precision, why) for a precision_mode on a device."""
    from r1kit.device import choose_dtype

    if mode == "auto":
        return choose_dtype("auto", device, n_params)
    return check_precision(mode, device), "asked for"
