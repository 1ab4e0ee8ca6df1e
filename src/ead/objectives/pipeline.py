"""The per-token objective, assembled from registered parts.

    loss = aggregate(policy_loss * pg_tokens) + sum_r coef_r * aggregate(regulariser_r)

* a **policy loss** (:data:`POLICY_LOSSES`): per-token surrogate, TIS weight included; Clip-Cov and
  KL-Cov are policy losses that read a batch-global token selection;
* a **policy-gradient token selection** (:data:`PG_TOKEN_SELECTIONS`): which tokens carry the
  policy-gradient term at all (80/20 high-entropy tokens);
* **regularisers** (:data:`REGULARIZERS`): KL to the reference, entropy bonus, SIREN; each off at
  coefficient 0;
* one **aggregation** (:data:`~ead.objectives.policy_loss.LOSS_AGGREGATIONS`) for every term.

Advantage shaping happens before (``ead.objectives.advantages``), batch-global selections before
micro-batching (``ead.objectives.selectors``). A new method is one function, one registry entry and
one field of :class:`LossSettings`; the update loop never branches on a method's name.

Normalisation (micro-batching stays exact): :func:`micro_batch_loss` returns a micro-batch's
*share* of its mini-batch loss, ``aggregate(micro) * units(micro) / units(mini)`` where units are
tokens (token_mean) or responses (seq_mean_*). Summed over the micro-batches, loss and gradient
equal the loss of the mini-batch computed in one piece.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ead.objectives.policy_loss import aggregate_loss, aggregation_units, ppo_clip_loss
from ead.objectives.regularizers import kl_penalty_k3


@dataclass(frozen=True)
class LossSettings:
    """The explicit scalars of the objective (built once per step from the config)."""

    policy_loss: str = "ppo_clip"
    clip_low: float = 0.2
    clip_high: float = 0.2
    loss_aggregation: str = "seq_mean_token_mean"
    pg_tokens: str = "all"
    kl_coef: float = 0.0
    entropy_coef: float = 0.0
    kl_cov_coef: float = 1.0
    siren_coef: float = 0.0
    siren_anchor: float | None = None
    """SIREN: H_anchor, the masked nucleus entropy at the first step (None until it is measured)."""
    siren_batch_entropy: float = 0.0
    """SIREN: the masked entropy of pi_old over the whole batch (the linearisation point, see siren_term)."""


@dataclass
class TokenInputs:
    """One micro-batch's tensors, ``(b, T)`` unless said otherwise."""

    logprobs: torch.Tensor
    """log pi_theta(y_t) at temperature 1, with grad."""
    old_logprobs: torch.Tensor
    """log pi_old(y_t) at temperature 1."""
    advantages: torch.Tensor
    """``(b,)`` or ``(b, T)``."""
    mask: torch.Tensor
    """1 for tokens that enter the loss (response tokens, minus overlong-filtered rows)."""
    importance_weights: torch.Tensor | None = None
    """TIS weights min(pi_old / mu, C), or None (on-policy)."""
    entropy: torch.Tensor | None = None
    """Entropy of pi_theta per position, with grad (None when no part needs it)."""
    ref_logprobs: torch.Tensor | None = None
    """log pi_ref(y_t), None without a reference model."""
    selections: dict[str, torch.Tensor] = field(default_factory=dict)
    """Batch-global boolean token masks by selector name (ead.objectives.selectors.SELECTORS)."""
    nucleus_entropy: torch.Tensor | None = None
    """SIREN: entropy of pi_theta renormalised on its top-p nucleus, with grad."""


@dataclass(frozen=True)
class MiniBatchTotals:
    units: float
    """Aggregation units (tokens or responses) of the whole mini-batch."""
    tokens: float
    """Real loss tokens of the whole mini-batch (for token-level statistics)."""


# ----------------------------------------------------------------------------- policy losses
PolicyLossFn = Callable[[TokenInputs, LossSettings], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def ppo_clip_policy_loss(inputs: TokenInputs, settings: LossSettings) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-clip with clip-higher (ead.objectives.policy_loss.ppo_clip_loss)."""
    return ppo_clip_loss(inputs.logprobs, inputs.old_logprobs, inputs.advantages, inputs.mask,
                         settings.clip_low, settings.clip_high, inputs.importance_weights)


def clip_cov_policy_loss(inputs: TokenInputs, settings: LossSettings) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clip-Cov (Cui et al. 2025, arXiv 2505.22617, Sec. 4): PPO-clip with the gradient of the tokens
    in the ``clip_cov`` selection detached (their loss value stays, their gradient is 0)."""
    per_token, stats = ppo_clip_policy_loss(inputs, settings)
    selected = inputs.selections["clip_cov"].bool() & inputs.mask.bool()  # (b, T)
    per_token = torch.where(selected, per_token.detach(), per_token)
    return per_token, stats | {"cov_selected": selected.float()}


def kl_cov_policy_loss(inputs: TokenInputs, settings: LossSettings) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """KL-Cov (2505.22617): the *unclipped* surrogate ``-r_t A_t w_t`` plus
    ``kl_cov_coef * |logp_t - old_logp_t|`` on the tokens of the ``kl_cov`` selection.

    As in the paper's reference code there is no ratio clipping: the KL term on the high-covariance
    tokens is the trust region. |x| has gradient 0 at x = 0, so on the first update of a step
    (pi_theta = pi_old) the penalty adds no gradient; it acts from the second mini-batch or epoch on.
    """
    advantages = inputs.advantages.float()
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)  # (b, 1)
    log_ratio = (inputs.logprobs.float() - inputs.old_logprobs.detach().float()).clamp(-20.0, 20.0)
    ratio = torch.exp(log_ratio)  # (b, T)
    surrogate = -ratio * advantages
    if inputs.importance_weights is not None:
        surrogate = surrogate * inputs.importance_weights.detach().float()
    selected = inputs.selections["kl_cov"].bool() & inputs.mask.bool()
    penalty = settings.kl_cov_coef * log_ratio.abs() * selected.float()
    per_token = (surrogate + penalty) * inputs.mask.float()
    return per_token, {"ratio": ratio.detach(), "clipped": torch.zeros_like(ratio),
                       "cov_selected": selected.float(), "kl_cov_penalty": penalty.detach()}


@dataclass(frozen=True)
class PolicyLoss:
    fn: PolicyLossFn
    selector: str | None = None
    """The batch-global selection this loss reads (computed before micro-batching), if any."""


POLICY_LOSSES: dict[str, PolicyLoss] = {
    "ppo_clip": PolicyLoss(ppo_clip_policy_loss),
    "clip_cov": PolicyLoss(clip_cov_policy_loss, selector="clip_cov"),
    "kl_cov": PolicyLoss(kl_cov_policy_loss, selector="kl_cov"),
}

# Which tokens carry the policy-gradient term: name -> selector name (None = every loss token).
PG_TOKEN_SELECTIONS: dict[str, str | None] = {
    "all": None,
    "high_entropy": "high_entropy",  # 80/20 (Wang et al. 2025, arXiv 2506.01939)
}


def required_selectors(settings: LossSettings) -> list[str]:
    """The batch-global selections ``settings`` needs, computed once per step before micro-batching."""
    names = [POLICY_LOSSES[settings.policy_loss].selector, PG_TOKEN_SELECTIONS[settings.pg_tokens]]
    return [name for name in names if name is not None]


# ----------------------------------------------------------------------------- regularisers
# Each returns (coefficient, per-token term (b, T)) or None when off; the loss adds coef * aggregate(term)
# and logs aggregate(term) under the regulariser's name.
RegularizerFn = Callable[[TokenInputs, LossSettings], "tuple[float, torch.Tensor] | None"]


def kl_to_ref_term(inputs: TokenInputs, settings: LossSettings):
    """GRPO's KL penalty (DeepSeekMath, Eq. 4), k3 estimator: ``+kl_coef * KL(pi || pi_ref)``."""
    if settings.kl_coef <= 0 or inputs.ref_logprobs is None:
        return None
    return settings.kl_coef, kl_penalty_k3(inputs.logprobs, inputs.ref_logprobs)


def entropy_bonus_term(inputs: TokenInputs, settings: LossSettings):
    """Entropy bonus ``-entropy_coef * H(pi)`` (static, or the adaptive coefficient of this step)."""
    if settings.entropy_coef <= 0 or inputs.entropy is None:
        return None
    return -settings.entropy_coef, inputs.entropy


def siren_term(inputs: TokenInputs, settings: LossSettings):
    """SIREN (arXiv 2509.25133): ``+c * (H_masked - H_anchor)^2``.

    ``H_masked`` is the batch mean of the top-p nucleus entropy over the ``siren`` selection (each
    response's top 20% entropy tokens). A square of a batch mean does not split over micro-batches,
    so we use its gradient at pi_old, which is exact at the step's first update:
    ``d/dtheta c (H - a)^2 = 2c (H_old - a) dH/dtheta``, i.e. the per-token term
    ``2 (H_old - a) * H_nucleus * selected`` with coefficient c, aggregated like every other term.
    """
    if settings.siren_coef <= 0 or inputs.nucleus_entropy is None:
        return None
    selected = inputs.selections["siren"].float() * inputs.mask.float()  # (b, T)
    anchor = settings.siren_batch_entropy if settings.siren_anchor is None else settings.siren_anchor
    slope = 2.0 * (settings.siren_batch_entropy - anchor)
    return settings.siren_coef, slope * inputs.nucleus_entropy * selected


REGULARIZERS: dict[str, RegularizerFn] = {
    "kl_to_ref": kl_to_ref_term,
    "entropy_bonus": entropy_bonus_term,
    "siren": siren_term,
}


# ----------------------------------------------------------------------------- the objective
def micro_batch_loss(inputs: TokenInputs, settings: LossSettings,
                     totals: MiniBatchTotals) -> tuple[torch.Tensor, dict[str, float]]:
    """This micro-batch's share of the mini-batch loss, and its share of each statistic.

    Returns ``(loss, stats)``: summing both over a mini-batch's micro-batches gives the mini-batch
    loss and its statistics (token fractions over the mini-batch's tokens, loss terms aggregated).
    """
    mask = inputs.mask.float()  # (b, T)
    share = aggregation_units(mask, settings.loss_aggregation) / max(totals.units, 1.0)
    per_token, pg_stats = POLICY_LOSSES[settings.policy_loss].fn(inputs, settings)  # (b, T)
    pg_selection = PG_TOKEN_SELECTIONS[settings.pg_tokens]
    carries_pg = mask if pg_selection is None else inputs.selections[pg_selection].float() * mask
    pg_loss = aggregate_loss(per_token * carries_pg, mask, settings.loss_aggregation) * share
    loss = pg_loss
    stats = {"pg_loss": float(pg_loss.detach())}
    for name, regularizer in REGULARIZERS.items():
        term = regularizer(inputs, settings)
        if term is None:
            continue
        coef, per_token_term = term
        value = aggregate_loss(per_token_term, mask, settings.loss_aggregation) * share
        loss = loss + coef * value
        stats[name] = float(value.detach())
    stats["loss"] = float(loss.detach())
    tokens = max(totals.tokens, 1.0)

    def token_frac(per_token_stat: torch.Tensor) -> float:
        return float((per_token_stat.float() * mask).sum() / tokens)

    stats["clip_frac"] = token_frac(pg_stats["clipped"])
    stats["ratio_mean"] = token_frac(pg_stats["ratio"])
    stats["pg_token_frac"] = token_frac(carries_pg)
    if "cov_selected" in pg_stats:
        stats["cov_selected_frac"] = token_frac(pg_stats["cov_selected"])
    if "kl_cov_penalty" in pg_stats:
        stats["kl_cov_penalty"] = token_frac(pg_stats["kl_cov_penalty"])
    return loss, stats
