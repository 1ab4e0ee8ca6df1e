"""Math answer grading: extract the final answer, then check equivalence with Math-Verify.

Math-Verify (Hugging Face, ``pip install math-verify``) parses LaTeX or plain
expressions into sympy and compares them (numbers, fractions, intervals, sets,
matrices, equations). It is the grader the EAD paper used. Its own timeouts use
``SIGALRM``, which only works in a process's main thread; off the main thread we
disable them, and the hard per-call limit is :class:`ead.grading.sandbox.GraderPool`'s.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ead.grading.extract import extract_answer, extract_gsm8k_final, find_boxed
from ead.tasks.base import Grade, Problem

__all__ = ["MathGrader", "gold_answer", "canonical_key", "answers_equivalent"]


def gold_answer(answer: Any) -> str:
    """The gold final answer as text.

    Accepts a plain answer (``"\\frac{1}{2}"``, ``"27"``), a GSM8K answer ending in
    ``#### N`` (gives ``N``), or a worked solution with a ``\\boxed{}`` (gives its content).
    """
    text = str(answer).strip()
    if "####" in text:
        return extract_gsm8k_final(text) or text
    if "\\boxed" in text or "\\fbox" in text:
        return find_boxed(text) or text
    return text


def _timeout(seconds: int) -> int | None:
    # math_verify's timeout installs a SIGALRM handler: only legal in the main thread.
    return seconds if threading.current_thread() is threading.main_thread() else None


def _parse(expr: str, timeout_seconds: int) -> list[Any]:
    from math_verify import parse  # sympy import is slow: load on first grade, not on import

    return parse("\\boxed{" + expr + "}", parsing_timeout=_timeout(timeout_seconds))


def _plain(expr: str) -> str:
    return "".join(expr.split()).strip("$").rstrip(".")


def canonical_key(expr: str, parsed: list[Any] | None = None, timeout_seconds: int = 5) -> str:
    """Canonical string for majority voting: sympy's ``str`` of the parsed answer.

    ``"\\frac{1}{2}"`` and ``"1/2"`` share a key; ``"0.5"`` does not (sympy keeps floats
    apart from rationals). Unparseable answers fall back to the whitespace-free text.
    """
    parsed = _parse(expr, timeout_seconds) if parsed is None else parsed
    return str(parsed[0]) if parsed else _plain(expr)


def answers_equivalent(gold: str, predicted: str, timeout_seconds: int = 5) -> bool:
    """Math-Verify equivalence of two final answers (falls back to exact text when unparseable)."""
    from math_verify import verify

    g, p = _parse(gold, timeout_seconds), _parse(predicted, timeout_seconds)
    if g and p:
        return bool(verify(g, p, timeout_seconds=_timeout(timeout_seconds)))
    return _plain(gold) == _plain(predicted)


@dataclass(frozen=True)
class MathGrader:
    """Grader for MATH, GSM8K, AIME, AMC style problems (``problem.answer`` is the gold answer).

    A response is correct when its final answer (see :func:`ead.grading.extract.extract_answer`)
    is equivalent to :func:`gold_answer` under Math-Verify. Picklable, so it can run in
    a :class:`~ead.grading.sandbox.GraderPool` worker.
    """

    correct_reward: float = 1.0
    """Reward for a correct response."""
    wrong_reward: float = 0.0
    """Reward for a wrong or unanswered response."""
    allow_last_number: bool = True
    """Fall back to the last number in the response when no boxed / #### / "answer is" is found."""
    timeout_seconds: int = 5
    """Math-Verify's own parse and verify timeouts, whole seconds (main thread only)."""

    def __call__(self, problem: Problem, response: str) -> Grade:
        extracted = extract_answer(response, allow_last_number=self.allow_last_number)
        if extracted is None:
            return Grade(self.wrong_reward, False, None, {"method": None, "extracted": None})
        gold = gold_answer(problem.answer)
        g, p = _parse(gold, self.timeout_seconds), _parse(extracted.text, self.timeout_seconds)
        if g and p:
            from math_verify import verify

            correct = bool(verify(g, p, timeout_seconds=_timeout(self.timeout_seconds)))
        else:
            correct = _plain(gold) == _plain(extracted.text)
        key = canonical_key(extracted.text, p)
        info = {"method": extracted.method, "extracted": extracted.text}
        return Grade(self.correct_reward if correct else self.wrong_reward, correct, key, info)

    def warmup(self) -> None:
        """Import Math-Verify and sympy now (about a second) rather than inside the first timed call."""
        self(Problem("warmup", "", "1/2"), "\\boxed{\\frac{1}{2}}")
