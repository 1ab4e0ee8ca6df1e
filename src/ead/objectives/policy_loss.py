"""PPO-clip policy loss with asymmetric clipping and explicit loss aggregation.

Per token (Schulman et al. 2017, Eq. 7; DAPO, Yu et al. 2025, Eq. 10 for the
separate ``clip_low`` / ``clip_high``, "clip-higher")::

    r_t    = exp(logp_t - old_logp_t)
    l_t    = -min(r_t * A, clip(r_t, 1 - clip_low, 1 + clip_high) * A) * w_t

where ``w_t`` is the truncated importance weight pi_old / mu (1 when rollouts
are on-policy). How the per-token losses become one number matters
(see :data:`LOSS_AGGREGATIONS`).
"""

from __future__ import annotations

from typing import Callable

import torch

AggregationFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def token_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over every real token of the batch / number of real tokens (DAPO's token-level loss).

    Long responses weigh in proportion to their length, so a long bad answer is
    not diluted by its length (DAPO Sec. 3.3).
    """
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


def _mean_over_responses(per_seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_seq (B,)`` over responses with at least one token in ``mask``.

    A fully masked row (an overlong response under DAPO's filter) is not a response of the
    batch: counting it in the denominator would shrink every other response's weight.
    """
    has_tokens = (mask.sum(dim=1) > 0).to(per_seq.dtype)  # (B,)
    return (per_seq * has_tokens).sum() / has_tokens.sum().clamp(min=1.0)


def seq_mean_token_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average over tokens inside each response, then over responses (original GRPO)."""
    per_seq = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    return _mean_over_responses(per_seq, mask)


def seq_mean_token_sum(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over tokens inside each response, then average over responses (Dr. GRPO without its constant)."""
    return _mean_over_responses((per_token * mask).sum(dim=1), mask)


LOSS_AGGREGATIONS: dict[str, AggregationFn] = {
    "token_mean": token_mean,
    "seq_mean_token_mean": seq_mean_token_mean,
    "seq_mean_token_sum": seq_mean_token_sum,
}


# What each aggregation averages over, counted on a mask: a micro-batch's aggregated loss times
# units(micro) / units(mini-batch) is its exact share of the mini-batch loss, so micro-batches sum to it.
UnitCountFn = Callable[[torch.Tensor], torch.Tensor]
AGGREGATION_UNITS: dict[str, UnitCountFn] = {
    "token_mean": lambda mask: mask.sum(),
    # per-response aggregations average over responses that have tokens (fully masked rows do not count)
    "seq_mean_token_mean": lambda mask: (mask.sum(dim=1) > 0).sum(),
    "seq_mean_token_sum": lambda mask: (mask.sum(dim=1) > 0).sum(),
}


def aggregation_units(mask: torch.Tensor, aggregation: str) -> float:
    """Tokens (token_mean) or responses (seq_mean_*) that ``aggregation`` averages over in ``mask``."""
    if aggregation not in AGGREGATION_UNITS:
        raise ValueError(f"unknown loss aggregation {aggregation!r}; choose one of {sorted(AGGREGATION_UNITS)}")
    return float(AGGREGATION_UNITS[aggregation](mask.float()))


def aggregate_loss(per_token: torch.Tensor, mask: torch.Tensor, aggregation: str) -> torch.Tensor:
    """Reduce a ``(B, T)`` per-token loss with a registered aggregation."""
    if aggregation not in LOSS_AGGREGATIONS:
        raise ValueError(f"unknown loss aggregation {aggregation!r}; choose one of {sorted(LOSS_AGGREGATIONS)}")
    return LOSS_AGGREGATIONS[aggregation](per_token, mask.to(per_token.dtype))


def ppo_clip_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    importance_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token clipped surrogate loss (not yet aggregated).

    Args:
        logprobs: ``(B, T)`` log pi_theta(y_t), with grad.
        old_logprobs: ``(B, T)`` log pi_old(y_t) at temperature 1, no grad.
        advantages: ``(B,)`` one advantage per response (or ``(B, T)``).
        mask: ``(B, T)`` 1 for real response tokens.
        clip_low, clip_high: the ratio is clipped to ``[1 - clip_low, 1 + clip_high]``.
        importance_weights: ``(B, T)`` detached TIS weights, or None for 1.

    Returns:
        ``(per_token_loss (B, T), stats)`` where stats hold detached ``(B, T)`` tensors
        ``ratio`` and ``clipped`` (1 where the clipped branch was taken).
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)  # (B, 1) broadcasts over tokens
    advantages = advantages.float()
    log_ratio = (logprobs.float() - old_logprobs.detach().float()).clamp(-20.0, 20.0)
    ratio = torch.exp(log_ratio)  # (B, T)
    unclipped = ratio * advantages
    clipped_ratio = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    clipped = clipped_ratio * advantages
    per_token = -torch.minimum(unclipped, clipped)
    if importance_weights is not None:
        per_token = per_token * importance_weights.detach().float()
    per_token = per_token * mask.float()
    was_clipped = (clipped < unclipped).float() * mask.float()
    return per_token, {"ratio": ratio.detach(), "clipped": was_clipped.detach()}
