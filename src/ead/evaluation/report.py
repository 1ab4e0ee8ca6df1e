"""Evaluation summary, plots and printed tables, computed from per-problem records only.

Metric definitions live in :mod:`ead.metrics`. Benchmark scores are means over
problems; intervals are percentile bootstraps over problems (seeded). Curves give,
for every N = 1..n, pass@N (unbiased estimator) and maj@N (averaged over up to
``CURVE_MAJ_SUBSETS`` N-subsets of the n samples, seeded), which is how the
inference-time comparison of schedules is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ead.metrics import bootstrap_ci, metric_curves

__all__ = ["summarize", "write_plots", "print_tables", "brief_label", "decay_length_tokens", "CURVE_MAJ_SUBSETS"]

CURVE_MAJ_SUBSETS = 200
"""Subsets per (problem, N) for the maj@N curve; exact when C(n, N) is at most this. The Monte
Carlo error of one problem is at most 0.5/sqrt(200) ~ 0.035 and averages out over problems."""


def _schedule_summary(records: list[dict[str, Any]], ks: list[int], n: int, resamples: int,
                      confidence: float, seed: int) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for name in ("pass", "maj", "worst", "mean"):
        for k in ks:
            values = [r["metrics"][f"{name}@{k}"] for r in records]
            low, high = bootstrap_ci(values, confidence, resamples, seed)
            metrics[f"{name}@{k}"] = {"mean": float(np.mean(values)) if values else float("nan"), "ci": [low, high]}
    sizes = list(range(1, n + 1))
    computed = metric_curves([(r["correct"], r["answer_keys"]) for r in records], sizes, ("pass", "maj", "worst", "mean"),
                             max_subsets=CURVE_MAJ_SUBSETS, seed=seed, confidence=confidence, num_resamples=resamples)
    curve: dict[str, list] = {"n": sizes, **{name: computed[name]["mean"] for name in computed}}
    for name in ("pass", "maj"):  # the plots' bands: bootstrap over problems, like the table
        curve[f"{name}_ci"] = [[low, high] for low, high in zip(computed[name]["low"], computed[name]["high"])]
    errors = [e for r in records for e in r["grade_errors"] if e is not None]
    flat = lambda key: [x for r in records for x in r[key]]  # noqa: E731
    return {
        "num_problems": len(records),
        "metrics": metrics,
        "curve": curve,
        "response_length_mean": float(np.mean(flat("lengths"))) if records else float("nan"),
        "finished_frac": float(np.mean(flat("finished"))) if records else float("nan"),
        "no_answer_frac": float(np.mean([k is None for k in flat("answer_keys")])) if records else float("nan"),
        "behaviour_logprob_per_token_mean": float(np.mean([x for r in records for x in r["behaviour_logprob"]["per_token"]]))
        if records else float("nan"),
        "mean_temperature": float(np.mean(flat("mean_temperature"))) if records else float("nan"),
        "target_logprob_per_token_mean": float(np.mean([x for r in records for x in r["target_logprob"]["per_token"]]))
        if records and "target_logprob" in records[0] else None,
        "target_entropy_per_token_mean": float(np.mean(flat("target_entropy_per_token")))
        if records and "target_entropy_per_token" in records[0] else None,
        "grade_errors": sum(not e.startswith("timeout") for e in errors),
        "grade_timeouts": sum(e.startswith("timeout") for e in errors),
    }


def summarize(records: dict[str, list[dict[str, Any]]], config: Any, resolved: dict[str, Any]) -> dict[str, Any]:
    """JSON-able summary: resolved config plus, per schedule label, metrics with CIs and curves."""
    specs = dict(zip(records, (dict(s) for s in config.schedules)))
    out = {"config": resolved, "samples": config.samples, "k": list(config.k), "schedules": {}}
    for label, recs in records.items():
        entry = _schedule_summary(recs, list(config.k), config.samples, config.bootstrap_resamples,
                                  config.confidence, config.seed)
        out["schedules"][label] = {"spec": specs[label], **entry}
    return out


def decay_length_tokens(spec: dict[str, Any], step: int) -> float | None:
    """EAD's decay length ``D_s = k * min(d0 + alpha * s, d_max)`` in tokens at ``step``; None for other schedules."""
    from ead.schedules import schedule_from_dict

    schedule = schedule_from_dict(spec)
    if not hasattr(schedule, "decay_length"):
        return None
    return float(schedule.decay_length(step))


def brief_label(spec: dict[str, Any], step: int | None = None) -> str:
    """A legend-sized name: ``fixed 0.6``, ``EAD(tau 1.2->0.1, D=10 tok)`` (D at ``step``, the schedule's units)."""
    from ead.schedules import schedule_from_dict

    schedule = schedule_from_dict(spec)
    params = schedule.to_dict()
    name = params.pop("name")
    if name == "fixed":
        return f"fixed {params['tau']:g}"
    if hasattr(schedule, "decay_length"):
        d = float(schedule.decay_length(step or 0))
        title = {"ead": "EAD", "reversed_ead": "reversed EAD"}.get(name, name)
        warm = params.get("warmup_tokens")
        warm_text = f", c={warm}" if warm else ""
        at = f" at step {step}" if step else ""
        return f"{title}(tau {params['tau_max']:g}->{params['tau_min']:g}, D={d:.0f} tok{at}{warm_text})"
    shown = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items()
                      if isinstance(v, (int, float)))
    return f"{name}({shown})" if shown else name


def _labels(summary: dict[str, Any]) -> dict[str, str]:
    """Record label -> brief label at the evaluated step (kept unique by falling back to the record label)."""
    step = summary.get("config", {}).get("step")
    brief = {label: brief_label(entry["spec"], step) for label, entry in summary["schedules"].items()}
    if len(set(brief.values())) < len(brief):
        return {label: label for label in brief}
    return brief


def _curve_axis(ax: Any, schedules: dict[str, Any], labels: dict[str, str], metric: str) -> None:
    """One line per schedule with its bootstrap band (clipped to [0, 1], the metric's range)."""
    for label, entry in schedules.items():
        curve = entry["curve"]
        (line,) = ax.plot(curve["n"], curve[metric], marker="o", markersize=3, label=labels[label])
        if curve.get(f"{metric}_ci"):
            low, high = np.clip(np.array(curve[f"{metric}_ci"], dtype=float), 0.0, 1.0).T
            ax.fill_between(curve["n"], low, high, color=line.get_color(), alpha=0.15, lw=0)
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)


def write_plots(summary: dict[str, Any], out: Path) -> list[Path]:
    """``pass_at_k.png`` always; ``comparison.png`` (maj@N and pass@N) with several schedules."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    schedules = summary["schedules"]
    labels = _labels(summary)
    step = summary.get("config", {}).get("step")
    band = "band: 95% bootstrap over problems"
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    _curve_axis(ax, schedules, labels, "pass")
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("pass@k")
    ax.set_title(f"pass@k ({band}; schedules at step {step or 0})", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pass_at_k.png", dpi=120)
    plt.close(fig)
    written.append(out / "pass_at_k.png")
    if len(schedules) > 1:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for name, ax in zip(("maj", "pass"), axes):
            _curve_axis(ax, schedules, labels, name)
            ax.set_xlabel("N (samples)")
            ax.set_ylabel(f"{name}@N")
            ax.set_title(f"{name}@N by sampling schedule ({band})", fontsize=10)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "comparison.png", dpi=120)
        plt.close(fig)
        written.append(out / "comparison.png")
    return written


def print_tables(summary: dict[str, Any], grade_stats: dict[str, int] | None = None) -> None:
    """Metrics table (mean and CI per k) and, with several schedules, the maj@N / pass@N comparison."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    ks = summary["k"]
    names = _labels(summary)
    table = Table(title=f"ead eval: {summary['config'].get('dataset')} (n={summary['samples']}, "
                        f"schedules at training step {summary['config'].get('step') or 0})")
    table.add_column("schedule")
    table.add_column("metric")
    for k in ks:
        table.add_column(f"@{k}", justify="right")
    for label, entry in summary["schedules"].items():
        for name in ("pass", "maj", "worst", "mean"):
            cells = []
            for k in ks:
                m = entry["metrics"][f"{name}@{k}"]
                cells.append(f"{m['mean']:.3f} [{m['ci'][0]:.2f}, {m['ci'][1]:.2f}]")
            table.add_row(names[label] if name == "pass" else "", name, *cells)
    console.print(table)
    if len(summary["schedules"]) > 1:
        n = summary["samples"]
        sizes = sorted({2**i for i in range(n.bit_length()) if 2**i <= n} | {n})
        comparison = Table(title="inference-time comparison: maj@N / pass@N")
        comparison.add_column("schedule")
        for size in sizes:
            comparison.add_column(f"N={size}", justify="right")
        for label, entry in summary["schedules"].items():
            curve = entry["curve"]
            comparison.add_row(names[label], *(f"{curve['maj'][s - 1]:.3f} / {curve['pass'][s - 1]:.3f}" for s in sizes))
        console.print(comparison)
    for label, entry in summary["schedules"].items():
        console.print(f"{label}: {entry['num_problems']} problems, mean length {entry['response_length_mean']:.1f}, "
                      f"finished {entry['finished_frac']:.0%}, no answer {entry['no_answer_frac']:.0%}, "
                      f"grader errors {entry['grade_errors']}, timeouts {entry['grade_timeouts']}")
    if grade_stats:
        console.print(f"this session: grader errors {grade_stats['errors']}, timeouts {grade_stats['timeouts']}")
