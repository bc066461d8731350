"""Building r1kit's C++ CPU kernels (csrc/) on first use, with torch.utils.cpp_extension (a C++
compiler and ninja; ~40 s per kernel, cached under ~/.cache/torch_extensions/r1kit/). Where a build
fails, the kernel is unavailable, says why, and its caller keeps its reference path.

torch guards a build directory with a lock file that only the building process removes, and every
later load, even of a cached build, waits for it without end: a first run killed while compiling
(SIGTERM, SIGKILL, a closed terminal) would hang every r1kit run after it. So r1kit processes take
an OS lock (flock, released by the kernel when its holder dies, however it dies) around torch's
load; whoever holds it knows that a torch lock file left in the directory is a dead build's, and
removes it."""

from __future__ import annotations

import contextlib
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
                    directory = build_directory(self.name)
                    with _build_lock(directory):
                        self._module = load(name=self.name, sources=[str(self.source)], extra_cflags=_compile_flags(),
                                            extra_ldflags=["-fopenmp"], build_directory=str(directory), verbose=False)
                    if (seconds := time.perf_counter() - started) > 5:  # compiled now, not loaded from the cache
                        print(f"r1kit: compiled the {self.what} in {seconds:.0f} s (cached for later runs)", file=sys.stderr)
                except Exception as e:  # no compiler, no ninja, a read-only cache ...: keep the reference path
                    self.error = f"{type(e).__name__}: {e}".strip()
            return self._module

    def available(self) -> bool:
        return self.load() is not None


def build_directory(name: str) -> Path:
    """Where kernel `name` is built and cached: torch's extension root (TORCH_EXTENSIONS_DIR or
    ~/.cache/torch_extensions), then one folder per Python and torch version (a build is tied to
    both's ABI)."""
    from torch.utils.cpp_extension import get_default_build_root

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    directory = Path(root) / "r1kit" / f"py{sys.version_info.major}{sys.version_info.minor}_torch{torch.__version__}" / name
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@contextlib.contextmanager
def _build_lock(directory: Path):
    """Hold an flock on `directory` across torch's load; with it held, torch's own lock file there
    can only be a build that died, and goes. Without fcntl (Windows) torch's lock alone."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(directory / "r1kit.flock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # another r1kit process building this kernel: wait for it
        try:
            stale = directory / "lock"
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                print(f"r1kit: removed {stale}, left by a build of the kernel that was killed", file=sys.stderr)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
