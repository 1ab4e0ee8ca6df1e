"""Phase 1 of a step: sample groups from the behaviour policy and grade them.

With dynamic sampling (DAPO, Yu et al. 2025, Sec. 3.2) groups whose rewards are
all equal carry zero advantage, so they are dropped and more prompts are
sampled until the batch holds ``num_groups`` informative groups or the round
cap is reached.

This stays in the trainer (not in :mod:`ead.rollout`): it reads the task's training stream,
grades, shards across processes and applies DAPO's group filter, all training-loop policy. The
engines it calls only sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ead.rollout import RolloutEngine, Rollouts
from ead.sampling import concat_rollouts
from ead.schedules import Schedule
from ead.tasks.base import Grade, Problem, Task


@dataclass
class RolloutBatch:
    """Graded groups, ``n`` consecutive rows per prompt."""

    rollouts: Rollouts
    problems: list[Problem]  # one per group
    rewards: torch.Tensor  # (G, n) float32
    correct: torch.Tensor  # (G, n) bool
    stats: dict[str, float] = field(default_factory=dict)


def grade_responses(grader, problems: list[Problem], texts: list[str]) -> tuple[list[Grade], dict[str, float]]:
    """Grade with a pool's ``grade_batch`` (contained, counted) or, for a bare grader, call by call."""
    if hasattr(grader, "grade_batch"):
        return grader.grade_batch(problems, texts)
    return [grader(p, t) for p, t in zip(problems, texts)], {}


@dataclass(frozen=True)
class RolloutSettings:
    """What one step's sampling needs besides the engine, task and grader (built from the config once)."""

    num_groups: int
    """Prompts per step, over all processes (``train.prompts_per_step``)."""
    samples_per_group: int
    """Responses per prompt (``train.samples_per_prompt``)."""
    max_new_tokens: int
    """Response length budget in tokens (``sampling.max_new_tokens``)."""
    pad_token_id: int
    """Tokenizer pad id, to re-pad kept rows of several rounds to one width."""
    top_k: int | None = None
    """Optional top-k after the temperature (``sampling.top_k``)."""
    top_p: float | None = None
    """Optional nucleus threshold after the temperature (``sampling.top_p``)."""
    dynamic_sampling: bool = False
    """DAPO's filter: drop groups whose rewards are all equal and sample more (``algorithm.dynamic_sampling``)."""
    max_rounds: int = 1
    """Cap on sampling rounds with dynamic sampling (``algorithm.max_sampling_rounds``)."""
    capture_target: bool = False
    """Ask the engine to record log pi_old at temperature 1 while sampling."""


def collect_rollouts(
    engine: RolloutEngine,
    task: Task,
    grader,
    schedule: Schedule,
    step: int,
    data_position: int,
    settings: RolloutSettings,
    shard=None,
    seed: int | None = None,
) -> tuple[RolloutBatch, int]:
    """Sample and grade until ``settings.num_groups`` groups are kept; returns the batch and the new data position.

    ``shard`` (data-parallel runs) picks this process's share of each batch of problems; ``num_groups``
    is then the global count and this process keeps up to its share. ``seed`` (from
    ``engine.step_seed``) fixes what each round samples; None samples from torch's global stream.
    """
    samples_per_group, dynamic_sampling = settings.samples_per_group, settings.dynamic_sampling
    shard = shard or (lambda items: items)
    global_groups = settings.num_groups
    num_groups = len(shard(list(range(global_groups))))
    kept_rollouts: list[Rollouts] = []
    kept_problems: list[Problem] = []
    kept_rewards: list[torch.Tensor] = []
    kept_correct: list[torch.Tensor] = []
    totals = {"rounds": 0, "groups_sampled": 0, "responses_sampled": 0, "grade_errors": 0.0, "grade_timeouts": 0.0,
              "reward_sum": 0.0, "correct_sum": 0.0}
    rounds = settings.max_rounds if dynamic_sampling else 1
    for round_index in range(rounds):
        problems = shard(task.train_batch(data_position, global_groups))
        data_position += 1
        prompts = [p.prompt for p in problems for _ in range(samples_per_group)]
        round_seed = None if seed is None else seed + round_index * 2**32  # rows use round_seed + row
        rollouts = engine.generate(prompts, schedule, step, settings.max_new_tokens, top_k=settings.top_k,
                                   top_p=settings.top_p, seed=round_seed, capture_target=settings.capture_target)
        grades, grade_stats = grade_responses(grader, [p for p in problems for _ in range(samples_per_group)], rollouts.texts)
        rewards = torch.tensor([g.reward for g in grades], dtype=torch.float32).view(num_groups, samples_per_group)
        correct = torch.tensor([g.correct for g in grades], dtype=torch.bool).view(num_groups, samples_per_group)
        totals["rounds"] += 1
        totals["groups_sampled"] += num_groups
        totals["responses_sampled"] += len(prompts)
        totals["reward_sum"] += float(rewards.sum())
        totals["correct_sum"] += float(correct.sum())
        totals["grade_errors"] += grade_stats.get("errors", 0)
        totals["grade_timeouts"] += grade_stats.get("timeouts", 0)
        informative = rewards.std(dim=1) > 0 if dynamic_sampling else torch.ones(num_groups, dtype=torch.bool)
        keep_groups = informative.nonzero().flatten()[: num_groups - len(kept_problems)]
        rows = (keep_groups.view(-1, 1) * samples_per_group + torch.arange(samples_per_group)).flatten()
        if len(keep_groups):
            kept_rollouts.append(rollouts.select(rows))
            kept_problems.extend(problems[i] for i in keep_groups.tolist())
            kept_rewards.append(rewards[keep_groups])
            kept_correct.append(correct[keep_groups])
        if len(kept_problems) >= num_groups:
            break
    if not kept_problems:  # every group was uninformative: keep the last round so the step still logs
        kept_rollouts, kept_problems = [rollouts], list(problems)
        kept_rewards, kept_correct = [rewards], [correct]
    totals["groups_kept"] = len(kept_problems)
    batch = RolloutBatch(
        rollouts=concat_rollouts(kept_rollouts, settings.pad_token_id),
        problems=kept_problems,
        rewards=torch.cat(kept_rewards),
        correct=torch.cat(kept_correct),
        stats=totals,
    )
    return batch, data_position
