"""Inference-time pass@N and maj@N of a sweep's base model (no RL), one curve per schedule.

The paper also reports that EAD sampling at test time changes maj@N of off-the-shelf
models. This measures it on the sweep's own task and base model: N samples per held-out
problem under each schedule (all schedules under the same seed), graded by the task's
grader in a sandboxed pool with the cell's ``grading`` timeout, then pass@k (Chen et al. 2021) and subset-averaged maj@k for k = 1, 2, 4, ..., N,
each with a percentile-bootstrap 95% interval over problems.

Run by ``ead sweep`` as a job of its own:
``python -m ead.experiments.base_inference runs/sweep_default/sweep.yaml``
writes ``<out_dir>/base_inference/base_inference.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from ead.experiments.grid import SweepConfig, load_sweep_config
from ead.io import write_atomic


def schedules_to_measure(config: SweepConfig) -> dict[str, dict[str, Any]]:
    """``base_eval.schedules``, or the distinct ``sampling.schedule`` of each first-axis value."""
    if config.base_eval.schedules:
        return dict(config.base_eval.schedules)
    from ead.training.config import load_train_config

    out: dict[str, dict[str, Any]] = {}
    for cell in config.cells():
        first_label = next(iter(cell.labels.values()), cell.algorithm)
        spec = load_train_config(config.recipe, cell.overrides, algorithm=cell.algorithm).sampling.schedule.to_config()
        if spec not in out.values():
            out.setdefault(first_label, spec)
    return out


def measure(config: SweepConfig) -> dict[str, Any]:
    """Sample, grade and score the base model of ``config``'s first cell under each schedule.

    The one :func:`~ead.scoring.score_problems` step (the hf engine, the cell's
    grading section: a sandboxed pool with its timeout), then :func:`ead.metrics.metric_curves`.
    """
    import torch

    from ead.rollout import build_engine
    from ead.scoring import score_problems
    from ead.grading.sandbox import GraderPool
    from ead.metrics import metric_curves
    from ead.specs import ScheduleSpec
    from ead.training.config import load_train_config
    from ead.training.setup import build_task, load_policy

    cell = config.cells()[0]
    train_config = load_train_config(config.recipe, cell.overrides, algorithm=cell.algorithm)
    torch.set_num_threads(config.threads_per_cell)
    task = build_task(train_config.task, train_config.model)
    model, tokenizer = load_policy(train_config.model, train_config.task, torch.device("cpu"))
    engine = build_engine("hf", model=model, tokenizer=tokenizer, batch_size=train_config.sampling.generation_batch_size)
    problems = task.eval_problems()[: config.base_eval.num_problems]
    n = config.base_eval.samples
    ks = [k for k in (2**i for i in range(12)) if k <= n]
    grading = train_config.grading
    results: dict[str, Any] = {}
    with GraderPool(task.grader, timeout_s=grading.timeout_s, num_workers=grading.workers,
                    inline=grading.inline) as pool:
        for label, spec in schedules_to_measure(config).items():
            start = time.perf_counter()
            scored = score_problems(engine, pool, problems, ScheduleSpec(spec).schedule, samples=n, ks=[n],
                                    max_new_tokens=train_config.sampling.max_new_tokens, step=0,
                                    seed=config.base_eval.seed)
            groups = [([g.correct for g in scored.grades[i]], [g.answer_key for g in scored.grades[i]])
                      for i in range(len(problems))]
            curves = {metric: {"mean": c["mean"], "low": c["low"], "high": c["high"]}
                      for metric, c in metric_curves(groups, ks, ("pass", "maj"), confidence=0.95).items()}
            results[label] = {"schedule": spec, **curves,
                              "response_length": float(scored.rollouts.lengths.float().mean()),
                              "grade_errors": int(scored.grade_stats.get("errors", 0)),
                              "grade_timeouts": int(scored.grade_stats.get("timeouts", 0)),
                              "seconds": round(time.perf_counter() - start, 1)}
            print(f"base inference {label}: pass@{n}={curves['pass']['mean'][-1]:.3f} "
                  f"maj@{n}={curves['maj']['mean'][-1]:.3f}", flush=True)
    return {"task": train_config.task.name, "num_problems": len(problems), "samples": n, "k": ks,
            "max_new_tokens": train_config.sampling.max_new_tokens, "schedules": results}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m ead.experiments.base_inference SWEEP_YAML", file=sys.stderr)
        return 2
    config = load_sweep_config(argv[0])
    out = Path(config.out_dir) / "base_inference"
    out.mkdir(parents=True, exist_ok=True)
    record = measure(config)
    write_atomic(out / "base_inference.json", json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
