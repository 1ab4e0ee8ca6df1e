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

__all__ = ["summarize", "write_plots", "print_tables", "CURVE_MAJ_SUBSETS"]

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
                             max_subsets=CURVE_MAJ_SUBSETS, seed=seed)
    curve: dict[str, list[float]] = {"n": sizes, **{name: computed[name]["mean"] for name in computed}}
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


def write_plots(summary: dict[str, Any], out: Path) -> list[Path]:
    """``pass_at_k.png`` always; ``comparison.png`` (maj@N and pass@N) with several schedules."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    schedules = summary["schedules"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, entry in schedules.items():
        ax.plot(entry["curve"]["n"], entry["curve"]["pass"], marker="o", markersize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("pass@k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pass_at_k.png", dpi=120)
    plt.close(fig)
    written.append(out / "pass_at_k.png")
    if len(schedules) > 1:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for name, ax in zip(("maj", "pass"), axes):
            for label, entry in schedules.items():
                ax.plot(entry["curve"]["n"], entry["curve"][name], marker="o", markersize=3, label=label)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("N (samples)")
            ax.set_ylabel(f"{name}@N")
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{name}@N by sampling schedule")
            ax.grid(alpha=0.3)
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
    table = Table(title=f"ead eval: {summary['config'].get('dataset')} (n={summary['samples']})")
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
            table.add_row(label if name == "pass" else "", name, *cells)
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
            comparison.add_row(label, *(f"{curve['maj'][s - 1]:.3f} / {curve['pass'][s - 1]:.3f}" for s in sizes))
        console.print(comparison)
    for label, entry in summary["schedules"].items():
        console.print(f"{label}: {entry['num_problems']} problems, mean length {entry['response_length_mean']:.1f}, "
                      f"finished {entry['finished_frac']:.0%}, no answer {entry['no_answer_frac']:.0%}, "
                      f"grader errors {entry['grade_errors']}, timeouts {entry['grade_timeouts']}")
    if grade_stats:
        console.print(f"this session: grader errors {grade_stats['errors']}, timeouts {grade_stats['timeouts']}")
