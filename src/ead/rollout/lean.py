"""The ``lean`` engine: a hand-written decoding loop for small Llama/Qwen-family models.

For the small models this project trains on a CPU (the built-in ~1M-parameter Llama, 0.1-0.5B
checkpoints), Hugging Face ``generate`` spends most of a step outside the matrix products:
logits processors, stopping criteria, per-layer mask and cache dispatch, and a KV cache that
grows by ``torch.cat`` (every step copies the whole cache). This loop keeps only what sampling
needs:

* a **preallocated KV cache** (:class:`LeanDecoder`): one ``(B, kv_heads, P + T, head_dim)``
  buffer per layer, written in place; the model's own
  modules apply every weight, only the attention plumbing is ours;
* per step: one pass of the new tokens, ``z / tau_t`` with ``tau_t`` from the same
  :class:`~ead.schedules.Schedule` every engine uses, the same top-k/top-p
  (:func:`ead.sampling.apply_top_k_top_p`), ``log_softmax``, one ``multinomial`` draw, and a
  gather of ``log mu(y_t)`` (plus ``log pi(y_t)`` and the entropy of pi at temperature 1 with
  ``capture_target``, from the same raw logits);
* **finished rows dropped**: once a quarter of the live rows have emitted EOS, the batch (cache,
  mask, positions) is compacted to the live rows; until then finished rows emit padding.

Same interface and same outputs as the ``hf`` engine (:class:`~ead.rollouts.Rollouts`,
built by :func:`ead.sampling.build_rollouts`), so the trainer and ``ead eval`` cannot tell them
apart; the tests check the token distribution (chi-square) and the recorded log-probs against
an independent full forward. Only the random stream differs from ``generate`` (rows are dropped,
so draws land on other rows): the same seed gives other, equally distributed, samples.

Models it cannot drive (other architectures, sliding-window attention, other module layouts) are
reported by :func:`supports`; ``sampling.engine: auto`` then falls back to ``hf``.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING

import torch

from ead.rollouts import Rollouts

if TYPE_CHECKING:
    from ead.schedules import Schedule

__all__ = ["LEAN_MODEL_TYPES", "LeanDecoder", "LeanEngine", "lean_sample", "supports"]

LEAN_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral")
"""Decoder-only architectures with the Llama layout :class:`LeanDecoder` drives: pre-norm blocks of
``self_attn`` (q/k/v/o projections, optional biases, Qwen3's q/k norms) and ``mlp``, rotary positions."""

COMPACT_FRACTION = 0.25
"""Compact the batch once this share of live rows has finished (each compaction copies the cache)."""


def _decoder(model):
    """The transformers model under a peft wrapper (its LoRA layers injected in place, so the loop's module
    calls apply the adapters); any other model as is."""
    return model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model


def supports(model) -> str | None:
    """None when the lean loop can drive ``model``, else why not (one line)."""
    model = _decoder(model)
    config = getattr(model, "config", None)
    if config is None:
        return "not a Hugging Face model (no config)"
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder models are not supported"
    if config.model_type not in LEAN_MODEL_TYPES:
        return f"model_type {config.model_type!r} is not one of {list(LEAN_MODEL_TYPES)}"
    inner = getattr(model, "model", None)
    if not all(hasattr(inner, name) for name in ("embed_tokens", "layers", "norm", "rotary_emb")) or not hasattr(
            model, "lm_head"):
        return "module layout is not model.{embed_tokens, layers, norm, rotary_emb} + lm_head"
    if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or ()):
        return "sliding-window attention layers are not supported"
    if config.model_type == "mistral" and getattr(config, "sliding_window", None):
        return "sliding-window attention (mistral sliding_window) is not supported"
    return None


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _decode_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor,
                      scale: float) -> torch.Tensor:
    """Attention of one new token per row: ``q`` (b, H, 1, d) over ``keys``/``values`` (b, Hkv, L, d).

    Query heads are grouped onto their key/value head (GQA) by a reshape, not by repeating the
    cache; two batched matrix products and a softmax, cheaper on CPU than SDPA's kernels at one query.
    """
    rows, heads, _, dim = q.shape
    kv_heads = keys.shape[1]
    grouped = q.view(rows, kv_heads, heads // kv_heads, dim)  # (b, Hkv, g, d)
    scores = torch.matmul(grouped, keys.transpose(-1, -2)).mul_(scale).add_(bias)  # (b, Hkv, g, L)
    out = torch.matmul(torch.softmax(scores, dim=-1), values)  # (b, Hkv, g, d)
    return out.view(rows, heads, 1, dim)


class LeanDecoder:
    """The model's own modules (norms, projections, MLPs, rotary table, head) driven with a preallocated
    KV cache: one zero-initialised ``(B, kv_heads, P + T, head_dim)`` key and value buffer per layer,
    written in place.

    Only the attention plumbing is ours (rotary embedding as in Llama; SDPA for the prompt, two batched
    matmuls for each new token, over the whole contiguous buffer with padding and not-yet-written slots
    masked; the mask built once per step for all layers); every weight is applied by the
    model's own module, so the logits equal the model's forward up to float rounding (tested).
    """

    def __init__(self, model, max_length: int):
        inner = model.model
        self.embed, self.layers, self.norm, self.rotary = inner.embed_tokens, inner.layers, inner.norm, inner.rotary_emb
        self.head = model.lm_head
        config = model.config
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.max_length = max_length
        self.length = 0  # positions filled in every buffer
        self.keys: list[torch.Tensor | None] = [None] * len(self.layers)
        self.values: list[torch.Tensor | None] = [None] * len(self.layers)

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """Logits ``(b, V)`` after the last of ``ids`` ``(b, s)``; ``key_mask`` ``(b, >= length + s)`` marks real tokens."""
        rows, new = ids.shape
        end = self.length + new
        if end > self.max_length:
            raise RuntimeError(f"lean KV cache overflow: {end} > {self.max_length} positions")
        x = self.embed(ids)  # (b, s, D)
        cos, sin = (t.unsqueeze(1) for t in self.rotary(x, positions))  # (b, 1, s, d) each
        # Attention always spans the whole buffer (unfilled slots are zeros behind the mask): a view of the
        # filled prefix is strided, and the CPU matmul/SDPA kernels copy strided K/V at every call.
        span = self.max_length
        key_at = torch.arange(span, device=ids.device)  # (span,)
        mask = key_mask[:, None, None, :span].bool() & (key_at < end)  # (b, 1, 1, span): real, written keys only
        if new > 1:  # prefill: causal, and a padding query sees itself so its softmax is not empty (no NaN)
            query_at = torch.arange(self.length, end, device=ids.device).view(-1, 1)  # (s, 1)
            key_at = key_at.view(1, -1)  # (1, span)
            mask = (mask & (key_at <= query_at)) | (key_at == query_at)  # (b, 1, s, end)
        bias = None
        if new == 1:  # additive mask, once for every layer: 0 on real keys, -inf on padding / unfilled
            bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill_(~mask, float("-inf"))
        for index, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(rows, new, -1, attn.head_dim)  # (b, s, H, d)
            k = attn.k_proj(h).view(rows, new, -1, attn.head_dim)  # (b, s, Hkv, d)
            if hasattr(attn, "q_norm"):  # Qwen3: RMSNorm over each head before the rotation
                q, k = attn.q_norm(q), attn.k_norm(k)
            q, k = q.transpose(1, 2), k.transpose(1, 2)  # (b, H, s, d), (b, Hkv, s, d)
            v = attn.v_proj(h).view(rows, new, -1, attn.head_dim).transpose(1, 2)
            q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
            if self.keys[index] is None:
                self.keys[index] = k.new_zeros((rows, k.shape[1], self.max_length, k.shape[-1]))
                self.values[index] = v.new_zeros((rows, v.shape[1], self.max_length, v.shape[-1]))
            self.keys[index][:, :, self.length : end] = k
            self.values[index][:, :, self.length : end] = v
            keys, values = self.keys[index][:, :, :span], self.values[index][:, :, :span]
            if new == 1:
                out = _decode_attention(q, keys, values, bias, attn.scaling)
            else:
                out = torch.nn.functional.scaled_dot_product_attention(
                    q, keys, values, attn_mask=mask, scale=attn.scaling,
                    enable_gqa=self.kv_heads != self.heads)  # (b, H, s, d)
            x = x + attn.o_proj(out.transpose(1, 2).reshape(rows, new, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        self.length = end
        return self.head(self.norm(x[:, -1]))  # (b, V)

    def select(self, rows: torch.Tensor) -> None:
        """Keep only ``rows`` of every buffer (a compaction copies the filled part once)."""
        self.keys = [None if k is None else k[rows] for k in self.keys]
        self.values = [None if v is None else v[rows] for v in self.values]


@torch.no_grad()
def _sample_chunk(model, tokenizer, prompts: list[str], schedule: Schedule, step: int, max_new_tokens: int,
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
    decoder = LeanDecoder(model, width + max_new_tokens)
    prompt_positions = (prompt_mask.cumsum(dim=1) - 1).clamp(min=0)  # (B, P), as generate computes them
    logits = decoder(prompt_ids, prompt_positions, attention)  # (B, V)

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
            decoder.select(keep)
        attention[:, width + t] = 1
        logits = decoder(sampled, (first_position + t).unsqueeze(1), attention)  # (b, V)
    captured = [c[:, :steps_taken] if c is not None else None for c in (behaviour, target, entropy)]
    temperatures = taus[:steps_taken].expand(rows, steps_taken)  # (B, T') the tau_t each row was sampled at
    return build_rollouts(tokenizer, prompt_ids, prompt_mask, tokens[:, :steps_taken], captured[0], temperatures,
                          captured[1], captured[2])


def lean_sample(model, tokenizer, prompts: list[str], schedule: Schedule, step: int = 0, max_new_tokens: int = 64,
                top_k: int | None = None, top_p: float | None = None, batch_size: int = 256, seed: int | None = None,
                capture_target: bool = False) -> Rollouts:
    """:func:`ead.sampling.sample`'s contract (same arguments, same :class:`Rollouts`) on the lean loop."""
    from ead.sampling import concat_rollouts

    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer needs pad_token_id and eos_token_id set for batched sampling")
    reason = supports(model)
    if reason is not None:
        raise ValueError(f"the lean engine cannot sample from this model: {reason}; use sampling.engine=hf")
    model = _decoder(model)  # a PeftModel: its base, whose projections are the LoRA layers
    was_training = model.training
    model.eval()
    rng_context = torch.random.fork_rng() if seed is not None else nullcontext()
    try:
        with rng_context:
            if seed is not None:
                torch.manual_seed(seed)
            chunks = [_sample_chunk(model, tokenizer, prompts[i : i + batch_size], schedule, step,
                                    max_new_tokens, top_k, top_p, capture_target)
                      for i in range(0, len(prompts), batch_size)]
    finally:
        model.train(was_training)
    return concat_rollouts(chunks, tokenizer.pad_token_id)


class LeanEngine:
    """The lean loop on the live training model: weights are always in sync, like ``hf``."""

    name = "lean"
    can_capture_target = True

    def __init__(self, model, tokenizer, batch_size: int = 256):
        reason = supports(model)
        if reason is not None:
            raise ValueError(f"the lean engine cannot sample from this model: {reason}; use sampling.engine=hf")
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    def generate(self, prompts: list[str], schedule: Schedule, step: int, max_new_tokens: int,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 capture_target: bool = False) -> Rollouts:
        if schedule.needs_logits:  # tau from each step's distribution (entropy-adaptive): only the HF processor has it
            from ead.sampling import sample

            return sample(self.model, self.tokenizer, prompts, schedule, step=step, max_new_tokens=max_new_tokens,
                          top_k=top_k, top_p=top_p, batch_size=self.batch_size, seed=seed,
                          capture_target=capture_target)
        return lean_sample(self.model, self.tokenizer, prompts, schedule, step=step, max_new_tokens=max_new_tokens,
                           top_k=top_k, top_p=top_p, batch_size=self.batch_size, seed=seed,
                           capture_target=capture_target)

    def step_seed(self, base_seed: int, step: int) -> int | None:
        """None: like ``hf``, the loop draws from torch's global RNG, which checkpoints save and restore."""
        return None

    def sync_weights(self, model) -> None:
        if model is not self.model:
            raise ValueError("LeanEngine samples from the model it was built with; pass that model")

    def close(self) -> None:
        pass
