"""``ead report``'s page: sweep summaries drawn as figures and tables in one self-contained HTML file.

The summaries come from :func:`ead.experiments.summary.summarize` (or a committed ``summary.json``:
``ead report --from-summary``); nothing here reads a sweep directory, so a committed report is
rebuilt from its committed data. The page opens with the finding (the ``--finding`` paragraphs,
then the key number computed from the data: the paired Mean@16 difference with its interval),
then per sweep a sampler legend, one figure per metric (one plot per image, bands clipped to the
metric's range), and the tables.

Outputs in ``out``: ``report.html`` (PNGs embedded) and ``figures/*.png``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ead.reporting import html as page_html
from ead.reporting.breakdowns import BREAKDOWNS, breakdown_title

CURVES = [  # (metric key, title): what the report draws, and so what a summary aggregates
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
LENGTH_BY_DIFFICULTY = "eval/length_mean/difficulty_"
"""Final values and paired differences of these keys answer "longer reasoning on harder problems?"."""
KEY_METRIC = "eval/mean@16"
"""The finding's number: final held-out Mean@16 (the expected accuracy of one sample at tau = 1)."""
RANGES = {"eval/pass@16": (0.0, 1.0), "eval/worst@16": (0.0, 1.0), "eval/mean@16": (0.0, 1.0),
          "eval/maj@16": (0.0, 1.0), "reward/mean": (0.0, 1.0), "is/truncated_frac": (0.0, 1.0),
          "entropy/mean": (0.0, math.inf), "response/length_mean": (0.0, math.inf),
          "behaviour/temperature_mean": (0.0, math.inf)}
"""Where each metric can live: interval bands are clipped to it (a Pass@16 band never reaches 1.2)."""


def metric_range(key: str) -> tuple[float, float]:
    """Where ``key`` can live (RANGES, or by its breakdown family): interval bands are clipped to it."""
    if key in RANGES:
        return RANGES[key]
    if key.startswith("eval/correct_frac/"):
        return (0.0, 1.0)
    return (0.0, math.inf) if key.startswith(tuple(BREAKDOWNS)) else (-math.inf, math.inf)


def breakdown_keys(summary: dict[str, Any]) -> list[str]:
    """Breakdown keys with curves in any group of ``summary``, sorted (levels and positions in order)."""
    keys = {k for g in summary["groups"] for k in g.get("curves", {}) if k.startswith(tuple(BREAKDOWNS))}
    return sorted(keys)


def _length_by_difficulty_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """(levels, final length per group, paired length difference per group) for the difficulty table."""
    keys = sorted({k for g in summary["groups"] for k in g["final"] if k.startswith(LENGTH_BY_DIFFICULTY)})
    finals = [[g["group"], *[_fmt(g["final"][k], digits=1) if k in g["final"] else "-" for k in keys]]
              for g in summary["groups"]]
    paired = [[r["group"], *[_fmt(r[k], digits=1) if k in r else "-" for k in keys]] for r in summary["paired"]]
    return [level_label(k.removeprefix(LENGTH_BY_DIFFICULTY)) for k in keys], finals, paired


def level_label(level: str) -> str:
    """Column title: ``difficulty 3``, or ``difficulty 3 minus 1`` for the hardest-minus-easiest gap."""
    hardest, minus, easiest = level.partition("-")
    return f"difficulty {hardest} minus {easiest}" if minus else f"difficulty {level}"


# --------------------------------------------------------------------------- tables as text


def _fmt(stat: dict[str, Any], digits: int = 3) -> str:
    if stat["n"] == 0 or not math.isfinite(stat["mean"]):
        return "-"
    half = stat["ci95"]
    return f"{stat['mean']:.{digits}f} ± {half:.{digits}f}" if math.isfinite(half) else f"{stat['mean']:.{digits}f}"


def _mde(stat: dict[str, Any] | None) -> str:
    """The paired row's minimum detectable effect (summaries written before it was computed have none)."""
    value = (stat or {}).get("mde", math.nan)
    return f"{value:.3f}" if value is not None and math.isfinite(value) else "-"


MDE_COLUMN = f"{KEY_METRIC.removeprefix('eval/')} MDE"
"""Paired tables' last column: the smallest Mean@16 difference these seeds detect (5% two-sided, power 0.8)."""


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
                  "(mean ± 95% t; an interval containing 0 is no evidence of a difference; MDE: the smallest true "
                  "difference these seeds detect with power 0.8 at 5% two-sided):", "",
                  "| group | " + " | ".join(k.removeprefix("eval/") for k in PAIRED) + f" | {MDE_COLUMN} |",
                  "|" + "---|" * (len(PAIRED) + 2)]
        for row in summary["paired"]:
            lines.append(f"| {row['group']} | " + " | ".join(_fmt(row[k]) for k in PAIRED) + f" | {_mde(row.get(KEY_METRIC))} |")
    if any(g.get("correct_responses", {}).get("n") for g in summary["groups"]):
        lines += ["", "Training signal: correct responses sampled over the run (mean ± 95% t over seeds; per seed):", "",
                  "| group | correct responses | per seed |", "|---|---|---|"]
        for g in summary["groups"]:
            stat = g["correct_responses"]
            per_seed = " / ".join(f"{v:.0f}" for _, v in sorted(stat["per_seed"].items()))
            lines.append(f"| {g['group']} | {_fmt(stat, digits=1)} | {per_seed} |")
    levels, finals, paired = _length_by_difficulty_rows(summary)
    if levels:
        head = "| group | " + " | ".join(levels) + " |"
        lines += ["", "Final eval response length (tokens) per difficulty level (mean ± 95% t over seeds):", "", head,
                  "|" + "---|" * (len(levels) + 1), *["| " + " | ".join(row) + " |" for row in finals]]
        if paired:
            lines += ["", "Its paired difference against the baseline (tokens; longer on harder problems? The minus column "
                      "is the difference in differences: 0 for a sampler that lengthens every level alike):", "", head,
                      "|" + "---|" * (len(levels) + 1), *["| " + " | ".join(row) + " |" for row in paired]]
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
    if metric_range(key) == (0.0, 1.0):
        page_html.set_unit_limits(ax, [v for g in groups for v in g["curves"][key]["mean"] + g["curves"][key]["high"]])
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
    drawn, right_ends = False, []
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
            right_ends.append(right)
    if not drawn:
        plt.close(fig)
        return None
    name = key.removeprefix("eval/").replace("@", "@")
    if paired:
        ax.axvline(0.0, color="k", lw=0.8)
        baseline = summary.get("baseline") or summary["paired"][0]["baseline"].split("__")[0]
        ax.set_xlabel(f"final {name} minus {baseline}, paired by seed")
        ax.set_title(f"{summary['name']}: final {name} minus {baseline} (95% t over seeds)", fontsize=11)
    else:
        if RANGES.get(key) == (0.0, 1.0):
            page_html.set_unit_limits(ax, right_ends, axis="x")
        ax.set_xlabel(f"final held-out {name}")
        ax.set_title(f"{summary['name']}: final {name} per sampler (95% t over seeds)", fontsize=11)
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
        if (sampler.get("schedule") and _group_label(group) not in specs
                and not getattr(schedule_from_dict(sampler["schedule"]), "needs_logits", False)):  # no curve over t
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
    parts = ", ".join(f"{_pm(r)} ({r['algorithm'].upper()}" + (f"; MDE {_mde(r)}" if _mde(r) != "-" else "") + ")"
                      for r in picked)
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
        rows = [[r["group"], *[_fmt(r[k]) for k in PAIRED], _mde(r.get(KEY_METRIC))] for r in summary["paired"]]
        out += [f"<h4>Final minus <code>{baseline}</code>, paired by seed (an interval containing 0 is no evidence "
                "of a difference; MDE: the smallest true difference these seeds detect with power 0.8 at 5% two-sided)</h4>",
                page_html.table(rows, ["group", *[k.removeprefix("eval/") for k in PAIRED], MDE_COLUMN])]
    rows = [[g["group"], *[_fmt(g["average"][k]) for k in PAIRED]] for g in summary["groups"]]
    out += ["<h4>Average over all evals after step 0 (sample efficiency)</h4>",
            page_html.table(rows, ["group", *[k.removeprefix("eval/") for k in PAIRED]])]
    if any(g.get("correct_responses", {}).get("n") for g in summary["groups"]):
        rows = [[g["group"], _fmt(g["correct_responses"], digits=1),
                 " / ".join(f"{v:.0f}" for _, v in sorted(g["correct_responses"]["per_seed"].items()))]
                for g in summary["groups"]]
        out += ["<h4>Training signal: correct responses sampled over the run</h4>",
                page_html.table(rows, ["group", "correct responses", "per seed"])]
    levels, finals, paired = _length_by_difficulty_rows(summary)
    if levels:
        head = ["group", *levels]
        out += ["<h4>Final eval response length (tokens) per difficulty level</h4>", page_html.table(finals, head)]
        if paired:
            out += ["<h4>Its paired difference against the baseline (tokens; the minus column is the difference in "
                    "differences: 0 for a sampler that lengthens every level alike)</h4>", page_html.table(paired, head)]
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
        items = []
        for key_name in breakdown_keys(summary):
            for algorithm in _algorithms(summary):
                path = plot_curve(summary, algorithm, key_name, breakdown_title(key_name), "step",
                                  png(f"step_{algorithm}_{key_name.replace('/', '_')}"))
                if path is not None:
                    items.append(page_html.figure(path, f"{algorithm.upper()}: {breakdown_title(key_name)} vs training "
                                                        "step; band: 95% t-interval over seeds"))
        if items:
            body += ["<h3>Per difficulty level and per response position</h3>", page_html.figures(items)]
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
