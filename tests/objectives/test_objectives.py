"""Advantages, losses, importance weights and KL on hand-worked examples; gradients checked."""

import math

import pytest
import torch

from ead.objectives import (
    aggregate_loss,
    compute_advantages,
    entropy_from_logits,
    kl_penalty_k3,
    ppo_clip_loss,
    truncated_importance_weights,
)


def test_grpo_advantages_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    adv = compute_advantages(rewards, "grpo")
    std = math.sqrt(1.0 / 3.0)  # unbiased: sum of squared deviations 4 * 0.25 over n - 1 = 3
    expected = 0.5 / (std + 1e-6)
    assert adv[0].tolist() == pytest.approx([expected, -expected, -expected, expected], rel=1e-6)
    assert adv[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # all-equal group carries no signal


def test_dr_grpo_and_rloo_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    assert compute_advantages(rewards, "dr_grpo")[0].tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5])
    # RLOO: r_i minus the mean of the other three.
    assert compute_advantages(rewards, "rloo")[0].tolist() == pytest.approx([2 / 3, -2 / 3, -2 / 3, 2 / 3])
    with pytest.raises(ValueError, match="unknown advantage"):
        compute_advantages(rewards, "ppo")


def test_importance_weights_token_level_by_hand():
    old = torch.tensor([[-1.0, -2.0, -0.5, 0.0]])
    behaviour = torch.tensor([[-2.0, -1.0, -0.5, float("-inf")]])  # last is padding holding -inf
    mask = torch.tensor([[1, 1, 1, 0]])
    weights, stats = truncated_importance_weights(old, behaviour, mask, cap=2.0)
    assert weights[0].tolist() == pytest.approx([2.0, math.exp(-1.0), 1.0, 0.0])  # e = 2.718 truncated to 2
    assert stats["is_truncated_frac"] == pytest.approx(1 / 3)
    assert stats["is_ratio_mean"] == pytest.approx((math.e + math.exp(-1) + 1) / 3)
    masked, _ = truncated_importance_weights(old, behaviour, mask, cap=2.0, mode="mask")
    assert masked[0].tolist() == pytest.approx([0.0, math.exp(-1.0), 1.0, 0.0])
    assert torch.isfinite(weights).all()


def test_importance_weights_sequence_level_by_hand():
    old = torch.tensor([[-1.0, -1.0, 0.0], [-1.0, -3.0, 0.0]])
    behaviour = torch.tensor([[-1.5, -1.2, 0.0], [-1.0, -1.0, -9.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    weights, stats = truncated_importance_weights(old, behaviour, mask, cap=2.0, level="sequence")
    row0 = math.exp(0.5 + 0.2)  # 2.01 -> truncated
    row1 = math.exp(-2.0)
    assert weights.flatten().tolist() == pytest.approx([2.0, 2.0, 0.0, row1, row1, 0.0])
    assert stats["is_truncated_frac"] == pytest.approx(0.5)
    assert row0 > 2.0


def test_ppo_clip_loss_by_hand_and_aggregations():
    # Token ratios e^0.1 = 1.105, e^-0.5 = 0.607, e^0.5 = 1.649; advantages +1 (row 0) and -1 (row 1).
    logprobs = torch.tensor([[-1.0, -2.0], [-1.0, -0.5]])
    old = torch.tensor([[-1.1, -1.5], [-1.5, -0.5]])
    advantages = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1, 1], [1, 0]])
    per_token, stats = ppo_clip_loss(logprobs, old, advantages, mask, clip_low=0.2, clip_high=0.28)
    r = [math.exp(0.1), math.exp(-0.5), math.exp(0.5)]
    expected = [
        -min(r[0] * 1, min(max(r[0], 0.8), 1.28) * 1),  # unclipped: -1.105
        -min(r[1] * 1, min(max(r[1], 0.8), 1.28) * 1),  # A > 0, ratio below 1 - eps: min picks 0.607
        -min(r[2] * -1, min(max(r[2], 0.8), 1.28) * -1),  # A < 0, ratio above 1 + eps: -(-1.649)
    ]
    assert per_token[0].tolist() == pytest.approx(expected[:2], rel=1e-6)
    assert float(per_token[1, 0]) == pytest.approx(expected[2], rel=1e-6)
    assert float(per_token[1, 1]) == 0.0  # padding
    assert stats["clipped"].tolist() == [[0.0, 0.0], [0.0, 0.0]]  # pessimistic min never takes clipped here
    tm = aggregate_loss(per_token, mask, "token_mean")
    assert float(tm) == pytest.approx(sum(expected) / 3, rel=1e-5)
    smtm = aggregate_loss(per_token, mask, "seq_mean_token_mean")
    assert float(smtm) == pytest.approx(((expected[0] + expected[1]) / 2 + expected[2]) / 2, rel=1e-5)
    smts = aggregate_loss(per_token, mask, "seq_mean_token_sum")
    assert float(smts) == pytest.approx(((expected[0] + expected[1]) + expected[2]) / 2, rel=1e-5)


def test_clip_fraction_counts_clipped_branch():
    logprobs = torch.tensor([[0.0, 0.0]])
    old = torch.tensor([[-1.0, 1.0]])  # ratios e (above 1.2) and 1/e (below 0.8)
    per_token, stats = ppo_clip_loss(logprobs, old, torch.tensor([1.0]), torch.ones(1, 2))
    assert stats["clipped"].tolist() == [[1.0, 0.0]]  # A > 0: only the high ratio is clipped
    assert per_token.flatten().tolist() == pytest.approx([-1.2, -math.exp(-1)])


def test_loss_gradient_matches_hand_derivative_and_finite_differences():
    torch.manual_seed(0)
    logprobs = (torch.randn(3, 5) * 0.05 - 1.0).requires_grad_(True)
    old = logprobs.detach() + torch.randn(3, 5) * 0.05  # ratios near 1: the unclipped branch
    advantages = torch.tensor([0.7, -1.3, 0.4])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    weights = torch.rand(3, 5) + 0.5

    def loss_of(lp):
        per_token, _ = ppo_clip_loss(lp, old, advantages, mask, 0.2, 0.28, weights)
        return aggregate_loss(per_token, mask, "token_mean")

    loss = loss_of(logprobs)
    loss.backward()
    ratio = torch.exp(logprobs.detach() - old)
    in_range = (ratio > 0.8) & (ratio < 1.28)
    assert bool(in_range[mask.bool()].all())
    # d/dlogp of -(r A w) / N is -r A w / N on real tokens.
    hand = -ratio * advantages[:, None] * weights * mask / mask.sum()
    assert torch.allclose(logprobs.grad, hand, atol=1e-6)
    eps = 1e-3
    for (i, j) in [(0, 0), (1, 2), (2, 0), (1, 4)]:
        bumped_up = logprobs.detach().clone()
        bumped_up[i, j] += eps
        bumped_down = logprobs.detach().clone()
        bumped_down[i, j] -= eps
        finite_diff = (loss_of(bumped_up) - loss_of(bumped_down)) / (2 * eps)
        assert float(finite_diff) == pytest.approx(float(hand[i, j]), abs=2e-4)


def test_k3_kl_by_hand_and_entropy():
    logp = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -2.0]])
    kl = kl_penalty_k3(logp, ref)
    assert kl.flatten().tolist() == pytest.approx([math.exp(-0.5) + 0.5 - 1.0, 0.0])
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    assert entropy_from_logits(logits).tolist() == pytest.approx([math.log(4), 0.0], abs=1e-5)
    p = torch.softmax(torch.tensor([1.0, 2.0, 3.0]), 0)
    assert float(entropy_from_logits(torch.tensor([1.0, 2.0, 3.0]))) == pytest.approx(float(-(p * p.log()).sum()), rel=1e-6)


def test_sequence_logprobs_match_direct_log_softmax_and_chunking_changes_nothing(tiny_model, tiny_tokenizer):
    from ead.objectives import sequence_logprobs_and_entropy

    torch.manual_seed(0)
    prompt_ids = torch.tensor([[0, 5, 6, 7], [8, 9, 10, 11]])  # row 0 left-padded
    prompt_mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    response_ids = torch.randint(2, 40, (2, 7))
    response_mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    temperatures = torch.rand(2, 7) + 0.3
    full, full_entropy = sequence_logprobs_and_entropy(tiny_model, prompt_ids, prompt_mask, response_ids,
                                                       response_mask, temperatures, with_entropy=True)
    chunked, chunked_entropy = sequence_logprobs_and_entropy(tiny_model, prompt_ids, prompt_mask, response_ids,
                                                             response_mask, temperatures, with_entropy=True,
                                                             token_chunk=3)
    # chunks change the matmul blocking of the LM head: float32 rounding only
    assert torch.allclose(full, chunked, atol=2e-5) and torch.allclose(full_entropy, chunked_entropy, atol=2e-5)
    # independent: row 1 (no padding) through a plain forward and log_softmax
    with torch.no_grad():
        logits = tiny_model(input_ids=torch.cat([prompt_ids[1:], response_ids[1:]], 1)).logits[0, 3:-1].double()
    expected = torch.log_softmax(logits / temperatures[1].double().unsqueeze(-1), -1)
    expected = expected.gather(-1, response_ids[1].unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(full[1, :4].double(), expected[:4], atol=2e-4)
    assert full[1, 4:].abs().sum() == 0
