"""Real models: no silent toy defaults, shipped recipes validate, warnings for wasted schedules."""

import warnings

import pytest
import torch

from ead.cli import main
from ead.config import ConfigError
from ead.training.config import (
    load_train_config,
    precision_warnings,
    recipe_path,
    schedule_warnings,
    train_recipes,
)

DATASET = ["task.name=dataset", "task.dataset={train_file: train.jsonl}", "model.path=some/model"]


def test_dataset_with_a_real_model_refuses_the_toy_defaults():
    with pytest.raises(ConfigError) as error:
        load_train_config(overrides=DATASET)
    message = str(error.value)
    assert "sampling.schedule, sampling.max_new_tokens, train.lr not set" in message and "--recipe" in message
    with pytest.raises(ConfigError, match="train.lr not set"):
        load_train_config(overrides=DATASET + ["sampling.schedule.unit=20", "sampling.max_new_tokens=512"])
    config = load_train_config(overrides=DATASET + ["sampling.schedule={name: ead}", "sampling.max_new_tokens=512",
                                                    "train.lr=1e-6"])
    assert config.sampling.schedule == {"name": "ead"} and config.train.lr == 1e-6
    load_train_config(overrides=["model.path=some/model"])  # the built-in task keeps its demo defaults


def test_paper_recipe_validates_without_loading_the_model():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the shipped recipe triggers none of ead's warnings
        config = load_train_config(recipe_path("qwen2.5-math-1.5b-paper"))
    assert config.model.path == "Qwen/Qwen2.5-Math-1.5B" and config.model.gradient_checkpointing
    assert config.sampling.max_new_tokens == 3072 and config.train.lr == 1e-6
    assert config.train.micro_batch_size <= 4 and config.algorithm.importance_correction
    assert config.sampling.schedule["unit"] == 20.0 and config.sampling.schedule["d0"] == 25.0
    assert "GB" in recipe_path("qwen2.5-math-1.5b-paper").read_text()  # states its expected memory
    assert set(train_recipes()) == {"dapo-fork", "qwen2.5-math-1.5b-paper", "smollm2-135m-cpu"}


def test_smollm2_recipe_names_the_fetch_command_when_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("EAD_CACHE_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="ead models fetch smollm2"):
        load_train_config(recipe_path("smollm2-135m-cpu"))
    assert main(["train", "--recipe", "no-such-recipe"]) == 2


def test_schedule_warnings_flat_and_early_floor():
    demo = {"name": "ead", "tau_max": 1.2, "tau_min": 0.1, "warmup_tokens": 0, "d0": 25.0, "alpha": 5.0, "unit": 0.4}
    # demo units on a 3072-token budget: tau = 2.2 - exp(t / 10) hits 0.1 at t = 10 ln 2.1 = 7.4 -> token 8
    (early,) = schedule_warnings(demo, 3072)
    assert "token 8" in early and "0.3%" in early
    assert schedule_warnings(demo, 24) == []  # the demo on its own task: floor at 8 of 24 tokens
    (flat,) = schedule_warnings({"name": "ead", "warmup_tokens": 100}, 64)  # the hot prefix covers everything
    assert "flat at tau=1" in flat
    assert schedule_warnings({"name": "ead"}, 3072) == [] and schedule_warnings({"name": "fixed", "tau": 0.6}, 64) == []


def test_half_precision_with_a_small_lr_warns_and_the_update_really_vanishes():
    assert precision_warnings("float32", 1e-6) == [] and precision_warnings("bfloat16", 2e-4) == []
    assert "round away" in precision_warnings("bfloat16", 1e-6)[0]
    weight = torch.nn.Parameter(torch.full((4,), 0.02, dtype=torch.bfloat16))
    optimizer = torch.optim.AdamW([weight], lr=1e-6, weight_decay=0.0)
    weight.grad = torch.ones_like(weight)
    optimizer.step()  # Adam's first step moves each weight by ~lr
    assert torch.equal(weight.detach(), torch.full((4,), 0.02, dtype=torch.bfloat16))
