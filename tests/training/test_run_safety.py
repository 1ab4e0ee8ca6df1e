"""Run-directory safety: no clobbering, resume only the same config, finite and code-free checkpoints."""

import errno
import os
import pickle

import pytest
import torch

from conftest import build_test_model, build_test_tokenizer, use_grader
from ead.cli import main
from ead.io import RunFileError
from ead.training.checkpoint import (
    NonFiniteWeightsError,
    capture_rng_state,
    latest_checkpoint,
    load_trainer_state,
    restore_rng_state,
    save_checkpoint,
)
from ead.training.logger import read_metrics
from ead.training.run_dir import config_differences


def small_run(model_dir, out_dir, steps=2):
    return [f"model.path={model_dir}", f"output.dir={out_dir}", f"train.steps={steps}",
            "train.prompts_per_step=2", "train.samples_per_prompt=2", "train.mini_batch_size=4",
            "train.micro_batch_size=4", "sampling.max_new_tokens=4", "eval.every=0", "output.save_every=1",
            "output.progress=false", "grading.inline=true", "model.num_threads=1"]


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


def test_rerun_without_resume_is_refused_and_loses_nothing(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["train", *small_run(tiny_model_dir, out)], capsys)[0] == 0
    before = (out / "metrics.jsonl").read_bytes(), sorted(p.name for p in (out / "checkpoints").iterdir())
    code, err = run_cli(["train", *small_run(tiny_model_dir, out)], capsys)
    assert code != 0
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err and "output.dir" in err
    assert ((out / "metrics.jsonl").read_bytes(), sorted(p.name for p in (out / "checkpoints").iterdir())) == before


def test_overwrite_deletes_only_ead_files_and_says_so(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["train", *small_run(tiny_model_dir, out, steps=3)], capsys)[0] == 0
    (out / "notes.txt").write_text("mine")
    code, err = run_cli(["train", "--overwrite", *small_run(tiny_model_dir, out, steps=2)], capsys)
    assert code == 0 and "--overwrite: deleting" in err and "metrics.jsonl" in err
    assert (out / "notes.txt").read_text() == "mine"
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]
    # the old run's step_000003 is gone, so `latest` names the new run's newest checkpoint
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_000001", "step_000002"]
    assert latest_checkpoint(out / "checkpoints").name == "step_000002"


def test_resume_with_a_different_config_is_refused_with_the_differences(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["train", *small_run(tiny_model_dir, out)], capsys)[0] == 0
    saved = (out / "config.yaml").read_text()
    code, err = run_cli(["train", "--resume", *small_run(tiny_model_dir, out, steps=3), "train.seed=7",
                         "sampling.schedule.tau_max=1.4"], capsys)
    assert code != 0
    assert "train.seed: 0 -> 7" in err and "sampling.schedule.tau_max: 1.2 -> 1.4" in err
    assert "train.steps" not in err.split("Keys that may change")[0]  # extending a run is allowed
    assert (out / "config.yaml").read_text() == saved
    # more steps, another save cadence: allowed, and the run continues from step 2
    assert run_cli(["train", "--resume", *small_run(tiny_model_dir, out, steps=3), "output.save_every=3"],
                   capsys)[0] == 0
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]


def test_config_differences_lists_dotted_keys_and_ignores_the_allow_list():
    saved = {"train": {"steps": 4, "lr": 1e-3, "seed": 0}, "output": {"dir": "a"}, "sampling": {"schedule": {"tau": 1}}}
    now = {"train": {"steps": 9, "lr": 2e-3, "seed": 0}, "output": {"dir": "b"}, "sampling": {"schedule": {"tau": 1}},
           "eval": {"every": 5}}
    assert config_differences(saved, now) == ["train.lr: 0.001 -> 0.002"]
    # a key added to ead after the run was saved counts as its default value
    defaults = {"grading": {"timeout_s": 10.0}}
    assert config_differences(saved, {**now, "grading": {"timeout_s": 10.0}}, defaults) == ["train.lr: 0.001 -> 0.002"]
    assert config_differences(saved, {**now, "grading": {"timeout_s": 3.0}}, defaults) == [
        "grading.timeout_s: 10.0 -> 3.0", "train.lr: 0.001 -> 0.002"]


def test_resuming_a_fixed_schedule_run_does_not_borrow_the_default_ead_parameters():
    """A saved fixed schedule has no alpha/unit: the default EAD's values are not keys the run lacks.

    (A sweep cell with ``sampling.schedule={name: fixed, tau: 0.6}`` was refused on --resume with
    ``sampling.schedule.alpha: 5.0 -> (absent)`` before this.)
    """
    from ead.config import config_to_dict
    from ead.training.config import TrainConfig

    defaults = config_to_dict(TrainConfig())
    assert defaults["sampling"]["schedule"]["name"] == "ead" and "alpha" in defaults["sampling"]["schedule"]

    def with_schedule(schedule):  # a whole saved config, as config.yaml holds it
        return {**defaults, "sampling": {**defaults["sampling"], "schedule": schedule}}

    fixed = with_schedule({"name": "fixed", "tau": 0.6})
    assert config_differences(fixed, fixed, defaults) == []
    assert config_differences(fixed, with_schedule({"name": "fixed", "tau": 1.0}), defaults) == [
        "sampling.schedule.tau: 0.6 -> 1.0"]
    # the same variant still borrows a missing key's default, and a real change is still refused
    ead_default = defaults["sampling"]["schedule"]
    saved_ead = with_schedule({"name": "ead", "tau_max": 1.2})
    assert config_differences(saved_ead, with_schedule({**ead_default, "tau_max": 1.2}), defaults) == []
    assert config_differences(saved_ead, with_schedule({**ead_default, "tau_max": 1.2, "alpha": 7.0}), defaults) == [
        f"sampling.schedule.alpha: {ead_default['alpha']!r} -> 7.0"]


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture()
def policy_and_tokenizer():
    tokenizer = build_test_tokenizer()
    return build_test_model(len(tokenizer), seed=0), tokenizer


def _state():
    return {"loop": {"step": 1}, "rng": [capture_rng_state()], "config": {"train": {"lr": 1e-3}}}


def test_pruning_never_deletes_checkpoints_it_did_not_write(policy_and_tokenizer, tmp_path):
    model, tokenizer = policy_and_tokenizer
    foreign = tmp_path / "step_000099"
    foreign.mkdir()
    (foreign / "trainer_state.pt").write_bytes(b"someone else's")
    owned = []
    for step in (1, 2, 3):
        owned.append(save_checkpoint(tmp_path, step, model, tokenizer, _state(), keep=1, owned=owned))
        assert latest_checkpoint(tmp_path).name == f"step_{step:06d}"  # always a real checkpoint
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_000003", "step_000099"]


def test_non_finite_weights_are_never_saved(policy_and_tokenizer, tmp_path):
    model, tokenizer = policy_and_tokenizer
    save_checkpoint(tmp_path, 1, model, tokenizer, _state())
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("nan")
    with pytest.raises(NonFiniteWeightsError, match=r"nothing was saved; the last good checkpoint is .*step_000001"):
        save_checkpoint(tmp_path, 2, model, tokenizer, _state())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_000001"]


def test_disk_full_mid_checkpoint_keeps_the_previous_one(policy_and_tokenizer, tmp_path, monkeypatch):
    import ead.training.checkpoint as checkpoint_module

    model, tokenizer = policy_and_tokenizer
    save_checkpoint(tmp_path, 1, model, tokenizer, _state())

    def full_disk(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    with pytest.raises(RunFileError, match="disk full") as info:
        save_checkpoint(tmp_path, 2, model, tokenizer, _state(), owned=[tmp_path / "step_000001"])
    assert str(tmp_path) in str(info.value) and "step_000001" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_000001"]
    assert load_trainer_state(latest_checkpoint(tmp_path))["loop"] == {"step": 1}


def test_disk_full_during_training_is_a_message_naming_the_place(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import ead.training.checkpoint as checkpoint_module

    real_save, calls = torch.save, {"n": 0}

    def full_on_second(obj, handle, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", full_on_second)
    out = tmp_path / "run"
    code, err = run_cli(["train", *small_run(tiny_model_dir, out)], capsys)
    assert code != 0 and "disk full" in err and str(out / "checkpoints") in err and "step_000001" in err
    assert latest_checkpoint(out / "checkpoints").name == "step_000001"
    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)
    assert run_cli(["train", "--resume", *small_run(tiny_model_dir, out)], capsys)[0] == 0
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_trainer_state_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "step_000001"
    checkpoint.mkdir()
    with open(checkpoint / "trainer_state.pt", "wb") as handle:
        pickle.dump({"optimizer": _RunsCode(marker)}, handle, protocol=2)
    with pytest.raises(RunFileError, match="refusing to load .*would run code"):
        load_trainer_state(checkpoint)
    assert not marker.exists()


def test_rng_state_round_trips_through_a_weights_only_load(tmp_path):
    import random

    import numpy as np

    state = capture_rng_state()
    torch.save(state, tmp_path / "s.pt")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    restore_rng_state(torch.load(tmp_path / "s.pt", weights_only=True))
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


def test_latest_naming_something_outside_the_checkpoints_is_refused(tmp_path):
    (tmp_path / "latest").write_text("../../etc\n")
    with pytest.raises(RunFileError, match="not a complete checkpoint"):
        latest_checkpoint(tmp_path)


def nan_grader(problem, response):
    """A buggy reward: NaN for every other response (module-level so worker processes can import it)."""
    from ead.tasks.base import Grade

    return Grade(float("nan") if len(response) % 2 else 1.0, True)


def test_nan_rewards_are_grader_errors_and_training_stays_finite(tiny_model_dir, tmp_path, monkeypatch):
    import math

    import ead.training.trainer as trainer_module
    from ead.training.config import load_train_config

    use_grader(monkeypatch, nan_grader)
    run_dir = trainer_module.train(load_train_config(overrides=small_run(tiny_model_dir, tmp_path / "run")))
    records = read_metrics(run_dir / "metrics.jsonl")
    assert sum(r["reward/grade_errors"] for r in records) > 0
    assert all(math.isfinite(r["policy/loss"]) and math.isfinite(r["reward/mean"]) for r in records)


def test_resume_and_report_survive_a_torn_metrics_line(tmp_path):
    from ead.training.logger import MetricsLogger

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "a": 1.0}\n{"step": 2, "a": 2.0}\n{"step": 3, "a": 3.0}\n{"step": 4, "a"')
    with pytest.warns(UserWarning, match="torn"):
        assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]  # what `ead report` reads
    with pytest.warns(UserWarning, match="torn"):
        logger = MetricsLogger(tmp_path, resume_step=2)  # resumed from the step-2 checkpoint
    logger.log(3, {"a": float("nan")})
    logger.close()
    assert path.read_text() == '{"step": 1, "a": 1.0}\n{"step": 2, "a": 2.0}\n{"step": 3, "a": null}\n'
