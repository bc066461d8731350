"""Supervised fine-tuning (S10): teach a small model to reason step by step, readable top to bottom.

    r1kit train sft --config configs/demo.yaml [sft.max_steps=2000 model.dim=192 ...]

What one run does:
  1. reads the training and evaluation JSONL files (synthetic schema or GSM8K, r1kit.data.schema);
  2. trains a byte-level BPE tokenizer on the training text (or loads `sft.tokenizer`);
  3. builds the model from the `model:` section, its vocabulary size taken from the tokenizer and
     its symbol flags from the tokenizer's vocabulary (or, with `sft.init`, continues from a
     checkpoint's weights and tokenizer: RL's equal-minutes baseline);
  4. trains with Muon on the hidden matrices and AdamW on the rest (r1kit.train.optim; or AdamW alone),
     linear warm-up then cosine (or linear) decay over max_steps or, with `decay_by: minutes`, over
     the max_minutes budget; gradient clipping and accumulation, on
     right-padded batches; the loss is the mean cross-entropy over response tokens (the question's
     tokens count with weight `prompt_loss_weight`, 0 by default); with `early_exit_layers`, plus
     an early exit's loss (LayerSkip), which trains the engine's fast path;
  5. after each optimiser step applies the MoE balancing updates (layer drop happens in the
     model's training forward) and, with `sft.average`, updates a running average of the weights
     that final/ then holds in place of the last step's (r1kit.train.averaging; last/ keeps the
     trained weights, and the average travels in its trainer state for --resume);
  6. hands the rest to the shared loop (r1kit.train.loop): device and dtype, JSONL metrics, greedy
     evaluation on held-out problems every `eval_every` steps, `last/` (with trainer state, for
     --resume) every `save_every` steps and `final/` at the end, atomically, and the stop rules.

Determinism: the batch order is a pure function of (seed, step), and the trainer state holds
the optimiser's tensors and torch's RNG state, so `--resume` reproduces the uninterrupted run's
losses exactly (a test checks it) when the schedule counts steps; one that counts minutes depends
on the steps' timing. Nothing is pickled: tensors go to safetensors, the rest to JSON.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from r1kit import config as config_mod
from r1kit.config import ModelConfig
from r1kit.data.schema import Example, load_examples
from r1kit.data.tokenizer import Tokenizer
from r1kit.device import DtypeName, resolve_device
from r1kit.evaluate import evaluate
from r1kit.format import format_completion
from r1kit.interop.checkpoint import load_config, load_pretrained, save_pretrained
from r1kit.model.transformer import Transformer
from r1kit.train.averaging import WeightAverages, average_dir_name, parse_average
from r1kit.train.loop import RunConfig, TrainingLoop, batch_indices, check_same_settings
from r1kit.train.optim import adamw, muon_adamw, ns_dtype


# the reasoning SFT writes after the question (SFTConfig.trace says what each is)
Trace = Literal["steps", "operands_first"]


class SFTConfig(RunConfig):
    """SFT's own fields; the run-level ones (data, out_dir, budgets, logging, saving, evaluation,
    device, dtype) are RunConfig's (r1kit.train.loop)."""

    init: str | None = Field(None, description="start from this checkpoint's weights and tokenizer (continued SFT, RL's equal-minutes baseline); None = a fresh model. The model: section must then be absent")
    tokenizer: str | None = Field(None, description="directory holding tokenizer.json; None = train a BPE on the training text")
    vocab_size: int = Field(1024, ge=64, description="BPE size when training a tokenizer; on toy maths ~500 makes names and items single tokens, 1024 also common phrases: prompts 58 -> 44 tokens, 20% more SFT steps a minute, 10.0% vs 5.8% at 10 minutes, same at 20 (docs/benchmarks.md)")
    max_len: int = Field(256, ge=16, description="examples longer than this many tokens are dropped (and counted)")
    batch_size: int = Field(32, ge=1, description="sequences per micro-batch")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimiser step")
    length_window: int = Field(8, ge=1, description="micro-batches whose examples are grouped by length (1 = plain shuffle); less padding, same epoch")
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
    muon_ns_dtype: DtypeName = Field(
        "auto", description="precision of Muon's Newton-Schulz iterations; 'auto': bf16 where the hardware multiplies it natively "
        "(as the reference Muon; ~5% more SFT steps a minute here, but a little worse per step on two seeds: about even at equal "
        "minutes), fp32 elsewhere (r1kit.train.optim.ns_dtype; docs/benchmarks.md, \"Faster steps\")")
    weight_decay: float = Field(0.1, ge=0, description="decoupled decay on matrices only (not norms, biases)")
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1 (Muon's momentum is its own 0.95)")
    beta2: float = Field(0.95, ge=0, lt=1, description="AdamW beta2; 0.95 (not 0.999) reacts faster, as in GPT-3 / Llama training")
    grad_clip: float = Field(1.0, gt=0, description="max global gradient norm")
    prompt_loss_weight: float = Field(0.0, ge=0, le=1, description="weight of the question's tokens in the loss (0 = response only)")
    trace: Trace = Field(
        "steps", description="the reasoning SFT teaches: 'steps', one `a op b = c` a line; 'operands_first', a first line naming the "
        "numbers the steps take from the text, in the order they use them, then the steps (reading apart from computing)")
    early_exit_layers: list[int] = Field(
        default_factory=list, description="also train the early exits after these many blocks (the engine's fast path; r1kit calibrate "
        "picks one), one exit per step in turn as LayerSkip rotates them, each step's exit loss added with early_exit_weight; [] = off")
    early_exit_weight: float = Field(0.5, ge=0, description="weight of the early exit's cross-entropy beside the full graph's (LayerSkip scales its exits below 1)")
    average: str | None = Field(
        None, description="final/ holds this running average of the weights instead of the last step's: 'ema:D' (decay D a "
        "step), 'power:G' (an EMA over about 1 / (G + 1) of the steps so far) or 'tail:F' (the uniform mean from a fraction F of "
        "the budget on; r1kit.train.averaging); last/ keeps the trained "
        "weights, and evaluations during the run see those. None = the last step's")
    weight_averages: list[str] = Field(
        default_factory=list, description="more running averages, each saved at the end beside final/ as out_dir/average_<kind>_<value>/, "
        "to compare several on one trajectory")

    @model_validator(mode="after")
    def _check(self) -> "SFTConfig":
        if self.decay_by == "minutes" and self.max_minutes is None:
            raise ValueError("decay_by='minutes' needs max_minutes (the budget the schedule decays over)")
        if self.init is not None and self.tokenizer is not None:
            raise ValueError("init brings its checkpoint's tokenizer; drop tokenizer")
        specs = ([self.average] if self.average else []) + self.weight_averages
        for spec in specs:
            parse_average(spec)
        if len(set(specs)) < len(specs):
            raise ValueError(f"sft.average and sft.weight_averages name an average twice: {specs}")
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
    sft_cfg = config_mod.build(SFTConfig, data.get("sft") or {}, "sft")
    if sft_cfg.init is not None:  # continued SFT: the model is the checkpoint's
        if data.get("model"):
            raise config_mod.ConfigError(f"sft.init={sft_cfg.init} brings its own model; remove the model: section and model.* overrides")
        return load_config(sft_cfg.init), sft_cfg
    return config_mod.model_config_from(data.get("model") or {}, section="model"), sft_cfg


# ----------------------------------------------------------------------------- data


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def reasoning_text(example: Example, trace: Trace = "steps") -> str:
    """The trace SFT teaches: the steps, one per line. (A trace quoting the sentences each step reads,
    meta["reading"], was measured and bought nothing at 20 minutes: docs/benchmarks.md.) With
    trace='operands_first', a first line names the operands no earlier step computed, in the order
    the steps use them ("Given: 4, 70, 9, 96"): what is read from the text, before what is computed."""
    if trace == "steps" or not example.steps:
        return "\n".join(example.steps)
    computed, read = set(), []
    for step in example.steps:
        expression, _, value = step.rpartition("=")
        read += [n for n in _NUMBER.findall(expression) if n not in computed]
        computed.add(value.strip())
    return "\n".join([f"Given: {', '.join(read)}", *example.steps])


def encode_examples(tok: Tokenizer, examples: list[Example], max_len: int,
                    trace: Trace = "steps") -> tuple[list[tuple[list[int], int]], int]:
    """(ids, n_prompt) per example; examples over max_len tokens are dropped and counted."""
    encoded, dropped = [], 0
    for ex in examples:
        enc = tok.encode_example(ex.question, reasoning_text(ex, trace), ex.answer, ex.history)
        if len(enc.ids) > max_len:
            dropped += 1
        else:
            encoded.append((enc.ids, enc.n_prompt))
    return encoded, dropped


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


def sft_optimizer(model: Transformer, cfg: SFTConfig, device="cpu") -> tuple[torch.optim.Optimizer, dict]:
    """The optimiser, and what it chose from the hardware (for the run's start record)."""
    if cfg.optimizer == "adamw":
        return adamw(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2)), {}
    dtype, reason = ns_dtype(cfg.muon_ns_dtype, device)
    optimizer = muon_adamw(model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), muon_lr=cfg.muon_lr, ns_dtype=dtype)
    return optimizer, {"muon_ns_dtype": str(dtype).removeprefix("torch."), "muon_ns_dtype_reason": reason}


def decayed_lr(step: int, cfg: SFTConfig, train_seconds: float = 0.0) -> float:
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


def weighted_loss(model: Transformer, inputs, targets, weights, exit_after: int | None = None,
                  exit_weight: float = 0.0) -> torch.Tensor:
    """Mean weighted cross-entropy plus the MoE auxiliary loss, under the caller's autocast; with
    `exit_after`, plus exit_weight x the early exit's (the first exit_after blocks, then the head)."""
    scored_BT = weights > 0
    if exit_after is None:
        ce_sum = weighted_ce_sum(model, inputs, targets, weights)
    else:
        full_NV, exit_NV = model.forward_with_exit(inputs, exit_after, logits_at_BT=scored_BT)
        weights_N, targets_N = weights[scored_BT], targets[scored_BT]
        ce_sum = (F.cross_entropy(full_NV.float(), targets_N, reduction="none") * weights_N).sum()
        ce_sum = ce_sum + exit_weight * (F.cross_entropy(exit_NV.float(), targets_N, reduction="none") * weights_N).sum()
    loss = ce_sum / weights.sum().clamp_min(1e-9)
    aux = model.aux_loss()
    return loss if aux is None else loss + aux


# ----------------------------------------------------------------------------- the loop


def model_for_tokenizer(model_cfg: ModelConfig, tok: Tokenizer) -> Transformer:
    """A fresh model sized to the tokenizer's vocabulary, with its symbol flags."""
    model = Transformer(model_cfg.model_copy(update={"vocab_size": tok.vocab_size}))
    model.set_symbol_flags(torch.tensor(tok.symbol_flags()))
    return model


def train_sft(
    model_cfg: ModelConfig, cfg: SFTConfig, resume: bool = False, progress: bool = True, stop_at: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Run SFT; returns the final checkpoint directory. A new run needs an empty out_dir, or
    `overwrite` (r1kit.train.loop.start_fresh). `stop_at` ends the run after that step as an
    interruption would (last/ written, no final/): tests use it to check --resume."""
    last = Path(cfg.out_dir) / "last"
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)

    train_examples, _ = load_examples(cfg.train_data)
    eval_examples = load_examples(cfg.eval_data)[0][: cfg.eval_n] if cfg.eval_data else []

    if resume:
        if not (last / "trainer_state").is_dir():
            raise FileNotFoundError(f"--resume: no {last}/trainer_state to resume from")
        tok = Tokenizer.load(last)
        model = load_pretrained(last)
        saved = model.config.model_dump(exclude={"vocab_size"})  # the vocabulary comes from the tokenizer
        check_same_settings(saved, model_cfg.model_dump(exclude={"vocab_size"}), "model")
    elif cfg.init:
        tok = Tokenizer.load(cfg.init)
        model = load_pretrained(cfg.init)
    else:
        if cfg.tokenizer:
            tok = Tokenizer.load(cfg.tokenizer)
        else:
            tok = Tokenizer.train(training_corpus(train_examples, cfg.trace), vocab_size=cfg.vocab_size)
        model = model_for_tokenizer(model_cfg, tok)
    model.to(device)
    bad_exits = [k for k in cfg.early_exit_layers if not 1 <= k < model.config.n_layers]
    if bad_exits:
        raise ValueError(f"sft.early_exit_layers {bad_exits}: an early exit runs 1 .. {model.config.n_layers - 1} of the model's "
                         f"{model.config.n_layers} blocks")
    encoded, dropped = encode_examples(tok, train_examples, cfg.max_len, cfg.trace)
    if not encoded:
        raise ValueError(f"no training example fits in max_len={cfg.max_len} tokens ({dropped} dropped)")

    lengths = [len(ids) for ids, _ in encoded]
    optimizer, optimizer_choice = sft_optimizer(model, cfg, device)
    # the average final/ holds first, then the ones saved beside it; they travel in last/trainer_state
    averages = WeightAverages(model, ([cfg.average] if cfg.average else []) + cfg.weight_averages)
    final_average = averages.items[0] if cfg.average else None

    def save_snapshot_averages(snapshot: Path) -> dict:
        """Each weight average as it stands at a snapshot's minute, saved beside the snapshot: the
        kind of weights final/ holds, at that minute (mid-schedule: the learning rate not yet decayed)."""
        saved = {}
        for average in averages.items:
            if average.count:  # a tail average that has not started yet has nothing to save
                directory = snapshot.with_name(f"{snapshot.name}_{average_dir_name(average.spec)}")
                save_pretrained(average.averaged_copy(model), directory, tok.save)
                saved[average.spec] = directory.name
        return {"averages": saved} if saved else {}

    loop = TrainingLoop(cfg, "sft", model, optimizer, resume, save_extra=tok.save, overwrite=overwrite,
                        run_state=averages if averages else None, on_snapshot=save_snapshot_averages if averages else None,
                        before_final=(lambda: final_average.copy_to(model)) if final_average else None, start_record={
        "examples": len(encoded), "dropped_too_long": dropped, "params": model.num_params(),
        "active_params": model.num_params(active=True), "vocab_size": tok.vocab_size,
        "model": model.config.model_dump(), "sft": cfg.model_dump(), **optimizer_choice})

    def train_step(step: int, train_seconds: float) -> dict:
        lr = decayed_lr(step, cfg, train_seconds)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        step_loss, tokens = 0.0, 0
        exits = cfg.early_exit_layers
        exit_after = exits[step % len(exits)] if exits else None  # one exit per step, in turn
        for micro in range(cfg.grad_accum):
            idx = batch_indices(lengths, cfg.batch_size, step * cfg.grad_accum + micro, cfg.seed, cfg.length_window)
            inputs, targets, weights = (t.to(device) for t in make_batch(encoded, idx, tok.pad_id, cfg.prompt_loss_weight))
            with loop.autocast():
                loss = weighted_loss(model, inputs, targets, weights, exit_after, cfg.early_exit_weight)
            (loss / cfg.grad_accum).backward()
            step_loss += loss.item() / cfg.grad_accum
            tokens += int((targets != tok.pad_id).sum())
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.update_balancing()
        if averages:
            spent = train_seconds / (60 * cfg.max_minutes) if cfg.decay_by == "minutes" else (step + 1) / cfg.max_steps
            averages.update(model, min(1.0, spent))
        return {"loss": step_loss, "lr": lr, "grad_norm": float(grad_norm), "tokens": tokens}

    def log_line(records: list[dict], seconds: float) -> dict:
        return {"loss": sum(r["loss"] for r in records) / len(records), "lr": records[-1]["lr"],
                "grad_norm": records[-1]["grad_norm"], "tokens_per_s": sum(r["tokens"] for r in records) / seconds}

    def postfix(line: dict) -> dict:
        return dict(loss=f"{line['loss']:.3f}", tok_s=f"{line['tokens_per_s']:.0f}", util=f"{line.get('utilisation', float('nan')):.2f}")

    def evaluate_heldout() -> dict:
        loss = heldout_loss(model, tok, eval_examples, cfg.eval_batch_size, cfg.trace)
        result = evaluate(model, tok, eval_examples, batch_size=cfg.eval_batch_size, max_new_tokens=cfg.max_new_tokens)
        return {"loss": loss, **result.summary()}

    final = loop.run(train_step, log_line, postfix, evaluate=evaluate_heldout if eval_examples else None,
                     stop_at=stop_at, progress=progress)
    if final == loop.final:
        for average in averages.items:
            if average is not final_average:
                save_pretrained(average.averaged_copy(model), Path(cfg.out_dir) / average_dir_name(average.spec), tok.save)
            loop.log({"event": "average", "spec": average.spec, "steps_averaged": average.count,
                      "saved_in": "final" if average is final_average else average_dir_name(average.spec)})
    return final


@torch.no_grad()
def heldout_loss(model: Transformer, tok: Tokenizer, examples: list[Example], batch_size: int, trace: Trace = "steps") -> float:
    """Mean response-token cross-entropy on held-out examples (teacher forcing): a smoother
    signal than greedy accuracy early in training."""
    model.eval()
    device = next(model.parameters()).device
    encoded, _ = encode_examples(tok, examples, model.config.max_seq_len, trace)
    total, count = 0.0, 0.0
    for start in range(0, len(encoded), batch_size):
        batch = make_batch(encoded, list(range(start, min(start + batch_size, len(encoded)))), tok.pad_id, 0.0)
        inputs, targets, weights = (t.to(device) for t in batch)
        total += float(weighted_ce_sum(model, inputs, targets, weights))
        count += float(weights.sum())
    return total / max(count, 1.0)


def training_corpus(examples: list[Example], trace: Trace = "steps"):
    """The texts a tokenizer is trained on: questions and responses as the model will see them."""
    for ex in examples:
        yield ex.context
        yield format_completion(reasoning_text(ex, trace), ex.answer)
