"""Rollout throughput: the lean engine vs HF ``generate`` on the built-in model, side by side.

Both sample the same prompts with the same EAD schedule (behaviour log-probs recorded, as in
training); runs are interleaved (lean, hf, lean, hf, ...) so machine noise hits both, and the
median tokens/s of each is compared, with the min-max spread. Tokens/s counts real response
tokens (up to and including EOS). The built-in model runs with random weights and its EOS logit
row zeroed (as in bench_sampling.py) so responses run close to the length budget; ``--eos``
keeps EOS, where the lean engine also gains from dropping finished rows.
Target: lean >= 3x hf at B = 256, T = 256.

    python benchmarks/bench_lean_vs_hf.py --batches 64 256 --lengths 64 256 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ead.rollout.lean import lean_sample
from ead.sampling import sample
from ead.schedules import EADSchedule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eos", action="store_true", help="keep the EOS logit (rows finish at different lengths)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from _tiny import tiny_policy

    model, tokenizer, task, _ = tiny_policy(warm=False)
    model.eval()
    if not args.eos:
        with torch.no_grad():
            model.lm_head.weight[tokenizer.eos_token_id].fill_(0.0)
    schedule = EADSchedule(unit=1.0)  # the paper's schedule with D_0 = 25 tokens: tau falls inside every length
    engines = {"lean": lean_sample, "hf": sample}
    print(f"built-in Llama ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params), random weights, "
          f"EOS {'kept' if args.eos else 'suppressed'}, {args.threads} thread(s), {args.repeats} interleaved repeats")
    print("| B | T | lean tokens/s (min-max) | hf tokens/s (min-max) | lean / hf (min-max of paired ratios) |")
    print("| --- | --- | --- | --- | --- |")
    for rows in args.batches:
        prompts = [p.prompt for p in task.train_batch(0, rows)]
        for length in args.lengths:
            rates: dict[str, list[float]] = {name: [] for name in engines}
            for repeat in range(args.repeats):
                for name, fn in engines.items():
                    start = time.perf_counter()
                    out = fn(model, tokenizer, prompts, schedule, max_new_tokens=length, batch_size=rows, seed=repeat)
                    rates[name].append(float(out.response_mask.sum()) / (time.perf_counter() - start))
            ratios = [a / b for a, b in zip(rates["lean"], rates["hf"])]
            lean, hf = statistics.median(rates["lean"]), statistics.median(rates["hf"])
            print(f"| {rows} | {length} | {lean:.0f} ({min(rates['lean']):.0f}-{max(rates['lean']):.0f}) "
                  f"| {hf:.0f} ({min(rates['hf']):.0f}-{max(rates['hf']):.0f}) "
                  f"| **{lean / hf:.2f}** ({min(ratios):.2f}-{max(ratios):.2f}) |", flush=True)


if __name__ == "__main__":
    main()
