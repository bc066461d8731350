"""Where r1kit computes, and in which precision: one decision, made from the hardware at run time.
Training, evaluation and the engine all call `resolve_device` and `choose_dtype`; the choice and
its reason go in a run's metrics, and a resumed run keeps the saved choice (r1kit.train.loop).

device  "auto" takes CUDA when torch sees a GPU, else the CPU; "cuda" without one is a DeviceError
        that says why (this torch is a CPU build, or no GPU is visible); "cpu" always works.
dtype   the compute precision: "fp32" runs without autocast, "bf16" under bf16 autocast, "bf16-matmul"
        with only the matrix products in bf16 (r1kit.bf16_matmul); weights stay fp32 in every case.
        "auto" on CUDA: bf16 where the GPU has it (Ampere and later), fp32 before.
        "auto" on a CPU: bf16 only where the CPU has native bf16 instructions (AMX or AVX512-BF16)
        and the model has at least BF16_CPU_MIN_PARAMS parameters; fp32 otherwise. Without native
        bf16 a bf16 matmul is emulated (~13x slower than fp32 on an AVX2-only EPYC), and below that
        size the casts around each op and the fp32-only fused multi-scale kernel outweigh faster
        matmuls (docs/benchmarks.md, "bf16 on CPUs"). For training (`training=True`) a smaller
        model on such a CPU gets "bf16-matmul": its products alone in bf16 made the demo's SFT step
        faster where full autocast made it slower (docs/benchmarks.md, "bf16 products for small
        models"). Inference keeps fp32 there (its decode products are small; not measured).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

DeviceName = Literal["auto", "cpu", "cuda"]
DtypeName = Literal["auto", "fp32", "bf16", "bf16-matmul"]

# Smallest model (parameters) for which "auto" picks bf16 on a CPU with native bf16
# (docs/benchmarks.md, "bf16 on CPUs"): on an AVX512-BF16 EPYC a training step's bf16/fp32 time was
# 1.06 at 1.6M parameters (the demo), 0.94 at 5.9M, 0.92 at 22M, 0.76 at 87M; on an AMX Xeon the
# demo step ran 4x slower in bf16. 20M is past every size measured slower, where bf16 already pays.
BF16_CPU_MIN_PARAMS = 20_000_000


class DeviceError(ValueError):
    """A device that this machine cannot provide; the message says why."""


def resolve_device(name: str = "auto"):
    """torch.device for "auto" | "cpu" | "cuda" (or "cuda:N")."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            why = ("this torch is a CPU-only build (torch.version.cuda is None)" if torch.version.cuda is None
                   else "torch sees no CUDA GPU on this machine (check the driver and CUDA_VISIBLE_DEVICES)")
            raise DeviceError(f"device {name!r} was asked for, but {why}; use device=cpu or device=auto")
        return torch.device(name)
    raise DeviceError(f"unknown device {name!r}; allowed: auto, cpu, cuda")


@functools.cache
def cpu_native_bf16() -> tuple[bool, str]:
    """(has native bf16, the CPU flags that say so), read from /proc/cpuinfo (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False, "CPU flags unreadable (no /proc/cpuinfo)"
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    native = sorted(flags & {"amx_bf16", "avx512_bf16"})
    return bool(native), ", ".join(native) if native else "no amx_bf16 / avx512_bf16 flag"


def native_bf16(device) -> tuple[bool, str]:
    """(whether `device` multiplies bf16 natively, what says so): a CUDA GPU with bf16 (Ampere and
    later), a CPU with AMX or AVX512-BF16. The one hardware test behind every bf16 choice."""
    import torch

    if torch.device(device).type == "cuda":
        has = torch.cuda.is_bf16_supported()
        return has, f"CUDA GPU {'with' if has else 'without'} bf16 ({torch.cuda.get_device_name(device)})"
    native, flags = cpu_native_bf16()
    return native, f"CPU {'with' if native else 'without'} native bf16 ({flags})"


def choose_dtype(requested: str, device, n_params: int, training: bool = False) -> tuple[str, str]:
    """("fp32" | "bf16" | "bf16-matmul", the reason) for `requested` ("auto" or one of those) on
    `device`, for a model of `n_params` parameters, to train it (`training`) or to run it."""
    import torch

    if requested in ("fp32", "bf16", "bf16-matmul"):
        return requested, "asked for"
    if requested != "auto":
        raise DeviceError(f"unknown dtype {requested!r}; allowed: auto, fp32, bf16, bf16-matmul")
    native, hardware = native_bf16(device)
    if not native or torch.device(device).type == "cuda":
        return ("bf16" if native else "fp32"), hardware
    if n_params < BF16_CPU_MIN_PARAMS:
        below = f"{n_params:,} parameters < {BF16_CPU_MIN_PARAMS:,}, below which bf16 autocast was measured slower"
        if training:
            return "bf16-matmul", f"{hardware}; {below}: the matrix products alone in bf16"
        return "fp32", f"{hardware}, but {below}"
    return "bf16", f"{hardware} and {n_params:,} parameters >= {BF16_CPU_MIN_PARAMS:,}"


def autocast(device, dtype: str):
    """The autocast context for a compute dtype on a device ("fp32": a disabled one; "bf16-matmul":
    r1kit.bf16_matmul's, bf16 products and fp32 elsewhere)."""
    import torch

    if dtype == "bf16-matmul":
        from r1kit.bf16_matmul import bf16_matmuls

        return bf16_matmuls()
    device_type = torch.device(device).type
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype)
    return torch.autocast(device_type, dtype=low or torch.bfloat16, enabled=low is not None)
