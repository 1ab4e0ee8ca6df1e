"""How far floating-point rounding alone moves a sweep_long cell (docs/long_reasoning.md).

    python docs/results/long_reasoning/rounding_replicate.py docs/results/long_reasoning/sweep_micro64 \\
        docs/results/long_reasoning/sweep

Both directories ran the same cells with the same seeds and the same algorithm; they differ only in
how each update's gradient is accumulated (one 64-row micro-batch against four 16-row micro-batches
sorted by length), so any difference between a cell and its twin is rounding that sampling amplified.
For every cell finished in both: the first training step whose reward or response length differs, and
the final held-out Mean@16 of each. The spread of those final differences is a noise floor for the
grid's paired differences (which also carry the seed-to-seed spread).
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

from ead.training.logger import read_metrics


def first_divergence(a: list[dict], b: list[dict]) -> int | None:
    """The first step whose training reward or mean response length differs (None: identical throughout)."""
    for x, y in zip(a, b):
        if x.get("reward/mean") != y.get("reward/mean") or x.get("response/length_mean") != y.get("response/length_mean"):
            return x["step"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args()
    print(f"| cell | first training step whose reward or length differs | final Mean@16 {args.first.name} | {args.second.name} | difference |")
    print("| --- | --- | --- | --- | --- |")
    differences = []
    for cell in sorted(args.first.glob("cells/*")):
        twin = args.second / "cells" / cell.name
        if not ((cell / "DONE").is_file() and (twin / "DONE").is_file()):
            continue
        a, b = read_metrics(cell / "metrics.jsonl"), read_metrics(twin / "metrics.jsonl")
        final_a = [r["eval/mean@16"] for r in a if "eval/mean@16" in r][-1]
        final_b = [r["eval/mean@16"] for r in b if "eval/mean@16" in r][-1]
        differences.append(final_b - final_a)
        print(f"| {cell.name} | {first_divergence(a, b)} | {final_a:.4f} | {final_b:.4f} | {final_b - final_a:+.4f} |")
    if len(differences) >= 2:
        rms = math.sqrt(statistics.mean(d * d for d in differences))
        print(f"\n{len(differences)} cells: mean difference {statistics.mean(differences):+.4f}, "
              f"sd {statistics.stdev(differences):.4f}, rms {rms:.4f}, max |difference| {max(map(abs, differences)):.4f}")


if __name__ == "__main__":
    main()
