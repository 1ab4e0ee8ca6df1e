"""ead: Exploratory Annealed Decoding for RL with verifiable rewards."""

from ead.schedules import (
    SCHEDULES,
    CosineSchedule,
    EADSchedule,
    FixedSchedule,
    LinearSchedule,
    ReversedEADSchedule,
    Schedule,
    build_schedule,
    schedule_from_dict,
)

__version__ = "0.1.0"

__all__ = [
    "SCHEDULES",
    "CosineSchedule",
    "EADSchedule",
    "FixedSchedule",
    "LinearSchedule",
    "ReversedEADSchedule",
    "Schedule",
    "build_schedule",
    "schedule_from_dict",
    "__version__",
]
