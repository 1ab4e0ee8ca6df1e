"""The verl recipe and its global-step hook.

Always: the recipe parses with PyYAML, its EAD block equals ead's schedule defaults,
it encodes the paper's setup, and ``check_recipe`` accepts it and rejects each way of
breaking EAD. With verl importable: Hydra composes the recipe on top of verl's own
``ppo_trainer`` config, verl's ``validate_config`` and config dataclasses accept it,
and the hook classes stamp the step and put it into the request's ``extra_args``.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import yaml

from ead.integrations._optional import is_available
from ead.integrations.rows import parse_ead_args
from ead.integrations.verl.recipe import (
    AGENT_LOOP_NAME,
    AGENT_LOOPS_PATH,
    MANAGER_CLASSES,
    RECIPE_PATH,
    check_recipe,
    ead_step,
    load_recipe,
    schedule_from_recipe,
    with_ead,
)
from ead.integrations.vllm_args import PROCESSOR_FQCN
from ead.schedules import EADSchedule

HAS_VERL = is_available("verl") and is_available("hydra")
SKIP_NO_VERL = "verl (with hydra-core) is not installed (pip install 'ead-rlvr[verl]'); the PyYAML checks above ran"
HOOKS_SOURCE = Path(__file__).resolve().parents[2] / "src" / "ead" / "integrations" / "verl" / "hooks.py"


@pytest.fixture()
def recipe():
    return load_recipe()


# ------------------------------------------------------------------------- always


def test_recipe_schedule_is_eads_default_schedule(recipe):
    assert schedule_from_recipe(recipe) == EADSchedule()
    assert recipe["ead"]["schedule"] == EADSchedule().to_dict()  # every field spelled out, same values
    assert recipe["ead"]["validate_with_ead"] is False


def test_recipe_encodes_the_papers_setup(recipe):
    arr = recipe["actor_rollout_ref"]
    assert arr["model"]["path"] == "Qwen/Qwen2.5-Math-1.5B"
    assert arr["rollout"]["n"] == 8 and arr["rollout"]["name"] == "vllm"
    assert recipe["data"]["train_batch_size"] == 1024 and arr["actor"]["ppo_mini_batch_size"] == 256
    assert recipe["data"]["max_response_length"] == 3072
    assert (arr["actor"]["clip_ratio_low"], arr["actor"]["clip_ratio_high"]) == (0.2, 0.28)  # DAPO clip-higher
    assert arr["actor"]["use_kl_loss"] is False and recipe["algorithm"]["use_kl_in_reward"] is False
    assert recipe["algorithm"]["filter_groups"]["enable"] is False  # no dynamic sampling
    assert 1e-6 <= arr["actor"]["optim"]["lr"] <= 4e-6
    tis = recipe["algorithm"]["rollout_correction"]
    assert (tis["rollout_is"], tis["rollout_is_threshold"], tis["bypass_mode"]) == ("token", 2.0, False)
    assert arr["rollout"]["calculate_log_probs"] is True
    val = arr["rollout"]["val_kwargs"]
    assert val["do_sample"] is True and val["n"] == 16  # sampled, not greedy, for Pass@16 / Worst@16
    assert "numina" in recipe["data"]["train_files"].lower() and "math500" in recipe["data"]["val_files"].lower()


def test_check_recipe_accepts_the_recipe(recipe):
    assert check_recipe(recipe) == []


@pytest.mark.parametrize(
    "path, value, needle",
    [
        ("actor_rollout_ref.rollout.temperature", 0.6, "temperature"),
        ("actor_rollout_ref.rollout.logprobs_mode", "raw_logprobs", "logprobs_mode"),
        ("actor_rollout_ref.rollout.calculate_log_probs", False, "calculate_log_probs"),
        ("actor_rollout_ref.rollout.engine_kwargs.vllm.logits_processors", [], "logits_processors"),
        ("actor_rollout_ref.rollout.engine_kwargs.vllm.speculative_config", {"method": "ngram"}, "speculative"),
        ("actor_rollout_ref.rollout.agent.default_agent_loop", "single_turn_agent", "default_agent_loop"),
        ("actor_rollout_ref.rollout.agent.agent_loop_manager_class", None, "agent_loop_manager_class"),
        ("trainer.use_v1", False, "agent_loop_manager_class"),  # legacy trainer needs the legacy manager
        ("algorithm.rollout_correction.rollout_is", None, "rollout_is"),
        ("algorithm.rollout_correction.bypass_mode", True, "bypass_mode"),
        ("ead.schedule.tau_min", -1.0, "ead.schedule"),
    ],
)
def test_check_recipe_rejects_each_breakage(recipe, path, value, needle):
    broken = copy.deepcopy(recipe)
    node = broken
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    problems = check_recipe(broken)
    assert problems and any(needle in p for p in problems), problems


def test_step_semantics_and_extra_args():
    assert ead_step(1, validate=False, validate_with_ead=False) == 0  # verl counts from 1; EAD's s from 0
    assert ead_step(11, validate=False, validate_with_ead=False) == 10
    assert ead_step(11, validate=True, validate_with_ead=False) == -1
    assert ead_step(11, validate=True, validate_with_ead=True) == 10
    with pytest.raises(ValueError, match="global_steps"):
        ead_step(None, validate=False, validate_with_ead=False)
    base = {"temperature": 1.0, "top_p": 1.0, "extra_args": {"kv_transfer_params": {"x": 1}}}
    out = with_ead(base, EADSchedule(), 10)
    request = parse_ead_args(out["extra_args"])
    assert request.schedule == EADSchedule() and request.step == 10.0
    assert out["extra_args"]["kv_transfer_params"] == {"x": 1} and "ead_step" not in base["extra_args"]
    assert with_ead(base, EADSchedule(), -1) == base


def test_recipe_points_at_classes_that_exist():
    """Without importing verl: the FQCNs in the YAML files name classes defined in hooks.py."""
    defined = {node.name for node in ast.parse(HOOKS_SOURCE.read_text()).body if isinstance(node, ast.ClassDef)}
    defined |= {
        node.name
        for top in ast.parse(HOOKS_SOURCE.read_text()).body
        if isinstance(top, ast.If)
        for node in ast.walk(top)
        if isinstance(node, ast.ClassDef)
    }
    loops = yaml.safe_load(AGENT_LOOPS_PATH.read_text())
    assert [entry["name"] for entry in loops] == [AGENT_LOOP_NAME]
    for fqcn in [loops[0]["_target_"], *MANAGER_CLASSES.values()]:
        module, _, cls = fqcn.rpartition(".")
        assert module == "ead.integrations.verl.hooks" and cls in defined, fqcn
    assert PROCESSOR_FQCN == "ead.integrations.vllm_v1:EADLogitsProcessor"
    assert RECIPE_PATH.parent == AGENT_LOOPS_PATH.parent  # both ship as package data (integrations/verl/*.yaml)


# ------------------------------------------------------------------------- with verl


@pytest.fixture()
def composed():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(RECIPE_PATH.parent), version_base=None):
        cfg = compose(config_name=RECIPE_PATH.stem)
    GlobalHydra.instance().clear()
    return cfg


@pytest.mark.skipif(not HAS_VERL, reason=SKIP_NO_VERL)
def test_verl_composes_and_validates_the_recipe(composed):
    from omegaconf import OmegaConf
    from verl.trainer.main_ppo import validate_config
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass

    OmegaConf.resolve(composed)
    validate_config(
        config=composed, use_reference_policy=need_reference_policy(composed), use_critic=need_critic(composed)
    )
    from verl.trainer.config.algorithm import RolloutCorrectionConfig

    rollout = omega_conf_to_dataclass(composed.actor_rollout_ref.rollout)
    omega_conf_to_dataclass(composed.algorithm)
    # verl keeps rollout_correction as a mapping inside AlgoConfig; build its dataclass (runs its checks)
    correction = RolloutCorrectionConfig(**OmegaConf.to_container(composed.algorithm.rollout_correction))
    assert rollout.temperature == 1.0 and rollout.calculate_log_probs and rollout.logprobs_mode == "processed_logprobs"
    assert correction.rollout_is == "token" and float(correction.rollout_is_threshold) == 2.0
    assert rollout.engine_kwargs["vllm"]["logits_processors"] == [PROCESSOR_FQCN]
    assert not need_reference_policy(composed)  # no KL: no reference model
    assert check_recipe(OmegaConf.to_container(composed, resolve=True)) == []

    from ead.integrations.verl.hooks import schedule_of

    assert schedule_of(composed) == EADSchedule()  # what each agent-loop instance reads


@pytest.mark.skipif(not HAS_VERL, reason=SKIP_NO_VERL)
def test_v1_manager_stamps_the_step_and_registers_the_loop(composed, monkeypatch):
    from tensordict import TensorDict
    from verl.trainer.ppo.v1 import AgentLoopManagerTQ
    from verl.utils import tensordict_utils as tu

    from ead.integrations.verl.hooks import EADAgentLoopManagerTQ

    seen = []
    monkeypatch.setattr(AgentLoopManagerTQ, "generate_sequences", lambda self, prompts: seen.append(prompts))
    manager = EADAgentLoopManagerTQ(composed, llm_client=None)  # no Ray needed until workers are created
    assert composed.actor_rollout_ref.rollout.agent.agent_loop_config_path == str(AGENT_LOOPS_PATH)
    for global_steps, validate, expected in [(1, False, 0), (7, False, 6), (7, True, -1)]:
        batch = TensorDict({}, batch_size=[4])
        tu.assign_non_tensor_data(batch, "global_steps", global_steps)
        if validate:
            tu.assign_non_tensor_data(batch, "validate", True)
        manager.generate_sequences(batch)
        assert seen[-1]["ead_step"] == expected

    broken = composed.copy()
    broken.actor_rollout_ref.rollout.temperature = 0.7
    with pytest.raises(ValueError, match="temperature"):
        EADAgentLoopManagerTQ(broken, llm_client=None)


@pytest.mark.skipif(not HAS_VERL, reason=SKIP_NO_VERL)
def test_legacy_manager_stamps_the_step(composed, monkeypatch):
    import numpy as np
    import torch
    from verl import DataProto
    from verl.experimental.agent_loop import AgentLoopManager

    from ead.integrations.verl.hooks import EADAgentLoopManager

    composed.trainer.use_v1 = False
    composed.actor_rollout_ref.rollout.agent.agent_loop_manager_class = MANAGER_CLASSES[False]
    seen = []
    monkeypatch.setattr(AgentLoopManager, "generate_sequences", lambda self, prompts: seen.append(prompts))
    manager = EADAgentLoopManager(composed, llm_client=None)
    batch = DataProto.from_dict({"input_ids": torch.zeros(3, 2, dtype=torch.long)}, meta_info={"global_steps": 5})
    manager.generate_sequences(batch)
    np.testing.assert_array_equal(seen[-1].non_tensor_batch["ead_step"], [4, 4, 4])


@pytest.mark.skipif(not HAS_VERL, reason=SKIP_NO_VERL)
def test_agent_loop_puts_schedule_and_step_into_extra_args(monkeypatch):
    import asyncio

    from hydra.utils import get_class
    from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

    from ead.integrations.verl.hooks import EADSingleTurnAgentLoop

    loops = yaml.safe_load(AGENT_LOOPS_PATH.read_text())
    assert get_class(loops[0]["_target_"]) is EADSingleTurnAgentLoop  # how verl's worker resolves the entry

    captured = {}

    async def fake_run(self, sampling_params, **kwargs):
        captured.update(params=sampling_params, kwargs=kwargs)
        return "ok"

    monkeypatch.setattr(SingleTurnAgentLoop, "run", fake_run)
    loop = object.__new__(EADSingleTurnAgentLoop)  # skip verl's server/tokenizer wiring
    loop._ead_schedule = EADSchedule()
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True}
    assert asyncio.run(loop.run(params, ead_step=12, raw_prompt=[])) == "ok"
    request = parse_ead_args(captured["params"]["extra_args"])
    assert request.schedule == EADSchedule() and request.step == 12.0 and "ead_step" not in captured["kwargs"]
    asyncio.run(loop.run(params, ead_step=-1, raw_prompt=[]))  # validation without EAD
    assert "extra_args" not in captured["params"]
    with pytest.raises(ValueError, match="agent_loop_manager_class"):
        asyncio.run(loop.run(params, raw_prompt=[]))
