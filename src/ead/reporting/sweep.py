"""``ead report``: aggregate sweeps across seeds into PNGs, tables and one self-contained HTML page.

Two stages, so that a committed report can be rebuilt from its committed data: :func:`summarize`
turns a sweep directory into plain JSON (every number the page shows, per-step curves included),
:func:`render_report` draws the page from those summaries alone (``ead report --from-summary``).
The page opens with the finding (the key paired difference with its interval), then one figure
per metric, then the tables.

For each sweep (a task), cells are grouped by everything but the seed. Per group:

* curves of eval Pass@16, Worst@16, Mean@16, training reward, policy entropy, response length,
  the importance-weight truncation fraction and the mean behaviour temperature, against the
  training step and against rollouts consumed: the mean over seeds with a 95% Student-t
  interval over seeds (seeds are the independent replicates; held-out problems are shared, so
  their noise is not independent); per-step training metrics are smoothed per seed with a
  trailing moving average first;
* final metrics (the last eval of the run) with the same interval, plus the average over all
  evals (a sample-efficiency summary: the area under the eval curve divided by its length);
* paired differences against a baseline group (same algorithm, same seed);
* steps (and rollouts) needed to reach fixed targets: per seed the first eval at or above the
  target; the table gives the median over seeds and how many seeds reached it;
* the base model's inference-time pass@N / maj@N per schedule (from the sweep's base job).

Outputs in ``out``: ``report.html`` (PNGs embedded), ``figures/*.png`` (one plot each),
``summary.md``, ``summary.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ead.experiments.grid import SweepConfig, load_sweep_config
from ead.reporting import html as page_html
from ead.training.logger import read_metrics

CURVES = [
    ("eval/pass@16", "eval Pass@16"),
    ("eval/worst@16", "eval Worst@16"),
    ("eval/mean@16", "eval Mean@16"),
    ("reward/mean", "training reward"),
    ("entropy/mean", "policy entropy (tau=1)"),
    ("response/length_mean", "response length (tokens)"),
    ("is/truncated_frac", "IS weight truncated frac"),
    ("behaviour/temperature_mean", "mean sampling temperature"),
]
FINAL = ["eval/pass@16", "eval/worst@16", "eval/mean@16", "eval/maj@16", "eval/entropy", "eval/response_length"]
PAIRED = ["eval/pass@16", "eval/worst@16", "eval/mean@16"]
KEY_METRIC = "eval/mean@16"
"""The finding's number: final held-out Mean@16 (the expected accuracy of one sample at tau = 1)."""
RANGES = {"eval/pass@16": (0.0, 1.0), "eval/worst@16": (0.0, 1.0), "eval/mean@16": (0.0, 1.0),
          "eval/maj@16": (0.0, 1.0), "reward/mean": (0.0, 1.0), "is/truncated_frac": (0.0, 1.0),
          "entropy/mean": (0.0, math.inf), "response/length_mean": (0.0, math.inf),
          "behaviour/temperature_mean": (0.0, math.inf)}
"""Where each metric can live: interval bands are clipped to it (a Pass@16 band never reaches 1.2)."""


# --------------------------------------------------------------------------- statistics

# Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30 (scipy is only a dev dependency).
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t_quantile_975(df: int) -> float:
    """t_{0.975, df}: from the table up to df = 30, the normal 1.96 beyond (error < 2%)."""
    return _T975[df - 1] if df <= len(_T975) else 1.96


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
        low, high = RANGES.get(key, (-math.inf, math.inf))
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


def summarize(sweep: Sweep) -> dict[str, Any]:
    """Every number the tables show, as plain JSON."""
    groups = []
    for group in sweep.groups.values():
        last_steps = [records[-1]["step"] for records in group.runs.values() if records]
        entry: dict[str, Any] = {"group": group.id, "labels": group.labels, "algorithm": group.algorithm,
                                 "seeds": len(group.runs), "seeds_planned": len(group.seeds),
                                 "complete": sum(group.done.values()), "last_step": min(last_steps) if last_steps else 0,
                                 "final": {}, "average": {}, "targets": {}}
        correct = correct_responses(group)
        mean, half, n = mean_ci(list(correct.values()))
        entry["correct_responses"] = {"mean": mean, "ci95": half, "n": n, "per_seed": correct}
        for key in FINAL:
            for name, values in (("final", final_values(group, key)), ("average", average_values(group, key))):
                mean, half, n = mean_ci(list(values.values()))
                entry[name][key] = {"mean": mean, "ci95": half, "n": n, "per_seed": values}
        for key, targets in sweep.config.report.targets.items():
            for target in targets:
                hits = steps_to_target(group, key, target)
                reached = [h for h in hits.values() if h is not None]
                entry["targets"][f"{key}>={target:g}"] = {
                    "reached": len(reached), "of": len(hits),
                    "median_step": float(np.median([h[0] for h in reached])) if reached else None,
                    "median_rollouts": float(np.median([h[1] for h in reached])) if reached else None}
        entry["curves"] = {key: {name: [round(v, 6) for v in values] for name, values in
                                 aggregate(group, key, sweep.config.report.smooth).items()} for key, _ in CURVES}
        entry["sampler"] = sweep.samplers.get(group.id, {})
        groups.append(entry)
    return {"name": sweep.config.name, "description": sweep.config.description, "steps": sweep.steps,
            "baseline": sweep.config.report.baseline, "start_length": sweep.start_length,
            "groups": groups, "paired": paired_differences(sweep), "base_inference": sweep.base}


def paired_differences(sweep: Sweep) -> list[dict[str, Any]]:
    """Final metric of each group minus the baseline group's, paired by seed (same algorithm)."""
    baseline = sweep.config.report.baseline
    if baseline is None:
        return []
    rows = []
    for algorithm in sweep.algorithms:
        ref = next((g for g in sweep.groups.values() if g.label == baseline and g.algorithm == algorithm), None)
        if ref is None:
            continue
        for group in sweep.groups.values():
            if group.algorithm != algorithm or group is ref:
                continue
            row: dict[str, Any] = {"group": group.id, "baseline": ref.id}
            for key in PAIRED:
                mine, theirs = final_values(group, key), final_values(ref, key)
                diffs = [mine[s] - theirs[s] for s in mine if s in theirs]
                mean, half, n = mean_ci(diffs)
                row[key] = {"mean": mean, "ci95": half, "n": n}
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- tables as text


def _fmt(stat: dict[str, Any], digits: int = 3) -> str:
    if stat["n"] == 0 or not math.isfinite(stat["mean"]):
        return "-"
    half = stat["ci95"]
    return f"{stat['mean']:.{digits}f} ± {half:.{digits}f}" if math.isfinite(half) else f"{stat['mean']:.{digits}f}"


def markdown_tables(summary: dict[str, Any]) -> str:
    """Final metrics, averages, paired differences, steps-to-target and base inference, as Markdown."""
    lines = [f"### {summary['name']}", "", summary["description"], ""]
    head = "| group | seeds | last step | " + " | ".join(k.removeprefix("eval/") for k in FINAL) + " |"
    lines += ["Final eval (last eval of each run; mean ± 95% t-interval over seeds):", "", head,
              "|" + "---|" * (len(FINAL) + 3)]
    for g in summary["groups"]:
        seeds = f"{g['seeds']}/{g['seeds_planned']}" + ("" if g["complete"] == g["seeds_planned"] else " (partial)")
        lines.append(f"| {g['group']} | {seeds} | {g['last_step']} | " + " | ".join(_fmt(g["final"][k]) for k in FINAL) + " |")
    lines += ["", "Average over all evals after step 0 (sample efficiency; mean ± 95% t over seeds):", "",
              "| group | " + " | ".join(k.removeprefix("eval/") for k in PAIRED) + " |", "|" + "---|" * (len(PAIRED) + 1)]
    for g in summary["groups"]:
        lines.append(f"| {g['group']} | " + " | ".join(_fmt(g["average"][k]) for k in PAIRED) + " |")
    if summary["paired"]:
        lines += ["", f"Final minus baseline `{summary['paired'][0]['baseline'].split('__')[0]}`, paired by seed "
                  "(mean ± 95% t; an interval containing 0 is no evidence of a difference):", "",
                  "| group | " + " | ".join(k.removeprefix("eval/") for k in PAIRED) + " |", "|" + "---|" * (len(PAIRED) + 1)]
        for row in summary["paired"]:
            lines.append(f"| {row['group']} | " + " | ".join(_fmt(row[k]) for k in PAIRED) + " |")
    if any(g.get("correct_responses", {}).get("n") for g in summary["groups"]):
        lines += ["", "Training signal: correct responses sampled over the run (mean ± 95% t over seeds; per seed):", "",
                  "| group | correct responses | per seed |", "|---|---|---|"]
        for g in summary["groups"]:
            stat = g["correct_responses"]
            per_seed = " / ".join(f"{v:.0f}" for _, v in sorted(stat["per_seed"].items()))
            lines.append(f"| {g['group']} | {_fmt(stat, digits=1)} | {per_seed} |")
    target_keys = list(summary["groups"][0]["targets"]) if summary["groups"] else []
    if target_keys:
        lines += ["", "Steps to target (median over seeds that reached it; reached/seeds; median rollouts):", "",
                  "| group | " + " | ".join(target_keys) + " |", "|" + "---|" * (len(target_keys) + 1)]
        for g in summary["groups"]:
            cells = []
            for key in target_keys:
                t = g["targets"][key]
                cells.append("never" if t["median_step"] is None else
                             f"{t['median_step']:.0f} ({t['reached']}/{t['of']}; {t['median_rollouts']:.0f})")
            lines.append(f"| {g['group']} | " + " | ".join(cells) + " |")
    base = summary["base_inference"]
    if base:
        ks = base["k"]
        lines += ["", f"Base model, inference time ({base['num_problems']} held-out problems, N samples each; "
                  "mean over problems):", "",
                  "| schedule | " + " | ".join(f"pass@{k}" for k in ks) + " | " + " | ".join(f"maj@{k}" for k in ks) + " |",
                  "|" + "---|" * (2 * len(ks) + 1)]
        for label, r in base["schedules"].items():
            lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in r["pass"]["mean"]) + " | "
                         + " | ".join(f"{v:.3f}" for v in r["maj"]["mean"]) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- figures (one plot per image)

ALGORITHM_MARKERS = {"grpo": "o", "dapo": "s", "dr_grpo": "^", "rloo": "D"}


def _colors(labels: list[str]) -> dict[str, Any]:
    cmap = page_html.pyplot().get_cmap("tab10")
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def _style(label: str) -> str:
    """Fixed temperatures dashed, annealed schedules solid: the two families read apart at a glance."""
    return "--" if label.startswith("fixed") else "-"


def _group_label(group: dict[str, Any]) -> str:
    return next(iter(group["labels"].values()), group["algorithm"])


def _labels(summary: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(_group_label(g) for g in summary["groups"]))


def _algorithms(summary: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(g["algorithm"] for g in summary["groups"]))


def plot_curve(summary: dict[str, Any], algorithm: str, key: str, title: str, x: str, out_png: Path) -> Path | None:
    """One metric of one algorithm: mean over seeds per sampler, band = 95% t-interval over seeds, clipped."""
    groups = [g for g in summary["groups"] if g["algorithm"] == algorithm and g.get("curves", {}).get(key, {}).get("step")]
    if not groups:
        return None
    plt = page_html.pyplot()
    colors = _colors(_labels(summary))
    fig, ax = plt.subplots(figsize=page_html.FIGSIZE)
    for group in groups:
        curve, label = group["curves"][key], _group_label(group)
        xs = curve["step"] if x == "step" else curve["rollouts"]
        ax.plot(xs, curve["mean"], color=colors[label], ls=_style(label), lw=1.6, label=label,
                marker="o" if key.startswith("eval/") else None, ms=3)
        ax.fill_between(xs, curve["low"], curve["high"], color=colors[label], alpha=0.10, lw=0)
    low, high = RANGES.get(key, (-math.inf, math.inf))
    if (low, high) == (0.0, 1.0):
        ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training step" if x == "step" else "rollouts consumed (responses sampled)")
    ax.set_ylabel(title)
    ax.set_title(f"{summary['name']}, {algorithm.upper()}: {title} vs {'training step' if x == 'step' else 'rollouts'}",
                 fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="best", framealpha=0.85)
    return page_html.save(fig, out_png)


def plot_final(summary: dict[str, Any], key: str, out_png: Path, paired: bool = False) -> Path | None:
    """Final value (or paired difference against the baseline) per sampler: dot = mean, bar = 95% t over seeds."""
    plt = page_html.pyplot()
    labels = _labels(summary)
    algorithms = _algorithms(summary)
    fig, ax = plt.subplots(figsize=(page_html.FIGSIZE[0], 0.42 * len(labels) + 1.3))
    drawn = False
    for a, algorithm in enumerate(algorithms):
        offset = (a - (len(algorithms) - 1) / 2) * 0.22
        for i, label in enumerate(labels):
            if paired:
                group_id = next((g["group"] for g in summary["groups"] if _group_label(g) == label
                                 and g["algorithm"] == algorithm), None)
                row = next((r for r in summary["paired"] if r["group"] == group_id), None)
                stat = row.get(key) if row else None
                lo, hi = -1.0, 1.0
            else:
                group = next((g for g in summary["groups"] if _group_label(g) == label and g["algorithm"] == algorithm), None)
                stat = group["final"].get(key) if group else None
                lo, hi = RANGES.get(key, (-math.inf, math.inf))
            if not stat or not stat["n"] or not math.isfinite(stat["mean"]):
                continue
            half = stat["ci95"] if math.isfinite(stat["ci95"]) else 0.0
            left, right = max(stat["mean"] - half, lo), min(stat["mean"] + half, hi)
            ax.errorbar(stat["mean"], i + offset, xerr=[[stat["mean"] - left], [right - stat["mean"]]],
                        fmt=ALGORITHM_MARKERS.get(algorithm, "o"), color=f"C{a}", capsize=3, ms=5,
                        label=algorithm.upper() if i == 0 or not drawn else None)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    name = key.removeprefix("eval/").replace("@", "@")
    if paired:
        ax.axvline(0.0, color="k", lw=0.8)
        baseline = summary.get("baseline") or summary["paired"][0]["baseline"].split("__")[0]
        ax.set_xlabel(f"final {name} minus {baseline}, paired by seed")
        ax.set_title(f"{summary['name']}: final {name} minus {baseline} (95% t-interval over seeds)", fontsize=11)
    else:
        if RANGES.get(key) == (0.0, 1.0):
            ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel(f"final held-out {name}")
        ax.set_title(f"{summary['name']}: final {name} per sampler (95% t-interval over seeds)", fontsize=11)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="best")
    return page_html.save(fig, out_png)


def plot_schedule(summary: dict[str, Any], step: int, out_png: Path) -> Path | None:
    """Behaviour temperature against response position at one training step, one line per sampler.

    The dotted line is the mean response length at the start of training: where a curve sits relative
    to it says whether the schedule's units fit the task's responses.
    """
    import torch

    from ead.schedules import schedule_from_dict

    specs = {}
    for group in summary["groups"]:
        sampler = group.get("sampler") or {}
        if sampler.get("schedule") and _group_label(group) not in specs:
            specs[_group_label(group)] = (sampler["schedule"], int(sampler.get("max_new_tokens") or 24))
    if not specs:
        return None
    plt = page_html.pyplot()
    colors = _colors(_labels(summary))
    fig, ax = plt.subplots(figsize=page_html.FIGSIZE)
    for label, (spec, max_tokens) in specs.items():
        positions = torch.arange(max_tokens)
        taus = schedule_from_dict(spec).temperatures(positions, step)
        ax.plot(positions.numpy(), taus.numpy(), color=colors.get(label), ls=_style(label), label=label, lw=1.5)
    if summary.get("start_length"):
        ax.axvline(summary["start_length"], color="k", ls=":", lw=1, label="mean response length")
    ax.set_xlabel("response position t (tokens)")
    ax.set_ylabel("behaviour temperature tau_t")
    ax.set_title(f"{summary['name']}: sampling temperature by position at training step {step}", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return page_html.save(fig, out_png)


def plot_base(summary: dict[str, Any], metric: str, out_png: Path) -> Path | None:
    """The base model's inference-time pass@N or maj@N per schedule, band = the base job's interval, clipped."""
    base = summary.get("base_inference")
    if not base:
        return None
    plt = page_html.pyplot()
    fig, ax = plt.subplots(figsize=page_html.FIGSIZE)
    for i, (label, result) in enumerate(base["schedules"].items()):
        curve = result[metric]
        ax.plot(base["k"], curve["mean"], marker="o", ms=3, color=f"C{i}", ls=_style(label), label=label)
        ax.fill_between(base["k"], np.clip(curve["low"], 0, 1), np.clip(curve["high"], 0, 1), color=f"C{i}",
                        alpha=0.12, lw=0)
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("N (samples per problem)")
    ax.set_ylabel(f"{metric}@N")
    ax.set_title(f"{summary['name']}: base model, inference-time {metric}@N ({base['num_problems']} problems)",
                 fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return page_html.save(fig, out_png)


# --------------------------------------------------------------------------- the page


def key_numbers(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The finding's numbers: each annealed sampler's paired Mean@16 difference against the baseline, per algorithm."""
    rows = []
    for row in summary["paired"]:
        group = next(g for g in summary["groups"] if g["group"] == row["group"])
        stat = row.get(KEY_METRIC)
        if stat and stat["n"]:
            rows.append({"sampler": _group_label(group), "algorithm": group["algorithm"],
                         "baseline": row["baseline"].split("__")[0], **stat})
    return rows


def _pm(stat: dict[str, Any]) -> str:
    half = stat["ci95"]
    return f"{stat['mean']:+.3f} ± {half:.3f}" if math.isfinite(half) else f"{stat['mean']:+.3f}"


def lead_sentence(summary: dict[str, Any], focus: str | None = None) -> str | None:
    """``countdown: final Mean@16 of ead-tis minus fixed-1.0, paired by seed: -0.014 ± 0.105 (GRPO), ...``."""
    rows = key_numbers(summary)
    focus = focus or next((r["sampler"] for r in rows if r["sampler"].startswith("ead")), rows[0]["sampler"] if rows else None)
    picked = [r for r in rows if r["sampler"] == focus]
    if not picked:
        return None
    seeds = max(r["n"] for r in picked)
    parts = ", ".join(f"{_pm(r)} ({r['algorithm'].upper()})" for r in picked)
    return (f"**{summary['name']}**: final held-out Mean@16 of `{focus}` minus `{picked[0]['baseline']}`, paired by "
            f"seed, mean ± 95% t-interval over {seeds} seeds: {parts}.")


def sampler_legend(summary: dict[str, Any]) -> list[list[str]]:
    """Rows of the legend table: short label -> schedule in words, TIS on/off."""
    from ead.evaluation.report import brief_label

    rows, seen = [], set()
    for group in summary["groups"]:
        label = _group_label(group)
        sampler = group.get("sampler") or {}
        if label in seen or not sampler.get("schedule"):
            continue
        seen.add(label)
        spec = sampler["schedule"]
        tis = "on" if sampler.get("importance_correction", True) else "off"
        alpha = spec.get("alpha")
        growth = "" if alpha is None else (f"; D grows {alpha * spec.get('unit', 20.0):g} tokens per step" if alpha
                                           else "; D constant")
        rows.append([label, brief_label(spec, 0) + growth, f"TIS {tis}"])
    return rows


def _summary_tables(summary: dict[str, Any]) -> str:
    """The tables of one sweep, each in its own scrolling box, stacked (never side by side)."""
    out = [f"<p>{page_html.inline(summary['description'])}</p>"]
    head = ["group", "seeds", "last step", *[k.removeprefix("eval/") for k in FINAL]]
    rows = [[g["group"], f"{g['seeds']}/{g['seeds_planned']}" + ("" if g["complete"] == g["seeds_planned"] else " (partial)"),
             g["last_step"], *[_fmt(g["final"][k]) for k in FINAL]] for g in summary["groups"]]
    out += ["<h4>Final eval (last eval of each run; mean ± 95% t-interval over seeds)</h4>", page_html.table(rows, head)]
    if summary["paired"]:
        baseline = summary["paired"][0]["baseline"].split("__")[0]
        rows = [[r["group"], *[_fmt(r[k]) for k in PAIRED]] for r in summary["paired"]]
        out += [f"<h4>Final minus <code>{baseline}</code>, paired by seed (an interval containing 0 is no evidence "
                "of a difference)</h4>", page_html.table(rows, ["group", *[k.removeprefix("eval/") for k in PAIRED]])]
    rows = [[g["group"], *[_fmt(g["average"][k]) for k in PAIRED]] for g in summary["groups"]]
    out += ["<h4>Average over all evals after step 0 (sample efficiency)</h4>",
            page_html.table(rows, ["group", *[k.removeprefix("eval/") for k in PAIRED]])]
    if any(g.get("correct_responses", {}).get("n") for g in summary["groups"]):
        rows = [[g["group"], _fmt(g["correct_responses"], digits=1),
                 " / ".join(f"{v:.0f}" for _, v in sorted(g["correct_responses"]["per_seed"].items()))]
                for g in summary["groups"]]
        out += ["<h4>Training signal: correct responses sampled over the run</h4>",
                page_html.table(rows, ["group", "correct responses", "per seed"])]
    target_keys = list(summary["groups"][0]["targets"]) if summary["groups"] else []
    if target_keys:
        rows = [[g["group"], *["never" if g["targets"][k]["median_step"] is None else
                               f"{g['targets'][k]['median_step']:.0f} ({g['targets'][k]['reached']}/{g['targets'][k]['of']})"
                               for k in target_keys]] for g in summary["groups"]]
        out += ["<h4>Steps to target: median step over the seeds that reached it (reached/seeds)</h4>",
                page_html.table(rows, ["group", *target_keys])]
    base = summary.get("base_inference")
    if base:
        rows = [[label, *[f"{v:.3f}" for v in r["pass"]["mean"]], *[f"{v:.3f}" for v in r["maj"]["mean"]]]
                for label, r in base["schedules"].items()]
        out += [f"<h4>Base model, inference time ({base['num_problems']} held-out problems)</h4>",
                page_html.table(rows, ["schedule", *[f"pass@{k}" for k in base["k"]], *[f"maj@{k}" for k in base["k"]]])]
    return "".join(out)


def render_report(summaries: list[dict[str, Any]], out: str | Path, title: str = "EAD vs fixed temperature",
                  command: str | None = None, finding: str | None = None) -> Path:
    """Draw ``report.html`` and ``figures/*.png`` from summaries alone (what :func:`summarize` returns)."""
    out = Path(out)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for samples in summaries:  # summaries written before the sampler field: recover it from the built-in recipe
        if not any(g.get("sampler") for g in samples["groups"]):
            recovered = samplers_from_recipe(samples["name"])
            for group in samples["groups"]:
                group["sampler"] = recovered.get(group["group"], {})
    lead = [s for s in (lead_sentence(summary) for summary in summaries) if s]
    body = [f"<h1>{page_html.inline(title)}</h1>", "<section class='finding'>"]
    if finding:
        body += [f"<p>{page_html.inline(p)}</p>" for p in finding.strip().split("\n\n")]
    if lead:
        body.append("<p>Key numbers: " + " ".join(page_html.inline(s) for s in lead) + "</p>")
    body.append("</section>")
    if command:
        body.append(f"<p>Command: <code>{page_html.html.escape(command)}</code></p>")
    body.append("<nav><p>" + " · ".join(f"<a href='#{s['name']}'>{page_html.html.escape(s['name'])}</a>"
                                        for s in summaries) + "</p></nav>")
    for summary in summaries:
        name = summary["name"]
        png = lambda stem: fig_dir / f"{name}_{stem}.png"  # noqa: E731
        body.append(f"<h2 id='{name}'>{page_html.html.escape(name)}</h2>")
        legend = sampler_legend(summary)
        if legend:
            body += ["<h3>Samplers</h3>", page_html.table(legend, ["label", "schedule (at step 0)", "importance correction"],
                                                          numeric=False)]
        key = [plot_final(summary, KEY_METRIC, png("paired_mean16"), paired=True)]
        finals = [plot_final(summary, k, png(f"final_{k.split('/')[1].replace('@', '')}")) for k in PAIRED]
        captions = ["The key number: final Mean@16 of each sampler minus the baseline, paired by seed"] + [
            f"Final {k.removeprefix('eval/')} per sampler (dot: mean over seeds; bar: 95% t-interval, clipped to [0, 1])"
            for k in PAIRED]
        body += ["<h3>The finding: final metrics per sampler</h3>", page_html.figures(
            [page_html.figure(p, c) for p, c in zip(key + finals, captions) if p is not None])]
        for x, heading in (("step", "Training curves against the training step"),
                           ("rollouts", "Training curves against rollouts consumed")):
            items = []
            for key_name, metric_title in CURVES:
                for algorithm in _algorithms(summary):
                    path = plot_curve(summary, algorithm, key_name, metric_title, x,
                                      png(f"{x}_{algorithm}_{key_name.replace('/', '_').replace('@', '')}"))
                    if path is not None:
                        items.append(page_html.figure(path, f"{algorithm.upper()}: {metric_title} vs "
                                                            f"{'training step' if x == 'step' else 'rollouts consumed'}; "
                                                            "band: 95% t-interval over seeds"))
            if items:
                block = page_html.figures(items)
                body.append(f"<h3>{heading}</h3>{block}" if x == "step" else
                            f"<details><summary>{heading}</summary>{block}</details>")
            elif x == "step":
                body.append("<p><em>Per-step curves are not in this summary (it was written before "
                            "<code>ead report</code> stored them); rebuilding from the sweep directories "
                            "(<code>docs/results/reproduce.sh</code>) draws them.</em></p>")
        steps = sorted({0, int(summary.get("steps") or 0)})
        extra = [plot_schedule(summary, step, png(f"schedule_step{step}")) for step in steps]
        extra += [plot_base(summary, metric, png(f"base_{metric}")) for metric in ("pass", "maj")]
        dotted = " (dotted: mean response length at the start)" if summary.get("start_length") else ""
        captions = [f"Behaviour temperature by response position at training step {step}{dotted}" for step in steps]
        captions += [f"Base model at inference time: {m}@N per schedule (band: the base job's interval, clipped to [0, 1])"
                     for m in ("pass", "maj")]
        items = [page_html.figure(p, c) for p, c in zip(extra, captions) if p is not None]
        if items:
            body += ["<h3>Schedules and the base model at inference time</h3>", page_html.figures(items)]
        body += ["<h3>Tables</h3>", _summary_tables(summary)]
    page_path = out / "report.html"
    page_path.write_text(page_html.page(title, "".join(body)))
    return page_path


# --------------------------------------------------------------------------- entry points


def write_summaries(summaries: list[dict[str, Any]], out: Path, title: str, command: str | None) -> None:
    (out / "summary.json").write_text(json.dumps(summaries, indent=1, default=str) + "\n")
    header = f"# {title}\n\n" + (f"Command: `{command}`\n\n" if command else "")
    (out / "summary.md").write_text(header + "\n".join(markdown_tables(s) for s in summaries))


def build_report(run_dirs: list[str | Path], out: str | Path, title: str = "EAD vs fixed temperature",
                 command: str | None = None, finding: str | None = None) -> Path:
    """Summarize the sweep directories, write summary.md/json, then the page and its PNGs into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summaries = [summarize(load_sweep(d)) for d in run_dirs]
    write_summaries(summaries, out, title, command)
    return render_report(summaries, out, title=title, command=command, finding=finding)


def report_from_summary(summary_json: str | Path, out: str | Path, title: str = "EAD vs fixed temperature",
                        command: str | None = None, finding: str | None = None) -> Path:
    """Rebuild the page from a committed ``summary.json`` (nothing is rerun; summary.json itself is left as is)."""
    summaries = json.loads(Path(summary_json).read_text())
    for summary in summaries:  # JSON turned the per-seed int keys into strings; the page does not care
        summary.setdefault("baseline", None)
    return render_report(summaries, out, title=title, command=command, finding=finding)
