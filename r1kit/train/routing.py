"""`r1kit update-routing CKPT --data NEW.jsonl --out CKPT2`: refresh a checkpoint's routing state on
new data without gradient training, optionally fine-tune the routers alone, and report balance (and
accuracy) before and after (S1's knob, issue 24; the article: "refresh the routing table weekly").

  refresh       forwards over the new problems (prompt and reasoning trace, teacher-forced: what SFT
                and generation run), no gradient; after each batch every MoE layer applies that
                batch's counts as after a training step (`update_balancing`): the load EMA in every
                mode (load_penalty routes by it; expert_activation ranks experts by it) and the bias
                nudge in bias mode. `refresh_steps` batches: the EMA forgets the old data within
                ~5 / load_momentum of them; a bias moves at most bias_gamma a batch. The state kept
                is the mean over the second half of the batches (Polyak averaging), not the last
                one: the bias's sign update ends each batch on one side of balance or the other
                (measured on the tiny model: utilisation alternated 0.93 / 0.97 batch by batch, so
                the last state depended on the parity of the count), and a load EMA that herds
                tokens (routers weaker than alpha x load) swings as well. In modes none and
                aux_loss routing reads neither, so only --router-steps changes where tokens go.
  router_steps  optional, any mode: AdamW on the routers (each layer's expert embeddings) alone, every
                other parameter frozen, SFT's loss on the new data's traces (weighted_loss: response
                tokens, plus the balance loss in aux_loss mode), the balancing state updated after
                each step as SFT does; the refresh then runs on the final router.
Nothing else changes: experts, attention, embeddings and norms are written back bit for bit. The new
checkpoint is written atomically beside the tokenizer (and any other file of CKPT but its resume
state), with `update_routing.json`, this report; an existing --out is refused unless overwrite.

Balance is measured per MoE layer on the new data (pads excluded) with `balance_metrics`:
utilisation (1 = even) and MaxVio (0 = even).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from r1kit.data.schema import Example, load_examples
from r1kit.data.tokenizer import Tokenizer
from r1kit.device import resolve_device
from r1kit.evaluate import evaluate
from r1kit.inference.experts import activate_experts, count_expert_use
from r1kit.interop.checkpoint import (CONFIG_FILE, WEIGHTS_FILE, CheckpointError, is_r1kit_checkpoint, load_pretrained,
                                     save_pretrained)
from r1kit.model.moe import balance_metrics
from r1kit.model.transformer import Transformer
from r1kit.train.loop import batch_indices
from r1kit.train.sft import encode_examples, make_batch, weighted_loss

REPORT_FILE = "update_routing.json"
ROUTER_SUFFIX = "expert_embed_EC"  # the router's parameter in every MoE layer: s = x @ e.T
ROUTING_STATE = ("load_E", "expert_bias_E")  # the buffers the refresh updates


@dataclass
class RoutingUpdate:
    """update-routing's knobs, each default with its reason."""

    n: int = 2000  # first problems of --data used: ~10^5 routed tokens, plenty for per-expert shares
    refresh_steps: int = 100  # batches of the refresh: the load EMA (momentum 0.1) forgets the old data in ~50
    router_steps: int = 0  # router-only optimiser steps; 0 keeps every parameter as it is
    router_lr: float = 1e-3  # AdamW on the routers alone: a third of SFT's rate, a nudge, not retraining
    batch_size: int = 32  # sequences per batch, SFT's
    seed: int = 0  # batch order (same seed, same checkpoint)
    eval_n: int = 200  # test problems per set for the accuracy before and after
    max_new_tokens: int = 128  # evaluation's, as `r1kit eval`


def example_sequences(tok: Tokenizer, examples: list[Example], max_len: int) -> list[list[int]]:
    """Each problem's prompt and reasoning trace as SFT encodes it (those over max_len left out)."""
    return [ids for ids, _n_prompt in encode_examples(tok, examples, max_len)[0]]


def balance_per_layer(model: Transformer, sequences: Sequence[Sequence[int]], batch_size: int = 32) -> list[dict]:
    """utilisation and max_vio per MoE layer on `sequences`, routing state frozen."""
    return [balance_metrics(c.cpu()) for c in count_expert_use(model, sequences, batch_size)]


def _batches(lengths: list[int], batch_size: int, steps: int, seed: int):
    """`steps` batches of indices, as SFT draws them (seeded passes over the items)."""
    return (batch_indices(lengths, batch_size, step, seed) for step in range(steps))


@torch.no_grad()
def refresh_routing_state(model: Transformer, sequences: Sequence[Sequence[int]], steps: int, batch_size: int,
                          seed: int = 0) -> None:
    """The no-gradient refresh (module docstring): each batch's counts applied as a training step's;
    the state kept is the mean of the states after each batch of the second half."""
    if steps < 1:
        raise ValueError(f"a routing refresh needs at least one batch, got refresh_steps={steps}")
    state_names = [k for k in model.state_dict() if k.endswith(ROUTING_STATE)]
    sums, averaged = {}, 0
    for step, batch in enumerate(_batches([len(q) for q in sequences], batch_size, steps, seed)):
        model.update_balancing(count_expert_use(model, [sequences[i] for i in batch], batch_size))
        if step >= steps // 2:
            state = model.state_dict()
            sums = {k: sums.get(k, 0) + state[k].double() for k in state_names}
            averaged += 1
    current = model.state_dict()
    model.load_state_dict({k: (total / averaged).to(current[k].dtype) for k, total in sums.items()}, strict=False)


def router_parameters(model: Transformer) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if name.endswith(ROUTER_SUFFIX)}


def train_router(model: Transformer, encoded: list[tuple[list[int], int]], pad_id: int, steps: int, lr: float,
                 batch_size: int, seed: int = 0) -> list[float]:
    """Router-only fine-tune (module docstring); returns the loss of each step."""
    router = list(router_parameters(model).values())
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for p in router:
        p.requires_grad_(True)
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(router, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)  # SFT's betas; no decay pulling routers to 0
    losses = []
    model.train()
    try:
        for batch in _batches([len(ids) for ids, _ in encoded], batch_size, steps, seed):
            inputs, targets, weights = (t.to(device) for t in make_batch(encoded, batch, pad_id, 0.0))
            loss = weighted_loss(model, inputs, targets, weights)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(router, 1.0)  # SFT's clip
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            model.update_balancing()
            losses.append(loss.item())
    finally:
        model.eval()
        for p, flag in flags.items():
            p.requires_grad_(flag)
    return losses


def activate_on_data(model: Transformer, tok: Tokenizer, fraction: float | None, calibration: str | None) -> dict:
    """expert_activation for `r1kit eval`: the most used experts on the problems of `calibration`
    (a JSONL file) when given, else by the model's routing statistics; prints and returns what it did."""
    if fraction is None:
        raise ValueError("--expert-calibration chooses the experts --expert-activation keeps: give both")
    sequences = None
    if calibration is not None:
        sequences = example_sequences(tok, load_examples(calibration).examples, model.config.max_seq_len)
        if not sequences:
            raise ValueError(f"--expert-calibration {calibration}: no problem fits the model's context of {model.config.max_seq_len} tokens")
    report = activate_experts(model, fraction, sequences)
    print(report.describe())
    return report.to_dict()


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that the final write would clobber or refuse, before any work."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not overwrite:
        raise ValueError(f"--out {out} already exists; choose another directory, or pass --overwrite to replace it "
                         "(only a checkpoint r1kit wrote is ever replaced)")
    if not is_r1kit_checkpoint(out):
        raise CheckpointError(f"refusing to write over {out}: it is not empty and not a checkpoint r1kit wrote; "
                              "choose another directory, or move it away yourself")


def _accuracy(model: Transformer, tok: Tokenizer, examples: list[Example], opts: RoutingUpdate) -> float:
    return evaluate(model, tok, examples, batch_size=64, max_new_tokens=opts.max_new_tokens).summary()["accuracy"]


def update_routing(checkpoint: str | Path, data: str | Path, out: str | Path, opts: RoutingUpdate | None = None,
                   old_test: str | Path | None = None, new_test: str | Path | None = None, device: str = "cpu",
                   overwrite: bool = False, log: Callable[[str], None] = print) -> dict:
    """Refresh CHECKPOINT's routing on DATA (and fine-tune its routers if opts.router_steps), write
    the result to OUT, print balance per layer (and accuracy on the test sets given) before and
    after; returns the report written beside it."""
    opts = opts or RoutingUpdate()
    checkpoint, out = Path(checkpoint), Path(out)
    _check_out(out, overwrite)  # before any work: a refused --out costs nothing
    for flag, path in (("--data", data), ("--old-test", old_test), ("--new-test", new_test)):
        if path is not None and not Path(path).is_file():
            raise ValueError(f"{flag} {path}: no such file")
    model = load_pretrained(checkpoint, device=resolve_device(device)).eval()
    tok = Tokenizer.load(checkpoint)
    layers = model.moe_layers()
    if not layers:
        raise ValueError(f"{checkpoint} has no MoE layers: there is no routing to update")
    examples = load_examples(data).examples[: opts.n]
    encoded, dropped = encode_examples(tok, examples, model.config.max_seq_len)
    if not encoded:
        raise ValueError(f"--data {data}: no problem fits the model's context of {model.config.max_seq_len} tokens")
    sequences = [ids for ids, _ in encoded]
    tests = {name: (str(path), load_examples(path).examples[: opts.eval_n])
             for name, path in (("old", old_test), ("new", new_test)) if path}
    torch.manual_seed(opts.seed)

    balancing = layers[0].balancing
    log(f"update-routing {checkpoint} on {len(sequences)} problems of {data} ({dropped} too long); balancing={balancing}")
    if balancing in ("none", "aux_loss"):
        log(f"  balancing={balancing} routes by no load or bias: the refresh updates the load statistics only "
            "(expert_activation's ranking); --router-steps changes routing")
    before = balance_per_layer(model, sequences, opts.batch_size)
    accuracy = {name: {"data": path, "n": len(ex), "before": _accuracy(model, tok, ex, opts)} for name, (path, ex) in tests.items()}
    losses = []
    if opts.router_steps:
        losses = train_router(model, encoded, tok.pad_id, opts.router_steps, opts.router_lr, opts.batch_size, opts.seed)
        log(f"  router fine-tune: {opts.router_steps} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    refresh_routing_state(model, sequences, opts.refresh_steps, opts.batch_size, opts.seed)
    after = balance_per_layer(model, sequences, opts.batch_size)
    for name, (_path, ex) in tests.items():
        accuracy[name]["after"] = _accuracy(model, tok, ex, opts)

    log("  layer  utilisation (before -> after)  MaxVio (before -> after)")
    for i, (b, a) in enumerate(zip(before, after)):
        log(f"  {i:>5}  {b['utilisation']:.3f} -> {a['utilisation']:.3f}{'':>16}{b['max_vio']:.3f} -> {a['max_vio']:.3f}")
    for name, acc in accuracy.items():
        log(f"  accuracy on the {name} test set ({acc['n']} problems): {acc['before']:.1%} -> {acc['after']:.1%}")

    report = {
        "checkpoint": str(checkpoint), "data": str(data), "problems": len(sequences), "balancing": balancing,
        "options": asdict(opts), "router_losses": losses,
        "layers": [{"utilisation_before": b["utilisation"], "utilisation_after": a["utilisation"],
                    "max_vio_before": b["max_vio"], "max_vio_after": a["max_vio"]} for b, a in zip(before, after)],
        "accuracy": accuracy,
    }

    def extra(tmp: Path) -> None:
        # the tokenizer and whatever else CHECKPOINT carries, but not its trainer's resume state
        for item in checkpoint.iterdir():
            if item.name in (CONFIG_FILE, WEIGHTS_FILE, REPORT_FILE, "trainer_state") or item.name.startswith("."):
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")

    save_pretrained(model, out, extra=extra)
    log(f"wrote {out}")
    return report
