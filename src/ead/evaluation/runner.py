"""``ead eval``: sample n responses per problem under one or more schedules, grade, score, report.

Reads top to bottom as: resolve config -> load model and problems -> for each block of
problems and each schedule: sample, grade, append a record -> summarise -> plot -> print.

Reproducible and resumable:

* every block of ``problems_per_batch`` problems is sampled under its own seed, derived
  from ``(seed, the block's problem uids)`` (not from what ran before), and all schedules
  use that same seed (common random numbers make the comparison less noisy);
* records are appended to ``records/<schedule>.jsonl`` and flushed as each problem
  finishes; a rerun with ``resume`` skips problems already recorded, so a killed
  evaluation continues where it stopped and ends with the same records and summary
  as an uninterrupted one (same device, same problem list, same ``problems_per_batch``);
* the summary is computed from the records, in problem-list order.

Output directory::

    config.json            requested and resolved config (a resume must match it, see RESUME_KEYS)
    records/<label>.jsonl  one line per problem: samples, answers, correctness, log-prob summary
    summary.json           per schedule: metrics with bootstrap CIs, pass@N / maj@N curves
    pass_at_k.png          pass@k against k, one line per schedule
    comparison.png         maj@N and pass@N for N = 1..n (only with several schedules)
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ead.config import ConfigError, config_to_dict, require
from ead.io import JsonlAppender, repair_jsonl, write_atomic
from ead.rollout import RolloutEngine, build_engine
from ead.sections import GradingSection, ModelSection, SamplerSection
from ead.seeding import problem_block_seed
from ead.specs import ScheduleSpec
from ead.tasks.base import Grader, Problem

__all__ = ["EvalConfig", "EvalSamplingSection", "run_eval", "schedule_label", "resolve_model_path", "problem_seed", "read_records"]

BUILTIN_TASKS = ("countdown", "countdown-fork", "countdown-search")
# Must match between a run and its resume: they change what gets sampled or how it is graded (dotted fields).
RESUME_KEYS = ("model.path", "model.dtype", "model.warm_start_decoy_rate", "dataset", "data", "countdown", "grader",
               "grader_options", "samples", "schedules", "step", "sampling.max_new_tokens", "sampling.top_k",
               "sampling.top_p", "problems_per_batch", "sampling.generation_batch_size", "seed", "sampling.engine",
               "sampling.vllm")

MOVED_FIELDS = {
    "model": "model.path", "dtype": "model.dtype", "device": "model.device", "num_threads": "model.num_threads",
    "warm_start_cache": "model.warm_start_cache", "engine": "sampling.engine", "vllm": "sampling.vllm",
    "top_k": "sampling.top_k", "top_p": "sampling.top_p", "generation_batch_size": "sampling.generation_batch_size",
    "max_new_tokens": "sampling.max_new_tokens", "grader_timeout_s": "grading.timeout_s",
    "grader_workers": "grading.workers", "grader_inline": "grading.inline",
}
"""Flat EvalConfig fields of earlier versions -> the nested field that replaced them (refused, never aliased)."""


def moved_field_error(name: str, value: Any, where: str = "") -> ConfigError | None:
    """The error for an old flat field name (``dtype=bfloat16``), naming its nested replacement; None if not moved.

    ``model`` is moved only when given a path (a string or null): a mapping is the new ``model`` section.
    """
    if name not in MOVED_FIELDS or (name == "model" and isinstance(value, dict)):
        return None
    new = MOVED_FIELDS[name]
    section, _, leaf = new.partition(".")
    return ConfigError(
        f"{where}{name} is now {new} (ead eval nests the model, sampling and grading sections it shares with "
        f"ead train): write {new}=... as an override, or {leaf}: under {section}: in YAML; see docs/evaluation.md")


@dataclass
class EvalSamplingSection(SamplerSection):
    """``ead eval``'s ``sampling``: the sampler knobs shared with ``ead train`` plus eval's own response budget."""

    max_new_tokens: int | None = None
    """Response budget in tokens; None: the built-in task's longest answer + 1, or 1024 for files."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.max_new_tokens is None or self.max_new_tokens >= 1, "sampling.max_new_tokens", "must be >= 1")


@dataclass
class EvalConfig:
    """Everything ``ead eval`` does; each field documented once (``model``, ``sampling`` and ``grading`` are the
    :mod:`ead.sections` shared with ``ead train``)."""

    model: ModelSection = field(default_factory=ModelSection)
    """The model to evaluate (the ead.sections.ModelSection fields of ead train). model.path also takes an ead
    checkpoint (``.../step_N`` with ``model/``) or an ead run dir (its latest checkpoint); None: the built-in
    warm-started tiny model (built-in tasks only). model.gradient_checkpointing is refused (eval does not train)."""
    dataset: str = "countdown"
    """``countdown`` / ``countdown-fork`` (built-in held-out split), or a .jsonl/.json/.parquet file or Hub name."""
    data: dict[str, Any] = field(default_factory=dict)
    """For files: :class:`ead.data.DataSpec` fields (prompt_field, answer_field, prompt_template, ...)."""
    countdown: dict[str, Any] = field(default_factory=dict)
    """For built-in tasks: overrides of :class:`ead.tasks.countdown.CountdownConfig` (eval_size, ...)."""
    grader: str | None = None
    """Registry name or ``module:function``; None: the task's own grader (``math`` for files)."""
    grader_options: dict[str, Any] = field(default_factory=dict)
    """Keyword options for the grader factory."""
    num_problems: int | None = None
    """Evaluate only the first N problems; None: all."""
    samples: int = 16
    """n: responses sampled per problem and schedule."""
    k: list[int] = field(default_factory=lambda: [1, 4, 16])
    """k values for pass@k, worst@k, mean@k, maj@k (each <= samples)."""
    schedules: list[ScheduleSpec] = field(default_factory=lambda: [ScheduleSpec({"name": "fixed", "tau": 1.0})])
    """Schedules to compare, e.g. ``[{name: fixed, tau: 0.6}, {name: ead, tau_max: 1.2}]``."""
    step: int | None = None
    """Global step fed to the schedule (EAD's D_s); None: the checkpoint's step (``step_N``), else 0."""
    sampling: EvalSamplingSection = field(default_factory=EvalSamplingSection)
    """The sampler (EvalSamplingSection: the ead.sections.SamplerSection fields of ead train plus max_new_tokens).
    With sampling.engine=vllm records lack log pi at temperature 1 and its entropy (vLLM cannot return them in
    the same pass)."""
    problems_per_batch: int | None = None
    """Problems sampled together in one ``generate`` call (one seed per block); None: as many as fit
    ``sampling.generation_batch_size`` rows (``generation_batch_size // samples``, at least 1). The samples depend
    on the layout (see docs/evaluation.md): keep it fixed to compare runs, 1 reproduces older runs."""
    seed: int = 0
    """Base seed; each block's seed is derived from it and the block's uids."""
    grading: GradingSection = field(default_factory=GradingSection)
    """The grader pool (the ead.sections.GradingSection fields of ead train: timeout_s, workers, inline, limits)."""
    bootstrap_resamples: int = 1000
    """Bootstrap resamples over problems for the confidence intervals."""
    confidence: float = 0.95
    """Confidence level of the intervals."""
    output_dir: str = "runs/eval"
    """Where records, summary and plots go."""
    resume: bool = False
    """Continue an interrupted evaluation in output_dir (otherwise existing records are an error)."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        from ead.config import config_from_dict

        if not isinstance(self.model, (ModelSection, dict)):
            raise moved_field_error("model", self.model)
        for name, cls in (("model", ModelSection), ("sampling", EvalSamplingSection), ("grading", GradingSection)):
            if isinstance(getattr(self, name), dict):  # the Python API: EvalConfig(model={"path": ...})
                setattr(self, name, config_from_dict(cls, getattr(self, name), prefix=name))
        require(not self.model.gradient_checkpointing, "model.gradient_checkpointing",
                "is a training knob and ead eval does not train; remove it")
        require(self.model.lora is None, "model.lora", "is a training knob (it adds new adapters) and ead eval does "
                "not train; remove it")
        require(self.samples >= 1, "samples", "must be >= 1")
        require(len(self.k) > 0 and all(1 <= k <= self.samples for k in self.k), "k",
                f"values must be in [1, samples={self.samples}], got {self.k}")
        require(len(self.schedules) > 0, "schedules", "must list at least one schedule")
        self.schedules = [spec if isinstance(spec, ScheduleSpec) else ScheduleSpec.from_config(spec, f"schedules[{i}]")
                          for i, spec in enumerate(self.schedules)]
        labels = [schedule_label(s) for s in self.schedules]
        require(len(set(labels)) == len(labels), "schedules", f"must be distinct, got {labels}")
        require(self.num_problems is None or self.num_problems >= 1, "num_problems", "must be >= 1")
        require(self.step is None or self.step >= 0, "step", "must be >= 0")
        require(self.problems_per_batch is None or self.problems_per_batch >= 1, "problems_per_batch",
                "must be >= 1 or null")
        require(self.bootstrap_resamples >= 1, "bootstrap_resamples", "must be >= 1")
        require(0 < self.confidence < 1, "confidence", "must be in (0, 1)")
        require(self.model.path is not None or self.dataset in BUILTIN_TASKS, "model.path",
                "is required for file datasets (the built-in model only knows Countdown)")
        self._check_task_options()

    def _check_task_options(self) -> None:
        """``countdown`` (built-in tasks) and ``data`` (files) checked by name and type at load, not mid-run."""
        from ead.config import config_from_dict
        from ead.data import DataSpec

        if self.dataset in BUILTIN_TASKS:
            from ead.modeling.loading import countdown_config

            countdown_config(self.dataset, self.countdown, where="countdown: ")
        allowed = {f.name for f in dataclasses.fields(DataSpec)} - {"path"}
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            raise ConfigError(f"unknown data field(s) {[f'data.{k}' for k in unknown]}; allowed: {sorted(allowed)}")
        config_from_dict(DataSpec, self.data, prefix="data")

    def block_size(self) -> int:
        """Problems per ``generate`` call: ``problems_per_batch``, or as many as fit the generation batch."""
        return self.problems_per_batch or max(1, self.sampling.generation_batch_size // self.samples)


def schedule_label(spec: dict[str, Any]) -> str:
    """Short unique name: ``fixed(tau=0.6)``, ``ead``, ``ead(tau_max=1.4,unit=0.4)``."""
    params = {k: v for k, v in spec.items() if k != "name"}
    if not params:
        return str(spec["name"])
    return f"{spec['name']}(" + ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in sorted(params.items())) + ")"


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", label).strip("_")


problem_seed = problem_block_seed  # the seed policy lives in ead.seeding


def resolve_model_path(model: str) -> tuple[str, int | None]:
    """``(path loadable by from_pretrained, training step or None)`` for a model argument.

    Accepts a ``save_pretrained`` directory (has ``config.json``), an ead checkpoint
    (``step_N/model/``), an ead run directory (``checkpoints/latest``), or a Hub id.
    """
    path = Path(model)
    if not path.is_dir():
        from ead.paths import check_model_reference

        check_model_reference(model, "model")  # a mistyped local path: "no such directory", not a Hub lookup
        return model, None  # a Hub id
    if (path / "checkpoints" / "latest").is_file():
        path = path / "checkpoints" / (path / "checkpoints" / "latest").read_text().strip()
    match = re.fullmatch(r"step_(\d+)", path.name)
    step = int(match.group(1)) if match else None
    for candidate in (path, path / "model"):
        if (candidate / "config.json").is_file():
            return str(candidate), step
    raise ConfigError(f"model: {model} has no config.json, model/config.json or checkpoints/latest")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Complete records of a JSONL file; a torn last line (killed mid-write) is cut off the file.

    A bad line before the last is an error naming ``file:line`` (see :mod:`ead.io`).
    """
    return repair_jsonl(path)


# ----------------------------------------------------------------------------- setup


def _load_problems_and_grader(config: EvalConfig, tokenizer: Any) -> tuple[list[Problem], Grader, int, str | None]:
    """Problems, grader, default max_new_tokens and the built-in task name (None for files)."""
    from ead.grading.registry import build_grader

    if config.dataset in BUILTIN_TASKS:
        from ead.modeling.loading import build_task

        task = build_task(config.dataset, countdown=config.countdown, where="countdown: ")
        problems, grader, budget = task.eval_problems(), task.grader, task.max_response_chars + 1
        builtin: str | None = config.dataset
    else:
        from ead.data import DataError, DataSpec, load_problems, preset_grader

        allowed = {f.name for f in dataclasses.fields(DataSpec)} - {"path"}
        unknown = sorted(set(config.data) - allowed)
        if unknown:
            raise ConfigError(f"unknown data field(s) {[f'data.{k}' for k in unknown]}; allowed: {sorted(allowed)}")
        try:
            problems = load_problems(DataSpec(path=config.dataset, **config.data), tokenizer).problems
        except (DataError, TypeError) as exc:
            raise ConfigError(f"dataset: {exc}") from None
        grader, budget, builtin = build_grader(preset_grader(config.dataset)), 1024, None
    if config.grader is not None:
        try:
            grader = build_grader(config.grader, **config.grader_options)
        except ValueError as exc:  # GraderNotFoundError, or options a function grader does not take
            raise ConfigError(f"grader: {exc}") from None
    return problems[: config.num_problems], grader, budget, builtin


def _resolve_model(config: EvalConfig, builtin: str | None) -> tuple[str, int | None]:
    """(path or Hub id, training step or None) of the model to evaluate."""
    if config.model.path is not None:
        return resolve_model_path(config.model.path)
    from ead.modeling.loading import builtin_model_path, countdown_config

    task_config = countdown_config(builtin, config.countdown, where="countdown: ")
    return str(builtin_model_path(task_config, config.model.warm_start_cache, decoy_rate=config.model.warm_start_decoy_rate,
                                  num_threads=config.model.torch_threads())), None


def _load_engine(config: EvalConfig, path: str, tokenizer: Any) -> RolloutEngine:
    """The sampling engine: the hf engine loads the model here, vLLM loads its own copy."""
    from ead.modeling.loading import load_model, resolve_device

    model = None
    if config.sampling.engine != "vllm":  # auto, lean and hf sample from a model loaded here
        model = load_model(path, dtype=config.model.dtype, device=resolve_device(config.model.device)).eval()
    return build_engine(config.sampling.engine, model=model, model_path=path, tokenizer=tokenizer,
                        batch_size=config.sampling.generation_batch_size, vllm_options=config.sampling.vllm,
                        seed=config.seed)


def _check_output_dir(config: EvalConfig) -> Path:
    """Refuse to mix runs: existing records need ``resume`` and the same sampling-relevant fields."""
    out = Path(config.output_dir)
    records_dir = out / "records"
    has_records = records_dir.is_dir() and any(p.stat().st_size > 0 for p in records_dir.glob("*.jsonl"))
    if has_records and not config.resume:
        raise ConfigError(f"output_dir {out} already has records: pass --resume to continue, or use another dir")
    if has_records and (out / "config.json").exists():
        requested = json.loads((out / "config.json").read_text()).get("requested", {})
        old = {name: moved for name, moved in MOVED_FIELDS.items() if moved_field_error(name, requested.get(name))
               and name in requested}
        if old:
            raise ConfigError(
                f"cannot resume in {out}: its config.json was written by an older ead eval whose model, sampling and "
                f"grading fields were flat ({', '.join(f'{k} -> {v}' for k, v in old.items())}); that layout cannot "
                "be checked against this config, so start the evaluation again in a new --output-dir")
        current = config_to_dict(config)
        changed = [key for key in RESUME_KEYS if _dotted(requested, key) != _dotted(current, key)]
        if changed:
            raise ConfigError(f"cannot resume in {out}: {changed} differ from the saved config.json")
    return out


def _dotted(data: dict[str, Any], key: str) -> Any:
    """``data["sampling"]["top_k"]`` for ``"sampling.top_k"``; None where a part is missing."""
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _save_config(out: Path, config: EvalConfig, resolved: dict[str, Any]) -> None:
    """Write ``config.json``; on resume the resolved values (model path, step, budget) must match too."""
    path = out / "config.json"
    if config.resume and path.exists():
        saved = json.loads(path.read_text()).get("resolved", {})
        changed = [key for key in resolved if key in saved and saved[key] != resolved[key]]
        if changed:
            raise ConfigError(f"cannot resume in {out}: resolved {changed} differ from the saved config.json")
    (out / "records").mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"requested": config_to_dict(config), "resolved": resolved}, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- per-problem record


def _record(problem: Problem, label: str, seed: int, rows: Any, grades: list, metrics: dict[str, float]) -> dict[str, Any]:
    """One problem's JSON line from its n rollout rows, grades and metrics."""
    mask = rows.response_mask.float()  # (n, T)
    lengths = mask.sum(dim=1)  # (n,)
    logprob_sum = (rows.behaviour_logprobs * mask).sum(dim=1)  # (n,) log mu(y), float32
    mean_tau = (rows.temperatures * mask).sum(dim=1) / lengths.clamp(min=1)  # (n,)
    correct = [bool(g.correct) for g in grades]
    keys = [g.answer_key for g in grades]
    return {
        "uid": problem.uid,
        "schedule": label,
        "seed": seed,
        "prompt": problem.prompt,
        "answer": problem.answer,
        "samples": list(rows.texts),
        "answer_keys": keys,
        "correct": correct,
        "rewards": [float(g.reward) for g in grades],
        "grade_errors": [g.info.get("error") for g in grades],
        "lengths": [int(x) for x in lengths.tolist()],
        "finished": [bool(x) for x in rows.finished.tolist()],
        "behaviour_logprob": {
            "sum": [round(float(x), 5) for x in logprob_sum.tolist()],
            "per_token": [round(float(s / max(n, 1.0)), 5) for s, n in zip(logprob_sum.tolist(), lengths.tolist())],
        },
        "mean_temperature": [round(float(x), 5) for x in mean_tau.tolist()],
        **_target_summary(rows, mask, lengths),
        "metrics": metrics,
    }


def _target_summary(rows: Any, mask: Any, lengths: Any) -> dict[str, Any]:
    """log pi(y) at temperature 1 and pi's entropy per token, when the sampler captured them."""
    if getattr(rows, "target_logprobs", None) is None:
        return {}
    target_sum = (rows.target_logprobs * mask).sum(dim=1)  # (n,)
    out: dict[str, Any] = {"target_logprob": {
        "sum": [round(float(x), 5) for x in target_sum.tolist()],
        "per_token": [round(float(s / max(n, 1.0)), 5) for s, n in zip(target_sum.tolist(), lengths.tolist())],
    }}
    if getattr(rows, "target_entropy", None) is not None:
        entropy = (rows.target_entropy * mask).sum(dim=1) / lengths.clamp(min=1)  # (n,)
        out["target_entropy_per_token"] = [round(float(x), 5) for x in entropy.tolist()]
    return out


def _sample_and_grade(engine: RolloutEngine, pool: Any, blocks: list[list[Problem]], labels: list[str],
                      schedules: list[Any], files: dict[str, Path], done: dict[str, set[str]], config: EvalConfig,
                      step: int, max_new_tokens: int, progress: Any, grade_stats: dict[str, int]) -> None:
    """Score each block under each schedule and append every finished problem's record at once.

    A block is sampled whole even when some of its problems are already recorded (a resume), so
    each problem's samples are the same whether or not the run was interrupted.
    """
    from ead.scoring import score_problems

    for block in blocks:
        seed = problem_seed(config.seed, [p.uid for p in block])
        for label, schedule in zip(labels, schedules):
            missing = [i for i, p in enumerate(block) if p.uid not in done[label]]
            if not missing:
                continue
            scored = score_problems(engine, pool, block, schedule, samples=config.samples, ks=config.k,
                                    max_new_tokens=max_new_tokens, step=step, top_k=config.sampling.top_k,
                                    top_p=config.sampling.top_p,
                                    seed=seed, capture_target=engine.can_capture_target, grade_only=set(missing))
            for key in grade_stats:
                grade_stats[key] += int(scored.grade_stats.get(key, 0))
            with JsonlAppender(files[label]) as f:
                for i in missing:
                    f.write(_record(block[i], label, seed, scored.rollouts.select(scored.rows(i)), scored.grades[i],
                                    scored.metrics[i]))
                    done[label].add(block[i].uid)
                    if progress is not None:
                        progress.update(1)


# ----------------------------------------------------------------------------- entry point


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """Run (or resume) an evaluation; returns the summary also written to ``summary.json``."""
    import torch

    from ead.evaluation.report import print_tables, summarize, write_plots
    from ead.grading.sandbox import GraderPool

    threads = config.model.torch_threads()  # 1 for the built-in tiny model, as in ead train
    if threads is not None:
        torch.set_num_threads(threads)

    # -- setup: output dir, model, problems, grader ---------------------------------------------
    out = _check_output_dir(config)
    builtin = config.dataset if config.dataset in BUILTIN_TASKS else None
    model_path, ckpt_step = _resolve_model(config, builtin)
    from ead.modeling.loading import load_tokenizer

    tokenizer = load_tokenizer(model_path)
    problems, grader, default_budget, _ = _load_problems_and_grader(config, tokenizer)
    step = config.step if config.step is not None else (ckpt_step or 0)
    max_new_tokens = config.sampling.max_new_tokens or default_budget
    resolved = {"model_path": model_path, "step": step, "max_new_tokens": max_new_tokens}
    _save_config(out, config, resolved)
    labels = [schedule_label(s) for s in config.schedules]
    schedules = [s.schedule for s in config.schedules]  # parsed once, at load
    files = {label: out / "records" / f"{_slug(label)}.jsonl" for label in labels}
    done = {label: {r["uid"] for r in read_records(files[label])} for label in labels}

    # -- sample and grade, block by block; every finished problem is appended at once ------------
    size = config.block_size()
    blocks = [problems[i : i + size] for i in range(0, len(problems), size)]
    todo = sum(1 for b in blocks for p in b for label in labels if p.uid not in done[label])
    progress = None
    if config.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=len(problems) * len(labels), initial=len(problems) * len(labels) - todo,
                        desc="ead eval", unit="problem", dynamic_ncols=True)
    grade_stats = {"errors": 0, "timeouts": 0}
    engine = _load_engine(config, model_path, tokenizer)
    try:
        grading = config.grading
        with GraderPool(grader, timeout_s=grading.timeout_s, num_workers=grading.workers, inline=grading.inline,
                        limits=grading.limits) as pool:
            _sample_and_grade(engine, pool, blocks, labels, schedules, files, done, config, step, max_new_tokens,
                              progress, grade_stats)
    finally:
        engine.close()
        if progress is not None:
            progress.close()

    # -- summarise from the records (identical whether or not the run was interrupted) ----------
    order = {p.uid: i for i, p in enumerate(problems)}
    records = {label: sorted((r for r in read_records(files[label]) if r["uid"] in order), key=lambda r: order[r["uid"]])
               for label in labels}
    summary = summarize(records, config, {**config_to_dict(config), **resolved})
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    write_plots(summary, out)
    print_tables(summary, grade_stats)
    return summary
