"""Sampling with a per-position temperature in Hugging Face ``generate``.

``generate`` runs with temperature 1 and no processor or warper of its own; our
:class:`EADLogitsProcessor` is the only one. At each step it applies, in
transformers' order, the processing the *caller* asked for (repetition penalty),
divides the logits by ``tau_t`` (from the one :class:`~ead.schedules.Schedule`),
applies top-k / top-p / min-p, and returns the log-softmax of exactly the
distribution the next token is drawn from.

Isolation from the checkpoint: transformers fills every generation field left
unset from ``model.generation_config`` (a Hub checkpoint's ``generation_config.json``:
repetition_penalty, min_p, no_repeat_ngram_size, bad words, min length, ...). A
processor running before ours would leak into log pi_old, a warper after ours would
make the recorded mu differ from what was sampled. :func:`isolated_generate` therefore
generates with a config whose every field is explicit and neutral, with the model's
own ``generation_config`` replaced by a blank one for the duration of the call.

The processor keeps each step's ``(B, V)`` log-softmax for one step
only: at the next call it gathers the log-prob of the token just sampled (the
last column of ``input_ids``). Memory is therefore O(B * T) for the captured
behaviour log-probs plus one ``(B, V)`` slab, never ``(B, T, V)``.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from ead.rollouts import Rollouts  # re-exported for callers of sample()
from ead.schedules import Schedule

__all__ = ["EADLogitsProcessor", "Rollouts", "apply_min_p", "apply_repetition_penalty", "apply_top_k_top_p",
           "build_rollouts", "concat_rollouts", "eos_token_ids", "eval_mode", "isolated_generate",
           "neutral_generation_config", "sample"]


def apply_repetition_penalty(logits: torch.Tensor, previous_ids: torch.Tensor, penalty: float | None,
                             previous_mask: torch.Tensor | None = None) -> torch.Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019, Sec. 4.1), as transformers applies it.

    Every token already in the row (prompt and response so far) has its logit divided by
    ``penalty`` if positive, multiplied by it if negative. Runs *before* the temperature.
    ``logits (B, V)``, ``previous_ids (B, L)``, ``previous_mask (B, L)`` (0 = left padding, not counted).
    """
    if penalty is None or penalty == 1.0:
        return logits
    vocab = logits.shape[-1]
    ids = previous_ids.clamp(max=vocab)  # (B, L); ids past the LM head go to a dropped extra column
    if previous_mask is not None:
        ids = ids.masked_fill(previous_mask == 0, vocab)
    seen = torch.zeros(logits.shape[0], vocab + 1, dtype=torch.bool, device=logits.device)
    seen.scatter_(1, ids, True)
    seen = seen[:, :vocab]  # (B, V)
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalised, logits)


def apply_min_p(logits: torch.Tensor, min_p: float | None) -> torch.Tensor:
    """Min-p truncation (Nguyen et al. 2024): drop tokens with p < min_p * max p. After the temperature."""
    if min_p is None or min_p <= 0.0:
        return logits
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    threshold = min_p * probs.amax(dim=-1, keepdim=True)  # (B, 1); the top token always survives
    return logits.masked_fill(probs < threshold, float("-inf"))


def neutral_generation_config(max_new_tokens: int, pad_token_id: int, eos_token_id: list[int],
                              **fields) -> GenerationConfig:
    """Multinomial sampling with every processor and warper of ``generate`` explicitly off.

    ``fields`` adds generate-level settings that do not touch the logits (cache_implementation, ...).
    """
    return GenerationConfig(
        do_sample=True, num_beams=1, temperature=1.0, top_k=0, top_p=1.0, typical_p=1.0,
        epsilon_cutoff=0.0, eta_cutoff=0.0, repetition_penalty=1.0, encoder_repetition_penalty=1.0,
        no_repeat_ngram_size=0, encoder_no_repeat_ngram_size=0, min_new_tokens=0,
        renormalize_logits=False, remove_invalid_values=False, guidance_scale=1.0,
        max_new_tokens=max_new_tokens, pad_token_id=pad_token_id, eos_token_id=eos_token_id,
        # None-valued fields (min_p, bad_words_ids, suppress_tokens, forced BOS/EOS, sequence_bias,
        # top_h, watermarking, ...) cannot be pinned here: isolated_generate blanks the model's defaults.
        **fields,
    )


@contextmanager
def _blank_model_generation_configs(model) -> Iterator[None]:
    """Swap every ``generation_config`` in ``model`` (wrappers such as peft included) for a blank one."""
    owners = [m for m in model.modules() if isinstance(getattr(m, "generation_config", None), GenerationConfig)]
    saved = [m.generation_config for m in owners]
    try:
        for m in owners:
            m.generation_config = GenerationConfig()
        yield
    finally:
        for m, config in zip(owners, saved):
            m.generation_config = config


def isolated_generate(model, generation_config: GenerationConfig, **kwargs) -> torch.Tensor:
    """``model.generate`` with ``generation_config`` exactly: nothing filled in from the checkpoint's defaults."""
    with _blank_model_generation_configs(model):
        return model.generate(generation_config=generation_config, **kwargs)


@contextmanager
def eval_mode(model) -> Iterator[None]:
    """Evaluation mode (no dropout) for the block, then the caller's mode back.

    pi_old, mu and entropies are properties of the policy, not of one dropout mask: computed in
    training mode they would be noisy (and differ from what the sampler drew from).
    """
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


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
    penalty or truncation) and that distribution's entropy: pi_old and its entropy
    for free, without a second forward pass.

    Order, as in transformers: repetition penalty (a processor) -> ``/ tau_t`` ->
    top-k -> top-p -> min-p (warpers). Each is off unless its argument is set, and
    the recorded log mu is the log-softmax after all of them.
    """

    def __init__(
        self,
        schedule: Schedule,
        step: int,
        prompt_width: int,
        top_k: int | None = None,
        top_p: float | None = None,
        capture_target: bool = False,
        min_p: float | None = None,
        repetition_penalty: float | None = None,
        prompt_mask: torch.Tensor | None = None,
    ) -> None:
        self.schedule = schedule
        self.step = step
        self.prompt_width = prompt_width
        self.top_k = top_k
        self.top_p = top_p
        self.min_p = min_p
        self.repetition_penalty = repetition_penalty
        self.prompt_mask = prompt_mask  # (B, P): left padding is not a "previous token" for the penalty
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
        tau = self.schedule.temperatures_for_logits(scores, positions, self.step)  # (B,) float32
        raw = scores.float()  # (B, V)
        previous_mask = None
        if self.prompt_mask is not None and self.repetition_penalty is not None:
            previous_mask = torch.cat([self.prompt_mask.to(input_ids.device),
                                       torch.ones_like(input_ids[:, self.prompt_width :])], dim=1)  # (B, L)
        penalised = apply_repetition_penalty(raw, input_ids, self.repetition_penalty, previous_mask)
        tempered = apply_top_k_top_p(penalised / tau.unsqueeze(-1), self.top_k, self.top_p)
        tempered = apply_min_p(tempered, self.min_p)
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
def _sample_chunk(model, tokenizer, prompts, schedule, step, max_new_tokens, top_k, top_p, capture_target,
                  min_p=None, repetition_penalty=None) -> Rollouts:
    device = next(model.parameters()).device
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    prompt_ids = encoded["input_ids"].to(device)  # (B, P)
    prompt_mask = encoded["attention_mask"].to(device)
    processor = EADLogitsProcessor(schedule, step, prompt_ids.shape[1], top_k=top_k, top_p=top_p,
                                   capture_target=capture_target, min_p=min_p,
                                   repetition_penalty=repetition_penalty, prompt_mask=prompt_mask)
    # Nothing from the model's own generation_config (a Hub model's repetition_penalty, min_p, ...):
    # ours is the only processor, so the log-probs it records are those of the sampling distribution.
    generation_config = neutral_generation_config(max_new_tokens, tokenizer.pad_token_id, eos_token_ids(tokenizer))
    sequences = isolated_generate(
        model,
        generation_config,
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        logits_processor=LogitsProcessorList([processor]),
    )
    response_ids = sequences[:, prompt_ids.shape[1] :]  # (B, T)
    captured = processor.finish(sequences)
    return build_rollouts(tokenizer, prompt_ids, prompt_mask, response_ids, captured["behaviour_logprobs"],
                          captured["temperatures"], captured["target_logprobs"] if capture_target else None,
                          captured["target_entropy"] if capture_target else None)


# End-of-turn markers of common chat templates (ChatML, Llama 3, Gemma, Phi-3). A chat-formatted
# prompt's answer ends at the turn's end, which is often not the tokenizer's eos (Qwen2.5 base models:
# eos <|endoftext|>, turn end <|im_end|>). Checkpoints list it in generation_config.json's eos_token_id,
# which sampling deliberately ignores, so it is recovered from the chat template itself.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


def eos_token_ids(tokenizer) -> list[int]:
    """Where a response ends: the tokenizer's eos id(s), plus the chat template's end-of-turn token if any."""
    ids = list(tokenizer.eos_token_id) if isinstance(tokenizer.eos_token_id, list) else [tokenizer.eos_token_id]
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str):
        vocab = tokenizer.get_vocab()
        ids += [vocab[token] for token in END_OF_TURN_TOKENS if token in template and token in vocab]
    return list(dict.fromkeys(ids))  # unique, eos first


def build_rollouts(tokenizer, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, response_ids: torch.Tensor,
                   behaviour_logprobs: torch.Tensor, temperatures: torch.Tensor,
                   target_logprobs: torch.Tensor | None = None, target_entropy: torch.Tensor | None = None) -> Rollouts:
    """:class:`Rollouts` from sampled tokens, whichever engine sampled them.

    Cuts each response after its first EOS (mask, ``finished``, decoded text) and zeroes every
    per-token tensor past it, so all engines hand the trainer the same thing.
    """
    response_mask, finished = _response_mask(response_ids, eos_token_ids(tokenizer))
    real = response_mask.bool()

    def on_real_tokens(values: torch.Tensor | None) -> torch.Tensor | None:
        # where, not a product: padding after EOS can have log mu = -inf (outside top-k), and -inf * 0 is NaN.
        return None if values is None else torch.where(real, values, torch.zeros_like(values))

    texts = tokenizer.batch_decode(response_ids * response_mask + tokenizer.pad_token_id * (1 - response_mask),
                                   skip_special_tokens=True)
    return Rollouts(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=response_mask,
        behaviour_logprobs=on_real_tokens(behaviour_logprobs),
        temperatures=on_real_tokens(temperatures),
        texts=texts,
        finished=finished,
        target_logprobs=on_real_tokens(target_logprobs),
        target_entropy=on_real_tokens(target_entropy),
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
    min_p: float | None = None,
    repetition_penalty: float | None = None,
) -> Rollouts:
    """Sample one response per prompt (repeat a prompt n times for n samples).

    Args:
        model, tokenizer: any Hugging Face causal LM and its tokenizer (needs pad and eos tokens).
        prompts: the exact texts to continue.
        schedule: per-position temperature (EAD or a baseline); ``step`` is the global training step.
        max_new_tokens: response length budget in tokens.
        top_k, top_p: optional truncation applied *after* the temperature (None = off).
        min_p: optional min-p truncation after top-k/top-p (None = off).
        repetition_penalty: optional CTRL repetition penalty before the temperature (None = off).
            Whatever is set is part of mu and of the recorded log mu; log pi_old stays the plain
            temperature-1 log-softmax. Nothing is taken from the model's own generation_config.
        batch_size: rows per ``generate`` call.
        seed: if given, sample under ``torch.manual_seed(seed)`` without touching the caller's RNG stream.
        capture_target: also record log pi(y_t) and the entropy of pi at temperature 1 from the
            sampler's own logits (saves the trainer a forward pass; see ``algorithm.old_logprobs``).

    Returns:
        :class:`Rollouts` with one row per prompt.
    """
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer needs pad_token_id and eos_token_id set for batched sampling")
    rng_context = torch.random.fork_rng() if seed is not None else nullcontext()
    with rng_context, eval_mode(model):
        if seed is not None:
            torch.manual_seed(seed)
        chunks = [
            _sample_chunk(model, tokenizer, prompts[i : i + batch_size], schedule, step, max_new_tokens, top_k, top_p,
                          capture_target, min_p=min_p, repetition_penalty=repetition_penalty)
            for i in range(0, len(prompts), batch_size)
        ]
    return concat_rollouts(chunks, tokenizer.pad_token_id)
