"""Time of one training update with and without ``train.group_by_length``, on long variable-length responses.

The policy update pads every micro-batch to its own longest response. With countdown-search's lengths
(20 to ~240 tokens, median 43) a micro-batch of random rows is padded to ~200 tokens while its rows
average ~55; sorting the mini-batch by length first (``group_by_length``) puts similar lengths
together, so most micro-batches are short. The gradient is the same sum over rows
(``tests/objectives/test_pipeline.py`` checks it against an independently computed full-batch
gradient); only the padding changes.

One step as ``sweep_long`` runs it: 128 responses, mini-batches of 64 (2 optimiser updates), the
built-in model's shape (Llama, 4 layers, hidden 128; random weights: the time does not depend on
them), one thread. Response lengths are drawn from a log-normal with countdown-search's base-model
median (43) and 90th percentile (126), clipped to [5, 244]. The variants run interleaved, ``--repeats``
rounds, and the table gives each one's median time and its ratio to the first (the grid's setting:
micro-batch = mini-batch = 64, no grouping), measured side by side in this run.

    python benchmarks/bench_group_by_length.py --repeats 5
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from _tiny import tiny_policy
from ead.objectives.pipeline import LossSettings
from ead.objectives.selectors import SelectionParams
from ead.sampling import Rollouts
from ead.training.update import UpdateSettings, ppo_update

VARIANTS = [  # (label, micro_batch_size, group_by_length)
    ("micro 64 (one per mini-batch)", 64, False),
    ("micro 16, random order", 16, False),
    ("micro 16, grouped by length", 16, True),
    ("micro 32, grouped by length", 32, True),
]


def synthetic_rollouts(rows: int, max_length: int, vocab: int, seed: int) -> Rollouts:
    """Right-padded responses with countdown-search-like lengths (log-normal: median 43, p90 126)."""
    g = torch.Generator().manual_seed(seed)
    sigma = math.log(126 / 43) / 1.2816  # p90 = median * exp(1.2816 sigma)
    lengths = torch.exp(math.log(43) + sigma * torch.randn(rows, generator=g)).round().clamp(5, max_length).long()
    mask = (torch.arange(max_length).unsqueeze(0) < lengths.unsqueeze(1)).long()  # (B, T)
    prompt = torch.randint(3, vocab, (rows, 11), generator=g)
    return Rollouts(prompt_ids=prompt, prompt_mask=torch.ones_like(prompt),
                    response_ids=torch.randint(3, vocab, (rows, max_length), generator=g) * mask, response_mask=mask,
                    behaviour_logprobs=torch.zeros(rows, max_length), temperatures=torch.ones(rows, max_length),
                    texts=[""] * rows, finished=torch.ones(rows, dtype=torch.bool))


def settings(micro: int, grouped: bool, rows: int, mini: int) -> UpdateSettings:
    return UpdateSettings(loss=LossSettings(clip_low=0.2, clip_high=0.28, loss_aggregation="token_mean"),
                          selection=SelectionParams(), importance_correction=False, importance_level="token",
                          importance_mode="truncate", importance_cap=2.0, ppo_epochs=1,
                          updates_per_epoch=rows // mini, micro_batch_size=micro, max_grad_norm=1.0,
                          group_by_length=grouped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--mini", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=244)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tokenizer, _, _ = tiny_policy(warm=False)
    model.train()
    rollouts = synthetic_rollouts(args.rows, args.max_length, len(tokenizer), seed=0)
    lengths = rollouts.response_mask.sum(1).float()
    print(f"{args.rows} responses, lengths median {lengths.median():.0f} / mean {lengths.mean():.1f} / "
          f"max {lengths.max():.0f}; mini-batch {args.mini}; torch {torch.__version__}, 1 thread")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda u: 1.0)
    zeros = torch.zeros(rollouts.response_mask.shape)
    advantages = torch.randn(args.rows, generator=torch.Generator().manual_seed(1))
    times: dict[str, list[float]] = {label: [] for label, _, _ in VARIANTS}
    for _ in range(args.repeats + 1):  # round 0 warms up and is dropped
        for label, micro, grouped in VARIANTS:
            torch.manual_seed(0)
            start = time.perf_counter()
            ppo_update(model, optimizer, scheduler, rollouts, rollouts.response_mask.float(), advantages, zeros,
                       None, None, settings(micro, grouped, args.rows, args.mini))
            times[label].append(time.perf_counter() - start)
    reference = statistics.median(times[VARIANTS[0][0]][1:])
    print(f"| variant | median s per step ({args.repeats} rounds) | vs {VARIANTS[0][0]} |")
    print("| --- | --- | --- |")
    for label, _, _ in VARIANTS:
        median = statistics.median(times[label][1:])
        print(f"| {label} | {median:.2f} | {median / reference:.2f} |")


if __name__ == "__main__":
    main()
