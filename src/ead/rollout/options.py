"""Typed options of the rollout engines, validated at config load (no engine imported here)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from ead.config import config_from_dict, require

__all__ = ["VLLMOptions"]


@dataclass
class VLLMOptions:
    """Settings of the colocated vLLM engine (``sampling.vllm`` in ``ead train``, ``vllm`` in ``ead eval``)."""

    gpu_memory_utilization: float = 0.3
    """Share of GPU memory vLLM may take (weights + KV cache); the training model and optimizer need
    the rest, so colocated training wants well under 1."""
    max_model_len: int | None = None
    """Prompt + response tokens per sequence; None: the model's own limit."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights dtype inside vLLM. 'auto' is vLLM's rule: a float32 checkpoint runs in bf16/fp16, so mu then
    differs from the float32 trainer's pi by half-precision rounding (the importance weight absorbs it; the
    drift is logged as is/kl_behaviour_to_pi). Log-probs come back in float32 either way."""
    enforce_eager: bool = False
    """Skip CUDA graph capture (faster start, slower decoding)."""
    max_num_seqs: int | None = None
    """Sequences decoded together; None: vLLM's default."""
    engine_options: dict[str, Any] = field(default_factory=dict)
    """Any other ``vllm.LLM`` keyword (e.g. ``{'tensor_parallel_size': 1, 'quantization': 'fp8'}``)."""

    def __post_init__(self) -> None:
        require(0 < self.gpu_memory_utilization <= 1, "gpu_memory_utilization", "must be in (0, 1]")
        require(self.max_model_len is None or self.max_model_len >= 2, "max_model_len", "must be >= 2 or null")
        require(self.max_num_seqs is None or self.max_num_seqs >= 1, "max_num_seqs", "must be >= 1 or null")
        owned = {f.name for f in fields(self)} | {"model", "tokenizer", "seed", "logprobs_mode",
                                                 "distributed_executor_backend", "generation_config"}
        clash = sorted(set(self.engine_options) & owned)
        require(not clash, "engine_options", f"must not set {clash}: ead sets them (or they have their own field)")

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "vllm") -> "VLLMOptions":
        """Validated, typed options; errors name the field as ``{where}.{field}``."""
        return config_from_dict(cls, values, prefix=where)
