"""Typed sub-configs: parsed once at load, errors naming the dotted field, written back as written."""

import pytest

from ead.config import ConfigError, config_to_dict
from ead.rollout import VLLMOptions
from ead.schedules import EADSchedule, FixedSchedule
from ead.specs import ScheduleSpec
from ead.tasks.countdown import DEMO_EAD_SCHEDULE
from ead.training.config import load_train_config, train_config_from_dict


def test_schedules_are_parsed_once_and_written_back_as_given():
    config = load_train_config(overrides=["sampling.schedule.tau_max=1.4", "eval.schedule={name: fixed, tau: 0.6}"])
    assert isinstance(config.sampling.schedule.schedule, EADSchedule)
    assert config.sampling.schedule.schedule.tau_max == 1.4 and config.sampling.schedule.schedule.unit == 0.4
    assert config.eval.schedule.schedule == FixedSchedule(tau=0.6)
    saved = config_to_dict(config)
    assert saved["sampling"]["schedule"] == {**DEMO_EAD_SCHEDULE, "tau_max": 1.4}
    assert saved["eval"]["schedule"] == {"name": "fixed", "tau": 0.6}  # not the filled-in defaults
    assert saved["task"]["dataset"] == {} and "countdown_config" not in saved["task"]
    assert isinstance(saved["sampling"]["vllm"], dict) and saved["sampling"]["vllm"]["gpu_memory_utilization"] == 0.3
    assert train_config_from_dict(saved) == config  # the checkpoint's copy rebuilds the same config


@pytest.mark.parametrize("override, field", [
    ("sampling.schedule.tau_maxx=1.0", r"sampling\.schedule: unknown schedule field"),
    ("sampling.schedule.tau_min=-1", r"sampling\.schedule\.tau_min"),
    ("eval.schedule={name: hot}", r"eval\.schedule\.name 'hot'"),
    ("sampling.vllm.gpu_memory_utilisation=0.5", r"sampling\.vllm\.gpu_memory_utilisation"),
    ("sampling.vllm.gpu_memory_utilization=2", r"sampling\.vllm\.gpu_memory_utilization must be in"),
    ("task.countdown.eval_sise=3", r"eval_sise"),
    ("task.dataset.promt_field=q", r"task\.dataset\.promt_field"),
    ("task.dataset.chat_template=3", r"task\.dataset\.chat_template must be true or false"),
])
def test_a_bad_sub_config_is_refused_at_load_naming_the_field(override, field):
    with pytest.raises(ConfigError, match=field):
        load_train_config(overrides=[override])


def test_sections_built_in_code_from_dicts_are_parsed_too():
    from ead.training.config import SamplingSection, TaskSection

    section = SamplingSection(schedule={"name": "fixed", "tau": 0.7}, vllm={"dtype": "bfloat16"})
    assert section.schedule.schedule == FixedSchedule(tau=0.7) and section.vllm == VLLMOptions(dtype="bfloat16")
    task = TaskSection(name="countdown-fork", countdown={"eval_size": 7})
    assert task.countdown_config.variant == "fork" and task.countdown_config.eval_size == 7


def test_schedule_spec_reads_like_its_mapping():
    spec = ScheduleSpec({"name": "ead"})
    assert spec["name"] == "ead" and dict(spec) == {"name": "ead"} and spec == {"name": "ead"}
    assert spec.schedule == EADSchedule()


def test_update_settings_come_from_the_config_fields():
    from ead.training.update import update_settings

    config = load_train_config(overrides=["algorithm.clip_high=0.28", "algorithm.kl_coef=0.05", "train.ppo_epochs=2",
                                          "train.prompts_per_step=6", "train.samples_per_prompt=4",
                                          "train.mini_batch_size=8", "train.micro_batch_size=4"])
    settings = update_settings(config)
    loss = settings.loss
    assert (loss.clip_low, loss.clip_high, loss.kl_coef, settings.ppo_epochs) == (0.2, 0.28, 0.05, 2)
    assert settings.updates_per_epoch == 3 and settings.micro_batch_size == 4  # 6 * 4 / 8
    assert loss.loss_aggregation == "seq_mean_token_mean" and settings.max_grad_norm == 1.0


@pytest.mark.parametrize("change, field", [
    ({"countdown": {"eval_sise": 3}}, r"countdown: .*eval_sise"),
    ({"dataset": "x.jsonl", "model": {"path": "m"}, "data": {"promt_field": "q"}}, r"data\.promt_field"),
    ({"dataset": "x.jsonl", "model": {"path": "m"}, "data": {"chat_template": "yes"}}, r"data\.chat_template must be true"),
    ({"schedules": [{"name": "ead", "tau_mx": 1.0}]}, r"schedules\[0\]: unknown schedule field"),
    ({"sampling": {"vllm": {"dtyp": "auto"}}}, r"sampling\.vllm\.dtyp"),
])
def test_eval_config_checks_its_sub_configs_at_load(change, field):
    from ead.evaluation.runner import EvalConfig

    with pytest.raises(ConfigError, match=field):
        EvalConfig(**change)
