"""Seed spread and minimum detectable effect from a pilot sweep (docs/long_reasoning.md).

    python docs/results/long_reasoning/pilot_mde.py runs/pilot_long [--baseline fixed-1.0] [--seeds 5]

For each cell: the last logged ``eval/mean@16`` and the summed ``time/step_s``. For each sampler
against the baseline (same algorithm, paired by seed): the per-seed differences. The minimum
detectable effect of a paired two-sided t-test at alpha = 0.05 with power 0.8 over ``n`` seeds is

    MDE = (t_{0.975, n-1} + t_{0.80, n-1}) * sd_diff / sqrt(n)

with sd_diff the seed-to-seed standard deviation of the paired difference. With two pilot seeds
sd_diff has one degree of freedom, so the script also reports the pooled per-cell standard deviation
sd_cell (seeds of the same sampler) and sd_diff ~ sqrt(2) * sd_cell (the no-pairing-benefit bound).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from scipy import stats


def read_cells(sweep_dir: Path) -> dict[str, dict]:
    cells = {}
    for metrics in sorted(sweep_dir.glob("cells/*/metrics.jsonl")):
        records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        evals = [r for r in records if "eval/mean@16" in r]
        if not evals:
            continue
        sampler, algorithm, seed = metrics.parent.name.split("__")
        cells[metrics.parent.name] = {
            "sampler": sampler, "algorithm": algorithm, "seed": int(seed[1:]),
            "steps": max(r["step"] for r in records),
            "final_mean@16": evals[-1]["eval/mean@16"], "final_pass@16": evals[-1].get("eval/pass@16"),
            "train_wall_s": sum(r.get("time/step_s", 0.0) for r in records),
            "length_first": records[0].get("response/length_mean"), "length_last": records[-1].get("response/length_mean"),
        }
    return cells


def mde(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Paired t-test minimum detectable effect: (t_{1-alpha/2, n-1} + t_{power, n-1}) * sd_diff / sqrt(n)."""
    return (stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) * sd_diff / math.sqrt(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--baseline", default="fixed-1.0")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    cells = read_cells(args.sweep_dir)
    for name, cell in cells.items():
        print(name, json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in cell.items()}))
    by_group: dict[tuple[str, str], dict[int, float]] = {}
    for cell in cells.values():
        by_group.setdefault((cell["sampler"], cell["algorithm"]), {})[cell["seed"]] = cell["final_mean@16"]
    variances = [statistics.variance(v.values()) for v in by_group.values() if len(v) >= 2]
    sd_cell = math.sqrt(statistics.mean(variances)) if variances else float("nan")
    print(f"pooled per-cell sd of final Mean@16: {sd_cell:.4f} ({len(variances)} groups)")
    for (sampler, algorithm), values in sorted(by_group.items()):
        base = by_group.get((args.baseline, algorithm), {})
        if sampler == args.baseline or not base:
            continue
        diffs = [values[s] - base[s] for s in sorted(set(values) & set(base))]
        sd_diff = statistics.stdev(diffs) if len(diffs) >= 2 else float("nan")
        print(f"{sampler} - {args.baseline} ({algorithm}): diffs {[round(d, 4) for d in diffs]}, sd_diff {sd_diff:.4f}, "
              f"MDE({args.seeds} seeds) {mde(sd_diff, args.seeds):.4f}; "
              f"with sd_diff = sqrt(2) sd_cell: {mde(math.sqrt(2) * sd_cell, args.seeds):.4f}")
    print(f"MDE factor (t_0.975 + t_0.8)/sqrt(n) at n = {args.seeds}: {mde(1.0, args.seeds):.4f} x sd_diff")


if __name__ == "__main__":
    main()
