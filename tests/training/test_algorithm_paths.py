"""Paths the default run never takes: the KL penalty (and its reference model across a resume) and a
trained DAPO preset whose dynamic sampling and overlong filter must actually act."""

import hashlib
import inspect

import pytest
import torch

from conftest import assert_same_run, crash_then_resume, tiny_overrides, use_grader
from ead.tasks.base import Grade
from ead.training.config import load_train_config
from ead.training.logger import read_metrics
from ead.training.trainer import train


def _spy_on_updates(monkeypatch):
    """Record the named arguments of every ``ppo_update`` call (by name: robust to reordering)."""
    import ead.training.trainer as trainer_module

    real, calls = trainer_module.ppo_update, []

    def spy(*args, **kwargs):
        bound = inspect.signature(real).bind(*args, **kwargs).arguments
        ref = bound.get("ref_model")
        calls.append({"loss_mask": bound["loss_mask"].clone(), "rollouts": bound["rollouts"],
                      "advantages": bound["advantages"].clone(),
                      "ref_state": None if ref is None else {k: v.clone() for k, v in ref.state_dict().items()}})
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "ppo_update", spy)
    return calls


def half_solvable_grader(problem, response):
    """Problems of one hash class always score 0 (uninformative groups); the others pay half the responses."""
    solvable = int(hashlib.sha256(problem.uid.encode()).hexdigest(), 16) % 2 == 0
    correct = solvable and int(hashlib.sha256(response.encode()).hexdigest(), 16) % 2 == 0
    return Grade(reward=float(correct), correct=correct, answer_key=response)


@pytest.fixture
def half_solvable_task(monkeypatch):
    """The run's task graded by :func:`half_solvable_grader` (a random policy otherwise never earns a reward)."""
    use_grader(monkeypatch, half_solvable_grader)


def _weights(directory):
    from safetensors.torch import load_file

    return load_file(directory / "model.safetensors")


def test_kl_penalty_pulls_towards_the_initial_policy_and_resume_keeps_that_reference(tiny_model_dir, tmp_path,
                                                                                      monkeypatch, half_solvable_task):
    kl = ["algorithm.kl_coef=0.5"]
    straight = train(load_train_config(overrides=tiny_overrides(tiny_model_dir, tmp_path / "straight") + kl))
    records = read_metrics(straight / "metrics.jsonl")
    # k3 >= 0 always, and once the policy has moved away from the reference the penalty is positive.
    assert all(r["policy/kl_to_ref"] >= 0 for r in records[1:]) and records[-1]["policy/kl_to_ref"] > 1e-6

    calls = _spy_on_updates(monkeypatch)
    overrides = tiny_overrides(tiny_model_dir, tmp_path / "resumed") + kl
    resumed = crash_then_resume(lambda: load_train_config(overrides=overrides), monkeypatch, crash_on_update=4)
    assert_same_run(straight, resumed, "step_000004")  # the same run, penalty included
    # The reference after the resume is the initial policy, not the step-2 checkpoint being resumed.
    initial = _weights(tiny_model_dir)
    checkpoint = _weights(resumed / "checkpoints" / "step_000002" / "model")
    ref_after_resume = calls[-1]["ref_state"]
    assert all(torch.equal(ref_after_resume[k], initial[k]) for k in initial)
    assert not all(torch.equal(ref_after_resume[k], checkpoint[k]) for k in checkpoint)


def test_dapo_preset_trains_with_dynamic_sampling_and_overlong_filtering(tiny_model_dir, tmp_path, monkeypatch,
                                                                       half_solvable_task):
    calls = _spy_on_updates(monkeypatch)
    config = load_train_config(overrides=tiny_overrides(tiny_model_dir, tmp_path / "dapo", steps=3) + ["eval.every=0"],
                  algorithm="dapo")
    assert config.algorithm.dynamic_sampling and config.algorithm.overlong_filter
    records = read_metrics(train(config) / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    # Dynamic sampling acted: rounds beyond the first were drawn, and no kept group has equal rewards
    # (all-equal groups have zero GRPO advantage, so every kept group has a non-zero one).
    assert sum(r["sampling/rounds"] for r in records) > len(records)
    assert all(r["sampling/responses"] >= 16 for r in records)
    assert any(r["sampling/responses"] > 16 for r in records)
    assert len(calls) == 3  # one update call per step (its ppo_epochs run inside)
    for call in calls:
        groups = call["advantages"].view(-1, 4)
        assert bool((groups.abs().sum(dim=1) > 0).all())
    # The overlong filter acted: responses cut off by max_new_tokens carry no loss, finished ones all of theirs.
    truncated = sum(int((~c["rollouts"].finished).sum()) for c in calls)
    assert truncated > 0
    for call in calls:
        rollouts, mask = call["rollouts"], call["loss_mask"]
        assert bool((mask[~rollouts.finished] == 0).all())
        assert torch.equal(mask[rollouts.finished], rollouts.response_mask[rollouts.finished].float())
