"""ead.grading.sandbox: a grader that raises, hangs or kills its process costs one reward, not the run."""

import multiprocessing as mp
import os
import time
from dataclasses import dataclass

import pytest

from ead.grading.sandbox import GraderPool, GraderStartupError
from ead.tasks.base import Grade, Problem


def misbehaving_grader(problem: Problem, response: str) -> Grade:
    """Correct iff response == answer; some responses trigger failures."""
    if response == "raise":
        raise ValueError("bad input")
    if response == "hang":
        time.sleep(600)
    if response == "crash":
        os._exit(3)
    if response == "not-a-grade":
        return 1.0  # type: ignore[return-value]
    if response == "exit":
        raise SystemExit(2)
    return Grade(1.0, response == problem.answer, response, {"pid": os.getpid()})


@dataclass(frozen=True)
class FailingWarmup:
    def warmup(self) -> None:
        raise RuntimeError("cannot load model")

    def __call__(self, problem: Problem, response: str) -> Grade:
        return Grade(0.0, False)


P = Problem("p", "q", "ok")


def test_failures_are_contained_counted_and_the_batch_finishes():
    responses = ["ok", "raise", "hang", "ok", "crash", "not-a-grade", "exit", "nope", "ok"]
    start = time.monotonic()
    with GraderPool(misbehaving_grader, timeout_s=2.0, chunk_size=64) as pool:
        grades, stats = pool.grade_batch([P] * len(responses), responses)
        first_pid = grades[0].info["pid"]
        assert [g.correct for g in grades] == [True, False, False, True, False, False, False, False, True]
        assert grades[1].info["error"] == "ValueError: bad input"
        assert grades[2].info == {"error": "timeout after 2 s", "timeout": True}
        assert grades[4].info["error"].startswith("worker died (exit code 3)")
        assert grades[5].info["error"].startswith("TypeError: grader returned float")
        assert grades[6].info["error"] == "SystemExit: 2"
        assert all(grades[i].reward == 0.0 for i in (1, 2, 4, 5, 6))
        assert grades[7] == Grade(1.0, False, "nope", grades[7].info)  # a wrong answer is not an error
        assert stats["calls"] == 9 and stats["errors"] == 4 and stats["timeouts"] == 1 and stats["respawns"] == 2
        assert grades[8].info["pid"] != first_pid  # the rest of the chunk went to a fresh worker
        # the pool keeps working after respawns, and cumulative stats add up
        again, stats2 = pool.grade_batch([P], ["ok"])
        assert again[0].correct and stats2["errors"] == stats2["timeouts"] == 0
        assert pool.stats["calls"] == 10 and pool.stats["timeouts"] == 1
        workers = [w.process for w in pool._workers]
    assert time.monotonic() - start < 60  # two respawns; generous for a loaded machine
    assert not any(p.is_alive() for p in workers)
    assert not [c for c in mp.active_children() if c in workers]


def test_inline_mode_contains_errors_without_processes():
    pool = GraderPool(misbehaving_grader, inline=True, failure_reward=-1.0)
    grades, stats = pool.grade_batch([P] * 3, ["ok", "raise", "not-a-grade"])
    assert [g.correct for g in grades] == [True, False, False]
    assert grades[1].reward == -1.0 and grades[1].info["error"] == "ValueError: bad input"
    assert stats["errors"] == 2 and grades[0].info["pid"] == os.getpid()
    assert pool(P, "ok").correct  # the pool is itself a Grader


def test_two_workers_keep_input_order():
    problems = [Problem(str(i), "q", str(i)) for i in range(40)]
    responses = [str(i) if i % 3 else "wrong" for i in range(40)]
    with GraderPool(misbehaving_grader, num_workers=2, chunk_size=4, timeout_s=5.0) as pool:
        grades, stats = pool.grade_batch(problems, responses)
    assert [g.answer_key for g in grades] == responses
    assert [g.correct for g in grades] == [bool(i % 3) for i in range(40)]
    assert len({g.info["pid"] for g in grades}) <= 2 and stats["errors"] == 0  # a worker still starting gets none


def test_startup_failures_raise_clearly():
    with pytest.raises(GraderStartupError, match="not picklable"):
        GraderPool(lambda p, r: Grade(0.0, False))
    pool = GraderPool(FailingWarmup(), timeout_s=1.0)
    with pytest.raises(GraderStartupError, match="RuntimeError: cannot load model"):
        pool.grade_batch([P], ["x"])
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.grade_batch([P], ["x"])
    with pytest.raises(ValueError, match="'fork'"):
        GraderPool(misbehaving_grader, start_method="fork")
