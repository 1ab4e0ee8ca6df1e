"""Supervised warm start of the tiny model on generated, deliberately imperfect Countdown chains.

``ead train`` with no arguments needs a base policy that sometimes solves the
built-in task: not never (no reward signal) and not always (nothing to learn).
:func:`warm_start` trains :func:`ead.modeling.tiny.build_tiny_model` for a fixed
number of steps on chains produced by the task itself, a share of them wrong on
purpose (a *decoy* chain that takes a wrong path, or an arithmetic *slip*), and
caches the result on disk::

    <cache_dir>/warmstart-<key>/      config.json, model.safetensors, tokenizer.json, ..., warmstart.json

``key`` hashes (task config, model config, SFT config, charset, VERSION), so
changing any of them trains a new model and nothing stale is reused. The
directory is written under a temporary name and moved into place with
``os.replace``: a crash leaves either nothing or a complete model.

Loss: mean cross-entropy over response tokens (chain characters and the final
``<eos>``), prompt and padding masked; each token weighs the same, so longer
chains count more, as in ordinary causal-LM fine-tuning.

Calibration (held-out pass@1 / pass@16 at temperature 1) is in
``docs/builtin_task.md``; reproduce it with ``python -m ead.modeling.warmstart``.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ead.modeling.tiny import CHARSET, TinyModelConfig, build_char_tokenizer, build_tiny_model, save_tiny_model
from ead.tasks.base import Problem
from ead.tasks.countdown import PRESETS, CountdownConfig, CountdownTask, Step, apply_op, format_chain

__all__ = [
    "VERSION",
    "SFTConfig",
    "warm_start",
    "cache_key",
    "default_cache_dir",
    "default_model_path",
    "default_task_and_model",
    "make_trace",
    "measure_base_policy",
]

VERSION = 1
"""Bump when the trace generator or training loop changes in a way that changes the model."""

DEFAULT_DECOY_RATE = {"standard": 0.1, "fork": 0.85, "search": 0.85}
"""Share of decoy (wrong-path) traces when ``SFTConfig.decoy_rate`` is None, per task variant. For
``search`` (countdown-search) it is the share of *attempts* that are random untried chains instead of a
winning one, and ``slip_rate`` is per attempt (see ead.tasks.countdown_search.search_trace)."""


class SFTConfigError(ValueError):
    """An SFT config field is out of range; the message names the field."""


@dataclass(frozen=True)
class SFTConfig:
    """Supervised warm-start budget and trace mixture (frozen: it keys the cache)."""

    steps: int = 400
    """Optimiser steps."""
    batch_size: int = 64
    """Chains per step."""
    lr: float = 3e-3
    """Peak AdamW learning rate (linear warm-up, then cosine decay to 10%)."""
    warmup_steps: int = 20
    """Linear warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    decoy_rate: float | None = None
    """Share of traces that take a wrong path with correct arithmetic; None = the variant's default."""
    slip_rate: float = 0.05
    """Share of traces with one arithmetic slip (a result off by 1 or 2, carried forward)."""
    seed: int = 0
    """Seeds the initialisation, the trace stream and the problem stream."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SFTConfigError(f"sft.{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise SFTConfigError(f"sft.warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise SFTConfigError(f"sft.lr must be a finite number > 0, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise SFTConfigError(f"sft.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.decoy_rate is not None and not 0.0 <= self.decoy_rate <= 1.0:
            raise SFTConfigError(f"sft.decoy_rate must be None or in [0, 1], got {self.decoy_rate!r}")
        if not 0.0 <= self.slip_rate <= 1.0:
            raise SFTConfigError(f"sft.slip_rate must be in [0, 1], got {self.slip_rate!r}")

    def resolved(self, task_config: CountdownConfig) -> SFTConfig:
        """The config with ``decoy_rate`` filled in from the task variant (the one place defaults resolve)."""
        if self.decoy_rate is not None:
            return self
        return replace(self, decoy_rate=DEFAULT_DECOY_RATE[task_config.variant])


SEARCH_SFT_CONFIG = SFTConfig(steps=300, batch_size=32)
"""The countdown-search warm-start budget: its traces are ~4x longer than a chain, so fewer, smaller
batches keep it to about 5 CPU-minutes (see docs/long_reasoning.md)."""


# --------------------------------------------------------------------------- traces


def _slip(steps: list[Step], rng: random.Random) -> list[Step]:
    """Put one wrong result in the chain and carry the wrong value into the step that uses it."""
    i = rng.randrange(len(steps))
    true_value = steps[i].result
    wrong = max(0, true_value + rng.choice((-2, -1, 1, 2)))
    if wrong == true_value:
        wrong = true_value + 1
    out = list(steps[:i]) + [replace(steps[i], result=wrong)]
    pending = {true_value: wrong}  # value written earlier -> value the chain now carries
    for step in steps[i + 1 :]:
        left, right = step.left, step.right
        if left in pending:
            left = pending.pop(left)
        elif right in pending:
            right = pending.pop(right)
        result = apply_op(left, step.op, right)
        if result < 0:  # keep it writable: swap the operands
            left, right, result = right, left, -result
        if result != step.result:
            pending[step.result] = result
        out.append(Step(left, step.op, right, result))
    return out


def make_trace(task: CountdownTask, problem: Problem, rng: random.Random, decoy_rate: float, slip_rate: float) -> str:
    """One supervised response for ``problem``: a reference chain, or with some probability a decoy; maybe a slip."""
    if rng.random() < decoy_rate:
        steps = task.decoy_chain(problem, rng)
    else:
        steps = task.reference_chain(problem, rng)
    if rng.random() < slip_rate:
        steps = _slip(steps, rng)
    return format_chain(steps)


def _batch_tensors(tokenizer, prompts: list[str], responses: list[str]):
    """Right-padded ``(B, T)`` input ids, attention mask and labels (-100 on prompt and padding)."""
    import torch

    rows, label_rows = [], []
    for prompt, response in zip(prompts, responses):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        r = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(p + r)
        label_rows.append([-100] * len(p) + r)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])  # (B, T)
    labels = torch.tensor([r + [-100] * (width - len(r)) for r in label_rows])  # (B, T)
    attention_mask = (torch.arange(width)[None, :] < torch.tensor([len(r) for r in rows])[:, None]).long()  # (B, T)
    return input_ids, attention_mask, labels


# --------------------------------------------------------------------------- cache


def cache_key(task_config: CountdownConfig, model_config: TinyModelConfig, sft_config: SFTConfig) -> str:
    """Hex digest naming the cached model; any change to the inputs or VERSION changes it."""
    import hashlib

    spec = {
        "version": VERSION,
        "task": task_config.to_dict(),
        "model": model_config.to_dict(),
        "sft": asdict(sft_config.resolved(task_config)),
        "charset": CHARSET,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$EAD_CACHE_DIR`` if set, else ``~/.cache/ead`` (:func:`ead.paths.cache_dir`, the one cache of every command)."""
    from ead.paths import cache_dir

    return cache_dir()


def _is_complete(path: Path) -> bool:
    return (path / "warmstart.json").is_file() and (path / "config.json").is_file()


def warm_start(
    task: CountdownTask,
    cache_dir: str | Path | None = None,
    *,
    model_config: TinyModelConfig | None = None,
    sft_config: SFTConfig | None = None,
    num_threads: int | None = None,
    progress: bool = True,
) -> Path:
    """Path of a warm-started tiny model for ``task``: from the cache, or trained now and cached.

    Args:
        task: the Countdown task (only its config matters; traces come from its
            training split with a seed of their own, so RL seeds share one base model).
        cache_dir: parent directory of cached models (default :func:`default_cache_dir`).
        model_config: tiny-model shape (default :class:`TinyModelConfig`).
        sft_config: budget and trace mixture (default :class:`SFTConfig`).
        num_threads: if given, ``torch.set_num_threads`` for the duration of training.
        progress: show a tqdm bar.

    Returns:
        A directory loadable with ``AutoModelForCausalLM.from_pretrained`` and
        ``AutoTokenizer.from_pretrained``; ``warmstart.json`` inside records the
        configs, the final loss and the wall time.
    """
    model_config = model_config or TinyModelConfig()
    sft_config = (sft_config or SFTConfig()).resolved(task.config)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache_dir / f"warmstart-{cache_key(task.config, model_config, sft_config)}"
    if _is_complete(final):
        return final

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        record = _train(task.config, model_config, sft_config, tmp, num_threads=num_threads, progress=progress)
        (tmp / "warmstart.json").write_text(json.dumps(record, indent=2, sort_keys=True))
        try:
            os.replace(tmp, final)
        except OSError:
            if not _is_complete(final):  # someone else's complete copy is fine; anything else is an error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _trace_source(task_config, sft: SFTConfig):
    """(problem stream, trace function) of the warm-start data: own seed, training split only."""
    if task_config.variant == "search":
        from ead.tasks.countdown_search import CountdownSearchTask, search_trace

        search = CountdownSearchTask(task_config, seed=1_000_003 + sft.seed)
        return search, lambda p, rng: search_trace(p, task_config, rng, sft.decoy_rate, sft.slip_rate, _slip)
    problems = CountdownTask(task_config, seed=1_000_003 + sft.seed)
    return problems, lambda p, rng: make_trace(problems, p, rng, sft.decoy_rate, sft.slip_rate)


def _train(
    task_config: CountdownConfig,
    model_config: TinyModelConfig,
    sft: SFTConfig,
    out_dir: Path,
    *,
    num_threads: int | None,
    progress: bool,
) -> dict[str, Any]:
    """Train from scratch and save into ``out_dir``; returns the record written as warmstart.json."""
    import torch
    from tqdm.auto import tqdm

    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        start, cpu_start = time.perf_counter(), time.process_time()
        torch.manual_seed(sft.seed)
        tokenizer = build_char_tokenizer()
        model = build_tiny_model(tokenizer, replace(model_config, seed=model_config.seed + sft.seed))
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=sft.lr, weight_decay=sft.weight_decay, betas=(0.9, 0.98))

        def lr_factor(step: int) -> float:
            if step < sft.warmup_steps:
                return (step + 1) / sft.warmup_steps
            progress_frac = (step - sft.warmup_steps) / max(1, sft.steps - sft.warmup_steps)
            return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress_frac))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        problems, make_response = _trace_source(task_config, sft)
        trace_rng = random.Random(f"warmstart-traces|{sft.seed}")
        losses: list[float] = []
        bar = tqdm(range(sft.steps), desc="warm start", disable=not progress, mininterval=1.0)
        for step in bar:
            batch = problems.train_batch(step, sft.batch_size)
            responses = [make_response(p, trace_rng) for p in batch]
            input_ids, attention_mask, labels = _batch_tensors(tokenizer, [p.prompt for p in batch], responses)
            loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if step % 20 == 0 or step == sft.steps - 1:
                bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
        model.eval()
        save_tiny_model(model, tokenizer, out_dir)
        return {
            "version": VERSION,
            "task": task_config.to_dict(),
            "model": model_config.to_dict(),
            "sft": asdict(sft),
            "final_loss": sum(losses[-20:]) / len(losses[-20:]),
            "wall_seconds": round(time.perf_counter() - start, 1),
            "cpu_seconds": round(time.process_time() - cpu_start, 1),  # all threads; robust to a busy machine
            "torch_threads": torch.get_num_threads(),
        }
    finally:
        torch.set_num_threads(previous_threads)


# --------------------------------------------------------------------------- defaults


def default_model_path(
    task_config: CountdownConfig | None = None,
    cache_dir: str | Path | None = None,
    *,
    num_threads: int | None = None,
    progress: bool = True,
) -> Path:
    """The warm-started base model for ``task_config`` (default: the ``countdown`` preset), training it if needed."""
    task = CountdownTask(task_config or PRESETS["countdown"])
    return warm_start(task, cache_dir, num_threads=num_threads, progress=progress)


def default_task_and_model(
    preset: str = "countdown",
    cache_dir: str | Path | None = None,
    *,
    seed: int = 0,
    num_threads: int | None = None,
    progress: bool = True,
) -> tuple[CountdownTask, Path]:
    """What ``ead train`` uses with no arguments: the preset's task (training seed ``seed``) and its base model."""
    if preset not in PRESETS:
        raise ValueError(f"task preset {preset!r} is not one of {sorted(PRESETS)}")
    task = CountdownTask(PRESETS[preset], seed=seed)
    return task, warm_start(task, cache_dir, num_threads=num_threads, progress=progress)


# --------------------------------------------------------------------------- calibration


def measure_base_policy(
    model_path: str | Path,
    task: CountdownTask,
    *,
    n: int = 16,
    temperature: float = 1.0,
    batch_size: int = 256,
    seed: int = 0,
    limit: int | None = None,
) -> dict[str, float]:
    """Held-out pass@1 (= mean@n), pass@n and worst@n at a fixed temperature (no top-k/top-p).

    The package's one sample -> grade -> score step (:func:`ead.scoring.score_problems`:
    the hf engine, a grader pool, :func:`ead.metrics.problem_metrics`), under ``seed`` without
    touching the caller's RNG. For the fork variant also ``right_first_step``: the share of samples
    whose first step is ``max-min``.
    """
    from ead.rollout import build_engine
    from ead.scoring import score_problems
    from ead.grading.sandbox import GraderPool
    from ead.modeling.loading import load_model_and_tokenizer
    from ead.schedules import FixedSchedule

    model, tokenizer = load_model_and_tokenizer(model_path)
    engine = build_engine("hf", model=model.eval(), tokenizer=tokenizer, batch_size=batch_size)
    problems = task.eval_problems()[:limit]
    # Countdown's own checker (no model-written code runs): graded in process, no worker start-up.
    with GraderPool(task.grader, inline=True) as pool:
        scored = score_problems(engine, pool, problems, FixedSchedule(tau=temperature), samples=n, ks=[1, n],
                                max_new_tokens=task.max_response_chars + 1, seed=seed)
    mean = scored.mean_metrics()
    stats = {"problems": len(problems), "n": n, "temperature": temperature,
             "pass@1": mean["pass@1"], f"pass@{n}": mean[f"pass@{n}"], f"worst@{n}": mean[f"worst@{n}"]}
    # fork variant: did the sample take the right first step ("max-min")?
    right_first = [text.startswith(f"{problems[r // n].meta['right_first']}-")
                   for r, text in enumerate(scored.rollouts.texts) if "right_first" in problems[r // n].meta]
    if right_first:
        stats["right_first_step"] = sum(right_first) / len(right_first)
    return stats


def main(argv: list[str] | None = None) -> None:
    """``python -m ead.modeling.warmstart [--preset countdown-fork] [--steps N]``: train (or reuse) and measure."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--preset", default="countdown", choices=sorted(PRESETS))
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--steps", type=int, default=SFTConfig.steps)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--temperatures", default="1.0")
    args = parser.parse_args(argv)

    task = CountdownTask(PRESETS[args.preset])
    start = time.perf_counter()
    path = warm_start(task, args.cache_dir, sft_config=SFTConfig(steps=args.steps), num_threads=args.threads)
    print(f"model: {path}  ({time.perf_counter() - start:.1f} s)")
    print(json.dumps(json.loads((path / "warmstart.json").read_text()), indent=2))
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    for tau in (float(t) for t in args.temperatures.split(",")):
        print(json.dumps(measure_base_policy(path, task, n=args.n, temperature=tau)))


if __name__ == "__main__":
    main()
