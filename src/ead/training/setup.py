"""Build the pieces a run needs from its config: device, task, policy model and tokenizer.

Thin adapters from ``ead train``'s sections to the shared :mod:`ead.modeling.loading` (which
``ead eval`` and ``ead sweep`` use too), so the loading rules exist once.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ead.config import ConfigError
from ead.modeling.loading import build_task as _build_task
from ead.modeling.loading import builtin_model_path, load_model_and_tokenizer, resolve_device
from ead.tasks.base import Task
from ead.training.config import ModelSection, TaskSection

__all__ = ["DTYPES", "build_task", "check_length_budget", "load_policy", "policy_path", "resolve_device"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_task(task_section: TaskSection, model_section: ModelSection) -> Task:
    """The built-in Countdown task (a preset plus overrides) or a dataset-backed task."""
    return _build_task(task_section.name, countdown=task_section.countdown_config, dataset=task_section.dataset,
                       seed=task_section.seed, tokenizer_path=model_section.path, options=task_section.reasoning_gym)


def check_length_budget(task: Task, max_new_tokens: int, builtin_model: bool) -> None:
    """With the built-in character model, the longest correct Countdown chain plus EOS must fit the budget."""
    longest = getattr(task, "max_response_chars", None)
    if builtin_model and longest is not None and max_new_tokens < longest + 1:
        raise ConfigError(
            f"sampling.max_new_tokens ({max_new_tokens}) is shorter than the longest correct {task.name} chain "
            f"({longest} characters + EOS = {longest + 1} tokens with the built-in character tokenizer); "
            f"set sampling.max_new_tokens={longest + 1} or more")


def policy_path(model_section: ModelSection, task_section: TaskSection) -> Path | str:
    """The model to start from: the configured path, or the warm-started built-in model (trained once, cached)."""
    if model_section.path is not None:
        return model_section.path
    if task_section.countdown_config is None:  # 'dataset', 'reasoning_gym'
        raise ConfigError(f"model.path is required with task.name={task_section.name!r} (the built-in model only "
                          "knows Countdown)")
    return builtin_model_path(task_section.countdown_config, model_section.warm_start_cache,
                              decoy_rate=model_section.warm_start_decoy_rate, num_threads=model_section.num_threads or 1)


def load_policy(model_section: ModelSection, task_section: TaskSection, device: torch.device,
                weights_from: Path | None = None, seed: int = 0):
    """Load (model, tokenizer) through the standard transformers API; from a checkpoint when resuming. With
    ``model.lora``: the base from ``model.path`` plus a fresh adapter (initialised from ``seed``) or the checkpoint's."""
    lora = model_section.lora
    if lora is None:
        path = weights_from / "model" if weights_from is not None else policy_path(model_section, task_section)
        return load_model_and_tokenizer(path, dtype=model_section.dtype, device=device,
                                        gradient_checkpointing=model_section.gradient_checkpointing)
    # LoRA: the frozen base comes from model.path every time, the adapter from the checkpoint when resuming
    from ead.modeling.lora import apply_lora, load_adapter
    from ead.seeding import adapter_init_seed

    base, tokenizer = load_model_and_tokenizer(policy_path(model_section, task_section), dtype=model_section.dtype,
                                               device=device, gradient_checkpointing=model_section.gradient_checkpointing)
    policy = load_adapter(base, weights_from / "model") if weights_from is not None else apply_lora(
        base, lora, seed=adapter_init_seed(seed))
    return policy, tokenizer
