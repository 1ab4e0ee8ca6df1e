"""Fault injection: kill ``ead train`` / ``ead eval`` at random moments, resume, compare with an uninterrupted run.

Each trial starts a small run in a fresh directory, injects one fault, then reruns the same
command with ``--resume`` until it succeeds, and checks that the result equals the reference
run's: the same metrics records (timings aside) and bit-identical final weights for training;
the same per-problem records and summary for evaluation. Faults:

* ``kill9``        SIGKILL at a random moment of the run;
* ``kill9-save``   SIGKILL while a checkpoint is being written (a ``*.tmp-*`` directory exists);
* ``sigterm`` / ``sigint``  at a random moment (SIGINT is Ctrl-C: the run cleans up and exits 130);
* ``disk-full``    after the first checkpoint, the file-size limit of the running process is cut
                   (``prlimit(RLIMIT_FSIZE)``), so the next checkpoint write fails like a full disk;
                   the run must stop with a message and keep the previous checkpoint;
* ``torn-line``    SIGKILL, then half a JSON line is appended to metrics.jsonl / a records file
                   (what a full disk leaves), before resuming;
* ``double``       two SIGKILLs in a row (the first resume is killed too).

Usage (from the repository root; the built-in model's warm start is cached under .cache/ead)::

    nice python scripts/fault_injection.py --train-trials 20 --eval-trials 5 --jobs 2 --out /tmp/ead_faults

Prints one line per trial and a summary; exits 1 if any resume differs from its reference.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_ARGS = [
    "train.steps=3", "train.prompts_per_step=4", "train.samples_per_prompt=4", "train.mini_batch_size=16",
    "train.micro_batch_size=16", "eval.every=3", "eval.samples=4", "eval.k=[1,4]", "task.num_eval_problems=4",
    "output.save_every=1", "output.progress=false", "model.num_threads=1", "model.warm_start_cache=.cache/ead",
]
EVAL_ARGS = ["--dataset", "countdown", "--num-problems", "12", "--samples", "4", "--k", "1,4", "--no-progress",
             "--schedule", "fixed:tau=1.0", "--schedule", "ead:unit=0.4,warmup_tokens=0", "problems_per_batch=2",
             "model.warm_start_cache=.cache/ead", "model.num_threads=1"]
FAULTS = ["kill9", "kill9-save", "sigterm", "sigint", "disk-full", "torn-line", "double"]
TRAIN_FAULTS = (FAULTS * 3)[:20]
EVAL_FAULTS = ["kill9", "sigterm", "sigint", "torn-line", "double"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _command(kind: str, out: Path, resume: bool) -> list[str]:
    base = [sys.executable, "-m", "ead.cli", kind]
    if kind == "train":
        return base + [*TRAIN_ARGS, f"output.dir={out}"] + (["--resume"] if resume else [])
    return base + [*EVAL_ARGS, "--output-dir", str(out)] + (["--resume"] if resume else [])


def _start(kind: str, out: Path, resume: bool, log) -> subprocess.Popen:
    return subprocess.Popen(_command(kind, out, resume), cwd=ROOT, env=_env(), stdout=log, stderr=log,
                            start_new_session=True)


def _run(kind: str, out: Path, resume: bool, log) -> int:
    return _start(kind, out, resume, log).wait()


def _wait_for(condition, process: subprocess.Popen, timeout: float, poll: float = 0.002) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and process.poll() is None:
        if condition():
            return True
        time.sleep(poll)
    return False


def _kill(process: subprocess.Popen, sig: int) -> None:
    if process.poll() is None:
        os.kill(process.pid, sig)
    process.wait()
    if sig == signal.SIGKILL or sig == signal.SIGTERM:  # the grader workers die with their parent's session
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _tear_target(out: Path, kind: str) -> Path | None:
    """The JSONL file a torn-line trial tears, once it holds at least one record."""
    candidates = [out / "metrics.jsonl"] if kind == "train" else sorted((out / "records").glob("*.jsonl"))
    return next((p for p in candidates if p.is_file() and p.stat().st_size > 0), None)


def _append_torn_line(out: Path, kind: str) -> str:
    target = _tear_target(out, kind)
    if target is None:
        return "no file yet"
    with open(target, "a") as handle:
        handle.write('{"step": 99, "reward/mean": 0.1')  # half a record, no newline
    return f"torn line appended to {target.name}"


def inject(kind: str, fault: str, out: Path, duration: float, rng: random.Random, log) -> str:
    """Start a run, inject ``fault``, return a note on what happened."""
    process = _start(kind, out, False, log)
    note = ""
    if fault in ("kill9", "sigterm", "sigint", "torn-line", "double"):
        delay = rng.uniform(0.15, 0.95) * duration
        if fault == "torn-line":  # kill once the file to tear holds a record, so there is something to lose
            begun = time.monotonic()
            _wait_for(lambda: _tear_target(out, kind) is not None, process, duration * 3)
            delay = time.monotonic() - begun + rng.uniform(0.0, 0.3) * duration
            time.sleep(max(0.0, delay - (time.monotonic() - begun)))
        else:
            time.sleep(delay)
        sig = {"sigterm": signal.SIGTERM, "sigint": signal.SIGINT}.get(fault, signal.SIGKILL)
        alive = process.poll() is None
        _kill(process, sig)
        note = f"{signal.Signals(sig).name} at {delay:.1f}s" + ("" if alive else " (had finished)")
        if fault == "torn-line":
            note += "; " + _append_torn_line(out, kind)
        if fault == "double":
            second = _start(kind, out, True, log)
            delay2 = rng.uniform(0.2, 0.8) * duration
            time.sleep(delay2)
            _kill(second, signal.SIGKILL)
            note += f"; resume SIGKILLed at {delay2:.1f}s"
    elif fault == "kill9-save":
        checkpoints = out / "checkpoints"
        saving = lambda: checkpoints.is_dir() and any(".tmp-" in p.name for p in checkpoints.iterdir())  # noqa: E731
        # skip a random number of saves so the kill lands on different steps
        for _ in range(rng.randint(0, 2)):
            _wait_for(saving, process, duration * 2)
            _wait_for(lambda: not saving(), process, duration * 2)
        hit = _wait_for(saving, process, duration * 2)
        _kill(process, signal.SIGKILL)
        note = "SIGKILL while writing " + (next((p.name for p in checkpoints.iterdir() if ".tmp-" in p.name), "?")
                                           if hit else "(no save seen)")
    elif fault == "disk-full":
        latest = out / "checkpoints" / "latest"
        _wait_for(latest.is_file, process, duration * 2)
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))  # smaller than a checkpoint
        code = process.wait()
        message = [line for line in (out.parent / f"{out.name}.log").read_text().splitlines() if "disk full" in line]
        note = f"file-size limit cut after {latest.read_text().strip()}; exit {code}; " + \
            (f"message: {message[-1][:160]!r}" if message else "NO disk-full message")
        if not message or "Traceback" in (out.parent / f"{out.name}.log").read_text():
            note += " [message check FAILED]"
    return note


def _comparable_metrics(run: Path) -> list[dict]:
    from ead.io import read_jsonl

    return [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))}
            for r in read_jsonl(run / "metrics.jsonl", missing_ok=False)]


def _same_weights(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    name = (a / "checkpoints" / "latest").read_text().strip()
    if (b / "checkpoints" / "latest").read_text().strip() != name:
        return False
    wa = load_file(a / "checkpoints" / name / "model" / "model.safetensors")
    wb = load_file(b / "checkpoints" / name / "model" / "model.safetensors")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def compare(kind: str, reference: Path, run: Path) -> tuple[bool, str]:
    if kind == "train":
        same_metrics = _comparable_metrics(reference) == _comparable_metrics(run)
        same_weights = _same_weights(reference, run)
        return same_metrics and same_weights, f"metrics {'equal' if same_metrics else 'DIFFER'}, " \
                                              f"weights {'bit-identical' if same_weights else 'DIFFER'}"
    from ead.io import read_jsonl

    files = sorted(p.name for p in (reference / "records").glob("*.jsonl"))
    same_records = files == sorted(p.name for p in (run / "records").glob("*.jsonl")) and all(
        read_jsonl(reference / "records" / f) == read_jsonl(run / "records" / f) for f in files)
    summary = [json.loads((d / "summary.json").read_text())["schedules"] for d in (reference, run)]
    same_summary = summary[0] == summary[1]
    return same_records and same_summary, f"records {'equal' if same_records else 'DIFFER'}, " \
                                          f"summary {'equal' if same_summary else 'DIFFER'}"


def trial(kind: str, fault: str, index: int, root: Path, reference: Path, duration: float,
          rng: random.Random) -> tuple[bool, str]:
    out = root / f"{kind}-{index:02d}-{fault}"
    with open(root / f"{out.name}.log", "w") as log:
        note = inject(kind, fault, out, duration, rng, log)
        resumes = 0
        while True:  # resume until it finishes (a fault may have hit before anything was written)
            resumes += 1
            code = _run(kind, out, True, log)
            if code == 0 or resumes >= 3:
                break
    if code != 0:
        return False, f"{note}; resume failed with exit {code} (see {out.name}.log)"
    ok, detail = compare(kind, reference, out)
    ok = ok and "FAILED" not in note
    return ok, f"{note}; {resumes} resume(s); {detail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-trials", type=int, default=len(TRAIN_FAULTS))
    parser.add_argument("--eval-trials", type=int, default=len(EVAL_FAULTS))
    parser.add_argument("--out", type=Path, default=Path("/tmp/ead_fault_injection"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="only these faults (for a quick check)")
    parser.add_argument("--jobs", type=int, default=2, help="trials run side by side")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    rng = random.Random(args.seed)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    results = []
    start_all = time.monotonic()
    for kind, count, faults in (("train", args.train_trials, TRAIN_FAULTS), ("eval", args.eval_trials, EVAL_FAULTS)):
        faults = [f for f in faults if not args.only or f in args.only]
        if count == 0 or not faults:
            continue
        reference = args.out / f"{kind}-reference"
        start = time.monotonic()
        with open(args.out / f"{reference.name}.log", "w") as log:
            code = _run(kind, reference, False, log)
        duration = time.monotonic() - start
        if code != 0:
            print(f"{kind} reference run failed (exit {code}); see {reference}.log", file=sys.stderr)
            return 2
        print(f"{kind} reference: {duration:.1f}s", flush=True)
        plan = [(i, faults[i % len(faults)], random.Random(rng.random())) for i in range(count)]

        def one(item, kind=kind, reference=reference, duration=duration):
            i, fault, trial_rng = item
            ok, detail = trial(kind, fault, i, args.out, reference, duration, trial_rng)
            print(f"{kind} {i:2d} {fault:<10} {'OK  ' if ok else 'FAIL'} {detail}", flush=True)
            return kind, fault, ok

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results.extend(pool.map(one, plan))
    for kind in ("train", "eval"):
        mine = [r for r in results if r[0] == kind]
        if mine:
            print(f"{kind}: {sum(ok for _, _, ok in mine)}/{len(mine)} trials resumed equal to the uninterrupted run "
                  f"(faults: {', '.join(sorted({f for _, f, _ in mine}))})")
    print(f"total {time.monotonic() - start_all:.0f}s")
    return 0 if all(ok for _, _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
