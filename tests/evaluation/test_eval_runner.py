"""ead.evaluation: records, resume after an interruption, a hanging grader, the CLI, model paths.

Uses a tiny randomly initialised Llama with the character tokenizer from
ead.modeling.tiny, saved with save_pretrained, so everything goes through the same
from_pretrained path a real model does.
"""

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ead.config import ConfigError
from ead.evaluation.runner import EvalConfig, problem_seed, read_records, resolve_model_path, run_eval
from ead.tasks.base import Grade, Problem


@dataclass(frozen=True)
class HangOnce:
    """Hangs on the first call ever made (marker file absent), answers normally afterwards."""

    marker: str

    def __call__(self, problem: Problem, response: str) -> Grade:
        if not os.path.exists(self.marker):
            Path(self.marker).touch()
            time.sleep(600)
        return Grade(0.0, False, None)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from ead.modeling.tiny import TinyModelConfig, build_char_tokenizer, build_tiny_model, save_tiny_model

    tokenizer = build_char_tokenizer()
    model = build_tiny_model(tokenizer, TinyModelConfig(num_layers=1, hidden_size=32, num_heads=2, intermediate_size=64))
    return str(save_tiny_model(model, tokenizer, tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "sums.jsonl"
    path.write_text("".join(json.dumps({"problem": f"{i}+{i}=", "answer": 2 * i}) + "\n" for i in range(5)))
    return str(path)


def _config(model, dataset, out, **overrides):
    base = dict(model={"path": model}, dataset=dataset, samples=3, k=[1, 3], sampling={"max_new_tokens": 6},
                progress=False,
                schedules=[{"name": "fixed", "tau": 1.0}, {"name": "ead", "unit": 0.2, "warmup_tokens": 1}],
                problems_per_batch=2, grading={"inline": True}, bootstrap_resamples=200, output_dir=str(out))
    for section in ("model", "sampling", "grading"):  # a section override merges into the base's
        if section in overrides:
            overrides[section] = {**base[section], **overrides[section]}
    return EvalConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def reference(tiny_model_dir, dataset, tmp_path_factory):
    """An uninterrupted evaluation: (output dir, summary)."""
    out = tmp_path_factory.mktemp("reference")
    return out, run_eval(_config(tiny_model_dir, dataset, out))


def test_records_summary_and_plots(reference):
    tmp_path, summary = reference
    assert set(summary["schedules"]) == {"fixed(tau=1)", "ead(unit=0.2,warmup_tokens=1)"}
    for label, entry in summary["schedules"].items():
        assert entry["num_problems"] == 5
        assert set(entry["metrics"]) == {f"{m}@{k}" for m in ("pass", "maj", "worst", "mean") for k in (1, 3)}
        assert entry["curve"]["n"] == [1, 2, 3] and len(entry["curve"]["maj"]) == 3
        low, high = entry["metrics"]["mean@1"]["ci"]
        assert low <= entry["metrics"]["mean@1"]["mean"] <= high
    records = read_records(tmp_path / "records" / "fixed_tau=1.jsonl")
    assert [r["uid"] for r in records] == [f"sums:{i}" for i in range(1, 6)]
    first = records[0]
    assert first["prompt"] == "0+0=" and first["answer"] == "0" and len(first["samples"]) == 3
    assert len(first["correct"]) == len(first["answer_keys"]) == len(first["behaviour_logprob"]["sum"]) == 3
    assert all(lp <= 0 for lp in first["behaviour_logprob"]["sum"])
    assert first["seed"] == problem_seed(0, ["sums:1", "sums:2"])  # block of problems_per_batch=2
    assert first["mean_temperature"] == [1.0, 1.0, 1.0]
    # at a fixed temperature of 1 the behaviour policy is the target policy
    assert first["behaviour_logprob"]["sum"] == pytest.approx(first["target_logprob"]["sum"], abs=1e-3)
    assert all(h > 0 for h in first["target_entropy_per_token"])
    ead = read_records(tmp_path / "records" / "ead_unit=0.2_warmup_tokens=1.jsonl")[0]
    assert all(t != 1.0 for t, n in zip(ead["mean_temperature"], ead["lengths"]) if n > 1)  # annealed after t=0
    assert (tmp_path / "pass_at_k.png").stat().st_size > 0 and (tmp_path / "comparison.png").stat().st_size > 0
    assert json.loads((tmp_path / "summary.json").read_text())["schedules"].keys() == summary["schedules"].keys()


def test_resume_after_interruption_redoes_nothing_and_matches(tiny_model_dir, dataset, reference, tmp_path,
                                                            monkeypatch):
    from ead.rollout.lean import LeanEngine  # what engine 'auto' picks for the tiny Qwen2

    full_dir, full_summary = reference

    real_generate = LeanEngine.generate
    calls = []

    def interrupted_generate(*args, **kwargs):
        calls.append(kwargs["seed"])
        if len(calls) == 4:  # blocks are (1,2), (3,4), (5); 2 schedules each -> dies inside block 2
            raise KeyboardInterrupt
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(LeanEngine, "generate", interrupted_generate)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_eval(_config(tiny_model_dir, dataset, out))
    fixed_file = out / "records" / "fixed_tau=1.jsonl"
    assert len(read_records(fixed_file)) == 4 and len(read_records(out / "records" / "ead_unit=0.2_warmup_tokens=1.jsonl")) == 2
    with open(fixed_file, "a") as f:
        f.write('{"uid": "sums:5", "samp')  # killed in the middle of a write

    with pytest.raises(ConfigError, match="pass --resume"):
        run_eval(_config(tiny_model_dir, dataset, out))
    with pytest.raises(ConfigError, match=r"\['samples'\] differ"):
        run_eval(_config(tiny_model_dir, dataset, out, samples=2, k=[1], resume=True))

    calls.clear()
    resumed = run_eval(_config(tiny_model_dir, dataset, out, resume=True))
    # block (3,4) for ead, then block (5) for both schedules; nothing already recorded is sampled again
    assert calls == [problem_seed(0, ["sums:3", "sums:4"]), problem_seed(0, ["sums:5"]), problem_seed(0, ["sums:5"])]
    assert resumed["schedules"] == full_summary["schedules"]
    for name in ("fixed_tau=1.jsonl", "ead_unit=0.2_warmup_tokens=1.jsonl"):
        assert read_records(out / "records" / name) == read_records(full_dir / "records" / name)


def test_hanging_grader_is_cut_off_counted_and_eval_finishes(tiny_model_dir, dataset, tmp_path):
    config = _config(tiny_model_dir, dataset, tmp_path / "out", schedules=[{"name": "fixed", "tau": 1.0}],
                     grader=f"{__name__}:HangOnce", grader_options={"marker": str(tmp_path / "hung")},
                     grading={"inline": False, "timeout_s": 2.0}, num_problems=2)
    start = time.monotonic()
    summary = run_eval(config)
    assert time.monotonic() - start < 60
    entry = summary["schedules"]["fixed(tau=1)"]
    assert entry["num_problems"] == 2 and entry["grade_timeouts"] == 1 and entry["grade_errors"] == 0
    first = read_records(tmp_path / "out" / "records" / "fixed_tau=1.jsonl")[0]
    assert first["grade_errors"] == ["timeout after 2 s", None, None]


def test_cli_on_builtin_countdown(tiny_model_dir, tmp_path):
    from ead.cli import main

    out = tmp_path / "cli"
    argv = ["eval", "--model", tiny_model_dir, "--dataset", "countdown", "--samples", "2", "--num-problems", "2",
            "--schedule", "fixed:tau=0.6", "--output-dir", str(out), "--no-progress", "grading.inline=true",
            "countdown.eval_size=5"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["k"] == [1] and summary["config"]["max_new_tokens"] > 0
    assert summary["schedules"]["fixed(tau=0.6)"]["num_problems"] == 2
    assert main(argv) == 2  # records exist and no --resume: a configuration error, exit code 2


def test_model_path_resolution(tmp_path):
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "step_000040"
    (ckpt / "model").mkdir(parents=True)
    (ckpt / "model" / "config.json").write_text("{}")
    (run / "checkpoints" / "latest").write_text("step_000040\n")
    assert resolve_model_path(str(run)) == (str(ckpt / "model"), 40)
    assert resolve_model_path(str(ckpt)) == (str(ckpt / "model"), 40)
    assert resolve_model_path(str(ckpt / "model")) == (str(ckpt / "model"), None)
    assert resolve_model_path("Qwen/Qwen2.5-Math-1.5B") == ("Qwen/Qwen2.5-Math-1.5B", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_model_path(str(tmp_path / "empty"))


def test_config_validation():
    with pytest.raises(ConfigError, match=r"k values must be in \[1, samples=4\]"):
        EvalConfig(samples=4, k=[8])
    with pytest.raises(ConfigError, match="schedules\\[1\\]"):
        EvalConfig(schedules=[{"name": "fixed"}, {"name": "warm"}])
    with pytest.raises(ConfigError, match="must be distinct"):
        EvalConfig(schedules=[{"name": "ead"}, {"name": "ead"}])
    with pytest.raises(ConfigError, match="model.path is required"):
        EvalConfig(dataset="math500.jsonl")


def test_default_batched_layout_resumes_mid_block_to_the_same_records(tiny_model_dir, dataset, tmp_path, monkeypatch):
    """problems_per_batch defaults to what fits one generate call; a run killed between two records of one
    block resamples that block whole (same seed, same layout) and writes only what is missing."""
    import ead.evaluation.runner as runner_module

    config = lambda out, **kw: _config(tiny_model_dir, dataset, out, problems_per_batch=None,  # noqa: E731
                                       sampling={"generation_batch_size": 9}, schedules=[{"name": "fixed", "tau": 1.0}], **kw)
    assert config(tmp_path / "x").block_size() == 3  # 9 rows / 3 samples: blocks (1,2,3), (4,5)
    straight = tmp_path / "straight"
    run_eval(config(straight))
    expected = read_records(straight / "records" / "fixed_tau=1.jsonl")
    assert [r["seed"] for r in expected] == [problem_seed(0, ["sums:1", "sums:2", "sums:3"])] * 3 + \
        [problem_seed(0, ["sums:4", "sums:5"])] * 2

    real_record, written = runner_module._record, []

    def dying_record(*args, **kwargs):
        if len(written) == 1:  # the first problem of block 1 is on disk, the second never gets there
            raise KeyboardInterrupt
        written.append(args[0].uid)
        return real_record(*args, **kwargs)

    monkeypatch.setattr(runner_module, "_record", dying_record)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_eval(config(out))
    assert [r["uid"] for r in read_records(out / "records" / "fixed_tau=1.jsonl")] == ["sums:1"]
    monkeypatch.setattr(runner_module, "_record", real_record)
    run_eval(config(out, resume=True))
    assert read_records(out / "records" / "fixed_tau=1.jsonl") == expected
