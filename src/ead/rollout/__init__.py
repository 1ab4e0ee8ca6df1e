"""Rollout engines behind one protocol: HF ``generate``, vLLM, and what they return.

* :mod:`ead.rollout.engine`: the :class:`RolloutEngine` protocol, :func:`build_engine`, ``ENGINES``;
* :class:`Rollouts` (defined in :mod:`ead.rollouts`, beside this package): the batch every engine returns;
* :mod:`ead.rollout.options`: typed engine options (:class:`VLLMOptions`);
* :mod:`ead.rollout.hf`, :mod:`ead.rollout.vllm`: the engines (vllm imported lazily inside).

Adding an engine: one module here with a class following :class:`RolloutEngine`, plus its name
in ``ENGINES`` and one branch of :func:`build_engine`.
"""

from ead.rollout.engine import ENGINES, RolloutEngine, build_engine
from ead.rollout.options import VLLMOptions
from ead.rollouts import Rollouts

__all__ = ["ENGINES", "RolloutEngine", "Rollouts", "VLLMOptions", "build_engine"]
