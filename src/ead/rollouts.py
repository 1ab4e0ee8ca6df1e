"""What every rollout engine returns: sampled responses with their behaviour log-probs.

Engines (``ead.rollout.hf``, ``ead.rollout.lean``, ``ead.rollout.vllm``) fill it; the trainer and
``ead eval`` read it. Only torch is needed here, so configs and core code can import it cheaply.
It sits beside the ``ead.rollout`` package, not in it: the HF sampler (``ead.sampling``, which the TRL
integration uses) builds it, and the vLLM engine in ``ead.rollout`` uses the vLLM integration, so a
copy inside ``ead.rollout`` would close the circle integrations -> sampling -> rollout -> integrations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Rollouts"]


@dataclass
class Rollouts:
    """A batch of sampled responses with everything the update needs. Rows follow the prompt order."""

    prompt_ids: torch.Tensor  # (B, P) left-padded
    prompt_mask: torch.Tensor  # (B, P)
    response_ids: torch.Tensor  # (B, T) right-padded with pad_token_id after EOS
    response_mask: torch.Tensor  # (B, T) 1 up to and including EOS
    behaviour_logprobs: torch.Tensor  # (B, T) float32 log mu(y_t), 0 on padding
    temperatures: torch.Tensor  # (B, T) float32 tau_t actually used, 0 on padding
    texts: list[str]  # decoded responses, special tokens removed
    finished: torch.Tensor  # (B,) bool: ended with EOS within the length budget
    target_logprobs: torch.Tensor | None = None  # (B, T) log pi(y_t) at temperature 1, if captured
    target_entropy: torch.Tensor | None = None  # (B, T) entropy of pi at temperature 1, if captured

    @property
    def lengths(self) -> torch.Tensor:
        return self.response_mask.sum(dim=1)

    def select(self, rows: torch.Tensor | list[int]) -> "Rollouts":
        """The rows ``rows``, in that order."""
        index = torch.as_tensor(rows, dtype=torch.long)
        return Rollouts(
            prompt_ids=self.prompt_ids[index],
            prompt_mask=self.prompt_mask[index],
            response_ids=self.response_ids[index],
            response_mask=self.response_mask[index],
            behaviour_logprobs=self.behaviour_logprobs[index],
            temperatures=self.temperatures[index],
            texts=[self.texts[i] for i in index.tolist()],
            finished=self.finished[index],
            target_logprobs=None if self.target_logprobs is None else self.target_logprobs[index],
            target_entropy=None if self.target_entropy is None else self.target_entropy[index],
        )
