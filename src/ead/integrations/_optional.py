"""Lazy imports of optional engines, with an error that says how to fix it.

Only the integration module of an engine imports that engine, and only through
:func:`require`, so ``import ead`` never needs vLLM, SGLang, TRL or verl.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["EXTRAS", "is_available", "require"]

EXTRAS: dict[str, str] = {"vllm": "vllm", "sglang": "sglang", "trl": "trl", "verl": "verl"}
"""Top-level package -> the ``ead-rlvr`` extra that installs it."""


def is_available(package: str) -> bool:
    """Whether ``package`` (top-level name) can be imported, without importing it."""
    return importlib.util.find_spec(package) is not None


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` naming the pip extra that provides it.

    Args:
        module: dotted module path, e.g. ``"vllm.v1.sample.logits_processor"``.
        feature: what needs it, for the message (e.g. ``"ead.integrations.vllm_v1"``).
    """
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra = EXTRAS.get(top, top)
        raise ImportError(
            f"{feature} needs `{module}` ({err}). Install the optional extra with: "
            f"pip install 'ead-rlvr[{extra}]'"
        ) from err
