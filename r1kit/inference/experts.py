"""expert_activation (S1's knob, issue 24): keep a fraction of each MoE layer's routed experts, the
most used, free the others' weights and route among the kept ones.

    report = activate_experts(model, 0.5)                       # by the model's routing statistics
    report = activate_experts(model, 0.5, calibration=seqs)     # by use on calibration token sequences

How many: round(fraction x n_experts), halves rounded up, never fewer than top_k (so 0.7 of 4 experts
keeps 3; any fraction of 4 experts with top-2 keeps at least 2). 1.0 keeps every expert and leaves
the model untouched: exactly today's model.

Which: the most used, counted per layer on calibration data when given (token sequences, e.g. a
problem's prompt and reasoning trace: every token's own top-k, pads excluded, over teacher-forced
forwards), else by the routing statistics the model keeps, `load_E`: each expert's EMA share of the
tokens routed in the last ~1/load_momentum optimiser (or `r1kit update-routing`) steps, i.e. its use
on the data it last learnt from or was refreshed on. Ties go to the lower expert id. The pruning
itself is the model's (`Transformer.keep_experts`); this module only chooses.

`count_expert_use` is also how `r1kit update-routing` measures balance on data.

Shape legend: E routed experts, B sequences, T tokens, N = B*T, K experts per token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from r1kit.model.transformer import Transformer


def kept_count(n_experts: int, fraction: float, top_k: int) -> int:
    """Experts a layer keeps at `fraction`: rounded (halves up), at least top_k, at most all."""
    if not 0 < fraction <= 1:
        raise ValueError(f"expert_activation must lie in (0, 1], got {fraction}")
    return min(n_experts, max(top_k, int(fraction * n_experts + 0.5)))


def choose_experts(usage_per_layer: Sequence[torch.Tensor], fraction: float, top_k: int) -> list[list[int]]:
    """Per layer, the positions of the `kept_count` most used experts (usage [E] per layer),
    ascending; ties go to the lower position."""
    keep_per_layer = []
    for usage_E in usage_per_layer:
        k = kept_count(usage_E.numel(), fraction, top_k)
        order_E = torch.sort(usage_E.detach().double().cpu(), descending=True, stable=True).indices
        keep_per_layer.append(sorted(order_E[:k].tolist()))
    return keep_per_layer


@torch.no_grad()
def count_expert_use(model: Transformer, sequences: Sequence[Sequence[int]], batch_size: int = 32) -> list[torch.Tensor]:
    """Tokens routed to each expert [E] per MoE layer over teacher-forced forwards of `sequences`
    (the router's own top-k of every real token; padding excluded), in eval mode, with the
    routing state as it is."""
    layers = model.moe_layers()
    device = next(model.parameters()).device
    counts = [torch.zeros(m.n_experts, dtype=torch.float64, device=device) for m in layers]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(sequences), batch_size):
            batch = [list(s) for s in sequences[start : start + batch_size] if len(s)]
            if not batch:
                continue
            T = max(len(s) for s in batch)
            ids_BT = torch.zeros(len(batch), T, dtype=torch.long, device=device)
            real_BT = torch.zeros(len(batch), T, dtype=torch.bool, device=device)
            for b, seq in enumerate(batch):  # right padding: under causal attention no real token sees a pad
                ids_BT[b, : len(seq)] = torch.tensor(seq, device=device)
                real_BT[b, : len(seq)] = True
            model(ids_BT, logits_at_BT=torch.zeros_like(real_BT))  # routing only: no output head
            real_N = real_BT.flatten()
            for m, total_E in zip(layers, counts):
                total_E += torch.bincount(m.last_topk_NK[real_N].flatten(), minlength=m.n_experts).double()
    finally:
        model.train(was_training)
    return counts


def parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes held by the model's parameters and buffers (what stays resident for inference)."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


@dataclass
class ExpertActivation:
    """What `activate_experts` did: the fraction, where the usage came from, the checkpoint's ids
    of the experts kept per layer, and the resident bytes before and after."""

    fraction: float
    source: str  # "calibration" | "routing statistics" | "all kept"
    n_experts: int  # per layer, before
    kept: list[list[int]]
    bytes_before: int
    bytes_after: int

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        if self.source == "all kept":
            return f"expert_activation {self.fraction:g}: all {self.n_experts} experts per layer kept"
        return (f"expert_activation {self.fraction:g}: kept {len(self.kept[0])} of {self.n_experts} experts per layer "
                f"(most used by {self.source}: {self.kept}); parameters and buffers {self.bytes_before / 2**20:.2f} -> "
                f"{self.bytes_after / 2**20:.2f} MiB")


def activate_experts(model: Transformer, fraction: float,
                     calibration: Sequence[Sequence[int]] | None = None) -> ExpertActivation:
    """Keep `fraction` of every MoE layer's routed experts, the most used (module docstring), in
    place. 1.0 leaves the model untouched."""
    layers = model.moe_layers()
    if not layers:
        kept_count(1, fraction, 1)  # still a range error for a bad fraction
        if fraction < 1:
            raise ValueError(f"expert_activation={fraction} needs a mixture-of-experts model; this one has no MoE layers")
        return ExpertActivation(fraction, "all kept", 0, [], parameter_bytes(model), parameter_bytes(model))
    n_experts, top_k = layers[0].n_experts, layers[0].top_k
    before = parameter_bytes(model)
    if kept_count(n_experts, fraction, top_k) == n_experts:
        return ExpertActivation(fraction, "all kept", n_experts, [list(m.expert_ids) for m in layers], before, before)
    if calibration is not None:
        if not any(len(s) for s in calibration):
            raise ValueError("expert_activation: the calibration data holds no tokens")
        usage, source = count_expert_use(model, calibration), "calibration"
    else:
        usage, source = [m.load_E for m in layers], "routing statistics"
    model.keep_experts(choose_experts(usage, fraction, top_k))
    return ExpertActivation(fraction, source, n_experts, [list(m.expert_ids) for m in layers], before, parameter_bytes(model))
