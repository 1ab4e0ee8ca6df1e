"""The HF sampler draws from softmax(z / tau_t) and records exactly log mu(y_t)."""

import pytest
import torch

from conftest import build_test_model, chi_square_pvalue
from ead.sampling import apply_top_k_top_p, sample
from ead.schedules import EADSchedule, FixedSchedule

# D = 2 tokens: tau_0 = 2.6 - 1 = 1.6 (hot), tau_1 = 2.6 - e^0.5 = 0.951, tau_2 = 2.6 - e = -0.12 -> floor 0.4.
SCHEDULE = EADSchedule(tau_max=1.6, tau_min=0.4, warmup_tokens=0, d0=1.0, alpha=0.0, d_max=1.0, unit=2.0)
PROMPT = "3 7>5:"


def reference_next_token_probs(model, tokenizer, prompt_ids, response_ids, t, tau):
    """Independent path: one full forward pass (no KV cache, no processor), logits / tau, softmax."""
    with torch.no_grad():
        ids = torch.cat([prompt_ids, response_ids[:, :t]], dim=1)
        logits = model(input_ids=ids).logits[:, -1, :].double()
    return torch.softmax(logits / tau, dim=-1)  # (B, V)


def recomputed_logits(model, tokenizer, prompt, response_ids):
    """Independent path for one row: a full forward over prompt + response, float64 logits
    at the positions that predict each response token, ``(len(response), V)``."""
    prompt_ids = torch.tensor([tokenizer(prompt, add_special_tokens=False).input_ids])
    with torch.no_grad():
        logits = model(input_ids=torch.cat([prompt_ids, response_ids.view(1, -1)], 1)).logits[0].double()
    return logits[prompt_ids.shape[1] - 1 : -1]


@pytest.fixture(scope="module")
def spread_model(tiny_tokenizer):
    return build_test_model(len(tiny_tokenizer), seed=1, logit_scale=5.0)


@pytest.fixture(scope="module")
def big_sample(spread_model, tiny_tokenizer):
    return sample(spread_model, tiny_tokenizer, [PROMPT] * 6000, SCHEDULE, step=0, max_new_tokens=3, batch_size=3000, seed=123)


def test_schedule_under_test_has_distinct_temperatures():
    taus = SCHEDULE.temperatures(torch.arange(3)).tolist()
    assert taus == pytest.approx([1.6, 2.6 - 2.718281828**0.5, 0.4], abs=1e-5)


@pytest.mark.parametrize("t", [0, 1, 2])
def test_sampled_frequencies_match_tempered_softmax(big_sample, spread_model, tiny_tokenizer, t):
    rows = big_sample.response_mask[:, t].bool()
    if t > 0:  # rows that already ended at EOS have no token at t
        rows &= big_sample.response_mask[:, t - 1].bool()
    prompt_ids = big_sample.prompt_ids[rows]
    response_ids = big_sample.response_ids[rows]
    tau = SCHEDULE.temperature(t)
    probs = reference_next_token_probs(spread_model, tiny_tokenizer, prompt_ids, response_ids, t, tau)
    vocab = probs.shape[1]
    observed = torch.bincount(response_ids[:, t], minlength=vocab)
    expected = probs.sum(dim=0)  # rows differ in history for t > 0: sum their own distributions
    assert chi_square_pvalue(observed, expected) > 1e-3
    if abs(tau - 1.0) > 0.1:  # power check: the untempered distribution must be rejected
        wrong = reference_next_token_probs(spread_model, tiny_tokenizer, prompt_ids, response_ids, t, 1.0).sum(dim=0)
        assert chi_square_pvalue(observed, wrong) < 1e-6


def test_no_hidden_top_k_from_generation_defaults(big_sample, spread_model, tiny_tokenizer):
    # transformers' GenerationConfig defaults to top_k=50; the vocabulary here has 60 symbols,
    # so a leaked default would make the 10 least likely first tokens impossible.
    probs = reference_next_token_probs(spread_model, tiny_tokenizer, big_sample.prompt_ids[:1], big_sample.response_ids[:1], 0, 1.0)[0]
    tail = torch.argsort(probs, descending=True)[50:]
    expected_tail = float(probs[tail].sum()) * 6000
    observed_tail = int(torch.isin(big_sample.response_ids[:, 0], tail).sum())
    assert expected_tail > 100 and observed_tail > 0.6 * expected_tail


def test_behaviour_logprobs_equal_independent_recomputation(spread_model, tiny_tokenizer):
    prompts = ["3 7>5:", "12 4 9>1:", "8>8:", "1 1 1 1>4:"] * 8
    schedule = EADSchedule(tau_max=1.3, tau_min=0.2, warmup_tokens=2, d0=1.0, alpha=1.0, d_max=50.0, unit=3.0)
    rollouts = sample(spread_model, tiny_tokenizer, prompts, schedule, step=2, max_new_tokens=12, batch_size=7, seed=5)
    assert rollouts.response_ids.shape[0] == len(prompts)
    for row in range(len(prompts)):
        length = int(rollouts.lengths[row])
        response = rollouts.response_ids[row, :length].view(1, -1)
        logits = recomputed_logits(spread_model, tiny_tokenizer, prompts[row], response)
        for t in range(length):
            tau = schedule.temperature(t, 2)
            expected = torch.log_softmax(logits[t] / tau, -1)[response[0, t]]
            assert float(rollouts.behaviour_logprobs[row, t]) == pytest.approx(float(expected), abs=2e-4)
            assert float(rollouts.temperatures[row, t]) == pytest.approx(tau, abs=1e-6)
        # after EOS: masked out and zeroed
        assert rollouts.response_mask[row, length:].sum() == 0
        assert float(rollouts.behaviour_logprobs[row, length:].abs().sum()) == 0.0
        if rollouts.finished[row]:
            assert int(response[0, -1]) == tiny_tokenizer.eos_token_id


def test_top_k_top_p_are_applied_after_temperature(spread_model, tiny_tokenizer):
    rollouts = sample(spread_model, tiny_tokenizer, [PROMPT] * 400, FixedSchedule(1.5), max_new_tokens=1, top_k=3, seed=0)
    with torch.no_grad():
        logits = spread_model(input_ids=rollouts.prompt_ids[:1]).logits[0, -1]
    allowed = set(torch.topk(logits, 3).indices.tolist())
    assert set(rollouts.response_ids[:, 0].tolist()) <= allowed
    for row in range(5):
        token = int(rollouts.response_ids[row, 0])
        z = logits.double() / 1.5
        expected = float(z[token] - torch.logsumexp(z[list(allowed)], 0))
        assert float(rollouts.behaviour_logprobs[row, 0]) == pytest.approx(expected, abs=1e-4)


def test_top_p_keeps_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(apply_top_k_top_p(logits, None, 0.8))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 + 0.3 reaches 0.8
    kept = torch.isfinite(apply_top_k_top_p(logits, None, 0.81))
    assert kept.tolist() == [[True, True, True, False]]


def test_seed_gives_identical_samples_and_leaves_global_rng(spread_model, tiny_tokenizer):
    torch.manual_seed(7)
    before = torch.get_rng_state()
    a = sample(spread_model, tiny_tokenizer, [PROMPT] * 16, SCHEDULE, max_new_tokens=6, seed=11)
    b = sample(spread_model, tiny_tokenizer, [PROMPT] * 16, SCHEDULE, max_new_tokens=6, seed=11)
    assert torch.equal(a.response_ids, b.response_ids)
    assert torch.equal(torch.get_rng_state(), before)


def test_captured_target_logprobs_and_entropy_equal_recomputation_at_temperature_one(spread_model, tiny_tokenizer):
    prompts = ["3 7>5:", "12 4 9>1:"] * 4
    rollouts = sample(spread_model, tiny_tokenizer, prompts, SCHEDULE, max_new_tokens=6, seed=2, capture_target=True, top_k=5)
    for row in range(len(prompts)):
        length = int(rollouts.lengths[row])
        response = rollouts.response_ids[row, :length].view(1, -1)
        logits = recomputed_logits(spread_model, tiny_tokenizer, prompts[row], response)
        for t in range(length):
            log_p = torch.log_softmax(logits[t], -1)  # tau = 1, no top-k: the target pi
            assert float(rollouts.target_logprobs[row, t]) == pytest.approx(float(log_p[response[0, t]]), abs=2e-4)
            assert float(rollouts.target_entropy[row, t]) == pytest.approx(float(-(log_p.exp() * log_p).sum()), abs=2e-4)
