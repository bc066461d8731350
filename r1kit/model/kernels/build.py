"""Building r1kit's C++ CPU kernels (csrc/) on first use, with torch.utils.cpp_extension (a C++
compiler and ninja; ~40 s per kernel, cached under ~/.cache/torch_extensions). Where a build fails,
the kernel is unavailable, says why, and its caller keeps its reference path."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

import torch

CSRC = Path(__file__).parent / "csrc"


class CppKernel:
    """One csrc/ source as a lazily built extension module."""

    def __init__(self, name: str, source: str, what: str):
        self.name, self.source, self.what = name, CSRC / source, what
        self._lock = threading.Lock()
        self._module = None
        self.error: str | None = None

    def load(self):
        """The compiled extension, built on first call; None (and `error` set) where it cannot be."""
        with self._lock:
            if self._module is None and self.error is None:
                try:
                    from torch.utils.cpp_extension import load

                    _put_pip_ninja_on_path()
                    started = time.perf_counter()
                    self._module = load(name=self.name, sources=[str(self.source)], extra_cflags=_compile_flags(),
                                        extra_ldflags=["-fopenmp"], verbose=False)
                    if (seconds := time.perf_counter() - started) > 5:  # compiled now, not loaded from the cache
                        print(f"r1kit: compiled the {self.what} in {seconds:.0f} s (cached for later runs)", file=sys.stderr)
                except Exception as e:  # no compiler, no ninja, a read-only cache ...: keep the reference path
                    self.error = f"{type(e).__name__}: {e}".strip()
            return self._module

    def available(self) -> bool:
        return self.load() is not None


def _put_pip_ninja_on_path() -> None:
    """torch runs `ninja` from PATH; the pip package's binary is not on it when the venv's python
    is called without activating the venv (as `make test` does)."""
    if shutil.which("ninja") is None:
        try:
            import ninja
        except ImportError:
            return
        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def _compile_flags() -> list[str]:
    """-fopenmp: at::parallel_for is OpenMP code inlined from torch's headers, serial without it
    (torch's own libgomp is the one loaded). ATen's Vectorized<float> is compiled for AVX2 on x86
    machines that have it (AVX-512 ones too: no faster on rows of ~100 keys), else for ATen's
    portable default."""
    flags = ["-O3", "-fopenmp"]
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        return flags + ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"]
    return flags + ["-DCPU_CAPABILITY=DEFAULT"]
