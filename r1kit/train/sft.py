"""Supervised fine-tuning (S10): teach a small model to reason step by step, readable top to bottom.

    r1kit train sft --config configs/demo.yaml [sft.max_steps=2000 model.dim=192 ...]

What one run does:
  1. reads the training and evaluation JSONL files (synthetic schema or GSM8K, r1kit.data.schema);
  2. trains a byte-level BPE tokenizer on the training text (or loads `sft.tokenizer`);
  3. builds the model from the `model:` section, its vocabulary size taken from the tokenizer and
     its symbol flags from the tokenizer's vocabulary;
  4. trains with Muon on the hidden matrices and AdamW on the rest (r1kit.train.optim; or AdamW alone),
     linear warm-up then cosine (or linear) decay over max_steps or, with `decay_by: minutes`, over
     the max_minutes budget; gradient clipping and accumulation, on
     right-padded batches; the loss is the mean cross-entropy over response tokens (the question's
     tokens count with weight `prompt_loss_weight`, 0 by default);
  5. after each optimiser step applies the MoE balancing updates; layer drop happens in the
     model's training forward;
  6. logs metrics as JSONL, evaluates greedy accuracy on held-out problems every `eval_every`
     steps, and writes `last/` (with trainer state, for --resume) every `save_every` steps and
     `final/` at the end, each atomically.

Determinism: the batch order is a pure function of (seed, step), and the trainer state holds
the optimiser's tensors and torch's RNG state, so `--resume` reproduces the uninterrupted run's
losses exactly (a test checks it) when the schedule counts steps; one that counts minutes depends
on the steps' timing. Nothing is pickled: tensors go to safetensors, the rest to JSON.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from safetensors.torch import load_file, save_file

from r1kit import config as config_mod
from r1kit.interop.checkpoint import load_pretrained, save_pretrained
from r1kit.config import ModelConfig
from r1kit.data.schema import Example, load_examples, read_metrics, write_text
from r1kit.evaluate import evaluate
from r1kit.model.transformer import Transformer
from r1kit.train.optim import muon_adamw
from r1kit.data.tokenizer import Tokenizer
from r1kit.format import format_completion


class SFTConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    train_data: str = Field(..., description="training JSONL (synthetic schema or GSM8K)")
    eval_data: str | None = Field(None, description="held-out JSONL for periodic greedy evaluation; None = no evaluation")
    out_dir: str = Field("runs/sft", description="where checkpoints and metrics go")
    tokenizer: str | None = Field(None, description="directory holding tokenizer.json; None = train a BPE on the training text")
    vocab_size: int = Field(1024, ge=64, description="BPE size when training a tokenizer; on toy maths ~500 makes names and items single tokens, 1024 also common phrases: prompts 58 -> 44 tokens, 20% more SFT steps a minute, 10.0% vs 5.8% at 10 minutes, same at 20 (docs/benchmarks.md)")
    max_len: int = Field(256, ge=16, description="examples longer than this many tokens are dropped (and counted)")
    batch_size: int = Field(32, ge=1, description="sequences per micro-batch")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimiser step")
    length_window: int = Field(8, ge=1, description="micro-batches whose examples are grouped by length (1 = plain shuffle); less padding, same epoch")
    max_steps: int = Field(1000, ge=1, description="optimiser steps; also the length of the decay schedule")
    max_minutes: float | None = Field(None, gt=0, description="optional budget of training time (evaluation excluded): no step starts that would end past it at the longest step time so far; the schedule follows max_steps unless decay_by='minutes'")
    lr: float = Field(3e-3, gt=0, description="peak learning rate; small models tolerate a high one (nanoGPT's char model uses 1e-3 at 10M)")
    schedule: Literal["cosine", "linear"] = Field(
        "cosine", description="decay after warm-up, down to lr * min_lr_ratio at the end (decay_by); linear to zero measured level with cosine "
        "to 0.1 (32.2% vs 31.6% after 1000 demo steps, docs/benchmarks.md)"
    )
    decay_by: Literal["steps", "minutes"] = Field(
        "steps", description="what the decay counts: 'steps' (up to max_steps; deterministic, so --resume reproduces a run exactly) or "
        "'minutes' (training time up to max_minutes, which it requires: the schedule ends with the time budget at whatever speed the "
        "CPU gives, max_steps only caps the run; losses then depend on timing)"
    )
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="the schedule decays to lr * this")
    warmup_steps: int = Field(50, ge=0, description="linear warm-up steps; Adam's moment estimates settle first")
    optimizer: Literal["adamw", "muon"] = Field(
        "muon", description="'muon': Muon on the blocks' hidden matrices, AdamW on the rest (r1kit.train.optim), the lever that paid most: "
        "68.2% vs 16.0% greedy accuracy after 1950 demo steps, ~10% dearer a step (docs/benchmarks.md); 'adamw' everywhere"
    )
    muon_lr: float | None = Field(None, gt=0, description="peak learning rate of the Muon group (optimizer 'muon'); None = lr. It follows the same schedule")
    weight_decay: float = Field(0.1, ge=0, description="decoupled decay on matrices only (not norms, biases)")
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1 (Muon's momentum is its own 0.95)")
    beta2: float = Field(0.95, ge=0, lt=1, description="AdamW beta2; 0.95 (not 0.999) reacts faster, as in GPT-3 / Llama training")
    grad_clip: float = Field(1.0, gt=0, description="max global gradient norm")
    prompt_loss_weight: float = Field(0.0, ge=0, le=1, description="weight of the question's tokens in the loss (0 = response only)")
    dtype: Literal["fp32", "bf16"] = Field("fp32", description="bf16 autocast for GPUs; on a CPU without bf16 units fp32 is ~13x faster")
    seed: int = Field(0, description="one seed for initialisation, batch order and layer drop")
    log_every: int = Field(10, ge=1, description="steps between metric lines")
    eval_every: int = Field(0, ge=0, description="steps between evaluations; 0 = only at the end")
    eval_n: int = Field(200, ge=1, description="held-out problems per evaluation")
    eval_batch_size: int = Field(64, ge=1, description="prompts decoded together in evaluation")
    max_new_tokens: int = Field(128, ge=1, description="generation budget per problem in evaluation")
    save_every: int = Field(500, ge=1, description="steps between last/ checkpoints")
    snapshot_minutes: list[float] = Field(
        [], description="training minutes at which to keep the weights in out_dir/minutes_<m>/ (accuracy-vs-minutes curves from one run)"
    )

    @model_validator(mode="after")
    def _check(self) -> "SFTConfig":
        if self.decay_by == "minutes" and self.max_minutes is None:
            raise ValueError("decay_by='minutes' needs max_minutes (the budget the schedule decays over)")
        if self.muon_lr is not None and self.optimizer != "muon":
            raise ValueError(f"muon_lr is the Muon group's rate; optimizer={self.optimizer!r} has no Muon group (drop muon_lr or use 'muon')")
        return self


def load_run_config(path: str | None, overrides: list[str]) -> tuple[ModelConfig, SFTConfig]:
    """The `model:` and `sft:` sections of a config file, with `model.x=..` / `sft.y=..` overrides."""
    data = config_mod.read_file(path) if path else {}
    unknown = set(data) - {"model", "sft"}
    if unknown:
        raise config_mod.ConfigError(f"unknown section(s) {sorted(unknown)} in {path}; allowed: model, sft")
    bad = [o for o in overrides if not o.startswith(("model.", "sft."))]
    if bad:
        raise config_mod.ConfigError(f"overrides must name their section (model.dim=128, sft.lr=1e-3): {bad}")
    data = config_mod.apply_overrides(data, overrides)
    model_cfg = config_mod.model_config_from(data.get("model") or {}, section="model")
    return model_cfg, config_mod.build(SFTConfig, data.get("sft") or {}, "sft")


# ----------------------------------------------------------------------------- data


def reasoning_text(example: Example) -> str:
    return "\n".join(example.steps)


def encode_examples(tok: Tokenizer, examples: list[Example], max_len: int) -> tuple[list[tuple[list[int], int]], int]:
    """(ids, n_prompt) per example; examples over max_len tokens are dropped and counted."""
    encoded, dropped = [], 0
    for ex in examples:
        enc = tok.encode_example(ex.question, reasoning_text(ex), ex.answer)
        if len(enc.ids) > max_len:
            dropped += 1
        else:
            encoded.append((enc.ids, enc.n_prompt))
    return encoded, dropped


def batch_indices(lengths: list[int], batch_size: int, micro_step: int, seed: int, window: int = 1) -> list[int]:
    """Examples of one micro-batch: a pure function of the global micro-step, so resuming needs no
    data-loader state. Each epoch is a fresh seeded permutation. With window > 1, the examples of
    `window` consecutive micro-batches are sorted by length and regrouped (in a seeded order), so
    short and long examples pad less; every example is still seen once per epoch."""
    group, slot = divmod(micro_step, window)
    pool = []
    start = group * window * batch_size
    for k in range(start, start + window * batch_size):
        epoch, pos = divmod(k, len(lengths))
        pool.append(_permutation(len(lengths), seed, epoch)[pos])
    if window > 1:
        pool.sort(key=lambda i: lengths[i])
        order = list(range(window))
        random.Random(f"{seed}:{group}").shuffle(order)
        slot = order[slot]
    return pool[slot * batch_size : (slot + 1) * batch_size]


_PERM_CACHE: dict[tuple[int, int, int], list[int]] = {}


def _permutation(n: int, seed: int, epoch: int) -> list[int]:
    key = (n, seed, epoch)
    if key not in _PERM_CACHE:
        _PERM_CACHE.clear()  # one epoch at a time is enough
        order = list(range(n))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        _PERM_CACHE[key] = order
    return _PERM_CACHE[key]


def make_batch(encoded: list[tuple[list[int], int]], indices: list[int], pad_id: int, prompt_weight: float):
    """Right-padded inputs, targets and per-target loss weights ([B, T-1] each)."""
    longest = max(len(encoded[i][0]) for i in indices)
    ids = torch.full((len(indices), longest), pad_id, dtype=torch.long)
    weights = torch.zeros(len(indices), longest)
    for r, i in enumerate(indices):
        seq, n_prompt = encoded[i]
        ids[r, : len(seq)] = torch.tensor(seq)
        weights[r, :n_prompt] = prompt_weight
        weights[r, n_prompt : len(seq)] = 1.0
    # target t+1 is predicted at t; the first token (BOS) is never a target
    return ids[:, :-1], ids[:, 1:], weights[:, 1:]


# ----------------------------------------------------------------------------- optimisation


def make_optimizer(model: Transformer, cfg: SFTConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return adamw(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    return muon_adamw(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), muon_lr=cfg.muon_lr)


def adamw(model: Transformer, lr: float, weight_decay: float, betas: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not norms, biases, gate biases)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def lr_at(step: int, cfg: SFTConfig, train_seconds: float = 0.0) -> float:
    """Linear warm-up to cfg.lr, then cosine or linear decay down to lr * min_lr_ratio: at max_steps,
    or (decay_by='minutes') when `train_seconds` reaches max_minutes."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.decay_by == "minutes":
        progress = min(1.0, train_seconds / (60 * cfg.max_minutes))
    else:
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    floor = cfg.lr * cfg.min_lr_ratio
    remaining = 1 - progress if cfg.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
    return floor + (cfg.lr - floor) * remaining


def weighted_ce_sum(model: Transformer, inputs, targets, weights) -> torch.Tensor:
    """Sum over tokens of weight x cross-entropy. Logits only where the weight is > 0: no head or
    softmax work on the prompt (weight 0 by default) and the padding."""
    scored_BT = weights > 0
    ce_N = F.cross_entropy(model(inputs, logits_at_BT=scored_BT).float(), targets[scored_BT], reduction="none")
    return (ce_N * weights[scored_BT]).sum()


def weighted_loss(model: Transformer, inputs, targets, weights, dtype: str) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        loss = weighted_ce_sum(model, inputs, targets, weights) / weights.sum().clamp_min(1e-9)
    aux = model.aux_loss()
    return loss if aux is None else loss + aux


# ----------------------------------------------------------------------------- trainer state


def save_trainer_state(directory: Path, optimizer: torch.optim.Optimizer, step: int) -> None:
    directory.mkdir()
    state = optimizer.state_dict()
    tensors = {"torch_rng": torch.get_rng_state()}
    scalars: dict[str, dict] = {}
    for idx, per_param in state["state"].items():
        for name, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{idx}.{name}"] = value.contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    save_file(tensors, str(directory / "state.safetensors"))
    meta = {"step": step, "param_groups": state["param_groups"], "scalars": scalars}
    (directory / "state.json").write_text(json.dumps(meta))


def load_trainer_state(directory: Path, optimizer: torch.optim.Optimizer) -> int:
    meta = json.loads((directory / "state.json").read_text())
    tensors = load_file(str(directory / "state.safetensors"))
    per_param: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, idx, name = key.split(".", 2)
            per_param.setdefault(int(idx), {})[name] = value
    for idx, values in meta["scalars"].items():
        per_param.setdefault(int(idx), {}).update(values)
    optimizer.load_state_dict({"state": per_param, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["torch_rng"])
    return meta["step"]


# ----------------------------------------------------------------------------- the loop


def model_for_tokenizer(model_cfg: ModelConfig, tok: Tokenizer) -> Transformer:
    """A fresh model sized to the tokenizer's vocabulary, with its symbol flags."""
    model = Transformer(model_cfg.model_copy(update={"vocab_size": tok.vocab_size}))
    model.set_symbol_flags(torch.tensor(tok.symbol_flags()))
    return model


def train_sft(
    model_cfg: ModelConfig, cfg: SFTConfig, resume: bool = False, progress: bool = True, stop_at: int | None = None
) -> Path:
    """Run SFT; returns the final checkpoint directory. `stop_at` ends the run after that step as
    an interruption would (last/ written, no final/): tests use it to check --resume."""
    out = Path(cfg.out_dir)
    last, final, metrics_path = out / "last", out / "final", out / "metrics.jsonl"
    torch.manual_seed(cfg.seed)

    train_examples, _ = load_examples(cfg.train_data)
    eval_examples = load_examples(cfg.eval_data)[0][: cfg.eval_n] if cfg.eval_data else []

    if resume:
        if not (last / "trainer_state").is_dir():
            raise FileNotFoundError(f"--resume: no {last}/trainer_state to resume from")
        tok = Tokenizer.load(last)
        model = load_pretrained(last)
    else:
        if cfg.tokenizer:
            tok = Tokenizer.load(cfg.tokenizer)
        else:
            tok = Tokenizer.train(training_corpus(train_examples), vocab_size=cfg.vocab_size)
        model = model_for_tokenizer(model_cfg, tok)
    encoded, dropped = encode_examples(tok, train_examples, cfg.max_len)
    if not encoded:
        raise ValueError(f"no training example fits in max_len={cfg.max_len} tokens ({dropped} dropped)")

    lengths = [len(ids) for ids, _ in encoded]
    optimizer = make_optimizer(model, cfg)
    step = 0
    train_time = 0.0  # seconds of training so far (evaluation excluded)
    longest_step = 0.0  # seconds: what the max_minutes budget reserves for the next step
    if resume:
        step = load_trainer_state(last / "trainer_state", optimizer)
        truncate_metrics(metrics_path, step)
        train_time = resumed_train_time(metrics_path)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        metrics_path.write_text("")
        log_metrics(metrics_path, {"event": "start", "examples": len(encoded), "dropped_too_long": dropped,
                            "params": model.num_params(), "active_params": model.num_params(active=True),
                            "vocab_size": tok.vocab_size, "model": model.config.model_dump(), "sft": cfg.model_dump()})

    def save(directory: Path, with_state: bool) -> None:
        def extra(d: Path) -> None:
            tok.save(d)
            if with_state:
                save_trainer_state(d / "trainer_state", optimizer, step)

        save_pretrained(model, directory, extra=extra)

    snapshots = {m: out / f"minutes_{m:g}" for m in sorted(cfg.snapshot_minutes)}
    snapshots = {m: d for m, d in snapshots.items() if not d.exists()}  # a resumed run keeps earlier ones
    bar = progress_bar(cfg.max_steps if cfg.decay_by == "steps" else None, step, progress, "sft")
    window_loss, window_tokens, window_time = 0.0, 0, 0.0
    model.train()
    while step < cfg.max_steps:
        t0 = time.perf_counter()
        lr = lr_at(step, cfg, train_time)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        step_loss = 0.0
        for micro in range(cfg.grad_accum):
            idx = batch_indices(lengths, cfg.batch_size, step * cfg.grad_accum + micro, cfg.seed, cfg.length_window)
            inputs, targets, weights = make_batch(encoded, idx, tok.pad_id, cfg.prompt_loss_weight)
            loss = weighted_loss(model, inputs, targets, weights, cfg.dtype)
            (loss / cfg.grad_accum).backward()
            step_loss += loss.item() / cfg.grad_accum
            window_tokens += int((targets != tok.pad_id).sum())
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.update_balancing()
        step += 1
        elapsed = time.perf_counter() - t0
        train_time += elapsed
        longest_step = max(longest_step, elapsed)
        window_time += elapsed
        window_loss += step_loss
        for minutes in [m for m in snapshots if train_time >= m * 60]:
            save(snapshots.pop(minutes), with_state=False)
            log_metrics(metrics_path, {"event": "snapshot", "step": step, "minutes": minutes, "train_minutes": train_time / 60})

        if step % cfg.log_every == 0 or step == cfg.max_steps:
            n = (step - 1) % cfg.log_every + 1
            record = {"step": step, "loss": window_loss / n, "lr": lr, "grad_norm": float(grad_norm),
                      "tokens_per_s": window_tokens / window_time, "train_minutes": train_time / 60,
                      **routing_summary(model)}
            log_metrics(metrics_path, record)
            bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:.0f}",
                            util=f"{record.get('utilisation', float('nan')):.2f}")
            window_loss, window_tokens, window_time = 0.0, 0, 0.0
        bar.update(1)
        after = after_step(step, cfg, train_time, stop_at, evaluate=eval_examples and (
            lambda: _evaluate_and_log(model, tok, eval_examples, cfg, step, train_time, metrics_path)),
            save_last=lambda: save(last, with_state=True), step_seconds=longest_step)
        if after == "interrupted":
            bar.close()
            return last
        if after == "out_of_time":
            break
    bar.close()
    save(last, with_state=True)
    save(final, with_state=False)
    if eval_examples:
        _evaluate_and_log(model, tok, eval_examples, cfg, step, train_time, metrics_path)
    return final


@torch.no_grad()
def heldout_loss(model: Transformer, tok: Tokenizer, examples: list[Example], batch_size: int) -> float:
    """Mean response-token cross-entropy on held-out examples (teacher forcing): a smoother
    signal than greedy accuracy early in training."""
    model.eval()
    encoded, _ = encode_examples(tok, examples, max_len=model.config.max_seq_len)
    total, count = 0.0, 0.0
    for start in range(0, len(encoded), batch_size):
        inputs, targets, weights = make_batch(encoded, list(range(start, min(start + batch_size, len(encoded)))), tok.pad_id, 0.0)
        total += float(weighted_ce_sum(model, inputs, targets, weights))
        count += float(weights.sum())
    return total / max(count, 1.0)


def _evaluate_and_log(model, tok, examples, cfg: SFTConfig, step: int, train_time: float, path: Path) -> None:
    loss = heldout_loss(model, tok, examples, cfg.eval_batch_size)
    result = evaluate(model, tok, examples, batch_size=cfg.eval_batch_size, max_new_tokens=cfg.max_new_tokens)
    model.train()
    summary = {"loss": loss, **result.summary()}
    log_metrics(path, {"step": step, "train_minutes": train_time / 60, **{f"eval_{k}": v for k, v in summary.items()}})


def training_corpus(examples: list[Example]):
    """The texts a tokenizer is trained on: questions and responses as the model will see them."""
    for ex in examples:
        yield ex.question
        yield format_completion(reasoning_text(ex), ex.answer)


# ----------------------------------------------------------------------------- shared with grpo.py


def after_step(step: int, cfg, train_time: float, stop_at: int | None, evaluate, save_last,
               step_seconds: float = 0.0) -> str:
    """A trainer's bookkeeping after optimiser step `step` (cfg has eval_every, save_every,
    max_steps, max_minutes): periodic evaluation (`evaluate`, falsy = none) and last/ checkpoint
    (`save_last`). Returns "continue", "out_of_time" (the caller ends the run as if at max_steps)
    or "interrupted" (stop_at reached: last/ is written, nothing else).

    max_minutes is a budget, not a deadline to overrun: the run is out of time when another step as
    long as the longest so far (`step_seconds`) would take it past max_minutes, so an RL run of
    5-second steps asked for 8 minutes trains up to 8 minutes, not 8 plus a step."""
    out_of_time = cfg.max_minutes is not None and train_time + step_seconds > cfg.max_minutes * 60
    if evaluate and cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.max_steps and not out_of_time:
        evaluate()
    if step % cfg.save_every == 0 and step < cfg.max_steps:
        save_last()
    if out_of_time:
        return "out_of_time"
    if stop_at is not None and step >= stop_at:
        save_last()
        return "interrupted"
    return "continue"


def routing_summary(model: Transformer) -> dict:
    """Mean expert utilisation and worst MaxVio over MoE layers, last forward ({} without MoE)."""
    routing = model.routing_stats()
    if not routing:
        return {}
    return {"utilisation": sum(r["utilisation"] for r in routing) / len(routing),
            "max_vio": max(r["max_vio"] for r in routing)}


def log_metrics(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def resumed_train_time(path: Path) -> float:
    """Training seconds already spent by the run whose (truncated) metrics are at `path`, so that
    max_minutes and snapshots count from the start of the run, not of the resumed process."""
    return 60 * max((r.get("train_minutes", 0.0) for r in read_metrics(path)), default=0.0)


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop metric lines written after the checkpoint being resumed."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if json.loads(line).get("step", 0) <= step]
    write_text(path, "".join(line + "\n" for line in keep))  # atomic: a crash here keeps the old log


def progress_bar(total: int | None, initial: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, dynamic_ncols=True)
