"""``ead eval`` problems/s: one problem per generate call vs many, with the lean and HF engines.

The built-in warm-started model (model: null), the built-in Countdown eval set, ``--problems``
problems x ``--samples`` samples at tau = 1, graded in-process (``grading.inline``: the grader
pool's process start-up would otherwise dominate at this size). Each layout x engine is a fresh
``run_eval`` into its own directory; all four run interleaved per repeat, and the wall time of the
whole evaluation (model load, sampling, grading, report) is what is timed, after one untimed warm-up
round.
Target: the default (batched) layout >= 2x problems_per_batch=1 at 64 problems x 8 samples.

    python benchmarks/bench_eval_layout.py --problems 64 --samples 8 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--layouts", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--engines", nargs="+", default=["lean", "hf"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warm-start-cache", default=None, help="where the built-in model's warm start is cached")
    args = parser.parse_args()
    from ead.evaluation.runner import EvalConfig, run_eval

    seconds: dict[tuple[str, int], list[float]] = {(e, b): [] for e in args.engines for b in args.layouts}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(-1, args.repeats):  # repeat -1: untimed warm-up (imports, first model load)
            for engine, layout in seconds:
                config = EvalConfig(num_problems=args.problems, samples=args.samples, k=[1, args.samples],
                                    problems_per_batch=layout, sampling={"engine": engine},
                                    grading={"inline": True}, progress=False, bootstrap_resamples=200,
                                    model={"num_threads": 1, "warm_start_cache": args.warm_start_cache},
                                    output_dir=str(Path(tmp) / f"{engine}-{layout}-{repeat}"))
                start = time.perf_counter()
                run_eval(config)
                if repeat >= 0:
                    seconds[(engine, layout)].append(time.perf_counter() - start)
    base = statistics.median(seconds[("hf", 1)]) if ("hf", 1) in seconds else None
    print(f"\n{args.problems} problems x {args.samples} samples, built-in model, tau = 1, {args.repeats} interleaved repeats")
    print("| engine | problems_per_batch | median s (min-max) | problems/s | speed-up vs hf, 1 per call |")
    print("| --- | --- | --- | --- | --- |")
    for (engine, layout), values in seconds.items():
        median = statistics.median(values)
        speedup = f"{base / median:.2f}x" if base else "-"
        print(f"| {engine} | {layout} | {median:.2f} ({min(values):.2f}-{max(values):.2f}) | "
              f"{args.problems / median:.2f} | {speedup} |")


if __name__ == "__main__":
    main()
