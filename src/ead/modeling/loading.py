"""One model + tokenizer loader and one task builder, shared by ``ead train``, ``ead eval`` and ``ead sweep``.

Plain arguments (no command's config type), so every command maps its own sections onto
them and none imports another command:

* :func:`resolve_device`, :data:`DTYPE_NAMES` / :func:`torch_dtype` - device and dtype by name;
* :func:`load_tokenizer` - ``AutoTokenizer`` with the pad-token fix for causal LMs;
* :func:`load_model` / :func:`load_model_and_tokenizer` - the model on its device in its dtype, plus its tokenizer;
* :func:`builtin_model_path` - the warm-started built-in tiny model for a Countdown config (cached);
* :func:`build_task` - the task registered under ``task.name`` in :data:`TASK_BUILDERS`;
* :func:`task_train_defaults` - the train settings a task needs instead of the demo's (:data:`TASK_TRAIN_DEFAULTS`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ead.config import ConfigError

__all__ = ["DTYPE_NAMES", "TASK_BUILDERS", "TASK_TRAIN_DEFAULTS", "build_task", "builtin_model_path", "countdown_config", "load_model", "load_model_and_tokenizer",
           "load_tokenizer", "resolve_device", "task_train_defaults", "torch_dtype"]

DTYPE_NAMES = ("float32", "bfloat16", "float16")
"""Weights dtypes a config may name."""


def torch_dtype(name: str):
    """``"bfloat16"`` -> ``torch.bfloat16``."""
    import torch

    if name not in DTYPE_NAMES:
        raise ConfigError(f"dtype {name!r} is not one of {list(DTYPE_NAMES)}")
    return getattr(torch, name)


def resolve_device(name: str):
    """``"auto"`` -> CUDA if available, else CPU; anything else as ``torch.device`` reads it."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_tokenizer(path: str | Path) -> Any:
    """The tokenizer at ``path``; many causal LMs ship without a pad token, and eos works for left padding."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: str | Path, *, dtype: str = "float32", device: Any = "cpu",
               gradient_checkpointing: bool = False) -> Any:
    """The causal LM at ``path`` through the standard transformers API, on ``device`` in ``dtype``."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(dtype)).to(device)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def load_model_and_tokenizer(path: str | Path, *, dtype: str = "float32", device: Any = "cpu",
                             gradient_checkpointing: bool = False) -> tuple[Any, Any]:
    """``(model, tokenizer)``: :func:`load_model` and :func:`load_tokenizer`."""
    tokenizer = load_tokenizer(path)
    return load_model(path, dtype=dtype, device=device, gradient_checkpointing=gradient_checkpointing), tokenizer


def countdown_config(preset: str, overrides: dict[str, Any] | None = None, where: str = "task."):
    """The Countdown preset (standard, fork, or the search variant) with overrides; a bad override raises
    ConfigError prefixed with ``where``."""
    from ead.tasks.countdown import CountdownConfig, CountdownConfigError, preset_config
    from ead.tasks.countdown_search import SEARCH_PRESETS, CountdownSearchConfig

    if isinstance(overrides, (CountdownConfig, CountdownSearchConfig)):
        return overrides
    try:
        if preset in SEARCH_PRESETS:
            return CountdownSearchConfig.from_dict({**SEARCH_PRESETS[preset].to_dict(), **(overrides or {})})
        return preset_config(preset, overrides)
    except CountdownConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None


def _countdown_task_class(task_config):
    """The task class of a Countdown config: the search variant has its own (attempts, checks)."""
    from ead.tasks.countdown import CountdownTask
    from ead.tasks.countdown_search import CountdownSearchConfig, CountdownSearchTask

    return CountdownSearchTask if isinstance(task_config, CountdownSearchConfig) else CountdownTask


def builtin_model_path(task_config, cache_dir: str | Path | None, *, decoy_rate: float | None = None,
                       num_threads: int | None = None) -> Path:
    """The built-in tiny model warm-started on ``task_config``'s Countdown (trained once, then cached)."""
    from dataclasses import replace

    from ead.modeling.warmstart import SEARCH_SFT_CONFIG, SFTConfig, warm_start

    task = _countdown_task_class(task_config)(task_config)  # only its config matters: the warm start has its own seed
    sft = SEARCH_SFT_CONFIG if getattr(task_config, "variant", None) == "search" else None  # search traces, longer SFT
    if decoy_rate is not None:
        sft = SFTConfig(decoy_rate=decoy_rate) if sft is None else replace(sft, decoy_rate=decoy_rate)
    return warm_start(task, cache_dir, sft_config=sft, num_threads=num_threads)


def _countdown_task(name: str, countdown: Any, dataset: Any, seed: int, tokenizer_path: Any, where: str,
                    options: Any = None):
    task_config = countdown_config(name, countdown, where)
    return _countdown_task_class(task_config)(task_config, seed=seed)


def _dataset_task(name: str, countdown: Any, dataset: Any, seed: int, tokenizer_path: Any, where: str,
                  options: Any = None):
    from ead.data import DatasetTask

    tokenizer = None
    if tokenizer_path is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    try:
        return DatasetTask.from_config(dataset or {}, seed=seed, tokenizer=tokenizer)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}dataset: {exc}") from None


def _reasoning_gym_task(name: str, countdown: Any, dataset: Any, seed: int, tokenizer_path: Any, where: str,
                        options: Any = None):
    from ead.tasks.reasoning_gym import ReasoningGymError, ReasoningGymOptions, ReasoningGymTask

    if not isinstance(options, ReasoningGymOptions):
        from ead.config import config_from_dict

        options = config_from_dict(ReasoningGymOptions, options or {}, prefix=f"{where}reasoning_gym")
    tokenizer = None
    if tokenizer_path is not None and options.chat_template:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    try:
        return ReasoningGymTask(options, seed=seed, tokenizer=tokenizer)
    except ReasoningGymError as exc:
        raise ConfigError(f"{where}reasoning_gym.{exc}") from None


TASK_BUILDERS: dict[str, Callable[..., Any]] = {
    "countdown": _countdown_task,
    "countdown-fork": _countdown_task,
    "countdown-search": _countdown_task,
    "dataset": _dataset_task,
    "reasoning_gym": _reasoning_gym_task,
}
"""``task.name`` -> builder ``(name, countdown, dataset, seed, tokenizer_path, where, options) -> Task`` (``options``:
the task's own typed options, e.g. ``task.reasoning_gym``). A new task
is a module under ``ead/tasks/`` plus one entry here (``task.name`` is checked against this registry)."""


def _search_train_defaults() -> dict[str, Any]:
    from ead.tasks.countdown_search import TRAIN_DEFAULTS

    return TRAIN_DEFAULTS


TASK_TRAIN_DEFAULTS: dict[str, Callable[[], dict[str, Any]]] = {
    "countdown-search": _search_train_defaults,
}
"""``task.name`` -> the ``ead train`` settings (nested, like a recipe) that task needs instead of the Countdown demo's
defaults, e.g. an EAD schedule sized for its response lengths. Tasks without an entry use the plain defaults."""


def task_train_defaults(name: str | None) -> dict[str, Any]:
    """A copy of :data:`TASK_TRAIN_DEFAULTS` for ``name`` ({} for tasks with none), safe to merge into."""
    import copy

    return copy.deepcopy(TASK_TRAIN_DEFAULTS[name]()) if isinstance(name, str) and name in TASK_TRAIN_DEFAULTS else {}


def build_task(name: str, *, countdown: Any = None, dataset: Any = None, seed: int = 0,
               tokenizer_path: str | Path | None = None, where: str = "task.", options: Any = None):
    """The task called ``name`` (a :data:`TASK_BUILDERS` key): a Countdown preset (``countdown``: overrides
    or a ready CountdownConfig) or ``'dataset'`` (``dataset``: a :class:`~ead.data.DatasetSpec` or its
    dict; prompts are measured with the tokenizer at ``tokenizer_path`` when given)."""
    if name not in TASK_BUILDERS:
        raise ConfigError(f"{where}name must be one of {sorted(TASK_BUILDERS)}, got {name!r}")
    return TASK_BUILDERS[name](name, countdown, dataset, seed, tokenizer_path, where, options)
