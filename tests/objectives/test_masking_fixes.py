"""Padding and fully masked rows never change a loss, a gradient or a statistic."""

import pytest
import torch

from ead.objectives import aggregate_loss, sequence_logprobs_and_entropy


def test_seq_mean_aggregations_ignore_fully_masked_rows():
    per_token = torch.tensor([[1.0, 3.0, 0.0], [2.0, 2.0, 8.0], [5.0, 7.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])  # row 2: overlong, filtered
    # by hand: row means 2 and 4, row sums 4 and 12, over the 2 responses that have tokens
    assert float(aggregate_loss(per_token, mask, "seq_mean_token_mean")) == pytest.approx((2.0 + 4.0) / 2)
    assert float(aggregate_loss(per_token, mask, "seq_mean_token_sum")) == pytest.approx((4.0 + 12.0) / 2)
    assert float(aggregate_loss(per_token, mask, "token_mean")) == pytest.approx((1 + 3 + 2 + 2 + 8) / 5)
    assert float(aggregate_loss(per_token, torch.zeros_like(mask), "seq_mean_token_mean")) == 0.0


def test_padding_temperature_zero_gives_finite_gradients_equal_to_masked_computation(tiny_model, tiny_tokenizer):
    torch.manual_seed(0)
    prompt_ids = torch.tensor([[5, 6, 7], [0, 8, 9]])
    prompt_mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    response_ids = torch.tensor([[10, 11, 1, 0], [12, 1, 0, 0]])  # EOS (1) then padding (0)
    response_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    temperatures = torch.tensor([[1.3, 0.9, 0.5, 0.0], [1.1, 0.7, 0.0, 0.0]])  # samplers store 0 on padding
    model = tiny_model.float()

    model.zero_grad()
    logprobs, _ = sequence_logprobs_and_entropy(model, prompt_ids, prompt_mask, response_ids, response_mask,
                                                temperatures=temperatures)
    logprobs.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(torch.isfinite(g).all() for g in grads.values())

    # Independent path: one row at a time, no padding at all, each real token's log-softmax(z / tau).
    model.zero_grad()
    total = 0.0
    for row in range(2):
        p_ids = prompt_ids[row][prompt_mask[row].bool()]
        r_len = int(response_mask[row].sum())
        ids = torch.cat([p_ids, response_ids[row, :r_len]]).view(1, -1)
        logits = model(input_ids=ids).logits[0, len(p_ids) - 1 : -1].float()  # (r_len, V)
        logp = torch.log_softmax(logits / temperatures[row, :r_len].unsqueeze(-1), -1)
        picked = logp.gather(-1, response_ids[row, :r_len].unsqueeze(-1)).sum()
        total = total + picked
    total.backward()
    assert float(logprobs.sum().detach()) == pytest.approx(float(total.detach()), abs=1e-4)
    for name, g in grads.items():
        torch.testing.assert_close(g, dict(model.named_parameters())[name].grad, rtol=1e-3, atol=1e-4 * float(g.abs().max()))
    model.zero_grad()
