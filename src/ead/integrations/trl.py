"""A drop-in TRL ``GRPOTrainer`` that samples with EAD and corrects for it (TIS).

``GRPOTrainer`` (TRL 1.16) has no hook for a logits processor or a per-position
temperature, so two methods are overridden and nothing else:

``_generate_single_turn``
    *transformers path*: ``generate`` runs at temperature 1 with
    :class:`ead.sampling.EADLogitsProcessor` as the last processor; it divides by
    ``tau_t`` (the :class:`~ead.schedules.Schedule`, at the current global step),
    applies TRL's repetition_penalty / top-k / top-p / min-p itself and records
    ``log mu(y_t)`` of every sampled token. Nothing comes from the checkpoint's
    ``generation_config.json`` (:func:`ead.sampling.isolated_generate`). *vLLM path*: the per-request ``extra_args`` (colocate) or ``vllm_xargs``
    (server) switch on :class:`ead.integrations.vllm_v1.EADLogitsProcessor`, and
    vLLM's ``processed_logprobs`` (which TRL already requests) are ``log mu(y_t)``.
    Either way TRL stores them as ``sampling_per_token_logps``.

``_generate_and_score_completions``
    after TRL has scored the batch, computes ``log pi_old`` at temperature 1 (if
    TRL skipped it), the truncated importance weight
    ``w = min(pi_old(y_t) / mu(y_t), C)`` (EAD paper Sec. 3.2, via
    :func:`ead.objectives.importance.truncated_importance_weights`) and folds it
    into the per-token advantage, ``A'_{i,t} = w_{i,t} A_i``, which TRL's loss
    accepts as a ``(B, T)`` tensor. For ``w >= 0`` this is exactly the weighted
    loss: ``-min(r w A, clip(r) w A) = w * -min(r A, clip(r) A)``, and the same
    linearity holds for every TRL loss type (grpo, dapo, dr_grpo, bnpo, cispo,
    sapo, vespo, luspo); TRL's KL term is left unweighted, as its own IS does.

Logged per step: ``ead/is_ratio_mean``, ``ead/is_weight_mean``,
``ead/is_truncated_frac`` (how often ``w`` hit the cap, or was masked) and
``ead/tau_mean`` (mean sampling temperature over generated tokens).

The global step handed to the schedule is EAD's one definition (docs/schedules.md): the
number of *training steps* completed, one per batch of rollouts, however many optimiser
steps TRL takes on that batch (``steps_per_generation`` x ``num_iterations`` micro-steps,
``gradient_accumulation_steps`` per optimiser step). See :meth:`EADGRPOTrainer.ead_step`.

Constraints, checked at construction: ``args.temperature == 1`` (TRL's single
temperature also scales the training log-probs, and pi must be at tau = 1),
single-turn text prompts (no tools, environments, ``rollout_func`` or images), no
paged generation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from ead.integrations._optional import require
from ead.integrations.rows import ead_extra_args
from ead.objectives.importance import truncated_importance_weights
from ead.schedules import EADSchedule, Schedule

_trl = require("trl", "ead.integrations.trl")
_grpo = require("trl.trainer.grpo_trainer", "ead.integrations.trl")

__all__ = ["EADGRPOTrainer", "EADOptions"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EADOptions:
    """Everything EAD adds to a GRPO run; TRL's own knobs stay in ``GRPOConfig``."""

    schedule: Schedule = EADSchedule()
    """Per-position sampling temperature tau(t, step); the paper's defaults for 1B/1.5B models."""
    eval_schedule: Schedule | None = None
    """Schedule for evaluation generations; ``None`` uses ``schedule``."""
    correct: bool = True
    """Apply the truncated importance weight. Off reproduces EAD without TIS (unstable in the paper)."""
    cap: float = 2.0
    """``C`` in ``min(pi_old / mu, C)``."""
    level: str = "token"
    """``"token"`` (authors' code, verl TIS) or ``"sequence"`` (paper appendix)."""
    mode: str = "truncate"
    """``"truncate"`` caps the weight at ``C``; ``"mask"`` zeroes tokens (or sequences) above ``C``."""

    def __post_init__(self) -> None:
        if self.level not in ("token", "sequence"):
            raise ValueError(f"EADOptions.level must be 'token' or 'sequence', got {self.level!r}")
        if self.mode not in ("truncate", "mask"):
            raise ValueError(f"EADOptions.mode must be 'truncate' or 'mask', got {self.mode!r}")
        if not self.cap > 0:
            raise ValueError(f"EADOptions.cap must be > 0, got {self.cap!r}")


def vllm_generation_kwargs(vllm_mode: str, schedule: Schedule, step: int) -> dict[str, Any]:
    """What to merge into TRL's vLLM ``generation_kwargs`` so this step's requests use EAD."""
    if vllm_mode == "colocate":  # -> vllm.SamplingParams(extra_args=...)
        return {"extra_args": ead_extra_args(schedule, step)}
    if vllm_mode == "server":  # -> /v1/completions body; vllm_xargs carries flat values only
        return {"vllm_xargs": ead_extra_args(schedule, step, as_json=True)}
    raise ValueError(f"unknown vllm_mode {vllm_mode!r}")


def _check_args(args: Any, rollout_func: Any, tools: Any, environment_factory: Any) -> None:
    problems = []
    if args.temperature != 1.0:
        problems.append(
            f"temperature={args.temperature}: TRL also divides the training log-probs by it, but EAD needs "
            "pi at temperature 1; put the sampling temperature into the schedule"
        )
    if getattr(args, "use_transformers_continuous_batching", False):
        problems.append("use_transformers_continuous_batching: paged generation has no per-position temperature hook")
    if rollout_func is not None or tools or environment_factory is not None:
        problems.append("rollout_func / tools / environment_factory: EAD here covers single-turn generation only")
    if problems:
        raise ValueError("EADGRPOTrainer cannot honour these settings:\n- " + "\n- ".join(problems))


class EADGRPOTrainer(_trl.GRPOTrainer):
    """``GRPOTrainer`` + EAD sampling + truncated importance sampling. Same arguments, plus ``ead``."""

    def __init__(self, *args: Any, ead: EADOptions | None = None, **kwargs: Any) -> None:
        grpo_args = kwargs.get("args", args[2] if len(args) > 2 else None)
        if grpo_args is None:
            raise ValueError("EADGRPOTrainer needs an explicit GRPOConfig (args=...) with temperature=1.0")
        _check_args(grpo_args, kwargs.get("rollout_func"), kwargs.get("tools"), kwargs.get("environment_factory"))
        if grpo_args.use_vllm and grpo_args.vllm_mode == "colocate":
            from ead.integrations.vllm_args import entry_point_installed

            if not entry_point_installed():
                raise ValueError(
                    "TRL builds its colocated vLLM engine without custom processors, so EAD relies on "
                    "ead-rlvr's `vllm.logits_processors` entry point, which is not installed: pip install ead-rlvr"
                )
        self.ead = ead or EADOptions()
        super().__init__(*args, **kwargs)
        if self.use_vllm and self.vllm_importance_sampling_correction:
            # With processed_logprobs, TRL's ratio would be pi_old / mu too: applying both would square it.
            logger.info("EAD's importance weight replaces TRL's vllm_importance_sampling_correction")
            self.vllm_importance_sampling_correction = False

    # ------------------------------------------------------------------ generation

    def _current_schedule(self) -> Schedule:
        if not self.model.training and self.ead.eval_schedule is not None:
            return self.ead.eval_schedule
        return self.ead.schedule

    def ead_step(self) -> int:
        """EAD's global step: training steps (generation batches) completed so far.

        TRL generates once every ``steps_per_generation * num_iterations`` calls of
        ``training_step`` (micro-steps) and takes an optimiser step every
        ``gradient_accumulation_steps`` of them, so ``state.global_step`` (optimiser steps)
        grows faster than the number of rollout batches. Micro-steps done are rebuilt from
        ``state.global_step`` (restored on resume) plus the current accumulation, not from
        TRL's own counter, which restarts at 0 on resume.
        """
        accumulation = self.current_gradient_accumulation_steps
        micro_steps = self.state.global_step * accumulation + self._step % accumulation
        return micro_steps // (self.args.steps_per_generation * self.num_iterations)

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        schedule, step = self._current_schedule(), self.ead_step()
        if self.use_vllm:
            self.vllm_generation.generation_kwargs.update(vllm_generation_kwargs(self.vllm_mode, schedule, step))
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        if images is not None or multimodal_fields:
            raise NotImplementedError("EADGRPOTrainer's transformers path supports text prompts only")
        return self._generate_transformers_ead(prompt_ids, schedule, step)

    def _generate_transformers_ead(self, prompt_ids: list[list[int]], schedule: Schedule, step: int):
        from transformers import LogitsProcessorList

        from ead.sampling import EADLogitsProcessor, isolated_generate, neutral_generation_config

        device = self.accelerator.device
        pad_id = self._tokenizer.pad_token_id
        prompts = [torch.tensor(ids) for ids in prompt_ids]
        multiple = self.pad_to_multiple_of
        padded = _grpo.pad(prompts, padding_value=pad_id, padding_side="left", pad_to_multiple_of=multiple)
        ones = [torch.ones_like(p) for p in prompts]
        mask = _grpo.pad(ones, padding_value=0, padding_side="left", pad_to_multiple_of=multiple)
        padded, mask = padded.to(device), mask.to(device)  # (B, P) left-padded prompts
        processor = EADLogitsProcessor(
            schedule, step, padded.shape[1], top_k=self.top_k or None, top_p=self.top_p if self.top_p < 1.0 else None,
            min_p=self.min_p, repetition_penalty=self.repetition_penalty, prompt_mask=mask,
        )
        # Temperature 1, no processor or warper of generate's own and none from the checkpoint:
        # ours is the only processor, so the log-probs it records are those each token is drawn from.
        config = neutral_generation_config(
            self.max_completion_length, pad_id, list(self.eos_token_ids),
            bos_token_id=self._tokenizer.bos_token_id,
            cache_implementation=self.args.cache_implementation,
            disable_compile=True,
        )
        with (
            _grpo.profiling_context(self, "transformers.generate"),
            _grpo.unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped_model,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            sequences = isolated_generate(
                unwrapped_model,
                config,
                input_ids=padded,
                attention_mask=mask,
                logits_processor=LogitsProcessorList([processor]),
            )
        processor.finish(sequences)  # records the last sampled token's log-prob
        behaviour = torch.stack(processor.behaviour_logprobs, dim=1)  # (B, T) log mu(y_t)
        completion = sequences[:, padded.shape[1] :]  # (B, T)
        is_eos = torch.isin(completion, torch.tensor(self.eos_token_ids, device=completion.device))
        lengths = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1) + 1, completion.shape[1])  # keep the EOS
        completion_ids = [row[:n].tolist() for row, n in zip(completion.cpu(), lengths.tolist())]
        logprobs = [row[:n].tolist() for row, n in zip(behaviour.float().cpu(), lengths.tolist())]
        return completion_ids, logprobs

    # ------------------------------------------------------------------ importance weights

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        mask = output["completion_mask"]
        if "tool_mask" in output:
            mask = mask * output["tool_mask"]
        step = self.ead_step()
        t = torch.arange(mask.shape[1], device=mask.device)  # (T,)
        tau = self._current_schedule().temperatures(t, step).to(mask.device)  # (T,)
        tau_mean = (tau * mask).sum() / mask.sum().clamp(min=1)
        self._metrics[mode]["ead/tau_mean"].append(self.accelerator.gather(tau_mean).mean().item())
        if not self.ead.correct:
            return output

        old = output.get("old_per_token_logps")
        if old is None:  # TRL skips pi_old when it equals the current policy; TIS needs it.
            old = self._old_logprobs(output)
            output["old_per_token_logps"] = old
        behaviour = output["sampling_per_token_logps"]  # (B, T) log mu(y_t)
        weights, stats = truncated_importance_weights(
            old, behaviour, mask, cap=self.ead.cap, level=self.ead.level, mode=self.ead.mode
        )  # (B, T), zero on padding
        advantages = output["advantages"]
        if advantages.dim() == 1:
            advantages = advantages.unsqueeze(1)  # (B, 1)
        output["advantages"] = advantages * weights  # (B, T): TRL's loss is linear in A for w >= 0
        n_tokens = mask.sum().float()
        local = torch.tensor([v * n_tokens.item() for v in stats.values()] + [n_tokens.item()], device=mask.device)
        totals = self.accelerator.gather(local.unsqueeze(0)).sum(dim=0)  # token-weighted over processes
        for i, key in enumerate(stats):
            self._metrics[mode][f"ead/{key}"].append((totals[i] / totals[-1].clamp(min=1)).item())
        return output

    @torch.no_grad()
    def _old_logprobs(self, output: dict[str, Any]) -> torch.Tensor:
        """``log pi_old(y_t)`` at temperature 1 (``args.temperature`` is checked to be 1), without dropout."""
        from ead.sampling import eval_mode

        input_ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)  # (B, P+T)
        attention_mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        mode = "train" if self.model.training else "eval"
        batch_size = self.args.per_device_train_batch_size if mode == "train" else self.args.per_device_eval_batch_size
        with eval_mode(self.model), _grpo.disable_gradient_checkpointing(self.model,
                                                                        self.args.gradient_checkpointing_kwargs):
            logps, _, _ = self._get_per_token_logps_and_entropies(
                self.model, input_ids, attention_mask, output["completion_ids"].size(1), batch_size=batch_size
            )
        return logps  # (B, T)
