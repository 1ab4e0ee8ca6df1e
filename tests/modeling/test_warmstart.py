"""Warm start: traces, cache reuse, atomic writes, determinism (tiny budgets only)."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import ead.modeling.warmstart as ws
from ead.modeling.tiny import TinyModelConfig, build_char_tokenizer, build_tiny_model, save_tiny_model
from ead.modeling.warmstart import SFTConfig, SFTConfigError, cache_key, make_trace, measure_base_policy, warm_start
from ead.tasks.countdown import PRESETS, CountdownTask, Step

SMALL = TinyModelConfig(num_layers=2, hidden_size=64, num_heads=4, intermediate_size=128)
QUICK = SFTConfig(steps=20, batch_size=16, warmup_steps=2)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def test_traces_mix_correct_decoy_and_slipped_chains():
    task = CountdownTask(seed=0)
    rng = random.Random(0)
    problems = task.train_batch(0, 200)
    clean = [task.grader(p, make_trace(task, p, rng, decoy_rate=0.0, slip_rate=0.0)) for p in problems]
    assert all(g.correct for g in clean)
    decoys = [task.grader(p, make_trace(task, p, rng, decoy_rate=1.0, slip_rate=0.0)) for p in problems]
    assert all(g.info["mistake"] in (None, "wrong_target") for g in decoys)  # right arithmetic, path usually wrong
    assert sum(g.correct for g in decoys) < 100
    slipped = [task.grader(p, make_trace(task, p, rng, decoy_rate=0.0, slip_rate=1.0)) for p in problems]
    assert all(g.info["format_ok"] for g in slipped)
    assert not any(g.correct for g in slipped)


def test_slip_carries_the_wrong_value_forward():
    steps = [Step(7, "-", 3, 4), Step(9, "-", 4, 5)]
    rng = random.Random(1)
    for _ in range(20):
        out = ws._slip(steps, rng)
        assert len(out) == 2 and out != steps
        if out[0].result != 4:  # first result slipped: the second step uses the slipped value, correctly
            assert out[0].result in (out[1].left, out[1].right)
            assert ws.apply_op(out[1].left, out[1].op, out[1].right) == out[1].result


def test_fork_traces_are_biased_to_the_wrong_branch():
    task = CountdownTask(PRESETS["countdown-fork"], seed=0)
    sft = SFTConfig().resolved(task.config)
    assert sft.decoy_rate == ws.DEFAULT_DECOY_RATE["fork"] and sft.decoy_rate > 0.5
    rng = random.Random(0)
    problems = task.train_batch(0, 400)
    right = sum(make_trace(task, p, rng, sft.decoy_rate, 0.0).startswith(str(p.meta["right_first"])) for p in problems)
    assert 0.05 < right / 400 < 0.3


@pytest.mark.parametrize(
    "kwargs, field",
    [({"steps": 0}, "steps"), ({"lr": -1.0}, "lr"), ({"decoy_rate": 1.5}, "decoy_rate"), ({"slip_rate": -0.1}, "slip_rate")],
)
def test_sft_config_errors_name_the_field(kwargs, field):
    with pytest.raises(SFTConfigError, match=f"sft.{field}"):
        SFTConfig(**kwargs)


def test_cache_key_tracks_every_config():
    task = PRESETS["countdown"]
    base = cache_key(task, SMALL, QUICK)
    assert base == cache_key(task, SMALL, QUICK)
    assert base != cache_key(PRESETS["countdown-fork"], SMALL, QUICK)
    assert base != cache_key(task, TinyModelConfig(), QUICK)
    assert base != cache_key(task, SMALL, SFTConfig(steps=21, batch_size=16, warmup_steps=2))
    # an explicit decoy rate equal to the variant default is the same model
    assert base == cache_key(task, SMALL, SFTConfig(steps=20, batch_size=16, warmup_steps=2, decoy_rate=0.1))


def test_warm_start_trains_once_then_reuses(tmp_path, monkeypatch):
    task = CountdownTask(seed=0)
    path = warm_start(task, tmp_path, model_config=SMALL, sft_config=QUICK, progress=False)
    record = json.loads((path / "warmstart.json").read_text())
    assert record["sft"]["steps"] == 20 and record["version"] == ws.VERSION
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary directory left behind

    def no_training(*args, **kwargs):
        raise AssertionError("the cached model should have been reused")

    monkeypatch.setattr(ws, "_train", no_training)
    # another training seed of the task shares the base model
    assert warm_start(CountdownTask(seed=5), tmp_path, model_config=SMALL, sft_config=QUICK) == path

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    enc = tokenizer(["3 7 9>5:"], return_tensors="pt")
    out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=8)
    assert out.shape[1] <= enc["input_ids"].shape[1] + 8


def test_crash_leaves_no_partial_cache(tmp_path, monkeypatch):
    task = CountdownTask(seed=0)

    def crash_midway(task_config, model_config, sft, out_dir, **kwargs):
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")  # half-written model
        raise KeyboardInterrupt

    monkeypatch.setattr(ws, "_train", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        warm_start(task, tmp_path, model_config=SMALL, sft_config=QUICK)
    assert list(tmp_path.iterdir()) == []


def test_warm_start_is_deterministic(tmp_path):
    task = CountdownTask(seed=0)
    tiny = SFTConfig(steps=5, batch_size=8, warmup_steps=1)
    a = warm_start(task, tmp_path / "a", model_config=SMALL, sft_config=tiny, progress=False)
    b = warm_start(task, tmp_path / "b", model_config=SMALL, sft_config=tiny, progress=False)
    assert a.name == b.name
    ma, mb = AutoModelForCausalLM.from_pretrained(a), AutoModelForCausalLM.from_pretrained(b)
    assert all(torch.equal(x, y) for x, y in zip(ma.parameters(), mb.parameters()))


def test_num_threads_is_restored(tmp_path):
    tiny = SFTConfig(steps=1, batch_size=4, warmup_steps=0)
    warm_start(CountdownTask(), tmp_path, model_config=SMALL, sft_config=tiny, num_threads=2, progress=False)
    assert torch.get_num_threads() == 1


def test_default_task_and_model_plumbing(tmp_path, monkeypatch):
    def fake_train(task_config, model_config, sft, out_dir, **kwargs):
        tokenizer = build_char_tokenizer()
        save_tiny_model(build_tiny_model(tokenizer, SMALL), tokenizer, out_dir)
        return {"fake": True}

    monkeypatch.setattr(ws, "_train", fake_train)
    task, path = ws.default_task_and_model(cache_dir=tmp_path, seed=3)
    assert task.config == PRESETS["countdown"] and task.seed == 3
    assert ws.default_model_path(cache_dir=tmp_path) == path
    assert path == tmp_path / f"warmstart-{cache_key(task.config, TinyModelConfig(), SFTConfig())}"
    with pytest.raises(ValueError, match="preset"):
        ws.default_task_and_model("nope", cache_dir=tmp_path)

    stats = measure_base_policy(path, task, n=2, limit=3, batch_size=4)
    assert stats["problems"] == 3 and 0.0 <= stats["pass@1"] <= stats["pass@2"] <= 1.0
