"""Rollout engines: what samples the responses, behind one small interface.

Training and evaluation ask an engine for :class:`~ead.rollouts.Rollouts` and, after
each policy update, tell it the new weights. The engines:

* ``lean`` (:mod:`ead.rollout.lean`): a hand-written decoding loop with a preallocated KV cache
  on the training model itself, for Llama/Qwen-family models (several times faster than
  ``generate`` on small models);
* ``hf`` (:mod:`ead.rollout.hf`): Hugging Face ``generate`` on the training model itself (any
  causal LM); both of these can also record log pi_old at temperature 1 from their own logits;
* ``auto`` (the default): ``lean`` when it supports the model, else ``hf``;
* ``vllm`` (:mod:`ead.rollout.vllm`): a vLLM engine colocated in this process, sampling with
  the EAD logits processor and returning ``log mu(y_t)`` as processed log-probs; weights are
  copied into it after every update.

All apply the same :class:`~ead.schedules.Schedule`, so ``mu`` is the same distribution
whichever engine samples it (checked against each other in the tests). Each engine also says
how a training step's rollouts are seeded (:meth:`RolloutEngine.step_seed`), so the trainer
never asks which engine it holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ead.config import ConfigError
from ead.rollout.options import VLLMOptions

if TYPE_CHECKING:  # engines import transformers / vllm; configs import this module and stay light
    from ead.rollouts import Rollouts
    from ead.schedules import Schedule

__all__ = ["ENGINES", "RolloutEngine", "build_engine"]

ENGINES = ("auto", "lean", "hf", "vllm")


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

    def step_seed(self, base_seed: int, step: int) -> int | None:
        """The ``seed`` to pass to :meth:`generate` for training step ``step`` of a run seeded ``base_seed``.

        None when the engine draws from torch's global RNG (checkpoints save and restore it, so a
        resumed run continues the same stream); an explicit seed for engines with a generator of
        their own that no checkpoint captures.
        """
        ...

    def sync_weights(self, model) -> None:
        """Make the engine sample from ``model``'s current weights."""
        ...

    def close(self) -> None:
        """Release what the engine holds (processes, device memory)."""
        ...


def build_engine(name: str, *, model=None, model_path: str | None = None, tokenizer=None, batch_size: int = 256,
                 vllm_options: VLLMOptions | None = None, seed: int = 0) -> RolloutEngine:
    """The engine called ``name``: ``auto``/``lean``/``hf`` sample from ``model``; ``vllm`` loads ``model_path``."""
    if name in ("auto", "lean"):
        from ead.rollout.lean import LeanEngine, supports

        if model is None:
            raise ValueError(f"the {name} engine needs the model")
        if name == "lean" or supports(model) is None:
            return LeanEngine(model, tokenizer, batch_size=batch_size)
        name = "hf"  # auto: a model the lean loop cannot drive falls back to generate()
    if name == "hf":
        from ead.rollout.hf import HFEngine

        if model is None:
            raise ValueError("the hf engine needs the model")
        return HFEngine(model, tokenizer, batch_size=batch_size)
    if name == "vllm":
        from ead.rollout.vllm import VLLMEngine  # imports vllm lazily, with an install hint

        if model_path is None:
            raise ValueError("the vllm engine needs model_path (a directory or Hub id vLLM can load)")
        return VLLMEngine(model_path, tokenizer, options=vllm_options or VLLMOptions(), seed=seed)
    raise ConfigError(f"engine: unknown engine {name!r}; choose one of {list(ENGINES)}")
