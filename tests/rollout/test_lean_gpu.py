"""The lean engine on a CUDA device, in bf16: same distribution as HF generate, and how much faster.

Skipped without CUDA. On a GPU these check what the CPU tests cannot: the preallocated cache and
the compaction on device tensors, bf16 weights (logits upcast to float32 before the temperature),
and the throughput ratio against ``generate`` at a realistic batch (printed, never asserted).
"""

import time

import pytest
import torch

from conftest import chi_square_pvalue

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none in this session)")]


def _qwen_shaped_model(vocab_size: int, hidden: int, layers: int, dtype=torch.bfloat16):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=layers, num_attention_heads=hidden // 64,
                         num_key_value_heads=2 if (hidden // 64) % 2 == 0 else 1, max_position_embeddings=2048,
                         pad_token_id=0, eos_token_id=1, bos_token_id=1, tie_word_embeddings=True)
    return Qwen2ForCausalLM(config).to("cuda", dtype).eval()


def test_lean_matches_hf_distribution_and_logprobs_in_bf16(tiny_tokenizer):
    from ead.rollout.lean import lean_sample
    from ead.sampling import sample
    from ead.schedules import FixedSchedule

    model = _qwen_shaped_model(len(tiny_tokenizer), hidden=256, layers=4)
    schedule = FixedSchedule(1.3)
    lean = lean_sample(model, tiny_tokenizer, ["3 7>5:"] * 8000, schedule, max_new_tokens=4, batch_size=8000, seed=1,
                       capture_target=True)
    hf = sample(model, tiny_tokenizer, ["3 7>5:"] * 8000, schedule, max_new_tokens=4, batch_size=8000, seed=2,
                capture_target=True)
    first_lean = torch.bincount(lean.response_ids[:, 0].cpu(), minlength=len(tiny_tokenizer)).double()
    first_hf = torch.bincount(hf.response_ids[:, 0].cpu(), minlength=len(tiny_tokenizer)).double()
    with torch.no_grad():
        prompt = lean.prompt_ids[:1]
        probs = torch.softmax(model(input_ids=prompt).logits[0, -1].double() / 1.3, -1).cpu()
    assert chi_square_pvalue(first_lean, 8000 * probs) > 1e-3
    assert chi_square_pvalue(first_hf, 8000 * probs) > 1e-3
    # recorded log mu of the first token: exactly the tempered log-softmax of the bf16 model's logits
    expected = torch.log_softmax(model(input_ids=prompt).logits[0, -1].float() / 1.3, -1).cpu()
    torch.testing.assert_close(lean.behaviour_logprobs[:, 0].cpu(), expected[lean.response_ids[:, 0].cpu()],
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("hidden, layers", [(128, 4), (896, 24)])  # built-in-sized; Qwen2.5-0.5B-shaped
def test_lean_vs_hf_throughput_printout(tiny_tokenizer, hidden, layers, capsys):
    from ead.rollout.lean import lean_sample
    from ead.sampling import sample
    from ead.schedules import EADSchedule

    model = _qwen_shaped_model(len(tiny_tokenizer), hidden=hidden, layers=layers)
    schedule = EADSchedule(unit=1.0)
    prompts = ["3 7 9>5:"] * 256
    rates = {"lean": [], "hf": []}
    for _ in range(2):  # interleaved A B A B
        for name, fn in (("lean", lean_sample), ("hf", sample)):
            torch.cuda.synchronize()
            start = time.perf_counter()
            out = fn(model, tiny_tokenizer, prompts, schedule, max_new_tokens=256, batch_size=256, seed=0)
            torch.cuda.synchronize()
            rates[name].append(float(out.response_mask.sum()) / (time.perf_counter() - start))
    with capsys.disabled():
        print(f"\n[{torch.cuda.get_device_name()}] hidden {hidden} x {layers} layers, bf16, B=256 T=256: "
              f"lean {max(rates['lean']):.0f} tok/s, hf {max(rates['hf']):.0f} tok/s, "
              f"ratio {max(rates['lean']) / max(rates['hf']):.2f}x")
    assert all(r > 0 for r in rates["lean"] + rates["hf"])
