"""The loss pipeline: micro-batching is exact, batch-global selections, each method on a hand-worked case."""

import itertools
import math

import pytest
import torch

from conftest import build_test_model
from ead.objectives import compute_advantages, sequence_logprobs_and_entropy
from ead.objectives.advantages import AdvantageParams
from ead.objectives.pipeline import LossSettings, MiniBatchTotals, TokenInputs, micro_batch_loss
from ead.objectives.regularizers import adaptive_entropy_coef
from ead.objectives.selectors import (
    FlatTokens,
    SelectionParams,
    clip_cov_selection,
    high_entropy_selection,
    kl_cov_selection,
    token_covariance,
)
from ead.sampling import Rollouts
from ead.training.update import UpdateSettings, batch_selections, ppo_update


# ----------------------------------------------------------------------------- micro-batching is exact
def _random_rollouts(rows=6, prompt=3, response=5, vocab=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([5, 3, 4, 1, 5, 2])[:rows]  # no empty row
    response_mask = (torch.arange(response).unsqueeze(0) < lengths.unsqueeze(1)).long()
    return Rollouts(
        prompt_ids=torch.randint(2, vocab, (rows, prompt), generator=g), prompt_mask=torch.ones(rows, prompt).long(),
        response_ids=torch.randint(2, vocab, (rows, response), generator=g) * response_mask,
        response_mask=response_mask, behaviour_logprobs=torch.zeros(rows, response),
        temperatures=torch.ones(rows, response), texts=[""] * rows, finished=torch.ones(rows, dtype=torch.bool))


def _settings(aggregation, pg_tokens, micro, group_by_length=False):
    return UpdateSettings(group_by_length=group_by_length,
        loss=LossSettings(clip_low=0.2, clip_high=0.28, loss_aggregation=aggregation, pg_tokens=pg_tokens),
        selection=SelectionParams(top_entropy_rho=0.3), importance_correction=True, importance_level="token",
        importance_mode="truncate", importance_cap=2.0, ppo_epochs=1, updates_per_epoch=1,
        micro_batch_size=micro, max_grad_norm=1e9)


def _gradient_by_update(model, rollouts, loss_mask, old_lp, old_ent, adv, weights, settings):
    """One SGD step at lr 1 through ppo_update: the parameter change is minus the accumulated gradient."""
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda u: 1.0)
    ppo_update(model, optimizer, scheduler, rollouts, loss_mask, adv, old_lp, weights, None,
               settings, old_entropy=old_ent)
    grads = [b - p.detach() for b, p in zip(before, model.parameters())]
    with torch.no_grad():
        for p, b in zip(model.parameters(), before):
            p.copy_(b)
    return grads


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean_token_mean"])
@pytest.mark.parametrize("pg_tokens", ["all", "high_entropy"])
def test_micro_batched_gradient_equals_full_batch_gradient(aggregation, pg_tokens, one_thread):
    torch.manual_seed(0)
    model = build_test_model(16, seed=1, logit_scale=3.0).train()
    rollouts = _random_rollouts()
    mask = rollouts.response_mask.float()
    mask[3] = 0.0  # an overlong-filtered response: in the batch, out of the loss
    with torch.no_grad():
        lp, ent = sequence_logprobs_and_entropy(model, rollouts.prompt_ids, rollouts.prompt_mask,
                                                rollouts.response_ids, rollouts.response_mask, with_entropy=True)
    old_lp = (lp + 0.3 * torch.randn(lp.shape)) * mask  # ratios away from 1: both clip branches occur
    adv = torch.tensor([1.5, -0.7, 0.4, -1.2, 0.9, -0.2])
    weights = (0.5 + 1.5 * torch.rand(lp.shape)) * mask
    # Independent full-batch loss, written out here.
    logprobs, _ = sequence_logprobs_and_entropy(model, rollouts.prompt_ids, rollouts.prompt_mask,
                                                rollouts.response_ids, rollouts.response_mask)
    ratio = torch.exp(logprobs - old_lp)
    a = adv.unsqueeze(1)
    per_token = -torch.minimum(ratio * a, torch.clamp(ratio, 0.8, 1.28) * a) * weights
    keep = torch.ones_like(mask)
    if pg_tokens == "high_entropy":  # top ceil(0.3 * 19) = 6 of the 19 loss tokens by entropy
        real = ent[mask.bool()]
        threshold = sorted(real.tolist(), reverse=True)[math.ceil(0.3 * len(real)) - 1]
        keep = (ent >= threshold).float() * mask
        assert int(keep.sum()) == 6
    per_token = per_token * keep * mask
    if aggregation == "token_mean":
        full_loss = per_token.sum() / mask.sum()
    else:
        # seq_mean_token_mean over the responses that have loss tokens: the filtered row 3 does not count
        full_loss = (per_token.sum(1) / mask.sum(1).clamp(min=1)).sum() / (mask.shape[0] - 1)
    model.zero_grad()
    full_loss.backward()
    expected = [p.grad.detach().clone() for p in model.parameters()]
    assert (ratio.detach() * mask > 1.28).any() and ((ratio.detach() < 0.8) & mask.bool()).any()
    # one piece, uneven 4 + 2, one row at a time; in random order or grouped by response length
    for micro, grouped in itertools.product((6, 4, 1), (False, True)):
        got = _gradient_by_update(model, rollouts, mask, old_lp, ent, adv, weights,
                                  _settings(aggregation, pg_tokens, micro, group_by_length=grouped))
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-7)


def test_group_by_length_pads_each_micro_batch_to_its_own_longest_row(one_thread):
    """Lengths 5, 3, 4, 1, 5, 2 in micro-batches of 2: sorted, the pairs are (1, 2), (3, 4), (5, 5), so the
    forwards see 2 x (3 + 2) + 2 x (3 + 4) + 2 x (3 + 5) = 40 prompt + response positions (prompt width 3)."""
    model = build_test_model(16, seed=1).train()
    rollouts = _random_rollouts()
    widths = []
    model.register_forward_pre_hook(lambda module, args, kwargs: widths.append(tuple(kwargs["input_ids"].shape)),
                                    with_kwargs=True)
    mask = rollouts.response_mask.float()
    zeros = torch.zeros(rollouts.response_mask.shape)
    for grouped in (True, False):
        widths.clear()
        torch.manual_seed(3)
        _gradient_by_update(model, rollouts, mask, zeros, zeros, torch.ones(6), None,
                            _settings("token_mean", "all", 2, group_by_length=grouped))
        if grouped:
            assert widths == [(2, 5), (2, 7), (2, 8)]
        else:  # seed 3's order pairs (5, 5), (1, 4), (3, 2): 2 x (8 + 7 + 6) = 42; no order beats sorted
            assert sum(r * w for r, w in widths) > 40


# ----------------------------------------------------------------------------- selections, hand-worked
# A = [3, 3, -3, -3, 0] (mean 0), logp = [-1, -3, -1, -3, -2] (mean -2): Cov = [3, -3, -3, 3, 0].
TOKENS = FlatTokens(advantages=torch.tensor([3.0, 3.0, -3.0, -3.0, 0.0]),
                    logprobs=torch.tensor([-1.0, -3.0, -1.0, -3.0, -2.0]),
                    entropy=torch.tensor([0.1, 0.9, 0.5, 0.7, 0.3]))


def test_token_covariance_by_hand():
    assert token_covariance(TOKENS.advantages, TOKENS.logprobs).tolist() == [3.0, -3.0, -3.0, 3.0, 0.0]


def test_clip_cov_selects_inside_the_window_up_to_its_budget():
    g = torch.Generator().manual_seed(0)
    both = clip_cov_selection(TOKENS, SelectionParams(clip_cov_ratio=0.4, clip_cov_lb=1, clip_cov_ub=5), g)
    assert both.tolist() == [True, False, False, True, False]  # budget int(0.4 * 5) = 2, candidates {0, 3}
    picks = {tuple(clip_cov_selection(TOKENS, SelectionParams(clip_cov_ratio=2e-4), g).tolist()) for _ in range(40)}
    assert picks == {(True, False, False, False, False), (False, False, False, True, False)}  # budget max(0, 1)=1
    none = clip_cov_selection(TOKENS, SelectionParams(clip_cov_ratio=1.0, clip_cov_lb=1, clip_cov_ub=2.5), g)
    assert not none.any()  # Cov 3 is above ub


def test_kl_cov_selects_the_top_covariance_tokens():
    g = torch.Generator().manual_seed(0)
    assert kl_cov_selection(TOKENS, SelectionParams(kl_cov_ratio=0.4), g).tolist() == [True, False, False, True, False]
    assert kl_cov_selection(TOKENS, SelectionParams(kl_cov_ratio=0.2), g).sum() == 1


def test_high_entropy_selection_by_hand():
    g = torch.Generator()
    assert high_entropy_selection(TOKENS, SelectionParams(top_entropy_rho=0.4), g).tolist() == [
        False, True, False, True, False]  # ceil(2.0) = 2: entropies 0.9 and 0.7
    assert high_entropy_selection(TOKENS, SelectionParams(top_entropy_rho=0.5), g).tolist() == [
        False, True, True, True, False]  # ceil(2.5) = 3


class TwoProcesses:
    """Stands in for Distributed on rank ``rank`` of 2: gathers return both processes' objects."""

    def __init__(self, rank, tokens_by_rank):
        self.rank, self.world_size, self.tokens = rank, 2, tokens_by_rank

    def gather_objects(self, obj):
        if isinstance(obj, FlatTokens):
            return [obj if r == self.rank else self.tokens[r] for r in range(2)]
        return [1234, obj]  # rank 0's seed


def test_high_entropy_selection_is_global_across_processes():
    # Rank 0 holds only low-entropy tokens: selected globally, none of them is in the top 40%.
    entropy = {0: torch.tensor([[0.1, 0.2, 0.3]]), 1: torch.tensor([[0.9, 0.8, 0.05]])}
    mask = torch.ones(1, 3)
    settings = _settings("token_mean", "high_entropy", 4)
    settings = UpdateSettings(**{**vars(settings), "selection": SelectionParams(top_entropy_rho=0.4)})
    flat = {r: FlatTokens(torch.zeros(3), torch.zeros(3), entropy[r].flatten()) for r in (0, 1)}
    picked = {}
    for rank in (0, 1):
        selections, stats = batch_selections(settings, mask, torch.zeros(1), torch.zeros(1, 3), entropy[rank],
                                             TwoProcesses(rank, flat))
        picked[rank] = selections["high_entropy"].tolist()
        assert stats["select/high_entropy_frac"] == pytest.approx(3 / 6)  # ceil(0.4 * 6) = 3: 0.9, 0.8, 0.3
    assert picked == {0: [[False, False, True]], 1: [[True, True, False]]}


# ----------------------------------------------------------------------------- losses, hand-worked values
def _inputs(delta, selections, advantages=(1.0, -2.0)):
    old = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -1.0, -3.0]])
    logprobs = (old + torch.tensor(delta)).requires_grad_(True)
    return TokenInputs(logprobs=logprobs, old_logprobs=old, advantages=torch.tensor(advantages),
                       mask=torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]), selections=selections)


def test_clip_cov_loss_detaches_the_selected_tokens():
    selected = torch.tensor([[False, True, False], [True, False, False]])
    inputs = _inputs([[0.0] * 3] * 2, {"clip_cov": selected})
    loss, stats = micro_batch_loss(inputs, LossSettings(policy_loss="clip_cov", loss_aggregation="token_mean"),
                                   MiniBatchTotals(units=5, tokens=5))
    loss.backward()
    # ratio 1: loss = sum(-A) / 5 over real tokens (values kept), gradient -A / 5 except on the selected.
    assert loss.item() == pytest.approx((-1 - 1 - 1 + 2 + 2) / 5)
    assert inputs.logprobs.grad.flatten().tolist() == pytest.approx([-0.2, 0.0, -0.2, 0.0, 0.4, 0.0])
    assert stats["cov_selected_frac"] == pytest.approx(2 / 5)


def test_kl_cov_loss_by_hand():
    selected = torch.tensor([[True, False, False], [False, True, False]])
    delta = [[0.1, -0.2, 0.0], [0.3, -0.1, 0.0]]
    inputs = _inputs(delta, {"kl_cov": selected})
    settings = LossSettings(policy_loss="kl_cov", loss_aggregation="token_mean", kl_cov_coef=1.0)
    loss, stats = micro_batch_loss(inputs, settings, MiniBatchTotals(units=5, tokens=5))
    loss.backward()
    e = math.exp
    # unclipped -A e^delta (A = 1, 1, 1, -2, -2) plus |delta| on (0, 0) and (1, 1), over 5 tokens
    per_token = [-e(0.1) + 0.1, -e(-0.2), -1.0, 2 * e(0.3), 2 * e(-0.1) + 0.1]
    assert loss.item() == pytest.approx(sum(per_token) / 5, rel=1e-6)
    grad = [[(-e(0.1) + 1) / 5, -e(-0.2) / 5, -1 / 5], [2 * e(0.3) / 5, (2 * e(-0.1) - 1) / 5, 0.0]]
    assert inputs.logprobs.grad.flatten().tolist() == pytest.approx(grad[0] + grad[1], rel=1e-5)
    assert stats["kl_cov_penalty"] == pytest.approx(0.2 / 5, rel=1e-5)


def test_high_entropy_tokens_alone_carry_the_policy_gradient():
    keep = torch.tensor([[True, False, False], [False, False, False]])
    inputs = _inputs([[0.0] * 3] * 2, {"high_entropy": keep})
    settings = LossSettings(pg_tokens="high_entropy", loss_aggregation="seq_mean_token_mean")
    loss, stats = micro_batch_loss(inputs, settings, MiniBatchTotals(units=2, tokens=5))
    loss.backward()
    # seq mean: row 0 has one kept token of 3 -> -1/3, row 1 none -> 0; mean over 2 rows.
    assert loss.item() == pytest.approx(-1 / 6)
    assert inputs.logprobs.grad.flatten().tolist() == pytest.approx([-1 / 6, 0, 0, 0, 0, 0])
    assert stats["pg_token_frac"] == pytest.approx(1 / 5)


def test_entropy_bonus_enters_with_its_coefficient():
    inputs = _inputs([[0.0] * 3] * 2, {})
    entropy = torch.tensor([[0.5, 1.0, 1.5], [2.0, 0.0, 9.0]], requires_grad=True)
    inputs.entropy = entropy
    loss, stats = micro_batch_loss(inputs, LossSettings(entropy_coef=0.1, loss_aggregation="token_mean"),
                                   MiniBatchTotals(units=5, tokens=5))
    loss.backward()
    assert stats["entropy_bonus"] == pytest.approx(5.0 / 5)  # padding's 9.0 excluded
    assert entropy.grad.flatten().tolist() == pytest.approx([-0.02] * 5 + [0.0])


# ----------------------------------------------------------------------------- advantages, hand-worked
def test_w_reinforce_psr_nsr_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    assert compute_advantages(rewards, "w_reinforce")[0].tolist() == pytest.approx([0.1, -1, 0.1, -1])
    assert compute_advantages(rewards, "w_reinforce", AdvantageParams(w_reinforce_lambda=0.5))[0].tolist() == [
        0.5, -1, 0.5, -1]
    assert compute_advantages(rewards, "psr")[0].tolist() == [1, 0, 1, 0]
    assert compute_advantages(rewards, "nsr")[0].tolist() == [0, -1, 0, -1]


def _pass_at_k_brute_force(correct, k):
    """Average over the k-subsets containing each response of (subset reward - mean) / std."""
    n = len(correct)
    subsets = list(itertools.combinations(range(n), k))
    reward = {s: float(any(correct[i] for i in s)) for s in subsets}
    mean = sum(reward.values()) / len(subsets)
    std = math.sqrt(sum((r - mean) ** 2 for r in reward.values()) / len(subsets))
    if std == 0:
        return [0.0] * n
    return [sum((reward[s] - mean) / std for s in subsets if i in s) / sum(1 for s in subsets if i in s)
            for i in range(n)]


@pytest.mark.parametrize("correct,k", [([1, 0, 0, 0, 0, 0], 2), ([1, 1, 0, 0, 1, 0, 0], 3), ([0, 1, 0, 0], 1),
                                       ([1, 0, 1, 1, 0], 4)])
def test_pass_at_k_advantages_match_brute_force(correct, k):
    rewards = torch.tensor([correct], dtype=torch.float32)
    got = compute_advantages(rewards, "pass_at_k", AdvantageParams(pass_k=k))[0].tolist()
    assert got == pytest.approx(_pass_at_k_brute_force(correct, k), rel=1e-5, abs=1e-6)


def test_pass_at_k_advantages_sigma_zero_groups_and_hand_value():
    rewards = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    adv = compute_advantages(rewards, "pass_at_k", AdvantageParams(pass_k=2))
    assert adv[0].tolist() == [0.0] * 4 and adv[1].tolist() == [0.0] * 4
    # n=4, c=3, k=2: every pair has a correct one -> rho = 1 -> sigma 0
    assert adv[2].tolist() == [0.0] * 4
    # n=4, c=1, k=2: rho = 1 - C(3,2)/C(4,2) = 1/2, sigma = 1/2; A_pos = 1, A_neg = (1/2 - C(2,1)/C(3,1)) / (1/2)
    adv = compute_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), "pass_at_k", AdvantageParams(pass_k=2))
    assert adv[0].tolist() == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])
    with pytest.raises(ValueError, match="k <= samples"):
        compute_advantages(torch.tensor([[1.0, 0.0]]), "pass_at_k", AdvantageParams(pass_k=3))


def test_adaptive_entropy_coefficient_steps_toward_the_target():
    assert adaptive_entropy_coef(0.01, entropy=0.5, target=1.0, delta=0.005) == pytest.approx(0.015)
    assert adaptive_entropy_coef(0.01, entropy=1.5, target=1.0, delta=0.005) == pytest.approx(0.005)
    assert adaptive_entropy_coef(0.003, entropy=1.5, target=1.0, delta=0.005) == 0.0
    assert isinstance(adaptive_entropy_coef(0, 0.0, 1.0, 0.005), float)


# ----------------------------------------------------------------------------- SIREN
def test_nucleus_entropy_and_its_gradient_by_hand():
    from ead.objectives.siren import nucleus_entropy

    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05])).requires_grad_(True)
    h = nucleus_entropy(logits, top_p=0.8)
    # mass before each token: 0, 0.5, 0.8, 0.95 -> keep the first two, renormalised to 0.625 / 0.375
    q = [0.625, 0.375]
    expected = -sum(x * math.log(x) for x in q)
    assert h.item() == pytest.approx(expected, rel=1e-6)
    h.backward()
    # dH/dz_i = -q_i (log q_i + H) on the nucleus, 0 outside it
    grad = [-x * (math.log(x) + expected) for x in q] + [0.0, 0.0]
    assert logits.grad.tolist() == pytest.approx(grad, abs=1e-6)


def test_siren_token_mask_keeps_each_rows_top_share():
    from ead.objectives.siren import top_share_per_row

    values = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.3], [0.4, 0.2, 0.8, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    assert top_share_per_row(values, mask, 0.2).int().tolist() == [[0, 1, 0, 0, 0], [0, 0, 1, 0, 0]]
    assert top_share_per_row(values, mask, 0.5).int().tolist() == [[0, 1, 1, 1, 0], [1, 0, 1, 0, 0]]  # ceil(2.5) = 3, ceil(1.5) = 2


def test_siren_term_is_the_gradient_of_the_squared_deviation():
    inputs = _inputs([[0.0] * 3] * 2, {"siren": torch.tensor([[True, False, False], [False, True, False]])},
                     advantages=(0.0, 0.0))
    nucleus = torch.tensor([[0.8, 0.1, 0.2], [0.3, 1.2, 0.0]], requires_grad=True)
    inputs.nucleus_entropy = nucleus
    settings = LossSettings(loss_aggregation="token_mean", siren_coef=0.005, siren_anchor=0.7, siren_batch_entropy=1.0)
    loss, stats = micro_batch_loss(inputs, settings, MiniBatchTotals(units=5, tokens=5))
    loss.backward()
    # c * 2 (H_batch - anchor) = 0.005 * 0.6 = 0.003 per unit of (masked) mean nucleus entropy over 5 tokens
    assert loss.item() == pytest.approx(0.003 * (0.8 + 1.2) / 5, rel=1e-6)
    assert nucleus.grad.flatten().tolist() == pytest.approx([0.003 / 5, 0, 0, 0, 0.003 / 5, 0], abs=1e-9)
