"""Entropy-adaptive temperature in the HF sampler: tau from the step's entropy, mu exactly what was sampled."""

import pytest
import torch

from conftest import build_test_model, chi_square_pvalue
from ead.sampling import sample
from ead.schedules import EntropyAdaptiveSchedule, ScheduleError

SCHEDULE = EntropyAdaptiveSchedule(tau_low=1.6, tau_high=2.4, entropy_high=6.0)
PROMPT = "3 7>5:"


def tau_by_hand(logits: torch.Tensor) -> torch.Tensor:
    """Independent: entropy of softmax(z) in float64, then the linear capped map."""
    p = torch.softmax(logits.double(), dim=-1)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)
    return 1.6 + 0.8 * torch.clamp(entropy / 6.0, 0, 1)


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    return build_test_model(len(tiny_tokenizer), seed=1, logit_scale=5.0)


@pytest.fixture(scope="module")
def rollouts(model, tiny_tokenizer):
    return sample(model, tiny_tokenizer, [PROMPT] * 3000, SCHEDULE, max_new_tokens=3, batch_size=3000, seed=7)


def _logits(model, tokenizer, rows, t):
    with torch.no_grad():
        ids = torch.cat([rows.prompt_ids, rows.response_ids[:, :t]], dim=1)
        return model(input_ids=ids).logits[:, -1, :].double()  # (B, V)


def test_first_token_frequencies_match_the_adaptive_tempered_softmax(rollouts, model, tiny_tokenizer):
    logits = _logits(model, tiny_tokenizer, rollouts, 0)
    tau = tau_by_hand(logits[:1])  # every row has the same prompt: one distribution
    assert 1.65 < float(tau) < 2.35  # strictly inside the range, so the map matters
    probs = torch.softmax(logits[0] / tau, dim=-1)
    observed = torch.bincount(rollouts.response_ids[:, 0], minlength=probs.shape[0])
    assert chi_square_pvalue(observed, probs * 3000) > 1e-3
    for wrong_tau, pvalue in ((1.0, 1e-6), (1.6, 1e-3)):  # power: untempered and the constant low end rejected
        wrong = torch.softmax(logits[0] / wrong_tau, dim=-1) * 3000
        assert chi_square_pvalue(observed, wrong) < pvalue
    # Recorded tau and log mu are those of the distribution sampled from.
    assert torch.allclose(rollouts.temperatures[:, 0].double(), tau.expand(3000), atol=1e-5)
    picked = torch.log(probs[rollouts.response_ids[:, 0]])
    assert torch.allclose(rollouts.behaviour_logprobs[:, 0].double(), picked, atol=1e-4)


def test_later_positions_use_their_own_entropy(rollouts, model, tiny_tokenizer):
    alive = rollouts.response_mask[:, 2].bool()
    rows = rollouts.select(torch.nonzero(alive).flatten()[:200])
    logits = _logits(model, tiny_tokenizer, rows, 2)
    tau = tau_by_hand(logits)  # (b,) differs per row: the histories differ
    assert float(tau.max() - tau.min()) > 0.05
    assert torch.allclose(rows.temperatures[:, 2].double(), tau, atol=1e-5)
    expected = torch.log_softmax(logits / tau.unsqueeze(1), dim=-1).gather(1, rows.response_ids[:, 2:3]).squeeze(1)
    assert torch.allclose(rows.behaviour_logprobs[:, 2].double(), expected, atol=1e-4)


def test_engines_without_logits_are_refused():
    with pytest.raises(ScheduleError, match="only the HF"):
        SCHEDULE.temperatures(torch.arange(3))
    from ead.config import ConfigError
    from ead.training.config import load_train_config

    with pytest.raises(ConfigError, match="entropy_adaptive"):
        load_train_config(overrides=["sampling.engine=vllm", "sampling.schedule={name: entropy_adaptive}"])
