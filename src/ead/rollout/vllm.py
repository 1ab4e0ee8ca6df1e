"""A vLLM engine colocated with the trainer: EAD rollouts for ``ead train`` and ``ead eval``.

The engine runs in this process (``distributed_executor_backend="external_launcher"``,
as TRL's colocate mode does), so after each policy update the new weights are handed
straight to vLLM's worker (:func:`load_weights`: ``reload_weights`` maps Hugging Face
parameter names, fused projections included), and the prefix cache is reset so no KV
entry computed with the old weights is reused.

Every request samples with the EAD processor at temperature 1 and returns the sampled
token's processed log-prob, i.e. ``log mu(y_t)`` of the tempered (and top-k/top-p
truncated) distribution: see :mod:`ead.integrations.vllm_args`. Prompts are tokenized
here, with the trainer's tokenizer and the same settings as the HF engine, and sent as
token ids, so both engines continue exactly the same tokens.

vLLM cannot also return log-probs at temperature 1 in the same pass, so with this
engine the trainer recomputes ``log pi_old`` with its own forward pass
(``algorithm.old_logprobs: recompute``). The importance weight
``pi_old(tau=1) / mu(tau_t)`` then also corrects the small numerical mismatch between
vLLM's kernels and the trainer's, which is what truncated importance sampling was first
proposed for (Yao et al. 2025).
"""

from __future__ import annotations

import os
import socket
from typing import Any

import torch

from ead.integrations._optional import require
from ead.integrations.vllm_args import engine_kwargs, sampling_kwargs
from ead.rollout.options import VLLMOptions
from ead.rollouts import Rollouts
from ead.sampling import build_rollouts
from ead.schedules import Schedule

__all__ = ["VLLMEngine", "load_weights", "shutdown"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _single_process_group_env() -> None:
    """``external_launcher`` joins a torch.distributed group; describe a group of one unless one is set."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


class VLLMEngine:
    """EAD sampling through ``vllm.LLM`` (offline, in-process), with weight sync from a torch model."""

    name = "vllm"
    can_capture_target = False

    def __init__(self, model_path: str, tokenizer, options: VLLMOptions | None = None, seed: int = 0):
        vllm = require("vllm", "the vllm rollout engine (sampling.engine: vllm / ead eval --engine vllm)")
        options = options or VLLMOptions()
        if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer needs pad_token_id and eos_token_id set")
        self.tokenizer = tokenizer
        self._vllm = vllm
        _single_process_group_env()
        kwargs: dict[str, Any] = dict(
            model=str(model_path),
            tokenizer=str(model_path),
            seed=seed,
            dtype=options.dtype,
            gpu_memory_utilization=options.gpu_memory_utilization,
            enforce_eager=options.enforce_eager,
            distributed_executor_backend="external_launcher",
            # The checkpoint's generation_config.json (a Hub model's top_k=20, say) must not leak
            # into requests: mu has to be exactly the distribution the schedule describes.
            generation_config="vllm",
            **options.engine_options,
        )
        if options.max_model_len is not None:
            kwargs["max_model_len"] = options.max_model_len
        if options.max_num_seqs is not None:
            kwargs["max_num_seqs"] = options.max_num_seqs
        self.llm = vllm.LLM(**engine_kwargs(**kwargs))  # adds the EAD processor unless its entry point is installed

    # ------------------------------------------------------------------ sampling

    def generate(self, prompts: list[str], schedule: Schedule, step: int, max_new_tokens: int,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 capture_target: bool = False) -> Rollouts:
        """One response per prompt; ``seed`` makes the call reproducible (row ``i`` uses ``seed + i``)."""
        if capture_target:
            raise ValueError("the vllm engine cannot record log pi at temperature 1 while sampling; "
                             "recompute it with the trainer's model (algorithm.old_logprobs: recompute)")
        tokenizer = self.tokenizer
        prompt_token_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        extra = {}
        if top_k is not None:
            extra["top_k"] = top_k
        if top_p is not None:
            extra["top_p"] = top_p
        requests = [{"prompt_token_ids": ids} for ids in prompt_token_ids]
        common = sampling_kwargs(schedule, step, max_tokens=max_new_tokens, logprobs=0, skip_special_tokens=True,
                                 **extra)
        if seed is None:
            params = self._vllm.SamplingParams(**common)  # one object serves every request
        else:
            params = [self._vllm.SamplingParams(**common, seed=(seed + i) % (2**63)) for i in range(len(prompts))]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        return self._to_rollouts(prompt_token_ids, [o.outputs[0] for o in outputs], schedule, step)

    def _to_rollouts(self, prompt_token_ids: list[list[int]], completions: list[Any], schedule: Schedule,
                     step: int) -> Rollouts:
        tokenizer = self.tokenizer
        rows = len(completions)
        prompt_width = max(len(ids) for ids in prompt_token_ids)
        response_width = max(1, max(len(c.token_ids) for c in completions))
        prompt_ids = torch.full((rows, prompt_width), tokenizer.pad_token_id, dtype=torch.long)
        prompt_mask = torch.zeros((rows, prompt_width), dtype=torch.long)
        response_ids = torch.full((rows, response_width), tokenizer.pad_token_id, dtype=torch.long)
        behaviour_logprobs = torch.zeros((rows, response_width), dtype=torch.float32)
        for row, (ids, completion) in enumerate(zip(prompt_token_ids, completions)):
            if ids:
                prompt_ids[row, prompt_width - len(ids):] = torch.tensor(ids)
                prompt_mask[row, prompt_width - len(ids):] = 1
            tokens = list(completion.token_ids)
            response_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            behaviour_logprobs[row, : len(tokens)] = torch.tensor(
                [_sampled_logprob(completion.logprobs[t], token) for t, token in enumerate(tokens)],
                dtype=torch.float32)
        positions = torch.arange(response_width).expand(rows, response_width)
        temperatures = schedule.temperatures(positions, step)  # (B, T) the tau_t the processor applied
        return build_rollouts(tokenizer, prompt_ids, prompt_mask, response_ids, behaviour_logprobs, temperatures)

    def step_seed(self, base_seed: int, step: int) -> int:
        """vLLM's generator is not checkpointed: a per-step seed makes a resumed run sample exactly
        what the uninterrupted run would have (rows then use ``seed + row``, rounds ``+ round * 2**32``)."""
        return (base_seed * 1_000_003 + step) * 2**40

    # ------------------------------------------------------------------ weights

    def sync_weights(self, model) -> None:
        """Copy ``model``'s parameters into vLLM, then drop KV entries computed with the old weights."""
        load_weights(self.llm, [(name, param.detach()) for name, param in model.named_parameters()])

    def close(self) -> None:
        """Shut the engine down and free its memory."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            shutdown(llm)


def shutdown(llm) -> None:
    """Stop a ``vllm.LLM``'s engine core (a non-daemon process unless in-process) and free device memory."""
    engine_core = getattr(llm.llm_engine, "engine_core", None)
    if engine_core is not None and hasattr(engine_core, "shutdown"):
        engine_core.shutdown()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def load_weights(llm, weights: list[tuple[str, torch.Tensor]]) -> None:
    """Load Hugging Face-named tensors into an in-process ``vllm.LLM`` and reset its prefix cache.

    Uses the worker's ``reload_weights`` (present in every vLLM the ``vllm`` extra allows): it
    maps Hugging Face names and re-applies whatever kernel-format processing the platform did at
    load time (fused q/k/v and gate/up, CPU weight repacking), which a bare ``model.load_weights``
    skips (on the CPU build that fails outright: the repacked parameters lost their loaders).
    """
    from vllm.platforms import current_platform

    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
    if current_platform.is_cpu():
        llm.apply_model(_repack_cpu_embeddings)
    llm.reset_prefix_cache()


def _repack_cpu_embeddings(model) -> None:
    """vLLM's CPU backend keeps a prepacked GEMM copy of each embedding / LM-head matrix for the output
    projection; ``reload_weights`` refreshes the matrix but not that copy (vLLM 0.32, found by the tests
    with tied embeddings), so sampling would keep using the old output layer. Re-pack from the new weights."""
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm
    from vllm.model_executor.layers.vocab_parallel_embedding import VocabParallelEmbedding

    for module in model.modules():
        if isinstance(module, VocabParallelEmbedding) and hasattr(module, "cpu_linear"):
            dispatch_cpu_unquantized_gemm(module, remove_weight=False)


def _sampled_logprob(position_logprobs: Any, token: int) -> float:
    """log mu(y_t) from vLLM's per-position log-prob entry (a ``{token_id: Logprob}`` mapping)."""
    entry = position_logprobs[token]
    value = float(entry.logprob if hasattr(entry, "logprob") else entry)
    if value != value:  # NaN would poison the importance weights silently
        raise FloatingPointError(f"vLLM returned a NaN log-prob for token {token}")
    return value
