"""The lean engine samples exactly the tempered distribution and records exactly log mu / log pi_old.

Every expected value comes from an independent path: a full forward of prompt + response with no
KV cache and no padding, logits upcast to float64, divided by the schedule's tau_t, truncated by a
top-k / nucleus written out here, then softmaxed. Frequencies are checked with a chi-square test.
"""

import pytest
import torch

from conftest import build_test_model, chi_square_pvalue
from ead.rollout import build_engine
from ead.rollout.hf import HFEngine
from ead.rollout.lean import LeanEngine, lean_sample, supports
from ead.schedules import EADSchedule, FixedSchedule

# tau_0 = 1.6, tau_1 = 0.951, tau_2 = 0.4 (floor): three visibly different temperatures.
SCHEDULE = EADSchedule(tau_max=1.6, tau_min=0.4, warmup_tokens=0, d0=1.0, alpha=0.0, d_max=1.0, unit=2.0)
PROMPT = "3 7>5:"


@pytest.fixture(scope="module")
def spread_model(tiny_tokenizer):
    return build_test_model(len(tiny_tokenizer), seed=1, logit_scale=5.0)


@pytest.fixture(scope="module")
def eos_prone_model(tiny_tokenizer):
    """The spread model with a bias on EOS so rows finish at different lengths (the batch gets compacted)."""
    model = build_test_model(len(tiny_tokenizer), seed=1, logit_scale=5.0)
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.zero_()
        head.bias[tiny_tokenizer.eos_token_id] = 2.0
    model.lm_head = head
    return model.eval()


@pytest.fixture(scope="module")
def big_sample(spread_model, tiny_tokenizer, one_thread):
    return lean_sample(spread_model, tiny_tokenizer, [PROMPT] * 6000, SCHEDULE, step=0, max_new_tokens=3,
                       batch_size=3000, seed=123)


def full_forward_logits(model, tokenizer, prompt: str, response: torch.Tensor) -> torch.Tensor:
    """float64 logits predicting each response token, from one uncached forward, ``(len(response), V)``."""
    prompt_ids = torch.tensor([tokenizer(prompt, add_special_tokens=False).input_ids])
    with torch.no_grad():
        logits = model(input_ids=torch.cat([prompt_ids, response.view(1, -1)], 1)).logits[0].double()
    return logits[prompt_ids.shape[1] - 1 : -1]


def truncated_log_softmax(z: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """log softmax of ``z`` (V,) restricted to the top-k, then to the smallest nucleus reaching top_p."""
    order = torch.argsort(z, descending=True)
    keep = torch.zeros_like(z, dtype=torch.bool)
    kept = order[: top_k] if top_k else order
    if top_p is not None:
        probs = torch.softmax(z[kept], -1)
        before = torch.cumsum(probs, 0) - probs  # mass strictly before each token
        kept = kept[before < top_p]
    keep[kept] = True
    out = torch.full_like(z, float("-inf"))
    out[keep] = torch.log_softmax(z[keep], -1)
    return out


@pytest.mark.parametrize("t", [0, 1, 2])
def test_sampled_frequencies_match_tempered_softmax(big_sample, spread_model, tiny_tokenizer, t):
    rows = big_sample.response_mask[:, t].bool()
    if t > 0:  # rows that ended at EOS have no token at t
        rows &= big_sample.response_mask[:, t - 1].bool()
    prompt_ids, response_ids = big_sample.prompt_ids[rows], big_sample.response_ids[rows]
    with torch.no_grad():
        logits = spread_model(input_ids=torch.cat([prompt_ids, response_ids[:, :t]], 1)).logits[:, -1].double()
    tau = SCHEDULE.temperature(t)
    observed = torch.bincount(response_ids[:, t], minlength=logits.shape[1])
    expected = torch.softmax(logits / tau, -1).sum(0)  # rows differ in history for t > 0: sum their distributions
    assert chi_square_pvalue(observed, expected) > 1e-3
    if abs(tau - 1.0) > 0.1:  # power: the untempered distribution must be rejected
        assert chi_square_pvalue(observed, torch.softmax(logits, -1).sum(0)) < 1e-6


def test_top_p_samples_follow_the_truncated_tempered_distribution(spread_model, tiny_tokenizer, one_thread):
    top_k, top_p, tau = 12, 0.8, 1.5
    rollouts = lean_sample(spread_model, tiny_tokenizer, [PROMPT] * 4000, FixedSchedule(tau), max_new_tokens=1,
                           top_k=top_k, top_p=top_p, batch_size=4000, seed=3)
    prompt_ids = torch.tensor([tiny_tokenizer(PROMPT, add_special_tokens=False).input_ids])
    with torch.no_grad():
        z = spread_model(input_ids=prompt_ids).logits[0, -1].double() / tau
    log_mu = truncated_log_softmax(z, top_k, top_p)
    allowed = torch.isfinite(log_mu)
    assert 2 < int(allowed.sum()) < top_k  # the nucleus, not top-k, is what binds here
    observed = torch.bincount(rollouts.response_ids[:, 0], minlength=z.shape[0])
    assert int(observed[~allowed].sum()) == 0
    assert chi_square_pvalue(observed[allowed], 4000 * log_mu[allowed].exp()) > 1e-3


@pytest.mark.parametrize("top_k, top_p", [(None, None), (5, None), (None, 0.9), (8, 0.7)])
def test_recorded_logprobs_equal_independent_recomputation(eos_prone_model, tiny_tokenizer, one_thread, top_k, top_p):
    # Prompts of different lengths (left padding), responses of different lengths (rows finish and are
    # compacted away mid-batch), EAD at step 2 with a warm-up: every per-position path is exercised.
    prompts = ["3 7>5:", "12 4 9>1:", "8>8:", "1 1 1 1>4:"] * 6
    schedule = EADSchedule(tau_max=1.3, tau_min=0.2, warmup_tokens=2, d0=1.0, alpha=1.0, d_max=50.0, unit=3.0)
    model = eos_prone_model
    rollouts = lean_sample(model, tiny_tokenizer, prompts, schedule, step=2, max_new_tokens=12, top_k=top_k,
                           top_p=top_p, batch_size=10, seed=5, capture_target=True)
    lengths = rollouts.lengths
    assert rollouts.finished.any() and len(set(lengths.tolist())) > 2  # early EOS happened: compaction ran
    worst = 0.0
    for row, prompt in enumerate(prompts):
        length = int(lengths[row])
        response = rollouts.response_ids[row, :length]
        logits = full_forward_logits(model, tiny_tokenizer, prompt, response)
        for t in range(length):
            tau = schedule.temperature(t, 2)
            log_mu = truncated_log_softmax(logits[t] / tau, top_k, top_p)
            log_pi = torch.log_softmax(logits[t], -1)
            token = int(response[t])
            got = (rollouts.behaviour_logprobs[row, t], rollouts.target_logprobs[row, t], rollouts.target_entropy[row, t])
            want = (log_mu[token], log_pi[token], -(log_pi.exp() * log_pi).sum())
            worst = max(worst, *(abs(float(g) - float(w)) for g, w in zip(got, want)))
            assert float(rollouts.temperatures[row, t]) == pytest.approx(tau, abs=1e-6)
        # past EOS: padding, masked, zeroed
        assert rollouts.response_mask[row, length:].sum() == 0
        assert bool((rollouts.response_ids[row, length:] == tiny_tokenizer.pad_token_id).all())
        assert float(rollouts.behaviour_logprobs[row, length:].abs().sum()) == 0.0
        assert bool(rollouts.finished[row]) == (int(response[-1]) == tiny_tokenizer.eos_token_id)
    assert worst < 5e-5, worst  # float32 forward vs float64 softmax of the same weights: rounding only


def test_seed_reproduces_and_leaves_the_global_rng(spread_model, tiny_tokenizer):
    torch.manual_seed(7)
    before = torch.get_rng_state()
    a = lean_sample(spread_model, tiny_tokenizer, [PROMPT] * 16, SCHEDULE, max_new_tokens=6, seed=11)
    b = lean_sample(spread_model, tiny_tokenizer, [PROMPT] * 16, SCHEDULE, max_new_tokens=6, seed=11)
    assert torch.equal(a.response_ids, b.response_ids) and a.texts == b.texts
    assert torch.equal(torch.get_rng_state(), before)


def test_auto_picks_lean_for_supported_models_and_hf_for_others(spread_model, tiny_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    assert isinstance(build_engine("auto", model=spread_model, tokenizer=tiny_tokenizer), LeanEngine)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tiny_tokenizer), n_embd=16, n_layer=1, n_head=2))
    assert "gpt2" in supports(gpt2)
    assert isinstance(build_engine("auto", model=gpt2, tokenizer=tiny_tokenizer), HFEngine)
    with pytest.raises(ValueError, match="lean engine cannot sample from this model: model_type 'gpt2'"):
        build_engine("lean", model=gpt2, tokenizer=tiny_tokenizer)


def _architecture(kind: str, vocab: int):
    import transformers

    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    if kind == "llama":
        config = transformers.LlamaConfig(**common, attention_bias=True, tie_word_embeddings=True)
    elif kind == "qwen3":
        config = transformers.Qwen3Config(**common, head_dim=16)
    else:
        config = transformers.MistralConfig(**common, sliding_window=None)
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("kind", ["llama", "qwen3", "mistral"])
def test_lean_decoder_logits_equal_the_models_own_forward(kind, one_thread):
    from ead.rollout.lean import LeanDecoder

    model = _architecture(kind, vocab=40)
    assert supports(model) is None
    ids = torch.randint(2, 40, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding
    mask[1, :1] = 0
    decoder = LeanDecoder(model, max_length=9)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        got = [decoder(ids[:, :6], positions[:, :6], mask)]  # prefill 6, then one token at a time
        got += [decoder(ids[:, j : j + 1], positions[:, j : j + 1], mask) for j in range(6, 9)]
        want = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, 5:]  # (3, 4, V)
    for j, logits in enumerate(got):
        torch.testing.assert_close(logits, want[:, j], atol=1e-5, rtol=0)
