"""ead.scoring.score_problems: rows map to their problems, only the asked-for problems are graded."""

from types import SimpleNamespace

import pytest

from ead.schedules import FixedSchedule
from ead.scoring import score_problems
from ead.tasks.base import Grade, Problem


class ScriptedEngine:
    """Returns fixed texts and records what it was asked (no model)."""

    def __init__(self, texts):
        self.texts, self.calls = texts, []

    def generate(self, prompts, schedule, step, max_new_tokens, top_k=None, top_p=None, seed=None,
                 capture_target=False):
        self.calls.append({"prompts": prompts, "step": step, "seed": seed, "max_new_tokens": max_new_tokens})
        return SimpleNamespace(texts=self.texts[: len(prompts)])


class CountingPool:
    def __init__(self):
        self.graded = []

    def grade_batch(self, problems, texts):
        self.graded.extend(p.uid for p in problems)
        grades = [Grade(float(t == p.answer), t == p.answer, t) for p, t in zip(problems, texts)]
        return grades, {"errors": 0, "timeouts": 0, "calls": len(texts)}


def test_rows_are_problem_major_and_metrics_match_hand_counts():
    problems = [Problem("a", "1+1=", "2"), Problem("b", "2+2=", "4")]
    # problem a: 2 of 3 right; problem b: 0 of 3 right (answers "5", "5", "3": majority 5 is wrong)
    engine = ScriptedEngine(["2", "3", "2", "5", "5", "3"])
    pool = CountingPool()
    scored = score_problems(engine, pool, problems, FixedSchedule(), samples=3, ks=[1, 3], max_new_tokens=4,
                            step=7, seed=11)
    assert engine.calls[0]["prompts"] == ["1+1="] * 3 + ["2+2="] * 3
    assert (engine.calls[0]["seed"], engine.calls[0]["step"]) == (11, 7)
    assert scored.metrics[0]["pass@1"] == pytest.approx(2 / 3) and scored.metrics[0]["pass@3"] == 1.0
    assert scored.metrics[0]["maj@3"] == 1.0 and scored.metrics[0]["worst@3"] == 0.0
    assert scored.metrics[1]["pass@3"] == 0.0 and scored.metrics[1]["maj@3"] == 0.0
    assert scored.mean_metrics()["pass@1"] == pytest.approx(1 / 3)
    assert scored.rows(1) == [3, 4, 5] and scored.grade_stats["calls"] == 6


def test_grade_only_samples_everything_but_grades_the_named_problems():
    problems = [Problem("a", "1+1=", "2"), Problem("b", "2+2=", "4")]
    engine, pool = ScriptedEngine(["2", "2", "4", "4"]), CountingPool()
    scored = score_problems(engine, pool, problems, FixedSchedule(), samples=2, ks=[1], max_new_tokens=4,
                            grade_only={1})
    assert len(engine.calls[0]["prompts"]) == 4  # the whole block is sampled
    assert pool.graded == ["b", "b"] and set(scored.metrics) == {1} and scored.metrics[1]["pass@1"] == 1.0


def test_a_bare_grader_is_called_in_process():
    problems = [Problem("a", "1+1=", "2")]
    scored = score_problems(ScriptedEngine(["2", "x"]), lambda p, t: Grade(float(t == "2"), t == "2", t), problems,
                            FixedSchedule(), samples=2, ks=[1, 2], max_new_tokens=2)
    assert scored.metrics[0] == {"pass@1": 0.5, "worst@1": 0.5, "mean@1": 0.5, "maj@1": 0.5,
                                 "pass@2": 1.0, "worst@2": 0.0, "mean@2": 0.5, "maj@2": 1.0}
