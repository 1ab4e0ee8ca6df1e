"""Every exploration method trains end to end on the tiny model, under EAD or fixed temperature,
TIS on or off, GRPO or DAPO; the adaptive entropy coefficient survives a resume exactly."""

import io

import pytest
import torch

from conftest import assert_same_run, crash_then_resume
from ead.training.config import load_train_config
from ead.training.logger import read_metrics
from ead.training.trainer import train

# Ratios raised from the papers' 2e-4 / 2e-3 so that the ~100 tokens of a tiny batch select some.
METHODS = {
    "clip_cov": ["algorithm.policy_loss=clip_cov", "algorithm.clip_cov_ratio=0.05", "algorithm.clip_cov_lb=0.0"],
    "kl_cov": ["algorithm.policy_loss=kl_cov", "algorithm.kl_cov_ratio=0.05"],
    "high_entropy": ["algorithm.pg_tokens=high_entropy"],
    "w_reinforce": ["algorithm.advantage=w_reinforce"],
    "pass_at_k": ["algorithm.advantage=pass_at_k", "algorithm.pass_k=2"],
    "adaptive_entropy": ["algorithm.entropy_target=10.0", "algorithm.entropy_coef=0.0"],
    "siren": ["algorithm.siren=true"],
    "mean_matched": ["sampling.schedule={name: mean_matched, unit: 0.4, warmup_tokens: 0, length: 8}"],
    "entropy_adaptive": ["sampling.schedule={name: entropy_adaptive}"],
}
# Expected evidence in metrics.jsonl that the method ran.
EVIDENCE = {"clip_cov": "select/clip_cov_frac", "kl_cov": "policy/kl_cov_penalty",
            "high_entropy": "select/high_entropy_frac", "adaptive_entropy": "policy/entropy_bonus",
            "siren": "policy/siren"}
COMBOS = {  # (preset, schedule override or None for the recipe's EAD, TIS)
    "dapo-ead-tis": ("dapo", None, True),
    "grpo-fixed-notis": ("grpo", "sampling.schedule={name: fixed, tau: 1.0}", False),
}


def smoke_overrides(model_dir, out_dir, steps=2):
    return [
        f"model.path={model_dir}", f"output.dir={out_dir}", f"train.steps={steps}", "train.prompts_per_step=4",
        "train.samples_per_prompt=4", "train.mini_batch_size=8", "train.micro_batch_size=3", "sampling.max_new_tokens=8",
        "eval.every=0", "output.save_every=0", "output.progress=false", "grading.inline=true", "model.num_threads=1",
        "algorithm.dynamic_sampling=false",  # a random tiny model solves nothing: no group would be kept
    ]


@pytest.mark.parametrize("combo", sorted(COMBOS))
@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_trains(method, combo, tiny_model_dir, tmp_path):
    preset, schedule, tis = COMBOS[combo]
    if method in ("mean_matched", "entropy_adaptive") and schedule is not None:
        pytest.skip("the method is the schedule")
    overrides = smoke_overrides(tiny_model_dir, tmp_path / "run", steps=1) + METHODS[method] + [
        f"algorithm.importance_correction={str(tis).lower()}"] + ([schedule] if schedule else [])
    run_dir = train(load_train_config(overrides=overrides, algorithm=preset))
    record = read_metrics(run_dir / "metrics.jsonl")[-1]
    assert record["step"] == 1 and all(v == v for v in record.values() if isinstance(v, float))  # no NaN
    if method in EVIDENCE:
        assert EVIDENCE[method] in record, sorted(record)
    if method == "adaptive_entropy":  # entropy of a random 64-symbol model is < 10 nats: coefficient rises
        assert record["policy/entropy_coef"] == pytest.approx(0.005)


def test_entropymech_preset_selects_clip_cov_and_kl_cov():
    assert load_train_config(algorithm="entropymech").algorithm.policy_loss == "clip_cov"
    config = load_train_config(algorithm="entropymech", overrides=["algorithm.policy_loss=kl_cov"])
    assert config.algorithm.policy_loss == "kl_cov" and config.algorithm.loss_aggregation == "token_mean"
    assert (config.algorithm.kl_cov_ratio, config.algorithm.kl_cov_coef) == (2e-3, 1.0)


def test_adaptive_entropy_coefficient_is_checkpointed_and_resumed(tiny_model_dir, tmp_path, monkeypatch):
    extra = ["algorithm.entropy_target=10.0", "algorithm.entropy_coef=0.0", "output.save_every=2"]
    straight = train(load_train_config(overrides=smoke_overrides(tiny_model_dir, tmp_path / "a", 4) + extra))
    coefs = [r["policy/entropy_coef"] for r in read_metrics(straight / "metrics.jsonl")]
    assert coefs == pytest.approx([0.005, 0.010, 0.015, 0.020])  # +delta per step: entropy stays below 10
    saved = torch.load(straight / "checkpoints" / "step_000002" / "trainer_state.pt", weights_only=False)
    assert saved["loop"]["entropy_coef"] == pytest.approx(0.010) and type(saved["loop"]["entropy_coef"]) is float
    buffer = io.BytesIO()  # the loop state alone loads under weights_only=True: plain ints and floats
    torch.save(saved["loop"], buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == saved["loop"]
    overrides = smoke_overrides(tiny_model_dir, tmp_path / "b", 4) + extra
    resumed = crash_then_resume(lambda: load_train_config(overrides=overrides), monkeypatch, crash_on_update=3)
    assert_same_run(straight, resumed, "step_000004")


def test_large_group_n64_trains_with_micro_batches(tiny_model_dir, tmp_path):
    """BroRL-style rollout budget: n = 64 samples per prompt, micro-batched."""
    overrides = smoke_overrides(tiny_model_dir, tmp_path / "run", steps=1) + [
        "train.prompts_per_step=2", "train.samples_per_prompt=64", "train.mini_batch_size=64",
        "train.micro_batch_size=16", "algorithm.advantage=pass_at_k", "algorithm.pass_k=8"]
    run_dir = train(load_train_config(overrides=overrides))
    record = read_metrics(run_dir / "metrics.jsonl")[-1]
    assert record["sampling/responses"] == 128 and record["policy/updates"] == 2.0


def test_siren_anchor_is_the_first_steps_entropy_and_is_resumed(tiny_model_dir, tmp_path, monkeypatch):
    extra = ["algorithm.siren=true", "output.save_every=2"]
    straight = train(load_train_config(overrides=smoke_overrides(tiny_model_dir, tmp_path / "a", 4) + extra))
    records = read_metrics(straight / "metrics.jsonl")
    anchors = [r["siren/anchor"] for r in records]
    assert anchors == [records[0]["siren/entropy_masked"]] * 4  # fixed at the first step's value
    assert records[-1]["siren/entropy_masked"] != anchors[0]
    overrides = smoke_overrides(tiny_model_dir, tmp_path / "b", 4) + extra
    resumed = crash_then_resume(lambda: load_train_config(overrides=overrides), monkeypatch, crash_on_update=3)
    assert_same_run(straight, resumed, "step_000004")
