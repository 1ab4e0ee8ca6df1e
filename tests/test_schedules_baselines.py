"""The schedules added for the exploration comparison, against the formulas worked by hand."""

import math

import pytest
import torch

from ead.schedules import MeanMatchedSchedule, TwoStageSchedule, schedule_from_dict, ScheduleError


def _ead_by_hand(t, step, tau_max=1.2, tau_min=0.1, c=0, d0=25.0, alpha=5.0, unit=0.4):
    if t < c:
        return 1.0
    return max(1 + tau_max - math.exp(t / (unit * (d0 + alpha * step))), tau_min)


def test_two_stage_by_hand():
    schedule = schedule_from_dict({"name": "two_stage", "tau_start": 1.3, "tau_end": 0.6, "length": 3})
    assert isinstance(schedule, TwoStageSchedule)
    assert schedule.temperatures(torch.arange(6)).tolist() == pytest.approx([1.3, 1.3, 1.3, 0.6, 0.6, 0.6])
    assert schedule.temperatures(torch.arange(4), torch.tensor([[0], [9]])).shape == (2, 4)


@pytest.mark.parametrize("step", [0, 3, 20])
def test_mean_matched_is_eads_mean_over_length_positions(step):
    spec = {"name": "mean_matched", "tau_max": 1.2, "tau_min": 0.1, "warmup_tokens": 0, "d0": 25.0, "alpha": 5.0,
            "d_max": 40000.0, "unit": 0.4, "length": 12}
    schedule = schedule_from_dict(spec)
    expected = sum(_ead_by_hand(t, step) for t in range(12)) / 12
    taus = schedule.temperatures(torch.arange(30), step)
    assert taus.dtype == torch.float32
    assert taus.tolist() == pytest.approx([expected] * 30, rel=1e-6)  # one value for every position
    assert schedule_from_dict(schedule.to_dict()) == schedule


def test_mean_matched_per_row_steps_and_warmup():
    schedule = MeanMatchedSchedule(warmup_tokens=2, unit=0.4, length=5)
    taus = schedule.temperatures(torch.arange(3).expand(2, 3), torch.tensor([[0], [10]]))
    for row, step in enumerate((0, 10)):
        expected = sum(_ead_by_hand(t, step, c=2) for t in range(5)) / 5
        assert taus[row].tolist() == pytest.approx([expected] * 3, rel=1e-6)
    assert 0.1 < float(taus[0, 0]) < float(taus[1, 0]) < 1.2  # hotter as the decay length grows


def test_mean_matched_rejects_a_bad_length():
    with pytest.raises(ScheduleError, match="schedule.length"):
        MeanMatchedSchedule(length=0)
