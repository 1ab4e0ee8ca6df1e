"""Phase 2 of a step: pi_old at temperature 1, importance weights, PPO epochs.

All log-probs here are of the target policy pi at temperature 1. The behaviour
policy mu (tempered, per position) enters only through the importance weight
w = min(pi_old / mu, C) computed once per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ead.objectives import (
    aggregate_loss,
    kl_penalty_k3,
    ppo_clip_loss,
    sequence_logprobs_and_entropy,
    truncated_importance_weights,
)
from ead.rollout import Rollouts


@dataclass(frozen=True)
class UpdateSettings:
    """The explicit scalars the update needs (built from the config once)."""

    clip_low: float
    clip_high: float
    loss_aggregation: str
    importance_correction: bool
    importance_level: str
    importance_mode: str
    importance_cap: float
    kl_coef: float
    entropy_coef: float
    ppo_epochs: int
    updates_per_epoch: int  # optimiser steps per pass over the batch: global batch / mini-batch size
    micro_batch_size: int
    max_grad_norm: float


def _micro_batches(rows: torch.Tensor, size: int) -> list[torch.Tensor]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


@torch.no_grad()
def old_policy_logprobs(model, rollouts: Rollouts, micro_batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi_old(y_t) and the entropy of pi_old at temperature 1, ``(B, T)`` each, float32."""
    logprobs, entropies = [], []
    for rows in _micro_batches(torch.arange(rollouts.response_ids.shape[0]), micro_batch_size):
        part = rollouts.select(rows)
        lp, ent = sequence_logprobs_and_entropy(model, part.prompt_ids, part.prompt_mask, part.response_ids,
                                                part.response_mask, with_entropy=True)
        logprobs.append(lp)
        entropies.append(ent)
    return torch.cat(logprobs), torch.cat(entropies)


def _share(aggregation: str, micro_mask: torch.Tensor, mini_mask: torch.Tensor) -> float:
    """Weight of a micro-batch's aggregated loss so that the micro-batches sum to the mini-batch loss."""
    if aggregation == "token_mean":
        return float(micro_mask.sum() / mini_mask.sum().clamp(min=1))
    return micro_mask.shape[0] / mini_mask.shape[0]


def ppo_update(
    model,
    optimizer: torch.optim.Optimizer,
    lr_scheduler,
    rollouts: Rollouts,
    loss_mask: torch.Tensor,
    advantages: torch.Tensor,
    old_logprobs: torch.Tensor,
    importance_weights: torch.Tensor | None,
    ref_model,
    settings: UpdateSettings,
    dist=None,
) -> dict[str, float]:
    """Run ``ppo_epochs`` passes of mini-batch updates over the batch; return averaged statistics.

    Args:
        rollouts: the batch, ``B`` rows.
        loss_mask: ``(B, T)`` tokens that enter the loss (response mask, minus overlong rows if filtered).
        advantages: ``(B,)`` one advantage per response.
        old_logprobs: ``(B, T)`` log pi_old at temperature 1.
        importance_weights: ``(B, T)`` TIS weights or None (on-policy).
        dist: :class:`~ead.training.distributed.Distributed` when running data-parallel; every
            process then makes the same number of optimiser steps (``updates_per_epoch``), whatever
            its number of rows, so the gradient all-reduces line up.
    """
    from ead.training.distributed import Distributed

    dist = dist or Distributed()
    device = next(model.parameters()).device
    model.train()
    num_rows = rollouts.response_ids.shape[0]
    totals = {"loss": 0.0, "pg_loss": 0.0, "kl_to_ref": 0.0, "entropy_bonus": 0.0, "clip_frac": 0.0,
              "ratio_mean": 0.0, "grad_norm": 0.0}
    updates = 0
    for _ in range(settings.ppo_epochs):
        order = torch.randperm(num_rows)  # global torch RNG: part of the checkpointed state
        for mini_rows in torch.tensor_split(order, settings.updates_per_epoch):
            # A process left with no rows still runs one zero-weighted row so DDP's all-reduce happens.
            empty = len(mini_rows) == 0
            mini_rows = order[:1] if empty else mini_rows
            optimizer.zero_grad(set_to_none=True)
            mini_mask = loss_mask[mini_rows]
            stats = {"loss": 0.0, "pg_loss": 0.0, "kl_to_ref": 0.0, "entropy_bonus": 0.0, "clip_frac": 0.0, "ratio_mean": 0.0}
            micro_batches = _micro_batches(mini_rows, settings.micro_batch_size)
            for micro_index, rows in enumerate(micro_batches):
                part = rollouts.select(rows)
                mask = loss_mask[rows].to(device).float() * (0.0 if empty else 1.0)  # (b, T)
                logprobs, entropy = sequence_logprobs_and_entropy(
                    model, part.prompt_ids, part.prompt_mask, part.response_ids, part.response_mask,
                    with_entropy=settings.entropy_coef > 0)
                weights = importance_weights[rows].to(device) if importance_weights is not None else None
                per_token, pg_stats = ppo_clip_loss(logprobs, old_logprobs[rows].to(device), advantages[rows].to(device),
                                                    mask, settings.clip_low, settings.clip_high, weights)
                pg_loss = aggregate_loss(per_token, mask, settings.loss_aggregation)
                loss = pg_loss
                if ref_model is not None and settings.kl_coef > 0:
                    with torch.no_grad():
                        ref_logprobs, _ = sequence_logprobs_and_entropy(
                            ref_model, part.prompt_ids, part.prompt_mask, part.response_ids, part.response_mask)
                    kl = aggregate_loss(kl_penalty_k3(logprobs, ref_logprobs), mask, settings.loss_aggregation)
                    loss = loss + settings.kl_coef * kl
                    stats["kl_to_ref"] += float(kl.detach()) * _share(settings.loss_aggregation, mask, mini_mask)
                if entropy is not None:
                    entropy_term = aggregate_loss(entropy, mask, settings.loss_aggregation)
                    loss = loss - settings.entropy_coef * entropy_term
                    stats["entropy_bonus"] += float(entropy_term.detach()) * _share(settings.loss_aggregation, mask, mini_mask)
                share = _share(settings.loss_aggregation, mask, mini_mask)
                with dist.no_sync(model, last_micro_batch=micro_index == len(micro_batches) - 1):
                    dist.backward(loss * share)
                tokens = mask.sum().clamp(min=1)
                stats["loss"] += float(loss.detach()) * share
                stats["pg_loss"] += float(pg_loss.detach()) * share
                stats["clip_frac"] += float((pg_stats["clipped"] * mask).sum() / tokens) * len(rows) / len(mini_rows)
                stats["ratio_mean"] += float((pg_stats["ratio"] * mask).sum() / tokens) * len(rows) / len(mini_rows)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            updates += 1
            for key, value in stats.items():
                totals[key] += value
            totals["grad_norm"] += float(grad_norm)
    return {f"policy/{k}": v / max(updates, 1) for k, v in totals.items()} | {"policy/updates": float(updates)}


def importance_and_drift(
    old_logprobs: torch.Tensor,
    behaviour_logprobs: torch.Tensor,
    mask: torch.Tensor,
    settings: UpdateSettings,
) -> tuple[torch.Tensor | None, dict[str, float]]:
    """TIS weights (None when the correction is off) and the drift statistics, always logged.

    ``kl_behaviour_to_pi`` is the k1 estimate of KL(mu || pi_old) from samples of mu:
    the mean over tokens of ``log mu - log pi_old``.
    """
    weights, stats = truncated_importance_weights(old_logprobs, behaviour_logprobs, mask,
                                                  cap=settings.importance_cap, level=settings.importance_level,
                                                  mode=settings.importance_mode)
    tokens = mask.float().sum().clamp(min=1)
    stats = {f"is/{k.removeprefix('is_')}": v for k, v in stats.items()}
    stats["is/kl_behaviour_to_pi"] = float(((behaviour_logprobs - old_logprobs) * mask).sum() / tokens)
    return (weights if settings.importance_correction else None), stats
