"""LoRA through peft: config validation, sampling exactness, gradients, frozen base, exact resume."""

import pytest
import torch

pytest.importorskip("peft", reason="LoRA needs the peft extra: pip install 'ead-rlvr[lora]'")

from conftest import build_test_model, crash_then_resume, tiny_overrides  # noqa: E402
from ead.config import ConfigError  # noqa: E402
from ead.modeling.lora import AdapterDisabledReference, LoraOptions, apply_lora  # noqa: E402
from ead.rollout import build_engine  # noqa: E402
from ead.rollout.lean import LeanEngine, lean_sample  # noqa: E402
from ead.schedules import EADSchedule  # noqa: E402
from ead.training.config import load_train_config  # noqa: E402
from ead.training.logger import read_metrics  # noqa: E402

SCHEDULE = EADSchedule(tau_max=1.6, tau_min=0.4, warmup_tokens=0, d0=1.0, alpha=0.0, d_max=1.0, unit=2.0)
LORA = ["model.lora={r: 4, alpha: 8, target_modules: [q_proj, v_proj, down_proj]}"]


def lora_model(tokenizer, seed=1, dtype=torch.float32, target_modules=("q_proj", "v_proj", "down_proj")):
    """A tiny Qwen2 with LoRA adapters whose B is random (a fresh adapter is zero: it would test nothing)."""
    model = apply_lora(build_test_model(len(tokenizer), seed=seed, logit_scale=5.0),
                       LoraOptions(r=4, alpha=8.0, target_modules=list(target_modules))).to(dtype)
    torch.manual_seed(seed + 100)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    return model.eval()


# ------------------------------------------------------------------ config


def test_lora_config_is_parsed_and_validated_with_dotted_fields(tiny_model_dir, tmp_path):
    base = tiny_overrides(tiny_model_dir, tmp_path / "run")
    assert load_train_config(overrides=base).model.lora is None  # default: full fine-tuning
    lora = load_train_config(overrides=base + ["model.lora={r: 4}"]).model.lora
    assert (lora.r, lora.alpha, lora.target_modules) == (4, 16.0, ["q_proj", "k_proj", "v_proj", "o_proj"])
    assert load_train_config(overrides=base + ["model.lora.target_modules=all-linear"]).model.lora.target_modules == "all-linear"
    for bad, field in (("model.lora.r=0", "model.lora.r"), ("model.lora.dropout=1.5", "model.lora.dropout"),
                       ("model.lora.rank=4", "model.lora.rank"), ("model.lora.target_modules=[]", "model.lora.target_modules")):
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            load_train_config(overrides=base + [bad])
    with pytest.raises(ConfigError, match=r"model\.lora.*vllm"):
        load_train_config(overrides=base + ["model.lora={r: 4}", "sampling.engine=vllm"])


def test_target_modules_that_match_nothing_name_the_field_and_the_real_layers(tiny_tokenizer):
    with pytest.raises(ConfigError, match=r"model\.lora\.target_modules.*q_proj"):
        apply_lora(build_test_model(len(tiny_tokenizer)), LoraOptions(target_modules=["query"]))


def test_fresh_adapter_starts_equal_to_base_and_reference_is_the_base(tiny_tokenizer):
    base = build_test_model(len(tiny_tokenizer), seed=2, logit_scale=5.0)
    ids = torch.tensor([[5, 9, 12, 7, 3]])
    with torch.no_grad():
        expected = base(input_ids=ids).logits.clone()
        fresh = apply_lora(base, LoraOptions(r=4))
        assert torch.equal(fresh(input_ids=ids).logits, expected)  # B = 0
        trained = lora_model(tiny_tokenizer, seed=2, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"))
        assert not torch.allclose(trained(input_ids=ids).logits, expected, atol=1e-3)
        trained.train()
        reference = AdapterDisabledReference(trained)
        assert torch.allclose(reference(input_ids=ids).logits, expected, atol=1e-6)
        assert trained.training  # the reference pass leaves the policy's mode alone
        assert not torch.allclose(trained.eval()(input_ids=ids).logits, expected, atol=1e-3)  # adapters back on


# ------------------------------------------------------------------ sampling


@pytest.mark.parametrize("engine_name", ["lean", "hf"])
def test_engines_on_a_peft_model_record_the_adapted_log_mu(tiny_tokenizer, one_thread, engine_name):
    model = lora_model(tiny_tokenizer)
    if engine_name == "lean":
        engine = build_engine("auto", model=model, model_path=None, tokenizer=tiny_tokenizer, batch_size=8)
        assert isinstance(engine, LeanEngine)  # auto drives the LoRA layers itself, no fallback to generate()
    prompts = ["3 7>5:", "1 2 3>6:", "9>9:"] * 2
    if engine_name == "lean":
        out = lean_sample(model, tiny_tokenizer, prompts, SCHEDULE, max_new_tokens=5, seed=7, capture_target=True)
    else:
        from ead.sampling import sample

        out = sample(model, tiny_tokenizer, prompts, SCHEDULE, max_new_tokens=5, seed=7, capture_target=True)
    checked = 0
    for row in range(len(prompts)):
        n = int(out.response_mask[row].sum())
        prompt = torch.tensor([tiny_tokenizer(prompts[row], add_special_tokens=False).input_ids])
        response = out.response_ids[row, :n]
        with torch.no_grad():  # one uncached forward through the PeftModel, no padding, float64 softmax
            logits = model(input_ids=torch.cat([prompt, response.view(1, -1)], 1)).logits[0].double()
        logits = logits[prompt.shape[1] - 1 : -1]  # (n, V): predictions of the response tokens
        tau = torch.tensor([SCHEDULE.temperature(t) for t in range(n)], dtype=torch.float64)
        log_mu = torch.log_softmax(logits / tau[:, None], -1).gather(1, response.view(-1, 1)).squeeze(1)
        log_pi = torch.log_softmax(logits, -1).gather(1, response.view(-1, 1)).squeeze(1)
        assert torch.allclose(out.behaviour_logprobs[row, :n].double(), log_mu, atol=1e-4)
        assert torch.allclose(out.target_logprobs[row, :n].double(), log_pi, atol=1e-4)
        checked += n
    assert checked >= 6


# ------------------------------------------------------------------ gradients


def test_gradient_reaches_the_adapters_finite_difference(tiny_tokenizer):
    model = lora_model(tiny_tokenizer, dtype=torch.float64)
    ids = torch.tensor([[5, 9, 12, 7, 3, 20, 11]])

    def objective() -> torch.Tensor:  # sum of next-token log-probs: what the policy gradient differentiates
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
        return logp.gather(1, ids[0, 1:].view(-1, 1)).sum()

    objective().backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)  # only adapters train
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)
    grad = {n: p.grad.clone() for n, p in trainable.items()}
    assert all(g.abs().sum() > 0 for g in grad.values())  # every adapter matrix gets a gradient
    # Directional derivatives by central differences (h = 1e-3: the RMSNorms compute in float32 even in a
    # float64 model, so a smaller step drowns in their rounding): along the gradient and along a random direction.
    norm = torch.sqrt(sum((g * g).sum() for g in grad.values()))
    torch.manual_seed(0)
    for direction in ({n: g / norm for n, g in grad.items()}, {n: torch.randn_like(g) for n, g in grad.items()}):
        analytic = sum((grad[n] * direction[n]).sum() for n in grad).item()
        h = 1e-3
        with torch.no_grad():
            for n, p in trainable.items():
                p.add_(direction[n], alpha=h)
            up = objective().item()
            for n, p in trainable.items():
                p.add_(direction[n], alpha=-2 * h)
            down = objective().item()
            for n, p in trainable.items():
                p.add_(direction[n], alpha=h)
        assert analytic == pytest.approx((up - down) / (2 * h), rel=1e-2, abs=1e-3 * norm.item())


# ------------------------------------------------------------------ training


def _lora_overrides(model_dir, out_dir):
    # A random policy earns no reward (all advantages 0): the entropy bonus and the KL make the gradient non-zero.
    return tiny_overrides(model_dir, out_dir) + LORA + ["algorithm.kl_coef=0.05", "algorithm.entropy_coef=0.05",
                                                        "train.lr=5e-2"]


def test_a_lora_step_changes_only_the_adapters(tiny_model_dir, tmp_path, monkeypatch):
    import ead.training.trainer as trainer_module

    real_update, seen = trainer_module.ppo_update, {}

    def recording_update(model, optimizer, *args, **kwargs):
        if not seen:
            seen["model"] = model
            seen["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}
            seen["optimized"] = [p for group in optimizer.param_groups for p in group["params"]]
        return real_update(model, optimizer, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "ppo_update", recording_update)
    overrides = _lora_overrides(tiny_model_dir, tmp_path / "run") + ["train.steps=1", "eval.every=0"]
    run_dir = trainer_module.train(load_train_config(overrides=overrides))
    model, before = seen["model"], seen["before"]
    after = dict(model.named_parameters())
    adapters = [n for n in before if "lora_" in n]
    assert adapters and all(after[n].requires_grad for n in adapters)
    assert {id(p) for p in seen["optimized"]} == {id(after[n]) for n in adapters}  # the optimizer sees adapters only
    assert all(torch.equal(after[n], before[n]) for n in before if n not in adapters)  # base bit-identical
    assert any(not torch.equal(after[n], before[n]) for n in adapters)
    saved = run_dir / "checkpoints" / "step_000001" / "model"
    assert (saved / "adapter_model.safetensors").is_file() and not (saved / "model.safetensors").exists()
    # `ead eval --model <checkpoint>/model` loads it: transformers reads the adapter and its base (model.path)
    from ead.modeling.loading import load_model

    ids = torch.tensor([[5, 9, 12, 7, 3]])
    with torch.no_grad():
        assert torch.equal(load_model(saved).eval()(input_ids=ids).logits, model.eval()(input_ids=ids).logits)


def test_interrupted_lora_run_resumes_exactly(tiny_model_dir, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from ead.training.trainer import train

    straight = train(load_train_config(overrides=_lora_overrides(tiny_model_dir, tmp_path / "straight")))
    overrides = _lora_overrides(tiny_model_dir, tmp_path / "resumed")
    resumed = crash_then_resume(lambda: load_train_config(overrides=overrides), monkeypatch, crash_on_update=4)

    def comparable(run_dir):
        return [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))}
                for r in read_metrics(run_dir / "metrics.jsonl")]

    assert comparable(resumed) == comparable(straight)
    # the reference is the base (adapters off), not the policy itself: the KL to it grows from 0 as the adapters train
    assert all(r["policy/kl_to_ref"] > 1e-4 for r in read_metrics(straight / "metrics.jsonl") if r["step"] >= 1)
    a = load_file(straight / "checkpoints" / "step_000004" / "model" / "adapter_model.safetensors")
    b = load_file(resumed / "checkpoints" / "step_000004" / "model" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    first = load_file(straight / "checkpoints" / "step_000002" / "model" / "adapter_model.safetensors")
    assert any(not torch.equal(first[k], a[k]) for k in a)  # the adapters kept training after the resume point
