"""pi_old and entropies are computed without dropout, whatever mode the model was left in."""

import torch

from conftest import build_test_model
from ead.objectives import sequence_logprobs_and_entropy
from ead.sampling import sample
from ead.schedules import FixedSchedule
from ead.training.update import old_policy_logprobs


def test_old_policy_logprobs_are_deterministic_eval_mode_values(tiny_tokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    reference = build_test_model(len(tiny_tokenizer), seed=2, logit_scale=3.0)
    config = Qwen2Config(**{**reference.config.to_dict(), "attention_dropout": 0.5})
    model = Qwen2ForCausalLM(config)
    model.load_state_dict(reference.state_dict())
    model.config._attn_implementation = "eager"  # dropout acts on the attention probabilities here
    rollouts = sample(model, tiny_tokenizer, ["3 7>5:", "12 4 9>1:"] * 4, FixedSchedule(1.0), max_new_tokens=8, seed=0)
    model.train()  # as the trainer leaves it after the first update
    first, first_entropy = old_policy_logprobs(model, rollouts, micro_batch_size=3)
    second, _ = old_policy_logprobs(model, rollouts, micro_batch_size=8)
    assert model.training  # the caller's mode is restored
    torch.testing.assert_close(first, second, rtol=0, atol=1e-6)  # no dropout noise
    model.eval()
    with torch.no_grad():
        expected, expected_entropy = sequence_logprobs_and_entropy(
            model, rollouts.prompt_ids, rollouts.prompt_mask, rollouts.response_ids, rollouts.response_mask,
            with_entropy=True)
    torch.testing.assert_close(first, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(first_entropy, expected_entropy, rtol=0, atol=1e-5)
    # power check: in training mode dropout really changes the log-probs of this model
    model.train()
    with torch.no_grad():
        noisy, _ = sequence_logprobs_and_entropy(model, rollouts.prompt_ids, rollouts.prompt_mask,
                                                 rollouts.response_ids, rollouts.response_mask)
    assert (noisy - expected).abs().max() > 1e-3
