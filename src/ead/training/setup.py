"""Build the pieces a run needs from its config: device, task, policy model and tokenizer."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ead.config import ConfigError
from ead.tasks.base import Task
from ead.training.config import ModelSection, TaskSection

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _countdown_config(task_section: TaskSection):
    from ead.tasks.countdown import PRESETS, CountdownConfig, CountdownConfigError

    try:
        if task_section.name == "countdown-search":
            from ead.tasks.countdown_search import SEARCH_PRESETS, CountdownSearchConfig

            return CountdownSearchConfig.from_dict({**SEARCH_PRESETS[task_section.name].to_dict(),
                                                    **task_section.countdown})
        return CountdownConfig.from_dict({**PRESETS[task_section.name].to_dict(), **task_section.countdown})
    except CountdownConfigError as exc:
        raise ConfigError(f"task.{exc}") from None


def build_task(task_section: TaskSection, model_section: ModelSection) -> Task:
    """The built-in Countdown task (a preset plus overrides) or a dataset-backed task."""
    if task_section.name == "dataset":
        from ead.data import DatasetTask

        tokenizer = None
        if model_section.path is not None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model_section.path)
        try:
            return DatasetTask.from_config(task_section.dataset, seed=task_section.seed, tokenizer=tokenizer)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"task.dataset: {exc}") from None
    from ead.tasks.countdown import CountdownTask

    if task_section.name == "countdown-search":
        from ead.tasks.countdown_search import CountdownSearchTask

        return CountdownSearchTask(_countdown_config(task_section), seed=task_section.seed)
    return CountdownTask(_countdown_config(task_section), seed=task_section.seed)


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
    if task_section.name == "dataset":
        raise ConfigError("model.path is required with task.name='dataset' (the built-in model only knows Countdown)")
    from ead.modeling.warmstart import SEARCH_SFT_CONFIG, SFTConfig, warm_start

    task = build_task(task_section, model_section)  # only its config matters: the warm start has its own seed
    sft = None if model_section.warm_start_decoy_rate is None else SFTConfig(decoy_rate=model_section.warm_start_decoy_rate)
    if task_section.name == "countdown-search":
        sft = SEARCH_SFT_CONFIG if sft is None else replace(SEARCH_SFT_CONFIG, decoy_rate=sft.decoy_rate)
    return warm_start(task, model_section.warm_start_cache, sft_config=sft, num_threads=model_section.num_threads or 1)


def load_policy(model_section: ModelSection, task_section: TaskSection, device: torch.device,
                weights_from: Path | None = None):
    """Load (model, tokenizer) through the standard transformers API; from a checkpoint when resuming."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = weights_from / "model" if weights_from is not None else policy_path(model_section, task_section)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:  # many causal LMs ship without a pad token; eos works for left padding
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[model_section.dtype]).to(device)
    if model_section.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model, tokenizer
