"""The contract between tasks, graders, the trainer and the evaluator.

A *task* hands out :class:`Problem` batches deterministically (the same seed and
batch index always give the same problems, which is what makes resuming a run
exact) and a fixed held-out list for evaluation. A *grader* is a pure function
``(problem, response_text) -> Grade``; it must be picklable (a top-level
function or a dataclass instance) because graders run in a separate worker
process with a timeout, so a grader that raises or hangs cannot stop a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Problem:
    """One prompt with what is needed to grade responses to it."""

    uid: str
    """Stable identifier (used for resuming evaluations and for grouping samples)."""
    prompt: str
    """Exactly the text fed to the model (any chat template is already applied)."""
    answer: Any
    """Gold information for the grader (JSON-serialisable)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Free-form extras (source file and row, difficulty, ...)."""


@dataclass(frozen=True)
class Grade:
    """A grader's verdict on one response."""

    reward: float
    """Scalar reward used for training (usually 1.0 correct, 0.0 otherwise)."""
    correct: bool
    """Whether the response solves the problem (used by pass@k and friends)."""
    answer_key: str | None = None
    """Canonical form of the extracted final answer, for majority voting (None: no answer found)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Detached diagnostics (format ok, kind of mistake, ...). The key "error" is reserved: the grader
    sandbox sets it when the grader itself raised or timed out."""


@runtime_checkable
class Grader(Protocol):
    def __call__(self, problem: Problem, response: str) -> Grade: ...


@runtime_checkable
class Task(Protocol):
    """What the trainer and the evaluator need from a source of problems."""

    name: str
    grader: Grader

    def train_batch(self, batch_index: int, num_prompts: int) -> list[Problem]:
        """The ``batch_index``-th batch of training problems; deterministic given the task's seed."""
        ...

    def eval_problems(self) -> list[Problem]:
        """The fixed held-out problems (never seen by ``train_batch``)."""
        ...
