"""Weight averaging over a run's last steps: the mean of several nearby points of the trajectory
often generalises past the training distribution better than the last point alone (SWA, Izmailov
et al. 2018; SWAD, Cha et al. 2021, for domain shift; LAWA, Kaddour 2022). And interpolation
between a fine-tuning run's start and end (`interpolate_from`): part of the way keeps most of what
the run learnt and more of what it forgot (WiSE-FT, Wortsman et al. 2022; WARP's interpolation
towards the init, Rame et al. 2024).

    ema:D    an exponential moving average, decay D per optimiser step (about 1 / (1 - D) steps of memory),
             the plain mean of the steps so far until there are that many: the random first weights
             never count (without this, ema:0.999 still held 9% of them after 2,400 steps);
    tail:F   the uniform mean of the weights after every step, once a fraction F of the budget is spent;
    power:G  an EMA whose memory grows with the run, about 1 / (G + 1) of the steps so far: decay
             (1 - 1/t)^(G + 1) after step t (the power-function EMA of Karras et al. 2024, EDM2), so the
             same G averages the same share of a run on a slow CPU as on a fast one, where a fixed
             decay's ~1 / (1 - D) steps are a larger share of a shorter run.

Only floating-point parameters are averaged; buffers (the MoE load statistics and routing biases,
the symbol flags) stay the model's own, the state its routing was last balanced for. The averages
are kept in fp32 on the model's device: one copy of the parameters each, and one `lerp_` a step.
"""

from __future__ import annotations

import copy
import re

import torch
from torch import nn

_SPEC = re.compile(r"^(ema|tail|power):(\d*\.?\d+)$")


def parse_average(spec: str) -> tuple[str, float]:
    """'ema:0.999' -> ('ema', 0.999); a clear error for anything else."""
    match = _SPEC.match(spec.strip())
    if not match or (match.group(1) != "power" and float(match.group(2)) >= 1):
        raise ValueError(f"weight average {spec!r}: expected 'ema:D' (decay per step, 0 <= D < 1), 'tail:F' "
                         f"(from a fraction F of the budget, 0 <= F < 1) or 'power:G' (memory 1 / (G + 1) of the run so far, G >= 0)")
    return match.group(1), float(match.group(2))


def average_dir_name(spec: str) -> str:
    """The checkpoint directory an extra average is saved in: 'ema:0.999' -> 'average_ema_0.999'."""
    kind, value = parse_average(spec)
    return f"average_{kind}_{value:g}"


class WeightAverage:
    """A running average of `model`'s floating-point parameters."""

    def __init__(self, model: nn.Module, spec: str):
        self.spec = spec
        self.kind, self.value = parse_average(spec)
        self.count = 0  # steps averaged so far
        self.params = parameters_of(model)

    @torch.no_grad()
    def update(self, model: nn.Module, progress: float) -> None:
        """After an optimiser step; `progress` in [0, 1] is the fraction of the budget spent."""
        if self.kind == "tail" and progress < self.value:
            return
        self.count += 1
        # tail: 1 / count makes the uniform mean of all so far; ema: weight 1 - D on the newest point,
        # or 1 / count while that is larger (the first update replaces the copy of the first weights);
        # power: 1 - (1 - 1/t)^(G + 1), which is 1 at t = 1 and about (G + 1) / t later
        if self.kind == "tail":
            weight = 1.0 / self.count
        elif self.kind == "ema":
            weight = max(1.0 - self.value, 1.0 / self.count)
        else:
            weight = 1.0 - (1.0 - 1.0 / self.count) ** (self.value + 1.0)
        for name, p in model.named_parameters():
            if name in self.params:
                self.params[name].lerp_(p.detach().float(), weight)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Put the averaged parameters into `model` (buffers untouched). Before any update (a tail
        that never started: a run shorter than its start) the model keeps its own."""
        if not self.count:
            return
        for name, p in model.named_parameters():
            if name in self.params:
                p.copy_(self.params[name].to(p.dtype))

    def averaged_copy(self, model: nn.Module) -> nn.Module:
        out = copy.deepcopy(model)
        self.copy_to(out)
        return out


class WeightAverages:
    """The run's averages, updated together and saved in (restored from) its trainer state."""

    def __init__(self, model: nn.Module, specs: list[str]):
        self.items = [WeightAverage(model, spec) for spec in specs]

    def __bool__(self) -> bool:
        return bool(self.items)

    def update(self, model: nn.Module, progress: float) -> None:
        for average in self.items:
            average.update(model, progress)

    def state_dict(self) -> dict[str, torch.Tensor]:
        tensors = {}
        for i, average in enumerate(self.items):
            tensors[f"{i}.count"] = torch.tensor(average.count)
            tensors.update({f"{i}.param.{name}": value for name, value in average.params.items()})
        return tensors

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        for i, average in enumerate(self.items):
            if f"{i}.count" not in tensors:
                raise ValueError(f"--resume: the trainer state holds no running average {average.spec!r}")
            average.count = int(tensors[f"{i}.count"])
            for name, value in average.params.items():
                value.copy_(tensors[f"{i}.param.{name}"])


def parameters_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """fp32 copies of `model`'s floating-point parameters, by name: a run's start for `interpolate_from`."""
    return {n: p.detach().float().clone() for n, p in model.named_parameters() if p.is_floating_point()}


@torch.no_grad()
def interpolate_from(model: nn.Module, start: dict[str, torch.Tensor], share: float) -> None:
    """Set `model`'s floating-point parameters to start + share * (model - start): `share` 1 keeps
    the model, 0 gives the start. Buffers (the MoE load statistics) stay the model's."""
    if not 0 <= share <= 1:
        raise ValueError(f"interpolation share {share} must lie in [0, 1]")
    for name, p in model.named_parameters():
        if name in start:
            if start[name].shape != p.shape:
                raise ValueError(f"cannot interpolate {name}: start has shape {tuple(start[name].shape)}, the model {tuple(p.shape)}")
            p.copy_(torch.lerp(start[name].to(p.device), p.detach().float(), share).to(p.dtype))
