"""Grader workers run under resource limits (address space, CPU, file size) and reject non-finite rewards."""

import math
import os
import time

import pytest

from ead.grading.sandbox import GraderPool, ResourceLimits
from ead.tasks.base import Grade, Problem

P = Problem("p", "q", "ok")


def hungry_grader(problem: Problem, response: str) -> Grade:
    """Misbehaves on request: allocates 16 GiB, spins the CPU, writes a huge file, returns NaN/inf."""
    if response == "hog":
        block = bytearray(16 * 2**30)  # far above the limit; without one this would take the machine's memory
        return Grade(float(len(block)), False)
    if response == "spin":
        end = time.monotonic() + 60
        while time.monotonic() < end:
            pass
    if response.startswith("write:"):
        with open(response[len("write:"):], "wb") as handle:
            for _ in range(64):
                handle.write(b"x" * 2**20)  # 64 MiB
    if response == "nan":
        return Grade(float("nan"), True)
    if response == "inf":
        return Grade(float("inf"), True)
    return Grade(1.0, response == problem.answer, response, {"pid": os.getpid()})


def test_memory_hog_is_contained_counted_and_the_pool_goes_on():
    limits = ResourceLimits(memory_mb=1024, cpu_s=None, file_size_mb=None)
    with GraderPool(hungry_grader, timeout_s=30, limits=limits) as pool:
        grades, stats = pool.grade_batch([P] * 3, ["ok", "hog", "ok"])
    assert [g.reward for g in grades] == [1.0, 0.0, 1.0]
    assert "MemoryError" in grades[1].info["error"]
    assert stats["errors"] == 1 and stats["timeouts"] == 0


def test_cpu_limit_stops_a_spinning_grader_before_the_wall_clock_timeout():
    limits = ResourceLimits(memory_mb=None, cpu_s=1, file_size_mb=None)
    with GraderPool(hungry_grader, timeout_s=50, limits=limits) as pool:
        start = time.monotonic()
        grades, stats = pool.grade_batch([P] * 3, ["ok", "spin", "ok"])
        seconds = time.monotonic() - start
    assert [g.reward for g in grades] == [1.0, 0.0, 1.0]
    assert "worker died" in grades[1].info["error"] and stats["errors"] == 1
    assert seconds < 50  # killed by RLIMIT_CPU, not by the 50 s wall-clock timeout (a hang guard, not a timing)


def test_cpu_limit_is_per_call_not_per_worker_lifetime():
    limits = ResourceLimits(memory_mb=None, cpu_s=2, file_size_mb=None)
    with GraderPool(hungry_grader, timeout_s=30, limits=limits) as pool:
        pids = set()
        for _ in range(3):  # each call gets its own budget on top of what the worker has used
            grades, stats = pool.grade_batch([P], ["ok"])
            pids.add(grades[0].info["pid"])
        assert stats["errors"] == 0 and len(pids) == 1


def test_file_size_limit_contains_a_grader_that_fills_the_disk(tmp_path):
    limits = ResourceLimits(memory_mb=None, cpu_s=None, file_size_mb=4)
    target = tmp_path / "big.bin"
    with GraderPool(hungry_grader, timeout_s=30, limits=limits) as pool:
        grades, stats = pool.grade_batch([P] * 2, [f"write:{target}", "ok"])
    assert grades[0].reward == 0.0 and stats["errors"] == 1 and grades[1].reward == 1.0
    assert target.stat().st_size <= 4 * 2**20


@pytest.mark.parametrize("inline", [False, True])
def test_non_finite_rewards_are_grader_errors(inline):
    with GraderPool(hungry_grader, timeout_s=30, inline=inline) as pool:
        grades, stats = pool.grade_batch([P] * 3, ["nan", "inf", "ok"])
    assert [g.reward for g in grades] == [0.0, 0.0, 1.0]
    assert all(math.isfinite(g.reward) for g in grades)
    assert "non-finite reward" in grades[0].info["error"] and not grades[0].correct
    assert stats["errors"] == 2


def test_default_limits_are_on():
    limits = ResourceLimits()
    assert limits.memory_mb == 4096 and limits.cpu_s is not None and limits.file_size_mb is not None
