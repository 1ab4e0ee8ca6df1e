"""Optional regularisers: KL to a reference policy and the entropy bonus."""

from __future__ import annotations

import torch


def kl_penalty_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token KL(pi || pi_ref) estimate, Schulman's "k3" (http://joschu.net/blog/kl-approx.html).

    ``k3 = exp(ref - logp) - (ref - logp) - 1``: unbiased for samples from pi,
    always >= 0, and lower variance than ``logp - ref``. Used by GRPO
    (DeepSeekMath, Eq. 4). Returns ``(B, T)``; mask and aggregate with the loss.
    """
    delta = (ref_logprobs.float() - logprobs.float()).clamp(-20.0, 20.0)
    return torch.exp(delta) - delta - 1.0


def adaptive_entropy_coef(coef: float, entropy: float, target: float, delta: float) -> float:
    """Adaptive entropy control (Skywork-OR1, He et al. 2025, arXiv 2505.22312, "adaptive entropy control").

    ``c_{s+1} = c_s + delta`` if the batch's mean entropy is below ``target``, else ``c_s - delta``,
    never below 0: the bonus grows while entropy is too low and fades once it is high enough.
    Plain floats in and out (the coefficient is checkpointed as a float).
    """
    return float(max(coef + delta if entropy < target else coef - delta, 0.0))
