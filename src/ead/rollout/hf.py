"""The ``hf`` engine: Hugging Face ``generate`` on the live training model (any causal LM)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ead.rollouts import Rollouts
    from ead.schedules import Schedule

__all__ = ["HFEngine"]


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

    def step_seed(self, base_seed: int, step: int) -> int | None:
        """None: ``generate`` draws from torch's global RNG, which checkpoints save and restore."""
        return None

    def sync_weights(self, model) -> None:
        if model is not self.model:
            raise ValueError("HFEngine samples from the model it was built with; pass that model")

    def close(self) -> None:
        pass
