"""Phase 2 of a step: pi_old at temperature 1, importance weights, PPO epochs.

All log-probs here are of the target policy pi at temperature 1. The behaviour
policy mu (tempered, per position) enters only through the importance weight
w = min(pi_old / mu, C) computed once per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Callable

import torch

from ead.objectives import sequence_logprobs_and_entropy, truncated_importance_weights
from ead.objectives.advantages import AdvantageParams
from ead.objectives.pipeline import LossSettings, MiniBatchTotals, TokenInputs, micro_batch_loss, required_selectors
from ead.objectives.policy_loss import aggregation_units
from ead.objectives.selectors import SELECTORS, FlatTokens, SelectionParams, covariance_stats
from ead.objectives.siren import nucleus_entropy, top_share_per_row
from ead.rollout import Rollouts
from ead.sampling import eval_mode


@dataclass(frozen=True)
class UpdateSettings:
    """The explicit scalars the update needs (built from the config once, see :func:`update_settings`)."""

    loss: LossSettings
    selection: SelectionParams
    importance_correction: bool
    importance_level: str
    importance_mode: str
    importance_cap: float
    ppo_epochs: int
    updates_per_epoch: int  # optimiser steps per pass over the batch: global batch / mini-batch size
    micro_batch_size: int
    max_grad_norm: float
    group_by_length: bool = False  # micro-batches of similar response length (train.group_by_length)
    siren_top_p: float = 0.8
    siren_token_share: float = 0.2

    def for_step(self, entropy_coef: float, siren_anchor: float | None) -> "UpdateSettings":
        """This step's settings: the adaptive entropy coefficient and SIREN's anchor are trainer state."""
        return replace(self, loss=replace(self.loss, entropy_coef=entropy_coef, siren_anchor=siren_anchor))


def update_settings(config) -> UpdateSettings:
    """:class:`UpdateSettings` from a :class:`~ead.training.config.TrainConfig` (the one place it is built)."""
    algo, optim = config.algorithm, config.train
    loss = LossSettings(
        policy_loss=algo.policy_loss, clip_low=algo.clip_low, clip_high=algo.clip_high,
        loss_aggregation=algo.loss_aggregation, pg_tokens=algo.pg_tokens, kl_coef=algo.kl_coef,
        entropy_coef=algo.entropy_coef, kl_cov_coef=algo.kl_cov_coef, siren_coef=algo.siren_coef if algo.siren else 0.0)
    selection = SelectionParams(clip_cov_ratio=algo.clip_cov_ratio, clip_cov_lb=algo.clip_cov_lb,
                                clip_cov_ub=algo.clip_cov_ub, kl_cov_ratio=algo.kl_cov_ratio,
                                top_entropy_rho=algo.top_entropy_rho)
    return UpdateSettings(
        loss=loss, selection=selection, importance_correction=algo.importance_correction,
        importance_level=algo.importance_level, importance_mode=algo.importance_mode,
        importance_cap=algo.importance_cap, ppo_epochs=optim.ppo_epochs,
        updates_per_epoch=-(-optim.prompts_per_step * optim.samples_per_prompt // optim.mini_batch_size),
        micro_batch_size=optim.micro_batch_size, max_grad_norm=optim.max_grad_norm, group_by_length=optim.group_by_length,
        siren_top_p=algo.siren_top_p, siren_token_share=algo.siren_token_share)


def _micro_batches(rows: torch.Tensor, size: int) -> list[torch.Tensor]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


@torch.no_grad()
def old_policy_logprobs(model, rollouts: Rollouts, micro_batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi_old(y_t) and the entropy of pi_old at temperature 1, ``(B, T)`` each, float32, without dropout."""
    logprobs, entropies = [], []
    with eval_mode(model):
        for rows in _micro_batches(torch.arange(rollouts.response_ids.shape[0]), micro_batch_size):
            part = rollouts.select(rows)
            lp, ent = sequence_logprobs_and_entropy(model, part.prompt_ids, part.prompt_mask, part.response_ids,
                                                    part.response_mask, with_entropy=True)
            logprobs.append(lp)
            entropies.append(ent)
    return torch.cat(logprobs), torch.cat(entropies)


def batch_selections(
    settings: UpdateSettings,
    loss_mask: torch.Tensor,
    advantages: torch.Tensor,
    old_logprobs: torch.Tensor,
    old_entropy: torch.Tensor | None,
    dist,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The step's batch-global token selections as ``(B, T)`` masks, and their statistics.

    Decided over every real token of the batch, across processes (each process's tokens are
    gathered in rank order, every process computes the same selection and keeps its own slice),
    before any mini/micro-batching, so neither micro-batch size nor process count changes it.
    """
    names = required_selectors(settings.loss)
    if not names:
        return {}, {}
    real = loss_mask.bool()  # (B, T)
    local = FlatTokens(advantages=advantages.float().unsqueeze(1).expand_as(old_logprobs)[real].cpu(),
                       logprobs=old_logprobs.float()[real].cpu(),
                       entropy=None if old_entropy is None else old_entropy.float()[real].cpu())
    gathered = dist.gather_objects(local)
    counts = [len(part.logprobs) for part in gathered]
    start = sum(counts[: dist.rank])
    everyone = FlatTokens(advantages=torch.cat([p.advantages for p in gathered]),
                          logprobs=torch.cat([p.logprobs for p in gathered]),
                          entropy=None if local.entropy is None else torch.cat([p.entropy for p in gathered]))
    # One seed for every process (rank 0's draw from the checkpointed global RNG): same random picks.
    seed = dist.gather_objects(int(torch.randint(0, 2**62, (1,))))[0]
    generator = torch.Generator().manual_seed(seed)
    selections, stats = {}, covariance_stats(everyone)
    for name in names:
        chosen = SELECTORS[name](everyone, settings.selection, generator)  # (N_all,)
        mask = torch.zeros_like(real)
        mask[real] = chosen[start : start + counts[dist.rank]].to(mask.device)
        selections[name] = mask
        stats[f"select/{name}_frac"] = float(chosen.float().mean()) if len(chosen) else 0.0
    return selections, stats


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
    old_entropy: torch.Tensor | None = None,
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
        old_entropy: ``(B, T)`` entropy of pi_old, for the entropy-based selections (80/20).
    """
    from ead.training.distributed import Distributed

    dist = dist or Distributed()
    device = next(model.parameters()).device
    step = prepare_step(model, rollouts, loss_mask, advantages, old_logprobs, old_entropy, settings, dist)
    siren = step.loss.siren_coef > 0
    needs_entropy = step.loss.entropy_coef > 0 or siren
    model.train()
    num_rows = rollouts.response_ids.shape[0]
    totals: dict[str, float] = {}
    updates = 0
    for _ in range(settings.ppo_epochs):
        order = torch.randperm(num_rows)  # global torch RNG: part of the checkpointed state
        for mini_rows in torch.tensor_split(order, settings.updates_per_epoch):
            # A process left with no rows still runs one zero-weighted row so DDP's all-reduce happens.
            empty = len(mini_rows) == 0
            mini_rows = order[:1] if empty else mini_rows
            optimizer.zero_grad(set_to_none=True)
            mini_mask = loss_mask[mini_rows]
            mini_totals = MiniBatchTotals(units=aggregation_units(mini_mask, settings.loss.loss_aggregation),
                                          tokens=float(mini_mask.sum()))
            stats: dict[str, float] = {}
            if settings.group_by_length:  # each micro-batch is padded to its own longest row: sort to waste less
                mini_rows = mini_rows[torch.argsort(rollouts.response_mask[mini_rows].sum(dim=1), stable=True)]
            micro_batches = _micro_batches(mini_rows, settings.micro_batch_size)
            for micro_index, rows in enumerate(micro_batches):
                part = rollouts.select(rows)
                logprobs, entropy = sequence_logprobs_and_entropy(
                    model, part.prompt_ids, part.prompt_mask, part.response_ids, part.response_mask,
                    with_entropy=needs_entropy, entropy_fn=step.entropy_fn)
                ref_logprobs = None
                if ref_model is not None and settings.loss.kl_coef > 0:
                    with torch.no_grad():
                        ref_logprobs, _ = sequence_logprobs_and_entropy(
                            ref_model, part.prompt_ids, part.prompt_mask, part.response_ids, part.response_mask)
                inputs = TokenInputs(
                    logprobs=logprobs, old_logprobs=old_logprobs[rows].to(device),
                    advantages=advantages[rows].to(device),
                    mask=loss_mask[rows].to(device).float() * (0.0 if empty else 1.0),  # (b, T)
                    importance_weights=None if importance_weights is None else importance_weights[rows].to(device),
                    entropy=None if siren else entropy, nucleus_entropy=entropy if siren else None,
                    ref_logprobs=ref_logprobs,
                    selections={name: sel[rows].to(device) for name, sel in step.selections.items()})
                loss, micro_stats = micro_batch_loss(inputs, step.loss, mini_totals)
                with dist.no_sync(model, last_micro_batch=micro_index == len(micro_batches) - 1):
                    dist.backward(loss)
                for key, value in micro_stats.items():
                    stats[key] = stats.get(key, 0.0) + value
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            updates += 1
            stats["grad_norm"] = float(grad_norm)
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value
    averaged = {f"policy/{k}": v / max(updates, 1) for k, v in totals.items()}
    return averaged | step.stats | {"policy/updates": float(updates),
                                         "policy/entropy_coef": settings.loss.entropy_coef}


@dataclass
class StepObjective:
    """What the objective needs that is decided once per step over the whole batch, before any update."""

    loss: LossSettings
    selections: dict[str, torch.Tensor]
    """Batch-global ``(B, T)`` token masks by name."""
    entropy_fn: Callable[[torch.Tensor], torch.Tensor] | None
    """What the update computes as "entropy" per position (SIREN: the nucleus entropy); None = full entropy."""
    stats: dict[str, float]


def prepare_step(model, rollouts: Rollouts, loss_mask: torch.Tensor, advantages: torch.Tensor,
                 old_logprobs: torch.Tensor, old_entropy: torch.Tensor | None, settings: UpdateSettings,
                 dist) -> StepObjective:
    """The step's batch-global selections and, for SIREN, its mask, batch entropy and anchor."""
    selections, stats = batch_selections(settings, loss_mask, advantages, old_logprobs, old_entropy, dist)
    loss = settings.loss
    entropy_fn = None
    if loss.siren_coef > 0:
        selections["siren"], masked_entropy = siren_reference(model, rollouts, loss_mask, settings, dist)
        anchor = masked_entropy if loss.siren_anchor is None else loss.siren_anchor  # first step: the anchor
        loss = replace(loss, siren_anchor=anchor, siren_batch_entropy=masked_entropy)
        stats |= {"siren/entropy_masked": masked_entropy, "siren/anchor": anchor}
        entropy_fn = partial(nucleus_entropy, top_p=settings.siren_top_p)
    return StepObjective(loss=loss, selections=selections, entropy_fn=entropy_fn, stats=stats)


@torch.no_grad()
def siren_reference(model, rollouts: Rollouts, loss_mask: torch.Tensor, settings: UpdateSettings,
                    dist) -> tuple[torch.Tensor, float]:
    """SIREN's ``(B, T)`` token mask (each response's top share by nucleus entropy of pi_old) and the
    batch's mean nucleus entropy over it, averaged over every process's masked tokens."""
    entropy_fn = partial(nucleus_entropy, top_p=settings.siren_top_p)
    parts = []
    for rows in _micro_batches(torch.arange(rollouts.response_ids.shape[0]), settings.micro_batch_size):
        part = rollouts.select(rows)
        _, h = sequence_logprobs_and_entropy(model, part.prompt_ids, part.prompt_mask, part.response_ids,
                                             part.response_mask, with_entropy=True, entropy_fn=entropy_fn)
        parts.append(h.cpu())
    entropy = torch.cat(parts)  # (B, T)
    mask = top_share_per_row(entropy, loss_mask.cpu(), settings.siren_token_share)
    totals = dist.gather_objects((float((entropy * mask).sum()), float(mask.sum())))
    masked_mean = sum(t[0] for t in totals) / max(sum(t[1] for t in totals), 1.0)
    return mask.to(loss_mask.device), masked_mean


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


def advantage_params(config) -> AdvantageParams:
    """:class:`~ead.objectives.advantages.AdvantageParams` from a TrainConfig."""
    return AdvantageParams(w_reinforce_lambda=config.algorithm.w_reinforce_lambda, pass_k=config.algorithm.pass_k)
