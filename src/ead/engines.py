"""Rollout engines: what samples the responses, behind one small interface.

Training and evaluation ask an engine for :class:`~ead.sampling.Rollouts` and, after
each policy update, tell it the new weights. Two engines exist:

* ``hf``: Hugging Face ``generate`` on the training model itself (the default; the
  sampler can also record log pi_old at temperature 1 from its own logits);
* ``vllm``: a vLLM engine colocated in this process (``ead.integrations.vllm_engine``),
  sampling with the EAD logits processor and returning ``log mu(y_t)`` as processed
  log-probs; weights are copied into it after every update.

Both apply the same :class:`~ead.schedules.Schedule`, so ``mu`` is the same distribution
whichever engine samples it (checked against each other in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ead.config import ConfigError, config_from_dict, require

if TYPE_CHECKING:  # ead.sampling imports transformers; configs import this module and stay light
    from ead.sampling import Rollouts
    from ead.schedules import Schedule

__all__ = ["ENGINES", "HFEngine", "RolloutEngine", "VLLMOptions", "build_engine"]

ENGINES = ("hf", "vllm")


class RolloutEngine(Protocol):
    """What the trainer and ``ead eval`` need from a sampler."""

    name: str
    can_capture_target: bool
    """Whether ``generate(capture_target=True)`` can record log pi(y_t) at temperature 1."""

    def generate(self, prompts: list[str], schedule: Schedule, step: int, max_new_tokens: int,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 capture_target: bool = False) -> Rollouts:
        """One response per prompt, rows in prompt order."""
        ...

    def sync_weights(self, model) -> None:
        """Make the engine sample from ``model``'s current weights."""
        ...

    def close(self) -> None:
        """Release what the engine holds (processes, device memory)."""
        ...


class HFEngine:
    """Sampling with ``generate`` on the live training model: weights are always in sync."""

    name = "hf"
    can_capture_target = True

    def __init__(self, model, tokenizer, batch_size: int = 256):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    def generate(self, prompts: list[str], schedule: Schedule, step: int, max_new_tokens: int,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 capture_target: bool = False) -> Rollouts:
        from ead.sampling import sample

        return sample(self.model, self.tokenizer, prompts, schedule, step=step, max_new_tokens=max_new_tokens,
                      top_k=top_k, top_p=top_p, batch_size=self.batch_size, seed=seed, capture_target=capture_target)

    def sync_weights(self, model) -> None:
        if model is not self.model:
            raise ValueError("HFEngine samples from the model it was built with; pass that model")

    def close(self) -> None:
        pass


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


def build_engine(name: str, *, model=None, model_path: str | None = None, tokenizer=None, batch_size: int = 256,
                 vllm_options: VLLMOptions | None = None, seed: int = 0) -> RolloutEngine:
    """The engine called ``name``: ``hf`` samples from ``model``; ``vllm`` loads ``model_path`` into vLLM."""
    if name == "hf":
        if model is None:
            raise ValueError("the hf engine needs the model")
        return HFEngine(model, tokenizer, batch_size=batch_size)
    if name == "vllm":
        from ead.integrations.vllm_engine import VLLMEngine  # imports vllm lazily, with an install hint

        if model_path is None:
            raise ValueError("the vllm engine needs model_path (a directory or Hub id vLLM can load)")
        return VLLMEngine(model_path, tokenizer, options=vllm_options or VLLMOptions(), seed=seed)
    raise ConfigError(f"engine: unknown engine {name!r}; choose one of {list(ENGINES)}")
