"""Engine selection and options: checked at config load, with errors that name the field."""

import pytest
import torch

from ead.config import ConfigError
from ead.rollout import VLLMOptions, build_engine
from ead.rollout.hf import HFEngine
from ead.integrations._optional import is_available
from ead.sampling import sample
from ead.schedules import EADSchedule


def test_hf_engine_is_the_hf_sampler(tiny_model, tiny_tokenizer):
    schedule = EADSchedule(tau_max=1.4, unit=0.5, warmup_tokens=0)
    engine = build_engine("hf", model=tiny_model, tokenizer=tiny_tokenizer, batch_size=4)
    got = engine.generate(["3 7>5:"] * 6, schedule, 2, 5, seed=9, capture_target=True)
    want = sample(tiny_model, tiny_tokenizer, ["3 7>5:"] * 6, schedule, step=2, max_new_tokens=5, batch_size=4,
                  seed=9, capture_target=True)
    assert torch.equal(got.response_ids, want.response_ids) and got.texts == want.texts
    torch.testing.assert_close(got.behaviour_logprobs, want.behaviour_logprobs)
    with pytest.raises(ValueError, match="model it was built with"):
        engine.sync_weights(torch.nn.Linear(1, 1))


@pytest.mark.parametrize("values, message", [
    ({"gpu_memory_utilization": 0}, r"vllm\.gpu_memory_utilization must be in \(0, 1\]"),
    ({"max_model_len": 1}, r"vllm\.max_model_len must be >= 2"),
    ({"gpu_mem": 0.5}, r"unknown config field\(s\): vllm\.gpu_mem"),
    ({"enforce_eager": "yes"}, r"vllm\.enforce_eager must be true or false"),
    ({"engine_options": {"logprobs_mode": "raw_logprobs"}}, r"must not set \['logprobs_mode'\]"),
])
def test_vllm_options_are_validated(values, message):
    with pytest.raises(ConfigError, match=message):
        VLLMOptions.from_dict(values)


def test_unknown_engine_is_refused():
    with pytest.raises(ConfigError, match="unknown engine 'sglang'"):
        build_engine("sglang", model_path="m")


@pytest.mark.skipif(is_available("vllm"), reason="vllm is installed here; the missing-extra message cannot show")
def test_missing_vllm_says_which_pip_install_fixes_it(tiny_tokenizer):
    with pytest.raises(ImportError, match=r"pip install 'ead-rlvr\[vllm\]'"):
        build_engine("vllm", model_path="m", tokenizer=tiny_tokenizer)


def test_train_config_refuses_sampler_logprobs_with_vllm():
    from ead.training.config import load_train_config

    with pytest.raises(ConfigError, match="'sampler' needs sampling.engine='hf'"):
        load_train_config(overrides=["sampling.engine=vllm", "algorithm.old_logprobs=sampler"])
    with pytest.raises(ConfigError, match=r"sampling\.vllm\.max_num_seqs must be >= 1"):
        load_train_config(overrides=["sampling.engine=vllm", "sampling.vllm.max_num_seqs=0"])
    config = load_train_config(overrides=["sampling.engine=vllm", "sampling.vllm.gpu_memory_utilization=0.5"])
    assert config.sampling.vllm == VLLMOptions(gpu_memory_utilization=0.5)  # typed, parsed once at load


def test_eval_config_validates_vllm_options():
    from ead.evaluation.runner import EvalConfig

    with pytest.raises(ConfigError, match=r"sampling\.vllm\.dtype must be one of"):
        EvalConfig(sampling={"engine": "vllm", "vllm": {"dtype": "float64"}})


def test_ead_eval_engine_flag_and_vllm_overrides_reach_the_config():
    import argparse

    from ead.evaluation import command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["eval", "--engine", "vllm", "--model", "m", "sampling.vllm.dtype=bfloat16",
                              "sampling.vllm.gpu_memory_utilization=0.8"])
    config = command.build_config(args)
    assert config.sampling.engine == "vllm" and config.sampling.vllm == VLLMOptions(dtype="bfloat16", gpu_memory_utilization=0.8)


def test_each_engine_owns_its_step_seed():
    from ead.rollout.vllm import VLLMEngine  # the module imports vllm only when an engine is built

    hf = HFEngine(None, None)
    assert hf.step_seed(7, 3) is None  # torch's global stream, checkpointed with the run
    vllm_engine = object.__new__(VLLMEngine)
    # vLLM's own generator is not checkpointed: a seed per (run seed, step), distinct across steps and runs
    assert vllm_engine.step_seed(7, 3) == (7 * 1_000_003 + 3) * 2**40
    assert len({vllm_engine.step_seed(s, t) for s in range(3) for t in range(50)}) == 150


def _imported_modules(path):
    import ast

    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_rollout_package_and_integrations_form_no_circle():
    from pathlib import Path

    import ead

    root = Path(ead.__file__).parent
    for path in (root / "rollout").glob("*.py"):
        for module in _imported_modules(path):
            assert not module.startswith(("ead.training", "ead.cli", "ead.evaluation", "ead.experiments")), (path, module)
            assert module.split(".")[0] != "vllm" or path.name == "vllm.py", (path, module)
    for path in (root / "integrations").rglob("*.py"):
        for module in _imported_modules(path):
            assert not module.startswith(("ead.rollout", "ead.engines")), (path, module)
    assert not (root / "engines.py").exists() and not (root / "integrations" / "vllm_engine.py").exists()
