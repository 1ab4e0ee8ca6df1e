"""SIREN's two pieces (arXiv 2509.25133): nucleus entropy and each response's top-entropy tokens.

SIREN regularises entropy only where it is informative: over the top-p nucleus of each next-token
distribution (the long tail of a large vocabulary would otherwise dominate the entropy), and only
at each response's highest-entropy positions. The loss term itself is
:func:`ead.objectives.pipeline.siren_term`; the anchor (the initial masked entropy) is trainer state.
"""

from __future__ import annotations

import math

import torch


def nucleus_entropy(logits: torch.Tensor, top_p: float = 0.8) -> torch.Tensor:
    """Entropy of ``softmax(logits)`` restricted to its top-p nucleus and renormalised, ``(..., V) -> (...)``.

    The nucleus is the smallest set of most likely tokens whose mass reaches ``top_p`` (a token is
    kept when the mass *before* it is below ``top_p``: the most likely token always is). Which tokens
    are kept is decided without gradient; the entropy is differentiable in the kept logits.
    """
    z = logits.float()
    with torch.no_grad():
        probs = torch.softmax(z, dim=-1)
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        keep_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) < top_p
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    masked = z.masked_fill(~keep, float("-inf"))
    log_q = torch.log_softmax(masked, dim=-1)
    q = log_q.exp()
    return -(q * torch.where(keep, log_q, torch.zeros_like(log_q))).sum(dim=-1)


def top_share_per_row(values: torch.Tensor, mask: torch.Tensor, share: float = 0.2) -> torch.Tensor:
    """Each row's top ``ceil(share * n_row)`` real tokens by ``values`` (ties kept), ``(B, T)`` bool."""
    real = mask.bool()
    counts = real.sum(dim=1)  # (B,)
    budget = torch.clamp(torch.ceil(share * counts.float()).long(), min=1)  # (B,)
    ranked = torch.where(real, values.float(), torch.full_like(values.float(), -math.inf))
    sorted_values = torch.sort(ranked, dim=1, descending=True).values  # (B, T)
    threshold = sorted_values.gather(1, (budget - 1).clamp(max=values.shape[1] - 1).unsqueeze(1))  # (B, 1)
    return real & (ranked >= threshold) & (counts > 0).unsqueeze(1)
