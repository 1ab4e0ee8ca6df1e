"""Sampling with a per-position temperature in Hugging Face ``generate``.

``generate`` runs with temperature 1 and no top-k/top-p of its own; our
:class:`EADLogitsProcessor` is the last processor. At each step it divides
the logits by ``tau_t`` (from the one :class:`~ead.schedules.Schedule`), applies
top-k/top-p itself, and returns the log-softmax of exactly the distribution the
next token is drawn from. It keeps that ``(B, V)`` log-softmax for one step
only: at the next call it gathers the log-prob of the token just sampled (the
last column of ``input_ids``). Memory is therefore O(B * T) for the captured
behaviour log-probs plus one ``(B, V)`` slab, never ``(B, T, V)``.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from ead.rollout.rollouts import Rollouts  # re-exported: the dataclass lives in ead.rollout
from ead.schedules import Schedule

__all__ = ["EADLogitsProcessor", "Rollouts", "apply_top_k_top_p", "build_rollouts", "concat_rollouts", "eos_token_ids",
           "sample"]


def apply_top_k_top_p(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Set logits outside the top-k / nucleus(top-p) set to -inf. ``(B, V)`` in, ``(B, V)`` out."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # Drop a token when the mass *before* it already reaches top_p (the first token is always kept).
        drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= top_p
        drop = drop_sorted.scatter(-1, sorted_idx, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


class EADLogitsProcessor(LogitsProcessor):
    """Tempers each step's logits by the schedule and records behaviour log-probs.

    ``t = input_ids.shape[-1] - prompt_width``: every row of one ``generate`` call
    sits at the same response position (prompts are left-padded to one width).

    With ``capture_target=True`` it also records, from the same raw logits, the
    log-prob of each sampled token under the *target* policy (temperature 1, no
    top-k/top-p) and that distribution's entropy: pi_old and its entropy for free,
    without a second forward pass.
    """

    def __init__(
        self,
        schedule: Schedule,
        step: int,
        prompt_width: int,
        top_k: int | None = None,
        top_p: float | None = None,
        capture_target: bool = False,
    ) -> None:
        self.schedule = schedule
        self.step = step
        self.prompt_width = prompt_width
        self.top_k = top_k
        self.top_p = top_p
        self.capture_target = capture_target
        # (B, V) log-softmax of the previous step, behaviour and (optionally) target: gathered once
        # the sampled token is known, then dropped.
        self._pending: list[torch.Tensor] = []
        self.behaviour_logprobs: list[torch.Tensor] = []  # T tensors of shape (B,)
        self.target_logprobs: list[torch.Tensor] = []  # T tensors of shape (B,), if capture_target
        self.target_entropy: list[torch.Tensor] = []  # T tensors of shape (B,), if capture_target
        self.temperatures: list[torch.Tensor] = []  # T tensors of shape (B,)

    def _record_sampled(self, sampled_ids: torch.Tensor) -> None:
        if not self._pending:
            return
        index = sampled_ids.view(-1, 1)
        self.behaviour_logprobs.append(self._pending[0].gather(-1, index).squeeze(-1))
        if self.capture_target:
            self.target_logprobs.append(self._pending[1].gather(-1, index).squeeze(-1))
        self._pending = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        position = input_ids.shape[-1] - self.prompt_width
        if position > 0:
            self._record_sampled(input_ids[:, -1])
        positions = torch.full((scores.shape[0],), position, device=scores.device)
        tau = self.schedule.temperatures(positions, self.step)  # (B,) float32
        raw = scores.float()  # (B, V)
        tempered = apply_top_k_top_p(raw / tau.unsqueeze(-1), self.top_k, self.top_p)
        log_probs = torch.log_softmax(tempered, dim=-1)
        self._pending = [log_probs]
        if self.capture_target:
            target = torch.log_softmax(raw, dim=-1)
            self._pending.append(target)
            self.target_entropy.append(torch.special.entr(target.exp()).sum(dim=-1))  # entr(0) = 0, no NaN
        self.temperatures.append(tau)
        return log_probs

    def finish(self, sequences: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gather the final token's log-probs; every capture stacked to ``(B, T)``."""
        self._record_sampled(sequences[:, -1])
        out = {"behaviour_logprobs": torch.stack(self.behaviour_logprobs, dim=1),
               "temperatures": torch.stack(self.temperatures, dim=1)}
        if self.capture_target:
            out["target_logprobs"] = torch.stack(self.target_logprobs, dim=1)
            out["target_entropy"] = torch.stack(self.target_entropy, dim=1)
        return out


def _response_mask(response_ids: torch.Tensor, eos_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """1 for tokens up to and including the first EOS; whether each row hit EOS."""
    is_eos = torch.isin(response_ids, torch.tensor(eos_ids, device=response_ids.device))  # (B, T)
    eos_seen_before = (is_eos.long().cumsum(dim=1) - is_eos.long()) > 0
    return (~eos_seen_before).long(), is_eos.any(dim=1)


def _pad_to(tensor: torch.Tensor, width: int, value: float) -> torch.Tensor:
    if tensor.shape[1] == width:
        return tensor
    pad = torch.full((tensor.shape[0], width - tensor.shape[1]), value, dtype=tensor.dtype, device=tensor.device)
    return torch.cat([tensor, pad], dim=1)


@torch.no_grad()
def _sample_chunk(model, tokenizer, prompts, schedule, step, max_new_tokens, top_k, top_p, capture_target) -> Rollouts:
    device = next(model.parameters()).device
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    prompt_ids = encoded["input_ids"].to(device)  # (B, P)
    prompt_mask = encoded["attention_mask"].to(device)
    processor = EADLogitsProcessor(schedule, step, prompt_ids.shape[1], top_k=top_k, top_p=top_p,
                                   capture_target=capture_target)
    eos_ids = eos_token_ids(tokenizer)
    # An explicit config: the model's own generation_config (a Hub model's top_k=20, say)
    # must not add warpers after ours, or mu would not be the distribution we record.
    generation_config = GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos_ids,
    )
    sequences = model.generate(
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        generation_config=generation_config,
        logits_processor=LogitsProcessorList([processor]),
    )
    response_ids = sequences[:, prompt_ids.shape[1] :]  # (B, T)
    captured = processor.finish(sequences)
    return build_rollouts(tokenizer, prompt_ids, prompt_mask, response_ids, captured["behaviour_logprobs"],
                          captured["temperatures"], captured["target_logprobs"] if capture_target else None,
                          captured["target_entropy"] if capture_target else None)


def eos_token_ids(tokenizer) -> list[int]:
    """The tokenizer's end-of-sequence id(s) as a list."""
    return tokenizer.eos_token_id if isinstance(tokenizer.eos_token_id, list) else [tokenizer.eos_token_id]


def build_rollouts(tokenizer, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, response_ids: torch.Tensor,
                   behaviour_logprobs: torch.Tensor, temperatures: torch.Tensor,
                   target_logprobs: torch.Tensor | None = None, target_entropy: torch.Tensor | None = None) -> Rollouts:
    """:class:`Rollouts` from sampled tokens, whichever engine sampled them.

    Cuts each response after its first EOS (mask, ``finished``, decoded text) and zeroes every
    per-token tensor past it, so all engines hand the trainer the same thing.
    """
    response_mask, finished = _response_mask(response_ids, eos_token_ids(tokenizer))
    texts = tokenizer.batch_decode(response_ids * response_mask + tokenizer.pad_token_id * (1 - response_mask),
                                   skip_special_tokens=True)
    return Rollouts(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=response_mask,
        behaviour_logprobs=behaviour_logprobs * response_mask,
        temperatures=temperatures * response_mask,
        texts=texts,
        finished=finished,
        target_logprobs=None if target_logprobs is None else target_logprobs * response_mask,
        target_entropy=None if target_entropy is None else target_entropy * response_mask,
    )


def concat_rollouts(chunks: list[Rollouts], pad_token_id: int) -> Rollouts:
    """Stack rollouts row-wise, re-padding prompts (left) and responses (right) to common widths."""
    prompt_width = max(c.prompt_ids.shape[1] for c in chunks)
    response_width = max(c.response_ids.shape[1] for c in chunks)

    def left_pad(t: torch.Tensor, value: float) -> torch.Tensor:
        return _pad_to(t.flip(1), prompt_width, value).flip(1)

    return Rollouts(
        prompt_ids=torch.cat([left_pad(c.prompt_ids, pad_token_id) for c in chunks]),
        prompt_mask=torch.cat([left_pad(c.prompt_mask, 0) for c in chunks]),
        response_ids=torch.cat([_pad_to(c.response_ids, response_width, pad_token_id) for c in chunks]),
        response_mask=torch.cat([_pad_to(c.response_mask, response_width, 0) for c in chunks]),
        behaviour_logprobs=torch.cat([_pad_to(c.behaviour_logprobs, response_width, 0.0) for c in chunks]),
        temperatures=torch.cat([_pad_to(c.temperatures, response_width, 0.0) for c in chunks]),
        texts=[text for c in chunks for text in c.texts],
        finished=torch.cat([c.finished for c in chunks]),
        target_logprobs=None if chunks[0].target_logprobs is None
        else torch.cat([_pad_to(c.target_logprobs, response_width, 0.0) for c in chunks]),
        target_entropy=None if chunks[0].target_entropy is None
        else torch.cat([_pad_to(c.target_entropy, response_width, 0.0) for c in chunks]),
    )


def sample(
    model,
    tokenizer,
    prompts: list[str],
    schedule: Schedule,
    step: int = 0,
    max_new_tokens: int = 64,
    top_k: int | None = None,
    top_p: float | None = None,
    batch_size: int = 256,
    seed: int | None = None,
    capture_target: bool = False,
) -> Rollouts:
    """Sample one response per prompt (repeat a prompt n times for n samples).

    Args:
        model, tokenizer: any Hugging Face causal LM and its tokenizer (needs pad and eos tokens).
        prompts: the exact texts to continue.
        schedule: per-position temperature (EAD or a baseline); ``step`` is the global training step.
        max_new_tokens: response length budget in tokens.
        top_k, top_p: optional truncation applied *after* the temperature (None = off).
        batch_size: rows per ``generate`` call.
        seed: if given, sample under ``torch.manual_seed(seed)`` without touching the caller's RNG stream.
        capture_target: also record log pi(y_t) and the entropy of pi at temperature 1 from the
            sampler's own logits (saves the trainer a forward pass; see ``algorithm.old_logprobs``).

    Returns:
        :class:`Rollouts` with one row per prompt.
    """
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer needs pad_token_id and eos_token_id set for batched sampling")
    was_training = model.training
    model.eval()
    rng_context = torch.random.fork_rng() if seed is not None else nullcontext()
    with rng_context:
        if seed is not None:
            torch.manual_seed(seed)
        chunks = [
            _sample_chunk(model, tokenizer, prompts[i : i + batch_size], schedule, step, max_new_tokens, top_k, top_p,
                          capture_target)
            for i in range(0, len(prompts), batch_size)
        ]
    model.train(was_training)
    return concat_rollouts(chunks, tokenizer.pad_token_id)
