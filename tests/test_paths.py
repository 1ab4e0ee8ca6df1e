"""One cache for every command: ``ead eval`` after ``ead train``, from another directory, reuses the base model."""

import dataclasses
from pathlib import Path

from ead import cli
from ead.modeling import warmstart
from ead.paths import cache_dir, check_model_reference, looks_like_path, old_local_cache_note


def test_cache_dir_is_the_env_var_else_home(monkeypatch, tmp_path):
    monkeypatch.setenv("EAD_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("EAD_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "ead"
    assert warmstart.default_cache_dir() == cache_dir()


def test_eval_after_train_in_another_directory_reuses_the_warm_start(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("EAD_CACHE_DIR", str(tmp_path / "cache"))
    real_train, calls = warmstart._train, []

    def quick_train(task_config, model_config, sft, out_dir, **kw):  # the real SFT, 3 steps instead of 400
        calls.append(out_dir)
        return real_train(task_config, model_config, dataclasses.replace(sft, steps=3, warmup_steps=1), out_dir, **kw)

    monkeypatch.setattr(warmstart, "_train", quick_train)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    code = cli.main(["train", "train.steps=1", "train.prompts_per_step=2", "train.samples_per_prompt=2",
                     "train.mini_batch_size=4", "train.micro_batch_size=4", "eval.every=0", "eval.at_start=false",
                     "output.progress=false", "grading.inline=true", "output.dir=run"])
    assert code == 0 and len(calls) == 1
    assert (tmp_path / "a" / "run" / "report.html").is_file()  # ead train (not the trainer) writes the report
    cached = list((tmp_path / "cache").glob("warmstart-*"))
    assert len(cached) == 1 and not (tmp_path / "a" / ".cache").exists()
    monkeypatch.chdir(tmp_path / "b")
    code = cli.main(["eval", "--num-problems", "2", "--samples", "2", "--no-progress", "--output-dir", "ev",
                     "grading.inline=true"])
    assert code == 0 and len(calls) == 1, "ead eval rebuilt the base model instead of reusing the cache"
    import json

    summary = json.loads((tmp_path / "b" / "ev" / "summary.json").read_text())
    assert Path(summary["config"]["model_path"]) == cached[0]


def test_old_per_directory_cache_gets_a_one_line_note(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert old_local_cache_note(tmp_path / "new") is None
    (tmp_path / ".cache" / "ead").mkdir(parents=True)
    note = old_local_cache_note(tmp_path / "new")
    assert note is not None and "\n" not in note and "no longer used" in note
    assert (tmp_path / ".cache" / "ead").is_dir()  # never deleted
    assert old_local_cache_note(tmp_path / ".cache" / "ead") is None  # in use through EAD_CACHE_DIR: no note


def test_path_like_model_references(monkeypatch, tmp_path):
    import pytest

    from ead.config import ConfigError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for text in ("./m", "/nope/m", "~/m", "m/", "a/b/c", "runs/x"):
        assert looks_like_path(text), text
    for text in ("gpt2", "Qwen/Qwen2.5-Math-1.5B"):
        assert not looks_like_path(text), text
        check_model_reference(text, "model.path")  # a Hub id: left to from_pretrained
    with pytest.raises(ConfigError, match="no such directory"):
        check_model_reference("runs/x", "model.path")
