"""Measure the countdown-search task's properties on its warm-started base model (docs/long_reasoning.md).

    PYTHONPATH=src nice -n 5 python docs/results/long_reasoning/measure_search.py --out docs/results/long_reasoning/base.json

Samples ``--n`` responses per held-out problem with the production sampler (``ead.sampling.sample``,
one thread) under a few schedules and reports, per schedule and per difficulty level: Mean@n, Pass@n,
Worst@n, response length (mean, median, p10, p90, in tokens incl. EOS), attempts, mistakes, wrong checks,
and success conditional on the first equation being a winning first step or a dead end.

"Errors compound" uses a two-stage schedule defined here for the measurement only: tau = 1 for response
positions t < S and tau_late from S on, S = half the median response length of the base model at tau = 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from ead.metrics import pass_at_k
from ead.schedules import FixedSchedule, Schedule
from ead.tasks.countdown_search import CountdownSearchTask, canonical_chains, parse_search


@dataclass(frozen=True)
class TwoStageSchedule(Schedule):
    """tau_early for t < switch, tau_late from switch on (measurement only; not registered)."""

    name: ClassVar[str] = "two_stage_measure"
    tau_early: float = 1.0
    tau_late: float = 1.0
    switch: int = 30

    def temperatures(self, positions, step=0):
        positions = torch.as_tensor(positions)
        late = positions >= self.switch
        return torch.where(late, torch.tensor(self.tau_late), torch.tensor(self.tau_early)).to(torch.float32)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def summarise(problems, grades, lengths, texts, n: int) -> dict:
    """Per-level and overall Mean/Pass/Worst@n, lengths, attempts, mistakes, first-step conditional success."""
    out = {}
    levels = sorted({p.meta["difficulty"] for p in problems})
    for level in ["all", *levels]:
        idx = [i for i, p in enumerate(problems) if level == "all" or p.meta["difficulty"] == level]
        correct = [sum(grades[i * n + j].correct for j in range(n)) for i in idx]
        rows = [i * n + j for i in idx for j in range(n)]
        lens = [lengths[r] for r in rows]
        attempts = [grades[r].info.get("attempts", 0) for r in rows]
        mistakes: dict[str, int] = {}
        for r in rows:
            key = str(grades[r].info.get("mistake"))
            mistakes[key] = mistakes.get(key, 0) + 1
        wrong_checks = [grades[r].info.get("wrong_checks", 0) for r in rows if grades[r].info.get("format_ok")]
        first_win, first_dead = [], []
        for r in rows:
            p = problems[r // n]
            try:
                attempts_parsed, _ = parse_search(texts[r])
            except ValueError:
                continue
            first = str(attempts_parsed[0].chain[0])
            winning = {str(c[0]) for c in canonical_chains(tuple(p.answer["numbers"]), ("+", "-"))
                       if c[-1].result == p.answer["target"]}
            (first_win if first in winning else first_dead).append(grades[r].correct)
        out[str(level)] = {
            "problems": len(idx),
            f"mean@{n}": sum(correct) / (len(idx) * n),
            f"pass@{n}": sum(pass_at_k(n, c, n) for c in correct) / len(idx),
            f"worst@{n}": sum(c == n for c in correct) / len(idx),
            "length_mean": statistics.mean(lens),
            "length_p10": _quantile(lens, 0.1),
            "length_median": _quantile(lens, 0.5),
            "length_p90": _quantile(lens, 0.9),
            "length_max": max(lens),
            "attempts_mean": statistics.mean(attempts),
            "wrong_checks_per_response": statistics.mean(wrong_checks) if wrong_checks else None,
            "mistakes": dict(sorted(mistakes.items())),
            "first_step_winning_frac": len(first_win) / max(1, len(first_win) + len(first_dead)),
            "success_given_winning_first_step": sum(first_win) / len(first_win) if first_win else None,
            "success_given_dead_end_first_step": sum(first_dead) / len(first_dead) if first_dead else None,
        }
    return out


def run(model_path: str, task: CountdownSearchTask, schedules: dict[str, Schedule], n: int, seed: int,
        max_new_tokens: int, limit: int | None) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ead.sampling import sample

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    problems = task.eval_problems()[:limit]
    prompts = [p.prompt for p in problems for _ in range(n)]
    results = {}
    for label, schedule in schedules.items():
        start = time.perf_counter()
        rollouts = sample(model, tokenizer, prompts, schedule, step=0, max_new_tokens=max_new_tokens,
                          batch_size=256, seed=seed)
        grades = [task.grader(p, t) for p, t in zip([p for p in problems for _ in range(n)], rollouts.texts)]
        lengths = [int(x) for x in rollouts.lengths.tolist()]
        results[label] = {"schedule": schedule.to_dict(), "seconds": round(time.perf_counter() - start, 1),
                          "truncated_frac": float((~rollouts.finished).float().mean()),
                          **summarise(problems, grades, lengths, rollouts.texts, n)}
        print(label, json.dumps(results[label]["all"]), flush=True)
        if label == "fixed-1.0":
            results["_examples"] = rollouts.texts[:8]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="model dir (default: the cached countdown-search warm start)")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = CountdownSearchTask()
    model_path = args.model
    if model_path is None:  # the warm start `ead train task.name=countdown-search` uses (built once, cached)
        from ead.modeling.loading import builtin_model_path, countdown_config

        model_path = str(builtin_model_path(countdown_config("countdown-search"), None, num_threads=1))
    budget = task.max_response_chars + 1
    base = run(model_path, task, {"fixed-1.0": FixedSchedule(1.0)}, args.n, args.seed, budget, args.limit)
    switch = max(1, int(base["fixed-1.0"]["all"]["length_median"] // 2))
    schedules = {f"late-{tau}": TwoStageSchedule(1.0, tau, switch) for tau in (1.3, 1.6)}
    schedules["early-1.6"] = TwoStageSchedule(1.6, 1.0, switch)  # the same heat on the first part only
    schedules["fixed-0.6"] = FixedSchedule(0.6)
    results = {**base, **run(model_path, task, schedules, args.n, args.seed, budget, args.limit),
               "switch_position": switch, "model": model_path, "n": args.n}
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
