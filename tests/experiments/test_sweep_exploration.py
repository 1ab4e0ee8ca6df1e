"""The exploration-comparison recipes load, every cell's train config validates, and the grid is the one asked."""

import pytest

from ead.experiments.grid import builtin_recipe, load_sweep_config
from ead.experiments.sweep import validate_cells

REQUIRED = {"fixed-1.0", "fixed-1.2", "ead", "mean-matched", "entropy-adaptive", "clip-cov", "kl-cov",
            "top-entropy-80-20", "w-reinforce", "adaptive-entropy", "pass-at-k", "n64-fixed-1.0",
            "ead+clip-cov", "ead+kl-cov", "ead+siren"}


@pytest.mark.parametrize("recipe,task", [("sweep_exploration", None), ("sweep_exploration_fork", "countdown-fork")])
def test_exploration_recipe_cells_validate(recipe, task):
    config = load_sweep_config(builtin_recipe(recipe))
    validate_cells(config)
    assert REQUIRED <= set(config.axes["method"]) and len(config.seeds) >= 5
    assert ("task.name=countdown-fork" in config.base) == (task is not None)
    rollouts = {label: 0 for label in config.axes["method"]}
    for label, overrides in config.axes["method"].items():  # one rollout budget for every variant
        settings = dict(o.split("=", 1) for o in config.base + overrides if o.startswith("train."))
        rollouts[label] = int(settings["train.steps"]) * int(settings["train.prompts_per_step"]) * int(
            settings["train.samples_per_prompt"])
    assert set(rollouts.values()) == {5120}
