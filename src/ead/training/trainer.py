"""``ead train``: the RLVR loop, readable top to bottom.

    setup     seed, task, policy (+ reference), optimizer, grader pool, resume
    for step:
      1 rollout    sample n responses per prompt from the behaviour policy mu
                   (the schedule at this global step), grade them
      2 advantage  group-relative advantages from the rewards
      3 pi_old     log-probs of the sampled tokens at temperature 1; TIS weights
      4 update     PPO epochs over mini-batches
      5 log        metrics.jsonl (+ TensorBoard / W&B), periodic held-out eval
      6 save       atomic checkpoint every N steps
    cleanup   final checkpoint, plots
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from ead.config import ConfigError, config_to_dict
from ead.rollout import build_engine
from ead.grading.sandbox import GraderPool
from ead.io import write_atomic
from ead.modeling.lora import AdapterDisabledReference
from ead.objectives import compute_advantages
from ead.seeding import periodic_eval_seed, process_seed, seed_everything
from ead.objectives.regularizers import adaptive_entropy_coef
from ead.tasks.base import Task
from ead.training.checkpoint import (
    NonFiniteWeightsError,
    capture_rng_state,
    last_good_checkpoint_note,
    latest_checkpoint,
    load_trainer_state,
    restore_rng_state,
    save_checkpoint,
)
from ead.training.config import TrainConfig
from ead.training.distributed import setup_distributed
from ead.training.length_metrics import length_by_difficulty, temperature_by_position
from ead.training.logger import MetricsLogger
from ead.training.periodic_eval import evaluate_policy
from ead.training.rollout import RolloutSettings, collect_rollouts
from ead.training.run_dir import prepare_run_dir
from ead.training.setup import build_task, check_length_budget, load_policy, resolve_device
from ead.training.update import (
    advantage_params,
    importance_and_drift,
    old_policy_logprobs,
    ppo_update,
    update_settings,
)


@dataclass
class LoopState:
    """What, besides weights, optimizer and RNG, a resumed run needs to continue exactly."""

    step: int = 0  # completed training steps (= the global step used by the schedule)
    data_position: int = 0  # next task.train_batch index
    rollouts_consumed: int = 0  # responses sampled so far, dynamic-sampling extras included
    entropy_coef: float | None = None  # the adaptive entropy coefficient (algorithm.entropy_target), a plain float
    siren_anchor: float | None = None  # SIREN's anchor entropy, measured at the first step (algorithm.siren)


def entropy_by_position(entropy: torch.Tensor, mask: torch.Tensor, edges: list[int]) -> dict[str, float]:
    """Mean entropy over tokens whose response position falls in ``[edges[i], edges[i+1])``."""
    positions = torch.arange(entropy.shape[1]).expand_as(entropy)
    out = {}
    for low, high in zip(edges[:-1], edges[1:]):
        in_bucket = mask.bool() & (positions >= low) & (positions < high)
        if in_bucket.any():
            out[f"entropy/pos_{low:03d}_{high:03d}"] = float(entropy[in_bucket].mean())
    return out


def position_bucket_edges(max_new_tokens: int) -> list[int]:
    """Powers-of-two buckets 0,4,8,16,... up to the length budget (4 buckets minimum)."""
    edges, edge = [0], 4
    while edge < max_new_tokens:
        edges.append(edge)
        edge *= 2
    return edges + [max_new_tokens]


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False) -> Path:
    """Run (or resume) training as configured; returns the run directory.

    An existing run in ``output.dir`` is only continued (``resume``, same config) or deleted
    (``overwrite``), never started over silently; see :mod:`ead.training.run_dir`.
    """
    # ------------------------------------------------------------------ setup
    run_dir = Path(config.output.dir)
    prepare_run_dir(run_dir, config_to_dict(config), resume, overwrite)
    checkpoint_dir = run_dir / "checkpoints"
    num_threads = config.model.torch_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    dist, dist_device = setup_distributed(config.model.device)  # single process: a no-op
    if config.train.prompts_per_step % dist.world_size:
        raise ValueError(f"train.prompts_per_step ({config.train.prompts_per_step}) must be divisible by the "
                         f"number of processes ({dist.world_size})")
    device = dist_device or resolve_device(config.model.device)
    task: Task = build_task(config.task, config.model)
    check_length_budget(task, config.sampling.max_new_tokens, builtin_model=config.model.path is None)
    resume_from = latest_checkpoint(checkpoint_dir) if resume else None
    model, tokenizer = load_policy(config.model, config.task, device, weights_from=resume_from,
                                   seed=config.train.seed)
    # Seed after loading: a first-time warm start of the built-in model draws from the global RNG,
    # and a run must not depend on whether that cache already existed.
    seed_everything(process_seed(config.train.seed, dist.rank))  # each process samples its own responses
    ref_model = None  # the KL reference: the initial policy
    if config.algorithm.kl_coef > 0:
        if config.model.lora is not None:  # LoRA: the base model with the adapters off, no copy
            ref_model = AdapterDisabledReference(model)
        elif resume_from is not None:  # the loaded weights are the checkpoint's: load the initial policy again
            ref_model, _ = load_policy(config.model, config.task, device)
            ref_model.eval().requires_grad_(False)
        else:
            ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.train.lr, weight_decay=config.train.weight_decay)
    model, optimizer = dist.prepare(model, optimizer)  # DDP wrapper when data-parallel
    policy = dist.unwrap(model)  # the plain module: sampling, evaluation, saving
    warmup = config.train.warmup_steps
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda u: min(1.0, (u + 1) / warmup) if warmup else 1.0)
    behaviour_schedule = config.sampling.schedule.schedule  # parsed once, at load
    eval_schedule = config.eval.schedule.schedule
    eval_problems = task.eval_problems()[: config.task.num_eval_problems]
    settings = update_settings(config)
    if config.sampling.engine == "vllm" and dist.world_size > 1:
        raise ConfigError(f"sampling.engine={config.sampling.engine!r} runs one colocated engine per machine; "
                          "data-parallel runs sample with 'auto', 'lean' or 'hf' (or use the verl recipe, docs/integrations.md)")
    # The engine starts from the weights just loaded (a checkpoint's when resuming) and gets every update.
    engine = build_engine(config.sampling.engine, model=policy, model_path=policy.name_or_path, tokenizer=tokenizer,
                          batch_size=config.sampling.generation_batch_size,
                          vllm_options=config.sampling.vllm,
                          seed=config.train.seed)
    state = LoopState()
    owned_checkpoints = [resume_from] if resume_from is not None else []  # the only ones pruning may delete
    if resume_from is not None:
        saved = load_trainer_state(resume_from)
        optimizer.load_state_dict(saved["optimizer"])
        lr_scheduler.load_state_dict(saved["lr_scheduler"])
        restore_rng_state(saved["rng"][dist.rank])
        state = LoopState(**saved["loop"])
    logger = None
    if dist.is_main:
        write_atomic(run_dir / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
        logger = MetricsLogger(run_dir, config.output.tensorboard, config.output.wandb_project,
                               config_to_dict(config), resume_step=state.step if resume_from is not None else None)
    grader = GraderPool(task.grader, timeout_s=config.grading.timeout_s, num_workers=config.grading.workers,
                        inline=config.grading.inline, limits=config.grading.limits)
    bucket_edges = position_bucket_edges(config.sampling.max_new_tokens)
    old_logprobs_from_sampler = engine.can_capture_target and (config.algorithm.old_logprobs == "sampler" or (
        config.algorithm.old_logprobs == "auto" and next(model.parameters()).dtype == torch.float32))
    rollout_settings = RolloutSettings(
        num_groups=config.train.prompts_per_step, samples_per_group=config.train.samples_per_prompt,
        max_new_tokens=config.sampling.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
        top_k=config.sampling.top_k, top_p=config.sampling.top_p,
        dynamic_sampling=config.algorithm.dynamic_sampling, max_rounds=config.algorithm.max_sampling_rounds,
        capture_target=old_logprobs_from_sampler)
    progress = _progress_bar(config, initial=state.step) if dist.is_main else None

    def run_eval(step: int) -> dict[str, float]:
        """Rank 0 evaluates the held-out set; other processes wait."""
        metrics = {}
        if dist.is_main:
            metrics = evaluate_policy(engine, policy, eval_problems, grader, eval_schedule, config.eval.samples,
                                      config.eval.k, config.sampling.max_new_tokens,
                                      config.sampling.generation_batch_size,
                                      seed=periodic_eval_seed(config.train.seed, step), step=step)
        dist.barrier()
        return metrics

    def checkpoint() -> None:
        rng_states = dist.gather_objects(capture_rng_state())  # one per process, restored by rank
        dist.check_replicas_in_sync(policy)
        if dist.is_main:
            trainer_state = {"optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict(),
                             "rng": rng_states, "loop": vars(state).copy(), "config": config_to_dict(config)}
            owned_checkpoints.append(save_checkpoint(checkpoint_dir, state.step, policy, tokenizer, trainer_state,
                                                     keep=config.output.keep_checkpoints, owned=owned_checkpoints))
        dist.barrier()

    try:
        if state.step == 0 and config.eval.every and config.eval.at_start:
            eval_metrics = run_eval(0)
            if logger is not None:
                logger.log(0, {"rollouts_consumed": 0, **eval_metrics})
        while state.step < config.train.steps:
            step_start = time.perf_counter()
            # ---------------------------------------------------- 1. rollout
            batch, state.data_position = collect_rollouts(
                engine, task, grader, behaviour_schedule, state.step, state.data_position, rollout_settings,
                shard=dist.shard, seed=engine.step_seed(config.train.seed, state.step))
            rollouts = batch.rollouts
            rollout_seconds = time.perf_counter() - step_start
            # ---------------------------------------------------- 2. advantages
            advantages = compute_advantages(batch.rewards, config.algorithm.advantage,
                                            advantage_params(config)).flatten()  # (B,)
            loss_mask = rollouts.response_mask.float()
            if config.algorithm.overlong_filter:  # truncated responses have no verdict worth learning from
                loss_mask = loss_mask * rollouts.finished.float().unsqueeze(1)
            # ---------------------------------------------------- 3. pi_old and importance weights
            if old_logprobs_from_sampler:
                old_logprobs, old_entropy = rollouts.target_logprobs, rollouts.target_entropy
            else:
                old_logprobs, old_entropy = old_policy_logprobs(policy, rollouts, config.train.micro_batch_size)
            if state.entropy_coef is None:
                state.entropy_coef = config.algorithm.entropy_coef
            if config.algorithm.entropy_target is not None:  # Skywork-OR1: the batch's mean entropy steers it
                batch_entropy = dist.reduce_metrics({"h": float(old_entropy[rollouts.response_mask.bool()].mean())})["h"]
                state.entropy_coef = adaptive_entropy_coef(state.entropy_coef, batch_entropy,
                                                           config.algorithm.entropy_target,
                                                           config.algorithm.entropy_coef_delta)
            weights, drift_stats = importance_and_drift(old_logprobs, rollouts.behaviour_logprobs,
                                                        rollouts.response_mask, settings)
            # ---------------------------------------------------- 4. update
            update_start = time.perf_counter()
            update_stats = ppo_update(model, optimizer, lr_scheduler, rollouts, loss_mask, advantages, old_logprobs,
                                      weights, ref_model, settings.for_step(state.entropy_coef, state.siren_anchor), dist,
                                      old_entropy=old_entropy)
            state.siren_anchor = update_stats.get("siren/anchor", state.siren_anchor)
            engine.sync_weights(policy)  # the next rollout (and eval) samples from the updated policy
            state.step += 1
            # ---------------------------------------------------- 5. log
            step_seconds = time.perf_counter() - step_start
            mask = rollouts.response_mask.bool()
            generated_tokens = float(rollouts.response_mask.sum())
            metrics: dict[str, Any] = {
                "sampling/responses": batch.stats["responses_sampled"],
                "reward/mean": batch.stats["reward_sum"] / batch.stats["responses_sampled"],
                "reward/correct_frac": batch.stats["correct_sum"] / batch.stats["responses_sampled"],
                "reward/group_solved_frac": float(batch.correct.any(dim=1).float().mean()),
                "reward/grade_errors": batch.stats["grade_errors"],
                "reward/grade_timeouts": batch.stats["grade_timeouts"],
                "response/length_mean": float(rollouts.lengths.float().mean()),
                "response/truncated_frac": float((~rollouts.finished).float().mean()),
                "behaviour/temperature_mean": float(rollouts.temperatures[mask].mean()),
                "entropy/mean": float(old_entropy[mask].mean()),
                **entropy_by_position(old_entropy, rollouts.response_mask, bucket_edges),
                **temperature_by_position(rollouts.temperatures, rollouts.response_mask, bucket_edges),
                **length_by_difficulty(rollouts.lengths, [p.meta.get("difficulty") for p in batch.problems
                                                         for _ in range(config.train.samples_per_prompt)],
                                       batch.correct.flatten(), "response"),
                **drift_stats,
                **update_stats,
                "sampling/rounds": batch.stats["rounds"],
                "sampling/groups_kept": batch.stats["groups_kept"],
                "lr": lr_scheduler.get_last_lr()[0],
                "time/step_s": step_seconds,
                "time/rollout_s": rollout_seconds,
                "time/update_s": time.perf_counter() - update_start,
                "throughput/tokens_per_s": generated_tokens / max(rollout_seconds, 1e-9),
            }
            metrics = dist.reduce_metrics(metrics)  # averages over processes; counts add up
            state.rollouts_consumed += int(metrics["sampling/responses"])
            metrics = {"rollouts_consumed": state.rollouts_consumed, "processes": dist.world_size, **metrics}
            is_last = state.step == config.train.steps
            if config.eval.every and (state.step % config.eval.every == 0 or is_last):
                metrics.update(run_eval(state.step))
            if logger is not None:
                logger.log(state.step, metrics)
            _advance(progress, metrics)
            # ---------------------------------------------------- 6. save (finite weights only)
            if not math.isfinite(metrics["policy/loss"]):
                raise NonFiniteWeightsError(f"loss became {metrics['policy/loss']} at step {state.step}; nothing was "
                                         f"saved; {last_good_checkpoint_note(checkpoint_dir)}")
            if is_last or (config.output.save_every and state.step % config.output.save_every == 0):
                checkpoint()
    finally:
        # ------------------------------------------------------------------ cleanup
        grader.close()
        engine.close()
        if logger is not None:
            logger.close()
        if progress is not None:
            progress.close()
    return run_dir


def _progress_bar(config: TrainConfig, initial: int):
    if not config.output.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.train.steps, initial=initial, desc="ead train", unit="step", dynamic_ncols=True)


def _advance(progress, metrics: dict[str, Any]) -> None:
    if progress is None:
        return
    postfix = {"reward": f"{metrics['reward/mean']:.3f}", "len": f"{metrics['response/length_mean']:.1f}",
               "w>C": f"{metrics['is/truncated_frac']:.3f}"}
    if "eval/pass@1" in metrics:
        postfix["eval@1"] = f"{metrics['eval/pass@1']:.3f}"
    progress.set_postfix(postfix)
    progress.update(1)


