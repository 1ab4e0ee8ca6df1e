"""Typed train config: defaults, presets, overrides and errors that name the field."""

import pytest

from ead.config import ConfigError, parse_override
from ead.training.config import load_train_config


def test_defaults_are_the_demo_with_ead():
    config = load_train_config()
    assert config.sampling.schedule["name"] == "ead"
    assert config.model.path is None and config.task.name == "countdown"
    assert config.algorithm.importance_correction and config.algorithm.importance_cap == 2.0


def test_dapo_preset_then_overrides():
    config = load_train_config(algorithm="dapo", overrides=["train.lr=1e-5", "sampling.schedule.tau_max=1.4"])
    assert config.algorithm.clip_high == 0.28 and config.algorithm.loss_aggregation == "token_mean"
    assert config.algorithm.dynamic_sampling and config.train.lr == 1e-5
    assert config.sampling.schedule["tau_max"] == 1.4


@pytest.mark.parametrize(
    "override, field",
    [
        ("sampling.schedule.tau_min=2.0", "tau_min"),
        ("sampling.schedule.warmup_tokens=-3", "warmup_tokens"),
        ("train.lrate=0.1", "train.lrate"),
        ("train.steps=0", "train.steps"),
        ("train.steps=abc", "train.steps"),
        ("algorithm.advantage=ppo", "algorithm.advantage"),
        ("algorithm.importance_level=batch", "algorithm.importance_level"),
        ("eval.k=[1,32]", "eval.k"),
        ("task.name=gsm", "task.name"),
        ("bogus.x=1", "bogus"),
    ],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_train_config(overrides=[override])


def test_yaml_file_errors_name_the_file(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("train:\n  steps: 5\n  unknown_knob: 1\n")
    with pytest.raises(ConfigError, match=r"recipe\.yaml.*train\.unknown_knob"):
        load_train_config(recipe)
    recipe.write_text("train:\n  steps: 5\nsampling:\n  schedule: {name: fixed, tau: 0.6}\n")
    config = load_train_config(recipe, ["train.steps=7"])
    assert config.train.steps == 7 and config.sampling.schedule == {"name": "fixed", "tau": 0.6}


def test_parse_override_reads_numbers_lists_and_strings():
    assert parse_override("a.b=1e-5") == (["a", "b"], 1e-5)
    assert parse_override("k=[1, 4]") == (["k"], [1, 4])
    assert parse_override("path=runs/x") == (["path"], "runs/x")
    with pytest.raises(ConfigError):
        parse_override("novalue")


def test_fork_task_with_the_default_length_budget_is_refused_before_training():
    from ead.training.setup import build_task, check_length_budget

    config = load_train_config(overrides=["task.name=countdown-fork"])
    task = build_task(config.task, config.model)
    assert task.max_response_chars + 1 > config.sampling.max_new_tokens  # the fork's longest chain: 26 + EOS
    with pytest.raises(ConfigError, match=r"sampling\.max_new_tokens \(24\)"):
        check_length_budget(task, config.sampling.max_new_tokens, builtin_model=True)
    check_length_budget(task, task.max_response_chars + 1, builtin_model=True)
    check_length_budget(task, 24, builtin_model=False)  # another tokenizer: tokens are not characters


def test_warm_start_decoy_rate_reaches_the_sft_config_and_is_validated(monkeypatch):
    import ead.modeling.warmstart as warmstart
    from ead.training.setup import policy_path

    seen = []
    monkeypatch.setattr(warmstart, "warm_start", lambda task, cache, sft_config=None, num_threads=None:
                        seen.append(sft_config) or "cached")
    config = load_train_config(overrides=["task.name=countdown-fork", "model.warm_start_decoy_rate=0.98"])
    assert policy_path(config.model, config.task) == "cached" and seen[-1].decoy_rate == 0.98
    config = load_train_config(overrides=["task.name=countdown-fork"])
    policy_path(config.model, config.task)
    assert seen[-1] is None  # the task's default: the existing cache key is unchanged
    with pytest.raises(ConfigError, match=r"model\.warm_start_decoy_rate must be in \[0, 1\]"):
        load_train_config(overrides=["model.warm_start_decoy_rate=1.5"])
    with pytest.raises(ConfigError, match="only applies to the built-in model"):
        load_train_config(overrides=["model.path=some/model", "model.warm_start_decoy_rate=0.5"])


def _ead_temperature(t: int, unit: float, tau_max=1.2, tau_min=0.1, d0=25.0) -> float:
    """The paper's EAD at step 0 evaluated by hand: max(tau_min, 1 + tau_max - exp(t / (k * d0))), c = 0."""
    import math

    return max(tau_min, 1 + tau_max - math.exp(t / (unit * d0)))


def test_countdown_search_trains_with_its_sized_ead_budget_and_lr_by_default():
    config = load_train_config(overrides=["task.name=countdown-search"])
    # docs/long_reasoning.md: k = 43 / (25 ln 2.1) = 2.3, tau_min reached at the base median length, 43 tokens
    schedule = config.sampling.schedule.schedule
    assert schedule.temperature(10) == pytest.approx(_ead_temperature(10, 2.3)) == pytest.approx(1.0100, abs=1e-4)
    assert schedule.temperature(42) == pytest.approx(_ead_temperature(42, 2.3)) == pytest.approx(0.124, abs=1e-3)
    assert schedule.temperature(43) == pytest.approx(0.1)
    assert config.sampling.max_new_tokens == 244 and config.train.lr == 5e-5
    # the demo task keeps the demo's EAD (k = 0.4: D_0 = 10, tau_min from t = 10 ln 2.1 = 7.4, i.e. t = 8) and lr
    demo = load_train_config()
    assert demo.sampling.schedule.schedule.temperature(7) == pytest.approx(_ead_temperature(7, 0.4), abs=1e-6)
    assert _ead_temperature(7, 0.4) > 0.1
    assert demo.sampling.schedule.schedule.temperature(8) == pytest.approx(0.1)
    assert demo.train.lr == 2e-4 and demo.sampling.max_new_tokens == 24


def test_task_defaults_sit_under_the_recipe_and_the_overrides(tmp_path):
    edited = load_train_config(overrides=["task.name=countdown-search", "sampling.schedule.unit=3.0", "train.lr=1e-5"])
    assert edited.sampling.schedule["unit"] == 3.0 and edited.sampling.schedule["warmup_tokens"] == 0  # the task's EAD, edited
    assert edited.sampling.schedule["alpha"] == 0.41667 and edited.train.lr == 1e-5
    replaced = load_train_config(overrides=["task.name=countdown-search", "sampling.schedule={name: fixed, tau: 1.0}"])
    assert replaced.sampling.schedule.to_config() == {"name": "fixed", "tau": 1.0}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("task:\n  name: countdown-search\nsampling:\n  max_new_tokens: 250\n")
    from_file = load_train_config(recipe, algorithm="dapo")
    assert from_file.sampling.max_new_tokens == 250 and from_file.sampling.schedule["unit"] == 2.3
    assert from_file.algorithm.clip_high == 0.28 and from_file.train.lr == 5e-5
