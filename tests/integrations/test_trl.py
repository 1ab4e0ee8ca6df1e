"""EADGRPOTrainer: a few real TRL steps on a tiny local model (nothing downloaded).

Checks, with values recomputed independently of the trainer:
* the behaviour log-probs TRL stores are log softmax(z_t / tau_t)[y_t] with tau_t from
  the schedule at the step's global step (not the temperature-1 log-probs);
* the advantages handed to TRL's loss are A * min(pi_old / mu, C), with pi_old at tau = 1;
* TRL's loss on that batch equals the hand formula of the weighted DAPO loss;
* the weight statistics are logged.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl", reason="trl is not installed (pip install 'ead-rlvr[trl]')")
pytest.importorskip("datasets", reason="datasets is not installed (pip install 'ead-rlvr[trl]')")

from conftest import vllm_skip_reason  # noqa: E402
from datasets import Dataset  # noqa: E402
from trl import GRPOConfig  # noqa: E402

from ead.integrations.trl import EADGRPOTrainer, EADOptions, vllm_generation_kwargs  # noqa: E402
from ead.modeling.tiny import TinyModelConfig, build_char_tokenizer, build_tiny_model  # noqa: E402
from ead.objectives.importance import truncated_importance_weights  # noqa: E402
from ead.schedules import EADSchedule  # noqa: E402

# Hot start, falling to 0.4 within ~20 tokens, and a decay that lengthens with the step.
SCHEDULE = EADSchedule(tau_max=1.6, tau_min=0.4, warmup_tokens=2, d0=6.0, alpha=2.0, unit=1.0)
MAX_NEW = 16


def digit_reward(completions, **kwargs):
    """A pure, deterministic reward with spread: the fraction of digits in the completion."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


class RecordingTrainer(EADGRPOTrainer):
    """Keeps each generation batch and, before any update, an independent recomputation."""

    records: list

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        prompt_ids, completion_ids = out["prompt_ids"], out["completion_ids"]
        ids = torch.cat([prompt_ids, completion_ids], dim=1)  # (B, P+T): equal-length prompts, no padding
        with torch.no_grad():
            logits = self.model(input_ids=ids).logits.float()[:, prompt_ids.shape[1] - 1 : -1]  # (B, T, V)
        t = torch.arange(completion_ids.shape[1])
        tau = SCHEDULE.temperatures(t, self.state.global_step)  # (T,)
        gather = lambda lp: lp.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)  # noqa: E731
        self.records.append(
            {
                "step": self.state.global_step,
                "out": {k: (v.clone() if torch.is_tensor(v) else v) for k, v in out.items()},
                "mu": gather(torch.log_softmax(logits / tau[None, :, None], dim=-1)),  # (B, T)
                "pi": gather(torch.log_softmax(logits, dim=-1)),  # (B, T) tau = 1
            }
        )
        return out


VLLM_SKIP = vllm_skip_reason()


def _use_reload_weights_on_vllm_cpu(request) -> None:
    """TRL's colocate sync calls vLLM's ``model.load_weights`` directly, which vLLM's CPU build
    rejects (its linear weights are repacked for the CPU kernels). On the CPU only, swap in
    ``ead.rollout.vllm.load_weights`` (the worker's ``reload_weights``); on a GPU
    TRL's own sync runs. Everything EAD adds is untouched either way."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from trl.generation.vllm_generation import VLLMGeneration

    from ead.rollout.vllm import load_weights

    original = VLLMGeneration.sync_weights
    VLLMGeneration.sync_weights = lambda self: load_weights(
        self.llm, [(name, param.detach()) for name, param in self._iter_named_params()])
    request.addfinalizer(lambda: setattr(VLLMGeneration, "sync_weights", original))


@pytest.fixture(scope="module", params=[
    "hf",
    pytest.param("vllm", marks=pytest.mark.skipif(VLLM_SKIP is not None, reason=VLLM_SKIP or "")),
])
def trained(request, tmp_path_factory):
    """Two real GRPO steps, sampling with TRL's HF path or its colocated vLLM engine."""
    if request.param == "vllm":
        _use_reload_weights_on_vllm_cpu(request)
    torch.manual_seed(0)
    tokenizer = build_char_tokenizer()
    # 2 heads of 32 dims: vLLM's CPU attention kernels have no 16-dim heads
    shape = TinyModelConfig(num_layers=2, hidden_size=64, num_heads=2, intermediate_size=128)
    model = build_tiny_model(tokenizer, shape)
    model_dir = tmp_path_factory.mktemp("policy")
    model.save_pretrained(model_dir)  # TRL's vLLM engine loads the policy by path
    tokenizer.save_pretrained(model_dir)
    prompts = [f"{a}+{b}=" for a, b in [(1, 2), (3, 4), (5, 6), (7, 8)]]  # all 4 characters: no prompt padding
    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("trl")),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=MAX_NEW,
        max_steps=2,
        learning_rate=5e-3,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        seed=0,
        beta=0.0,
        loss_type="dapo",
        temperature=1.0,
        dataloader_num_workers=0,
        use_vllm=request.param == "vllm",
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=0.3,
        vllm_max_model_length=64,
    )
    trainer = RecordingTrainer(
        model=str(model_dir),
        reward_funcs=digit_reward,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts * 4}),
        processing_class=tokenizer,
        ead=EADOptions(schedule=SCHEDULE, cap=1.5, level="token", mode="truncate"),
    )
    trainer.records = []
    trainer.sampler = request.param
    trainer.train()
    return trainer


def test_behaviour_logprobs_are_the_tempered_ones(trained):
    assert [r["step"] for r in trained.records] == [0, 1]  # one generation per optimiser step
    for rec in trained.records:
        out, mask = rec["out"], rec["out"]["completion_mask"].bool()
        assert mask.sum() > 20 and out["completion_ids"].shape[1] > 4
        behaviour = out["sampling_per_token_logps"]
        # TRL builds its colocated vLLM engine with dtype "auto", which runs a float32 checkpoint in
        # half precision: vLLM's mu then differs from the float32 recomputation at the 1e-2 level.
        atol = 2e-4 if trained.sampler == "hf" else 2e-2
        torch.testing.assert_close(behaviour[mask], rec["mu"][mask], rtol=0, atol=atol)
        # ...and they are not the temperature-1 log-probs: the schedule visibly moved them.
        gap_to_tempered = (behaviour[mask] - rec["mu"][mask]).abs().mean()
        gap_to_untempered = (behaviour[mask] - rec["pi"][mask]).abs().mean()
        assert (behaviour[mask] - rec["pi"][mask]).abs().max() > 0.05
        assert gap_to_tempered < 0.1 * gap_to_untempered


def _sequence_advantages(advantages, mask, weights):
    """Undo the per-token weighting at the first token with a non-zero weight: A_i = A'_{i,t} / w_{i,t}."""
    rows = []
    for row, m, w in zip(advantages, mask.bool(), weights):
        keep = m & (w > 0)
        rows.append(row[keep][0] / w[keep][0] if keep.any() else row.new_zeros(()))
    return torch.stack(rows)  # (B,)


def test_importance_weights_are_folded_into_the_advantages(trained):
    for rec in trained.records:
        out = rec["out"]
        mask = out["completion_mask"]
        torch.testing.assert_close(out["old_per_token_logps"][mask.bool()], rec["pi"][mask.bool()], rtol=0, atol=2e-4)
        # w = min(pi_old / mu, C) with mu as the sampler returned it (checked against the tempered
        # recomputation above) and pi_old recomputed here at tau = 1.
        expected_w, _ = truncated_importance_weights(rec["pi"], out["sampling_per_token_logps"], mask, cap=1.5)
        adv = out["advantages"]
        assert adv.shape == mask.shape  # (B, T): per-token advantages
        seq_adv = _sequence_advantages(adv, mask, expected_w)
        assert seq_adv.abs().max() > 0.1  # the rewards had spread
        torch.testing.assert_close(adv * mask, seq_adv[:, None] * expected_w, rtol=1e-3, atol=1e-4)
        assert (expected_w[mask.bool()] == 1.5).any() and (expected_w[mask.bool()] < 1.0).any()


def test_loss_is_the_weighted_dapo_loss(trained):
    """At the first iteration pi_theta = pi_old, so DAPO's loss is -sum_t(w A) / num_items."""
    rec = trained.records[-1]
    inputs = dict(rec["out"])
    mask = inputs["completion_mask"].float()
    trained.model.train()
    # The model has been updated since this batch was sampled; restate pi_old as the current
    # policy so that the PPO ratio is exactly 1, as at the first iteration.
    with torch.no_grad():
        inputs["old_per_token_logps"] = trained._old_logprobs(inputs)
        loss = trained._compute_loss(trained.model, inputs)
        weights, _ = truncated_importance_weights(rec["pi"], inputs["sampling_per_token_logps"], inputs["completion_mask"],
                                                  cap=1.5)
        seq_adv = _sequence_advantages(inputs["advantages"], inputs["completion_mask"], weights)
        unweighted_inputs = dict(inputs, advantages=seq_adv)  # what plain GRPOTrainer would optimise
        unweighted = trained._compute_loss(trained.model, unweighted_inputs)
    n = inputs["num_items_in_batch"]
    torch.testing.assert_close(loss, -(seq_adv[:, None] * weights * mask).sum() / n, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(unweighted, -(seq_adv[:, None] * mask).sum() / n, rtol=1e-4, atol=1e-6)
    assert (loss - unweighted).abs() > 1e-3


def test_weight_statistics_are_logged(trained):
    logged = [h for h in trained.state.log_history if "ead/is_truncated_frac" in h]
    assert len(logged) == 2
    for h in logged:
        assert 0.0 <= h["ead/is_truncated_frac"] <= 1.0 and h["ead/is_weight_mean"] <= 1.5
        assert 0.4 <= h["ead/tau_mean"] <= 1.6


def test_rejects_settings_ead_cannot_honour(tmp_path):
    tokenizer = build_char_tokenizer()
    shape = TinyModelConfig(num_layers=1, hidden_size=32, num_heads=2, intermediate_size=64)
    model = build_tiny_model(tokenizer, shape)
    args = GRPOConfig(output_dir=str(tmp_path), temperature=0.7, report_to=[], use_cpu=True, num_generations=2,
                      per_device_train_batch_size=2)
    with pytest.raises(ValueError, match="temperature=0.7"):
        EADGRPOTrainer(model=model, reward_funcs=digit_reward, args=args, processing_class=tokenizer,
                       train_dataset=Dataset.from_dict({"prompt": ["1+1="] * 2}))
    with pytest.raises(ValueError, match="level"):
        EADOptions(level="batch")


def test_vllm_generation_kwargs_per_mode():
    colocate = vllm_generation_kwargs("colocate", SCHEDULE, 7)
    assert colocate["extra_args"]["ead_step"] == 7 and colocate["extra_args"]["ead_schedule"]["name"] == "ead"
    server = vllm_generation_kwargs("server", SCHEDULE, 7)
    assert isinstance(server["vllm_xargs"]["ead_schedule"], str)


# ---------------------------------------------------------------------- step definition and isolation

HOSTILE = dict(do_sample=True, temperature=0.7, top_k=3, min_p=0.5, typical_p=0.5, repetition_penalty=3.0,
               no_repeat_ngram_size=1, min_new_tokens=4, suppress_tokens=[5, 6])


class StepRecordingTrainer(EADGRPOTrainer):
    """Records, per generation, the optimiser step, EAD's step and an independent recomputation of mu."""

    records: list

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        prompt_ids, completion_ids = out["prompt_ids"], out["completion_ids"]
        with torch.no_grad():
            logits = self.model(input_ids=torch.cat([prompt_ids, completion_ids], 1)).logits.double()
        self.records.append({"global_step": self.state.global_step, "ead_step": self.ead_step(),
                             "prompt_ids": prompt_ids, "out": out,
                             "logits": logits[:, prompt_ids.shape[1] - 1 : -1]})
        return out


@pytest.fixture(scope="module")
def accumulated(tmp_path_factory):
    """4 optimiser steps with gradient accumulation 2 and 2 iterations per batch: 2 generation batches.

    The checkpoint ships a generation_config.json that would change every logit; the user asks TRL
    for repetition_penalty 1.5 and min_p 0.05, which must be part of the recorded mu.
    """
    from transformers import GenerationConfig

    torch.manual_seed(1)
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(tokenizer, TinyModelConfig(num_layers=2, hidden_size=64, num_heads=2, intermediate_size=128))
    model.generation_config = GenerationConfig(**HOSTILE, pad_token_id=tokenizer.pad_token_id,
                                               eos_token_id=tokenizer.eos_token_id)
    model_dir = tmp_path_factory.mktemp("hostile_policy")
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("trl_accumulated")), per_device_train_batch_size=4,
        gradient_accumulation_steps=2, num_iterations=2, num_generations=4, max_completion_length=8, max_steps=4,
        learning_rate=5e-3, logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, bf16=False, seed=0,
        beta=0.0, loss_type="dapo", temperature=1.0, dataloader_num_workers=0, repetition_penalty=1.5, min_p=0.05,
    )
    trainer = StepRecordingTrainer(
        model=str(model_dir), reward_funcs=digit_reward, args=args,
        train_dataset=Dataset.from_dict({"prompt": ["1+2=", "3+4=", "5+6=", "7+8="] * 4}),
        processing_class=tokenizer, ead=EADOptions(schedule=SCHEDULE),
    )
    trainer.records = []
    trainer.train()
    return trainer


def test_trl_schedule_step_counts_rollout_batches_not_optimiser_steps(accumulated):
    assert [r["global_step"] for r in accumulated.records] == [0, 2]  # optimiser steps at each generation
    assert [r["ead_step"] for r in accumulated.records] == [0, 1]  # training steps: what ead train passes


def test_trl_mu_ignores_checkpoint_config_and_includes_requested_processing(accumulated):
    checked = 0
    for rec in accumulated.records:
        out, logits = rec["out"], rec["logits"]
        for row in range(logits.shape[0]):
            history = rec["prompt_ids"][row].tolist()
            for t in range(int(out["completion_mask"][row].sum())):
                z = logits[row, t].clone()
                for token in set(history):  # repetition penalty 1.5 by hand
                    z[token] = z[token] * 1.5 if z[token] < 0 else z[token] / 1.5
                z = z / SCHEDULE.temperature(t, rec["ead_step"])
                p = torch.softmax(z, -1)
                z = torch.where(p >= 0.05 * p.max(), z, torch.full_like(z, float("-inf")))  # min-p by hand
                token = int(out["completion_ids"][row, t])
                expected = torch.log_softmax(z, -1)[token]
                assert float(out["sampling_per_token_logps"][row, t]) == pytest.approx(float(expected), abs=2e-4)
                history.append(token)
                checked += 1
    assert checked > 40
