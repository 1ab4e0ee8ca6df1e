"""Held-out evaluation during training: Pass@k, Worst@k, Mean@k like the paper's curves.

Always sampled (n samples per problem at the evaluation schedule), never greedy
copies: Pass@16 of 16 identical greedy answers would just be greedy accuracy.
Sampling runs under its own seed, leaving the training RNG stream untouched,
so evaluating does not change what training does.
"""

from __future__ import annotations

import numpy as np
import torch

from ead.engines import RolloutEngine
from ead.metrics import problem_metrics
from ead.schedules import Schedule
from ead.tasks.base import Problem
from ead.training.length_metrics import length_by_difficulty
from ead.training.rollout import grade_responses
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

    ``engine`` samples; ``model`` (the policy itself) gives the entropy of pi at temperature 1.
    """
    prompts = [p.prompt for p in problems for _ in range(samples)]
    rollouts = engine.generate(prompts, schedule, step, max_new_tokens, seed=seed)
    grades, _ = grade_responses(grader, [p for p in problems for _ in range(samples)], rollouts.texts)
    per_problem = []
    for i in range(len(problems)):
        group = grades[i * samples : (i + 1) * samples]
        per_problem.append(problem_metrics([g.correct for g in group], [g.answer_key for g in group], ks))
    metrics = {f"eval/{key}": float(np.mean([m[key] for m in per_problem])) for key in per_problem[0]}
    _, entropy = old_policy_logprobs(model, rollouts, batch_size)  # pi at temperature 1, zero on padding
    metrics["eval/entropy"] = float(entropy.sum() / rollouts.response_mask.sum().clamp(min=1))
    metrics["eval/response_length"] = float(rollouts.lengths.float().mean())
    metrics.update(length_by_difficulty(rollouts.lengths, [p.meta.get("difficulty") for p in problems for _ in range(samples)],
                                        torch.tensor([g.correct for g in grades]), "eval"))
    return metrics
