"""Per-row EAD temperatures for batching engines, with no engine imported.

vLLM and SGLang sample many requests in one batch. Each row of the logits
tensor belongs to one request, and each request carries its own schedule,
training step and response position ``t``. This module holds that per-row
bookkeeping and the one tensor update, so that the vLLM (both runners) and
SGLang adapters stay thin and the logic is tested on CPU without any engine.

The temperature itself always comes from :meth:`ead.schedules.Schedule.temperatures`.

Requests opt in through two keys of vLLM's ``SamplingParams.extra_args`` (REST:
``vllm_xargs``) or SGLang's ``sampling_params["custom_params"]``:

* ``ead_schedule``: ``Schedule.to_dict()`` (a dict, or that dict as a JSON string);
* ``ead_step``: the global training step ``s`` (number >= 0, default 0).

A request without ``ead_schedule`` is left untouched (temperature 1 from us).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from ead.schedules import Schedule, ScheduleError, schedule_from_dict

__all__ = [
    "SCHEDULE_KEY",
    "STEP_KEY",
    "EADRequest",
    "RowTemperatures",
    "SlotTable",
    "ead_extra_args",
    "parse_ead_args",
    "temper",
    "temperatures_for_rows",
    "temperatures_from_request_params",
]

SCHEDULE_KEY = "ead_schedule"
"""extra_args / custom_params key holding ``Schedule.to_dict()``."""
STEP_KEY = "ead_step"
"""extra_args / custom_params key holding the global training step."""


@dataclass(frozen=True)
class EADRequest:
    """What one request asked for: its schedule and its global training step."""

    schedule: Schedule
    step: float


def ead_extra_args(schedule: Schedule, step: int | float = 0, as_json: bool = False) -> dict[str, Any]:
    """The per-request arguments that switch EAD on for one request.

    ``as_json=True`` encodes the schedule as a JSON string, for transports that
    only carry flat values (vLLM's REST ``vllm_xargs``).
    """
    spec: Any = schedule.to_dict()
    if as_json:
        spec = json.dumps(spec, sort_keys=True)
    return {SCHEDULE_KEY: spec, STEP_KEY: step}


@lru_cache(maxsize=256)
def _schedule_from_json(canonical: str) -> Schedule:
    return schedule_from_dict(json.loads(canonical))


def parse_ead_args(args: Mapping[str, Any] | None) -> EADRequest | None:
    """Read the EAD keys of a request's extra arguments; ``None`` when EAD is off.

    Raises:
        ValueError: the schedule or step is malformed (the message names the key).
    """
    if not args or args.get(SCHEDULE_KEY) is None:
        return None
    spec = args[SCHEDULE_KEY]
    try:
        if isinstance(spec, str):
            spec = json.loads(spec)
        if not isinstance(spec, Mapping):
            raise ScheduleError(f"expected a dict, got {type(spec).__name__}")
        schedule = _schedule_from_json(json.dumps(dict(spec), sort_keys=True))
    except (ValueError, TypeError) as err:  # ScheduleError and JSONDecodeError are ValueErrors
        raise ValueError(f"{SCHEDULE_KEY}: not a valid Schedule.to_dict(): {err}") from err
    step = args.get(STEP_KEY, 0)
    if isinstance(step, str):
        try:
            step = float(step)
        except ValueError as err:
            raise ValueError(f"{STEP_KEY} must be a number >= 0, got {step!r}") from err
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not (math.isfinite(step) and step >= 0):
        raise ValueError(f"{STEP_KEY} must be a number >= 0, got {step!r}")
    return EADRequest(schedule=schedule, step=float(step))


def temperatures_for_rows(
    requests: Sequence[EADRequest | None], positions: Sequence[int] | torch.Tensor
) -> torch.Tensor:
    """``tau`` for each row: the row's schedule at its position and step; 1.0 where EAD is off.

    One call of :meth:`Schedule.temperatures` per distinct schedule in the batch
    (usually exactly one). Computed on CPU; returns float32 ``(rows,)``.
    """
    positions_t = torch.as_tensor(positions, dtype=torch.float32).reshape(-1)  # (R,)
    tau = torch.ones(len(requests), dtype=torch.float32)  # (R,)
    groups: dict[Schedule, list[int]] = {}
    for row, request in enumerate(requests):
        if request is not None:
            groups.setdefault(request.schedule, []).append(row)
    for schedule, rows in groups.items():
        index = torch.tensor(rows, dtype=torch.long)
        steps = torch.tensor([requests[r].step for r in rows], dtype=torch.float32)  # type: ignore[union-attr]
        tau[index] = schedule.temperatures(positions_t[index].clamp(min=0), steps)
    return tau


_PARAMS_CACHE: dict[int, tuple[Any, Any, EADRequest | None]] = {}


def _parse_cached(params: Mapping[str, Any]) -> EADRequest | None:
    """:func:`parse_ead_args` memoised on the (persistent, per-request) params dict.

    Engines hand us the same dict every step; re-parsing the schedule for every
    row of every step would cost more than the division. The entry is reused only
    while the dict still holds the very same schedule object and step.
    """
    spec, step = params.get(SCHEDULE_KEY), params.get(STEP_KEY)
    hit = _PARAMS_CACHE.get(id(params))
    if hit is not None and hit[0] is spec and hit[1] == step:
        return hit[2]
    request = parse_ead_args(params)
    if len(_PARAMS_CACHE) > 65536:
        _PARAMS_CACHE.clear()
    _PARAMS_CACHE[id(params)] = (spec, step, request)
    return request


def temperatures_from_request_params(custom_param_list: Sequence[Mapping[str, Any] | None] | None) -> torch.Tensor:
    """``tau`` per row from SGLang-style per-request params (one dict per logits row).

    A row uses EAD when its dict has ``ead_schedule``; its position is
    ``t = len(params["__req__"].output_ids)`` (SGLang injects ``__req__``, the live
    request). Under SGLang's overlap scheduler that length may lag the true
    position by one token (sglang issue #8056); see ``docs/integrations.md``.
    """
    params_list = list(custom_param_list or [])
    requests: list[EADRequest | None] = []
    positions: list[int] = []
    for params in params_list:
        request = _parse_cached(params) if params else None
        position = 0
        if request is not None:
            req = params.get("__req__")
            if req is None:
                raise ValueError(
                    "EAD needs the live request under custom_params['__req__'] to know the response "
                    "position; this SGLang version does not inject it"
                )
            position = len(req.output_ids)
        requests.append(request)
        positions.append(position)
    return temperatures_for_rows(requests, positions)


def temper(logits: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """``logits / tau[:, None]`` in float32. ``(R, V)``, ``(R,)`` -> ``(R, V)`` float32.

    Rows with ``tau == 1`` come back bit-identical (x / 1 is exact), so requests
    without EAD are untouched.
    """
    tau = tau.to(device=logits.device, dtype=torch.float32)
    if logits.dtype == torch.float32:
        return logits.div_(tau.unsqueeze(-1))  # in place: the engine owns this buffer
    return logits.float() / tau.unsqueeze(-1)


@dataclass
class _Row:
    request: EADRequest
    output_ids: Sequence[int]  # live list owned by the engine; len() is t


def _is_swap(direction: Any) -> bool:
    """vLLM's ``MoveDirectionality.SWAP`` (compared by name so no vLLM import is needed)."""
    return getattr(direction, "name", str(direction)).upper().endswith("SWAP")


class RowTemperatures:
    """Rows of a persistent batch whose position is the length of a live output list.

    This is vLLM's V1-runner contract: rows are batch indices, an added request
    brings its ``output_tok_ids`` list which the engine keeps appending to, and
    :meth:`apply_batch_update` replays vLLM's ``BatchUpdate`` in its documented
    order: removed, then added, then moved. Only EAD rows are stored, and the
    grouping by schedule is rebuilt only when the batch changes, so a decode step
    costs one ``len()`` per EAD row plus one schedule call per distinct schedule.
    """

    def __init__(self) -> None:
        self._rows: dict[int, _Row] = {}
        self._groups: list[tuple[Schedule, torch.Tensor, torch.Tensor, list[Sequence[int]]]] | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, index: int, extra_args: Mapping[str, Any] | None, output_ids: Sequence[int]) -> None:
        """Put a request in row ``index`` (replacing whatever was there)."""
        request = parse_ead_args(extra_args)
        if request is None:
            self.remove(index)
        else:
            self._rows[index] = _Row(request, output_ids)
            self._groups = None

    def remove(self, index: int) -> None:
        if self._rows.pop(index, None) is not None:
            self._groups = None

    def move(self, src: int, dst: int, swap: bool) -> None:
        """``swap``: exchange rows; otherwise move ``src`` to ``dst`` and leave ``src`` empty."""
        a, b = self._rows.pop(src, None), self._rows.pop(dst, None)
        if a is not None:
            self._rows[dst] = a
        if swap and b is not None:
            self._rows[src] = b
        if a is not None or b is not None:
            self._groups = None

    def apply_batch_update(self, batch_update: Any) -> None:
        """Replay a vLLM ``BatchUpdate`` (or anything with ``removed``/``added``/``moved``)."""
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.remove(index)
        for added in batch_update.added:
            # (index, params, prompt_tok_ids, output_tok_ids); older vLLM had no prompt ids.
            index, params, output_ids = added[0], added[1], added[-1]
            self.add(index, getattr(params, "extra_args", None), output_ids)
        for src, dst, direction in batch_update.moved:
            self.move(src, dst, _is_swap(direction))

    def positions(self, num_rows: int) -> list[int]:
        """Response position ``t`` of each row (0 for rows without EAD)."""
        out = [0] * num_rows
        for index, row in self._rows.items():
            if index < num_rows:
                out[index] = len(row.output_ids)
        return out

    def _build_groups(self) -> list[tuple[Schedule, torch.Tensor, torch.Tensor, list[Sequence[int]]]]:
        by_schedule: dict[Schedule, list[tuple[int, _Row]]] = {}
        for index, row in sorted(self._rows.items()):
            by_schedule.setdefault(row.request.schedule, []).append((index, row))
        return [
            (
                schedule,
                torch.tensor([index for index, _ in members], dtype=torch.long),  # (G,) batch rows
                torch.tensor([row.request.step for _, row in members], dtype=torch.float32),  # (G,)
                [row.output_ids for _, row in members],
            )
            for schedule, members in by_schedule.items()
        ]

    def temperatures(self, num_rows: int) -> torch.Tensor:
        """float32 ``(num_rows,)`` on CPU; 1.0 for rows without EAD."""
        if self._groups is None:
            self._groups = self._build_groups()
        tau = torch.ones(num_rows, dtype=torch.float32)
        for schedule, index, steps, outputs in self._groups:
            keep = index < num_rows  # rows past the current batch size are stale; vLLM will remove them
            positions = torch.tensor([len(ids) for ids in outputs], dtype=torch.float32)  # (G,)
            tau[index[keep]] = schedule.temperatures(positions, steps)[keep]
        return tau


class SlotTable:
    """Per-slot EAD parameters kept as device tensors, for runners that reorder rows.

    vLLM's model runner V2 keys requests by a persistent slot and hands the
    processor, every step, a row->slot mapping and each row's position in
    prompt+response. Writes are staged on CPU (:meth:`set`, :meth:`clear`) and
    copied to the device in :meth:`flush`; :meth:`temperatures` then runs on the
    device without any host synchronisation:

        t = pos + 1 - prompt_len[slot]      (pos: index of the last input token)
    """

    def __init__(self, num_slots: int, device: torch.device | str = "cpu") -> None:
        self.num_slots = num_slots
        self.device = torch.device(device)
        self._requests: list[EADRequest | None] = [None] * num_slots
        self._prompt_len = [0] * num_slots
        self._active = np.zeros(num_slots, dtype=bool)  # host mirror, to skip work without a sync
        self._dirty = True
        self._schedules: list[Schedule] = []
        self._flush_tables()

    def set(self, slot: int, extra_args: Mapping[str, Any] | None, prompt_len: int) -> bool:
        """Stage slot ``slot``'s request; returns whether it uses EAD."""
        request = parse_ead_args(extra_args)
        if request is None:
            self.clear(slot)
            return False
        self._requests[slot] = request
        self._prompt_len[slot] = int(prompt_len)
        self._active[slot] = True
        self._dirty = True
        return True

    def clear(self, slot: int) -> None:
        if self._requests[slot] is not None:
            self._requests[slot] = None
            self._active[slot] = False
            self._dirty = True

    def any_active(self, slots: Sequence[int] | None = None) -> bool:
        """Whether any (of the given host-side) slots use EAD; never touches the device."""
        if slots is None:
            return bool(self._active.any())
        return bool(self._active[np.asarray(slots, dtype=np.int64)].any())

    def flush(self) -> None:
        """Copy staged writes to the device (call once per step before :meth:`temperatures`)."""
        if self._dirty:
            self._flush_tables()

    def _flush_tables(self) -> None:
        schedules: dict[Schedule, int] = {}
        group = [-1] * self.num_slots
        steps = [0.0] * self.num_slots
        for slot, request in enumerate(self._requests):
            if request is not None:
                group[slot] = schedules.setdefault(request.schedule, len(schedules))
                steps[slot] = request.step
        self._schedules = list(schedules)
        pin = self.device.type == "cuda"

        def to_device(values: list, dtype: torch.dtype) -> torch.Tensor:
            host = torch.tensor(values, dtype=dtype)
            if pin:
                host = host.pin_memory()
            return host.to(self.device, non_blocking=pin)

        self._group = to_device(group, torch.long)  # (S,) schedule index, -1 = EAD off
        self._step = to_device(steps, torch.float32)  # (S,)
        self._prompt_len_t = to_device(self._prompt_len, torch.long)  # (S,)
        self._dirty = False

    def temperatures(self, slots: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``tau`` per logits row, float32 ``(R,)`` on the table's device.

        Args:
            slots: ``(R,)`` slot of each logits row.
            positions: ``(R,)`` position (in prompt+response) of each row's last input token.
        """
        slots = slots.to(self.device, torch.long)
        t = (positions.to(self.device, torch.long) + 1 - self._prompt_len_t[slots]).clamp(min=0)  # (R,)
        group = self._group[slots]  # (R,)
        step = self._step[slots]  # (R,)
        tau = torch.ones(slots.shape, dtype=torch.float32, device=self.device)
        for index, schedule in enumerate(self._schedules):
            tau = torch.where(group == index, schedule.temperatures(t, step), tau)
        return tau
