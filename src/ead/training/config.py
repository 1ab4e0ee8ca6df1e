"""The one config of ``ead train``: every knob documented once, checked at load.

Load with :func:`load_train_config` (YAML file, algorithm preset, dotted
overrides). The resolved config is written next to the run as ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ead.config import ConfigError, config_from_dict, load_config, require
from ead.data import DatasetSpec
from ead.modeling.loading import TASK_BUILDERS, countdown_config, task_train_defaults
from ead.tasks.reasoning_gym import ReasoningGymOptions
from ead.objectives import ADVANTAGE_ESTIMATORS, LOSS_AGGREGATIONS
from ead.objectives.pipeline import PG_TOKEN_SELECTIONS, POLICY_LOSSES
# ModelSection and GradingSection are shared with `ead eval` (ead.sections); imported here so
# `from ead.training.config import ModelSection` keeps working.
from ead.sections import GradingSection, ModelSection, SamplerSection  # noqa: F401 - re-exported
from ead.specs import ScheduleSpec
from ead.tasks.countdown import DEMO_EAD_SCHEDULE, CountdownConfig


@dataclass
class TaskSection:
    name: str = "countdown"
    """'countdown' (built-in), 'countdown-fork' (built-in, isolates the early-fork mechanism), 'countdown-search'
    (built-in, long variable-length search responses, docs/long_reasoning.md), 'dataset' or 'reasoning_gym'
    (a reasoning-gym generator, task.reasoning_gym; docs/real_models.md)."""
    seed: int = 0
    """Seed of the training problem stream (independent of the sampling seed)."""
    countdown: dict[str, Any] = field(default_factory=dict)
    """Overrides of the Countdown difficulty knobs (see ead.tasks.countdown.CountdownConfig)."""
    dataset: DatasetSpec = field(default_factory=lambda: DatasetSpec({}))
    """For name='dataset': train_file, eval_file, prompt_field, answer_field, prompt_template, grader, ...
    (ead.data.DatasetFiles and ead.data.DataSpec fields), each checked at load."""
    num_eval_problems: int | None = 64
    """How many held-out problems the periodic evaluation uses (None = all)."""
    reasoning_gym: ReasoningGymOptions = field(default_factory=ReasoningGymOptions)
    """For name='reasoning_gym': the generator (dataset, its options), seed, train_size, eval_size, prompt_template,
    answer_extraction, chat_template (ead.tasks.reasoning_gym.ReasoningGymOptions); checked at load."""

    countdown_config: CountdownConfig | None = field(init=False, default=None, repr=False, compare=False)
    """Derived: the preset named by ``name`` with ``countdown`` applied (None for 'dataset')."""

    def __post_init__(self) -> None:
        require(self.name in TASK_BUILDERS, "task.name", f"must be one of {sorted(TASK_BUILDERS)}, got {self.name!r}")
        if not isinstance(self.dataset, DatasetSpec):
            self.dataset = DatasetSpec(self.dataset, where="task.dataset")
        if self.name == "reasoning_gym":  # the generator name and its options, checked against reasoning-gym
            self.reasoning_gym.check("task.reasoning_gym")
        elif self.name != "dataset":  # a built-in Countdown preset (standard, fork or search) plus overrides
            self.countdown_config = countdown_config(self.name, self.countdown, where="task.")
        require(self.name != "dataset" or bool(self.dataset), "task.dataset", "is required when task.name is 'dataset'")
        require(self.num_eval_problems is None or self.num_eval_problems >= 1, "task.num_eval_problems", "must be >= 1")


@dataclass
class _SamplingOwnFields:
    """``ead train``'s own sampling fields; a base of SamplingSection only so that they stay first in config.yaml
    (a dataclass orders fields base-first, so SamplingSection(SamplerSection) alone would move them last)."""

    schedule: ScheduleSpec = field(default_factory=lambda: ScheduleSpec(DEMO_EAD_SCHEDULE))
    """Behaviour-policy temperature schedule: {'name': one of ead.schedules.SCHEDULES (ead, fixed, linear, cosine,
    reversed_ead, two_stage, mean_matched, entropy_adaptive), params...}; see docs/schedules.md."""
    max_new_tokens: int = 24
    """Response length budget in tokens."""


@dataclass
class SamplingSection(SamplerSection, _SamplingOwnFields):
    """The shared sampler knobs (:class:`ead.sections.SamplerSection`) plus the training schedule and budget."""

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, ScheduleSpec):
            self.schedule = ScheduleSpec.from_config(self.schedule, "sampling.schedule")
        super().__post_init__()
        require(self.max_new_tokens >= 1, "sampling.max_new_tokens", "must be >= 1")


@dataclass
class AlgorithmSection:
    name: str = "grpo"
    """Label of the recipe ('grpo', 'dapo', ...); the knobs below are what actually runs."""
    advantage: str = "grpo"
    """Advantage estimator: one of ead.objectives.ADVANTAGE_ESTIMATORS (grpo, dr_grpo, rloo, w_reinforce, psr,
    nsr, pass_at_k; docs/exploration_methods.md)."""
    clip_low: float = 0.2
    """PPO ratio lower clip epsilon: ratios below 1 - clip_low are clipped."""
    clip_high: float = 0.2
    """PPO ratio upper clip epsilon (DAPO's clip-higher uses 0.28)."""
    loss_aggregation: str = "seq_mean_token_mean"
    """token_mean (DAPO), seq_mean_token_mean (GRPO) or seq_mean_token_sum (Dr. GRPO)."""
    importance_correction: bool = True
    """Multiply the loss by w = min(pi_old(tau=1) / mu(tau_t), C) (truncated importance sampling)."""
    importance_level: Literal["token", "sequence"] = "token"
    """One weight per token (the authors' code) or per response (the paper's appendix)."""
    importance_mode: Literal["truncate", "mask"] = "truncate"
    """Cap weights at C, or drop tokens/responses whose ratio exceeds C."""
    importance_cap: float = 2.0
    """C, the truncation threshold."""
    old_logprobs: Literal["auto", "recompute", "sampler"] = "auto"
    """Where log pi_old (temperature 1) comes from: 'recompute' = a separate forward pass over the
    batch; 'sampler' = captured from the sampler's own raw logits during generation (same weights,
    no extra pass; equal up to float32 rounding); 'auto' = 'sampler' for float32 models, else 'recompute'
    (in bf16 the KV-cached and full forward passes differ enough to matter)."""
    kl_coef: float = 0.0
    """Weight of the k3 KL penalty to the initial (reference) policy; 0 = no reference model kept."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus (maximises entropy of pi at temperature 1)."""
    dynamic_sampling: bool = False
    """DAPO: drop groups whose rewards are all equal and sample more prompts until the batch is full."""
    max_sampling_rounds: int = 4
    """Cap on sampling rounds per step with dynamic sampling (the batch may stay partly empty)."""
    overlong_filter: bool = False
    """DAPO: exclude responses cut off by max_new_tokens from the loss."""
    policy_loss: str = "ppo_clip"
    """Per-token surrogate: one of ead.objectives.pipeline.POLICY_LOSSES: ppo_clip, clip_cov, kl_cov
    (Cui et al. 2025, arXiv 2505.22617; docs/exploration_methods.md)."""
    clip_cov_ratio: float = 2e-4
    """Clip-Cov: share of the batch's tokens (among those with clip_cov_lb < Cov < clip_cov_ub) whose gradient is detached."""
    clip_cov_lb: float = 1.0
    """Clip-Cov: lower bound of the covariance window."""
    clip_cov_ub: float = 5.0
    """Clip-Cov: upper bound of the covariance window."""
    kl_cov_ratio: float = 2e-3
    """KL-Cov: share of the batch's tokens, the highest by covariance, that get the |log-ratio| penalty."""
    kl_cov_coef: float = 1.0
    """KL-Cov: weight of the |logp - old_logp| penalty."""
    pg_tokens: str = "all"
    """Tokens that carry the policy gradient: 'all' or 'high_entropy' (80/20, Wang et al. 2025, arXiv 2506.01939)."""
    top_entropy_rho: float = 0.2
    """80/20: share of the batch's tokens, the highest by entropy of pi, that carry the policy gradient."""
    w_reinforce_lambda: float = 0.1
    """W-REINFORCE (Zhu et al. 2025, arXiv 2506.01347): advantage of a correct response (a wrong one gets -1)."""
    pass_k: int = 4
    """pass_at_k advantages (Chen et al. 2025, arXiv 2508.10751): the k of the pass@k objective; <= samples_per_prompt."""
    entropy_target: float | None = None
    """Adaptive entropy coefficient (Skywork-OR1): target mean entropy of pi (nats/token); None = static
    entropy_coef. Each step the coefficient moves by entropy_coef_delta toward raising (entropy below
    target) or lowering (above) the entropy, never below 0; entropy_coef is its starting value."""
    entropy_coef_delta: float = 0.005
    """Adaptive entropy coefficient: step size per training step."""
    siren: bool = False
    """SIREN (arXiv 2509.25133): add siren_coef * (H_masked - H_anchor)^2, H_masked the top-p nucleus entropy over
    each response's top siren_token_share tokens by that entropy, H_anchor its value at the first step."""
    siren_coef: float = 0.005
    """SIREN: weight c of the squared deviation from the anchor entropy."""
    siren_top_p: float = 0.8
    """SIREN: nucleus mass over which the entropy is taken."""
    siren_token_share: float = 0.2
    """SIREN: share of each response's tokens (highest nucleus entropy) that enter the regulariser."""

    def __post_init__(self) -> None:
        require(self.advantage in ADVANTAGE_ESTIMATORS, "algorithm.advantage",
                f"must be one of {sorted(ADVANTAGE_ESTIMATORS)}, got {self.advantage!r}")
        require(self.loss_aggregation in LOSS_AGGREGATIONS, "algorithm.loss_aggregation",
                f"must be one of {sorted(LOSS_AGGREGATIONS)}, got {self.loss_aggregation!r}")
        require(0 <= self.clip_low < 1, "algorithm.clip_low", "must be in [0, 1)")
        require(self.clip_high >= 0, "algorithm.clip_high", "must be >= 0")
        require(self.importance_cap > 0, "algorithm.importance_cap", "must be > 0")
        require(self.kl_coef >= 0, "algorithm.kl_coef", "must be >= 0")
        require(self.max_sampling_rounds >= 1, "algorithm.max_sampling_rounds", "must be >= 1")
        require(self.policy_loss in POLICY_LOSSES, "algorithm.policy_loss",
                f"must be one of {sorted(POLICY_LOSSES)}, got {self.policy_loss!r}")
        require(self.pg_tokens in PG_TOKEN_SELECTIONS, "algorithm.pg_tokens",
                f"must be one of {sorted(PG_TOKEN_SELECTIONS)}, got {self.pg_tokens!r}")
        for name in ("clip_cov_ratio", "kl_cov_ratio", "top_entropy_rho"):
            require(0 < getattr(self, name) <= 1, f"algorithm.{name}", "must be in (0, 1]")
        require(self.clip_cov_lb < self.clip_cov_ub, "algorithm.clip_cov_lb", "must be below algorithm.clip_cov_ub")
        require(self.kl_cov_coef >= 0, "algorithm.kl_cov_coef", "must be >= 0")
        require(self.pass_k >= 1, "algorithm.pass_k", "must be >= 1")
        require(self.entropy_coef >= 0, "algorithm.entropy_coef", "must be >= 0")
        require(not (self.siren and (self.entropy_coef > 0 or self.entropy_target is not None)), "algorithm.siren",
                "replaces the entropy bonus: set algorithm.entropy_coef=0 and algorithm.entropy_target=null with it")
        require(0 < self.siren_top_p <= 1 and 0 < self.siren_token_share <= 1, "algorithm.siren_top_p",
                "siren_top_p and siren_token_share must be in (0, 1]")
        require(self.siren_coef >= 0, "algorithm.siren_coef", "must be >= 0")
        require(self.entropy_coef_delta > 0, "algorithm.entropy_coef_delta", "must be > 0")
        require(self.entropy_target is None or self.entropy_target >= 0, "algorithm.entropy_target",
                "must be >= 0 (nats per token) or null")


@dataclass
class OptimSection:
    steps: int = 60
    """Training steps (one step = one batch of rollouts, then ppo_epochs passes over it)."""
    prompts_per_step: int = 32
    """Prompts (groups) per step."""
    samples_per_prompt: int = 8
    """n: responses sampled per prompt (the group size)."""
    mini_batch_size: int = 256
    """Responses per optimiser update; prompts_per_step * samples_per_prompt / mini_batch_size updates per epoch."""
    micro_batch_size: int = 256
    """Responses per forward/backward (gradient accumulation inside a mini-batch)."""
    group_by_length: bool = False
    """Cut each mini-batch into micro-batches of similar response length (rows sorted by length), so each is
    padded only to its own longest response: the same gradient (a sum over rows) for less compute when lengths
    vary and micro_batch_size < mini_batch_size (benchmarks/bench_group_by_length.py). Off by default: a run
    keeps the float rounding it started with (a different accumulation order is not bit-identical)."""
    ppo_epochs: int = 1
    """Passes over each batch of rollouts."""
    lr: float = 2e-4
    """AdamW learning rate (the tiny demo model; 1e-6 to 4e-6 for 1-7B models as in the paper)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up, in optimiser updates."""
    max_grad_norm: float = 1.0
    """Gradient clipping threshold (the pre-clip norm is logged)."""
    seed: int = 0
    """Seed of sampling, mini-batch order and model init."""

    def __post_init__(self) -> None:
        for name in ("steps", "prompts_per_step", "samples_per_prompt", "mini_batch_size", "micro_batch_size", "ppo_epochs"):
            require(getattr(self, name) >= 1, f"train.{name}", "must be >= 1")
        require(math.isfinite(self.lr) and self.lr > 0, "train.lr", f"must be a finite number > 0, got {self.lr}")
        require(self.weight_decay >= 0, "train.weight_decay", "must be >= 0 (AdamW decays weights toward 0)")
        require(self.max_grad_norm > 0, "train.max_grad_norm", "must be > 0")
        require(self.warmup_steps >= 0, "train.warmup_steps", "must be >= 0")


@dataclass
class EvalSection:
    every: int = 20
    """Evaluate on the held-out problems every N steps (and at the end); 0 = never."""
    samples: int = 16
    """n samples per held-out problem (always sampled, never greedy copies)."""
    k: list[int] = field(default_factory=lambda: [1, 4, 16])
    """k values for Pass@k, Worst@k and Mean@k."""
    schedule: ScheduleSpec = field(default_factory=lambda: ScheduleSpec({"name": "fixed", "tau": 1.0}))
    """Evaluation sampling schedule; fixed 1.0 evaluates the target policy pi itself."""
    at_start: bool = True
    """Also evaluate before the first update (the base policy)."""

    def __post_init__(self) -> None:
        require(self.every >= 0, "eval.every", "must be >= 0")
        require(self.samples >= 1, "eval.samples", "must be >= 1")
        require(bool(self.k), "eval.k", "needs at least one k value, e.g. eval.k=[1,4,16]")
        require(all(1 <= k <= self.samples for k in self.k), "eval.k", f"values must be in [1, eval.samples={self.samples}]")
        if not isinstance(self.schedule, ScheduleSpec):
            self.schedule = ScheduleSpec.from_config(self.schedule, "eval.schedule")


@dataclass
class OutputSection:
    dir: str = "runs/default"
    """Run directory: config.yaml, metrics.jsonl, checkpoints/, plots."""
    save_every: int = 20
    """Checkpoint every N steps (and at the end); 0 = only at the end."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep on disk."""
    tensorboard: bool = False
    """Also log to TensorBoard (needs `pip install tensorboard`)."""
    wandb_project: str | None = None
    """Also log to this Weights & Biases project (needs `pip install wandb`)."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        require(bool(self.dir.strip()), "output.dir", "is empty; give the run a directory, e.g. output.dir=runs/my_run")
        require(self.save_every >= 0, "output.save_every", "must be >= 0")
        require(self.keep_checkpoints >= 1, "output.keep_checkpoints", "must be >= 1")


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    task: TaskSection = field(default_factory=TaskSection)
    sampling: SamplingSection = field(default_factory=SamplingSection)
    algorithm: AlgorithmSection = field(default_factory=AlgorithmSection)
    train: OptimSection = field(default_factory=OptimSection)
    eval: EvalSection = field(default_factory=EvalSection)
    grading: GradingSection = field(default_factory=GradingSection)
    output: OutputSection = field(default_factory=OutputSection)

    def __post_init__(self) -> None:
        rollouts = self.train.prompts_per_step * self.train.samples_per_prompt
        require(rollouts % self.train.mini_batch_size == 0 or self.train.mini_batch_size >= rollouts,
                "train.mini_batch_size", f"must divide prompts_per_step * samples_per_prompt = {rollouts}")
        require(self.train.samples_per_prompt >= 2 or not _no_signal_from_one_sample(self.algorithm.advantage),
                "train.samples_per_prompt", f"must be >= 2 with algorithm.advantage={self.algorithm.advantage!r}: a "
                "group of one response is its own baseline, so every advantage is 0 and nothing is learned "
                "(the paper samples 8-16 per prompt)")
        for where, value in _float_fields(self):
            require(math.isfinite(value) or (where in _MAY_BE_INFINITE and value > 0), where,
                    f"must be a finite number, got {value}")
        require(self.model.lora is None or self.sampling.engine != "vllm", "model.lora",
                "is not supported with sampling.engine=vllm (vLLM would need merged weights after every update); "
                "use sampling.engine=auto, lean or hf")
        for section in ("sampling", "eval"):  # auto and lean hand such schedules to the HF processor
            require(self.sampling.engine != "vllm" or not getattr(self, section).schedule.schedule.needs_logits,
                    f"{section}.schedule", f"'entropy_adaptive' reads the logits while sampling, which only "
                    f"the HF processor supports (sampling.engine auto, lean or hf; got {self.sampling.engine!r})")
        require(self.algorithm.advantage != "pass_at_k" or self.algorithm.pass_k <= self.train.samples_per_prompt,
                "algorithm.pass_k", f"must be <= train.samples_per_prompt = {self.train.samples_per_prompt}")
        require(self.sampling.engine != "vllm" or self.algorithm.old_logprobs != "sampler", "algorithm.old_logprobs",
                f"'sampler' needs sampling.engine='hf' or 'lean' ({self.sampling.engine} cannot record log pi at temperature 1 "
                "while sampling); use 'recompute' or 'auto'")


_MAY_BE_INFINITE = {"algorithm.importance_cap"}  # C = inf: plain, untruncated importance weights


def _float_fields(config: TrainConfig) -> list[tuple[str, float]]:
    """``("section.field", value)`` for every float-typed field (NaN/inf pass ``> 0`` range checks)."""
    out = []
    for section in dataclasses.fields(config):
        part = getattr(config, section.name)
        for item in dataclasses.fields(part):
            value = getattr(part, item.name)
            if isinstance(value, float):
                out.append((f"{section.name}.{item.name}", value))
    return out


def _no_signal_from_one_sample(estimator: str) -> bool:
    """Whether ``estimator`` gives every response advantage 0 (or fails) when each group has one response."""
    import torch

    from ead.objectives import compute_advantages

    try:
        advantages = compute_advantages(torch.tensor([[0.0], [1.0]]), estimator)  # (G=2, n=1)
    except ValueError:
        return True
    return bool((~torch.isfinite(advantages) | (advantages == 0)).all())


# Presets: each algorithm is a set of overrides on the defaults, not a branch in the loop.
ALGORITHM_PRESETS: dict[str, dict[str, Any]] = {
    "grpo": {"name": "grpo", "advantage": "grpo", "clip_low": 0.2, "clip_high": 0.2,
             "loss_aggregation": "seq_mean_token_mean"},
    # DAPO (Yu et al. 2025): clip-higher, token-level loss, dynamic sampling, overlong filtering.
    "dapo": {"name": "dapo", "advantage": "grpo", "clip_low": 0.2, "clip_high": 0.28,
             "loss_aggregation": "token_mean", "dynamic_sampling": True, "overlong_filter": True},
    "dr_grpo": {"name": "dr_grpo", "advantage": "dr_grpo", "clip_low": 0.2, "clip_high": 0.2,
                "loss_aggregation": "seq_mean_token_sum"},
    "rloo": {"name": "rloo", "advantage": "rloo", "clip_low": 0.2, "clip_high": 0.2,
             "loss_aggregation": "seq_mean_token_mean"},
    # EntropyMech (Cui et al. 2025, arXiv 2505.22617): GRPO advantages, token-level loss, Clip-Cov by
    # default; algorithm.policy_loss=kl_cov selects KL-Cov.
    "entropymech": {"name": "entropymech", "advantage": "grpo", "clip_low": 0.2, "clip_high": 0.2,
                    "loss_aggregation": "token_mean", "policy_loss": "clip_cov"},
}


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None,
                      algorithm: str | None = None) -> TrainConfig:
    """Defaults <- algorithm preset <- task defaults <- YAML file <- dotted overrides, validated into :class:`TrainConfig`.

    Task defaults are what a built-in task needs instead of the Countdown demo's (``countdown-search``: an EAD
    sized for its response lengths, the budget and lr; :data:`~ead.modeling.loading.TASK_TRAIN_DEFAULTS`), so
    ``sampling.schedule.unit=3`` edits that task's EAD. With a real model on a dataset the toy demo's defaults
    are refused unless set (:func:`check_real_model_settings`); schedule shapes that waste the length budget warn.
    """
    if algorithm is not None:
        if algorithm not in ALGORITHM_PRESETS:
            raise ConfigError(f"--algorithm {algorithm!r} is not one of {sorted(ALGORITHM_PRESETS)}")
    user = _user_settings(path, overrides)
    algorithm = _preset_named_by(user, path, algorithm)
    # Disjoint sections (algorithm.* vs sampling.* / train.*), so one update keeps both.
    base: dict[str, Any] = task_train_defaults(_nested(user, "task", "name") or TaskSection.name)
    if algorithm is not None:
        base["algorithm"] = dict(ALGORITHM_PRESETS[algorithm])
    config = load_config(TrainConfig, path, overrides, base=base)
    check_real_model_settings(config, _explicit_keys(path, overrides or []))
    if config.model.path is not None and config.model.path.startswith(PRETRAINED_PREFIX):
        from ead.modeling.pretrained import resolve_pretrained

        config.model.path = str(resolve_pretrained(config.model.path))
    for message in schedule_warnings(config.sampling.schedule, config.sampling.max_new_tokens) + \
            precision_warnings(config.model.dtype, config.train.lr):
        warnings.warn(message, stacklevel=2)
    return config


# ---------------------------------------------------------------------- real models

PRETRAINED_PREFIX = "pretrained:"
"""``model.path: pretrained:smollm2`` names a checkpoint fetched with ``ead models fetch smollm2``."""

TOY_DEFAULTS = ("sampling.schedule", "sampling.max_new_tokens", "train.lr")
"""Defaults tuned for the built-in character model on Countdown (12-token answers, 1M parameters):
a real model on a dataset must set each of them (or start from a recipe, ``ead train --recipe``)."""


def _explicit_keys(path: str | Path | None, overrides: list[str]) -> set[str]:
    """Dotted names (and every prefix) the YAML file and the overrides set, e.g. ``sampling.schedule.unit``."""
    import yaml

    from ead.config import apply_overrides

    data = yaml.safe_load(Path(path).read_text()) if path is not None else {}  # already validated by load_config
    data = apply_overrides(data if isinstance(data, dict) else {}, overrides)
    keys: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        if prefix:
            keys.add(prefix)
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))

    walk(data, "")
    return keys


def check_real_model_settings(config: TrainConfig, explicit: set[str]) -> None:
    """Refuse a real model on a dataset that would silently inherit the toy demo's settings.

    The demo schedule (unit 0.4: tau at its floor by token ~8), 24 new tokens and lr 2e-4 are right for
    the built-in 1M-parameter character model and wrong for any pretrained checkpoint.
    """
    if config.task.name not in ("dataset", "reasoning_gym") or config.model.path is None:
        return
    missing = [name for name in TOY_DEFAULTS if name not in explicit]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} not set: with task.name={config.task.name} and model.path={config.model.path} the built-in "
            "demo's defaults (schedule unit 0.4, max_new_tokens 24, lr 2e-4; tuned for a 1M-parameter character "
            "model) would apply. Set them, e.g. sampling.schedule={name: ead} (the paper's k=20 units) "
            "sampling.max_new_tokens=1024 train.lr=1e-6, or start from a recipe: ead train --recipe "
            f"{' / '.join(sorted(train_recipes()))}")


def schedule_warnings(schedule_spec: ScheduleSpec | dict[str, Any], max_new_tokens: int, step: int = 0) -> list[str]:
    """Why a schedule may not do what its name says over ``max_new_tokens`` tokens (empty if fine)."""
    import torch

    schedule = ScheduleSpec(schedule_spec).schedule
    if schedule.needs_logits:  # entropy-adaptive: tau depends on the logits, not on the position alone
        return []
    taus = schedule.temperatures(torch.arange(max_new_tokens), step)  # (T,)
    name = schedule_spec.get("name")
    if name in ("fixed", "mean_matched"):  # constant over positions by design
        return []
    if float(taus.max() - taus.min()) < 1e-6:
        return [f"sampling.schedule ({name}) is flat at tau={float(taus[0]):.3g} over all {max_new_tokens} tokens "
                "at step 0: it behaves as a fixed temperature (check its unit k and warmup_tokens against the length)"]
    floor = getattr(schedule, "tau_min", None)
    at_floor = (taus <= floor + 1e-6).nonzero() if floor is not None else []
    if len(at_floor) == 0 or float(taus[0]) <= floor + 1e-6:  # never cools to the floor, or starts cold by design
        return []
    first_floor = int(at_floor[0])
    if first_floor < 0.05 * max_new_tokens:
        return [f"sampling.schedule ({name}) reaches its minimum tau={float(taus.min()):.3g} at token {first_floor}, "
                f"in the first {100 * first_floor / max_new_tokens:.1f}% of max_new_tokens={max_new_tokens}: the rest "
                "is sampled near-greedily (the demo's unit 0.4 is for 12-token answers; the paper uses unit 20)"]
    return []


def precision_warnings(dtype: str, lr: float) -> list[str]:
    """Pure half-precision weights lose AdamW updates smaller than their rounding step."""
    if dtype == "float32" or lr >= 1e-4:
        return []
    return [f"model.dtype={dtype} with train.lr={lr:g}: the trainer updates the {dtype} weights directly (no float32 "
            "master copy), and an AdamW step of about lr is below the rounding step of a typical weight "
            "(~1e-4 at |w| = 0.02 in bfloat16), so most updates round away. Use model.dtype=float32 for training."]


def train_recipes() -> dict[str, Path]:
    """Training recipes shipped with the package: name -> YAML path (``ead train --recipe NAME``)."""
    from importlib.resources import files

    folder = Path(str(files("ead") / "recipes" / "train"))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def recipe_path(name: str) -> Path:
    """The YAML file of recipe ``name``; a clear error listing the recipes otherwise."""
    recipes = train_recipes()
    if name not in recipes:
        raise ConfigError(f"--recipe {name!r} is not a shipped recipe; choose one of {sorted(recipes)}")
    return recipes[name]


def _user_settings(path: str | Path | None, overrides: list[str] | None) -> dict[str, Any]:
    """What the recipe and the overrides set, before any default: the nested dict they describe."""
    from ead.config import apply_overrides, read_config_file

    return apply_overrides(read_config_file(path) if path is not None else {}, overrides or [])


def _nested(settings: dict[str, Any], section: str, key: str) -> Any:
    """``settings[section][key]``, None if either is absent (or the section is not a mapping)."""
    value = settings.get(section)
    return value.get(key) if isinstance(value, dict) else None


def _preset_named_by(user: dict[str, Any], path: str | Path | None, flag: str | None) -> str | None:
    """The preset to apply: ``--algorithm``, else ``algorithm.name`` of the recipe/overrides; refused if they disagree.

    ``algorithm.name: dapo`` in a recipe turns DAPO on (its knobs first, then the recipe's own); a name
    that is no preset, or differs from ``--algorithm``, is an error rather than a silent label.
    ``user``: :func:`_user_settings` of the recipe at ``path`` and the overrides.
    """
    name = _nested(user, "algorithm", "name")
    where = "algorithm.name" + (f" (in {path})" if path is not None else "")
    if name is None:
        return flag
    if name not in ALGORITHM_PRESETS:
        raise ConfigError(f"{where} {name!r} is not an algorithm preset; use one of {sorted(ALGORITHM_PRESETS)} "
                          "(the name selects the preset; set individual knobs under algorithm.* on top of it)")
    if flag is not None and name != flag:
        raise ConfigError(f"{where} is {name!r} but --algorithm is {flag!r}; drop one of them or make them agree")
    return name


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a config saved with the run (checkpoints store it)."""
    return config_from_dict(TrainConfig, data)
