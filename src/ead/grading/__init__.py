"""Answer extraction, graders and reward containment.

* :mod:`ead.grading.extract`  - pull a final answer out of text (``\\boxed{}``, ``#### N``, ...).
* :mod:`ead.grading.math`     - :class:`MathGrader`, equivalence by Math-Verify.
* :mod:`ead.grading.registry` - :func:`build_grader` from a name or ``"module:function"``.
* :mod:`ead.grading.sandbox`  - :class:`GraderPool`, graders in worker processes with a timeout.
* :mod:`ead.grading.code`     - :class:`~ead.grading.code.CodeGrader`, programs run against tests in
  :mod:`ead.grading.code_sandbox` (bubblewrap); imported only when the ``code`` grader is built.

Nothing here imports sympy or the task modules until a grader is used.
"""

from ead.grading.extract import Extracted, extract_answer, find_boxed
from ead.grading.math import MathGrader, gold_answer
from ead.grading.registry import GRADERS, GraderNotFoundError, build_grader, register_grader
from ead.grading.sandbox import GraderPool, GraderStartupError

__all__ = [
    "Extracted",
    "extract_answer",
    "find_boxed",
    "MathGrader",
    "gold_answer",
    "GRADERS",
    "GraderNotFoundError",
    "build_grader",
    "register_grader",
    "GraderPool",
    "GraderStartupError",
]
