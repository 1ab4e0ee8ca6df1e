"""Batch-global token selections: which tokens a method singles out, decided over the whole batch.

A selection is a boolean per real token of the *whole* batch (every row, every process), computed
once before mini/micro-batching and handed to the loss as a ``(B, T)`` mask. Micro-batch size and
process count then cannot change which tokens are picked. Inputs are flat 1-D tensors over the
batch's real tokens (``x[mask.bool()]``, concatenated over processes in rank order); outputs are
1-D booleans of the same length.

Statistics are of pi_old (temperature 1, before this step's update): at the first optimiser update
of a step pi_theta = pi_old, which is where the reference implementations compute them too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class FlatTokens:
    """The batch's real tokens, flattened: every field ``(N,)`` float32."""

    advantages: torch.Tensor
    """A_i: the advantage of the token's response."""
    logprobs: torch.Tensor
    """log pi_old(y_i) at temperature 1."""
    entropy: torch.Tensor | None = None
    """Entropy of pi_old at the token's position (None when no selector needs it)."""


@dataclass(frozen=True)
class SelectionParams:
    """The explicit scalars the selectors read."""

    clip_cov_ratio: float = 2e-4
    clip_cov_lb: float = 1.0
    clip_cov_ub: float = 5.0
    kl_cov_ratio: float = 2e-3
    top_entropy_rho: float = 0.2


def token_covariance(advantages: torch.Tensor, logprobs: torch.Tensor) -> torch.Tensor:
    """Cui et al. 2025 (arXiv 2505.22617, Sec. 4): ``Cov_i = (A_i - mean A)(logp_i - mean logp)``.

    Means over the batch's real tokens (token-weighted). Returns ``(N,)`` float32.
    """
    a = advantages.float()
    lp = logprobs.float()
    return (a - a.mean()) * (lp - lp.mean())


def clip_cov_selection(tokens: FlatTokens, params: SelectionParams, generator: torch.Generator) -> torch.Tensor:
    """Clip-Cov (2505.22617, Sec. 4): a random ``max(int(ratio * N), 1)`` of the tokens with
    ``lb < Cov_i < ub``; their policy-gradient is detached. Fewer candidates than that: all of them."""
    cov = token_covariance(tokens.advantages, tokens.logprobs)  # (N,)
    candidates = torch.nonzero((cov > params.clip_cov_lb) & (cov < params.clip_cov_ub)).flatten()
    budget = max(int(params.clip_cov_ratio * cov.numel()), 1)
    chosen = candidates[torch.randperm(len(candidates), generator=generator)[:budget]]
    selected = torch.zeros_like(cov, dtype=torch.bool)
    selected[chosen] = True
    return selected


def kl_cov_selection(tokens: FlatTokens, params: SelectionParams, generator: torch.Generator) -> torch.Tensor:
    """KL-Cov (2505.22617): the top ``max(int(ratio * N), 1)`` tokens by Cov_i."""
    cov = token_covariance(tokens.advantages, tokens.logprobs)  # (N,)
    budget = min(max(int(params.kl_cov_ratio * cov.numel()), 1), cov.numel())
    selected = torch.zeros_like(cov, dtype=torch.bool)
    selected[torch.topk(cov, budget).indices] = True
    return selected


def high_entropy_selection(tokens: FlatTokens, params: SelectionParams, generator: torch.Generator) -> torch.Tensor:
    """80/20 forking tokens (Wang et al. 2025, arXiv 2506.01939): the batch's top
    ``rho`` share by entropy of pi: ``H_i >= `` the ``ceil(rho * N)``-th largest entropy (ties kept)."""
    if tokens.entropy is None:
        raise ValueError("high_entropy selection needs the entropy of pi_old")
    entropy = tokens.entropy.float()  # (N,)
    if entropy.numel() == 0:
        return torch.zeros_like(entropy, dtype=torch.bool)
    budget = min(max(math.ceil(params.top_entropy_rho * entropy.numel()), 1), entropy.numel())
    threshold = torch.topk(entropy, budget).values[-1]
    return entropy >= threshold


SelectorFn = Callable[[FlatTokens, SelectionParams, torch.Generator], torch.Tensor]
SELECTORS: dict[str, SelectorFn] = {
    "clip_cov": clip_cov_selection,
    "kl_cov": kl_cov_selection,
    "high_entropy": high_entropy_selection,
}
"""Name -> selector. The loss reads the masks by these names (see ead.objectives.pipeline)."""


def covariance_stats(tokens: FlatTokens) -> dict[str, float]:
    """Mean, max and the share of positive Cov_i (logged: the paper's entropy-collapse diagnostic)."""
    if tokens.advantages.numel() == 0:
        return {}
    cov = token_covariance(tokens.advantages, tokens.logprobs)
    return {"cov/mean": float(cov.mean()), "cov/max": float(cov.max()), "cov/positive_frac": float((cov > 0).float().mean())}
