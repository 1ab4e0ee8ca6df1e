"""The one sample -> grade -> score step shared by every evaluation in the package.

``ead eval`` (:mod:`ead.evaluation.runner`), the trainer's periodic held-out evaluation
(:mod:`ead.training.periodic_eval`), the sweep's base-model inference
(:mod:`ead.experiments.base_inference`) and the warm start's calibration
(:func:`ead.modeling.warmstart.measure_base_policy`) all call :func:`score_problems`:

1. sample ``samples`` responses per problem through a rollout engine (one ``generate``
   call for all rows, under one seed: the engine forks the RNG, so the caller's stream
   is untouched);
2. grade them through a :class:`~ead.grading.sandbox.GraderPool` (timeouts, contained
   errors, counted);
3. score each problem with :func:`ead.metrics.problem_metrics`.

What differs between the callers (which metrics they keep, records, curves) stays with
them; the step itself exists once.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ead.metrics import problem_metrics

if TYPE_CHECKING:  # keep this module light to import
    from ead.rollout import RolloutEngine
    from ead.sampling import Rollouts
    from ead.schedules import Schedule
    from ead.tasks.base import Grade, Problem

__all__ = ["ScoredBatch", "score_problems"]


@dataclass
class ScoredBatch:
    """What one :func:`score_problems` call produced, ``samples`` consecutive rows per problem."""

    problems: list[Problem]
    rollouts: Rollouts
    """All rows, problem-major: rows ``[i * samples, (i + 1) * samples)`` belong to ``problems[i]``."""
    samples: int
    grades: dict[int, list[Grade]] = field(default_factory=dict)
    """Problem index -> its ``samples`` grades (only the graded problems)."""
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    """Problem index -> :func:`ead.metrics.problem_metrics` (only the graded problems)."""
    grade_stats: dict[str, float] = field(default_factory=dict)
    """The pool's counts for this batch (``errors``, ``timeouts``, ...)."""

    def rows(self, index: int) -> list[int]:
        """Row indices of problem ``index``."""
        return list(range(index * self.samples, (index + 1) * self.samples))

    def mean_metrics(self) -> dict[str, float]:
        """Mean over the graded problems of each metric (the benchmark score)."""
        per_problem = list(self.metrics.values())
        if not per_problem:
            return {}
        return {key: float(np.mean([m[key] for m in per_problem])) for key in per_problem[0]}


def score_problems(
    engine: RolloutEngine,
    grader: Any,
    problems: Sequence[Problem],
    schedule: Schedule,
    *,
    samples: int,
    ks: Sequence[int],
    max_new_tokens: int,
    step: int = 0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    capture_target: bool = False,
    grade_only: Collection[int] | None = None,
) -> ScoredBatch:
    """Sample ``samples`` responses per problem with ``engine``, grade them with ``grader``, score them.

    Args:
        engine: a rollout engine (``generate(prompts, schedule, step, max_new_tokens, ...)``).
        grader: a :class:`~ead.grading.sandbox.GraderPool` (anything with ``grade_batch``); a bare
            grader is called in process (no timeout), for tests and quick scripts.
        ks: budgets of pass@k / worst@k / mean@k / maj@k (each ``<= samples``).
        seed: sampling seed of this call; None draws from the engine's own stream.
        capture_target: ask the engine for log pi and its entropy at temperature 1 too.
        grade_only: indices of the problems to grade and score (None: all). The others are
            still sampled, so that what a problem gets never depends on which problems of
            its batch were already done (an evaluation resumed mid-batch).
    """
    problems = list(problems)
    prompts = [p.prompt for p in problems for _ in range(samples)]
    rollouts = engine.generate(prompts, schedule, step, max_new_tokens, top_k=top_k, top_p=top_p, seed=seed,
                               capture_target=capture_target)
    graded = [i for i in range(len(problems)) if grade_only is None or i in grade_only]
    batch = ScoredBatch(problems, rollouts, samples)
    if not graded:
        return batch
    rows = [r for i in graded for r in batch.rows(i)]
    row_problems, texts = [problems[r // samples] for r in rows], [rollouts.texts[r] for r in rows]
    if hasattr(grader, "grade_batch"):
        grades, stats = grader.grade_batch(row_problems, texts)
    else:  # a bare grader (tests, quick scripts): in process, uncounted
        grades, stats = [grader(p, t) for p, t in zip(row_problems, texts)], {}
    batch.grade_stats = dict(stats)
    for j, i in enumerate(graded):
        group = grades[j * samples : (j + 1) * samples]
        batch.grades[i] = group
        batch.metrics[i] = problem_metrics([g.correct for g in group], [g.answer_key for g in group], ks)
    return batch
