"""``ead report``: aggregate sweeps across seeds into PNGs, tables and one self-contained HTML page.

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

Outputs in ``out``: ``report.html`` (PNGs embedded), ``<sweep>_vs_step.png``,
``<sweep>_vs_rollouts.png``, ``<sweep>_schedules.png``, ``<sweep>_base_inference.png``,
``summary.md``, ``summary.json``.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ead.experiments.grid import SweepConfig, load_sweep_config
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
            saved = cell_dir / "config.yaml"
            if saved.is_file():
                import yaml

                steps = max(steps, int(yaml.safe_load(saved.read_text())["train"]["steps"]))
    base_file = run_dir / "base_inference" / "base_inference.json"
    base = json.loads(base_file.read_text()) if base_file.is_file() else None
    return Sweep(config, run_dir, groups, base, steps)


def series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float], list[float]]:
    """(steps, rollouts consumed, values) of the records that logged ``key``."""
    rows = [r for r in records if r.get(key) is not None]
    return [r["step"] for r in rows], [float(r.get("rollouts_consumed", 0)) for r in rows], [float(r[key]) for r in rows]


def aggregate(group: Group, key: str, smooth: int = 1) -> dict[str, list[float]]:
    """Per step: mean over seeds, t-interval, mean rollouts consumed and how many seeds had the step."""
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
        out["step"].append(s)
        out["rollouts"].append(float(np.mean([r for r, _ in by_step[s]])))
        out["mean"].append(mean)
        out["low"].append(mean - half)
        out["high"].append(mean + half)
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
        groups.append(entry)
    return {"name": sweep.config.name, "description": sweep.config.description, "steps": sweep.steps,
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


# --------------------------------------------------------------------------- figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(labels: list[str]) -> dict[str, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def plot_curves(sweep: Sweep, x: str, out_png: Path) -> Path:
    """One row per algorithm, one column per metric, one line (mean) and band (95% t over seeds) per sampler."""
    plt = _pyplot()
    algorithms, colors = sweep.algorithms, _colors(sweep.labels)
    fig, axes = plt.subplots(len(algorithms), len(CURVES), figsize=(3.1 * len(CURVES), 2.7 * len(algorithms) + 0.7),
                             squeeze=False)
    for row, algorithm in enumerate(algorithms):
        for col, (key, title) in enumerate(CURVES):
            ax = axes[row][col]
            for group in (g for g in sweep.groups.values() if g.algorithm == algorithm):
                agg = aggregate(group, key, sweep.config.report.smooth)
                if not agg["step"]:
                    continue
                xs = agg["step"] if x == "step" else agg["rollouts"]
                ax.plot(xs, agg["mean"], color=colors[group.label], lw=1.4, label=group.label,
                        marker="o" if key.startswith("eval/") else None, ms=2.5)
                ax.fill_between(xs, agg["low"], agg["high"], color=colors[group.label], alpha=0.15, lw=0)
            ax.set_title(f"{algorithm}: {title}" if col == 0 else title, fontsize=9)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if row == len(algorithms) - 1:
                ax.set_xlabel("training step" if x == "step" else "rollouts consumed", fontsize=8)
    handles, names = axes[0][0].get_legend_handles_labels()
    height = fig.get_figheight()
    fig.suptitle(f"{sweep.config.name}: mean over seeds, band = 95% t-interval over seeds", fontsize=10,
                 y=1 - 0.05 / height)
    fig.legend(handles, names, loc="upper center", ncol=max(1, len(names)), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.3 / height))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.65 / height))
    fig.savefig(out_png, dpi=72)  # 8 x 2 panels; keeps report.html (PNGs inlined) under 2 MB
    plt.close(fig)
    return out_png


def plot_schedules(sweep: Sweep, out_png: Path) -> Path | None:
    """Behaviour temperature against response position at the first, middle and last step, per sampler.

    The dotted line is the mean response length at the start of training: where the curve sits
    relative to it says whether the schedule's units fit the task's responses.
    """
    import torch
    import yaml

    from ead.schedules import schedule_from_dict

    specs: dict[str, tuple[dict[str, Any], int]] = {}
    lengths = []
    for group in sweep.groups.values():
        for seed in group.runs:
            saved = sweep.dir / "cells" / f"{group.id}__s{seed}" / "config.yaml"
            if saved.is_file() and group.label not in specs:
                config = yaml.safe_load(saved.read_text())
                specs[group.label] = (config["sampling"]["schedule"], int(config["sampling"]["max_new_tokens"]))
            _, _, values = series(group.runs[seed], "response/length_mean")
            lengths += values[:1]
    if not specs:
        return None
    plt = _pyplot()
    steps = sorted({0, sweep.steps // 2, sweep.steps})
    fig, axes = plt.subplots(1, len(steps), figsize=(3.6 * len(steps), 3.0), squeeze=False)
    colors = _colors(sweep.labels)
    for ax, step in zip(axes[0], steps):
        for label, (spec, max_tokens) in specs.items():
            positions = torch.arange(max_tokens)
            if schedule_from_dict(spec).needs_logits:  # entropy-adaptive: no curve over positions alone
                continue
            taus = schedule_from_dict(spec).temperatures(positions, step)
            ax.plot(positions.numpy(), taus.numpy(), color=colors.get(label), label=label, lw=1.3)
        if lengths:
            ax.axvline(float(np.mean(lengths)), color="k", ls=":", lw=1)
        ax.set_title(f"step {step}", fontsize=9)
        ax.set_xlabel("response position t (tokens)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("sampling temperature")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"{sweep.config.name}: behaviour schedules (dotted: mean response length at step 1)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png


def plot_base_inference(sweep: Sweep, out_png: Path) -> Path | None:
    if not sweep.base:
        return None
    plt = _pyplot()
    schedules = sweep.base["schedules"]
    colors = _colors(list(schedules))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, metric in zip(axes, ("pass", "maj")):
        for label, result in schedules.items():
            curve = result[metric]
            ax.plot(sweep.base["k"], curve["mean"], marker="o", ms=3, color=colors[label], label=label)
            ax.fill_between(sweep.base["k"], curve["low"], curve["high"], color=colors[label], alpha=0.12, lw=0)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("N (samples per problem)")
        ax.set_title(f"base model, inference-time {metric}@N", fontsize=10)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png


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


def _md_to_html_table(block: str) -> str:
    """The Markdown tables above as HTML (only what :func:`markdown_tables` writes)."""
    out, rows = [], []
    for line in block.splitlines() + [""]:
        if line.startswith("|"):
            if not set(line.replace("|", "").strip()) <= {"-"}:
                rows.append([html.escape(c.strip()) for c in line.strip("|").split("|")])
            continue
        if rows:
            out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in rows[0]) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows[1:]) + "</table>")
            rows = []
        if line.startswith("### "):
            out.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    return "\n".join(out)


# --------------------------------------------------------------------------- entry point


def build_report(run_dirs: list[str | Path], out: str | Path, title: str = "EAD vs fixed temperature",
                 command: str | None = None) -> Path:
    """Write PNGs, summary.md/json and a self-contained report.html into ``out``; returns the HTML path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sweeps = [load_sweep(d) for d in run_dirs]
    summaries, figures, tables = [], [], []
    for sweep in sweeps:
        summary = summarize(sweep)
        summaries.append(summary)
        name = sweep.config.name
        pngs = [plot_curves(sweep, "step", out / f"{name}_vs_step.png"),
                plot_curves(sweep, "rollouts", out / f"{name}_vs_rollouts.png")]
        extra = [plot_schedules(sweep, out / f"{name}_schedules.png"),
                 plot_base_inference(sweep, out / f"{name}_base_inference.png")]
        figures.append((name, pngs + [p for p in extra if p is not None]))
        tables.append(markdown_tables(summary))
    (out / "summary.json").write_text(json.dumps(summaries, indent=1, default=str) + "\n")
    header = f"# {title}\n\n" + (f"Command: `{command}`\n\n" if command else "")
    (out / "summary.md").write_text(header + "\n".join(tables))
    columns = "".join(f"<div class='col'>{_md_to_html_table(t)}</div>" for t in tables)
    images = "".join(
        f"<h2>{html.escape(name)}</h2>" + "".join(
            f"<img alt='{html.escape(p.name)}' src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}'>"
            for p in pngs)
        for name, pngs in figures)
    page = ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:1em 2em}}"
            ".row{display:flex;gap:2em;flex-wrap:wrap}.col{flex:1;min-width:600px}"
            "table{border-collapse:collapse;font-size:12px;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px}"
            "img{max-width:100%;display:block;margin:.5em 0}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>"
            + (f"<p>Command: <code>{html.escape(command)}</code></p>" if command else "")
            + f"<div class='row'>{columns}</div>{images}</body></html>")
    page_path = out / "report.html"
    page_path.write_text(page)
    return page_path
