"""Config sections shared by ``ead train``, ``ead eval`` (and ``ead sweep``, through train): each knob defined once.

* :class:`ModelSection` - ``model.*``: what to load and how (path, dtype, device, threads, the built-in model's
  warm start).
* :class:`SamplerSection` - the sampler knobs every command shares (``engine``, ``vllm``, ``top_k``, ``top_p``,
  ``generation_batch_size``). A command's ``sampling`` section extends it with its own fields: ``ead train``'s
  :class:`ead.training.config.SamplingSection` adds ``schedule`` and ``max_new_tokens``; ``ead eval``'s
  :class:`ead.evaluation.runner.EvalSamplingSection` adds ``max_new_tokens`` with None = the task's budget.
* :class:`GradingSection` - ``grading.*``: the sandboxed grader pool (timeout, workers, inline, kernel limits).

Both commands nest them under the same names (``model``, ``sampling``, ``grading``), so a check's message
(``sampling.top_k must be >= 1``) names the dotted field of either command. This module sits below the
commands (``training``, ``evaluation``) so that neither imports the other (docs/architecture.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from ead.config import require
from ead.grading.sandbox import ResourceLimits
from ead.modeling.lora import LoraOptions
from ead.paths import check_model_reference
from ead.rollout.options import VLLMOptions

__all__ = ["ModelSection", "SamplerSection", "GradingSection"]

_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass
class ModelSection:
    path: str | None = None
    """Hugging Face model id or local directory; None = the built-in tiny model, warm-started and cached."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype. Temperatures, log-softmax and importance weights are float32 regardless."""
    device: str = "auto"
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda', 'cuda:1', ..."""
    num_threads: int | None = None
    """torch CPU threads. None: 1 for the built-in tiny model (its matrices are too small to gain from
    more, and extra threads thrash when the grader or other jobs share the cores), torch's default
    for a model given by path."""
    gradient_checkpointing: bool = False
    """Trade compute for memory on large models."""
    warm_start_cache: str | None = None
    """Where the built-in model's warm start is cached (only used when path is None); None: the one cache of every
    command, ``$EAD_CACHE_DIR`` or ``~/.cache/ead`` (see ead.paths.cache_dir)."""
    warm_start_decoy_rate: float | None = None
    """Built-in model only: share of wrong-path (decoy) chains in its supervised warm-start data; None: the
    task's default (0.1 for countdown, 0.85 for countdown-fork). Higher makes the right first step rarer for
    the base policy: the exploration problem EAD targets. Each value is its own cached model."""
    lora: LoraOptions | None = None
    """Train LoRA adapters through peft instead of every weight (ead.modeling.lora.LoraOptions: r, alpha, dropout,
    target_modules); null = full fine-tuning. The KL reference is then the base model (adapters disabled) and
    checkpoints hold the adapter only (docs/real_models.md)."""

    def __post_init__(self) -> None:
        require(_DEVICE.fullmatch(self.device) is not None, "model.device",
                f"must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r} (e.g. model.device=cuda:1)")
        if self.path is not None:
            check_model_reference(self.path, "model.path")
        require(self.num_threads is None or self.num_threads >= 1, "model.num_threads", "must be >= 1")
        require(self.warm_start_decoy_rate is None or 0.0 <= self.warm_start_decoy_rate <= 1.0,
                "model.warm_start_decoy_rate", "must be in [0, 1] or null")
        require(self.warm_start_decoy_rate is None or self.path is None, "model.warm_start_decoy_rate",
                "only applies to the built-in model (model.path must be null)")

    def torch_threads(self) -> int | None:
        """The torch CPU thread count to set (None: leave torch's default), as ``num_threads`` documents."""
        return self.num_threads or (1 if self.path is None else None)


@dataclass
class SamplerSection:
    """The sampler knobs of every command's ``sampling`` section; each command's subclass adds its own fields."""

    top_k: int | None = None
    """Optional top-k after the temperature (None = off). mu then includes the truncation."""
    top_p: float | None = None
    """Optional nucleus threshold after the temperature (None = off)."""
    generation_batch_size: int = 256
    """Rows per generate() call (auto, lean and hf engines)."""
    engine: Literal["auto", "lean", "hf", "vllm"] = "auto"
    """What samples rollouts: 'auto' = 'lean' when it supports the model (Llama/Qwen2/Qwen3/Mistral), else 'hf';
    'lean' = ead's own KV-cached decoding loop on the training model; 'hf' = generate() on the training model;
    'vllm' = a vLLM engine colocated in
    this process (``pip install 'ead-rlvr[vllm]'``), weights copied into it after every update."""
    vllm: VLLMOptions = field(default_factory=VLLMOptions)
    """For engine='vllm': the ead.rollout.VLLMOptions fields (gpu_memory_utilization, max_model_len, dtype, ...)."""

    def __post_init__(self) -> None:
        if not isinstance(self.vllm, VLLMOptions):
            self.vllm = VLLMOptions.from_dict(self.vllm, where="sampling.vllm")
        require(self.top_k is None or self.top_k >= 1, "sampling.top_k", "must be >= 1 or null")
        require(self.top_p is None or 0 < self.top_p <= 1, "sampling.top_p", "must be in (0, 1] or null")
        require(self.generation_batch_size >= 1, "sampling.generation_batch_size", "must be >= 1")


@dataclass
class GradingSection:
    timeout_s: float = 10.0
    """Per-response limit for a reward function; a call past it is killed, counted and scores 0."""
    workers: int = 1
    """Grader worker processes."""
    inline: bool = False
    """Grade in the training process (faster to debug; exceptions contained, no timeout, no limits)."""
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    """Kernel limits on each grader worker: memory_mb (address space), cpu_s (per call), file_size_mb,
    processes; see ead.grading.sandbox.ResourceLimits. E.g. grading.limits.memory_mb=8192."""

    def __post_init__(self) -> None:
        require(self.timeout_s > 0, "grading.timeout_s", "must be > 0")
        require(self.workers >= 1, "grading.workers", "must be >= 1")
