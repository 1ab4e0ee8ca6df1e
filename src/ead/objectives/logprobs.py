"""Token log-probabilities and entropies from a causal LM, in float32.

The model may run in bf16; everything here upcasts logits before the softmax.
Full-vocabulary tensors exist for one micro-batch at a time only.
"""

from __future__ import annotations

from typing import Callable

import torch


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of ``softmax(logits)`` along the last axis, ``H = logsumexp(z) - sum p z`` (float32)."""
    z = logits.float()
    log_z = torch.logsumexp(z, dim=-1, keepdim=True)
    probs = torch.exp(z - log_z)
    return (log_z.squeeze(-1) - (probs * z).sum(dim=-1))


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as Hugging Face ``generate`` computes them."""
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)


def sequence_logprobs_and_entropy(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    temperatures: torch.Tensor | None = None,
    with_entropy: bool = False,
    position_chunk: int = 256,
    entropy_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of every response token under ``model`` (optionally at per-token temperatures).

    Args:
        prompt_ids, prompt_mask: ``(B, P)`` left-padded prompts.
        response_ids, response_mask: ``(B, T)`` right-padded responses.
        temperatures: ``(B, T)`` per-token temperatures, or None for temperature 1
            (the target policy pi).
        with_entropy: also return the entropy of the (tempered) distribution at each position.
        position_chunk: response positions upcast to float32 at a time (bounds peak memory).
        entropy_fn: ``(..., V)`` float32 logits -> ``(...)``, in place of the full entropy (e.g. SIREN's
            nucleus entropy); None = :func:`entropy_from_logits`.

    Returns:
        ``(logprobs (B, T), entropy (B, T) or None)``, float32, zero where ``response_mask`` is 0.
    """
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)  # (B, P + T)
    attention_mask = torch.cat([prompt_mask, response_mask], dim=1).long()
    position_ids = position_ids_from_mask(attention_mask)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
    if temperatures is not None:
        # Padding carries tau = 0; 1 there instead keeps z / tau finite, so no inf/NaN reaches the
        # backward pass through the masked-out positions (torch.where masks values, not gradients).
        temperatures = torch.where(response_mask.bool(), temperatures.float(), torch.ones_like(temperatures.float()))
    width = prompt_ids.shape[1]
    # logits at position i predict token i + 1: response token j is predicted at P - 1 + j.
    logits = logits[:, width - 1 : -1, :]  # (B, T, V), model dtype
    token_logprobs, entropies = [], []
    # float32 copies of (B, chunk, V) at a time: a 150k vocabulary never needs a (B, T, V) float32 tensor.
    for start in range(0, logits.shape[1], position_chunk):
        z = logits[:, start : start + position_chunk, :].float()  # (B, c, V)
        if temperatures is not None:
            z = z / temperatures[:, start : start + position_chunk].unsqueeze(-1).float()
        log_normaliser = torch.logsumexp(z, dim=-1)  # (B, c)
        picked = z.gather(-1, response_ids[:, start : start + position_chunk].unsqueeze(-1)).squeeze(-1)
        token_logprobs.append(picked - log_normaliser)
        if with_entropy:
            entropies.append((entropy_fn or entropy_from_logits)(z))
    mask = response_mask.bool()
    logprobs = torch.cat(token_logprobs, dim=1)  # (B, T)
    logprobs = torch.where(mask, logprobs, torch.zeros_like(logprobs))
    entropy = None
    if with_entropy:
        entropy = torch.where(mask, torch.cat(entropies, dim=1), torch.zeros_like(logprobs))
    return logprobs, entropy
