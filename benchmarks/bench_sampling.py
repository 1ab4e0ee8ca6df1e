"""Throughput of EAD sampling vs fixed-temperature sampling in the same HF generate loop.

Measured side by side in one run, interleaved (A B C A B C ...) so machine noise hits
every variant alike; the medians are compared. Target: EAD >= 0.97x fixed.

    python benchmarks/bench_sampling.py --batch 256 --new-tokens 64 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import GenerationConfig

from ead.sampling import sample
from ead.schedules import EADSchedule, FixedSchedule


def hf_plain(model, tokenizer, prompts, new_tokens, tau):
    """Hugging Face's own temperature warper: the reference for 'fixed temperature'."""
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    config = GenerationConfig(do_sample=True, temperature=tau, top_k=0, top_p=1.0, max_new_tokens=new_tokens,
                              min_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id,
                              eos_token_id=tokenizer.eos_token_id)
    with torch.no_grad():
        return model.generate(**encoded, generation_config=config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from _tiny import tiny_policy

    model, tokenizer, task, _ = tiny_policy(warm=False)
    model.eval()
    # Force full-length responses (no EOS) so every variant generates the same number of tokens.
    eos = tokenizer.eos_token_id
    with torch.no_grad():
        model.lm_head.weight[eos].fill_(0.0)
        if model.lm_head.bias is not None:
            model.lm_head.bias[eos] = -1e4
    prompts = [p.prompt for p in task.train_batch(0, args.batch)]
    ead = EADSchedule(tau_max=1.2, tau_min=0.1, warmup_tokens=2, unit=0.4)
    variants = {
        "hf_generate_fixed_1.0": lambda: hf_plain(model, tokenizer, prompts, args.new_tokens, 1.0),
        "ead_sampler_fixed_1.0": lambda: sample(model, tokenizer, prompts, FixedSchedule(1.0), max_new_tokens=args.new_tokens, batch_size=args.batch),
        "ead_sampler_ead": lambda: sample(model, tokenizer, prompts, ead, step=0, max_new_tokens=args.new_tokens, batch_size=args.batch),
    }
    for run in variants.values():  # warm-up
        run()
    times = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    tokens = args.batch * args.new_tokens
    base = statistics.median(times["ead_sampler_fixed_1.0"])
    print(f"batch {args.batch} x {args.new_tokens} new tokens, {args.threads} thread(s), {args.repeats} interleaved repeats")
    print(f"{'variant':28s} {'median s':>9s} {'tokens/s':>10s} {'ratio vs ead_sampler_fixed':>27s}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:28s} {median:9.3f} {tokens / median:10.0f} {base / median:27.3f}")
    ead_ratio = base / statistics.median(times["ead_sampler_ead"])
    hf_ratio = statistics.median(times["hf_generate_fixed_1.0"]) / statistics.median(times["ead_sampler_ead"])
    print(f"EAD throughput / fixed-temperature throughput (same loop): {ead_ratio:.3f}  (target >= 0.97)")
    print(f"EAD (ead sampler) throughput / HF generate with its own temperature warper: {hf_ratio:.3f}")


if __name__ == "__main__":
    main()
