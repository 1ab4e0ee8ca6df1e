"""Peak memory of the training log-prob pass (forward + backward) vs the naive full-logits pass.

A synthetic Llama with a 152,064-token vocabulary (Qwen2's) and a small hidden size, on CPU,
float32. For each response length T, each variant runs in a fresh subprocess: the model is built
and warmed up (gradients allocated) at T = 8, then one forward + backward at T; the reported
figure is the growth of the process's peak resident memory (``ru_maxrss``) over the warmed-up
peak, i.e. memory beyond the weights and their gradients. Variants alternate per T.

* ``chunked``: :func:`ead.objectives.logprobs.sequence_logprobs_and_entropy` (hidden states
  through the LM head in checkpointed chunks of real tokens);
* ``naive``: the previous implementation: the model's full ``(B, P + T, V)`` logits, upcast to
  float32 one chunk of positions at a time.

Target: chunked peak grows linearly in B*T (O(B*T*H) plus one (chunk, V) slab), no (B, T, V) tensor.

    python benchmarks/bench_logprob_memory.py --rows 2 --lengths 64 128 256 512 --token-chunk 128
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch

VOCAB = 152_064


def _model(hidden: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                         tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    return LlamaForCausalLM(config).train()


def naive_logprobs(model, prompt_ids, prompt_mask, response_ids, response_mask, position_chunk: int = 256):
    """The pre-chunking implementation: full logits from the model, upcast per chunk of positions."""
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, response_mask], dim=1)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
    logits = logits[:, prompt_ids.shape[1] - 1 : -1, :]  # (B, T, V)
    parts, entropies = [], []
    for start in range(0, logits.shape[1], position_chunk):
        z = logits[:, start : start + position_chunk].float()
        log_z = torch.logsumexp(z, -1)
        parts.append(z.gather(-1, response_ids[:, start : start + position_chunk].unsqueeze(-1)).squeeze(-1) - log_z)
        entropies.append(log_z - (torch.softmax(z, -1) * z).sum(-1))
    return torch.cat(parts, 1), torch.cat(entropies, 1)


def _child(variant: str, rows: int, length: int, hidden: int, token_chunk: int) -> None:
    from ead.objectives.logprobs import sequence_logprobs_and_entropy

    torch.set_num_threads(1)
    model = _model(hidden)

    def run(t: int) -> None:
        prompt = torch.randint(2, VOCAB, (rows, 16))
        response = torch.randint(2, VOCAB, (rows, t))
        args = (prompt, torch.ones_like(prompt), response, torch.ones_like(response))
        if variant == "chunked":
            lp, ent = sequence_logprobs_and_entropy(model, *args, with_entropy=True, token_chunk=token_chunk)
        else:
            lp, ent = naive_logprobs(model, *args)
        (lp.sum() + 0.1 * ent.sum()).backward()

    run(8)  # allocates the gradients: what remains is activation memory
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run(length)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"variant": variant, "T": length, "peak_growth_mb": (after - before) / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--token-chunk", type=int, default=128, help="chunked variant: tokens per LM-head chunk")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], args.rows, int(args.child[1]), args.hidden, args.token_chunk)
        return
    full_mb = {t: args.rows * t * VOCAB * 4 / 2**20 for t in args.lengths}
    print(f"synthetic Llama, V = {VOCAB}, hidden {args.hidden}, 2 layers, B = {args.rows}, prompt 16, float32, "
          f"forward + backward, token_chunk {args.token_chunk}; peak RSS growth over the warmed-up process")
    print("| T | B*T | one (B, T, V) float32 tensor MB | naive MB | chunked MB | chunked / naive |")
    print("| --- | --- | --- | --- | --- | --- |")
    for length in args.lengths:
        result = {}
        for variant in ("naive", "chunked"):
            out = subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--hidden", str(args.hidden),
                                  "--token-chunk", str(args.token_chunk), "--child", variant, str(length)], capture_output=True, text=True, check=True)
            result[variant] = json.loads(out.stdout.strip().splitlines()[-1])["peak_growth_mb"]
        print(f"| {length} | {args.rows * length} | {full_mb[length]:.0f} | {result['naive']:.0f} | "
              f"{result['chunked']:.0f} | {result['chunked'] / max(result['naive'], 1e-9):.3f} |", flush=True)


if __name__ == "__main__":
    main()
