"""Sampling ignores the checkpoint's generation_config; what the caller asks for is part of mu.

Every expected value here comes from an independent path: one full forward pass over prompt +
response (no KV cache, no processor), float64 logits, and the penalty / temperature / truncation
written out by hand below.
"""

import pytest
import torch
from transformers import AutoModelForCausalLM, GenerationConfig

from conftest import build_test_model, chi_square_pvalue
from ead.sampling import sample
from ead.schedules import EADSchedule, FixedSchedule

SCHEDULE = EADSchedule(tau_max=1.4, tau_min=0.3, warmup_tokens=1, d0=1.0, alpha=1.0, d_max=50.0, unit=3.0)
PROMPTS = ["3 7>5:", "12 4 9>1:", "8>8:", "1 1 1 1>4:"] * 3

# A checkpoint whose generation_config.json sets everything that would change the logits.
HOSTILE_GENERATION_CONFIG = dict(
    do_sample=True, temperature=0.7, top_k=5, top_p=0.8, min_p=0.5, typical_p=0.5, epsilon_cutoff=0.01,
    eta_cutoff=0.01, repetition_penalty=3.0, no_repeat_ngram_size=1, min_new_tokens=4, bad_words_ids=[[5], [6]],
    suppress_tokens=[7, 8], begin_suppress_tokens=[9], forced_eos_token_id=1,
)


@pytest.fixture(scope="module")
def hostile_model(tiny_tokenizer, tmp_path_factory, one_thread):
    """A tiny model saved with the hostile generation_config.json and loaded back from disk."""
    path = tmp_path_factory.mktemp("hostile")
    model = build_test_model(len(tiny_tokenizer), seed=4, logit_scale=4.0)
    model.generation_config = GenerationConfig(**HOSTILE_GENERATION_CONFIG, pad_token_id=0, eos_token_id=1)
    model.save_pretrained(path)
    loaded = AutoModelForCausalLM.from_pretrained(path).eval()
    assert loaded.generation_config.repetition_penalty == 3.0 and loaded.generation_config.min_p == 0.5
    return loaded


def full_forward_logits(model, tokenizer, prompt: str, response: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt ids (P,), float64 logits predicting each response token (T, V)) from one forward pass."""
    prompt_ids = torch.tensor(tokenizer(prompt, add_special_tokens=False).input_ids)
    with torch.no_grad():
        logits = model(input_ids=torch.cat([prompt_ids, response]).view(1, -1)).logits[0].double()
    return prompt_ids, logits[len(prompt_ids) - 1 : -1]


def penalised_by_hand(z: torch.Tensor, history: list[int], penalty: float) -> torch.Tensor:
    z = z.clone()
    for token in set(history):
        z[token] = z[token] * penalty if z[token] < 0 else z[token] / penalty
    return z


def min_p_by_hand(z: torch.Tensor, min_p: float) -> torch.Tensor:
    p = torch.softmax(z, -1)
    return torch.where(p >= min_p * p.max(), z, torch.full_like(z, float("-inf")))


def check_rows(rollouts, model, tokenizer, step, behaviour_logits):
    """Recorded log mu / log pi_old / tau against the independent path, every real token of every row."""
    checked = 0
    for row, prompt in enumerate(PROMPTS):
        length = int(rollouts.lengths[row])
        response = rollouts.response_ids[row, :length]
        prompt_ids, logits = full_forward_logits(model, tokenizer, prompt, response)
        for t in range(length):
            tau = SCHEDULE.temperature(t, step)
            history = prompt_ids.tolist() + response[:t].tolist()
            log_mu = torch.log_softmax(behaviour_logits(logits[t], history, tau), -1)[response[t]]
            log_pi = torch.log_softmax(logits[t], -1)[response[t]]
            assert float(rollouts.behaviour_logprobs[row, t]) == pytest.approx(float(log_mu), abs=2e-4)
            assert float(rollouts.target_logprobs[row, t]) == pytest.approx(float(log_pi), abs=2e-4)
            assert float(rollouts.temperatures[row, t]) == pytest.approx(tau, abs=1e-6)
            checked += 1
    assert checked > 30


def test_checkpoint_generation_config_does_not_leak(hostile_model, tiny_tokenizer):
    rollouts = sample(hostile_model, tiny_tokenizer, PROMPTS, SCHEDULE, step=1, max_new_tokens=10, seed=3,
                      capture_target=True)
    check_rows(rollouts, hostile_model, tiny_tokenizer, 1, lambda z, history, tau: z / tau)
    assert hostile_model.generation_config.repetition_penalty == 3.0  # restored after the call


def test_hostile_config_would_have_changed_the_draws(hostile_model, tiny_tokenizer):
    """Power check: with the checkpoint's settings, transformers' own sampler never draws suppressed tokens."""
    rollouts = sample(hostile_model, tiny_tokenizer, ["3 7>5:"] * 3000, FixedSchedule(1.0), max_new_tokens=1, seed=0)
    with torch.no_grad():
        ids = torch.tensor([tiny_tokenizer("3 7>5:", add_special_tokens=False).input_ids])
        p = torch.softmax(hostile_model(input_ids=ids).logits[0, -1].double(), -1)
    observed = torch.bincount(rollouts.response_ids[:, 0], minlength=p.shape[0])
    assert chi_square_pvalue(observed, p * 3000) > 1e-3  # the plain softmax, not the hostile pipeline
    assert int(observed[[5, 6, 7, 8, 9]].sum()) > 0 or float(p[[5, 6, 7, 8, 9]].sum()) * 3000 < 3


def test_requested_repetition_penalty_and_min_p_are_part_of_mu(hostile_model, tiny_tokenizer):
    penalty, min_p = 2.5, 0.2

    def behaviour(z, history, tau):
        return min_p_by_hand(penalised_by_hand(z, history, penalty) / tau, min_p)

    rollouts = sample(hostile_model, tiny_tokenizer, PROMPTS, SCHEDULE, step=0, max_new_tokens=10, seed=4,
                      capture_target=True, repetition_penalty=penalty, min_p=min_p)
    check_rows(rollouts, hostile_model, tiny_tokenizer, 0, behaviour)


def test_min_p_sampled_frequencies_match_recorded_distribution(hostile_model, tiny_tokenizer):
    min_p, tau, n = 0.3, 1.0, 4000
    rollouts = sample(hostile_model, tiny_tokenizer, ["3 7>5:"] * n, FixedSchedule(tau), max_new_tokens=1, seed=8,
                      min_p=min_p)
    ids = torch.tensor(tiny_tokenizer("3 7>5:", add_special_tokens=False).input_ids)
    with torch.no_grad():
        z = hostile_model(input_ids=ids.view(1, -1)).logits[0, -1].double()
    expected = torch.softmax(min_p_by_hand(z / tau, min_p), -1)
    assert 3 <= int((expected > 0).sum()) < expected.shape[0] - 5  # min-p really truncates here
    observed = torch.bincount(rollouts.response_ids[:, 0], minlength=expected.shape[0])
    assert int(observed[expected == 0].sum()) == 0
    support = expected > 0
    assert chi_square_pvalue(observed[support], expected[support] * n) > 1e-3
    # recorded mu of each row is that distribution's log-prob of its token
    recorded = rollouts.behaviour_logprobs[:, 0].double()
    assert torch.allclose(recorded, expected.log()[rollouts.response_ids[:, 0]], atol=2e-4)
    # power: without min-p the frequencies are rejected
    untruncated = torch.softmax(z / tau, -1) * n
    assert chi_square_pvalue(observed, untruncated) < 1e-6


def test_padding_after_eos_is_zero_not_nan_under_top_k(tiny_tokenizer):
    """Padding after EOS lies outside top-k: its log mu is -inf, and -inf * mask 0 used to be NaN."""
    from ead.sampling import build_rollouts
    from ead.training.config import load_train_config
    from ead.training.update import importance_and_drift, update_settings

    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    response_ids = torch.tensor([[5, eos, pad, pad], [6, 7, 8, eos]])
    behaviour = torch.tensor([[-0.5, -1.0, float("-inf"), float("-inf")], [-0.2, -0.3, -0.4, -0.1]])
    target = torch.tensor([[-0.7, -1.2, -9.0, -9.0], [-0.1, -0.2, -0.3, -0.2]])
    rollouts = build_rollouts(tiny_tokenizer, torch.ones(2, 1, dtype=torch.long), torch.ones(2, 1, dtype=torch.long),
                              response_ids, behaviour, torch.full((2, 4), 0.8), target, torch.zeros(2, 4))
    assert torch.isfinite(rollouts.behaviour_logprobs).all()
    assert rollouts.behaviour_logprobs[0, 2:].tolist() == [0.0, 0.0]
    settings = update_settings(load_train_config(overrides=["algorithm.importance_level=token"]))
    _, stats = importance_and_drift(rollouts.target_logprobs, rollouts.behaviour_logprobs, rollouts.response_mask,
                                    settings)
    # k1 estimate of KL(mu || pi_old) by hand over the 6 real tokens
    expected = ((-0.5 + 0.7) + (-1.0 + 1.2) + (-0.2 + 0.1) + (-0.3 + 0.2) + (-0.4 + 0.3) + (-0.1 + 0.2)) / 6
    assert stats["is/kl_behaviour_to_pi"] == pytest.approx(expected, abs=1e-6)


def test_sampled_rollouts_with_top_k_are_finite_everywhere(hostile_model, tiny_tokenizer):
    rollouts = sample(hostile_model, tiny_tokenizer, PROMPTS * 4, FixedSchedule(2.0), max_new_tokens=16, top_k=20,
                      seed=1, capture_target=True)
    assert (rollouts.lengths < rollouts.response_ids.shape[1]).any()  # some rows ended early: padding exists
    for values in (rollouts.behaviour_logprobs, rollouts.target_logprobs, rollouts.target_entropy):
        assert torch.isfinite(values).all()


def test_chat_template_end_of_turn_token_ends_a_response(tiny_tokenizer):
    """A ChatML template's <|im_end|> stops a response even when the tokenizer's eos is another token."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from ead.sampling import build_rollouts, eos_token_ids

    vocab = {"<pad>": 0, "<|endoftext|>": 1, "<|im_end|>": 2, "a": 3, "b": 4}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<|endoftext|>")
    assert eos_token_ids(tokenizer) == [1]  # no chat template: eos only
    tokenizer.chat_template = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"
    assert eos_token_ids(tokenizer) == [1, 2]
    rollouts = build_rollouts(tokenizer, torch.ones(1, 1, dtype=torch.long), torch.ones(1, 1, dtype=torch.long),
                              torch.tensor([[3, 2, 4, 4]]), torch.zeros(1, 4), torch.ones(1, 4))
    assert rollouts.response_mask.tolist() == [[1, 1, 0, 0]] and bool(rollouts.finished[0])
