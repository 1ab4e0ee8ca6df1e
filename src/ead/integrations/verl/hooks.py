"""The verl hook that gives every vLLM rollout request EAD's schedule and the global step.

verl builds one ``sampling_params`` dict per rollout batch from the rollout config
and hands it to an *agent loop* per sample; nothing per-step reaches vLLM. Two
small classes close that gap, both selected from the recipe:

* ``agent.agent_loop_manager_class``: :class:`EADAgentLoopManagerTQ` (verl's V1
  trainer, ``trainer.use_v1=true``, the default) or :class:`EADAgentLoopManager`
  (legacy ``ray_trainer``). On the driver, before any worker starts, it checks the
  config against EAD's contract (:func:`ead.integrations.verl.recipe.check_recipe`),
  points ``agent_loop_config_path`` at the packaged ``agent_loops.yaml`` if unset,
  and then stamps every rollout batch with ``ead_step = global_steps - 1`` (``-1``,
  i.e. off, for validation unless ``ead.validate_with_ead``). This covers every
  trainer that goes through the agent-loop manager (sync, colocate-async and
  separate-async V1 modes, the legacy trainer), not only the synchronous path.
* ``agent.default_agent_loop: ead_single_turn_agent``: :class:`EADSingleTurnAgentLoop`,
  verl's single-turn loop plus ``extra_args = {ead_schedule, ead_step}`` in the
  request's sampling params, which verl passes to ``vllm.SamplingParams``.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

from ead.integrations._optional import require
from ead.integrations.verl.recipe import (
    AGENT_LOOPS_PATH,
    check_recipe,
    ead_step,
    schedule_from_recipe,
    with_ead,
)
from ead.schedules import Schedule

require("verl", "ead.integrations.verl.hooks")
from omegaconf import OmegaConf, open_dict  # noqa: E402  (verl depends on omegaconf)
from verl.experimental.agent_loop import AgentLoopManager  # noqa: E402
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop  # noqa: E402

try:  # verl's V1 trainer (TransferQueue); absent in older verl or without the transferqueue package
    from verl.trainer.ppo.v1 import AgentLoopManagerTQ as _ManagerTQ
    from verl.utils import tensordict_utils as _tu
except ImportError as _err:  # pragma: no cover - depends on the installed verl
    _ManagerTQ, _TQ_IMPORT_ERROR = None, _err

__all__ = ["EADAgentLoopManager", "EADAgentLoopManagerTQ", "EADSingleTurnAgentLoop", "schedule_of"]

logger = logging.getLogger(__name__)

# Problems that change what is sampled are fatal; a TIS setting may be a deliberate ablation.
_FATAL_PREFIXES = ("ead.", "actor_rollout_ref.")


@lru_cache(maxsize=16)
def _schedule_from_json(spec: str) -> Schedule:
    return schedule_from_recipe({"ead": {"schedule": json.loads(spec)}})


def schedule_of(config: Any) -> Schedule:
    """The schedule in ``config.ead.schedule``; cheap enough to call per agent-loop instance.

    verl instantiates an agent loop per sample, so this converts only the small
    ``ead.schedule`` node (never the whole config) and caches the parsed schedule.
    """
    spec = OmegaConf.to_container(config.ead.schedule, resolve=True)
    return _schedule_from_json(json.dumps(spec, sort_keys=True))


def _plain(cfg: Any) -> dict:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an unresolvable interpolation elsewhere must not hide our keys
        return OmegaConf.to_container(cfg, resolve=False)


class _EADManagerMixin:
    """Shared by both managers: checks at start-up, then step stamping."""

    config: Any

    def _ead_setup(self) -> None:
        plain = _plain(self.config)
        problems = check_recipe(plain)
        fatal = [p for p in problems if p.startswith(_FATAL_PREFIXES)]
        for problem in problems:
            if problem not in fatal:
                logger.warning("EAD: %s", problem)
        if fatal:
            raise ValueError("this verl config would not sample with EAD:\n- " + "\n- ".join(fatal))
        self._ead_schedule = schedule_from_recipe(plain)
        self._ead_validate = bool(plain["ead"].get("validate_with_ead", False))
        agent = self.config.actor_rollout_ref.rollout.agent
        if not agent.get("agent_loop_config_path"):
            with open_dict(agent):
                agent.agent_loop_config_path = str(AGENT_LOOPS_PATH)
        logger.info("EAD schedule %s; agent loops from %s", self._ead_schedule, agent.agent_loop_config_path)

    def _ead_step(self, global_steps: Any, validate: Any) -> int:
        return ead_step(None if global_steps is None else int(global_steps), bool(validate), self._ead_validate)


class EADAgentLoopManager(_EADManagerMixin, AgentLoopManager):
    """Legacy ``ray_trainer`` path: the batch is a ``DataProto`` with ``meta_info['global_steps']``."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        self.config = config
        self._ead_setup()
        super().__init__(config, *args, **kwargs)

    def generate_sequences(self, prompts: Any) -> Any:
        import numpy as np

        step = self._ead_step(prompts.meta_info.get("global_steps"), prompts.meta_info.get("validate", False))
        prompts.non_tensor_batch["ead_step"] = np.full(len(prompts), step, dtype=np.int64)
        return super().generate_sequences(prompts)


if _ManagerTQ is not None:

    class EADAgentLoopManagerTQ(_EADManagerMixin, _ManagerTQ):
        """verl V1 trainer path: the batch is a ``TensorDict`` with non-tensor ``global_steps``."""

        def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
            self.config = config
            self._ead_setup()
            super().__init__(config, *args, **kwargs)

        def generate_sequences(self, prompts: Any) -> None:
            keys = set(prompts.keys())
            step = self._ead_step(
                prompts["global_steps"] if "global_steps" in keys else None,
                prompts["validate"] if "validate" in keys else False,
            )
            _tu.assign_non_tensor_data(prompts, "ead_step", step)
            return super().generate_sequences(prompts)

else:  # pragma: no cover

    class EADAgentLoopManagerTQ:  # type: ignore[no-redef]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise ImportError(
                f"verl's V1 trainer classes could not be imported ({_TQ_IMPORT_ERROR}); install verl with its "
                "TransferQueue dependency or set trainer.use_v1=false with "
                "agent_loop_manager_class=ead.integrations.verl.hooks.EADAgentLoopManager"
            )


class EADSingleTurnAgentLoop(SingleTurnAgentLoop):
    """verl's single-turn loop with EAD's schedule and step in the request's ``extra_args``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ead_schedule = schedule_of(self.config)

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> Any:
        step = kwargs.pop("ead_step", None)
        if step is None:
            raise ValueError(
                "no ead_step in the batch: set actor_rollout_ref.rollout.agent.agent_loop_manager_class to "
                "ead.integrations.verl.hooks.EADAgentLoopManagerTQ (or EADAgentLoopManager for the legacy trainer)"
            )
        return await super().run(with_ead(sampling_params, self._ead_schedule, int(step)), **kwargs)
