"""Typed, validated model configuration, named presets, and loading from JSON / YAML with overrides.

Every field states why it has its default. Validation is strict: an unknown key or an
out-of-range value raises `ConfigError` naming the key and what is allowed. Training, sampling
and server settings live with their own modules (train/, inference/), not here.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

AttentionKind = Literal["dense", "multiscale"]
Balancing = Literal["none", "load_penalty", "aux_loss", "bias"]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and what is allowed."""


class _Strict(BaseModel):
    # extra="forbid": a misspelt key must fail loudly, never be silently ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class AttentionConfig(_Strict):
    kind: AttentionKind = Field(
        "multiscale", description="'multiscale' (S2-S4: local + global top-k + symbolic, gated) or 'dense' causal SDPA for ablations"
    )
    window: int = Field(32, ge=1, description="local branch: causal sliding window in tokens (the article's 32)")
    topk: int = Field(64, ge=1, description="global branch: keys kept per query (the article's k = 64)")
    chunk_size: int = Field(
        256, ge=16, description="queries per chunk in the multiscale branches: training at T <= 256 is one chunk; longer T stays bounded in memory"
    )
    kernel: Literal["auto", "fused", "sdpa"] = Field(
        "auto", description="multiscale in training: 'fused' computes one score matrix for the three branches in C++ (r1kit/model/kernels/csrc, compiled "
        "on first use; fwd+bwd 2.7-3.9x faster per layer at T = 77-130 on 2 CPU cores, docs/benchmarks.md), 'sdpa' runs three masked "
        "SDPA calls; 'auto' = fused where it builds and applies (CPU, float32, one chunk, no cache), else sdpa. Same results to ~1e-6"
    )
    branches: list[Literal["local", "global", "symbolic"]] = Field(
        ["local", "global", "symbolic"], min_length=1, description="multiscale: the branches the gate mixes (the article's three); "
        "an ablation switch: a branch left out gets gate weight exactly 0 (still computed, so every kernel path is unchanged)"
    )
    gate_local_bias: float = Field(
        0.0, description="initial gate logit of the local branch (others 0): 0 mixes the branches equally at init, which learnt "
        "faster than NSA's local-first start (2.0 gives local ~0.79): 39.2% vs 28.0% at 20 SFT minutes (docs/benchmarks.md)"
    )

    @field_validator("branches")
    @classmethod
    def _distinct(cls, branches: list[str]) -> list[str]:
        if len(set(branches)) != len(branches):
            raise ValueError(f"{branches} names a branch twice")
        return branches


class MoEConfig(_Strict):
    n_experts: int = Field(4, ge=0, description="routed experts per layer; 4 shows routing balance at CPU scale; 0 = the dense SwiGLU (Llama) layer")
    n_shared: int = Field(0, ge=0, description="always-on shared experts (DeepSeekMoE); 0 keeps the article's plain routing")
    top_k: int = Field(2, ge=1, description="experts per token; 2 is the common small-MoE choice (Mixtral, Switch uses 1)")
    expert_hidden: int | None = Field(
        None, ge=1, description="hidden width of one expert; None = the dense width / top_k, so active FFN params match dense"
    )
    balancing: Balancing = Field("load_penalty", description="how routing is kept balanced (S1: 'load_penalty' is the article's)")
    alpha: float = Field(1.0, ge=0, description="load_penalty: adjusted = s - alpha * load; load is 1 at uniform, so alpha is in logit units")
    load_momentum: float = Field(
        0.1, gt=0, le=1, description="load_penalty: EMA weight of the newest step's load; ~10-step memory reacts fast yet smooths noise"
    )
    bias_gamma: float = Field(1e-3, ge=0, description="bias: per-step bias nudge, DeepSeek-V3's update speed 0.001")
    aux_loss_coef: float = Field(1e-2, ge=0, description="aux_loss: weight of the Switch balance loss (Switch Transformer uses 1e-2)")
    capacity_factor: float | None = Field(
        None, gt=0, description="None = dropless (default; keeps routing causal). Else each expert takes at most cf * tokens * top_k / n_experts in training"
    )
    norm_topk_prob: bool = Field(True, description="renormalise the chosen experts' weights to sum to 1 (Mixtral); keeps output scale independent of top_k")

    @model_validator(mode="after")
    def _check(self) -> "MoEConfig":
        if self.n_experts and self.top_k > self.n_experts:
            raise ValueError(f"top_k={self.top_k} must be <= n_experts={self.n_experts}")
        return self


class ModelConfig(_Strict):
    vocab_size: int = Field(1024, ge=2, description="set from the tokenizer; SFT trains a 1024-token BPE on toy maths")
    dim: int = Field(256, ge=8, description="residual width; 256 x 4 layers is a few-M-parameter model that trains on 2 CPU cores in minutes")
    n_layers: int = Field(4, ge=1, description="transformer blocks; 4 gives multi-step arithmetic depth at toy scale")
    n_heads: int = Field(4, ge=1, description="query heads; 4 at dim 256 gives Llama's head size of 64")
    n_kv_heads: int | None = Field(None, ge=1, description="key/value heads (GQA); None = n_heads (plain multi-head)")
    ffn_hidden: int | None = Field(None, ge=1, description="dense SwiGLU width; None = Llama's 8/3 * dim rounded up to a multiple of 32")
    max_seq_len: int = Field(512, ge=8, description="longest sequence (RoPE table and cache size); toy maths traces fit in 512")
    rope_theta: float = Field(10000.0, gt=0, description="RoPE base; Llama 2's 10000 suits contexts of a few thousand tokens")
    norm_eps: float = Field(1e-5, gt=0, description="RMSNorm epsilon (Llama)")
    init_std: float = Field(0.02, gt=0, description="normal init std of weights (GPT-2 / Llama); output projections scaled by 1/sqrt(2 * n_layers)")
    layer_drop: float = Field(0.0, ge=0, lt=1, description="training-time probability to skip each block (LayerDrop) so inference can skip layers gracefully")
    attention: AttentionConfig = Field(default_factory=AttentionConfig)
    moe: MoEConfig = Field(default_factory=MoEConfig)

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} must be divisible by n_heads={self.n_heads}")
        if (self.dim // self.n_heads) % 2:
            raise ValueError(f"head_dim={self.dim // self.n_heads} must be even for rotary positions")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_heads={self.n_heads} must be divisible by n_kv_heads={self.kv_heads}")
        return self

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def dense_hidden(self) -> int:
        if self.ffn_hidden is not None:
            return self.ffn_hidden
        return 32 * -(-(8 * self.dim // 3) // 32)

    @property
    def expert_hidden(self) -> int:
        return self.moe.expert_hidden or max(1, self.dense_hidden // self.moe.top_k)


# Named presets (gpt-fast style). Each is a full ModelConfig; files in configs/ refine them.
PRESETS: dict[str, dict[str, Any]] = {
    # Tests: a forward+backward in milliseconds, yet every mechanism switched on.
    "tiny": dict(
        vocab_size=64, dim=32, n_layers=2, n_heads=4, max_seq_len=64,
        attention=dict(window=4, topk=8, chunk_size=16), moe=dict(n_experts=4, top_k=2),
    ),
    # CPU demo: 1.5M parameters at vocab 512 (1.6M with SFT's 1024-token BPE), 0.9M active per token; ~9k tokens/s on 2 cores.
    "demo": dict(
        vocab_size=512, dim=128, n_layers=4, n_heads=4, max_seq_len=384,
        moe=dict(n_experts=4, top_k=2),
    ),
    # The plain Llama architecture, for ablations and export.
    "llama-tiny": dict(
        vocab_size=64, dim=32, n_layers=2, n_heads=4, max_seq_len=64, attention=dict(kind="dense"), moe=dict(n_experts=0),
    ),
}


# ----------------------------------------------------------------------------- loading

C = TypeVar("C", bound=BaseModel)


def preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; allowed: {', '.join(sorted(PRESETS))}")
    return ModelConfig(**PRESETS[name])


def read_file(path: str | Path) -> dict[str, Any]:
    """A mapping from a .json, .yaml or .yml file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot parse config file {path}: {e}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` overrides (value parsed as YAML: 3, 0.5, true, null, dense) to a nested dict."""
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key=value (nested keys with dots: moe.n_experts=8)")
        value = yaml.safe_load(raw) if raw else ""
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[leaf] = value
    return data


def build(cls: type[C], data: dict[str, Any], section: str = "") -> C:
    """Validate `data` into `cls`, turning pydantic's errors into one ConfigError naming each key
    (prefixed with `section.` when the data is one section of a larger file)."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_explain(cls, e, section)) from None


def load_model_config(path: str | Path | None = None, overrides: list[str] = (), preset_name: str | None = None) -> ModelConfig:
    """A ModelConfig from a file's `model:` section (or the whole file), a preset and overrides.

    Precedence, lowest first: the preset (named in the file as `preset: NAME`, else `preset_name`),
    then the file's keys, then the overrides.
    """
    data = read_file(path) if path is not None else {}
    if "model" in data:
        data = data["model"] or {}
    # `model.dim=64` (as in training commands) and `dim=64` both name the model's dim
    overrides = [o.removeprefix("model.") for o in overrides]
    return model_config_from(apply_overrides(data, overrides), preset_name)


def model_config_from(data: dict[str, Any], preset_name: str | None = None, section: str = "") -> ModelConfig:
    """Validate a model section; a `preset: NAME` key (else `preset_name`) is the base it refines.
    `section` prefixes the keys named in errors (`model` inside a training config)."""
    data = dict(data)
    name = data.pop("preset", None) or preset_name
    if name:
        data = _merge(preset(name).model_dump(), data)
    return build(ModelConfig, data, section)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _explain(cls: type[BaseModel], err: ValidationError, section: str = "") -> str:
    lines = [f"invalid {cls.__name__}:"]
    for e in err.errors():
        loc = ".".join([section] * bool(section) + [str(p) for p in e["loc"]]) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _fields_at(cls, e["loc"][:-1])
            hint = difflib.get_close_matches(str(e["loc"][-1]), allowed, n=1)
            msg = f"unknown key {loc!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            msg += f"; allowed keys: {', '.join(allowed)}"
        else:
            msg = f"{loc}: {e['msg']}"
            if "input" in e and e["type"] != "missing" and not isinstance(e["input"], dict):
                msg += f" (got {e['input']!r})"
            field = _field_at(cls, e["loc"])
            if field is not None and field.description:
                msg += f" -- {field.description}"
        lines.append("  " + msg)
    return "\n".join(lines)


def _model_at(cls: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for part in loc:
        field = cls.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        cls = ann
    return cls


def _fields_at(cls: type[BaseModel], loc: tuple) -> list[str]:
    sub = _model_at(cls, loc)
    return sorted(sub.model_fields) if sub else []


def _field_at(cls: type[BaseModel], loc: tuple):
    sub = _model_at(cls, loc[:-1]) if loc else None
    return sub.model_fields.get(str(loc[-1])) if sub else None


# ----------------------------------------------------------------------------- reference


def explain(cls: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, why) for every field of a config class, nested sections expanded:
    the configuration reference (`r1kit config --explain`), printed from the code itself."""
    rows = []
    for name, field in cls.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += explain(annotation, f"{prefix}{name}.")
            continue
        default = "(required)" if field.is_required() else json.dumps(field.get_default(call_default_factory=True))
        rows.append((f"{prefix}{name}", default, field.description or ""))
    return rows
