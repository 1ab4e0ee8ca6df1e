"""The ``ead`` command line as a user meets it: intermixed flags and overrides, messages instead of tracebacks.

Each case runs in-process through :func:`ead.cli.main` (nothing is trained: --dry-run, --print-config,
--list-fields and errors raised before any model is loaded).
"""

import dataclasses

import pytest
import yaml

from ead import cli
from ead.evaluation.runner import EvalConfig
from ead.training.config import TrainConfig


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def leaf_fields(cls, prefix=""):
    """Dotted names of every config field, found by walking the dataclasses (independently of describe_fields)."""
    names = []
    for f in dataclasses.fields(cls):
        if not f.init:  # derived at load (e.g. task.countdown_config), not a field a user sets
            continue
        default = getattr(cls(), f.name)
        if dataclasses.is_dataclass(default):
            names += leaf_fields(type(default), f"{prefix}{f.name}.")
        else:
            names.append(prefix + f.name)
    return names


# ----------------------------------------------------------------- intermixed flags and overrides

def test_sweep_overrides_after_a_flag(capsys, tmp_path):
    code, out, _ = run(capsys, "sweep", "sweep_default", "--dry-run", f"out_dir={tmp_path / 'x'}", "jobs=1")
    assert code == 0
    assert f"out_dir={tmp_path / 'x'}" in out and "1 at a time" in out


def test_train_overrides_on_both_sides_of_flags(capsys, tmp_path):
    code, out, _ = run(capsys, "train", "train.steps=3", "--resume", f"output.dir={tmp_path}", "--print-config",
                       "train.lr=1e-6")
    assert code == 0
    config = yaml.safe_load(out)
    assert config["train"]["steps"] == 3 and config["output"]["dir"] == str(tmp_path)
    assert config["train"]["lr"] == pytest.approx(1e-6)


def test_a_word_that_is_no_override_is_named(capsys):
    code, _, err = run(capsys, "train", "--print-config", "steps")
    assert code == 2 and "override 'steps' must look like key.path=value" in err
    code, _, err = run(capsys, "sweep", "sweep_default", "--dry-run", "jobs=1", "extra")
    assert code == 2 and "extra" in err


# ----------------------------------------------------------------- YAML numbers

def test_yaml_exponent_without_a_dot_is_a_float_in_files_and_dict_fields(tmp_path):
    from ead.training.config import load_train_config

    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  lr: 1e-6\n  max_grad_norm: 2E0\nsampling:\n  schedule: {name: fixed, tau: 5e-1}\n")
    config = load_train_config(recipe)
    assert isinstance(config.train.lr, float) and config.train.lr == 1e-6
    assert config.train.max_grad_norm == 2.0 and config.sampling.schedule["tau"] == 0.5


def test_yaml_exponent_through_the_cli(capsys, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  lr: 1e-6\n")
    code, out, _ = run(capsys, "train", "--config", str(recipe), "--print-config")
    assert code == 0 and yaml.safe_load(out)["train"]["lr"] == 1e-6


def test_yaml_exponent_does_not_swallow_words_or_paths():
    from ead.config import yaml_load

    assert yaml_load("a: 1e\nb: runs/1e5\nc: x1e5\nd: 10\ne: -3e+2") == \
        {"a": "1e", "b": "runs/1e5", "c": "x1e5", "d": 10, "e": -300.0}


# ----------------------------------------------------------------- every user error a message

@pytest.mark.parametrize("argv, expected", [
    (["schedule", "tau_maks=1.4"], "tau_maks"),
    (["train", "train.lrate=1"], "train.lrate"),
    (["train", "--config", "no_such_recipe.yaml"], "no_such_recipe.yaml does not exist"),
    (["train", "model.path=./models/typo", "--print-config"], "no such directory './models/typo'"),
    (["train", "--algorithm", "dapo", "algorithm.name=grpo", "--print-config"], "--algorithm is 'dapo'"),
    (["train", "algorithm.name=dapoo", "--print-config"], "'dapoo' is not an algorithm preset"),
    (["report", "no/such/sweep"], "does not exist"),
])
def test_user_errors_are_one_paragraph_messages(capsys, argv, expected):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert expected in err and err.startswith(f"ead {argv[0]}: ")


def test_mistyped_local_model_path_is_not_sent_to_the_hub(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    code, _, err = run(capsys, "eval", "--model", "runs/dmeo")
    assert code == 2 and "no such directory 'runs/dmeo'" in err and "runs/demo" in err


def test_png_into_a_missing_directory_is_created(capsys, tmp_path):
    png = tmp_path / "new" / "dir" / "tau.png"
    code, out, _ = run(capsys, "schedule", "--png", str(png), "--length", "8", "unit=0.4")
    assert code == 0 and png.is_file() and png.stat().st_size > 1000


def _raise(exc):
    def func(args):
        raise exc
    return func


def test_unexpected_user_errors_get_a_message_and_bugs_stay_visible(capsys, monkeypatch):
    import ead.schedule_command as command

    monkeypatch.setattr(command, "run", _raise(FileNotFoundError(2, "No such file or directory", "data/x.jsonl")))
    code, _, err = run(capsys, "schedule")
    assert code == 2 and "data/x.jsonl: no such file or directory" in err and "EAD_DEBUG=1" in err
    monkeypatch.setenv("EAD_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        cli.main(["schedule"])
    monkeypatch.delenv("EAD_DEBUG")
    monkeypatch.setattr(command, "run", _raise(RuntimeError("a real bug")))
    with pytest.raises(RuntimeError, match="a real bug"):
        cli.main(["schedule"])


# ----------------------------------------------------------------- --print-config, --list-fields, recipes

def test_print_config_is_the_resolved_config_after_preset_recipe_and_overrides(capsys, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  steps: 9\n")
    code, out, _ = run(capsys, "train", "--algorithm", "dapo", "--config", str(recipe), "--print-config",
                       "train.steps=5")
    config = yaml.safe_load(out)
    assert code == 0 and config["train"]["steps"] == 5
    assert config["algorithm"]["clip_high"] == 0.28 and config["algorithm"]["dynamic_sampling"] is True
    assert set(config) == {f.name for f in dataclasses.fields(TrainConfig)}


@pytest.mark.parametrize("command, cls", [("train", TrainConfig), ("eval", EvalConfig)])
def test_list_fields_lists_every_field_with_type_default_and_doc(capsys, command, cls):
    code, out, _ = run(capsys, command, "--list-fields")
    assert code == 0
    headers = [line.split(":")[0] for line in out.splitlines() if line and not line.startswith(" ")]
    assert headers == leaf_fields(cls)
    if command == "train":
        assert "train.lr: float = 0.0002\n    AdamW learning rate" in out
        assert "sampling.engine: one of 'auto', 'lean', 'hf', 'vllm' = auto" in out
    else:
        assert "samples: int = 16\n    n: responses sampled per problem and schedule." in out


def test_config_help_names_recipes_that_exist_and_load(capsys):
    from ead.training.command import builtin_train_recipes, resolve_train_recipe
    from ead.training.config import load_train_config

    names = builtin_train_recipes()
    assert len(names) >= 2
    assert cli.main(["train", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    from ead.config import ConfigError

    for name in names:
        assert name in help_text
        try:
            load_train_config(resolve_train_recipe(name))
        except ConfigError as exc:  # a recipe on a real model that this machine has not fetched yet
            assert "ead models fetch" in str(exc), f"{name}: {exc}"


# ----------------------------------------------------------------- algorithm.name

def test_algorithm_name_in_a_recipe_selects_the_preset_and_explicit_knobs_win(tmp_path):
    from ead.training.config import load_train_config

    recipe = tmp_path / "r.yaml"
    recipe.write_text("algorithm:\n  name: dapo\n  clip_high: 0.3\n")
    config = load_train_config(recipe)
    assert config.algorithm.name == "dapo"
    assert config.algorithm.loss_aggregation == "token_mean" and config.algorithm.dynamic_sampling
    assert config.algorithm.overlong_filter and config.algorithm.clip_high == 0.3
    same = load_train_config(recipe, algorithm="dapo")
    assert same == config


def test_algorithm_name_disagreeing_with_the_preset_is_refused(tmp_path):
    from ead.config import ConfigError
    from ead.training.config import load_train_config

    recipe = tmp_path / "r.yaml"
    recipe.write_text("algorithm:\n  name: dapo\n")
    with pytest.raises(ConfigError, match=r"algorithm\.name \(in .*r\.yaml\) is 'dapo' but --algorithm is 'grpo'"):
        load_train_config(recipe, algorithm="grpo")
    assert load_train_config(overrides=["algorithm.name=grpo"]).algorithm.clip_high == 0.2
