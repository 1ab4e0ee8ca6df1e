"""EAD for vLLM's model runner V2 (the default runner for dense models in vLLM 0.32).

Interface: ``vllm/v1/worker/gpu/sample/logits_processor/interface.py``. Requests
live in persistent *slots*; each step the processor gets a row -> slot mapping
and each row's position, and rows are reordered freely. So the per-slot EAD
parameters sit in device tensors (:class:`ead.integrations.rows.SlotTable`) and
the temperature of a row is computed on the device without a host sync::

    t = ctx.pos + 1 - prompt_len[slot]        # response position of the token being sampled

``apply`` runs before vLLM's own temperature, min-p and top-k/top-p, so with a
request temperature of 1 the sampled distribution is ``softmax(z / tau_t)``.

You normally register :class:`ead.integrations.vllm_v1.EADLogitsProcessor`,
which picks this class or the V1 one from the constructor vLLM calls; use this
class directly only when you know the engine runs model runner V2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ead.integrations._optional import require
from ead.integrations.rows import SlotTable, parse_ead_args, temper

if TYPE_CHECKING:  # pragma: no cover
    from vllm.sampling_params import SamplingParams

_interface = require("vllm.v1.worker.gpu.sample.logits_processor.interface", "ead.integrations.vllm_v2")

__all__ = ["EADLogitsProcessorV2"]


class EADLogitsProcessorV2(_interface.LogitsProcessor):
    """Per-request EAD temperature for model runner V2. Requests opt in via ``SamplingParams.extra_args``."""

    def __init__(self, vllm_config: Any, req_states: Any) -> None:
        # req_states: LogitsProcRequestState (read-only). prompt_len is filled before add_request.
        self._prompt_len_np = req_states.prompt_len.np
        self._table = SlotTable(req_states.max_num_reqs, req_states.device)

    @classmethod
    def validate_params(cls, sampling_params: "SamplingParams") -> None:
        """Reject a malformed ``ead_schedule`` / ``ead_step`` at admission (HTTP 400 when serving)."""
        parse_ead_args(sampling_params.extra_args)

    def add_request(self, req_idx: int, sampling_params: "SamplingParams") -> bool:
        # The slot may hold a previous request's state: set() overwrites or clears all of it.
        return self._table.set(req_idx, sampling_params.extra_args, int(self._prompt_len_np[req_idx]))

    def apply_staged_writes(self) -> None:
        self._table.flush()

    def apply(self, logits: torch.Tensor, ctx: Any) -> torch.Tensor:
        """``logits``: ``(rows, V)`` float32; rows of non-EAD requests are left bit-identical."""
        if not self._table.any_active(ctx.idx_mapping_np):
            return logits
        tau = self._table.temperatures(ctx.expanded_idx_mapping, ctx.pos)  # (rows,) float32, on device
        return temper(logits, tau)
