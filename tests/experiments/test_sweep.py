"""The sweep runner: grid expansion and validation, skip-done / resume-unfinished / record-failure, a real tiny run."""

import json
import textwrap

import pytest

import ead.experiments.sweep as sweep_module
from ead.config import ConfigError
from ead.experiments.grid import SweepConfig, load_sweep_config
from ead.experiments.sweep import run_sweep

# Stands in for `python -m ead.cli train`: logs 3 steps, checkpoints, and can crash once on request.
FAKE_TRAIN = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    args = sys.argv[1:]
    out = Path(next(a.split("=", 1)[1] for a in args if a.startswith("output.dir=")))
    with open(os.environ["FAKE_CALLS"], "a") as calls:
        calls.write(json.dumps({"dir": out.name, "resume": "--resume" in args}) + "\\n")
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    if os.environ.get("FAKE_SLEEP"):
        (out / "pid").write_text(str(os.getpid()))
        import time
        time.sleep(float(os.environ["FAKE_SLEEP"]))
    start = 2 if "--resume" in args else 0
    with open(out / "metrics.jsonl", "a" if start else "w") as f:
        for step in range(start, 4):
            f.write(json.dumps({"step": step, "rollouts_consumed": 8 * step, "eval/mean@16": 0.1 * step}) + "\\n")
            if step == 2:
                (out / "checkpoints" / "latest").write_text("step_000002\\n")
                if os.environ.get("FAKE_FAIL") == out.name:
                    sys.exit(3)
""")


def make_config(tmp_path, **changes) -> SweepConfig:
    data = {"out_dir": str(tmp_path / "sweep"), "base": ["train.steps=3"],
            "axes": {"sampler": {"hot": ["sampling.schedule={name: fixed, tau: 1.2}"], "ead": []}},
            "algorithms": ["grpo"], "seeds": [0, 1], "jobs": 2, "base_eval": {"enabled": False},
            "warm_start_cache": str(tmp_path / "cache")}
    data.update(changes)
    path = tmp_path / "sweep.yaml"
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_sweep_config(path)


@pytest.fixture
def fake_train(tmp_path, monkeypatch):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    calls = tmp_path / "calls.jsonl"
    calls.touch()
    monkeypatch.setattr(sweep_module, "TRAIN_ENTRY", [str(script)])
    monkeypatch.setattr(sweep_module, "validate_cells", lambda config: None)
    monkeypatch.setattr(sweep_module, "warm_up", lambda config, progress=True: [])
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    return lambda: [json.loads(line) for line in calls.read_text().splitlines()]


def test_grid_is_the_product_with_forced_overrides_last(tmp_path):
    config = make_config(tmp_path, algorithms=["grpo", "dapo"], seeds=[0, 1, 2])
    cells = config.cells()
    assert len(cells) == 2 * 2 * 3
    assert [c.id for c in cells[:4]] == ["hot__grpo__s0", "hot__grpo__s1", "hot__grpo__s2", "hot__dapo__s0"]
    cell = cells[0]
    assert cell.group == "hot__grpo" and cell.labels == {"sampler": "hot"}
    assert cell.overrides[:4] == ["train.steps=3", "sampling.schedule={name: fixed, tau: 1.2}", "train.seed=0", "task.seed=0"]
    assert cell.overrides[4:] == [f"output.dir={tmp_path / 'sweep' / 'cells' / 'hot__grpo__s0'}", "model.num_threads=1",
                                  f"model.warm_start_cache={tmp_path / 'cache'}", "output.progress=false"]
    assert cell.train_args(None)[:2] == ["--algorithm", "grpo"]


def test_jobs_run_seed_major_so_a_cut_short_sweep_covers_every_group(tmp_path):
    jobs, skipped = sweep_module.plan_jobs(make_config(tmp_path))
    assert [j.id for j in jobs] == ["hot__grpo__s0", "ead__grpo__s0", "hot__grpo__s1", "ead__grpo__s1"] and skipped == []
    assert jobs[0].argv[-1] != "--resume" and jobs[0].args[:2] == ["--algorithm", "grpo"]


def test_only_runs_the_chosen_axis_values_and_a_later_full_run_fills_in_the_rest(tmp_path, fake_train):
    from ead.experiments.command import parse_only

    config = make_config(tmp_path)
    only = parse_only(["sampler=ead"], config)
    assert only == {"sampler": {"ead"}}
    # Two cells run at once, so they finish in either order: compare as sorted lists.
    assert sorted(run_sweep(config, progress=False, poll_s=0.05, only=only).done) == ["ead__grpo__s0", "ead__grpo__s1"]
    result = run_sweep(config, progress=False, poll_s=0.05)
    assert sorted(result.done) == ["hot__grpo__s0", "hot__grpo__s1"]
    assert sorted(result.skipped) == ["ead__grpo__s0", "ead__grpo__s1"]
    for word, message in [("sampler", "expected AXIS=VALUE"), ("temp=ead", "no axis 'temp'"),
                          ("sampler=ead,cold", "no value 'cold'")]:
        with pytest.raises(ConfigError, match=message):
            parse_only([word], config)


@pytest.mark.parametrize("change, field", [
    ({"jobs": 0}, "jobs"),
    ({"seeds": [1, 1]}, "seeds"),
    ({"algorithms": ["ppo"]}, "algorithms"),
    ({"axes": {"sampler": {"bad": ["no-equals-sign"]}}}, "axes.sampler.bad"),
    ({"axes": {"sampler": {"a__b": []}}}, "axes.sampler.a__b"),
    ({"base": ["output.dir=elsewhere"]}, "base"),
    ({"report": {"smooth": 0}}, "report.smooth"),
    ({"jbos": 2}, "jbos"),
])
def test_config_errors_name_the_field(tmp_path, change, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        make_config(tmp_path, **change)


def test_cell_configs_are_validated_before_anything_runs(tmp_path):
    config = make_config(tmp_path, base=["train.stepz=3"])
    with pytest.raises(ConfigError, match=r"cell hot__grpo__s0: .*train\.stepz"):
        run_sweep(config, progress=False)
    assert not (tmp_path / "sweep" / "cells").exists()


def test_failed_cell_is_recorded_and_the_sweep_resumes_it(tmp_path, fake_train, monkeypatch):
    config = make_config(tmp_path)
    monkeypatch.setenv("FAKE_FAIL", "ead__grpo__s1")
    first = run_sweep(config, progress=False, poll_s=0.02)
    assert sorted(first.done) == ["ead__grpo__s0", "hot__grpo__s0", "hot__grpo__s1"]
    assert first.failed == ["ead__grpo__s1"]
    status = json.loads((tmp_path / "sweep" / "status.json").read_text())
    assert status["ead__grpo__s1"]["state"] == "failed" and status["ead__grpo__s1"]["returncode"] == 3
    assert not (tmp_path / "sweep" / "cells" / "ead__grpo__s1" / "DONE").exists()
    assert (tmp_path / "sweep" / "cells" / "hot__grpo__s0" / "DONE").exists()

    monkeypatch.delenv("FAKE_FAIL")
    second = run_sweep(config, progress=False, poll_s=0.02)
    assert second.done == ["ead__grpo__s1"] and second.ok
    assert sorted(second.skipped) == ["ead__grpo__s0", "hot__grpo__s0", "hot__grpo__s1"]
    calls = fake_train()
    assert len(calls) == 5  # four first attempts, then only the failed cell, resumed from its checkpoint
    assert calls[-1] == {"dir": "ead__grpo__s1", "resume": True}
    steps = [json.loads(line)["step"] for line in
             (tmp_path / "sweep" / "cells" / "ead__grpo__s1" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 2, 3]  # the fake appends; the real trainer truncates after the checkpoint
    assert json.loads((tmp_path / "sweep" / "status.json").read_text())["ead__grpo__s1"]["attempts"] == 2

    third = run_sweep(config, progress=False, poll_s=0.02)
    assert third.done == [] and len(third.skipped) == 4 and len(fake_train()) == 5


def test_sigterm_stops_the_running_cells_and_marks_them_interrupted(tmp_path, fake_train):
    import os
    import signal
    import subprocess
    import sys
    import time

    config_path = tmp_path / "sweep.yaml"
    make_config(tmp_path, seeds=[0])
    runner = (f"import ead.experiments.sweep as s; s.TRAIN_ENTRY = {sweep_module.TRAIN_ENTRY!r}; "
              "s.validate_cells = lambda c: None; s.warm_up = lambda c, progress=True: []; "
              f"from ead.experiments.grid import load_sweep_config; s.run_sweep(load_sweep_config({str(config_path)!r}), "
              "progress=False, poll_s=0.05)")
    sweep = subprocess.Popen([sys.executable, "-c", runner], env={**os.environ, "FAKE_SLEEP": "60"})
    pid_files = [tmp_path / "sweep" / "cells" / cell / "pid" for cell in ("hot__grpo__s0", "ead__grpo__s0")]
    deadline = time.time() + 30
    while not all(p.exists() and p.read_text() for p in pid_files) and time.time() < deadline:
        time.sleep(0.1)
    sweep.send_signal(signal.SIGTERM)
    assert sweep.wait(timeout=30) != 0
    for pid_file in pid_files:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid_file.read_text()), 0)  # the cell's process is gone, not orphaned
    status = json.loads((tmp_path / "sweep" / "status.json").read_text())
    assert {status[c]["state"] for c in ("hot__grpo__s0", "ead__grpo__s0")} == {"interrupted"}


def test_a_cell_started_with_other_arguments_is_refused(tmp_path, fake_train):
    run_sweep(make_config(tmp_path, seeds=[0]), progress=False, poll_s=0.02)
    (tmp_path / "sweep" / "cells" / "hot__grpo__s0" / "DONE").unlink()
    with pytest.raises(ConfigError, match="hot__grpo__s0 .* different arguments"):
        run_sweep(make_config(tmp_path, seeds=[0], base=["train.steps=5"]), progress=False)


@pytest.mark.slow
def test_real_tiny_sweep_through_the_cli(tmp_path, tiny_model_dir):
    """Two real `ead train` subprocesses (tiny model, 2 steps) and the base-model inference job, then a report."""
    from ead.cli import main

    overrides = [f"model.path={tiny_model_dir}", "train.prompts_per_step=2", "train.samples_per_prompt=4",
                 "train.mini_batch_size=8", "sampling.max_new_tokens=6", "eval.every=1", "eval.samples=4", "eval.k=[1,4]",
                 "task.num_eval_problems=2", "grading.inline=true", "sampling.generation_batch_size=64"]
    recipe = tmp_path / "tiny.yaml"
    import yaml

    recipe.write_text(yaml.safe_dump({
        "name": "tiny", "out_dir": str(tmp_path / "sweep"), "base": overrides + ["train.steps=2"],
        "axes": {"sampler": {"fixed-1.0": ["sampling.schedule={name: fixed, tau: 1.0}"], "ead": []}},
        "algorithms": ["grpo"], "seeds": [0], "jobs": 2,
        "base_eval": {"num_problems": 2, "samples": 4}, "report": {"targets": {"eval/mean@4": [0.5]}}}, sort_keys=False))
    assert main(["sweep", str(recipe), "--no-progress", "--report", str(tmp_path / "report")]) == 0
    for cell in ("fixed-1.0__grpo__s0", "ead__grpo__s0"):
        records = [json.loads(line) for line in (tmp_path / "sweep" / "cells" / cell / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records] == [0, 1, 2]
        assert (tmp_path / "sweep" / "cells" / cell / "DONE").exists()
    base = json.loads((tmp_path / "sweep" / "base_inference" / "base_inference.json").read_text())
    assert set(base["schedules"]) == {"fixed-1.0", "ead"} and base["k"] == [1, 2, 4]
    assert (tmp_path / "report" / "report.html").exists()


def test_dry_run_catches_a_typo_in_task_dataset(tmp_path, capsys):
    """task.dataset keys are typed at load, so `ead sweep --dry-run` names a misspelt one."""
    from ead.cli import main

    data_file = tmp_path / "train.jsonl"
    data_file.write_text(json.dumps({"problem": "1+1", "answer": "2"}) + "\n")
    config = make_config(tmp_path, base=["train.steps=3", "task.name=dataset", f"task.dataset.train_file={data_file}",
                                         "task.dataset.promt_field=question", f"model.path={tmp_path}"])
    path = tmp_path / "typo.yaml"
    import yaml

    from ead.config import config_to_dict

    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    assert main(["sweep", str(path), "--dry-run"]) != 0
    err = capsys.readouterr().err
    assert "task.dataset.promt_field" in err and "prompt_field" in err  # the typo and the allowed name
    assert not (tmp_path / "sweep" / "cells").exists()
