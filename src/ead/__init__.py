"""ead: Exploratory Annealed Decoding for RL with verifiable rewards.

Names are imported lazily so that light processes (grader workers, the CLI's --help) do not pay
for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    name: "ead.schedules"
    for name in (
        "SCHEDULES", "CosineSchedule", "EADSchedule", "FixedSchedule", "LinearSchedule",
        "ReversedEADSchedule", "Schedule", "build_schedule", "schedule_from_dict",
    )
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ead' has no attribute {name!r}")
