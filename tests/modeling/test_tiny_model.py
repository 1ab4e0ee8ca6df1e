"""Character tokenizer and tiny model: they must behave like a Hub model through the Auto* APIs."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ead.modeling.tiny import (
    CHARSET,
    SPECIAL_TOKENS,
    TinyModelConfig,
    TinyModelConfigError,
    build_char_tokenizer,
    build_tiny_model,
    save_tiny_model,
)

SMALL = TinyModelConfig(num_layers=2, hidden_size=64, num_heads=4, intermediate_size=128)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(tokenizer, SMALL)
    path = save_tiny_model(model, tokenizer, tmp_path_factory.mktemp("tiny"))
    return tokenizer, model, path


def test_special_token_ids(saved):
    tokenizer, _, path = saved
    loaded = AutoTokenizer.from_pretrained(path)
    for tok in (tokenizer, loaded):
        assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
        assert tok.convert_ids_to_tokens([0, 1, 2, 3]) == list(SPECIAL_TOKENS)
        assert len(tok) == len(SPECIAL_TOKENS) + len(CHARSET)
        assert tok.padding_side == "left"


@pytest.mark.parametrize("text", ["3 7 9>5:", "7-3=4,9-4=5", "12 3 40>33:40-12=28,28+3=31", "  a b  "])
def test_round_trip_through_auto_tokenizer(saved, text):
    tokenizer, _, path = saved
    loaded = AutoTokenizer.from_pretrained(path)
    ids = loaded(text)["input_ids"]
    assert ids == tokenizer(text)["input_ids"]
    assert len(ids) == len(text)  # one token per character, spaces included, nothing added
    assert loaded.decode(ids) == text
    assert loaded.decode(ids + [loaded.eos_token_id, loaded.pad_token_id], skip_special_tokens=True) == text


def test_unknown_characters_become_unk(saved):
    _, _, path = saved
    loaded = AutoTokenizer.from_pretrained(path)
    assert loaded("1€2")["input_ids"] == [loaded.convert_tokens_to_ids("1"), loaded.unk_token_id, loaded.convert_tokens_to_ids("2")]


def test_batch_padding_is_on_the_left(saved):
    _, _, path = saved
    loaded = AutoTokenizer.from_pretrained(path)
    enc = loaded(["1 2>3:", "10 20 30>60:"], padding=True, return_tensors="pt")
    assert enc["input_ids"].shape == (2, 12)
    assert enc["input_ids"][0, :6].tolist() == [loaded.pad_token_id] * 6
    assert enc["attention_mask"][0].tolist() == [0] * 6 + [1] * 6


def test_model_loads_through_auto_model_and_matches(saved):
    tokenizer, model, path = saved
    loaded = AutoModelForCausalLM.from_pretrained(path)
    assert type(loaded).__name__ == "LlamaForCausalLM"
    assert loaded.config.vocab_size == len(tokenizer)
    assert (loaded.config.pad_token_id, loaded.config.eos_token_id) == (tokenizer.pad_token_id, tokenizer.eos_token_id)
    gen = loaded.generation_config
    assert (gen.eos_token_id, gen.pad_token_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert gen.temperature == 1.0 and gen.top_k in (0, None) and gen.top_p == 1.0
    ids = torch.tensor([tokenizer("3 7 9>5:")["input_ids"]])  # (1, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model.eval()(ids).logits, rtol=1e-5, atol=1e-5)


def test_default_size_is_tiny():
    tokenizer = build_char_tokenizer()
    params = sum(p.numel() for p in build_tiny_model(tokenizer).parameters())
    assert 0.5e6 < params < 4e6


def test_build_is_seeded_and_leaves_global_rng_alone():
    tokenizer = build_char_tokenizer()
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    a = build_tiny_model(tokenizer, SMALL)
    assert torch.equal(torch.rand(1), expected)
    b = build_tiny_model(tokenizer, SMALL)
    c = build_tiny_model(tokenizer, TinyModelConfig(num_layers=2, hidden_size=64, num_heads=4, intermediate_size=128, seed=1))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters()))


def test_eos_ends_generation(tmp_path):
    """Teach a model to answer every prompt with '7<eos>', then check generate stops and pads after eos."""
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(tokenizer, SMALL)
    prompts = ["1 2>3:", "4 5>9:", "10 2>8:"]
    rows = [tokenizer(p)["input_ids"] + tokenizer("7")["input_ids"] + [tokenizer.eos_token_id] for p in prompts]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        for row in rows:
            ids = torch.tensor([row])  # (1, T)
            labels = ids.clone()
            labels[:, : len(row) - 2] = -100  # learn only '7' and eos
            loss = model(input_ids=ids, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    path = save_tiny_model(model, tokenizer, tmp_path / "m")
    loaded = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    enc = tok(prompts, padding=True, return_tensors="pt")
    out = loaded.generate(**enc, do_sample=False, max_new_tokens=10)
    new = out[:, enc["input_ids"].shape[1] :]
    assert new.shape[1] < 10  # stopped early: every row hit eos
    assert tok.batch_decode(new, skip_special_tokens=True) == ["7", "7", "7"]
    assert new[:, 1].tolist() == [tok.eos_token_id] * 3


def test_sampling_generate_runs(saved):
    _, _, path = saved
    loaded = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    enc = tok(["3 7 9>5:"] * 4, return_tensors="pt", padding=True)
    out = loaded.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=6)
    assert out.shape[0] == 4 and out.shape[1] <= enc["input_ids"].shape[1] + 6


@pytest.mark.parametrize(
    "kwargs, field",
    [({"num_layers": 0}, "num_layers"), ({"hidden_size": 100, "num_heads": 6}, "hidden_size"), ({"num_heads": 1.5}, "num_heads")],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(TinyModelConfigError, match=f"model.{field}"):
        TinyModelConfig(**kwargs)
