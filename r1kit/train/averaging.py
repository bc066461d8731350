"""Weight averaging over a run's last steps: the weights of several nearby points of the trajectory,
averaged, often generalise past the training distribution better than the last point alone
(SWA, Izmailov et al. 2018; SWAD, Cha et al. 2021, for domain shift; LAWA, Kaddour 2022).

    ema:D    an exponential moving average, decay D per optimiser step (1 / (1 - D) steps of memory);
    tail:F   the uniform mean of the weights after every step once a fraction F of the budget is spent.

Only floating-point parameters are averaged; buffers (the MoE load statistics and routing biases,
the symbol flags) are the model's own at the end, the state its routing was balanced for.
"""

from __future__ import annotations

import copy
import re

import torch
from torch import nn

_SPEC = re.compile(r"^(ema|tail):(0?\.\d+|0|1(?:\.0*)?)$")


def parse_average(spec: str) -> tuple[str, float]:
    """'ema:0.999' -> ('ema', 0.999); a clear error for anything else."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise ValueError(f"weight average {spec!r}: expected 'ema:D' (decay per step, 0 <= D < 1) or 'tail:F' "
                         f"(start at fraction F of the budget, 0 <= F < 1)")
    kind, value = match.group(1), float(match.group(2))
    if value >= 1:
        raise ValueError(f"weight average {spec!r}: {value} must be below 1")
    return kind, value


class WeightAverage:
    """A running average of `model`'s floating-point parameters, kept in fp32 on the model's device."""

    def __init__(self, model: nn.Module, spec: str):
        self.spec = spec
        self.kind, self.value = parse_average(spec)
        self.count = 0  # steps averaged so far
        self.params = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module, progress: float) -> None:
        """After an optimiser step; `progress` in [0, 1] is the fraction of the budget spent."""
        if self.kind == "tail" and progress < self.value:
            return
        self.count += 1
        # ema: weight 1 - D on the newest; tail: the uniform mean of `count` points
        weight = 1.0 - self.value if self.kind == "ema" else 1.0 / self.count
        for name, p in model.named_parameters():
            if name in self.params:
                self.params[name].lerp_(p.detach().float(), weight)

    @torch.no_grad()
    def averaged_model(self, model: nn.Module) -> nn.Module:
        """A copy of `model` with the averaged parameters and `model`'s own buffers; before any
        update (a tail that never started) it is the model as it is."""
        out = copy.deepcopy(model)
        if self.count:
            for name, p in out.named_parameters():
                if name in self.params:
                    p.copy_(self.params[name].to(p.dtype))
        return out
