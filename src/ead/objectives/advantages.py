"""Group-relative advantage estimators (one scalar per response).

Rewards come grouped: ``rewards[g, i]`` is the reward of the i-th of ``n``
responses sampled for prompt ``g``. Every estimator returns a tensor of the
same shape ``(G, n)``; the trainer broadcasts it over the response's tokens.
"""

from __future__ import annotations

from typing import Callable

import torch

AdvantageFn = Callable[[torch.Tensor, float], torch.Tensor]


def grpo_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """GRPO (Shao et al. 2024, DeepSeekMath, Sec. 4.1.2): ``(r - mean_g) / (std_g + eps)``.

    ``std_g`` is the unbiased (n - 1) standard deviation of the group, as in
    verl and TRL. A group whose rewards are all equal gets advantage 0.
    """
    rewards = rewards.float()  # (G, n)
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=True) if rewards.shape[1] > 1 else torch.zeros_like(mean)
    return (rewards - mean) / (std + eps)


def dr_grpo_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training", Eq. 3): ``r - mean_g``, no std division.

    Dividing by the group std up-weights prompts that are nearly always solved
    or nearly never solved; Dr. GRPO drops it to remove that difficulty bias.
    ``eps`` is unused and kept for a uniform signature.
    """
    rewards = rewards.float()
    return rewards - rewards.mean(dim=1, keepdim=True)


def rloo_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RLOO (Ahmadian et al. 2024, Eq. 6): ``r_i - mean_{j != i} r_j`` (leave-one-out baseline).

    Equals ``n / (n - 1) * (r_i - mean_g)``; needs ``n >= 2``.
    """
    rewards = rewards.float()
    n = rewards.shape[1]
    if n < 2:
        raise ValueError("RLOO needs at least 2 samples per prompt (n >= 2)")
    leave_one_out_mean = (rewards.sum(dim=1, keepdim=True) - rewards) / (n - 1)
    return rewards - leave_one_out_mean


ADVANTAGE_ESTIMATORS: dict[str, AdvantageFn] = {
    "grpo": grpo_advantages,
    "dr_grpo": dr_grpo_advantages,
    "rloo": rloo_advantages,
}


def compute_advantages(rewards: torch.Tensor, estimator: str, eps: float = 1e-6) -> torch.Tensor:
    """Look up ``estimator`` in :data:`ADVANTAGE_ESTIMATORS` and apply it to ``(G, n)`` rewards."""
    if estimator not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {estimator!r}; choose one of {sorted(ADVANTAGE_ESTIMATORS)}")
    if rewards.dim() != 2:
        raise ValueError(f"rewards must have shape (groups, samples_per_group), got {tuple(rewards.shape)}")
    return ADVANTAGE_ESTIMATORS[estimator](rewards, eps)
