"""Grader registry: build a grader from a name (``"math"``) or an import path (``"pkg.mod:fn"``).

Built-in names map to factories that import their module only when called, so
looking up ``"countdown"`` does not import the task module (and ``"math"`` does not
import sympy) until a grader is actually built.

Add a grader with :func:`register_grader`::

    @register_grader("my_task")
    def _build(**kwargs):
        return MyGrader(**kwargs)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ead.tasks.base import Grader

__all__ = ["GRADERS", "register_grader", "build_grader", "GraderNotFoundError"]

GraderFactory = Callable[..., Grader]

GRADERS: dict[str, GraderFactory] = {}
"""Registered grader factories by name; each takes keyword options and returns a grader."""


class GraderNotFoundError(ValueError):
    """Unknown grader name or unresolvable import path."""


def register_grader(name: str) -> Callable[[GraderFactory], GraderFactory]:
    """Decorator registering ``factory(**kwargs) -> grader`` under ``name``."""

    def decorate(factory: GraderFactory) -> GraderFactory:
        if name in GRADERS:
            raise ValueError(f"grader {name!r} is already registered")
        GRADERS[name] = factory
        return factory

    return decorate


@register_grader("math")
def _math(**kwargs: Any) -> Grader:
    """Math-Verify grader for MATH / AIME / AMC answers and GSM8K ``#### N`` answers."""
    from ead.grading.math import MathGrader

    return MathGrader(**kwargs)


GRADERS["gsm8k"] = _math  # same grader: it reads both ``\boxed{}`` and ``#### N``


@register_grader("countdown")
def _countdown(**kwargs: Any) -> Grader:
    """The built-in Countdown task's chain checker (``ead.tasks.countdown``)."""
    from ead.tasks.countdown import CountdownGrader

    return CountdownGrader(**kwargs)


@register_grader("code")
def _code(**kwargs: Any) -> Grader:
    """Runs the response's Python program against the problem's tests in a bubblewrap sandbox (``ead.grading.code``)."""
    from ead.grading.code import CodeGrader

    return CodeGrader(**kwargs)


@register_grader("reasoning_gym")
def _reasoning_gym(**kwargs: Any) -> Grader:
    """A reasoning-gym generator's own scorer on the <answer> tag (``ead.tasks.reasoning_gym``)."""
    from ead.tasks.reasoning_gym import ReasoningGymGrader

    return ReasoningGymGrader(**kwargs)


def _import_path(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise GraderNotFoundError(f"grader import path must look like 'package.module:name', got {path!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise GraderNotFoundError(f"cannot import module {module_name!r} for grader {path!r}: {exc}") from exc
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise GraderNotFoundError(f"module {module_name!r} has no attribute {attribute!r} (grader {path!r})")
        obj = getattr(obj, part)
    return obj


def build_grader(spec: str, **kwargs: Any) -> Grader:
    """A grader from a registered name or a ``"module:attribute"`` import path.

    For an import path the attribute is used as follows: a class is instantiated with
    ``kwargs`` (e.g. a grader dataclass); any other callable is the grader itself and
    takes no ``kwargs``. Graders running in a :class:`~ead.grading.sandbox.GraderPool`
    must be picklable: module-level functions and dataclass instances are.
    """
    if spec in GRADERS:
        return GRADERS[spec](**kwargs)
    if ":" not in spec:
        raise GraderNotFoundError(f"unknown grader {spec!r}: use one of {sorted(GRADERS)} or 'package.module:name'")
    obj = _import_path(spec)
    if isinstance(obj, type):
        return obj(**kwargs)
    if not callable(obj):
        raise GraderNotFoundError(f"grader {spec!r} is a {type(obj).__name__}, not a callable")
    if kwargs:
        raise ValueError(f"grader {spec!r} is a function; it takes no options, got {sorted(kwargs)}")
    return obj
