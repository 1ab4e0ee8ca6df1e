"""The ``lean`` engine: a hand-written decoding loop for small Llama/Qwen-family models.

For the small models this project trains on a CPU (the built-in ~1M-parameter Llama, 0.1-0.5B
checkpoints), Hugging Face ``generate`` spends most of a step outside the model: logits
processors, stopping criteria, and a KV cache that grows by ``torch.cat`` (every step copies the
whole cache). This loop keeps only what sampling needs:

* a **preallocated KV cache** (:class:`PreallocatedLayer`): one ``(B, heads, P + T, head_dim)``
  buffer per layer, written in place; attention reads a view of the filled part;
* per step: one forward of the new tokens, ``z / tau_t`` with ``tau_t`` from the same
  :class:`~ead.schedules.Schedule` every engine uses, the same top-k/top-p
  (:func:`ead.sampling.apply_top_k_top_p`), ``log_softmax``, one ``multinomial`` draw, and a
  gather of ``log mu(y_t)`` (plus ``log pi(y_t)`` and the entropy of pi at temperature 1 with
  ``capture_target``, from the same raw logits);
* **finished rows dropped**: once a quarter of the live rows have emitted EOS, the batch (cache,
  mask, positions) is compacted to the live rows; until then finished rows emit padding.

Same interface and same outputs as the ``hf`` engine (:class:`~ead.rollout.rollouts.Rollouts`,
built by :func:`ead.sampling.build_rollouts`), so the trainer and ``ead eval`` cannot tell them
apart; the tests check the token distribution (chi-square) and the recorded log-probs against
an independent full forward. Only the random stream differs from ``generate`` (rows are dropped,
so draws land on other rows): the same seed gives other, equally distributed, samples.

Models it cannot drive (other architectures, non-SDPA/eager attention) are reported by
:func:`supports`; ``sampling.engine: auto`` then falls back to ``hf``.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING

import torch
from transformers.cache_utils import Cache, DynamicLayer

from ead.rollout.rollouts import Rollouts

if TYPE_CHECKING:
    from ead.schedules import Schedule

__all__ = ["LEAN_MODEL_TYPES", "LeanEngine", "PreallocatedLayer", "lean_sample", "supports"]

LEAN_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral")
"""Decoder-only architectures whose forward takes ``past_key_values`` / ``position_ids`` the way this
loop drives them (RoPE positions from the mask, one cache layer per decoder layer)."""

COMPACT_FRACTION = 0.25
"""Compact the batch once this share of live rows has finished (each compaction copies the cache)."""


def supports(model) -> str | None:
    """None when the lean loop can drive ``model``, else why not (one line)."""
    config = getattr(model, "config", None)
    if config is None:
        return "not a Hugging Face model (no config)"
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder models are not supported"
    if config.model_type not in LEAN_MODEL_TYPES:
        return f"model_type {config.model_type!r} is not one of {list(LEAN_MODEL_TYPES)}"
    attention = getattr(config, "_attn_implementation", None) or "sdpa"
    if attention not in ("sdpa", "eager"):
        return f"attention implementation {attention!r} (lean drives 'sdpa' or 'eager')"
    return None


class PreallocatedLayer(DynamicLayer):
    """One layer's keys and values in a buffer sized for prompt + response, filled in place.

    ``keys``/``values`` are views of the filled prefix ``[:, :, :length]``, so attention never
    reads the empty tail and nothing is reallocated per token (``DynamicLayer`` concatenates).
    """

    def __init__(self, max_length: int):
        super().__init__()
        self.max_length = max_length
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        rows, heads = key_states.shape[:2]
        self._key_buffer = key_states.new_empty((rows, heads, self.max_length, key_states.shape[-1]))
        self._value_buffer = value_states.new_empty((rows, heads, self.max_length, value_states.shape[-1]))
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.max_length:
            raise RuntimeError(f"lean KV cache overflow: {end} > {self.max_length} positions")
        self._key_buffer[:, :, self.length : end] = key_states  # (b, h, n, d) written in place
        self._value_buffer[:, :, self.length : end] = value_states
        self.length = end
        self.keys = self._key_buffer[:, :, :end]  # (b, h, end, d) view
        self.values = self._value_buffer[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return self.max_length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self._key_buffer = self._key_buffer[indices]
            self._value_buffer = self._value_buffer[indices]
            self.keys = self._key_buffer[:, :, : self.length]
            self.values = self._value_buffer[:, :, : self.length]


def _preallocated_cache(model, max_length: int) -> Cache:
    return Cache(layers=[PreallocatedLayer(max_length) for _ in range(model.config.num_hidden_layers)])


@torch.no_grad()
def _sample_chunk(forward, model, tokenizer, prompts: list[str], schedule: Schedule, step: int, max_new_tokens: int,
                  top_k: int | None, top_p: float | None, capture_target: bool) -> Rollouts:
    from ead.sampling import apply_top_k_top_p, build_rollouts, eos_token_ids

    device = next(model.parameters()).device
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    prompt_ids = encoded["input_ids"].to(device)  # (B, P) left-padded
    prompt_mask = encoded["attention_mask"].to(device)  # (B, P)
    rows, width = prompt_ids.shape
    pad_id = tokenizer.pad_token_id
    eos = torch.tensor(eos_token_ids(tokenizer), device=device)
    taus = schedule.temperatures(torch.arange(max_new_tokens, device=device), step)  # (T,) float32, one per position

    attention = torch.zeros((rows, width + max_new_tokens), dtype=torch.long, device=device)  # (B, P + T)
    attention[:, :width] = prompt_mask
    first_position = prompt_mask.sum(dim=1)  # (B,) RoPE position of response token 0 (skips left padding)
    cache = _preallocated_cache(model, width + max_new_tokens)
    prompt_positions = (prompt_mask.cumsum(dim=1) - 1).clamp(min=0)  # (B, P), as generate computes them
    logits = forward(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=prompt_positions,
                     cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]  # (B, V)

    tokens = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=device)  # (B, T)
    behaviour = torch.zeros((rows, max_new_tokens), dtype=torch.float32, device=device)
    target = torch.zeros_like(behaviour) if capture_target else None
    entropy = torch.zeros_like(behaviour) if capture_target else None
    live = torch.arange(rows, device=device)  # (b,) original row of each row still in the batch
    done = torch.zeros(rows, dtype=torch.bool, device=device)  # (b,) finished rows not yet compacted away
    steps_taken = 0
    for t in range(max_new_tokens):
        raw = logits.float()  # (b, V)
        log_mu = torch.log_softmax(apply_top_k_top_p(raw / taus[t], top_k, top_p), dim=-1)  # (b, V)
        sampled = torch.multinomial(log_mu.exp(), 1)  # (b, 1)
        sampled = sampled.masked_fill(done.unsqueeze(1), pad_id)  # finished rows emit padding
        tokens[live, t] = sampled.squeeze(1)
        # log mu(y_t); finished rows get 0, not the log-prob of the padding (-inf outside a top-k set)
        behaviour[live, t] = log_mu.gather(-1, sampled).squeeze(1).masked_fill(done, 0.0)
        if capture_target:
            log_pi = torch.log_softmax(raw, dim=-1)  # (b, V) target policy: temperature 1, no truncation
            target[live, t] = log_pi.gather(-1, sampled).squeeze(1).masked_fill(done, 0.0)
            entropy[live, t] = torch.special.entr(log_pi.exp()).sum(dim=-1).masked_fill(done, 0.0)  # entr(0) = 0
        steps_taken = t + 1
        done = done | torch.isin(sampled.squeeze(1), eos)
        if t + 1 == max_new_tokens:
            break
        finished = int(done.sum())
        if finished == len(live):
            break
        if finished and finished >= COMPACT_FRACTION * len(live):
            keep = (~done).nonzero().squeeze(1)  # (b',)
            live, sampled, done = live[keep], sampled[keep], done[keep]
            attention, first_position = attention[keep], first_position[keep]
            cache.batch_select_indices(keep)
        attention[:, width + t] = 1
        logits = forward(input_ids=sampled, attention_mask=attention[:, : width + t + 1],
                         position_ids=(first_position + t).unsqueeze(1), cache=cache,
                         use_cache=True).logits[:, -1]  # (b, V)
    captured = [c[:, :steps_taken] if c is not None else None for c in (behaviour, target, entropy)]
    temperatures = taus[:steps_taken].expand(rows, steps_taken)  # (B, T') the tau_t each row was sampled at
    return build_rollouts(tokenizer, prompt_ids, prompt_mask, tokens[:, :steps_taken], captured[0], temperatures,
                          captured[1], captured[2])


def lean_sample(model, tokenizer, prompts: list[str], schedule: Schedule, step: int = 0, max_new_tokens: int = 64,
                top_k: int | None = None, top_p: float | None = None, batch_size: int = 256, seed: int | None = None,
                capture_target: bool = False, forward=None) -> Rollouts:
    """:func:`ead.sampling.sample`'s contract (same arguments, same :class:`Rollouts`) on the lean loop."""
    from ead.sampling import concat_rollouts

    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer needs pad_token_id and eos_token_id set for batched sampling")
    reason = supports(model)
    if reason is not None:
        raise ValueError(f"the lean engine cannot sample from this model: {reason}; use sampling.engine=hf")
    forward = forward or model
    was_training = model.training
    model.eval()
    rng_context = torch.random.fork_rng() if seed is not None else nullcontext()
    try:
        with rng_context:
            if seed is not None:
                torch.manual_seed(seed)
            chunks = [_sample_chunk(forward, model, tokenizer, prompts[i : i + batch_size], schedule, step,
                                    max_new_tokens, top_k, top_p, capture_target)
                      for i in range(0, len(prompts), batch_size)]
    finally:
        model.train(was_training)
    return concat_rollouts(chunks, tokenizer.pad_token_id)


class LeanEngine:
    """The lean loop on the live training model: weights are always in sync, like ``hf``."""

    name = "lean"
    can_capture_target = True

    def __init__(self, model, tokenizer, batch_size: int = 256, compile: bool = False):
        reason = supports(model)
        if reason is not None:
            raise ValueError(f"the lean engine cannot sample from this model: {reason}; use sampling.engine=hf")
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        # torch.compile of the forward (dynamic shapes: the batch shrinks and the context grows).
        # Off by default: on CPU for the built-in model compilation costs more than it saves.
        self._forward = torch.compile(model, dynamic=True) if compile else model

    def generate(self, prompts: list[str], schedule: Schedule, step: int, max_new_tokens: int,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 capture_target: bool = False) -> Rollouts:
        return lean_sample(self.model, self.tokenizer, prompts, schedule, step=step, max_new_tokens=max_new_tokens,
                           top_k=top_k, top_p=top_p, batch_size=self.batch_size, seed=seed,
                           capture_target=capture_target, forward=self._forward)

    def step_seed(self, base_seed: int, step: int) -> int | None:
        """None: like ``hf``, the loop draws from torch's global RNG, which checkpoints save and restore."""
        return None

    def sync_weights(self, model) -> None:
        if model is not self.model:
            raise ValueError("LeanEngine samples from the model it was built with; pass that model")

    def close(self) -> None:
        pass
