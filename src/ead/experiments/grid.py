"""The typed config of ``ead sweep``: one training budget, axes of variants, seeds, parallelism.

A sweep is the product ``axes x algorithms x seeds``. Every cell is one ``ead train`` run
whose config is built, in this order (later wins):

    defaults <- algorithm preset <- recipe YAML <- base overrides <- axis overrides <- seed overrides

then the sweep forces ``output.dir`` (the cell's run dir), ``model.num_threads``,
``model.warm_start_cache`` (when set; by default every cell uses ``ead.paths.cache_dir()``) and ``output.progress=false``.
So the budget (steps, prompts, samples per prompt, eval size) lives in ``base`` and is the
same for every cell; an axis value only says what differs (a schedule, a flag).

Example (``src/ead/recipes/sweep_default.yaml``)::

    name: countdown
    out_dir: runs/sweep_default
    base: [train.steps=80, train.prompts_per_step=32, eval.every=10]
    axes:
      sampler:
        fixed-1.0: [sampling.schedule={name: fixed, tau: 1.0}]
        ead-tis:   []                      # the recipe default
    algorithms: [grpo, dapo]
    seeds: [0, 1, 2]
    jobs: 2
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ead.config import ConfigError, load_config, parse_override, require
from ead.training.config import ALGORITHM_PRESETS

__all__ = ["BaseEvalSection", "Cell", "ReportSection", "SweepConfig", "load_sweep_config"]

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
SEP = "__"
"""Joins a cell's labels into its id: ``<axis values>__<algorithm>__s<seed>``."""


@dataclass
class BaseEvalSection:
    """Inference-time pass@N / maj@N of the base model (before any RL), one line per schedule."""

    enabled: bool = True
    """Measure the base model once per sweep (a job of its own, run with the cells)."""
    num_problems: int = 128
    """Held-out problems (the first N of the task's eval split, the same list training evaluates on)."""
    samples: int = 32
    """N: samples per problem and schedule; pass@k and maj@k are reported for k = 1, 2, 4, ..., N."""
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Label -> schedule spec; empty = the ``sampling.schedule`` of each value of the first axis."""
    seed: int = 0
    """Sampling seed (every schedule uses the same one)."""

    def __post_init__(self) -> None:
        require(self.num_problems >= 1, "base_eval.num_problems", "must be >= 1")
        require(self.samples >= 1, "base_eval.samples", "must be >= 1")


@dataclass
class ReportSection:
    """What ``ead report`` draws from this sweep."""

    targets: dict[str, list[float]] = field(default_factory=lambda: {"eval/mean@16": [0.4, 0.5, 0.6]})
    """Metric -> thresholds for the steps-to-target table (first eval at which the metric reaches it)."""
    smooth: int = 5
    """Moving-average window (in steps) for per-step training curves (eval curves are never smoothed)."""
    baseline: str | None = None
    """Cell-group label that the paired differences table compares every group against (same algorithm)."""

    def __post_init__(self) -> None:
        require(self.smooth >= 1, "report.smooth", "must be >= 1")
        for metric, values in self.targets.items():
            require(isinstance(values, list) and all(isinstance(v, (int, float)) for v in values),
                    f"report.targets.{metric}", "must be a list of numbers")


@dataclass
class SweepConfig:
    name: str = "sweep"
    """Label of the sweep (the task's name in the report)."""
    description: str = ""
    """One line on what this sweep asks; shown in the report."""
    out_dir: str = "runs/sweep"
    """Sweep directory: sweep.yaml, status.json, base_inference/, cells/<cell id>/ (one run dir each)."""
    recipe: str | None = None
    """Optional ``ead train`` YAML recipe applied to every cell (before ``base``)."""
    base: list[str] = field(default_factory=list)
    """Dotted ``ead train`` overrides shared by every cell: the budget lives here."""
    axes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """Axis name -> {value label -> overrides}; the grid is their product (in the order written)."""
    algorithms: list[str] = field(default_factory=lambda: ["grpo"])
    """Algorithm presets (``ead train --algorithm``), one more axis."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds; each sets every key in ``seed_keys``."""
    seed_keys: list[str] = field(default_factory=lambda: ["train.seed", "task.seed"])
    """Config keys a seed sets (sampling/init seed and the training problem stream)."""
    jobs: int = 2
    """Cells run at a time (one process each): the number of CPU cores to use."""
    threads_per_cell: int = 1
    """``model.num_threads`` (and OMP/MKL threads) of every cell."""
    warm_start_cache: str | None = None
    """Warm-start cache shared by all cells, warmed once before any cell starts; None: the one cache of every
    command (``$EAD_CACHE_DIR`` or ``~/.cache/ead``, ead.paths.cache_dir)."""
    base_eval: BaseEvalSection = field(default_factory=BaseEvalSection)
    """Inference-time pass@N / maj@N of the base model."""
    report: ReportSection = field(default_factory=ReportSection)
    """Targets and smoothing of ``ead report``."""

    def __post_init__(self) -> None:
        require(bool(_LABEL.match(self.name)), "name", f"must be a plain label ([A-Za-z0-9._+-]), got {self.name!r}")
        require(self.jobs >= 1, "jobs", "must be >= 1")
        require(self.threads_per_cell >= 1, "threads_per_cell", "must be >= 1")
        require(len(self.seeds) >= 1, "seeds", "must name at least one seed")
        require(len(set(self.seeds)) == len(self.seeds), "seeds", f"must be distinct, got {self.seeds}")
        require(len(self.algorithms) >= 1, "algorithms", "must name at least one preset")
        for algorithm in self.algorithms:
            require(algorithm in ALGORITHM_PRESETS, "algorithms", f"entries must be in {sorted(ALGORITHM_PRESETS)}, got {algorithm!r}")
        require(len(set(self.algorithms)) == len(self.algorithms), "algorithms", "must be distinct")
        _check_overrides(self.base, "base")
        for axis, values in self.axes.items():
            require(bool(_LABEL.match(axis)), "axes", f"axis names must be plain labels, got {axis!r}")
            require(isinstance(values, dict) and len(values) >= 1, f"axes.{axis}", "must map value labels to override lists")
            for label, overrides in values.items():
                where = f"axes.{axis}.{label}"
                require(isinstance(label, str) and bool(_LABEL.match(label)) and SEP not in label, where,
                        "label must be a plain label without '__'")
                require(isinstance(overrides, list), where, "must be a list of key=value overrides")
                _check_overrides(overrides, where)

    # ----------------------------------------------------------------- the grid
    def cells(self) -> list[Cell]:
        """Every cell, in a stable order: axes (as written), then algorithm, then seed."""
        axis_items = [[(axis, label, list(ovr)) for label, ovr in values.items()] for axis, values in self.axes.items()]
        out = []
        for combo in itertools.product(*axis_items, self.algorithms, self.seeds):
            *picked, algorithm, seed = combo
            labels = {axis: label for axis, label, _ in picked}
            overrides = list(self.base) + [o for _, _, ovr in picked for o in ovr]
            overrides += [f"{key}={seed}" for key in self.seed_keys]
            group = SEP.join([*labels.values(), algorithm])
            cell_id = f"{group}{SEP}s{seed}"
            run_dir = Path(self.out_dir) / "cells" / cell_id
            cache = [] if self.warm_start_cache is None else [f"model.warm_start_cache={self.warm_start_cache}"]
            forced = [f"output.dir={run_dir}", f"model.num_threads={self.threads_per_cell}", *cache, "output.progress=false"]
            out.append(Cell(cell_id, group, labels, algorithm, seed, overrides + forced, run_dir))
        return out


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    id: str
    """``<axis values>__<algorithm>__s<seed>``: also the run directory's name."""
    group: str
    """The id without the seed: cells of one group are averaged in the report."""
    labels: dict[str, str]
    """Axis name -> value label."""
    algorithm: str
    """Algorithm preset."""
    seed: int
    """Seed (sets every ``seed_keys`` entry)."""
    overrides: list[str]
    """Every dotted override of the cell, in order (forced output/threads/cache ones last)."""
    run_dir: Path
    """The cell's ``ead train`` output directory."""

    def train_args(self, recipe: str | None) -> list[str]:
        """Arguments of ``ead train`` for this cell (without ``--resume``)."""
        return ["--algorithm", self.algorithm, *(["--config", recipe] if recipe else []), *self.overrides]


def _check_overrides(overrides: Any, where: str) -> None:
    require(isinstance(overrides, list) and all(isinstance(o, str) for o in overrides), where,
            "must be a list of key=value strings")
    for text in overrides:
        try:
            path, _ = parse_override(text)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        require(path[0] != "output" or path[-1] not in ("dir",), where, f"must not set output.dir ({text!r}): the sweep owns it")


def load_sweep_config(path: str | Path | None = None, overrides: list[str] | None = None) -> SweepConfig:
    """Defaults <- YAML file <- dotted overrides (``jobs=1 out_dir=runs/x``), validated."""
    return load_config(SweepConfig, path, overrides)


def builtin_recipe(name: str) -> Path:
    """Path of a packaged sweep recipe (``sweep_default``, ``sweep_fork``)."""
    from importlib import resources

    path = Path(str(resources.files("ead") / "recipes" / f"{name}.yaml"))
    if not path.is_file():
        raise ConfigError(f"no built-in sweep recipe {name!r} (looked for {path})")
    return path
