"""Atomic checkpoints: a crash at any moment leaves the previous checkpoint intact.

Layout of ``<run>/checkpoints/``::

    step_000020/            model/ (save_pretrained + tokenizer), trainer_state.pt
    step_000040/
    latest                  text file naming the newest complete checkpoint

A checkpoint is written into ``step_N.tmp-<pid>`` and renamed into place
(``os.replace`` is atomic on POSIX); only then is ``latest`` rewritten, itself
through a temporary file and a rename. A half-written directory is never named
by ``latest`` and is swept away on the next save.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST = "latest"


def capture_rng_state() -> dict[str, Any]:
    """Every RNG the run draws from: Python, NumPy, torch CPU and (if present) CUDA."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def save_checkpoint(
    checkpoint_dir: Path,
    step: int,
    model: torch.nn.Module,
    tokenizer: Any,
    trainer_state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` atomically, point ``latest`` at it, prune old ones. Returns its path."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for stale in checkpoint_dir.glob("*.tmp-*"):  # leftovers of a crash mid-save
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    final = checkpoint_dir / f"step_{step:06d}"
    tmp = checkpoint_dir / f"{final.name}.tmp-{os.getpid()}"
    model.save_pretrained(tmp / "model", safe_serialization=True)
    tokenizer.save_pretrained(tmp / "model")
    torch.save(trainer_state, tmp / "trainer_state.pt")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(checkpoint_dir)
    write_text_atomic(checkpoint_dir / LATEST, final.name + "\n")
    complete = sorted(p for p in checkpoint_dir.glob("step_*") if p.is_dir() and ".tmp-" not in p.name)
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The checkpoint named by ``latest``, or None if there is none."""
    pointer = checkpoint_dir / LATEST
    if not pointer.is_file():
        return None
    path = checkpoint_dir / pointer.read_text().strip()
    if not (path / "trainer_state.pt").is_file():
        raise FileNotFoundError(f"{pointer} names {path}, which is not a complete checkpoint")
    return path


def load_trainer_state(path: Path) -> dict[str, Any]:
    # The state holds RNG tuples and optimizer dicts written by this code, not untrusted pickles.
    return torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=False)
