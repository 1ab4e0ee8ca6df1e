"""EAD as an SGLang ``CustomLogitProcessor``.

Server side, start SGLang with the flag that allows custom processors::

    python -m sglang.launch_server --model-path Qwen/Qwen2.5-Math-1.5B \\
        --enable-custom-logit-processor [--disable-overlap-schedule]

Client side, each EAD request carries the serialised processor, temperature 1 and
the EAD keys in ``sampling_params["custom_params"]``::

    import requests
    from ead import EADSchedule
    from ead.integrations.sglang import generate_request

    body = generate_request(EADSchedule(), step=global_step, text=prompt, max_new_tokens=3072)
    out = requests.post("http://localhost:30000/generate", json=body).json()
    # out["meta_info"]["output_token_logprobs"]: (logprob, token_id, text) per generated token

or with the offline engine ``sglang.Engine(..., enable_custom_logit_processor=True)``::

    engine.generate(prompt, sampling_params(EADSchedule(), step), return_logprob=True,
                    custom_logit_processor=EADCustomLogitProcessor.to_str())

How SGLang calls us (sglang ``layers/sampler.py``): before dividing by the request
temperature, ``logits[mask] = processor(logits[mask], [custom_params of those rows])``,
with the scheduler's live request object injected as ``custom_params["__req__"]``.
The response position is ``t = len(req.output_ids)``. Under the default *overlap*
scheduler the CPU thread may not yet have appended the previous token when the GPU
thread samples (sglang issue #8056), so ``t`` can lag by one; the lag only moves
tau by one position (the returned log-probs still describe the distribution actually
sampled from, so the importance weight stays exact). ``--disable-overlap-schedule``
makes ``t`` exact.

Speculative decoding hands processors several rows per request; EAD refuses it.
"""

from __future__ import annotations

from typing import Any

import torch

from ead.integrations._optional import require
from ead.integrations.rows import ead_extra_args, temper, temperatures_from_request_params
from ead.schedules import Schedule

_base = require("sglang.srt.sampling.custom_logit_processor", "ead.integrations.sglang")

__all__ = ["SERVER_FLAG", "EADCustomLogitProcessor", "generate_request", "sampling_params"]

SERVER_FLAG = "--enable-custom-logit-processor"
"""``sglang.launch_server`` flag without which custom processors are rejected."""


class EADCustomLogitProcessor(_base.CustomLogitProcessor):
    """Divides each EAD row by its ``tau_t``; rows without ``ead_schedule`` are returned unchanged."""

    def __call__(self, logits: torch.Tensor, custom_param_list: list[dict[str, Any]] | None = None) -> torch.Tensor:
        if not custom_param_list:
            return logits
        if logits.shape[0] != len(custom_param_list):
            raise ValueError(
                f"EAD got {logits.shape[0]} logits rows for {len(custom_param_list)} requests: speculative "
                "decoding is not supported with EAD; launch SGLang without --speculative-algorithm"
            )
        tau = temperatures_from_request_params(custom_param_list)  # (rows,) float32, CPU
        return temper(logits, tau)


# Every SGLang sampling field that changes the distribution, pinned to "off": a server launched with
# model-derived sampling defaults would otherwise fill unset fields from the checkpoint's
# generation_config.json, and mu would no longer be what EAD describes. Callers may override any of them
# (the returned log-probs then include it).
NEUTRAL_SAMPLING = {"top_k": -1, "top_p": 1.0, "min_p": 0.0, "repetition_penalty": 1.0,
                    "frequency_penalty": 0.0, "presence_penalty": 0.0, "min_new_tokens": 0}


def sampling_params(schedule: Schedule, step: int | float = 0, **kwargs: Any) -> dict[str, Any]:
    """SGLang ``sampling_params`` for an EAD request at training step ``step`` (temperature forced to 1,
    every other distribution-changing field neutral unless given, see :data:`NEUTRAL_SAMPLING`)."""
    temperature = kwargs.pop("temperature", 1.0)
    if temperature != 1.0:
        raise ValueError(
            f"temperature={temperature!r}: SGLang divides by it after the EAD processor; use 1.0 and "
            "put the temperature into the schedule"
        )
    custom = dict(kwargs.pop("custom_params", None) or {})
    custom.update(ead_extra_args(schedule, step))
    return {**NEUTRAL_SAMPLING, "temperature": 1.0, "custom_params": custom, **kwargs}


def generate_request(
    schedule: Schedule,
    step: int | float = 0,
    *,
    text: str | list[str] | None = None,
    input_ids: list[int] | list[list[int]] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """JSON body for SGLang's native ``POST /generate`` with EAD and per-token log-probs switched on."""
    if (text is None) == (input_ids is None):
        raise ValueError("give exactly one of text= or input_ids=")
    body: dict[str, Any] = {"text": text} if text is not None else {"input_ids": input_ids}
    body["sampling_params"] = sampling_params(schedule, step, **kwargs)
    body["custom_logit_processor"] = EADCustomLogitProcessor.to_str()
    body["return_logprob"] = True
    return body
