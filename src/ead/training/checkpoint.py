"""Atomic, finite, safely loadable checkpoints: a crash at any moment leaves the previous one intact.

Layout of ``<run>/checkpoints/``::

    step_000020/            model/ (save_pretrained + tokenizer), trainer_state.pt
    step_000040/
    latest                  text file naming the newest complete checkpoint

A checkpoint is written into ``step_N.tmp-<pid>`` and renamed into place
(``os.replace`` is atomic on POSIX); only then is ``latest`` rewritten, itself
through :func:`ead.io.write_atomic`. A half-written directory is never named by
``latest`` and is swept away on the next save. Three more guarantees:

* only finite weights are saved (:func:`check_finite_weights` runs first), so ``latest``
  is always a checkpoint worth resuming from;
* pruning deletes only checkpoints of this run's lineage that the caller hands in
  (``owned``): never another run's, never the one ``latest`` names;
* ``trainer_state.pt`` holds tensors and plain containers only (RNG states as lists
  and tensors) and loads with ``torch.load(weights_only=True)``: resuming a run
  directory someone shared cannot execute code from it.
"""

from __future__ import annotations

import errno
import os
import pickle
import random
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ead.io import RunFileError, disk_full_error, fsync_dir, write_atomic

LATEST = "latest"
_NAME = re.compile(r"step_\d{6,}")


class NonFiniteWeightsError(FloatingPointError, RunFileError):
    """Training produced NaN/inf; nothing was saved and the message names the last good checkpoint."""


def capture_rng_state() -> dict[str, Any]:
    """Every RNG the run draws from (Python, NumPy, torch CPU, CUDA) as tensors and plain lists."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [str(kind), keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def last_good_checkpoint_note(checkpoint_dir: Path) -> str:
    """"the last good checkpoint is X (resume with --resume)" or that there is none yet."""
    try:
        latest = latest_checkpoint(checkpoint_dir)
    except RunFileError:
        latest = None
    if latest is None:
        return f"no checkpoint has been saved yet in {checkpoint_dir}"
    return f"the last good checkpoint is {latest} (continue from it with --resume, e.g. with a lower train.lr)"


def check_finite_weights(model: torch.nn.Module, step: int, checkpoint_dir: Path) -> None:
    """Raise :class:`NonFiniteWeightsError` if any parameter is NaN/inf (before anything is written)."""
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise NonFiniteWeightsError(f"the weights became non-finite at step {step} ({len(bad)} tensors, e.g. "
                                    f"{bad[0]}); nothing was saved; {last_good_checkpoint_note(checkpoint_dir)}")


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _write_tmp(tmp: Path, model: torch.nn.Module, tokenizer: Any, trainer_state: dict[str, Any]) -> None:
    model.save_pretrained(tmp / "model", safe_serialization=True)
    tokenizer.save_pretrained(tmp / "model")
    with open(tmp / "trainer_state.pt", "wb") as handle:  # a Python file: a full disk raises OSError(ENOSPC)
        torch.save(trainer_state, handle)


def save_checkpoint(
    checkpoint_dir: Path,
    step: int,
    model: torch.nn.Module,
    tokenizer: Any,
    trainer_state: dict[str, Any],
    keep: int = 2,
    owned: Sequence[Path] = (),
) -> Path:
    """Write checkpoint ``step`` atomically, point ``latest`` at it, prune. Returns its path.

    ``owned``: earlier checkpoints of this run that may be pruned (those this invocation wrote,
    plus the one it resumed from); of them and the new one, the ``keep`` newest stay.
    """
    check_finite_weights(model, step, checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for stale in checkpoint_dir.glob("*.tmp-*"):  # leftovers of a crash mid-save
        _remove(stale)
    final = checkpoint_dir / f"step_{step:06d}"
    tmp = checkpoint_dir / f"{final.name}.tmp-{os.getpid()}"
    try:
        _write_tmp(tmp, model, tokenizer, trainer_state)
    except Exception as exc:  # noqa: BLE001 - removed, then re-raised (a full disk as a message)
        _remove(tmp)
        raise _write_error(exc, final.name, checkpoint_dir) from exc
    if final.exists():  # same step saved again: move the old one aside so `latest` never names a gap
        aside = checkpoint_dir / f"{final.name}.tmp-old-{os.getpid()}"
        os.replace(final, aside)
        os.replace(tmp, final)
        _remove(aside)
    else:
        os.replace(tmp, final)
    fsync_dir(checkpoint_dir)
    write_atomic(checkpoint_dir / LATEST, final.name + "\n")
    lineage = sorted({p for p in owned if p.parent == checkpoint_dir and p != final}) + [final]
    for old in lineage[:-keep]:
        _remove(old)
    return final


def _write_error(exc: Exception, name: str, checkpoint_dir: Path) -> Exception:
    """A full disk as a message naming the directory and the intact previous checkpoint; else ``exc``."""
    if not isinstance(exc, OSError):  # safetensors (Rust) reports ENOSPC inside its own error's text
        marks = {errno.ENOSPC: ("No space left", "StorageFull", "code: 28"), errno.EFBIG: ("File too large", "code: 27")}
        code = next((code for code, texts in marks.items() if any(text in str(exc) for text in texts)), None)
        if code is None:
            return exc
        exc = OSError(code, os.strerror(code))
    return disk_full_error(exc, f"checkpoint {name}", checkpoint_dir,
                           f"Nothing of it was kept; {last_good_checkpoint_note(checkpoint_dir)}.")


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The checkpoint named by ``latest``, or None if there is none."""
    pointer = checkpoint_dir / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    path = checkpoint_dir / name
    if not _NAME.fullmatch(name) or not (path / "trainer_state.pt").is_file():
        raise RunFileError(f"{pointer} names {name!r}, which is not a complete checkpoint in {checkpoint_dir}; "
                           "point it at one of the step_* directories there (or start a new output.dir)")
    return path


def load_trainer_state(path: Path) -> dict[str, Any]:
    """Optimizer, scheduler, RNG and loop state of checkpoint ``path``, loaded without running any code."""
    file = path / "trainer_state.pt"
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunFileError(f"refusing to load {file}: it holds objects other than tensors and plain containers, "
                           f"and loading those would run code from the file ({first_line}). A checkpoint written "
                           "by an older ead or by someone else; resume only from checkpoints this version wrote, "
                           "or start a new run from its weights with model.path="
                           f"{path / 'model'}.") from None
