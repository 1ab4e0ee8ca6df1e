"""Reward containment: run any grader in worker processes with a per-call timeout.

A grader is user code (or sympy, which can take minutes on adversarial input). A
grader that raises, hangs or crashes its interpreter must cost one reward, not the
run. :class:`GraderPool` keeps ``num_workers`` persistent worker processes, started
with the ``"spawn"`` method (never ``fork``: forking a process that has loaded torch
and its thread pools can deadlock). Work is sent in chunks; the worker returns one
message per graded item, so the parent always knows which item is in flight and
applies the timeout *per call*:

* the grader raises            -> ``Grade(failure_reward, False, info={"error": ...})``, counted in ``errors``;
* the call exceeds ``timeout_s`` -> the worker is killed and respawned, the item gets
  ``info={"error": "timeout ...", "timeout": True}``, counted in ``timeouts``; the rest of
  its chunk is re-sent to the new worker;
* the worker process dies      -> same as an error (``"worker died ..."``), worker respawned;
* the grade's reward is NaN/inf (or not a number) -> an error: reward ``failure_reward``, counted in
  ``errors`` (a NaN reward would otherwise make the loss, and then the weights, NaN).

Workers also run under :class:`ResourceLimits` (``setrlimit``, Linux/macOS): address space
(a grader that allocates more gets ``MemoryError``, an error), CPU seconds per call (past it
the kernel kills the worker: "worker died"), and the size of any file it writes.

If a grader defines ``warmup()``, workers call it once before they report ready, so slow
first-call imports (sympy) do not eat into the first item's timeout.

``inline=True`` grades in the calling process (errors are still contained, timeouts are
not enforced): for tests and debugging with a debugger. Not thread-safe; use one pool
per thread.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import pickle
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Sequence

from ead.tasks.base import Grade, Grader, Problem

__all__ = ["GraderPool", "GraderStartupError", "ResourceLimits"]

_Item = tuple[int, Problem, str]  # (index in the batch, problem, response)


class GraderStartupError(RuntimeError):
    """A worker could not load the grader (unpicklable, import error, warmup failed or too slow)."""


@dataclass(frozen=True)
class ResourceLimits:
    """Kernel limits (``setrlimit``) on each grader worker, on top of the wall-clock timeout; None = no limit."""

    memory_mb: int | None = 4096
    """Address space (RLIMIT_AS) grading may add, MiB, on top of what the loaded grader already maps (a
    grader importing torch maps gigabytes of libraries before grading anything). Beyond it allocations fail
    with MemoryError (a grade error)."""
    cpu_s: int | None = 60
    """CPU seconds per grader call (RLIMIT_CPU, re-armed before each call); past it the worker is killed."""
    file_size_mb: int | None = 256
    """Largest file a worker may write (RLIMIT_FSIZE), MiB; a larger write kills the worker."""
    processes: int | None = None
    """RLIMIT_NPROC. Off by default: it counts every process of the user, not the worker's children, so
    any fixed number is either no limit or breaks graders that start a sandbox subprocess."""

    def __post_init__(self) -> None:
        for name in ("memory_mb", "cpu_s", "file_size_mb", "processes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                from ead.config import ConfigError

                raise ConfigError(f"{name} must be >= 1 or null (no limit), got {value}")


def _set_limit(kind: int, value: int) -> None:
    import resource

    _, hard = resource.getrlimit(kind)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, hard if kind == resource.RLIMIT_CPU else value))


def _mapped_bytes() -> int:
    """This process's current address-space size (Linux ``/proc``; 0 where unknown)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _apply_limits(limits: ResourceLimits) -> None:
    """Limits for the rest of the worker's life, set once the grader is loaded (the CPU limit is armed per call)."""
    try:
        import resource
    except ImportError:  # Windows: only the wall-clock timeout applies
        return
    if limits.memory_mb is not None:
        _set_limit(resource.RLIMIT_AS, _mapped_bytes() + limits.memory_mb * 2**20)
    if limits.file_size_mb is not None:
        _set_limit(resource.RLIMIT_FSIZE, limits.file_size_mb * 2**20)
    if limits.processes is not None and hasattr(resource, "RLIMIT_NPROC"):
        _set_limit(resource.RLIMIT_NPROC, limits.processes)


def _arm_cpu_limit(cpu_s: int | None) -> None:
    """Let the next call use ``cpu_s`` more CPU seconds than the worker has used so far (SIGXCPU past it)."""
    if cpu_s is None:
        return
    try:
        import resource
    except ImportError:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _set_limit(resource.RLIMIT_CPU, math.ceil(usage.ru_utime + usage.ru_stime) + cpu_s)


def _error_grade(reward: float, message: str, **extra: Any) -> Grade:
    return Grade(reward, False, None, {"error": message, **extra})


def _checked(grade: Any) -> Grade:
    """The grade, if it is a :class:`Grade` with a finite numeric reward; else raise (a grader error)."""
    if not isinstance(grade, Grade):
        raise TypeError(f"grader returned {type(grade).__name__}, expected Grade")
    if isinstance(grade.reward, bool) or not isinstance(grade.reward, (int, float)) or not math.isfinite(grade.reward):
        raise ValueError(f"grader returned a non-finite reward {grade.reward!r}")
    return grade


def _worker_main(conn: Connection, grader_bytes: bytes, failure_reward: float,
                 limits: ResourceLimits = ResourceLimits()) -> None:
    """Worker loop: receive chunks of items, send ``("done", index, grade, errored)`` per item."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        # The grader itself is configured code; what it is called on is untrusted model output, so the
        # limits apply from the first call on (a warm-up that imports torch must not eat the budget).
        grader = pickle.loads(grader_bytes)
        warmup = getattr(grader, "warmup", None)
        if callable(warmup):
            warmup()
        _apply_limits(limits)
    except BaseException as exc:  # noqa: BLE001 - report anything, then exit
        conn.send(("init_error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready",))
    while True:
        try:
            chunk = conn.recv()
        except EOFError:
            return
        if chunk is None:
            return
        for index, problem, response in chunk:
            try:
                _arm_cpu_limit(limits.cpu_s)
                grade = _checked(grader(problem, response))
                # send() pickles before writing, so an unpicklable info dict raises here, cleanly.
                conn.send(("done", index, grade, False))
            except BaseException as exc:  # noqa: BLE001 - SystemExit from user code is an error too
                conn.send(("done", index, _error_grade(failure_reward, f"{type(exc).__name__}: {exc}"), True))


@dataclass
class _Worker:
    process: Any
    conn: Connection
    ready: bool = False
    started_at: float = field(default_factory=time.monotonic)
    inflight: deque[_Item] = field(default_factory=deque)
    deadline: float = float("inf")


class GraderPool:
    """Run ``grader`` on batches in persistent worker processes with a per-call timeout.

    Use as a context manager (or call :meth:`close`) so no process outlives it::

        with GraderPool(MathGrader(), timeout_s=10) as pool:
            grades, stats = pool.grade_batch(problems, responses)

    The pool itself satisfies the :class:`~ead.tasks.base.Grader` protocol (one call at a time).
    """

    def __init__(
        self,
        grader: Grader,
        timeout_s: float = 10.0,
        num_workers: int = 1,
        chunk_size: int = 64,
        inline: bool = False,
        failure_reward: float = 0.0,
        start_method: str = "spawn",
        startup_timeout_s: float = 120.0,
        limits: ResourceLimits | None = None,
    ) -> None:
        """
        Args:
            grader: picklable grader (top-level function or dataclass instance).
            timeout_s: wall-clock limit per grader call, in seconds.
            num_workers: worker processes grading in parallel.
            chunk_size: items sent to a worker per message (fewer round trips).
            inline: grade in this process; exceptions contained, no timeout.
            failure_reward: reward given for an error or a timeout.
            start_method: ``"spawn"`` or ``"forkserver"`` (``"fork"`` is refused).
            startup_timeout_s: limit for a worker to import and warm up the grader.
            limits: kernel resource limits of each worker (default :class:`ResourceLimits`'s).
        """
        if timeout_s <= 0 or num_workers < 1 or chunk_size < 1:
            raise ValueError("need timeout_s > 0, num_workers >= 1 and chunk_size >= 1")
        if start_method not in ("spawn", "forkserver"):
            raise ValueError(f"start_method must be 'spawn' or 'forkserver', got {start_method!r}")
        # A grader with its own time limit (the code sandbox) must report its timeout itself.
        own_limit = getattr(grader, "max_call_seconds", None)
        if isinstance(own_limit, (int, float)) and not timeout_s > own_limit:
            from ead.config import ConfigError

            raise ConfigError(f"the grader pool's timeout ({timeout_s:g} s) must exceed the grader's own limit "
                             f"({own_limit:g} s): raise it (ead eval: grader_timeout_s, ead train: grading.timeout_s) "
                             "or lower the grader's timeout_s")
        self.grader = grader
        self.timeout_s = float(timeout_s)
        self.chunk_size = chunk_size
        self.inline = inline
        self.failure_reward = float(failure_reward)
        self.startup_timeout_s = float(startup_timeout_s)
        self.limits = limits if limits is not None else ResourceLimits()
        self.stats: dict[str, float] = {"calls": 0, "errors": 0, "timeouts": 0, "respawns": 0, "seconds": 0.0}
        """Cumulative counts over the pool's life (``grade_batch`` also returns per-batch counts)."""
        self._workers: list[_Worker] = []
        self._closed = False
        if inline:
            return
        try:
            self._grader_bytes = pickle.dumps(grader)
        except Exception as exc:
            raise GraderStartupError(f"grader {grader!r} is not picklable: {exc}") from exc
        self._ctx = mp.get_context(start_method)
        self._workers = [self._spawn() for _ in range(num_workers)]

    # ------------------------------------------------------------------ workers

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_worker_main, args=(child_conn, self._grader_bytes, self.failure_reward, self.limits), daemon=True
        )
        process.start()
        child_conn.close()
        return _Worker(process, parent_conn)

    def _kill(self, worker: _Worker) -> None:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        worker.conn.close()

    def _replace(self, worker: _Worker) -> _Worker:
        """Kill ``worker`` and start a fresh one in its slot."""
        self._kill(worker)
        fresh = self._spawn()
        self._workers[self._workers.index(worker)] = fresh
        self.stats["respawns"] += 1
        return fresh

    # ------------------------------------------------------------------ grading

    def __call__(self, problem: Problem, response: str) -> Grade:
        grades, _ = self.grade_batch([problem], [response])
        return grades[0]

    def grade_batch(self, problems: Sequence[Problem], responses: Sequence[str]) -> tuple[list[Grade], dict[str, float]]:
        """Grade ``responses[i]`` against ``problems[i]``.

        Returns:
            the grades in input order, and this batch's counts
            ``{"calls", "errors", "timeouts", "respawns", "seconds"}``.
        """
        if self._closed:
            raise RuntimeError("GraderPool is closed")
        if len(problems) != len(responses):
            raise ValueError(f"{len(problems)} problems but {len(responses)} responses")
        start = time.monotonic()
        before = dict(self.stats)
        items: list[_Item] = [(i, p, r) for i, (p, r) in enumerate(zip(problems, responses))]
        if self.inline:
            results = [self._grade_inline(p, r) for _, p, r in items]
        else:
            results = self._grade_in_workers(items)
        self.stats["calls"] += len(items)
        self.stats["seconds"] += time.monotonic() - start
        batch = {key: self.stats[key] - before[key] for key in self.stats}
        return results, batch

    def _grade_inline(self, problem: Problem, response: str) -> Grade:
        try:
            return _checked(self.grader(problem, response))
        except Exception as exc:  # noqa: BLE001
            self.stats["errors"] += 1
            return _error_grade(self.failure_reward, f"{type(exc).__name__}: {exc}")

    def _grade_in_workers(self, items: list[_Item]) -> list[Grade]:
        results: list[Grade | None] = [None] * len(items)
        per_chunk = max(1, min(self.chunk_size, -(-len(items) // len(self._workers))))
        todo: deque[list[_Item]] = deque(items[i : i + per_chunk] for i in range(0, len(items), per_chunk))

        def fail(worker: _Worker, grade: Grade, counter: str) -> None:
            """Record the in-flight item as failed, requeue the rest of its chunk, respawn."""
            index = worker.inflight.popleft()[0]
            results[index] = grade
            self.stats[counter] += 1
            if worker.inflight:
                todo.appendleft(list(worker.inflight))
            self._replace(worker)

        while todo or any(w.inflight for w in self._workers):
            now = time.monotonic()
            for worker in self._workers:
                if worker.ready and not worker.inflight and todo:
                    chunk = todo.popleft()
                    worker.conn.send(chunk)
                    worker.inflight = deque(chunk)
                    worker.deadline = time.monotonic() + self.timeout_s
            deadlines = [w.deadline for w in self._workers if w.inflight]
            deadlines += [w.started_at + self.startup_timeout_s for w in self._workers if not w.ready]
            ready = wait([w.conn for w in self._workers], timeout=max(0.0, min(deadlines, default=now) - now))
            # Drain messages first: a result that arrived just before its deadline counts.
            for worker in list(self._workers):
                if worker.conn not in ready:
                    continue
                try:
                    while worker.conn.poll():
                        self._handle_message(worker, worker.conn.recv_bytes(), results)
                except (EOFError, OSError):
                    worker.process.join(timeout=1)
                    code = worker.process.exitcode
                    if not worker.ready:
                        self._kill(worker)
                        raise GraderStartupError(
                            f"grader worker died while starting (exit code {code}); from a script, start "
                            "pools under `if __name__ == '__main__':` (the 'spawn' method re-imports the main module)"
                        )
                    if worker.inflight:
                        fail(worker, _error_grade(self.failure_reward, f"worker died (exit code {code})"), "errors")
                    else:
                        self._replace(worker)
            now = time.monotonic()
            for worker in list(self._workers):
                if not worker.ready and now > worker.started_at + self.startup_timeout_s:
                    self._kill(worker)
                    raise GraderStartupError(f"grader worker not ready after {self.startup_timeout_s} s")
                if worker.inflight and now > worker.deadline:
                    message = f"timeout after {self.timeout_s:g} s"
                    fail(worker, _error_grade(self.failure_reward, message, timeout=True), "timeouts")
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _handle_message(self, worker: _Worker, raw: bytes, results: list[Grade | None]) -> None:
        message = pickle.loads(raw)
        if message[0] == "ready":
            worker.ready = True
        elif message[0] == "init_error":
            self._kill(worker)
            raise GraderStartupError(f"grader worker failed to start: {message[1]}")
        else:
            _, index, grade, errored = message
            expected = worker.inflight.popleft()[0]
            assert index == expected, f"worker answered item {index}, expected {expected}"
            results[index] = grade
            self.stats["errors"] += int(errored)
            worker.deadline = time.monotonic() + self.timeout_s

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Stop all workers (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except (OSError, ValueError):
                pass
        for worker in self._workers:
            worker.process.join(timeout=2)
            self._kill(worker)
        self._workers = []

    def __enter__(self) -> GraderPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
