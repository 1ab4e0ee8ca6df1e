"""Cost of isolating one program: bare interpreter vs rlimits-only vs bubblewrap, side by side in one run.

    PYTHONPATH=src python benchmarks/bench_code_sandbox.py [--runs 40]

Prints milliseconds per program (median of ``--runs``, interleaved so machine load hits all
variants alike) for ``pass`` and for HumanEval/0's canonical solution with its tests, and the
ratio to the bare interpreter. Also times the 164 canonical HumanEval programs through a
2-worker GraderPool, the check the test suite runs.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()

    from ead.grading.code import assemble_program
    from ead.grading.code_sandbox import BubblewrapSandbox, RlimitsOnlySandbox, SandboxLimits
    from ead.tasks.humaneval import humaneval_rows

    row = humaneval_rows()[0]
    programs = {"pass": "pass\n", "HumanEval/0": assemble_program(row["answer"], row["canonical_solution"])[0]}
    limits = SandboxLimits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        weak = RlimitsOnlySandbox(limits=limits)
    strong = BubblewrapSandbox(limits=limits)

    def bare(source: str) -> None:
        subprocess.run([sys.executable, "-I", "-S", "-c", source], check=True, capture_output=True)

    variants = {"bare python -I -S": bare, "rlimits-only": weak.run, "bwrap": strong.run}
    for name, source in programs.items():
        times: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.runs):
            for variant, run in variants.items():
                start = time.perf_counter()
                run(source)
                times[variant].append(time.perf_counter() - start)
        base = statistics.median(times["bare python -I -S"])
        print(f"\n{name} ({args.runs} runs, median)")
        for variant, values in times.items():
            median = statistics.median(values)
            print(f"  {variant:<20} {median * 1000:7.1f} ms   x{median / base:4.2f}")

    from ead.grading.registry import build_grader
    from ead.grading.sandbox import GraderPool
    from ead.data import DataSpec, load_problems

    problems = load_problems(DataSpec(path="humaneval")).problems
    solutions = [r["canonical_solution"] for r in humaneval_rows()]
    with GraderPool(build_grader("code"), timeout_s=10, num_workers=2) as pool:
        start = time.perf_counter()
        grades, _ = pool.grade_batch(problems, solutions)
        seconds = time.perf_counter() - start
    print(f"\nHumanEval canonical through GraderPool(2 workers): {sum(g.correct for g in grades)}/164 "
          f"in {seconds:.1f} s ({seconds / 164 * 2000:.0f} ms per program per worker)")


if __name__ == "__main__":
    main()
