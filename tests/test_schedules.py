"""Schedule values against the formula evaluated by hand (math module, not torch)."""

import math

import pytest
import torch

from ead.schedules import (
    CosineSchedule,
    EADSchedule,
    FixedSchedule,
    LinearSchedule,
    ReversedEADSchedule,
    ScheduleError,
    build_schedule,
    schedule_from_dict,
)


def by_hand(t, s, tau_max=1.2, tau_min=0.1, c=10, d0=25.0, alpha=5.0, d_max=40000.0, k=20.0):
    if t < c:
        return 1.0
    d = k * min(d0 + alpha * s, d_max)
    return max(1.0 + tau_max - math.exp(t / d), tau_min)


@pytest.mark.parametrize(
    "t, s, expected",
    [
        (0, 0, 1.0),
        (9, 0, 1.0),  # last warm-up token
        (10, 0, 2.2 - math.exp(10 / 500)),  # first annealed token: 1.17979866
        (100, 0, 2.2 - math.exp(0.2)),  # 0.97859724
        (370, 0, 2.2 - math.exp(370 / 500)),  # 0.1040..., just above the floor
        (371, 0, 0.1),  # clamped to tau_min
        (5000, 0, 0.1),  # exp overflow region stays at tau_min
        (300, 10, 2.2 - math.exp(300 / 1500)),  # D grows with the step: 20 * (25 + 50)
        (8000, 10**6, 2.2 - math.exp(8000 / 800000)),  # d_max cap: D = 20 * 40000
    ],
)
def test_ead_default_values(t, s, expected):
    schedule = EADSchedule()
    assert schedule.temperature(t, s) == pytest.approx(expected, abs=1e-6)
    assert by_hand(t, s) == pytest.approx(expected, abs=1e-9)


def test_ead_crossings_match_reference_numbers():
    tau = EADSchedule().temperatures(torch.arange(0, 1000), 0)
    assert int((tau < 1).nonzero()[0]) == 92  # exp(t/500) > 1.2  <=>  t > 91.16
    assert int((tau <= 0.1 + 1e-7).nonzero()[0]) == 371
    literal = EADSchedule(unit=1.0).temperatures(torch.arange(0, 100), 0)  # the paper's text read with k = 1
    assert int((literal <= 0.1 + 1e-7).nonzero()[0]) == 19  # 25 * ln(2.1) = 18.55


def test_ead_grid_matches_hand_formula_and_is_float32():
    schedule = EADSchedule(tau_max=1.4, tau_min=0.3, warmup_tokens=3, d0=2.0, alpha=0.5, d_max=4.0, unit=3.0)
    positions = torch.arange(0, 40).view(1, -1)  # (1, T)
    steps = torch.tensor([[0.0], [2.0], [100.0]])  # (3, 1): rows at different training steps
    tau = schedule.temperatures(positions, steps)
    assert tau.shape == (3, 40) and tau.dtype == torch.float32
    for row, s in enumerate([0, 2, 100]):
        for t in range(40):
            expected = by_hand(t, s, 1.4, 0.3, 3, 2.0, 0.5, 4.0, 3.0)
            assert float(tau[row, t]) == pytest.approx(expected, abs=1e-5)


def test_ead_hot_prefix_lengthens_with_step():
    schedule = EADSchedule()
    first_cold = [int((schedule.temperatures(torch.arange(0, 20000), s) < 1).nonzero()[0]) for s in (0, 10, 100)]
    assert first_cold[0] < first_cold[1] < first_cold[2]


def test_baselines_by_hand():
    t = torch.tensor([0, 50, 100, 200])
    assert FixedSchedule(0.6).temperatures(t, 3).tolist() == pytest.approx([0.6] * 4)
    assert LinearSchedule(1.0, 0.2, 100).temperatures(t).tolist() == pytest.approx([1.0, 0.6, 0.2, 0.2])
    cosine = CosineSchedule(1.0, 0.2, 100).temperatures(t).tolist()
    assert cosine == pytest.approx([1.0, 0.6, 0.2, 0.2], abs=1e-6)
    assert CosineSchedule(1.0, 0.2, 100).temperature(25) == pytest.approx(0.2 + 0.4 * (1 + math.cos(math.pi / 4)))


def test_reversed_is_cold_first_then_hot():
    reversed_ead = ReversedEADSchedule()
    assert reversed_ead.temperature(5) == 1.0
    assert reversed_ead.temperature(10) == pytest.approx(1.3 - (2.2 - math.exp(10 / 500)), abs=1e-6)
    assert reversed_ead.temperature(1000) == pytest.approx(1.2, abs=1e-6)
    assert reversed_ead.temperature(10) < reversed_ead.temperature(200) < reversed_ead.temperature(400)


@pytest.mark.parametrize(
    "params, field",
    [
        ({"tau_min": 1.5, "tau_max": 1.2}, "tau_min"),
        ({"warmup_tokens": -1}, "warmup_tokens"),
        ({"d0": 0.0}, "d0"),
        ({"unit": -2.0}, "unit"),
        ({"alpha": -1.0}, "alpha"),
        ({"d_max": 10.0}, "d_max"),
        ({"bogus": 1.0}, "bogus"),
        ({"tau_max": "hot"}, "tau_max"),
    ],
)
def test_bad_parameters_name_the_field(params, field):
    with pytest.raises(ScheduleError, match=field):
        build_schedule("ead", **params)


def test_dict_round_trip_and_unknown_name():
    schedule = EADSchedule(tau_max=1.5, unit=0.5)
    assert schedule_from_dict(schedule.to_dict()) == schedule
    with pytest.raises(ScheduleError, match="schedule.name"):
        build_schedule("annealed")
