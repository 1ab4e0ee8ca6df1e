"""EAD inside the engines and frameworks people already run.

Every submodule that touches an optional package imports it lazily and fails
with an ``ImportError`` naming the ``ead-rlvr`` extra to install:

==============================  ==============================================  ===========
module                          what                                            extra
==============================  ==============================================  ===========
``ead.integrations.rows``       per-row state + tensor update (no engine)       (none)
``ead.integrations.vllm_v1``    vLLM processor (V1 runner + both-runner entry)  ``[vllm]``
``ead.integrations.vllm_v2``    vLLM model runner V2 processor                  ``[vllm]``
``ead.integrations.vllm_args``  engine / SamplingParams / REST arguments        (``[vllm]``)
``ead.integrations.sglang``     SGLang ``CustomLogitProcessor``                 ``[sglang]``
``ead.integrations.trl``        ``EADGRPOTrainer`` for TRL                      ``[trl]``
``ead.integrations.verl``       verl recipe + global-step hook                  ``[verl]``
==============================  ==============================================  ===========

This package never imports an engine itself; see ``docs/integrations.md``.
"""

from ead.integrations._optional import is_available, require
from ead.integrations.rows import SCHEDULE_KEY, STEP_KEY, EADRequest, ead_extra_args, parse_ead_args

__all__ = [
    "SCHEDULE_KEY",
    "STEP_KEY",
    "EADRequest",
    "ead_extra_args",
    "is_available",
    "parse_ead_args",
    "require",
]
