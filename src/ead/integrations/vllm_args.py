"""Build vLLM engine and request arguments for EAD, with every setting that matters checked.

Three things must hold for vLLM to sample from ``mu_t = softmax(z_t / tau_t)`` and
to return ``log mu_t(y_t)`` for the importance weight:

1. the EAD processor is loaded (the ``vllm.logits_processors`` entry point of
   ``ead-rlvr`` does it; otherwise we register it explicitly);
2. the engine returns log-probs *after* processors, temperature and top-k/top-p
   (``logprobs_mode="processed_logprobs"``, an engine-wide setting);
3. each EAD request has temperature 1 (vLLM divides by the request temperature
   too) and carries ``ead_schedule`` / ``ead_step`` in ``extra_args``.

vLLM refuses custom logits processors under speculative decoding (V1 runner), so
we refuse it here with a clear message rather than at engine start-up.

Example (offline)::

    from vllm import LLM
    from ead import EADSchedule
    from ead.integrations.vllm_args import engine_kwargs, sampling_params

    llm = LLM(**engine_kwargs(model="Qwen/Qwen2.5-Math-1.5B"))
    outs = llm.generate(prompts, sampling_params(EADSchedule(), step=global_step, n=8, max_tokens=3072))
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from ead.integrations._optional import require
from ead.integrations.rows import ead_extra_args
from ead.schedules import Schedule

__all__ = [
    "PROCESSOR_FQCN",
    "EADConfigError",
    "engine_kwargs",
    "entry_point_installed",
    "rest_payload",
    "sampling_kwargs",
    "sampling_params",
    "serve_args",
]

PROCESSOR_FQCN = "ead.integrations.vllm_v1:EADLogitsProcessor"
"""Fully qualified name vLLM loads (works under both the V1 runner and model runner V2)."""

LOGPROBS_MODE = "processed_logprobs"


class EADConfigError(ValueError):
    """An engine or request setting would make vLLM sample something other than EAD."""


def entry_point_installed() -> bool:
    """Whether ``ead-rlvr``'s ``vllm.logits_processors`` entry point is installed (vLLM then loads it itself)."""
    return any(ep.value.replace(" ", "") == PROCESSOR_FQCN for ep in entry_points(group="vllm.logits_processors"))


def _check_engine(kwargs: dict[str, Any]) -> None:
    spec = kwargs.get("speculative_config")
    if spec:
        raise EADConfigError(
            "EAD needs a custom logits processor, and vLLM rejects custom logits processors when "
            f"speculative decoding is enabled (speculative_config={spec!r}). Drop speculative_config "
            "for EAD rollouts."
        )
    mode = kwargs.get("logprobs_mode", LOGPROBS_MODE)
    if mode != LOGPROBS_MODE:
        raise EADConfigError(
            f"logprobs_mode={mode!r} returns log-probs from before the EAD temperature, so they are not "
            f"log mu(y_t) and the importance weight would be wrong; use logprobs_mode={LOGPROBS_MODE!r}."
        )
    if kwargs.get("runner") == "pooling":
        raise EADConfigError("pooling models do not sample; EAD needs a generative runner")


def engine_kwargs(register: bool | None = None, **kwargs: Any) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM(...)`` / ``AsyncEngineArgs(...)`` with EAD wired in.

    Args:
        register: add the processor to ``logits_processors``. ``None`` (default) adds it
            only when the package entry point is not installed. Registering it twice is
            harmless (the duplicate disables itself) but logs a warning.
        **kwargs: your other engine arguments (model, tensor_parallel_size, ...).

    Raises:
        EADConfigError: speculative decoding, a pooling runner, or another ``logprobs_mode``.
    """
    _check_engine(kwargs)
    out = dict(kwargs)
    out["logprobs_mode"] = LOGPROBS_MODE
    # The checkpoint's generation_config.json must not fill request fields (repetition_penalty,
    # min_p, top_k, ...) that the caller left unset: mu is exactly what the caller asked for.
    out.setdefault("generation_config", "vllm")
    if register is None:
        register = not entry_point_installed()
    processors = list(out.get("logits_processors") or [])
    if register and PROCESSOR_FQCN not in processors:
        processors.append(PROCESSOR_FQCN)
    if processors:
        out["logits_processors"] = processors
    return out


def serve_args(register: bool | None = None) -> list[str]:
    """Extra ``vllm serve`` flags for EAD (append to your command line)."""
    args = ["--logprobs-mode", LOGPROBS_MODE, "--generation-config", "vllm"]  # no defaults from the checkpoint
    if register if register is not None else not entry_point_installed():
        args += ["--logits-processors", PROCESSOR_FQCN]
    return args


def sampling_kwargs(schedule: Schedule, step: int | float = 0, **kwargs: Any) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` sampling with EAD at training step ``step``.

    Sets ``temperature=1.0``, returns the sampled token's log-prob (``logprobs=0``,
    which is ``log mu(y_t)`` under ``processed_logprobs``) and merges the EAD keys into
    ``extra_args``. top-k/top-p/min-p are allowed: vLLM applies them after EAD, and the
    returned log-probs include them.

    Raises:
        EADConfigError: a temperature other than 1, or beam search.
    """
    temperature = kwargs.pop("temperature", 1.0)
    if temperature != 1.0:
        raise EADConfigError(
            f"temperature={temperature!r}: vLLM would divide by it on top of tau_t. EAD requests need "
            "temperature=1.0; put the temperature you want into the schedule instead."
        )
    if kwargs.get("use_beam_search"):
        raise EADConfigError("beam search does not sample; EAD needs random sampling")
    extra = dict(kwargs.pop("extra_args", None) or {})
    extra.update(ead_extra_args(schedule, step))
    kwargs.setdefault("logprobs", 0)
    return {"temperature": 1.0, "extra_args": extra, **kwargs}


def sampling_params(schedule: Schedule, step: int | float = 0, **kwargs: Any) -> Any:
    """A ``vllm.SamplingParams`` built from :func:`sampling_kwargs`."""
    vllm = require("vllm", "ead.integrations.vllm_args.sampling_params")
    return vllm.SamplingParams(**sampling_kwargs(schedule, step, **kwargs))


def rest_payload(schedule: Schedule, step: int | float = 0, **kwargs: Any) -> dict[str, Any]:
    """Fields for an OpenAI-compatible ``/v1/completions`` request to ``vllm serve``.

    ``vllm_xargs`` only carries flat values, so the schedule travels as a JSON string.
    """
    body = sampling_kwargs(schedule, step, **kwargs)
    extra = body.pop("extra_args")
    extra.update(ead_extra_args(schedule, step, as_json=True))
    body["vllm_xargs"] = extra
    return body
