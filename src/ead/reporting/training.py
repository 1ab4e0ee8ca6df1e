"""One run's report: ``report.html`` (self-contained) and ``training_curves.png`` in the run directory.

Read top to bottom the page says what ran (the resolved config), what EAD changed (the behaviour
temperature by position at a few steps, from the saved schedule, and its mean over training, from
``metrics.jsonl``), then one figure per metric and the first/last value of every logged metric.
Written by ``ead train`` after training: the command reads ``metrics.jsonl`` (with the trainer's
reader) and passes the records here, so reports import nothing from the trainer and the trainer
nothing from reports.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

from ead.reporting import html as page_html
from ead.reporting.breakdowns import BREAKDOWNS, breakdown_label, family_title

__all__ = ["panels", "plot_training_curves", "schedule_steps", "write_training_report"]

# (metric key, title); eval keys use the run's largest k, found in the records.
CURVES = [
    ("reward/mean", "training reward (mean over rollouts)"),
    ("eval/pass@K", "eval Pass@K (held-out, tau = 1)"),
    ("eval/mean@K", "eval Mean@K (= Pass@1, the expected accuracy of one sample)"),
    ("eval/worst@K", "eval Worst@K (all K samples correct)"),
    ("eval/maj@K", "eval maj@K (majority vote of K samples)"),
    ("entropy/mean", "policy entropy at tau = 1 (nats per token)"),
    ("response/length_mean", "response length (tokens)"),
    ("is/truncated_frac", "share of importance weights truncated at C"),
    ("is/kl_behaviour_to_pi", "KL(mu || pi_old) estimate per token"),
    ("cov/mean", "token covariance Cov(A, log pi) (Clip-/KL-Cov)"),  # panels of absent metrics are skipped
    ("siren/entropy_masked", "SIREN masked nucleus entropy"),
]
TEMPERATURE_KEY = "behaviour/temperature_mean"
UNIT_RANGE = ("reward/", "eval/pass", "eval/mean", "eval/worst", "eval/maj")


def _largest_k(records: list[dict[str, Any]]) -> int | None:
    ks = {int(m.group(1)) for r in records for key in r if (m := re.fullmatch(r"eval/pass@(\d+)", key))}
    return max(ks) if ks else None


def panels(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The (key, title) of every curve this run logged, eval keys at its largest k; no metric twice.

    ``eval/pass@1`` is left out: it is the same number as ``eval/mean@K`` (both are the share of
    correct samples, c / n).
    """
    k = _largest_k(records)
    out = []
    for key, title in CURVES:
        if "@K" in key:
            if k is None:
                continue
            key, title = key.replace("@K", f"@{k}"), title.replace("@K", f"@{k}").replace(" K ", f" {k} ")
        if any(r.get(key) is not None for r in records):
            out.append((key, title))
    return out


def _points(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    rows = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    return [s for s, _ in rows], [float(v) for _, v in rows]


def _plot_metric(records: list[dict[str, Any]], key: str, title: str, out_png: Path) -> Path:
    plt = page_html.pyplot()
    fig, ax = plt.subplots(figsize=page_html.FIGSIZE)
    steps, values = _points(records, key)
    ax.plot(steps, values, marker="o" if key.startswith("eval/") else None, ms=4, lw=1.6)
    if key.startswith(UNIT_RANGE):
        page_html.set_unit_limits(ax, values)
    if key == TEMPERATURE_KEY:
        ax.axhline(1.0, color="grey", ls="--", lw=0.9, label="tau = 1 (the policy being trained)")
        ax.legend(fontsize=9)
    ax.set_xlabel("training step")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    return page_html.save(fig, out_png)


def _plot_family(records: list[dict[str, Any]], prefix: str, out_png: Path) -> Path | None:
    """Every key starting with ``prefix`` as one line of one panel (levels, or position buckets, in order)."""
    keys = sorted({k for r in records for k in r if k.startswith(prefix)})
    if not keys:
        return None
    plt = page_html.pyplot()
    fig, ax = plt.subplots(figsize=page_html.FIGSIZE)
    drawn: list[float] = []
    for key in keys:
        steps, values = _points(records, key)
        drawn += values
        ax.plot(steps, values, marker="o" if key.startswith("eval/") else None, ms=4, lw=1.6,
                label=breakdown_label(key))
    if "correct_frac" in prefix:
        page_html.set_unit_limits(ax, drawn)
    if prefix.startswith("behaviour/"):
        ax.axhline(1.0, color="grey", ls="--", lw=0.9)
    ax.set_xlabel("training step")
    ax.set_title(family_title(prefix), fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return page_html.save(fig, out_png)


def schedule_steps(total_steps: int) -> list[int]:
    """The steps at which the schedule is drawn: 0, a third, two thirds and the last step."""
    return sorted({0, round(total_steps / 3), round(2 * total_steps / 3), total_steps})


def _plot_schedule(config: dict[str, Any], records: list[dict[str, Any]], out_png: Path) -> Path | None:
    """tau_t against the response position at a few training steps, from the run's saved schedule."""
    import torch

    from ead.schedules import schedule_from_dict

    sampling = config.get("sampling") or {}
    if not sampling.get("schedule"):
        return None
    schedule = schedule_from_dict(sampling["schedule"])
    if getattr(schedule, "needs_logits", False):  # entropy-adaptive: tau depends on the logits, no curve over t
        return None
    positions = torch.arange(int(sampling.get("max_new_tokens") or 24))
    plt = page_html.pyplot()
    fig, ax = plt.subplots(figsize=page_html.FIGSIZE)
    for step in schedule_steps(int((config.get("train") or {}).get("steps") or 0)):
        ax.plot(positions.numpy(), schedule.temperatures(positions, step).numpy(), lw=1.6, label=f"step {step}")
    lengths = _points(records, "response/length_mean")[1]
    if lengths:
        ax.axvline(lengths[0], color="k", ls=":", lw=1, label=f"mean response length at the start ({lengths[0]:.0f})")
    ax.axhline(1.0, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("response position t (tokens)")
    ax.set_ylabel("behaviour temperature tau_t")
    ax.set_title(f"sampling schedule '{schedule.name}' by position, at a few training steps", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return page_html.save(fig, out_png)


def plot_training_curves(records: list[dict[str, Any]], out_png: Path) -> Path:
    """Every curve of the run in one PNG (a grid, 3 columns): the picture to share; the HTML shows them one by one."""
    plt = page_html.pyplot()
    shown = panels(records) + ([(TEMPERATURE_KEY, "mean behaviour temperature")]
                               if any(r.get(TEMPERATURE_KEY) is not None for r in records) else [])
    columns = 3
    rows = max(1, -(-len(shown) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.2 * rows), squeeze=False)
    for ax, (key, title) in zip(axes.flat, shown):
        steps, values = _points(records, key)
        ax.plot(steps, values, marker="o" if key.startswith("eval/") else None, ms=3)
        if key.startswith(UNIT_RANGE):
            page_html.set_unit_limits(ax, values)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def _format(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def _metric_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    """First and last logged value of every numeric metric, grouped by prefix (reward/, eval/, is/, ...)."""
    keys = sorted({k for r in records for k, v in r.items() if isinstance(v, (int, float)) and k != "step"},
                  key=lambda k: (k.split("/")[0], k))
    rows = []
    for key in keys:
        steps, values = _points(records, key)
        if values:
            rows.append([key, _format(values[0]), f"{steps[0]}", _format(values[-1]), f"{steps[-1]}"])
    return rows


def write_training_report(run_dir: Path, records: list[dict[str, Any]]) -> Path:
    """``training_curves.png``, ``report/*.png`` (one plot each) and ``report.html`` in ``run_dir``.

    ``records`` are the run's ``metrics.jsonl`` lines (``ead.training.logger.read_metrics``); the
    resolved config is read from ``run_dir/config.yaml``.
    """
    import yaml

    run_dir = Path(run_dir)
    config_file = run_dir / "config.yaml"
    config_text = config_file.read_text() if config_file.is_file() else ""
    config = yaml.safe_load(config_text) or {} if config_text else {}
    plot_training_curves(records, run_dir / "training_curves.png")
    fig_dir = run_dir / "report"
    fig_dir.mkdir(exist_ok=True)
    body = [f"<h1>ead run: {html.escape(str(run_dir))}</h1>"]
    body.append(f"<section class='finding'><p>{page_html.inline(_headline(records, config))}</p></section>")
    schedule_png = _plot_schedule(config, records, fig_dir / "schedule.png")
    items = []
    if schedule_png is not None:
        items.append(page_html.figure(schedule_png, "The behaviour temperature tau_t by response position at "
                                                    f"steps {', '.join(map(str, schedule_steps(int(config['train']['steps']))))} "
                                                    "(computed from the saved schedule)"))
    if any(r.get(TEMPERATURE_KEY) is not None for r in records):
        png = _plot_metric(records, TEMPERATURE_KEY, "mean behaviour temperature over the sampled tokens",
                           fig_dir / "behaviour_temperature.png")
        items.append(page_html.figure(png, "Mean behaviour temperature per step (from metrics.jsonl): what the "
                                           "sampler actually used, averaged over every sampled token"))
    body += ["<h2>What the sampler did</h2>", page_html.figures(items)]
    items = [page_html.figure(_plot_metric(records, key, title, fig_dir / f"{key.replace('/', '_').replace('@', '')}.png"),
                              title) for key, title in panels(records)]
    body += ["<h2>Training and evaluation</h2>", page_html.figures(items)]
    pngs = [(_plot_family(records, prefix, fig_dir / f"by_{prefix.rstrip('_').replace('/', '_')}.png"), family_title(prefix))
            for prefix in BREAKDOWNS]
    items = [page_html.figure(png, title) for png, title in pngs if png is not None]
    if items:  # tasks with difficulty levels (countdown-search); every run logs the position buckets
        body += ["<h2>By difficulty level and response position</h2>", page_html.figures(items)]
    if config_text:
        body += ["<h2>Resolved config</h2><details open><summary>config.yaml (defaults, preset, recipe and overrides "
                 "applied)</summary>", f"<pre>{html.escape(config_text)}</pre></details>"]
    body += ["<h2>Every logged metric: first and last value</h2>",
             page_html.table(_metric_rows(records), ["metric", "first", "at step", "last", "at step"])]
    out = run_dir / "report.html"
    out.write_text(page_html.page(f"ead run {run_dir.name}", "".join(body)))
    return out


def _headline(records: list[dict[str, Any]], config: dict[str, Any]) -> str:
    """One sentence: algorithm, schedule, steps, and the held-out Mean@K and Pass@K from the first to the last eval."""
    k = _largest_k(records)
    algorithm = (config.get("algorithm") or {}).get("name", "?")
    schedule = ((config.get("sampling") or {}).get("schedule") or {}).get("name", "?")
    steps = records[-1]["step"] if records else 0
    text = f"{str(algorithm).upper()} with the `{schedule}` sampling schedule, {steps} steps."
    if k is not None:
        for key in (f"eval/mean@{k}", f"eval/pass@{k}"):
            s, v = _points(records, key)
            if v:
                text += f" Held-out {key.removeprefix('eval/')}: {v[0]:.3f} at step {s[0]} → {v[-1]:.3f} at step {s[-1]}."
    temps = _points(records, TEMPERATURE_KEY)[1]
    if temps:
        text += f" Mean behaviour temperature {temps[0]:.2f} → {temps[-1]:.2f}."
    return text
