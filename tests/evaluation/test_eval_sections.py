"""``ead eval`` reuses ``ead train``'s model, sampling and grading sections: every flag lands on its nested
field, the old flat names are refused with the new one, each shared knob is defined once, resume checks
the nested fields and refuses an eval dir of the old flat layout."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json

import pytest
import yaml

from ead.config import ConfigError, config_to_dict
from ead.evaluation import command
from ead.evaluation.runner import EvalConfig, EvalSamplingSection, run_eval
from ead.sections import GradingSection, ModelSection, SamplerSection
from ead.training.config import SamplingSection, TrainConfig


def _build(argv: list[str]) -> EvalConfig:
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    return command.build_config(parser.parse_args(["eval", *argv]))


def _set(data: dict, dotted: str, value) -> None:
    *sections, leaf = dotted.split(".")
    for part in sections:
        data = data[part]
    data[leaf] = value


PAPER_COMPARISON = [{"name": "fixed", "tau": 0.6}, {"name": "fixed", "tau": 1.0}, {"name": "fixed", "tau": 1.2},
                    {"name": "ead", "tau_max": 1.2, "tau_min": 0.1, "unit": 0.4, "alpha": 5.0, "d0": 25,
                     "d_max": 40000, "warmup_tokens": 0}]

# flag(s) -> every dotted field they change and its value, written out by hand (not read from command.py)
FLAG_TABLE = [
    (["--model", "Qwen/Qwen2.5-Math-1.5B"], {"model.path": "Qwen/Qwen2.5-Math-1.5B"}),
    (["--dtype", "bfloat16"], {"model.dtype": "bfloat16"}),
    (["--device", "cpu"], {"model.device": "cpu"}),
    (["--dataset", "countdown-fork"], {"dataset": "countdown-fork"}),
    (["--samples", "4"], {"samples": 4, "k": [1, 4]}),  # the default k values that fit
    (["-n", "2", "--k", "1,2"], {"samples": 2, "k": [1, 2]}),
    (["--num-problems", "3"], {"num_problems": 3}),
    (["--output-dir", "runs/x"], {"output_dir": "runs/x"}),
    (["--engine", "hf"], {"sampling.engine": "hf"}),
    (["--top-k", "5"], {"sampling.top_k": 5}),
    (["--top-p", "0.5"], {"sampling.top_p": 0.5}),
    (["--max-new-tokens", "7"], {"sampling.max_new_tokens": 7}),
    (["--schedule-step", "3"], {"step": 3}),
    (["--schedule", "fixed:tau=0.6", "--schedule", "ead"], {"schedules": [{"name": "fixed", "tau": 0.6}, {"name": "ead"}]}),
    (["--compare"], {"schedules": PAPER_COMPARISON}),
    (["--resume"], {"resume": True}),
    (["--no-progress"], {"progress": False}),
    (["model.num_threads=2", "sampling.generation_batch_size=8", "grading.limits.memory_mb=512",
      "sampling.vllm.dtype=bfloat16", "grading.inline=true"],
     {"model.num_threads": 2, "sampling.generation_batch_size": 8, "grading.limits.memory_mb": 512,
      "sampling.vllm.dtype": "bfloat16", "grading.inline": True}),
]


@pytest.mark.parametrize("argv, changes", FLAG_TABLE, ids=[" ".join(a) for a, _ in FLAG_TABLE])
def test_each_flag_lands_on_its_nested_field_and_nowhere_else(argv, changes):
    expected = config_to_dict(EvalConfig())
    for dotted, value in changes.items():
        _set(expected, dotted, value)
    assert config_to_dict(_build(argv)) == expected


def test_print_config_shows_the_nested_sections(capsys):
    from ead.cli import main

    assert main(["eval", "--print-config", "--top-k", "5", "--dtype", "float16", "grading.timeout_s=3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert list(printed["model"]) == ["path", "dtype", "device", "num_threads", "gradient_checkpointing",
                                      "warm_start_cache", "warm_start_decoy_rate", "lora"]
    assert list(printed["sampling"]) == ["top_k", "top_p", "generation_batch_size", "engine", "vllm", "max_new_tokens"]
    assert list(printed["grading"]) == ["timeout_s", "workers", "inline", "limits"]
    assert (printed["model"]["dtype"], printed["sampling"]["top_k"], printed["grading"]["timeout_s"]) == ("float16", 5, 3.0)
    flat = {"dtype", "device", "num_threads", "warm_start_cache", "engine", "vllm", "top_k", "top_p",
            "generation_batch_size", "max_new_tokens", "grader_timeout_s", "grader_workers", "grader_inline"}
    assert not flat & set(printed)


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_each_shared_knob_is_defined_once():
    eval_fields, train_fields = {f.name: f for f in dataclasses.fields(EvalConfig)}, \
        {f.name: f for f in dataclasses.fields(TrainConfig)}
    # the same section classes under the same names in both commands
    assert train_fields["model"].default_factory is ModelSection is eval_fields["model"].default_factory
    assert train_fields["grading"].default_factory is GradingSection is eval_fields["grading"].default_factory
    assert issubclass(SamplingSection, SamplerSection) and issubclass(EvalSamplingSection, SamplerSection)
    assert train_fields["sampling"].default_factory is SamplingSection
    assert eval_fields["sampling"].default_factory is EvalSamplingSection
    # no shared field redeclared flat on EvalConfig, also not under a grader_ / model_ prefix
    shared = _fields(ModelSection) | _fields(SamplerSection) | _fields(GradingSection)
    top = set(eval_fields) - {"model", "sampling", "grading"}
    assert not shared & top
    assert not {f"grader_{name}" for name in _fields(GradingSection)} & top
    assert not {f"model_{name}" for name in _fields(ModelSection)} & top
    # nor re-annotated (redefined) by a command's subclass of the shared sampler knobs
    for subclass in (SamplingSection, EvalSamplingSection):
        assert not set(inspect.get_annotations(subclass)) & _fields(SamplerSection), subclass


def test_train_keeps_its_field_order_so_config_yaml_is_unchanged():
    """config.yaml lists fields in dataclass order; the shared base must not move schedule/max_new_tokens last."""
    assert [f.name for f in dataclasses.fields(SamplingSection)] == [
        "schedule", "max_new_tokens", "top_k", "top_p", "generation_batch_size", "engine", "vllm"]
    assert list(config_to_dict(TrainConfig())) == ["model", "task", "sampling", "algorithm", "train", "eval",
                                                   "grading", "output"]


@pytest.mark.parametrize("old, new", [
    ("dtype=bfloat16", "model.dtype"), ("model=runs/demo", "model.path"), ("device=cpu", "model.device"),
    ("num_threads=1", "model.num_threads"), ("warm_start_cache=/tmp/c", "model.warm_start_cache"),
    ("engine=hf", "sampling.engine"), ("vllm.dtype=bfloat16", "sampling.vllm"), ("top_k=5", "sampling.top_k"),
    ("top_p=0.9", "sampling.top_p"), ("generation_batch_size=8", "sampling.generation_batch_size"),
    ("max_new_tokens=8", "sampling.max_new_tokens"), ("grader_timeout_s=5", "grading.timeout_s"),
    ("grader_workers=2", "grading.workers"), ("grader_inline=true", "grading.inline"),
])
def test_old_flat_names_are_refused_naming_the_new_field(old, new, tmp_path):
    with pytest.raises(ConfigError, match=rf"{old.split('=')[0].split('.')[0]} is now {new}\b"):
        _build([old])
    key, value = old.split("=")
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump({key.split(".")[0]: {"dtype": value} if "." in key else yaml.safe_load(value)}))
    with pytest.raises(ConfigError, match=rf"{path}: .* is now {new}\b"):
        _build(["--config", str(path)])


def test_training_only_model_knob_is_refused():
    with pytest.raises(ConfigError, match="model.gradient_checkpointing is a training knob"):
        _build(["model.gradient_checkpointing=true"])


def _eval_dir_with_records(tmp_path, requested: dict):
    out = tmp_path / "eval"
    (out / "records").mkdir(parents=True)
    (out / "records" / "fixed_tau=1.jsonl").write_text('{"uid": "countdown:1"}\n')
    (out / "config.json").write_text(json.dumps({"requested": requested, "resolved": {}}))
    return out


def test_resume_of_an_old_flat_eval_dir_is_refused_naming_what_moved(tmp_path):
    old = {"model": None, "dataset": "countdown", "samples": 16, "dtype": "float32", "top_k": None,
           "max_new_tokens": None, "grader_inline": False, "problems_per_batch": None}  # an earlier config.json
    out = _eval_dir_with_records(tmp_path, old)
    with pytest.raises(ConfigError, match=r"older ead eval .*model -> model\.path, dtype -> model\.dtype, "
                                          r"top_k -> sampling\.top_k.*grader_inline -> grading\.inline.*new --output-dir"):
        run_eval(_build(["--output-dir", str(out), "--resume", "--no-progress"]))


def test_resume_compares_the_nested_fields(tmp_path):
    saved = config_to_dict(_build(["--output-dir", str(tmp_path / "eval"), "--resume", "--top-k", "5"]))
    out = _eval_dir_with_records(tmp_path, saved)
    with pytest.raises(ConfigError, match=r"\['sampling\.top_k', 'sampling\.engine'\] differ"):
        run_eval(_build(["--output-dir", str(out), "--resume", "--top-k", "4", "--engine", "hf"]))


def test_compare_on_the_search_task_uses_its_sized_ead():
    schedules = _build(["--dataset", "countdown-search", "--compare"]).schedules
    assert schedules[:3] == PAPER_COMPARISON[:3]
    assert schedules[3] == {"name": "ead", "tau_max": 1.2, "tau_min": 0.1, "unit": 2.3, "alpha": 0.41667, "d0": 25,
                            "d_max": 40000, "warmup_tokens": 0}
