"""Token log-probabilities and entropies from a causal LM, in float32, without (B, T, V) logits.

The model may run in bf16; everything here upcasts logits before the softmax. For the
decoder-only families in :data:`HIDDEN_STATE_MODEL_TYPES` the LM head is applied by this module,
not by the model: the forward returns final hidden states ``(B, L, H)``, the real response
tokens (``response_mask`` = 1) are gathered into ``(N, H)``, and the head runs over chunks of
``token_chunk`` tokens at a time. Peak memory is then O(B * L * H) for the hidden states plus
one ``(token_chunk, V)`` slab, never ``(B, T, V)`` (at V = 152k, B = 256 and T = 3.2k that
tensor alone would be ~250 GB in bf16). Under autograd each chunk is checkpointed: only its
``(chunk, H)`` input is saved and its logits are recomputed in the backward pass.

Padding costs nothing where it can be cut: columns that are padding in every row of the
micro-batch (left of the longest prompt, right of the longest response) are sliced off before
the forward, and padded response positions never reach the LM head.

Other models (a head with soft-capping or scaling, unknown architectures) take the plain path:
full logits from the model, upcast in chunks of positions.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.checkpoint import checkpoint

HIDDEN_STATE_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral")
"""Architectures whose logits are exactly ``lm_head(final hidden state)`` (no soft-cap, no scale)."""


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of ``softmax(logits)`` along the last axis, ``H = logsumexp(z) - sum p z`` (float32)."""
    z = logits.float()
    log_z = torch.logsumexp(z, dim=-1, keepdim=True)
    probs = torch.exp(z - log_z)
    return (log_z.squeeze(-1) - (probs * z).sum(dim=-1))


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as Hugging Face ``generate`` computes them."""
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)  # DDP / accelerate wrappers keep the model in .module


def lm_head_applied_here(model: torch.nn.Module) -> bool:
    """Whether this module can apply ``model``'s LM head itself (see the module docstring)."""
    inner = _unwrapped(model)
    config = getattr(inner, "config", None)
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    return (config is not None and config.model_type in HIDDEN_STATE_MODEL_TYPES
            and isinstance(head, torch.nn.Linear) and not getattr(config, "final_logit_softcapping", None))


def _final_hidden_states(model, input_ids, attention_mask, position_ids) -> tuple[torch.Tensor, torch.nn.Linear]:
    """``(B, L, H)`` hidden states after the final norm, through ``model``'s own forward (so a DDP wrapper
    still sees the call), with the LM head swapped for the identity for the duration of the call."""
    inner = _unwrapped(model)
    head = inner.get_output_embeddings()
    inner.set_output_embeddings(torch.nn.Identity())
    try:
        hidden = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                       use_cache=False).logits  # (B, L, H): the identity "head" returns its input
    finally:
        inner.set_output_embeddings(head)
    return hidden, head


def _head_logprobs(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, tokens: torch.Tensor,
                   temperatures: torch.Tensor | None, with_entropy: bool,
                   entropy_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(token) and entropy for ``(n, H)`` hidden states through the head, float32, ``(n,)`` each."""
    z = torch.nn.functional.linear(hidden, weight, bias).float()  # (n, V)
    if temperatures is not None:
        z = z / temperatures.unsqueeze(-1).float()
    log_normaliser = torch.logsumexp(z, dim=-1)  # (n,)
    picked = z.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - log_normaliser
    entropy = (entropy_fn or entropy_from_logits)(z) if with_entropy else torch.zeros_like(picked)
    return picked, entropy


def sequence_logprobs_and_entropy(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    temperatures: torch.Tensor | None = None,
    with_entropy: bool = False,
    token_chunk: int = 512,
    entropy_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of every response token under ``model`` (optionally at per-token temperatures).

    Args:
        prompt_ids, prompt_mask: ``(B, P)`` left-padded prompts.
        response_ids, response_mask: ``(B, T)`` right-padded responses.
        temperatures: ``(B, T)`` per-token temperatures, or None for temperature 1
            (the target policy pi).
        with_entropy: also return the entropy of the (tempered) distribution at each position.
        token_chunk: tokens whose ``(chunk, V)`` float32 logits exist at a time (bounds peak memory).
        entropy_fn: ``(..., V)`` float32 logits -> ``(...)``, in place of the full entropy (e.g. SIREN's
            nucleus entropy); None = :func:`entropy_from_logits`.

    Returns:
        ``(logprobs (B, T), entropy (B, T) or None)``, float32, zero where ``response_mask`` is 0.
    """
    rows, width = prompt_ids.shape
    length = response_ids.shape[1]
    # Slice off columns that are padding in every row: left of the longest prompt, right of the longest response.
    real_prompt_columns = prompt_mask.bool().any(dim=0).nonzero()
    lead = min(int(real_prompt_columns[0]) if len(real_prompt_columns) else width - 1, width - 1)
    real_response_columns = response_mask.bool().any(dim=0).nonzero()
    used = max(1, int(real_response_columns[-1]) + 1 if len(real_response_columns) else 1)
    input_ids = torch.cat([prompt_ids[:, lead:], response_ids[:, :used]], dim=1)  # (B, P' + T')
    attention_mask = torch.cat([prompt_mask[:, lead:], response_mask[:, :used]], dim=1).long()
    position_ids = position_ids_from_mask(attention_mask)
    start = width - lead - 1  # logits at position i predict token i + 1: response token j sits at start + j
    mask = response_mask[:, :used].bool()  # (B, T')
    temps = None if temperatures is None else temperatures[:, :used]
    if temps is not None:
        # Padding carries tau = 0; 1 there instead keeps z / tau finite, so no inf/NaN reaches the
        # backward pass through the masked-out positions (torch.where masks values, not gradients).
        temps = torch.where(mask, temps.float(), torch.ones_like(temps, dtype=torch.float32))

    if lm_head_applied_here(model):
        hidden, head = _final_hidden_states(model, input_ids, attention_mask, position_ids)
        hidden = hidden[:, start : start + used][mask]  # (N, H) the real response tokens only
        tokens = response_ids[:, :used][mask]  # (N,)
        token_temps = None if temps is None else temps[mask]  # (N,)
        parts_lp, parts_ent = [], []
        for first in range(0, hidden.shape[0], token_chunk):
            chunk = slice(first, first + token_chunk)
            args = (hidden[chunk], head.weight, head.bias, tokens[chunk],
                    None if token_temps is None else token_temps[chunk], with_entropy, entropy_fn)
            if torch.is_grad_enabled() and hidden.requires_grad:  # save (chunk, H), recompute (chunk, V) later
                lp, ent = checkpoint(_head_logprobs, *args, use_reentrant=False)
            else:
                lp, ent = _head_logprobs(*args)
            parts_lp.append(lp)
            parts_ent.append(ent)
        flat_lp = torch.cat(parts_lp) if parts_lp else hidden.new_zeros(0, dtype=torch.float32)
        flat_ent = torch.cat(parts_ent) if parts_ent else flat_lp
        logprobs = torch.zeros((rows, used), dtype=torch.float32, device=hidden.device).masked_scatter(mask, flat_lp)
        entropy = None
        if with_entropy:
            entropy = torch.zeros_like(logprobs).masked_scatter(mask, flat_ent)
    else:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
        logits = logits[:, start : start + used, :]  # (B, T', V), model dtype
        position_chunk = max(1, token_chunk // rows)
        token_logprobs, entropies = [], []
        # float32 copies of (B, chunk, V) at a time: never a (B, T, V) float32 tensor.
        for first in range(0, used, position_chunk):
            z = logits[:, first : first + position_chunk, :].float()  # (B, c, V)
            if temps is not None:
                z = z / temps[:, first : first + position_chunk].unsqueeze(-1).float()
            log_normaliser = torch.logsumexp(z, dim=-1)  # (B, c)
            picked = z.gather(-1, response_ids[:, first : first + position_chunk].unsqueeze(-1)).squeeze(-1)
            token_logprobs.append(picked - log_normaliser)
            if with_entropy:
                entropies.append((entropy_fn or entropy_from_logits)(z))
        logprobs = torch.cat(token_logprobs, dim=1)  # (B, T')
        logprobs = torch.where(mask, logprobs, torch.zeros_like(logprobs))
        entropy = None
        if with_entropy:
            entropy = torch.where(mask, torch.cat(entropies, dim=1), torch.zeros_like(logprobs))
    if used < length:  # the sliced-off tail is padding: zeros, as promised
        logprobs = torch.nn.functional.pad(logprobs, (0, length - used))
        entropy = None if entropy is None else torch.nn.functional.pad(entropy, (0, length - used))
    return logprobs, entropy
