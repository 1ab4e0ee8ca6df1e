"""``ead sweep``: run every cell of a grid with the same budget, ``jobs`` at a time, resumable.

    plan      expand the grid into cells; validate every cell's train config now
    warm up   build each distinct warm-started base model once, before any cell starts
    queue     cells without a DONE marker, seed-major (plus the base-model inference job)
    run       ``jobs`` subprocesses ``python -m ead.cli train ...`` at a time, one thread each;
              a cell with a checkpoint continues with ``--resume``
    record    DONE marker after a clean exit; a failure is recorded and the sweep goes on

Layout of ``out_dir``::

    sweep.yaml              the resolved sweep config
    status.json             per cell: state, attempts, seconds, return code, log tail of a failure
    base_inference/         base_inference.json (+ DONE): pass@N / maj@N of the base model
    cells/<cell id>/        one ``ead train`` run dir: config.yaml, metrics.jsonl, checkpoints/,
                            train.log, cell.json (its exact command), DONE

Rerunning the same command skips cells with ``DONE`` and resumes the others, so an
interrupted sweep continues where it stopped. SIGINT or SIGTERM to the sweep stops its running
cells (their own processes, by handle) before it exits. A cell whose saved command differs from the
current one is refused (its results would mix two budgets): delete it or use a new out_dir.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ead.config import ConfigError, config_to_dict
from ead.experiments.grid import Cell, SweepConfig
from ead.io import write_atomic

DONE = "DONE"
CELL_FILE = "cell.json"
TRAIN_ENTRY = ["-m", "ead.cli", "train"]
"""What follows ``python`` to run one cell (tests swap in a stand-in script)."""


@dataclass
class Job:
    """One subprocess of the sweep: a training cell or the base-model inference."""

    id: str
    argv: list[str]
    run_dir: Path
    resume: bool = False
    args: list[str] = field(default_factory=list)
    """The cell's own arguments (saved in cell.json; a rerun must use the same ones)."""


@dataclass
class SweepResult:
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def is_done(run_dir: Path) -> bool:
    return (Path(run_dir) / DONE).is_file()


def is_selected(cell: Cell, only: dict[str, set[str]] | None) -> bool:
    """Whether ``cell`` passes ``ead sweep --only`` (axis -> allowed values; None or {} keeps every cell)."""
    return all(cell.labels.get(axis) in values for axis, values in (only or {}).items())


def plan_jobs(config: SweepConfig, only: dict[str, set[str]] | None = None) -> tuple[list[Job], list[str]]:
    """Jobs still to run and ids of cells already finished; checks each cell's saved command.

    ``only``: axis -> values; cells with another value on that axis are left out (neither run nor skipped).
    """
    jobs, skipped = [], []
    if config.base_eval.enabled:
        base_dir = Path(config.out_dir) / "base_inference"
        if is_done(base_dir):
            skipped.append("base_inference")
        else:
            jobs.append(Job("base_inference", [sys.executable, "-m", "ead.experiments.base_inference",
                                               str(Path(config.out_dir) / "sweep.yaml")], base_dir))
    # Seed-major order: every group gets seed 0 before any gets seed 1, so a sweep cut short
    # still has every group, with fewer seeds, instead of some groups with all seeds and others none.
    for cell in sorted(config.cells(), key=lambda c: config.seeds.index(c.seed)):
        if not is_selected(cell, only):
            continue
        if is_done(cell.run_dir):
            skipped.append(cell.id)
            continue
        args = cell.train_args(config.recipe)
        _check_same_command(cell, args)
        # A cell that started before is continued (from step 0 if it died before its first checkpoint):
        # `ead train` refuses to start over a run directory that has metrics or checkpoints.
        resume = (cell.run_dir / "checkpoints" / "latest").is_file() or (cell.run_dir / "metrics.jsonl").exists()
        argv = [sys.executable, *TRAIN_ENTRY, *args, *(["--resume"] if resume else [])]
        jobs.append(Job(cell.id, argv, cell.run_dir, resume, args))
    return jobs, skipped


def _check_same_command(cell: Cell, args: list[str]) -> None:
    saved = cell.run_dir / CELL_FILE
    if saved.is_file():
        before = json.loads(saved.read_text()).get("args")
        if before != args:
            raise ConfigError(f"cell {cell.id} in {cell.run_dir} was started with different arguments "
                              f"({before} vs {args}); delete that directory or choose another out_dir")


def validate_cells(config: SweepConfig) -> None:
    """Load every cell's train config now, so a typo fails before hours of compute (error names the cell)."""
    from ead.training.config import load_train_config

    for cell in config.cells():
        try:
            load_train_config(config.recipe, cell.overrides, algorithm=cell.algorithm)
        except ConfigError as exc:
            raise ConfigError(f"cell {cell.id}: {exc}") from None


def warm_up(config: SweepConfig, progress: bool = True) -> list[str]:
    """Build each distinct base model the cells need (cached), before cells start in parallel."""
    from ead.training.config import load_train_config
    from ead.training.setup import policy_path

    seen: dict[str, str] = {}
    for cell in config.cells():
        train_config = load_train_config(config.recipe, cell.overrides, algorithm=cell.algorithm)
        key = json.dumps([config_to_dict(train_config.task), train_config.model.path,
                          train_config.model.warm_start_cache, train_config.model.warm_start_decoy_rate],
                         sort_keys=True, default=str)
        if key not in seen:
            if train_config.model.path is None and progress:
                print(f"ead sweep: warm start for task {train_config.task.name} (cached after the first time)",
                      file=sys.stderr)
            seen[key] = str(policy_path(train_config.model, train_config.task))
    return sorted(set(seen.values()))


def run_sweep(config: SweepConfig, *, progress: bool = True, poll_s: float = 0.5,
              only: dict[str, set[str]] | None = None) -> SweepResult:
    """Run every unfinished cell (and the base-model inference); returns what finished and what failed."""
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    validate_cells(config)
    (out_dir / "sweep.yaml").write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    jobs, skipped = plan_jobs(config, only)
    status = _load_status(out_dir)
    result = SweepResult(skipped=skipped)
    for job_id in skipped:
        status.setdefault(job_id, {})["state"] = "done"
    if jobs:
        warm_up(config, progress=progress)
    env = {**os.environ, "OMP_NUM_THREADS": str(config.threads_per_cell),
           "MKL_NUM_THREADS": str(config.threads_per_cell), "TOKENIZERS_PARALLELISM": "false"}
    bar = _progress(len(jobs) + len(skipped), len(skipped), progress)
    pending, running = list(jobs), {}
    previous_handlers = _interrupt_on_signals()
    try:
        while pending or running:
            while pending and len(running) < config.jobs:
                job = pending.pop(0)
                running[job.id] = (job, _start(job, env), time.time())
                entry = status.setdefault(job.id, {})
                entry.update(state="running", attempts=entry.get("attempts", 0) + 1, resumed=job.resume)
                _save_status(out_dir, status)
            time.sleep(poll_s)
            for job_id, (job, proc, started) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                del running[job_id]
                seconds = round(time.time() - started, 1)
                entry = status[job_id]
                entry.update(returncode=code, seconds=entry.get("seconds", 0) + seconds)
                if code == 0:
                    (job.run_dir / DONE).write_text(json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                                "seconds": seconds}) + "\n")
                    entry["state"] = "done"
                    entry.pop("log_tail", None)
                    result.done.append(job_id)
                else:
                    entry.update(state="failed", log_tail=_tail(job.run_dir / "train.log"))
                    result.failed.append(job_id)
                    print(f"ead sweep: {job_id} failed (exit {code}); see {job.run_dir / 'train.log'}", file=sys.stderr)
                _save_status(out_dir, status)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(done=len(result.done) + len(skipped), failed=len(result.failed), refresh=True)
    except BaseException:
        for job_id, (job, proc, _) in running.items():
            proc.terminate()  # only our own children, by handle
        for job_id, (job, proc, _) in running.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            status[job_id]["state"] = "interrupted"
        _save_status(out_dir, status)
        raise
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        if bar is not None:
            bar.close()
    return result


def _interrupt_on_signals() -> dict[int, object]:
    """Turn SIGTERM and SIGINT into KeyboardInterrupt so the running cells are stopped, not orphaned.

    SIGINT needs this too: a process started in the background by a non-interactive shell
    (``nohup ead sweep ... &``) inherits SIGINT as ignored, and Python then never installs its handler.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    return {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}


def _start(job: Job, env: dict[str, str]) -> subprocess.Popen:
    job.run_dir.mkdir(parents=True, exist_ok=True)
    (job.run_dir / CELL_FILE).write_text(json.dumps({"id": job.id, "args": job.args}, indent=1) + "\n")
    log = open(job.run_dir / "train.log", "a")
    log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(job.argv)}\n")
    log.flush()
    try:
        return subprocess.Popen(job.argv, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    finally:
        log.close()  # the child holds its own descriptor


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _load_status(out_dir: Path) -> dict[str, dict[str, Any]]:
    path = out_dir / "status.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_status(out_dir: Path, status: dict[str, dict[str, Any]]) -> None:
    write_atomic(out_dir / "status.json", json.dumps(status, indent=1, sort_keys=True) + "\n")


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="ead sweep", unit="cell", dynamic_ncols=True)
