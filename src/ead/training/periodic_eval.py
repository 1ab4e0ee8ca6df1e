"""Held-out evaluation during training: Pass@k, Worst@k, Mean@k like the paper's curves.

Always sampled (n samples per problem at the evaluation schedule), never greedy
copies: Pass@16 of 16 identical greedy answers would just be greedy accuracy.
Sampling runs under its own seed, leaving the training RNG stream untouched,
so evaluating does not change what training does.
"""

from __future__ import annotations

import torch

from ead.rollout import RolloutEngine
from ead.scoring import score_problems
from ead.schedules import Schedule
from ead.tasks.base import Problem
from ead.training.length_metrics import length_by_difficulty
from ead.training.update import old_policy_logprobs


def evaluate_policy(
    engine: RolloutEngine,
    model,
    problems: list[Problem],
    grader,
    schedule: Schedule,
    samples: int,
    ks: list[int],
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    step: int = 0,
) -> dict[str, float]:
    """Mean over problems of pass@k / worst@k / mean@k / maj@k, plus response length and entropy of pi.

    ``engine`` samples and ``grader`` (the run's pool) grades, through the one
    :func:`~ead.scoring.score_problems`; ``model`` (the policy itself) gives the
    entropy of pi at temperature 1.
    """
    scored = score_problems(engine, grader, problems, schedule, samples=samples, ks=ks,
                            max_new_tokens=max_new_tokens, step=step, seed=seed)
    rollouts = scored.rollouts
    metrics = {f"eval/{key}": value for key, value in scored.mean_metrics().items()}
    _, entropy = old_policy_logprobs(model, rollouts, batch_size)  # pi at temperature 1, zero on padding
    metrics["eval/entropy"] = float(entropy.sum() / rollouts.response_mask.sum().clamp(min=1))
    metrics["eval/response_length"] = float(rollouts.lengths.float().mean())
    metrics.update(length_by_difficulty(rollouts.lengths, [p.meta.get("difficulty") for p in problems for _ in range(samples)],
                                        torch.tensor([g.correct for i in range(len(problems)) for g in scored.grades[i]]),
                                        "eval"))
    return metrics
