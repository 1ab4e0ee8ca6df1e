"""``code`` grader: run a model-written Python program against the problem's tests in a sandbox.

``problem.answer`` is a dict with ``test`` (Python source defining ``check(candidate)``),
``entry_point`` (the function's name) and optionally ``prompt`` (the function signature and
docstring the model was asked to complete, HumanEval style). The reward is 1.0 when the
program and ``check(<entry_point>)`` run to the end inside the sandbox, else 0.0.

Which program runs (:func:`assemble_program`):

1. The completion is the first fenced code block of the response (```` ```python ````,
   ```` ```py ```` or a bare ```` ``` ````), else the whole response.
2. If the completion parses as Python and defines ``entry_point`` at top level (a full
   function), it runs alone; otherwise it runs after ``prompt`` (it is the function's body,
   as HumanEval completions are).
3. Then the test code, then ``check(entry_point)``.

Sandboxing is :mod:`ead.grading.code_sandbox` (bubblewrap by default). The grader checks at
construction that the sandbox works and raises :class:`SandboxUnavailableError` with the fix if not.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

from ead.config import ConfigError
from ead.grading.code_sandbox import SANDBOX_KINDS, SandboxLimits, SandboxUnavailableError, build_sandbox
from ead.tasks.base import Grade, Problem

__all__ = ["CodeGrader", "extract_program", "assemble_program", "SandboxUnavailableError"]

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)

POOL_MARGIN_S = 3.0
"""Seconds a grader pool's timeout must exceed the sandbox's own (bwrap start, kill and clean-up),
so that a slow program is reported by the sandbox as ``timeout`` rather than killed with its worker."""


def extract_program(response: str) -> str:
    """The first fenced code block's contents (an unclosed fence runs to the end), else the whole response."""
    match = _FENCE.search(response)
    return match.group(1) if match else response


def _defines(source: str, name: str) -> bool:
    """Whether ``source`` parses and defines function ``name`` at top level."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name for node in tree.body)


def assemble_program(answer: dict[str, Any], completion: str) -> tuple[str, str]:
    """``(program, rule)``: the source to execute and which rule of the module docstring built it."""
    entry_point, test, prompt = answer["entry_point"], answer["test"], answer.get("prompt", "")
    if _defines(completion, entry_point) or not prompt:
        body, rule = completion, "completion"
    else:
        body, rule = prompt + completion, "prompt+completion"
    return f"{body}\n\n{test}\n\ncheck({entry_point})\n", rule


def _check_answer(problem: Problem) -> dict[str, Any]:
    answer = problem.answer
    if not isinstance(answer, dict) or not isinstance(answer.get("test"), str) \
            or not isinstance(answer.get("entry_point"), str) or not answer["entry_point"].isidentifier():
        raise ValueError(f"problem {problem.uid}: the code grader needs answer = {{'test': str, 'entry_point': "
                         f"identifier, 'prompt': str (optional)}}, got {type(answer).__name__}")
    return answer


@dataclass
class CodeGrader:
    """Reward 1.0 iff the response's program passes the problem's tests in a sandbox (module docstring).

    Picklable: the sandbox is rebuilt (and re-checked) once in each grader worker, by :meth:`warmup`.
    ``info`` carries ``status`` (passed / failed / timeout / oom / sandbox-error), ``detail``,
    ``rule``, ``seconds`` and ``stderr_tail``.
    """

    sandbox: str = "bwrap"
    """``bwrap`` (bubblewrap isolation, the default) or ``rlimits-only`` (weaker, warned; docs/code_rewards.md)."""
    timeout_s: float = 5.0
    """Wall-clock seconds per program."""
    cpu_s: int = 5
    """CPU seconds per program."""
    memory_mb: int = 1024
    """Address-space limit per process, MiB."""
    file_mb: int = 16
    """Largest file (and captured output) a program may write, MiB."""
    max_processes: int = 32
    """Processes and threads a program may have at once."""
    python: str | None = None
    """Interpreter for the programs; None: the one running ead."""
    correct_reward: float = 1.0
    """Reward when every test passes."""
    wrong_reward: float = 0.0
    """Reward otherwise (failed, timeout, oom, sandbox error)."""
    _runner: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.sandbox not in SANDBOX_KINDS:
            raise ConfigError(f"code grader: option sandbox must be one of {list(SANDBOX_KINDS)}, got {self.sandbox!r}")
        self._runner = build_sandbox(self.sandbox, self.limits, self.python)  # raises with the fix if unusable

    @property
    def limits(self) -> SandboxLimits:
        return SandboxLimits(timeout_s=self.timeout_s, cpu_s=self.cpu_s, memory_mb=self.memory_mb,
                             file_mb=self.file_mb, max_processes=self.max_processes)

    @property
    def max_call_seconds(self) -> float:
        """Longest one call can take; a :class:`~ead.grading.sandbox.GraderPool` timeout must exceed it."""
        return self.timeout_s + POOL_MARGIN_S

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_runner"] = None  # holds resolved paths of this machine; rebuilt in the worker
        return state

    def _sandbox(self) -> Any:
        if self._runner is None:
            import warnings

            with warnings.catch_warnings():  # the parent already warned about rlimits-only
                warnings.simplefilter("ignore", RuntimeWarning)
                self._runner = build_sandbox(self.sandbox, self.limits, self.python)
        return self._runner

    def warmup(self) -> None:
        """Build and check this process's sandbox before a pool worker reports ready."""
        self._sandbox()

    def __call__(self, problem: Problem, response: str) -> Grade:
        answer = _check_answer(problem)
        program, rule = assemble_program(answer, extract_program(response))
        result = self._sandbox().run(program)
        correct = result.status == "passed"
        info = {"status": result.status, "detail": result.detail, "rule": rule,
                "seconds": round(result.seconds, 3), "stderr_tail": result.stderr[-500:]}
        return Grade(self.correct_reward if correct else self.wrong_reward, correct, None, info)
