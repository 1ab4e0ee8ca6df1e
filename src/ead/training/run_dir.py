"""Run-directory safety for ``ead train``: never start over a run, never resume a different one.

* Without ``--resume``, a directory that already holds a run (``metrics.jsonl`` or
  checkpoints) is refused with what to do: ``--resume``, a new ``output.dir``, or
  ``--overwrite``, which deletes only the files ``ead train`` writes (listed in
  :data:`RUN_FILES`), after saying which.
* With ``--resume``, the saved ``config.yaml`` must equal the new config in every key that
  changes results; keys in :data:`RESUME_MAY_CHANGE` may differ (a longer run, another
  output cadence). A mismatch is refused with the differences, ``dotted.key: saved -> now``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from ead.config import ConfigError

RUN_FILES = ("metrics.jsonl", "checkpoints", "config.yaml", "training_curves.png", "report.html", "tensorboard")
"""What ``ead train`` writes into output.dir; the only things ``--overwrite`` deletes."""

RESUME_MAY_CHANGE = (
    "train.steps",  # extend (or shorten) a run: the learning-rate schedule does not depend on it
    "output.",  # where and how often to save and log
    "eval.every",  # periodic eval samples under its own seed, so it never changes training
    "eval.at_start",  # only acts at step 0
    "grading.workers",  # how many processes grade, not how
    "model.num_threads",  # CPU threads (same results up to float reduction order)
    "model.warm_start_cache",  # where the built-in model's warm start is cached, not what it is
)
"""Dotted keys (or prefixes ending in ".") that may differ between a run and its resumption;
every other key changes what the run computes and must match the saved config."""


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def may_change_on_resume(key: str) -> bool:
    return any(key == allowed or (allowed.endswith(".") and key.startswith(allowed)) for allowed in RESUME_MAY_CHANGE)


def config_differences(saved: dict[str, Any], now: dict[str, Any], defaults: dict[str, Any] | None = None) -> list[str]:
    """``"dotted.key: saved -> now"`` for every result-changing key that differs.

    A key the saved config lacks (written before the key existed) counts as its value in ``defaults``, unless
    the saved section is another registry variant than the default's (``sampling.schedule`` named ``fixed``
    has no ``alpha``: the default EAD's alpha is not a key the saved run lacks).
    """
    old, new = flatten(saved), flatten(now)
    flat_defaults = flatten(defaults or {})
    missing = "(absent)"
    for key, value in flat_defaults.items():
        if any(saved_key.startswith(key + ".") for saved_key in old):  # a null default saved as a mapping (model.lora)
            continue
        if _other_variant(key, old, flat_defaults):
            continue
        old.setdefault(key, value)
    return [f"{key}: {old.get(key, missing)!r} -> {new.get(key, missing)!r}"
            for key in sorted(set(old) | set(new))
            if not may_change_on_resume(key) and old.get(key, missing) != new.get(key, missing)]


def _other_variant(key: str, saved: dict[str, Any], defaults: dict[str, Any]) -> bool:
    """True if a section above dotted ``key`` has a ``name`` in ``saved`` that differs from its default's."""
    parts = key.split(".")
    for depth in range(1, len(parts)):
        name_key = ".".join(parts[:depth]) + ".name"
        if name_key != key and name_key in saved and name_key in defaults and saved[name_key] != defaults[name_key]:
            return True
    return False


def existing_run_files(run_dir: Path) -> list[Path]:
    return [run_dir / name for name in RUN_FILES if (run_dir / name).exists()]


def holds_a_run(run_dir: Path) -> bool:
    checkpoints = run_dir / "checkpoints"
    has_checkpoints = checkpoints.is_dir() and any(checkpoints.iterdir())
    return (run_dir / "metrics.jsonl").exists() or has_checkpoints


def prepare_run_dir(run_dir: Path, config: dict[str, Any], resume: bool, overwrite: bool) -> None:
    """Refuse to clobber or to resume a different run; with ``overwrite``, clear ead's own files first."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: resume continues the run in "
                          f"{run_dir}, overwrite deletes it; pass one of them")
    if resume:
        check_resume_config(run_dir, config)
    elif holds_a_run(run_dir) and not overwrite:
        raise ConfigError(f"output.dir {run_dir} already holds a run (metrics.jsonl or checkpoints); nothing was "
                          "changed. Pass --resume to continue it, set a new output.dir=... to start another, or pass "
                          "--overwrite to delete that run's files and start over")
    elif overwrite:
        doomed = existing_run_files(run_dir)
        if doomed:
            print(f"ead train: --overwrite: deleting {', '.join(str(p) for p in doomed)}", file=sys.stderr)
        for path in doomed:  # tolerant: in a data-parallel launch every process clears the same files
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)


def check_resume_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Refuse ``--resume`` when the saved config.yaml differs in a key that changes results."""
    saved_file = run_dir / "config.yaml"
    if not saved_file.is_file():
        return  # nothing saved yet: nothing to continue, the run starts from step 0
    try:
        saved = yaml.safe_load(saved_file.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{saved_file} is not readable YAML ({exc}); cannot check that --resume continues the "
                          "same run") from None
    from ead.config import config_to_dict
    from ead.training.config import TrainConfig

    differences = config_differences(saved, config, defaults=config_to_dict(TrainConfig()))
    if differences:
        listed = "; ".join(differences)
        raise ConfigError(f"cannot resume {run_dir}: the config differs from the saved {saved_file} in keys that "
                          f"change results ({listed}). Resume with the saved values, or start a new run in another "
                          f"output.dir. Keys that may change on resume: {', '.join(RESUME_MAY_CHANGE)}")
