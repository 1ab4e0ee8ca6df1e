"""Why the samplers of sweep_long end where they do: the training statistics behind the finding.

    python docs/results/long_reasoning/mechanism.py docs/results/long_reasoning/sweep \\
        docs/results/long_reasoning/floor_ablation --pair ead-tis-floor-0.6 ead-tis ... \\
        > docs/results/long_reasoning/mechanism.txt

(the exact command that wrote mechanism.txt, with all its ``--pair`` options: docs/long_reasoning.md, "Finding").

The sweep report (``ead report``) gives the paired outcome tables and the curves; this script reads the
same ``metrics.jsonl`` files and tables, per sampler and algorithm (mean over the finished seeds, with the
95% t half-width where it matters), what the finding's "why" paragraph needs:

- held-out Mean@16 at each eval step (is the best sampler still rising at the last step?);
- training rollout length over the first and the last 5 steps, and per difficulty level at the end;
- mean behaviour temperature over all rollout tokens, and TIS truncation (the fraction of tokens whose
  weight pi/mu hit the cap);
- entropy of pi at tau = 1 over the last 10 steps;
- correct responses sampled over the run (the learning signal GRPO/DAPO received).

``--pair A B`` adds the final Mean@16 of sampler A minus sampler B, paired by seed within each algorithm
(cells of several sweep directories pair when they share the budget and seeds, as floor_ablation.yaml does).
"""

from __future__ import annotations

import argparse
import collections
import statistics
from pathlib import Path

from ead.experiments.summary import mean_ci, minimum_detectable_effect
from ead.training.logger import read_metrics


def window_mean(rows: list[dict], key: str, first: int, last: int) -> float:
    """Mean of ``key`` over training steps first..last (inclusive); rows without it are skipped."""
    values = [r[key] for r in rows if first <= r.get("step", -1) <= last and key in r]
    return statistics.fmean(values) if values else float("nan")


def final_eval(rows: list[dict], key: str) -> float:
    """The eval metric at the run's last eval (step 60 in sweep_long)."""
    return [r[key] for r in rows if key in r][-1]


def eval_at(rows: list[dict], key: str, step: int) -> float:
    """The eval metric logged at exactly this step (nan if that eval is missing)."""
    for r in rows:
        if r.get("step") == step and key in r:
            return r[key]
    return float("nan")


def correct_responses_sampled(rows: list[dict]) -> float:
    """Sum over training steps of (correct fraction x responses sampled): the positive examples seen."""
    return sum(r["reward/correct_frac"] * r["sampling/responses"] for r in rows
               if "reward/correct_frac" in r and "sampling/responses" in r)


def cell_statistics(rows: list[dict]) -> dict[str, float]:
    last_step = max(r["step"] for r in rows)
    eval_steps = sorted({r["step"] for r in rows if "eval/mean@16" in r})
    stats = {f"mean@16 step {s}": eval_at(rows, "eval/mean@16", s) for s in eval_steps}
    stats["train length, steps 1-5"] = window_mean(rows, "response/length_mean", 1, 5)
    stats[f"train length, steps {last_step - 4}-{last_step}"] = window_mean(rows, "response/length_mean", last_step - 4, last_step)
    for level in (1, 2, 3):
        stats[f"train length d{level}, last 5"] = window_mean(rows, f"response/length_mean/difficulty_{level}", last_step - 4, last_step)
    stats["behaviour temperature (mean)"] = window_mean(rows, "behaviour/temperature_mean", 1, last_step)
    stats["TIS truncated fraction"] = window_mean(rows, "is/truncated_frac", 1, last_step)
    stats["entropy at tau 1, last 10"] = window_mean(rows, "entropy/mean", last_step - 9, last_step)
    stats["correct responses sampled"] = correct_responses_sampled(rows)
    return stats


def paired_final(cells: dict[tuple[str, str, str], list[dict]], first: str, second: str) -> None:
    """Final Mean@16 of sampler ``first`` minus ``second``, same algorithm and seed, mean and 95% t over seeds."""
    print(f"\nFinal Mean@16, {first} minus {second}, paired by seed:\n")
    print("| algorithm | seeds | difference | MDE | per seed |")
    print("| --- | --- | --- | --- | --- |")
    for algorithm in sorted({a for _s, a, _seed in cells}):
        seeds = sorted(seed for s, a, seed in cells if s == first and a == algorithm and (second, a, seed) in cells)
        differences = [final_eval(cells[(first, algorithm, seed)], "eval/mean@16")
                       - final_eval(cells[(second, algorithm, seed)], "eval/mean@16") for seed in seeds]
        mean, half, n = mean_ci(differences)
        per_seed = " / ".join(f"{d:+.3f}" for d in differences)
        print(f"| {algorithm} | {n} | {mean:+.3f} +/- {half:.3f} | {minimum_detectable_effect(differences):.3f} | {per_seed} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dirs", type=Path, nargs="+")
    parser.add_argument("--pair", nargs=2, metavar=("A", "B"), action="append", default=[],
                        help="also print sampler A minus sampler B, final Mean@16 paired by seed")
    args = parser.parse_args()
    cells: dict[tuple[str, str, str], list[dict]] = {}
    for sweep_dir in args.sweep_dirs:
        for cell in sorted(sweep_dir.glob("cells/*")):
            if (cell / "DONE").exists():
                sampler, algorithm, seed = cell.name.split("__")
                cells[(sampler, algorithm, seed)] = read_metrics(cell / "metrics.jsonl")
    groups: dict[tuple[str, str], list[dict[str, float]]] = collections.defaultdict(list)
    for (sampler, algorithm, _seed), rows in sorted(cells.items()):
        groups[(algorithm, sampler)].append(cell_statistics(rows))
    columns = list(next(iter(groups.values()))[0])
    print("Mean over seeds (95% t half-width in brackets); n = finished seeds.\n")
    print("| algorithm | sampler | n | " + " | ".join(columns) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in columns) + " |")
    for (algorithm, sampler), group in sorted(groups.items()):
        row = []
        for column in columns:
            mean, half, _n = mean_ci([c.get(column, float("nan")) for c in group])
            precision = 3 if abs(mean) < 10 else 0
            row.append(f"{mean:.{precision}f} ({half:.{precision}f})")
        print(f"| {algorithm} | {sampler} | {len(group)} | " + " | ".join(row) + " |")
    for first, second in args.pair:
        paired_final(cells, first, second)


if __name__ == "__main__":
    main()
