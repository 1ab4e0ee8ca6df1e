"""EAD as a vLLM logits processor (V1 runner interface, plus a dispatcher for both runners).

Two classes:

* :class:`EADLogitsProcessorV1` implements ``vllm.v1.sample.logits_processor.LogitsProcessor``
  (the "V1 runner" interface, ``VLLM_USE_V2_MODEL_RUNNER=0``): rows are
  persistent-batch indices, changes arrive as a ``BatchUpdate`` (removed, then
  added, then moved) and ``t = len(output_tok_ids)`` from the live list vLLM
  keeps appending to.
* :class:`EADLogitsProcessor` is what you register (and what the
  ``vllm.logits_processors`` entry point names). vLLM builds processors with
  ``(vllm_config, device, is_pin_memory)`` under the V1 runner and with
  ``(vllm_config, req_states)`` under model runner V2, and it picks the runner
  per model. This class subclasses both interfaces and delegates to the matching
  implementation, so one registration works whichever runner vLLM chooses. (A
  V1-only class registered through the entry point would make vLLM 0.32 refuse
  to start the V2 runner for *every* model in the environment.)

Requests opt in with ``SamplingParams(temperature=1.0, extra_args=ead_extra_args(schedule, step))``;
see :mod:`ead.integrations.vllm_args` for a helper that gets every engine setting right.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

import torch

from ead.integrations._optional import require
from ead.integrations.rows import RowTemperatures, parse_ead_args, temper

if TYPE_CHECKING:  # pragma: no cover
    from vllm.sampling_params import SamplingParams

_v1 = require("vllm.v1.sample.logits_processor", "ead.integrations.vllm_v1")
try:  # model runner V2 custom processors exist from vLLM 0.32 on
    from vllm.v1.worker.gpu.sample.logits_processor.interface import LogitsProcessor as _V2Base
except ImportError:  # pragma: no cover - older vLLM
    _V2Base = None

__all__ = ["EADLogitsProcessor", "EADLogitsProcessorV1"]

logger = logging.getLogger(__name__)


class EADLogitsProcessorV1(_v1.LogitsProcessor):
    """Per-request EAD temperature for vLLM's V1 runner."""

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        self.device = torch.device(device)
        self.is_pin_memory = bool(is_pin_memory)
        self.rows = RowTemperatures()

    @classmethod
    def validate_params(cls, sampling_params: "SamplingParams") -> None:
        parse_ead_args(sampling_params.extra_args)

    def is_argmax_invariant(self) -> bool:
        # Dividing a row by tau > 0 never changes its argmax: vLLM then skips us for greedy
        # requests and applies us right after its own temperature (1 for EAD requests).
        return True

    def update_state(self, batch_update: Any) -> None:
        self.rows.apply_batch_update(batch_update)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits``: ``(num_reqs, V)`` float32; rows of non-EAD requests stay bit-identical."""
        if len(self.rows) == 0:
            return logits
        tau = self.rows.temperatures(logits.shape[0])  # (num_reqs,) float32 on CPU
        if self.device.type != "cpu":
            # Pinned + non_blocking: no host sync; the caching host allocator keeps the
            # buffer alive until the copy has run.
            tau = (tau.pin_memory() if self.is_pin_memory else tau).to(self.device, non_blocking=self.is_pin_memory)
        return temper(logits, tau)


# One live EAD processor per engine: the entry point and an explicit registration
# would otherwise both load the class and divide by tau twice.
_owners: dict[int, weakref.ref] = {}
_owners_lock = threading.Lock()


def _claim(vllm_config: Any, processor: Any) -> bool:
    key = id(vllm_config)
    with _owners_lock:
        current = _owners.get(key)
        if current is not None and current() is not None:
            return False
        _owners[key] = weakref.ref(processor)
        return True


_bases = (_v1.LogitsProcessor,) + ((_V2Base,) if _V2Base is not None else ())


class EADLogitsProcessor(*_bases):  # type: ignore[misc]
    """EAD for whichever runner vLLM picks; the class to register and the entry point's target."""

    def __init__(self, vllm_config: Any, *args: Any) -> None:
        if len(args) == 2:  # V1 runner: (device, is_pin_memory)
            self._impl: Any = EADLogitsProcessorV1(vllm_config, *args)
        elif len(args) == 1:  # model runner V2: (req_states)
            from ead.integrations.vllm_v2 import EADLogitsProcessorV2

            self._impl = EADLogitsProcessorV2(vllm_config, *args)
        else:
            raise TypeError(f"unexpected vLLM logits-processor constructor arguments: {len(args) + 1}")
        self._vllm_config = vllm_config  # keeps id(vllm_config) from being reused while we live
        self._active = _claim(vllm_config, self)
        if not self._active:
            logger.warning(
                "EAD logits processor registered twice for one engine (entry point and explicit "
                "logits_processors?); the duplicate is disabled so tau is applied once."
            )

    @classmethod
    def validate_params(cls, sampling_params: "SamplingParams") -> None:
        parse_ead_args(sampling_params.extra_args)

    # --- V1 runner ---
    def is_argmax_invariant(self) -> bool:
        return True

    def update_state(self, batch_update: Any) -> None:
        if self._active:
            self._impl.update_state(batch_update)

    # --- model runner V2 ---
    def add_request(self, req_idx: int, sampling_params: "SamplingParams") -> bool:
        return self._impl.add_request(req_idx, sampling_params) if self._active else False

    def apply_staged_writes(self) -> None:
        if self._active:
            self._impl.apply_staged_writes()

    # --- both ---
    def apply(self, logits: torch.Tensor, ctx: Any = None) -> torch.Tensor:
        if not self._active:
            return logits
        return self._impl.apply(logits) if ctx is None else self._impl.apply(logits, ctx)
