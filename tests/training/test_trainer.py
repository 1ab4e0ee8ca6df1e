"""End-to-end training on a tiny local model: runs, logs, resumes exactly, contains bad graders."""

import json
import math

import pytest
import torch

from conftest import assert_same_run, crash_then_resume, tiny_overrides, use_grader
from ead.tasks.base import Grade
from ead.training.config import load_train_config
from ead.training.logger import read_metrics
from ead.training.trainer import train


def test_training_runs_and_logs_every_metric(tiny_model_dir, tmp_path):
    run_dir = train(load_train_config(overrides=tiny_overrides(tiny_model_dir, tmp_path / "run")))
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2, 3, 4]
    step = records[2]
    for key in ("reward/mean", "response/length_mean", "entropy/mean", "is/weight_mean", "is/truncated_frac",
                "is/kl_behaviour_to_pi", "policy/clip_frac", "policy/grad_norm", "time/step_s", "throughput/tokens_per_s",
                "eval/pass@1", "eval/pass@4", "eval/worst@4", "eval/mean@4", "eval/maj@4", "rollouts_consumed"):
        assert key in step and step[key] is not None, key
    assert any(k.startswith("entropy/pos_") for k in step)
    assert step["policy/updates"] == 4.0  # 16 responses / 8 per mini-batch * 2 epochs
    assert step["rollouts_consumed"] == 32
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_000004"


def test_interrupted_and_resumed_run_matches_uninterrupted(tiny_model_dir, tmp_path, monkeypatch):
    straight = train(load_train_config(overrides=tiny_overrides(tiny_model_dir, tmp_path / "straight")))
    overrides = tiny_overrides(tiny_model_dir, tmp_path / "resumed")
    resumed = crash_then_resume(lambda: load_train_config(overrides=overrides), monkeypatch, crash_on_update=4)
    assert_same_run(straight, resumed, "step_000004")


def test_crash_mid_save_keeps_latest_checkpoint_intact(tiny_model_dir, tmp_path, monkeypatch):
    overrides = tiny_overrides(tiny_model_dir, tmp_path / "run")
    import ead.training.checkpoint as checkpoint_module

    real_save = torch.save
    calls = {"n": 0}

    def failing_torch_save(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint dies half-written
            raise OSError("disk full")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", failing_torch_save)
    with pytest.raises(OSError, match="disk full"):
        train(load_train_config(overrides=overrides))
    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert (checkpoints / "latest").read_text().strip() == "step_000002"
    resumed = train(load_train_config(overrides=overrides), resume=True)
    assert [r["step"] for r in read_metrics(resumed / "metrics.jsonl")] == [0, 1, 2, 3, 4]
    assert not list(checkpoints.glob("*.tmp-*"))


def flaky_grader(problem, response):
    """Raises on some responses and hangs on others; module-level so worker processes can import it."""
    if len(response) % 3 == 0:
        raise ValueError("grader bug")
    if len(response) % 3 == 1:
        import time

        time.sleep(60)
    return Grade(reward=1.0, correct=True, answer_key=response)


def test_raising_and_hanging_grader_is_contained(tiny_model_dir, tmp_path, monkeypatch):
    use_grader(monkeypatch, flaky_grader)
    overrides = tiny_overrides(tiny_model_dir, tmp_path / "run", steps=1)
    overrides = [o for o in overrides if not o.startswith("grading.")] + ["grading.timeout_s=0.5", "eval.every=0"]
    run_dir = train(load_train_config(overrides=overrides))
    record = read_metrics(run_dir / "metrics.jsonl")[-1]
    assert record["step"] == 1
    assert record["reward/grade_errors"] > 0 and record["reward/grade_timeouts"] > 0
    assert math.isfinite(record["policy/loss"])
