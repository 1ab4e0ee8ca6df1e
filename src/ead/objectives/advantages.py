"""Group-relative advantage estimators (one scalar per response).

Rewards come grouped: ``rewards[g, i]`` is the reward of the i-th of ``n``
responses sampled for prompt ``g``. Every estimator returns a tensor of the
same shape ``(G, n)``; the trainer broadcasts it over the response's tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class AdvantageParams:
    """The explicit scalars an estimator may read (each estimator reads only its own)."""

    eps: float = 1e-6
    """Added to the group std (grpo)."""
    w_reinforce_lambda: float = 0.1
    """W-REINFORCE's weight of a correct response (Zhu et al. 2025)."""
    pass_k: int = 4
    """k of the pass@k training advantages (Chen et al. 2025)."""
    correct_threshold: float = 0.5
    """A response with reward > this counts as correct (psr, nsr, w_reinforce, pass_at_k)."""


AdvantageFn = Callable[[torch.Tensor, AdvantageParams], torch.Tensor]


def grpo_advantages(rewards: torch.Tensor, params: AdvantageParams = AdvantageParams()) -> torch.Tensor:
    """GRPO (Shao et al. 2024, DeepSeekMath, Sec. 4.1.2): ``(r - mean_g) / (std_g + eps)``.

    ``std_g`` is the unbiased (n - 1) standard deviation of the group, as in
    verl and TRL. A group whose rewards are all equal gets advantage 0.
    """
    rewards = rewards.float()  # (G, n)
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=True) if rewards.shape[1] > 1 else torch.zeros_like(mean)
    return (rewards - mean) / (std + params.eps)


def dr_grpo_advantages(rewards: torch.Tensor, params: AdvantageParams = AdvantageParams()) -> torch.Tensor:
    """Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training", Eq. 3): ``r - mean_g``, no std division.

    Dividing by the group std up-weights prompts that are nearly always solved
    or nearly never solved; Dr. GRPO drops it to remove that difficulty bias.
    """
    rewards = rewards.float()
    return rewards - rewards.mean(dim=1, keepdim=True)


def rloo_advantages(rewards: torch.Tensor, params: AdvantageParams = AdvantageParams()) -> torch.Tensor:
    """RLOO (Ahmadian et al. 2024, Eq. 6): ``r_i - mean_{j != i} r_j`` (leave-one-out baseline).

    Equals ``n / (n - 1) * (r_i - mean_g)``; needs ``n >= 2``.
    """
    rewards = rewards.float()
    n = rewards.shape[1]
    if n < 2:
        raise ValueError("RLOO needs at least 2 samples per prompt (n >= 2)")
    leave_one_out_mean = (rewards.sum(dim=1, keepdim=True) - rewards) / (n - 1)
    return rewards - leave_one_out_mean


def _weighted_reinforce(rewards: torch.Tensor, correct_weight: float, wrong_weight: float,
                        threshold: float) -> torch.Tensor:
    """Zhu et al. 2025 ("The Surprising Effectiveness of Negative Reinforcement", arXiv 2506.01347): ``A = correct_weight`` for a correct response, ``wrong_weight`` for a wrong one, no baseline."""
    correct = rewards.float() > threshold  # (G, n)
    return torch.where(correct, torch.full_like(rewards, correct_weight, dtype=torch.float32),
                       torch.full_like(rewards, wrong_weight, dtype=torch.float32))


def w_reinforce_advantages(rewards: torch.Tensor, params: AdvantageParams = AdvantageParams()) -> torch.Tensor:
    """W-REINFORCE (2506.01347): ``lambda`` for correct, ``-1`` for wrong (lambda = 0.1)."""
    return _weighted_reinforce(rewards, params.w_reinforce_lambda, -1.0, params.correct_threshold)


def psr_advantages(rewards: torch.Tensor, params: AdvantageParams = AdvantageParams()) -> torch.Tensor:
    """Positive sample reinforcement only (2506.01347): (1 correct, 0 wrong)."""
    return _weighted_reinforce(rewards, 1.0, 0.0, params.correct_threshold)


def nsr_advantages(rewards: torch.Tensor, params: AdvantageParams = AdvantageParams()) -> torch.Tensor:
    """Negative sample reinforcement only (2506.01347): (0 correct, -1 wrong)."""
    return _weighted_reinforce(rewards, 0.0, -1.0, params.correct_threshold)


def _comb_ratio(top_n: int, top_k: int, bottom_n: int, bottom_k: int) -> float:
    """``C(top_n, top_k) / C(bottom_n, bottom_k)`` exactly (Python integers), 0 when the top is empty."""
    if top_n < 0 or top_k < 0 or top_k > top_n:
        return 0.0
    return math.comb(top_n, top_k) / math.comb(bottom_n, bottom_k)


def pass_at_k_advantages(rewards: torch.Tensor, params: AdvantageParams = AdvantageParams()) -> torch.Tensor:
    """Analytic pass@k training advantages (Chen et al. 2025, "Pass@k Training", arXiv 2508.10751).

    With ``c`` correct of ``n`` in a group::

        rho   = 1 - C(n-c, k) / C(n, k)                      (the group's pass@k)
        sigma = sqrt(rho (1 - rho))
        A_pos = (1 - rho) / sigma
        A_neg = (1 - rho - C(n-c-1, k-1) / C(n-1, k-1)) / sigma

    A group with sigma = 0 (all right or all wrong: rho is 1 or 0) carries no signal: advantage 0.
    Needs ``k <= n``.
    """
    groups, n = rewards.shape
    k = params.pass_k
    if not 1 <= k <= n:
        raise ValueError(f"pass@k advantages need 1 <= k <= samples per prompt, got k={k}, n={n}")
    correct = rewards.float() > params.correct_threshold  # (G, n)
    out = torch.zeros(groups, n, dtype=torch.float32)
    for g in range(groups):
        c = int(correct[g].sum())
        rho = 1.0 - _comb_ratio(n - c, k, n, k)
        sigma = math.sqrt(max(rho * (1.0 - rho), 0.0))
        if sigma < 1e-12:
            continue
        a_pos = (1.0 - rho) / sigma
        a_neg = (1.0 - rho - _comb_ratio(n - c - 1, k - 1, n - 1, k - 1)) / sigma
        out[g] = torch.where(correct[g], torch.tensor(a_pos), torch.tensor(a_neg))
    return out.to(rewards.device)


ADVANTAGE_ESTIMATORS: dict[str, AdvantageFn] = {
    "grpo": grpo_advantages,
    "dr_grpo": dr_grpo_advantages,
    "rloo": rloo_advantages,
    "w_reinforce": w_reinforce_advantages,
    "psr": psr_advantages,
    "nsr": nsr_advantages,
    "pass_at_k": pass_at_k_advantages,
}


def compute_advantages(rewards: torch.Tensor, estimator: str,
                       params: AdvantageParams | None = None) -> torch.Tensor:
    """Look up ``estimator`` in :data:`ADVANTAGE_ESTIMATORS` and apply it to ``(G, n)`` rewards."""
    if estimator not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {estimator!r}; choose one of {sorted(ADVANTAGE_ESTIMATORS)}")
    if rewards.dim() != 2:
        raise ValueError(f"rewards must have shape (groups, samples_per_group), got {tuple(rewards.shape)}")
    return ADVANTAGE_ESTIMATORS[estimator](rewards, params or AdvantageParams())
