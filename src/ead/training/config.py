"""The one config of ``ead train``: every knob documented once, checked at load.

Load with :func:`load_train_config` (YAML file, algorithm preset, dotted
overrides). The resolved config is written next to the run as ``config.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ead.config import ConfigError, config_from_dict, load_config, require
from ead.engines import VLLMOptions
from ead.objectives import ADVANTAGE_ESTIMATORS, LOSS_AGGREGATIONS
from ead.schedules import ScheduleError, schedule_from_dict

# The demo recipe's EAD: the paper's parameters with the unit factor k rescaled to the task's
# response lengths. Countdown chains are ~12 tokens where the paper's responses are hundreds to
# thousands; k = 0.4 puts D_0 at 10 tokens so tau drops below 1 around t = 2 and reaches tau_min
# near t = 7 at step 0, the same *fractions* of a response as k = 20 on ~700-token responses.
# c scales to 0 (10 tokens of ~700 is under one token of ~12). See docs/schedules.md.
DEMO_EAD_SCHEDULE: dict[str, Any] = {
    "name": "ead", "tau_max": 1.2, "tau_min": 0.1, "warmup_tokens": 0,
    "d0": 25.0, "alpha": 5.0, "d_max": 40000.0, "unit": 0.4,
}


@dataclass
class ModelSection:
    path: str | None = None
    """Hugging Face model id or local directory; None = the built-in tiny model, warm-started and cached."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype. Temperatures, log-softmax and importance weights are float32 regardless."""
    device: str = "auto"
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda', 'cuda:1', ..."""
    num_threads: int | None = None
    """torch CPU threads. None: 1 for the built-in tiny model (its matrices are too small to gain from
    more, and extra threads thrash when the grader or other jobs share the cores), torch's default
    for a model given by path."""
    gradient_checkpointing: bool = False
    """Trade compute for memory on large models."""
    warm_start_cache: str = ".cache/ead"
    """Where the built-in model's warm start is cached (only used when path is None)."""
    warm_start_decoy_rate: float | None = None
    """Built-in model only: share of wrong-path (decoy) chains in its supervised warm-start data; None: the
    task's default (0.1 for countdown, 0.85 for countdown-fork). Higher makes the right first step rarer for
    the base policy: the exploration problem EAD targets. Each value is its own cached model."""

    def __post_init__(self) -> None:
        require(self.num_threads is None or self.num_threads >= 1, "model.num_threads", "must be >= 1")
        require(self.warm_start_decoy_rate is None or 0.0 <= self.warm_start_decoy_rate <= 1.0,
                "model.warm_start_decoy_rate", "must be in [0, 1] or null")
        require(self.warm_start_decoy_rate is None or self.path is None, "model.warm_start_decoy_rate",
                "only applies to the built-in model (model.path must be null)")


@dataclass
class TaskSection:
    name: str = "countdown"
    """'countdown' (built-in), 'countdown-fork' (built-in, isolates the early-fork mechanism), 'countdown-search'
    (built-in, long variable-length search responses, docs/long_reasoning.md) or 'dataset'."""
    seed: int = 0
    """Seed of the training problem stream (independent of the sampling seed)."""
    countdown: dict[str, Any] = field(default_factory=dict)
    """Overrides of the Countdown difficulty knobs (see ead.tasks.countdown.CountdownConfig)."""
    dataset: dict[str, Any] = field(default_factory=dict)
    """For name='dataset': train_file, eval_file, prompt_field, answer_field, prompt_template, grader, ..."""
    num_eval_problems: int | None = 64
    """How many held-out problems the periodic evaluation uses (None = all)."""

    def __post_init__(self) -> None:
        require(self.name in ("countdown", "countdown-fork", "countdown-search", "dataset"), "task.name",
                f"must be 'countdown', 'countdown-fork', 'countdown-search' or 'dataset', got {self.name!r}")
        require(self.name != "dataset" or bool(self.dataset), "task.dataset", "is required when task.name is 'dataset'")
        require(self.num_eval_problems is None or self.num_eval_problems >= 1, "task.num_eval_problems", "must be >= 1")


@dataclass
class SamplingSection:
    schedule: dict[str, Any] = field(default_factory=lambda: dict(DEMO_EAD_SCHEDULE))
    """Behaviour-policy temperature schedule: {'name': 'ead'|'fixed'|'linear'|'cosine'|'reversed_ead', params...}."""
    max_new_tokens: int = 24
    """Response length budget in tokens."""
    top_k: int | None = None
    """Optional top-k after the temperature (None = off). mu then includes the truncation."""
    top_p: float | None = None
    """Optional nucleus threshold after the temperature (None = off)."""
    generation_batch_size: int = 256
    """Rows per generate() call (hf engine)."""
    engine: Literal["hf", "vllm"] = "hf"
    """What samples rollouts: 'hf' = generate() on the training model; 'vllm' = a vLLM engine colocated in
    this process (``pip install 'ead-rlvr[vllm]'``), weights copied into it after every update."""
    vllm: dict[str, Any] = field(default_factory=dict)
    """For engine='vllm': fields of ead.engines.VLLMOptions (gpu_memory_utilization, max_model_len, dtype, ...)."""

    def __post_init__(self) -> None:
        try:
            schedule_from_dict(self.schedule)
        except ScheduleError as exc:
            raise ConfigError(f"sampling.{exc}") from None
        VLLMOptions.from_dict(self.vllm, where="sampling.vllm")
        require(self.max_new_tokens >= 1, "sampling.max_new_tokens", "must be >= 1")
        require(self.top_k is None or self.top_k >= 1, "sampling.top_k", "must be >= 1 or null")
        require(self.top_p is None or 0 < self.top_p <= 1, "sampling.top_p", "must be in (0, 1] or null")
        require(self.generation_batch_size >= 1, "sampling.generation_batch_size", "must be >= 1")


@dataclass
class AlgorithmSection:
    name: str = "grpo"
    """Label of the recipe ('grpo', 'dapo', ...); the knobs below are what actually runs."""
    advantage: str = "grpo"
    """Advantage estimator: one of ead.objectives.ADVANTAGE_ESTIMATORS (grpo, dr_grpo, rloo)."""
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
        require(self.lr > 0, "train.lr", "must be > 0")
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
    schedule: dict[str, Any] = field(default_factory=lambda: {"name": "fixed", "tau": 1.0})
    """Evaluation sampling schedule; fixed 1.0 evaluates the target policy pi itself."""
    at_start: bool = True
    """Also evaluate before the first update (the base policy)."""

    def __post_init__(self) -> None:
        require(self.every >= 0, "eval.every", "must be >= 0")
        require(self.samples >= 1, "eval.samples", "must be >= 1")
        require(all(1 <= k <= self.samples for k in self.k), "eval.k", f"values must be in [1, eval.samples={self.samples}]")
        try:
            schedule_from_dict(self.schedule)
        except ScheduleError as exc:
            raise ConfigError(f"eval.{exc}") from None


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
        require(self.save_every >= 0, "output.save_every", "must be >= 0")
        require(self.keep_checkpoints >= 1, "output.keep_checkpoints", "must be >= 1")


@dataclass
class GradingSection:
    timeout_s: float = 10.0
    """Per-response limit for a reward function; a call past it is killed, counted and scores 0."""
    workers: int = 1
    """Grader worker processes."""
    inline: bool = False
    """Grade in the training process (faster to debug; exceptions contained, no timeout)."""

    def __post_init__(self) -> None:
        require(self.timeout_s > 0, "grading.timeout_s", "must be > 0")
        require(self.workers >= 1, "grading.workers", "must be >= 1")


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
        require(self.train.samples_per_prompt >= 2 or self.algorithm.advantage != "rloo",
                "train.samples_per_prompt", "must be >= 2 for RLOO")
        require(self.sampling.engine == "hf" or self.algorithm.old_logprobs != "sampler", "algorithm.old_logprobs",
                f"'sampler' needs sampling.engine='hf' ({self.sampling.engine} cannot record log pi at temperature 1 "
                "while sampling); use 'recompute' or 'auto'")


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
}


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None,
                      algorithm: str | None = None) -> TrainConfig:
    """Defaults <- algorithm preset <- YAML file <- dotted overrides, validated into :class:`TrainConfig`."""
    base: dict[str, Any] = {}
    if algorithm is not None:
        if algorithm not in ALGORITHM_PRESETS:
            raise ConfigError(f"--algorithm {algorithm!r} is not one of {sorted(ALGORITHM_PRESETS)}")
        base["algorithm"] = dict(ALGORITHM_PRESETS[algorithm])
    return load_config(TrainConfig, path, overrides, base=base)


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a config saved with the run (checkpoints store it)."""
    return config_from_dict(TrainConfig, data)
