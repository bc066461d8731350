"""The on-disk checkpoint layout; the only module that knows it.

A checkpoint is a directory:
    config.json         the ModelConfig (validated on load)
    model.safetensors   every parameter and persistent buffer (router loads and biases, the
                        vocabulary's symbol flags); no pickle
    ...                 further files from the caller (tokenizer.json, trainer_state/, ...)

Writes are atomic: everything goes to a temporary sibling directory, which then replaces the
target with two renames (the old directory moves into `.NAME.old-*/`, the new one into place), and
the parent directory is fsynced, so a crash leaves the old checkpoint or the new one, never a mix.
A crash between the two renames strands the old checkpoint in `.NAME.old-*/`: loading puts it back
(`recover`). A write never replaces what it did not write: an existing, non-empty target must carry
r1kit's marker (model.safetensors whose metadata says library=r1kit; a Hugging Face folder has a
config.json too, so that alone proves nothing), or the write is refused and the target left as it is.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from r1kit.config import ModelConfig, build
from r1kit.model.transformer import Transformer, upgrade_state_dict

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MARKER = {"library": "r1kit"}  # in WEIGHTS_FILE's metadata: this directory was written by r1kit


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message lists what is wrong."""


def is_r1kit_checkpoint(path: str | Path, marker: dict[str, str] = MARKER) -> bool:
    """Whether `path` holds a WEIGHTS_FILE whose metadata carries `marker` (r1kit wrote it)."""
    weights = Path(path) / WEIGHTS_FILE
    try:
        with safe_open(str(weights), framework="pt") as f:
            metadata = f.metadata() or {}
    except (OSError, ValueError, RuntimeError):  # missing, or not a safetensors file
        return False
    return all(metadata.get(k) == v for k, v in marker.items())


def recover(path: str | Path) -> bool:
    """Put back a checkpoint stranded by a crash between atomic_directory's two renames (the
    target gone, its old version in `.NAME.old-*/ckpt`); True if one was restored."""
    path = Path(path)
    if path.exists():
        return False
    stranded = sorted(path.parent.glob(f".{path.name}.old-*/ckpt"), key=lambda p: p.stat().st_mtime)
    if not stranded:
        return False
    os.replace(stranded[-1], path)
    shutil.rmtree(stranded[-1].parent, ignore_errors=True)
    _fsync_dir(path.parent)
    return True


def atomic_directory(path: str | Path, write: Callable[[Path], None], marker: dict[str, str] = MARKER) -> Path:
    """Call `write(tmp_dir)` to fill a fresh directory, then swap it in at `path` atomically. An
    existing non-empty `path` is replaced only if it carries `marker` (what `write` stamps on its
    own output); anything else is refused with a CheckpointError, untouched."""
    path = Path(path)
    recover(path)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())) and not is_r1kit_checkpoint(path, marker):
        raise CheckpointError(
            f"refusing to write over {path}: it is not empty and not a directory r1kit wrote (no {WEIGHTS_FILE} "
            f"with metadata {marker}); choose another directory, or move it away yourself")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        write(tmp)
        _fsync_tree(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / "ckpt")  # the last good state stays whole until the swap is done
            os.replace(tmp, path)
            _fsync_dir(path.parent)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
            _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _fsync_dir(directory: Path) -> None:
    """Make the renames in `directory` durable (POSIX: fsync the directory itself)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def save_pretrained(model: Transformer, path: str | Path, extra: Callable[[Path], None] | None = None) -> Path:
    """Write `model` (and whatever `extra(dir)` adds) as a checkpoint directory at `path`."""

    def write(tmp: Path) -> None:
        (tmp / CONFIG_FILE).write_text(json.dumps(model.config.model_dump(), indent=2) + "\n")
        tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", **MARKER})
        if extra is not None:
            extra(tmp)

    return atomic_directory(path, write)


def load_config(path: str | Path) -> ModelConfig:
    recover(path)
    file = Path(path) / CONFIG_FILE
    if not file.is_file():
        raise CheckpointError(f"{path} is not a checkpoint: {CONFIG_FILE} is missing")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{file} is not valid JSON: {e}") from e
    return build(ModelConfig, data)


def load_pretrained(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> Transformer:
    """Rebuild the model from a checkpoint directory; any mismatch of tensors is an error listing them."""
    cfg = load_config(path)
    weights = Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{path} is not a checkpoint: {WEIGHTS_FILE} is missing")
    tensors = upgrade_state_dict(load_file(str(weights), device=str(device)))
    model = Transformer(cfg).to(device)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    misshaped = sorted(
        f"{k}: checkpoint {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    )
    if missing or unexpected or misshaped:
        problems = []
        for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if items:
                problems.append(f"{title} tensors ({len(items)}): " + ", ".join(items))
        raise CheckpointError(f"checkpoint {path} does not match its config:\n  " + "\n  ".join(problems))
    model.load_state_dict(tensors, strict=True)
    if dtype is not None:
        model.to(dtype)
    return model
