"""The verl recipe's EAD contract, checkable without verl (only PyYAML).

The recipe (``ead_dapo_qwen2.5_math_1.5b.yaml`` beside this file) reproduces the
paper's main setup. What makes it EAD, and what :func:`check_recipe` enforces:

* vLLM rollout at request temperature 1 with the EAD processor registered through
  ``actor_rollout_ref.rollout.engine_kwargs.vllm.logits_processors``;
* ``logprobs_mode: processed_logprobs`` and ``calculate_log_probs: true``, so the
  rollout log-probs verl keeps are ``log mu(y_t)``;
* verl's native rollout correction as TIS: ``algorithm.rollout_correction.rollout_is``
  ``token`` (or ``sequence``), threshold ``C = 2.0``, decoupled mode, so the weight is
  ``min(pi_old / mu, C)`` with ``pi_old`` recomputed by the actor at temperature 1;
* the global-step hook: ``agent.agent_loop_manager_class`` (:mod:`.hooks`) stamps
  each batch with the EAD step and ``default_agent_loop: ead_single_turn_agent``
  puts it, with the schedule from the top-level ``ead:`` block, into every
  request's ``extra_args``;
* no speculative decoding (vLLM rejects custom processors with it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ead.integrations.rows import ead_extra_args
from ead.integrations.vllm_args import PROCESSOR_FQCN
from ead.schedules import Schedule, schedule_from_dict

__all__ = [
    "AGENT_LOOP_NAME",
    "AGENT_LOOPS_PATH",
    "MANAGER_CLASSES",
    "RECIPE_PATH",
    "check_recipe",
    "ead_step",
    "load_recipe",
    "schedule_from_recipe",
    "with_ead",
]

HERE = Path(__file__).resolve().parent
RECIPE_PATH = HERE / "ead_dapo_qwen2.5_math_1.5b.yaml"
"""The paper's setup: Qwen2.5-Math-1.5B, DAPO, n = 8, Numina-Math prompts, MATH-500 eval."""
AGENT_LOOPS_PATH = HERE / "agent_loops.yaml"
"""verl ``agent_loop_config_path`` file registering :data:`AGENT_LOOP_NAME`."""
AGENT_LOOP_NAME = "ead_single_turn_agent"
MANAGER_CLASSES = {
    True: "ead.integrations.verl.hooks.EADAgentLoopManagerTQ",  # trainer.use_v1 (verl >= 0.8 default)
    False: "ead.integrations.verl.hooks.EADAgentLoopManager",  # legacy ray_trainer
}


def load_recipe(path: str | Path = RECIPE_PATH) -> dict[str, Any]:
    """The recipe as plain dicts (``yaml.safe_load``; Hydra's ``defaults`` are left unresolved)."""
    import yaml

    with open(path) as fh:
        return yaml.safe_load(fh)


def _get(cfg: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


def schedule_from_recipe(cfg: Mapping[str, Any]) -> Schedule:
    """The :class:`~ead.schedules.Schedule` in the recipe's top-level ``ead.schedule`` block."""
    spec = _get(cfg, "ead.schedule")
    if not isinstance(spec, Mapping):
        raise ValueError("the recipe needs a top-level `ead.schedule` block (Schedule.to_dict() fields)")
    return schedule_from_dict(dict(spec))


def ead_step(global_steps: int | None, validate: bool, validate_with_ead: bool) -> int:
    """EAD's step ``s`` for a batch; ``-1`` switches EAD off for it.

    verl counts ``global_steps`` from 1 at the first rollout batch and adds one per batch; EAD's
    ``s`` is the number of training steps (rollout batches) completed, whatever the optimiser
    updates per batch (docs/schedules.md), so ``s = global_steps - 1`` (0 at the first rollout, and
    it resumes correctly because verl checkpoints ``global_steps``).
    """
    if validate and not validate_with_ead:
        return -1
    if global_steps is None or int(global_steps) < 0:
        raise ValueError("the batch carries no global_steps; EAD cannot anneal without the training step")
    return max(int(global_steps) - 1, 0)


def with_ead(sampling_params: Mapping[str, Any], schedule: Schedule, step: int | None) -> dict[str, Any]:
    """A copy of verl's per-request ``sampling_params`` with EAD in ``extra_args`` (unchanged if step < 0)."""
    params = dict(sampling_params)
    if step is None or int(step) < 0:
        return params
    extra = dict(params.get("extra_args") or {})
    extra.update(ead_extra_args(schedule, int(step)))
    params["extra_args"] = extra
    return params


def check_recipe(cfg: Mapping[str, Any]) -> list[str]:
    """Problems that would make a verl run sample or correct something other than EAD + TIS (empty = fine)."""
    problems: list[str] = []
    rollout = "actor_rollout_ref.rollout"

    def expect(dotted: str, ok, why: str) -> None:
        value = _get(cfg, dotted)
        if not ok(value):
            problems.append(f"{dotted} = {value!r}: {why}")

    try:
        schedule_from_recipe(cfg)
    except ValueError as err:
        problems.append(f"ead.schedule: {err}")
    expect(f"{rollout}.name", lambda v: v == "vllm", "the EAD processor is a vLLM processor")
    expect(f"{rollout}.temperature", lambda v: v == 1.0, "vLLM divides by it after EAD; keep 1.0")
    expect(f"{rollout}.logprobs_mode", lambda v: v == "processed_logprobs", "rollout log-probs must be log mu")
    expect(f"{rollout}.calculate_log_probs", lambda v: v is True, "TIS needs the rollout log-probs")
    expect(
        f"{rollout}.engine_kwargs.vllm.logits_processors",
        lambda v: isinstance(v, list) and PROCESSOR_FQCN in v,
        f"register {PROCESSOR_FQCN}",
    )
    expect(
        f"{rollout}.engine_kwargs.vllm.speculative_config",
        lambda v: not v,
        "vLLM rejects custom logits processors under speculative decoding",
    )
    expect("actor_rollout_ref.model.mtp.enable_rollout", lambda v: not v, "MTP rollout turns speculative decoding on")
    expect(f"{rollout}.agent.default_agent_loop", lambda v: v == AGENT_LOOP_NAME, "the loop that sets extra_args")
    use_v1 = _get(cfg, "trainer.use_v1", True)
    expect(
        f"{rollout}.agent.agent_loop_manager_class",
        lambda v: v == MANAGER_CLASSES[bool(use_v1)],
        f"the hook that delivers the global step (trainer.use_v1={use_v1})",
    )
    expect("algorithm.rollout_correction.rollout_is", lambda v: v in ("token", "sequence"), "TIS must be on")
    expect(
        "algorithm.rollout_correction.rollout_is_threshold",
        lambda v: isinstance(v, (int, float)) and v > 0,
        "the cap C (the paper uses 2.0)",
    )
    expect("algorithm.rollout_correction.bypass_mode", lambda v: v is False, "pi_old must be recomputed at tau = 1")
    return problems


def main() -> None:
    """Print the Hydra command for the recipe with this installation's paths."""
    print(f"# recipe: {RECIPE_PATH}")
    print("python -m verl.trainer.main_ppo \\")
    print(f"  --config-path {HERE} --config-name {RECIPE_PATH.stem} \\")
    print(f"  actor_rollout_ref.rollout.agent.agent_loop_config_path={AGENT_LOOPS_PATH} \\")
    print("  data.train_files=... data.val_files=...")
    problems = check_recipe(load_recipe())
    print("# EAD checks:", "ok" if not problems else problems)


if __name__ == "__main__":
    main()
