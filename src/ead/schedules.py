"""Per-position sampling temperatures: EAD and the baselines it is compared with.

This module is the single place where the temperature formula lives. The Hugging
Face sampler, the vLLM and SGLang processors and the trainer's log-prob
bookkeeping all call :meth:`Schedule.temperatures`, so they cannot disagree.

Units, once and for all:

* ``t``  - position inside the *response* (0 = first generated token), in tokens.
  Prompt tokens never count.
* ``step`` - the global training step (number of optimiser updates done so far;
  0 at inference time unless you say otherwise).
* temperatures are dimensionless and returned as float32, whatever dtype the
  model runs in.

Exploratory Annealed Decoding (Yang et al. 2025, arXiv 2510.05251, Sec. 3, Eq. 2)::

    tau_t = 1.0                                        if t < c
    tau_t = max(1 + tau_max - exp(t / D_s), tau_min)   otherwise
    D_s   = k * min(d0 + alpha * s, d_max)

The paper writes ``exp(t / d)``; the authors' released code divides by
``20 * d``. We expose that factor as ``unit`` (``k``) so that ``d0``, ``alpha``
and ``d_max`` keep the numbers printed in the paper while ``D_s`` is in tokens.
With the defaults (k = 20, d0 = 25) the temperature first drops below 1 at
t ~ 91 and reaches tau_min = 0.1 at t ~ 371 at step 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch

__all__ = [
    "Schedule",
    "EADSchedule",
    "FixedSchedule",
    "LinearSchedule",
    "CosineSchedule",
    "ReversedEADSchedule",
    "TwoStageSchedule",
    "MeanMatchedSchedule",
    "EntropyAdaptiveSchedule",
    "SCHEDULES",
    "build_schedule",
    "schedule_from_dict",
]


def _as_float_tensor(value: torch.Tensor | float | int, like: torch.Tensor | None = None) -> torch.Tensor:
    """Float32 tensor on ``like``'s device (temperatures are always computed in float32)."""
    device = like.device if like is not None else None
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=torch.float32)
    return torch.tensor(float(value), dtype=torch.float32, device=device)


class ScheduleError(ValueError):
    """A schedule parameter is out of range; the message names the field."""


@dataclass(frozen=True)
class Schedule:
    """Base class: a temperature as a function of response position and training step."""

    name: ClassVar[str] = "base"

    def temperatures(self, positions: torch.Tensor, step: torch.Tensor | int | float = 0) -> torch.Tensor:
        """Temperature for each response position.

        Args:
            positions: integer or float tensor of response positions ``t`` (any shape,
                e.g. ``(rows, T)`` or ``(rows,)``).
            step: global training step, a scalar or a tensor broadcastable against
                ``positions`` (e.g. ``(rows, 1)`` when requests sit at different steps).

        Returns:
            float32 tensor of the broadcast shape, every entry > 0.
        """
        raise NotImplementedError

    needs_logits: ClassVar[bool] = False
    """True for schedules that read the current token distribution (only the HF sampler supports them)."""

    def temperatures_for_logits(self, logits: torch.Tensor, positions: torch.Tensor,
                                step: torch.Tensor | int | float = 0) -> torch.Tensor:
        """Temperatures for one sampling step given its raw ``(B, V)`` logits; position-only schedules ignore them."""
        return self.temperatures(positions, step)

    def temperature(self, position: int, step: int | float = 0) -> float:
        """Scalar convenience wrapper around :meth:`temperatures`."""
        return float(self.temperatures(torch.tensor([position]), step)[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description; :func:`schedule_from_dict` inverts it."""
        return {"name": self.name, **asdict(self)}

    def _check_positive(self, **values: float) -> None:
        for field_name, value in values.items():
            if not (value > 0 and math.isfinite(value)):
                raise ScheduleError(f"schedule.{field_name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class EADSchedule(Schedule):
    """Exploratory Annealed Decoding: hot first tokens, cooling as the response grows.

    Defaults are what the authors ran for 1B/1.5B models.
    """

    name: ClassVar[str] = "ead"

    tau_max: float = 1.2
    """Peak temperature (dimensionless), reached just after the warm-up: tau_c ~ tau_max."""
    tau_min: float = 0.1
    """Floor temperature (dimensionless); the paper uses 0.8 for 7B models."""
    warmup_tokens: int = 10
    """``c``: the first ``c`` response tokens are sampled at temperature exactly 1.0."""
    d0: float = 25.0
    """Initial decay length at step 0, in units of ``unit`` tokens."""
    alpha: float = 5.0
    """Growth of the decay length per training step, in units of ``unit`` tokens per step."""
    d_max: float = 40000.0
    """Cap on the decay length, in units of ``unit`` tokens."""
    unit: float = 20.0
    """``k``: tokens per unit of d. 20 reproduces the released code; 1 is the paper's literal text."""

    def __post_init__(self) -> None:
        self._check_positive(tau_max=self.tau_max, tau_min=self.tau_min, d0=self.d0, d_max=self.d_max, unit=self.unit)
        if self.tau_min > self.tau_max:
            raise ScheduleError(f"schedule.tau_min ({self.tau_min}) must not exceed schedule.tau_max ({self.tau_max})")
        if int(self.warmup_tokens) != self.warmup_tokens or self.warmup_tokens < 0:
            raise ScheduleError(f"schedule.warmup_tokens (c) must be an integer >= 0, got {self.warmup_tokens!r}")
        if not (self.alpha >= 0 and math.isfinite(self.alpha)):
            raise ScheduleError(f"schedule.alpha must be a finite number >= 0, got {self.alpha!r}")
        if self.d_max < self.d0:
            raise ScheduleError(f"schedule.d_max ({self.d_max}) must be >= schedule.d0 ({self.d0})")

    def decay_length(self, step: torch.Tensor | int | float = 0) -> torch.Tensor:
        """``D_s = k * min(d0 + alpha * s, d_max)``, in tokens (float32)."""
        step_t = _as_float_tensor(step)
        return self.unit * torch.clamp(self.d0 + self.alpha * step_t, max=self.d_max)

    def temperatures(self, positions: torch.Tensor, step: torch.Tensor | int | float = 0) -> torch.Tensor:
        t = positions.to(torch.float32)
        decay = self.decay_length(_as_float_tensor(step, like=t))
        # exp can overflow to +inf for t >> D; the clamp below then yields tau_min, which is right.
        annealed = torch.clamp(1.0 + self.tau_max - torch.exp(t / decay), min=self.tau_min)
        return torch.where(t < self.warmup_tokens, torch.ones_like(annealed), annealed)


@dataclass(frozen=True)
class ReversedEADSchedule(EADSchedule):
    """Ablation: the EAD curve mirrored in value, cold first and hot later.

    After the same warm-up at 1.0, ``tau_t = tau_min + tau_max - EAD_t``: it starts
    near ``tau_min`` and rises to ``tau_max`` over the same decay length. The paper
    reports that this does worse than fixed temperature.
    """

    name: ClassVar[str] = "reversed_ead"

    def temperatures(self, positions: torch.Tensor, step: torch.Tensor | int | float = 0) -> torch.Tensor:
        t = positions.to(torch.float32)
        ead = super().temperatures(t, step)
        mirrored = self.tau_min + self.tau_max - ead
        return torch.where(t < self.warmup_tokens, torch.ones_like(mirrored), mirrored)


@dataclass(frozen=True)
class FixedSchedule(Schedule):
    """Ordinary sampling at one temperature for every position."""

    name: ClassVar[str] = "fixed"

    tau: float = 1.0
    """Temperature (dimensionless)."""

    def __post_init__(self) -> None:
        self._check_positive(tau=self.tau)

    def temperatures(self, positions: torch.Tensor, step: torch.Tensor | int | float = 0) -> torch.Tensor:
        shape = torch.broadcast_shapes(positions.shape, _as_float_tensor(step).shape)
        return torch.full(shape, float(self.tau), dtype=torch.float32, device=positions.device)


@dataclass(frozen=True)
class _EndpointSchedule(Schedule):
    """Shared fields and checks of schedules that go from ``tau_start`` to ``tau_end``."""

    tau_start: float = 1.2
    """Temperature at t = 0 (dimensionless)."""
    tau_end: float = 0.1
    """Temperature from t = ``length`` on (dimensionless)."""
    length: float = 371.0
    """Positions over which the temperature moves, in tokens (371 = where default EAD reaches 0.1)."""

    def __post_init__(self) -> None:
        self._check_positive(tau_start=self.tau_start, tau_end=self.tau_end, length=self.length)

    def _progress(self, positions: torch.Tensor, step: torch.Tensor | int | float) -> torch.Tensor:
        t = positions.to(torch.float32)
        progress = torch.clamp(t / self.length, 0.0, 1.0)
        return progress.expand(torch.broadcast_shapes(t.shape, _as_float_tensor(step).shape))


@dataclass(frozen=True)
class LinearSchedule(_EndpointSchedule):
    """Ablation: straight line from ``tau_start`` to ``tau_end`` over ``length`` tokens."""

    name: ClassVar[str] = "linear"

    def temperatures(self, positions: torch.Tensor, step: torch.Tensor | int | float = 0) -> torch.Tensor:
        p = self._progress(positions, step)
        return self.tau_start + (self.tau_end - self.tau_start) * p


@dataclass(frozen=True)
class CosineSchedule(_EndpointSchedule):
    """Ablation: half-cosine from ``tau_start`` to ``tau_end`` over ``length`` tokens."""

    name: ClassVar[str] = "cosine"

    def temperatures(self, positions: torch.Tensor, step: torch.Tensor | int | float = 0) -> torch.Tensor:
        p = self._progress(positions, step)
        return self.tau_end + 0.5 * (self.tau_start - self.tau_end) * (1.0 + torch.cos(math.pi * p))


@dataclass(frozen=True)
class TwoStageSchedule(_EndpointSchedule):
    """Ablation: ``tau_start`` for ``t < length``, then ``tau_end``: a hot prefix and a cool rest, one switch.

    The step function EAD's smooth decay is compared with (same endpoints, same hot-prefix length).
    """

    name: ClassVar[str] = "two_stage"

    def temperatures(self, positions: torch.Tensor, step: torch.Tensor | int | float = 0) -> torch.Tensor:
        t = positions.to(torch.float32)
        shape = torch.broadcast_shapes(t.shape, _as_float_tensor(step).shape)
        hot = torch.full(shape, float(self.tau_start), dtype=torch.float32, device=positions.device)
        return torch.where(t.expand(shape) < self.length, hot, torch.full_like(hot, float(self.tau_end)))


@dataclass(frozen=True)
class MeanMatchedSchedule(EADSchedule):
    """Control: one temperature for every position, equal to EAD's *mean* temperature at this step.

    ``tau(s) = (1 / L) * sum_{t=0}^{L-1} tau_EAD(t, s)`` with the EAD fields of this schedule and
    ``L = length`` response positions. It keeps EAD's average heat and its growth over training
    steps but removes the annealing within a response, so "EAD beats mean-matched" isolates the
    shape. ``L`` is a fixed number of tokens, not each response's own length (unknown while
    sampling): set it to the responses' typical length (the mean EAD response length of the run
    being matched), or to ``sampling.max_new_tokens`` to match over the whole budget. Positions past
    a response's end never get sampled, so the smaller ``L``, the hotter the match.
    """

    name: ClassVar[str] = "mean_matched"

    length: int = 3072
    """``L``: response positions the mean runs over, in tokens (3072 = the paper's response budget)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.length) != self.length or self.length < 1:
            raise ScheduleError(f"schedule.length (L) must be an integer >= 1, got {self.length!r}")

    def mean_temperature(self, step: torch.Tensor | int | float = 0) -> torch.Tensor:
        """EAD's mean over ``t = 0 .. L-1`` at ``step`` (float32, the shape of ``step``)."""
        step_t = _as_float_tensor(step)
        t = torch.arange(int(self.length), dtype=torch.float32).reshape((1,) * step_t.dim() + (-1,))
        return super().temperatures(t, step_t.unsqueeze(-1)).mean(dim=-1)

    def temperatures(self, positions: torch.Tensor, step: torch.Tensor | int | float = 0) -> torch.Tensor:
        mean = self.mean_temperature(step).to(positions.device)
        return mean.expand(torch.broadcast_shapes(positions.shape, mean.shape)).clone()


@dataclass(frozen=True)
class EntropyAdaptiveSchedule(Schedule):
    """Per-token temperature from the current distribution's entropy: hotter at forks, cooler when sure.

    With ``H_t`` the entropy (nats) of the target policy pi at temperature 1 at this position::

        tau_t = tau_low + (tau_high - tau_low) * min(H_t / entropy_high, 1)

    A monotone map in the spirit of entropy-based dynamic temperature (Zhang et al. 2024, "EDT",
    arXiv 2403.14541), but linear and capped so the range is explicit. It needs the logits, so only
    samplers that hand them to the schedule support it: the HF engine (``ead.sampling``) does;
    vLLM's and SGLang's processors, TRL and the verl hooks ask :meth:`temperatures` with positions
    only and get an error. The behaviour log-prob recorded is that of ``softmax(z / tau_t)``, the
    distribution actually sampled, and the trainer reads the recorded ``tau_t`` (never recomputes it).
    """

    name: ClassVar[str] = "entropy_adaptive"
    needs_logits: ClassVar[bool] = True

    tau_low: float = 0.6
    """Temperature of a certain (zero-entropy) position."""
    tau_high: float = 1.2
    """Temperature from entropy ``entropy_high`` up."""
    entropy_high: float = 1.0
    """Entropy (nats) at which the temperature reaches ``tau_high``."""

    def __post_init__(self) -> None:
        self._check_positive(tau_low=self.tau_low, tau_high=self.tau_high, entropy_high=self.entropy_high)

    def temperatures(self, positions: torch.Tensor, step: torch.Tensor | int | float = 0) -> torch.Tensor:
        raise ScheduleError("schedule 'entropy_adaptive' needs the logits of each sampling step; only the HF "
                            "sampler (sampling.engine=hf) supports it, not vLLM, SGLang, TRL or verl")

    def temperatures_for_logits(self, logits: torch.Tensor, positions: torch.Tensor,
                                step: torch.Tensor | int | float = 0) -> torch.Tensor:
        log_p = torch.log_softmax(logits.float(), dim=-1)  # (B, V), temperature 1
        entropy = torch.special.entr(log_p.exp()).sum(dim=-1)  # (B,) nats, entr(0) = 0
        share = torch.clamp(entropy / self.entropy_high, 0.0, 1.0)
        return self.tau_low + (self.tau_high - self.tau_low) * share  # (B,) float32


SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (EADSchedule, ReversedEADSchedule, FixedSchedule, LinearSchedule, CosineSchedule,
                              TwoStageSchedule, MeanMatchedSchedule, EntropyAdaptiveSchedule)
}


def build_schedule(name: str, **params: Any) -> Schedule:
    """Build a registered schedule, rejecting unknown names and parameters with a clear message."""
    if name not in SCHEDULES:
        raise ScheduleError(f"schedule.name {name!r} is not one of {sorted(SCHEDULES)}")
    cls = SCHEDULES[name]
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ScheduleError(f"unknown schedule field(s) {unknown} for schedule {name!r}; allowed: {sorted(allowed)}")
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScheduleError(f"schedule.{key} must be a number, got {value!r}")
    return cls(**params)


def schedule_from_dict(spec: dict[str, Any] | Schedule) -> Schedule:
    """Inverse of :meth:`Schedule.to_dict` (also accepts a ready schedule)."""
    if isinstance(spec, Schedule):
        return spec
    spec = dict(spec)
    name = spec.pop("name", None)
    if name is None:
        raise ScheduleError("schedule needs a 'name' field, one of " + str(sorted(SCHEDULES)))
    return build_schedule(name, **spec)
