"""A sweep directory as plain JSON: what ``ead report`` draws, computed once (:func:`summarize`).

For each sweep (a task), cells are grouped by everything but the seed. Per group:

* per-step curves of the metrics in :data:`ead.reporting.sweep.CURVES`, against the training step
  and the rollouts consumed: the mean over seeds with a 95% Student-t interval over seeds (seeds
  are the independent replicates; held-out problems are shared, so their noise is not
  independent), clipped to the metric's range; per-step training metrics are smoothed per seed
  with a trailing moving average first;
* final metrics (the last eval of the run) with the same interval, plus the average over all
  evals (a sample-efficiency summary: the area under the eval curve divided by its length);
* paired differences against a baseline group (same algorithm, same seed);
* steps (and rollouts) needed to reach fixed targets: per seed the first eval at or above the
  target; the median over seeds and how many seeds reached it;
* what each group sampled with (schedule, budget, TIS), and the base model's inference-time
  pass@N / maj@N per schedule (from the sweep's base job).

Experiments aggregate, reports draw: :mod:`ead.reporting.sweep` renders these summaries (and a
committed ``summary.json``) without reading a sweep directory.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ead.experiments.grid import SweepConfig, load_sweep_config
from ead.reporting.breakdowns import BREAKDOWNS
from ead.reporting.sweep import (CURVES, FINAL, LENGTH_BY_DIFFICULTY, PAIRED, markdown_tables,
                                 metric_range, render_report)
from ead.training.logger import read_metrics

# --------------------------------------------------------------------------- statistics

# Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30 (scipy is only a dev dependency).
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t_quantile_975(df: int) -> float:
    """t_{0.975, df}: from the table up to df = 30, the normal 1.96 beyond (error < 2%)."""
    return _T975[df - 1] if df <= len(_T975) else 1.96


# One-sided Student-t quantiles t_{0.80, df} for df = 1..30: the power-0.8 term of the minimum detectable effect.
_T80 = [1.376, 1.061, 0.978, 0.941, 0.920, 0.906, 0.896, 0.889, 0.883, 0.879, 0.876, 0.873, 0.870, 0.868, 0.866,
        0.865, 0.863, 0.862, 0.861, 0.860, 0.859, 0.858, 0.858, 0.857, 0.856, 0.856, 0.855, 0.855, 0.854, 0.854]


def t_quantile_80(df: int) -> float:
    """t_{0.80, df}: from the table up to df = 30, the normal 0.842 beyond."""
    return _T80[df - 1] if df <= len(_T80) else 0.842


def minimum_detectable_effect(differences: list[float] | np.ndarray) -> float:
    """The smallest true mean difference a two-sided 5% paired t-test over these seeds detects with power 0.8.

    ``(t_{0.975, n-1} + t_{0.80, n-1}) * sd / sqrt(n)`` with sd the seed-to-seed standard deviation of the
    paired differences (the usual approximation to the noncentral-t power calculation). A grid whose
    interval contains 0 can still rule out effects above this size; below it, it cannot tell. nan if n < 2.
    """
    x = np.asarray([v for v in differences if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size < 2:
        return math.nan
    return float((t_quantile_975(x.size - 1) + t_quantile_80(x.size - 1)) * x.std(ddof=1) / math.sqrt(x.size))


def mean_ci(values: list[float] | np.ndarray) -> tuple[float, float, int]:
    """Mean, half-width of the 95% Student-t interval over replicates, and n (half-width nan if n < 2)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan, 0
    if x.size == 1:
        return float(x[0]), math.nan, 1
    half = float(t_quantile_975(x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return float(x.mean()), half, int(x.size)


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (shorter at the start)."""
    out, acc = [], []
    for v in values:
        acc.append(v)
        acc = acc[-window:]
        out.append(float(np.mean(acc)))
    return out


# --------------------------------------------------------------------------- loading


@dataclass
class Group:
    """Cells that differ only in the seed."""

    id: str
    labels: dict[str, str]
    algorithm: str
    seeds: list[int] = field(default_factory=list)
    runs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # seed -> metrics records
    done: dict[int, bool] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return next(iter(self.labels.values()), self.algorithm)


@dataclass
class Sweep:
    config: SweepConfig
    dir: Path
    groups: dict[str, Group]
    base: dict[str, Any] | None
    steps: int
    samplers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Group id -> {schedule, max_new_tokens, importance_correction} from a cell's saved config."""
    start_length: float | None = None
    """Mean response length at the first training step over all cells (where the schedules' units sit)."""

    @property
    def algorithms(self) -> list[str]:
        return list(dict.fromkeys(g.algorithm for g in self.groups.values()))

    @property
    def labels(self) -> list[str]:
        return list(dict.fromkeys(g.label for g in self.groups.values()))


def load_sweep(run_dir: str | Path) -> Sweep:
    """Read ``sweep.yaml``, each cell's ``metrics.jsonl`` (missing cells are simply absent) and the base job."""
    run_dir = Path(run_dir)
    config = load_sweep_config(run_dir / "sweep.yaml")
    groups: dict[str, Group] = {}
    samplers: dict[str, dict[str, Any]] = {}
    lengths: list[float] = []
    steps = 0
    for cell in config.cells():
        group = groups.setdefault(cell.group, Group(cell.group, cell.labels, cell.algorithm))
        group.seeds.append(cell.seed)
        # The cell's run dir as the sweep wrote it may be relative to where the sweep ran: look under run_dir too.
        cell_dir = run_dir / "cells" / cell.id
        metrics = cell_dir / "metrics.jsonl"
        if metrics.is_file():
            group.runs[cell.seed] = read_metrics(metrics)
            group.done[cell.seed] = (cell_dir / "DONE").is_file()
            lengths += series(group.runs[cell.seed], "response/length_mean")[2][:1]
            saved = cell_dir / "config.yaml"
            if saved.is_file():
                import yaml

                saved_config = yaml.safe_load(saved.read_text())
                steps = max(steps, int(saved_config["train"]["steps"]))
                samplers.setdefault(cell.group, sampler_of(saved_config))
    base_file = run_dir / "base_inference" / "base_inference.json"
    base = json.loads(base_file.read_text()) if base_file.is_file() else None
    return Sweep(config, run_dir, groups, base, steps, samplers, float(np.mean(lengths)) if lengths else None)


def sampler_of(config: dict[str, Any]) -> dict[str, Any]:
    """What a cell sampled with, from its saved (or resolved) train config."""
    sampling, algorithm = config.get("sampling", {}), config.get("algorithm", {})
    return {"schedule": sampling.get("schedule"), "max_new_tokens": sampling.get("max_new_tokens"),
            "importance_correction": algorithm.get("importance_correction", True)}


def samplers_from_recipe(name: str) -> dict[str, dict[str, Any]]:
    """Group id -> sampler for a built-in sweep whose ``name`` is ``name`` (for summaries that predate ``sampler``)."""
    from importlib import resources

    from ead.training.config import load_train_config

    for path in sorted((resources.files("ead") / "recipes").iterdir()):
        if not path.name.startswith("sweep_"):
            continue
        config = load_sweep_config(Path(str(path)))
        if config.name != name:
            continue
        out: dict[str, dict[str, Any]] = {}
        for cell in config.cells():
            if cell.group not in out:
                from ead.config import config_to_dict

                train = load_train_config(config.recipe, cell.overrides, algorithm=cell.algorithm)
                out[cell.group] = sampler_of(config_to_dict(train))
        return out
    return {}


def series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float], list[float]]:
    """(steps, rollouts consumed, values) of the records that logged ``key``."""
    rows = [r for r in records if r.get(key) is not None]
    return [r["step"] for r in rows], [float(r.get("rollouts_consumed", 0)) for r in rows], [float(r[key]) for r in rows]


def aggregate(group: Group, key: str, smooth: int = 1) -> dict[str, list[float]]:
    """Per step: mean over seeds, t-interval (clipped to the metric's range), mean rollouts consumed, seeds present."""
    by_step: dict[int, list[tuple[float, float]]] = {}
    for records in group.runs.values():
        steps, rollouts, values = series(records, key)
        if smooth > 1 and not key.startswith("eval/"):
            values = moving_average(values, smooth)
        for s, r, v in zip(steps, rollouts, values):
            by_step.setdefault(s, []).append((r, v))
    out: dict[str, list[float]] = {"step": [], "rollouts": [], "mean": [], "low": [], "high": [], "n": []}
    for s in sorted(by_step):
        mean, half, n = mean_ci([v for _, v in by_step[s]])
        half = 0.0 if math.isnan(half) else half
        low, high = metric_range(key)
        out["step"].append(s)
        out["rollouts"].append(float(np.mean([r for r, _ in by_step[s]])))
        out["mean"].append(mean)
        out["low"].append(max(mean - half, low))
        out["high"].append(min(mean + half, high))
        out["n"].append(n)
    return out


# --------------------------------------------------------------------------- tables


def final_values(group: Group, key: str) -> dict[int, float]:
    """Seed -> value at the seed's last eval."""
    out = {}
    for seed, records in group.runs.items():
        _, _, values = series(records, key)
        if values:
            out[seed] = values[-1]
    return out


def average_values(group: Group, key: str) -> dict[int, float]:
    """Seed -> mean of the metric over all evals after step 0 (area under the eval curve / length)."""
    out = {}
    for seed, records in group.runs.items():
        steps, _, values = series(records, key)
        kept = [v for s, v in zip(steps, values) if s > 0]
        if kept:
            out[seed] = float(np.mean(kept))
    return out


def correct_responses(group: Group) -> dict[int, float]:
    """Seed -> correct responses sampled over the whole run: sum over steps of correct_frac x responses.

    The learning signal a sparse-reward run actually got; with GRPO a group only teaches when at
    least one of its responses is correct.
    """
    out = {}
    for seed, records in group.runs.items():
        steps = [r for r in records if "reward/correct_frac" in r and "sampling/responses" in r]
        if steps:
            out[seed] = float(sum(r["reward/correct_frac"] * r["sampling/responses"] for r in steps))
    return out


def steps_to_target(group: Group, key: str, target: float) -> dict[int, tuple[int, float] | None]:
    """Seed -> (step, rollouts) of the first eval with ``key >= target``, or None if never reached."""
    out: dict[int, tuple[int, float] | None] = {}
    for seed, records in group.runs.items():
        steps, rollouts, values = series(records, key)
        hit = next(((s, r) for s, r, v in zip(steps, rollouts, values) if v >= target), None)
        out[seed] = hit
    return out


def level_gap(final: dict[str, dict[str, Any]], prefix: str) -> tuple[str, dict[Any, float]] | None:
    """(key, seed -> value at the hardest level minus at the easiest) from a group's final entries.

    For ``prefix = eval/length_mean/difficulty_`` this is the per-run "longer on harder problems?" slope;
    its paired difference against the baseline is the difference in differences the claim needs (a
    sampler that lengthens every response alike has 0). None with fewer than two levels.
    """
    levels = sorted(int(k.removeprefix(prefix)) for k in final
                    if k.startswith(prefix) and k.removeprefix(prefix).isdigit())
    if len(levels) < 2:
        return None
    hardest, easiest = final[f"{prefix}{levels[-1]}"]["per_seed"], final[f"{prefix}{levels[0]}"]["per_seed"]
    return f"{prefix}{levels[-1]}-{levels[0]}", {s: hardest[s] - easiest[s] for s in hardest if s in easiest}


def seed_stat(per_seed: dict[Any, float]) -> dict[str, Any]:
    """A summary entry: mean, 95% t half-width and n over seeds, and the per-seed values themselves."""
    mean, half, n = mean_ci(list(per_seed.values()))
    return {"mean": mean, "ci95": half, "n": n, "per_seed": per_seed}


def summarize(sweep: Sweep) -> dict[str, Any]:
    """Every number the tables show, as plain JSON."""
    groups = []
    breakdown = sorted({k for group in sweep.groups.values() for records in group.runs.values() for r in records
                        for k in r if k.startswith(tuple(BREAKDOWNS))})
    for group in sweep.groups.values():
        last_steps = [records[-1]["step"] for records in group.runs.values() if records]
        entry: dict[str, Any] = {"group": group.id, "labels": group.labels, "algorithm": group.algorithm,
                                 "seeds": len(group.runs), "seeds_planned": len(group.seeds),
                                 "complete": sum(group.done.values()), "last_step": min(last_steps) if last_steps else 0,
                                 "final": {}, "average": {}, "targets": {}}
        entry["correct_responses"] = seed_stat(correct_responses(group))
        for key in FINAL + [k for k in breakdown if k.startswith("eval/")]:
            entry["final"][key] = seed_stat(final_values(group, key))
            entry["average"][key] = seed_stat(average_values(group, key))
        if (gap := level_gap(entry["final"], LENGTH_BY_DIFFICULTY)) is not None:
            key, values = gap
            entry["final"][key] = seed_stat(values)
        for key, targets in sweep.config.report.targets.items():
            for target in targets:
                hits = steps_to_target(group, key, target)
                reached = [h for h in hits.values() if h is not None]
                entry["targets"][f"{key}>={target:g}"] = {
                    "reached": len(reached), "of": len(hits),
                    "median_step": float(np.median([h[0] for h in reached])) if reached else None,
                    "median_rollouts": float(np.median([h[1] for h in reached])) if reached else None}
        entry["curves"] = {key: {name: [round(v, 6) for v in values] for name, values in
                                 aggregate(group, key, sweep.config.report.smooth).items()}
                           for key in [k for k, _ in CURVES] + breakdown}
        entry["sampler"] = sweep.samplers.get(group.id, {})
        groups.append(entry)
    return {"name": sweep.config.name, "description": sweep.config.description, "steps": sweep.steps,
            "baseline": sweep.config.report.baseline, "start_length": sweep.start_length,
            "groups": groups, "paired": paired_from_groups(groups, sweep.config.report.baseline),
            "base_inference": sweep.base}


def paired_from_groups(groups: list[dict[str, Any]], baseline: str | None) -> list[dict[str, Any]]:
    """Final metric of each group minus the baseline group's, paired by seed (same algorithm), from summary
    group entries (their per-seed final values): what :func:`summarize` and :func:`merge_summary` both report.

    A group's label is its first axis value (``Group.label``); the baseline of an algorithm is its group
    with that label. Seeds present in both groups are paired; JSON turns seed keys into strings, so
    seeds are compared as strings.
    """
    if baseline is None:
        return []
    label = lambda g: next(iter(g["labels"].values()), g["algorithm"])  # noqa: E731
    rows = []
    for algorithm in dict.fromkeys(g["algorithm"] for g in groups):
        ref = next((g for g in groups if label(g) == baseline and g["algorithm"] == algorithm), None)
        if ref is None:
            continue
        for group in groups:
            if group["algorithm"] != algorithm or group is ref:
                continue
            row: dict[str, Any] = {"group": group["group"], "baseline": ref["group"]}
            # The key metrics, and response length per difficulty level where the runs have levels.
            for key in PAIRED + [k for k in group["final"] if k.startswith(LENGTH_BY_DIFFICULTY) and k in ref["final"]]:
                mine = {str(s): v for s, v in group["final"][key]["per_seed"].items()}
                theirs = {str(s): v for s, v in ref["final"][key]["per_seed"].items()}
                differences = [mine[s] - theirs[s] for s in mine if s in theirs]
                mean, half, n = mean_ci(differences)
                row[key] = {"mean": mean, "ci95": half, "n": n, "mde": minimum_detectable_effect(differences)}
            rows.append(row)
    return rows


def merge_summary(fresh: dict[str, Any], committed: dict[str, Any], tolerance: float = 1e-9) -> dict[str, Any]:
    """``fresh`` (a sweep that ran only some groups, e.g. ``ead sweep --only``) completed by ``committed``.

    Groups without runs in ``fresh`` are taken from ``committed`` (a summary.json of the same sweep);
    groups with runs in both must agree seed by seed on every paired metric, or the two sets of runs do not
    reproduce each other and pairing across them would be wrong (ValueError names the group and seed).
    Paired differences are recomputed over the merged groups.
    """
    if fresh["name"] != committed["name"]:
        raise ValueError(f"cannot merge sweep {fresh['name']!r} with a summary of {committed['name']!r}")
    old = {g["group"]: g for g in committed["groups"]}
    groups = []
    for group in fresh["groups"]:
        before = old.pop(group["group"], None)
        if group["seeds"] == 0 and before is not None:
            groups.append(before)
            continue
        if before is not None:
            for key in PAIRED:
                now = {str(s): v for s, v in group["final"][key]["per_seed"].items()}
                for seed, value in before["final"][key]["per_seed"].items():
                    if str(seed) in now and abs(now[str(seed)] - value) > tolerance:
                        raise ValueError(f"group {group['group']} seed {seed}: {key} is {now[str(seed)]} now but "
                                         f"{value} in the committed summary; the runs do not reproduce, so they "
                                         "cannot be paired with it")
        groups.append(group)
    groups += old.values()  # groups the fresh sweep no longer defines
    return {**fresh, "groups": groups, "paired": paired_from_groups(groups, fresh["baseline"]),
            "base_inference": fresh["base_inference"] or committed.get("base_inference")}


def fill_samplers(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summaries written before the ``sampler`` field: recover it from the built-in recipe of the same name."""
    for summary in summaries:
        if not any(g.get("sampler") for g in summary["groups"]):
            recovered = samplers_from_recipe(summary["name"])
            for group in summary["groups"]:
                group["sampler"] = recovered.get(group["group"], {})
    return summaries


# --------------------------------------------------------------------------- entry points


def write_summaries(summaries: list[dict[str, Any]], out: Path, title: str, command: str | None) -> None:
    (out / "summary.json").write_text(json.dumps(summaries, indent=1, default=str) + "\n")
    header = f"# {title}\n\n" + (f"Command: `{command}`\n\n" if command else "")
    (out / "summary.md").write_text(header + "\n".join(markdown_tables(s) for s in summaries))


def build_report(run_dirs: list[str | Path], out: str | Path, title: str = "EAD vs fixed temperature",
                 command: str | None = None, finding: str | None = None, merge_with: str | Path | None = None) -> Path:
    """Summarize the sweep directories, write summary.md/json, then the page and its PNGs into ``out``.

    ``merge_with``: a committed summary.json whose groups complete sweeps of the same name (:func:`merge_summary`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summaries = [summarize(load_sweep(d)) for d in run_dirs]
    if merge_with is not None:
        committed = {s["name"]: s for s in json.loads(Path(merge_with).read_text())}
        summaries = [merge_summary(s, committed[s["name"]]) if s["name"] in committed else s for s in summaries]
    write_summaries(summaries, out, title, command)
    return render_report(summaries, out, title=title, command=command, finding=finding)


def report_from_summary(summary_json: str | Path, out: str | Path, title: str = "EAD vs fixed temperature",
                        command: str | None = None, finding: str | None = None) -> Path:
    """Rebuild the page from a committed ``summary.json`` (nothing is rerun; summary.json itself is left as is)."""
    summaries = fill_samplers(json.loads(Path(summary_json).read_text()))
    return render_report(summaries, out, title=title, command=command, finding=finding)
