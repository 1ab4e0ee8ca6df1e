"""Truncated importance sampling (TIS) for the off-policy gap EAD creates.

Rollouts are drawn from the tempered behaviour policy ``mu(y_t) =
softmax(z_t / tau_t)[y_t]`` while the policy being optimised is ``pi`` at
temperature 1. The PPO loss is multiplied by (EAD paper, Sec. 3.2; Yao et al.
2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training")::

    w = min(pi_old(y) / mu(y), C),     C = 2 by default

``level="token"`` uses one ratio per token (what the authors' code runs);
``level="sequence"`` uses the product over the response (the paper's appendix).
``mode="truncate"`` caps weights at ``C``; ``mode="mask"`` drops (weight 0) the
tokens or sequences whose ratio exceeds ``C`` instead.
"""

from __future__ import annotations

import torch

# exp(20) ~ 4.9e8: far above any sensible cap, and keeps exp() finite in float32.
_MAX_LOG_RATIO = 20.0


def truncated_importance_weights(
    old_logprobs: torch.Tensor,
    behaviour_logprobs: torch.Tensor,
    mask: torch.Tensor,
    cap: float = 2.0,
    level: str = "token",
    mode: str = "truncate",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Importance weights ``min(pi_old / mu, C)`` per response token.

    Args:
        old_logprobs: ``(B, T)`` log pi_old(y_t) at temperature 1 (no grad needed).
        behaviour_logprobs: ``(B, T)`` log mu(y_t) under the distribution each token was drawn from.
        mask: ``(B, T)`` 1 for real response tokens, 0 for padding after EOS.
        cap: ``C`` > 0.
        level: ``"token"`` or ``"sequence"``.
        mode: ``"truncate"`` or ``"mask"``.

    Returns:
        ``(weights, stats)``: weights ``(B, T)`` float32, zero on padding, detached;
        stats has the mean raw ratio, mean weight and the fraction truncated (or masked),
        each over real tokens.
    """
    if level not in ("token", "sequence"):
        raise ValueError(f"importance level must be 'token' or 'sequence', got {level!r}")
    if mode not in ("truncate", "mask"):
        raise ValueError(f"importance mode must be 'truncate' or 'mask', got {mode!r}")
    if not cap > 0:
        raise ValueError(f"importance cap C must be > 0, got {cap!r}")
    mask = mask.to(torch.float32)
    # Padding may hold -inf or NaN log-probs; zero them before any arithmetic.
    log_ratio = torch.where(
        mask > 0, old_logprobs.detach().float() - behaviour_logprobs.detach().float(), torch.zeros_like(mask)
    )
    log_ratio = torch.nan_to_num(log_ratio, nan=0.0, posinf=_MAX_LOG_RATIO, neginf=-_MAX_LOG_RATIO)
    if level == "sequence":
        log_ratio = (log_ratio * mask).sum(dim=1, keepdim=True).expand_as(mask)  # (B, T), constant per row
    ratio = torch.exp(log_ratio.clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO))  # (B, T)
    over_cap = ratio > cap
    if mode == "truncate":
        weights = torch.clamp(ratio, max=cap)
    else:
        weights = torch.where(over_cap, torch.zeros_like(ratio), ratio)
    weights = weights * mask
    n_tokens = mask.sum().clamp(min=1.0)
    stats = {
        "is_ratio_mean": float((ratio * mask).sum() / n_tokens),
        "is_weight_mean": float(weights.sum() / n_tokens),
        "is_truncated_frac": float((over_cap.float() * mask).sum() / n_tokens),
    }
    return weights, stats
