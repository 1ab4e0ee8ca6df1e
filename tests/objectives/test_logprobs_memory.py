"""Log-probs through the LM head in chunks: same values and gradients as the naive full-logits
computation (float64 reference), gradient checkpointing changes nothing, and no (B, T, V) tensor."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ead.objectives.logprobs import lm_head_applied_here, sequence_logprobs_and_entropy


def _llama(vocab: int, hidden: int = 32, layers: int = 2, seed: int = 0, tie: bool = False):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                         tie_word_embeddings=tie, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)  # spread logits: entropies and tempered log-probs well away from uniform
    return model


def _batch(vocab: int, rows: int = 3, prompt: int = 5, response: int = 7, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    prompt_ids = torch.randint(2, vocab, (rows, prompt), generator=generator)
    prompt_mask = torch.ones(rows, prompt, dtype=torch.long)
    prompt_mask[0, :3] = 0  # left padding, and column 0 is padding in every row (sliced off)
    prompt_mask[1:, 0] = 0
    response_ids = torch.randint(2, vocab, (rows, response), generator=generator)
    response_mask = torch.ones(rows, response, dtype=torch.long)
    response_mask[0, 4:] = 0
    response_mask[1:, 6:] = 0  # the last column is padding everywhere (sliced off)
    temperatures = (0.3 + torch.rand(rows, response, generator=generator)) * response_mask  # 0 on padding
    return prompt_ids * prompt_mask, prompt_mask, response_ids * response_mask, response_mask, temperatures


def _naive_float64(model, prompt_ids, prompt_mask, response_ids, response_mask, temperatures):
    """Independent reference: one full forward of the float64 model, full (B, T, V) logits, log-softmax."""
    ids = torch.cat([prompt_ids, response_ids], 1)
    attention = torch.cat([prompt_mask, response_mask], 1)
    positions = (attention.cumsum(1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=attention, position_ids=positions).logits[:, prompt_ids.shape[1] - 1 : -1]
    safe = torch.where(response_mask.bool(), temperatures, torch.ones_like(temperatures)).double()
    log_p = torch.log_softmax(logits / safe.unsqueeze(-1), -1)  # (B, T, V)
    picked = log_p.gather(-1, response_ids.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    mask = response_mask.bool()
    return torch.where(mask, picked, 0.0), torch.where(mask, entropy, 0.0)


@pytest.mark.parametrize("tie", [False, True])
def test_values_and_gradients_equal_the_float64_full_logits_computation(tie, one_thread):
    vocab = 50
    model = _llama(vocab, tie=tie).train()
    reference = _llama(vocab, tie=tie).double().train()
    reference.load_state_dict(model.state_dict())
    batch = _batch(vocab)
    weights = torch.randn(2, *batch[2].shape, generator=torch.Generator().manual_seed(5)).double()
    assert lm_head_applied_here(model)

    lp, ent = sequence_logprobs_and_entropy(model, *batch, with_entropy=True, token_chunk=4)
    ((lp.double() * weights[0]).sum() + (ent.double() * weights[1]).sum()).backward()
    want_lp, want_ent = _naive_float64(reference, *batch)
    ((want_lp * weights[0]).sum() + (want_ent * weights[1]).sum()).backward()

    torch.testing.assert_close(lp.double(), want_lp.detach(), atol=2e-5, rtol=0)
    torch.testing.assert_close(ent.double(), want_ent.detach(), atol=2e-5, rtol=0)
    padding = batch[3] == 0
    assert float(lp.detach()[padding].abs().sum()) == 0.0 and float(ent.detach()[padding].abs().sum()) == 0.0
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name  # padding temperatures are 0: no NaN
        scale = float(q.grad.abs().max()) + 1e-12
        assert float((p.grad.double() - q.grad).abs().max()) / scale < 1e-4, name


def test_chunk_size_and_gradient_checkpointing_change_nothing(one_thread):
    vocab = 50
    batch = _batch(vocab, rows=4, response=9, seed=3)

    def run(token_chunk: int, checkpointing: bool):
        model = _llama(vocab, seed=2).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        lp, ent = sequence_logprobs_and_entropy(model, *batch, with_entropy=True, token_chunk=token_chunk)
        (lp.sum() + 0.3 * ent.sum()).backward()
        return lp.detach(), ent.detach(), [p.grad.clone() for p in model.parameters()]

    base = run(1024, False)
    for variant in (run(1, False), run(5, True), run(1024, True)):
        torch.testing.assert_close(variant[0], base[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(variant[1], base[1], atol=1e-6, rtol=0)
        for a, b in zip(variant[2], base[2]):  # float32 summation order differs between chunkings: rounding only
            assert float((a - b).abs().max()) <= 1e-5 * float(b.abs().max()), float((a - b).abs().max())


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any op produces (numel), forward and backward."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("grad", [False, True])
def test_no_batch_by_length_by_vocab_tensor_at_a_152k_vocabulary(grad, one_thread):
    vocab, rows, length, chunk = 152_064, 4, 48, 32
    model = _llama(vocab, hidden=8, layers=1).train()
    prompt_ids = torch.randint(2, vocab, (rows, 4))
    response_ids = torch.randint(2, vocab, (rows, length))
    args = (prompt_ids, torch.ones_like(prompt_ids), response_ids, torch.ones_like(response_ids))
    full = rows * length * vocab
    with torch.set_grad_enabled(grad):
        with LargestTensor() as chunked:
            lp, ent = sequence_logprobs_and_entropy(model, *args, with_entropy=True, token_chunk=chunk)
            if grad:
                (lp.sum() + ent.sum()).backward()
    assert chunked.largest <= chunk * vocab < full / 5
    # power: the same check catches the full-logits path (what the module did before)
    with torch.no_grad(), LargestTensor() as naive:
        model(input_ids=torch.cat(args[:3:2], 1)).logits
    assert naive.largest >= full
