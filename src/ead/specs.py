"""Typed sub-configs whose shape depends on a ``name``: parsed once at load, used as objects.

A config field typed with one of these classes is parsed by :func:`ead.config.config_from_dict`
through the class's ``from_config(value, where)`` (errors name the dotted field) and written back
to ``config.yaml`` by ``to_config()`` exactly as the user wrote it. The command then uses the
parsed object; nothing rebuilds it from the dict later.

* :class:`ScheduleSpec` - ``sampling.schedule``, ``eval.schedule`` and ``ead eval``'s ``schedules``.

The other sub-configs are plain dataclasses the loader builds field by field
(:class:`ead.rollout.VLLMOptions` for ``sampling.vllm``) or have their own class next to what
they configure (:class:`ead.data.DatasetSpec` for ``task.dataset``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ead.config import ConfigError
from ead.schedules import Schedule, ScheduleError, schedule_from_dict

__all__ = ["ScheduleSpec"]


class ScheduleSpec(Mapping):
    """A temperature schedule as written (``{'name': 'ead', 'tau_max': 1.2, ...}``) and built once.

    ``spec`` is the mapping as given (it names the schedule in labels and ``config.yaml``);
    ``schedule`` is the :class:`~ead.schedules.Schedule` it describes, defaults filled in.
    Reads like the (read-only) mapping it was written as: ``spec["name"]``, ``dict(spec)``.
    """

    __slots__ = ("spec", "schedule")

    def __init__(self, spec: dict[str, Any] | Schedule | ScheduleSpec):
        if isinstance(spec, ScheduleSpec):
            spec = spec.spec
        if isinstance(spec, Schedule):
            spec = spec.to_dict()
        if not isinstance(spec, dict):
            raise ScheduleError(f"schedule must be a mapping like {{name: ead, tau_max: 1.2}}, got {spec!r}")
        self.spec: dict[str, Any] = dict(spec)
        self.schedule: Schedule = schedule_from_dict(self.spec)

    @classmethod
    def from_config(cls, value: Any, where: str) -> ScheduleSpec:
        """Parse a config value; a bad name or parameter raises :class:`ConfigError` naming ``where``."""
        try:
            return cls(value)
        except ScheduleError as exc:
            message = str(exc)
            if message.startswith("schedule"):  # "schedule.tau_max must ..." -> "sampling.schedule.tau_max must ..."
                raise ConfigError(f"{where}{message[len('schedule'):]}") from None
            raise ConfigError(f"{where}: {message}") from None

    def to_config(self) -> dict[str, Any]:
        return dict(self.spec)

    def __getitem__(self, key: str) -> Any:
        return self.spec[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.spec)

    def __len__(self) -> int:
        return len(self.spec)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ScheduleSpec):
            return self.spec == other.spec
        if isinstance(other, dict):
            return self.spec == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self.spec.items())))

    def __repr__(self) -> str:
        return f"ScheduleSpec({self.spec!r})"
