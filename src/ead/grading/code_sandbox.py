"""Run an untrusted Python program in a bubblewrap sandbox with resource limits.

Model-written code is hostile input. Isolation comes from an existing tool, bubblewrap
(``bwrap``, the sandbox Flatpak uses; Debian/Ubuntu package ``bubblewrap``), not from
checks of our own. Each program runs in a fresh sandbox (see docs/code_rewards.md):

* **filesystem**: an empty root; read-only binds of ``/usr``, the ``/lib*`` / ``/bin``
  entries and the interpreter's prefix, nothing else: no ``/root``, ``/home``, ``/work``,
  ``/etc`` or working directory. ``/tmp`` (the working directory) is a fresh size-capped
  tmpfs, gone when the program ends; ``/proc`` is the sandbox's own, ``/dev`` a minimal one.
* **namespaces**: new PID, network (only a loopback with nothing listening), IPC, UTS and
  cgroup namespaces; unprivileged callers also get a user namespace (``--unshare-all``).
  ``--die-with-parent`` and ``--new-session`` (no terminal injection).
* **identity**: all capabilities dropped, ``no_new_privs``. Run as root, bwrap does not
  create a user namespace (its uid map would keep the program at host uid 0, exempt from
  the process limit), so the program is switched to an unused uid/gid by ``setpriv``
  (util-linux) with empty capability and bounding sets.
* **environment**: cleared (``--clearenv``), only ``PATH``/``LANG``; the interpreter runs
  with ``-I -S`` (no ``PYTHON*`` variables, no user or site packages).
* **resources** (set by ``prlimit`` (util-linux) just before ``bwrap`` starts, inherited by
  everything inside): address space, CPU seconds, file size, processes, open files, no core
  dumps; plus a wall-clock timeout that SIGKILLs the process group, which takes the PID
  namespace (and every process the program forked) with it.

:class:`RlimitsOnlySandbox` is the documented weaker fallback: the same resource limits,
cleared environment, fresh working directory and timeout, but **no** filesystem or network
isolation. It is never chosen implicitly.
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ead.config import ConfigError

__all__ = [
    "SandboxLimits",
    "SandboxResult",
    "SandboxUnavailableError",
    "BubblewrapSandbox",
    "RlimitsOnlySandbox",
    "build_sandbox",
    "SANDBOX_KINDS",
]

Status = Literal["passed", "failed", "timeout", "oom", "sandbox-error"]

SANDBOX_UID = 200_000
"""First host uid used for sandboxed programs when running as root (a range with no users in it).
Each sandbox takes ``SANDBOX_UID + pid % 60000`` so concurrent graders do not share a process count."""

# The program arrives on stdin as "<nonce>\n<source>". The driver prints the nonce after the
# program returned normally, so `exit(0)` / `os._exit(0)` before the tests ran is not a pass.
_DRIVER = r"""
import os, sys
def _ead_main():
    data = sys.stdin.buffer.read()
    os.close(0)
    nonce, _, source = data.partition(b"\n")
    os.write(1, nonce + b" started\n")
    code = compile(source.decode("utf-8", "replace"), "solution.py", "exec")
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    sys.stdout.flush()
    os.write(1, b"\n" + nonce + b" finished\n")
_ead_main()
"""


class SandboxUnavailableError(ConfigError):
    """The isolation tool is missing or cannot create its namespaces here (the CLI prints the message)."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one program run (each also documented in docs/code_rewards.md)."""

    timeout_s: float = 5.0
    """Wall-clock limit; on expiry the whole process group (and PID namespace) is SIGKILLed."""
    cpu_s: int = 5
    """RLIMIT_CPU in seconds (SIGXCPU, then SIGKILL): a busy loop ends even when wall time is generous."""
    memory_mb: int = 1024
    """RLIMIT_AS, address space of each process, MiB: a large allocation raises MemoryError."""
    file_mb: int = 16
    """RLIMIT_FSIZE, largest file any process may write (also caps captured stdout/stderr), MiB."""
    tmpfs_mb: int = 64
    """Size of the throwaway ``/tmp`` working directory (bubblewrap only), MiB."""
    max_processes: int = 32
    """RLIMIT_NPROC: processes (and threads) the program may have at once (fork bombs stop here)."""
    max_open_files: int = 256
    """RLIMIT_NOFILE."""

    def __post_init__(self) -> None:
        for name in ("timeout_s", "cpu_s", "memory_mb", "file_mb", "tmpfs_mb", "max_processes", "max_open_files"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"code grader: option {name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one program."""

    status: Status
    """``passed`` (returned normally, exit 0), ``failed`` (raised, non-zero exit, killed by a signal),
    ``timeout`` (wall or CPU limit), ``oom`` (MemoryError), ``sandbox-error`` (the program never started)."""
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    detail: str = ""
    """One line saying why (the exception or signal), empty when passed."""


def _prlimit_args(limits: SandboxLimits, nproc: int) -> list[str]:
    """``prlimit`` (util-linux) prefix setting the limits on itself, inherited by bwrap and the program.

    A tool rather than a ``preexec_fn``: Python code between fork and exec can deadlock in a
    multi-threaded parent (a trainer grading inline), and without it ``subprocess`` can use vfork.
    SIGXCPU comes at the soft CPU limit (reported as a timeout), SIGKILL one second later if ignored.
    """
    mib = 1 << 20
    return ["prlimit", f"--as={limits.memory_mb * mib}", f"--cpu={int(limits.cpu_s)}:{int(limits.cpu_s) + 1}",
            f"--fsize={limits.file_mb * mib}", f"--nproc={nproc}", f"--nofile={limits.max_open_files}",
            "--core=0", "--"]


def _own_process_count() -> int:
    """Processes and threads of this uid (RLIMIT_NPROC counts them all, not just the sandbox's)."""
    uid, count = os.getuid(), 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(entry / "task"))
            except OSError:
                continue
    return count


def _exits_within(process: subprocess.Popen, seconds: float) -> bool:
    """Block until ``process`` exits or ``seconds`` pass. A pidfd wakes at once; ``Popen.wait(timeout)``
    polls with sleeps of up to 50 ms, which is most of a short program's cost."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # Linux < 5.3 or Python < 3.9
        try:
            process.wait(timeout=seconds)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        return bool(select.select([pidfd], [], [], seconds)[0])
    finally:
        os.close(pidfd)


def _tail(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def _classify(returncode: int | None, stdout: str, stderr: str, nonce: str, timed_out: bool,
              limits: SandboxLimits, seconds: float) -> tuple[Status, str]:
    if f"{nonce} started" not in stdout:
        if timed_out:
            return "timeout", f"wall-clock limit {limits.timeout_s:g} s before the program started"
        return "sandbox-error", _tail(stderr.strip(), 300) or f"exit code {returncode} before the program started"
    if timed_out:
        return "timeout", f"wall-clock limit {limits.timeout_s:g} s"
    finished = stdout.rstrip().endswith(f"{nonce} finished")
    if returncode == 0 and finished:
        return "passed", ""
    last_line = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if "MemoryError" in last_line:
        return "oom", f"MemoryError (address-space limit {limits.memory_mb} MiB)"
    # A signal shows as a negative return code, or 128+N when bwrap's init relays it.
    signum = -returncode if returncode is not None and returncode < 0 else (
        returncode - 128 if returncode is not None and 128 < returncode < 128 + 65 else None)
    if signum == signal.SIGXCPU:
        return "timeout", f"CPU limit {limits.cpu_s} s (SIGXCPU)"
    if signum == signal.SIGKILL and seconds >= limits.cpu_s:
        # SIGXCPU was ignored and the hard limit (one second later) struck; CPU time never exceeds wall time
        # for one thread, so an earlier SIGKILL came from elsewhere. (bwrap does not pass the sandbox's rusage up.)
        return "timeout", f"CPU limit {limits.cpu_s} s (SIGKILL at the hard limit, SIGXCPU ignored)"
    if signum is not None and signum in signal.valid_signals():
        return "failed", f"killed by {signal.Signals(signum).name}"
    if returncode == 0:
        return "failed", "exited with status 0 before the tests finished"
    return "failed", last_line[:300] or f"exit code {returncode}"


@dataclass
class _Runner:
    """Shared process handling: stdin from a file, capped output files, timeout kills the group."""

    limits: SandboxLimits = field(default_factory=SandboxLimits)

    def _command(self, workdir: str) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _nproc(self) -> int:
        return self.limits.max_processes

    def run(self, source: str) -> SandboxResult:
        """Execute ``source`` as ``__main__``; never raises for anything the program does."""
        nonce = secrets.token_hex(16)
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="ead-code-") as workdir, \
                tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            stdin.write(nonce.encode() + b"\n" + source.encode("utf-8", "replace"))
            stdin.seek(0)
            nproc = self._nproc()
            try:
                # A new session: the timeout kills the whole group (bwrap, or the fallback's program tree).
                process = subprocess.Popen(
                    _prlimit_args(self.limits, nproc) + self._command(workdir), stdin=stdin, stdout=out,
                    stderr=err, cwd=workdir, env=self._env(workdir), close_fds=True, start_new_session=True)
            except OSError as exc:
                return SandboxResult("sandbox-error", None, "", str(exc), time.monotonic() - start, str(exc))
            timed_out = not _exits_within(process, self.limits.timeout_s)
            if timed_out:
                try:  # the group holds bwrap; its PID namespace (every process inside) dies with it
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            returncode: int | None = process.wait()
            seconds = time.monotonic() - start
            cap = self.limits.file_mb << 20
            out.seek(0)
            err.seek(0)
            stdout = out.read(cap).decode("utf-8", "replace")
            stderr = err.read(cap).decode("utf-8", "replace")
        status, detail = _classify(returncode, stdout, stderr, nonce, timed_out, self.limits, seconds)
        stdout = stdout.replace(f"{nonce} started\n", "").replace(f"\n{nonce} finished\n", "")
        return SandboxResult(status, returncode, stdout, stderr, seconds, detail)

    def _env(self, workdir: str) -> dict[str, str]:
        # bwrap clears the environment inside the sandbox; the fallback starts from this one.
        return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}


def _require_prlimit() -> None:
    if shutil.which("prlimit") is None:
        raise SandboxUnavailableError("code sandbox: `prlimit` (util-linux) is needed to set the resource limits; "
                                      "install util-linux (Debian/Ubuntu: apt-get install util-linux)")


def _interpreter(python: str | None) -> tuple[str, list[str]]:
    """(real interpreter path, directories it needs read-only) for ``python`` (default: this one)."""
    executable = os.path.realpath(python or sys.executable)
    if not os.access(executable, os.X_OK):
        raise SandboxUnavailableError(f"code sandbox: interpreter {executable} is not executable")
    needed = [os.path.realpath(sys.base_prefix)] if python is None else []
    if python is not None:
        needed.append(str(Path(executable).parent.parent))  # <prefix>/bin/python -> <prefix>
    needed = [d for d in needed if not (d == "/usr" or d.startswith("/usr/"))]
    if not any(executable.startswith(d + "/") for d in needed + ["/usr"]):
        needed.append(str(Path(executable).parent))
    return executable, needed


@dataclass
class BubblewrapSandbox(_Runner):
    """Each program in a fresh bubblewrap sandbox (module docstring); checks bwrap works at construction."""

    python: str | None = None
    """Interpreter to run programs with; None: the one running ead (its prefix is bound read-only)."""
    bwrap: str = "bwrap"

    def __post_init__(self) -> None:
        found = shutil.which(self.bwrap)
        if found is None:
            raise SandboxUnavailableError(
                "code sandbox: bubblewrap (`bwrap`) is not installed. Install it (Debian/Ubuntu: "
                "`apt-get install bubblewrap`, Fedora: `dnf install bubblewrap`), or, knowing that untrusted code "
                "then runs with only resource limits and no filesystem or network isolation, set the grader "
                "option sandbox=rlimits-only (docs/code_rewards.md).")
        self._bwrap = found
        self._as_root = os.geteuid() == 0
        _require_prlimit()
        if self._as_root and shutil.which("setpriv") is None:
            raise SandboxUnavailableError(
                "code sandbox: running as root needs `setpriv` (util-linux) to drop the program to an unprivileged "
                "uid; install util-linux, or run ead as a normal user.")
        self._python, self._binds = _interpreter(self.python)
        probe = self.run("print(6 * 7)")
        if probe.status != "passed" or probe.stdout.strip() != "42":
            raise SandboxUnavailableError(
                f"code sandbox: bubblewrap is installed but cannot start a sandbox here ({probe.detail or probe.status}; "
                f"stderr: {_tail(probe.stderr.strip(), 400)!r}). Usually user namespaces are restricted: allow them "
                "(`sysctl -w kernel.unprivileged_userns_clone=1`, `sysctl -w user.max_user_namespaces=15000`, or on "
                "Ubuntu 24.04+ `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`), in Docker run with "
                "`--security-opt seccomp=unconfined` or `--privileged`; or set sandbox=rlimits-only to accept no "
                "filesystem or network isolation (docs/code_rewards.md).")

    def _nproc(self) -> int:
        if self._as_root:  # the program runs under its own fresh uid: the count is its own
            return self.limits.max_processes
        # Unprivileged: RLIMIT_NPROC counts every process of this uid, so allow those plus the budget.
        return _own_process_count() + self.limits.max_processes + 2  # + bwrap's monitor and init

    def _command(self, workdir: str) -> list[str]:
        args = [self._bwrap]
        if self._as_root:
            # No user namespace (see module docstring); every other namespace is new.
            args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        else:
            args += ["--unshare-all"]
        args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        if self._as_root:
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
        args += ["--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
                 "--setenv", "HOME", "/tmp", "--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        made: set[str] = {"/", "/usr", "/tmp", "/proc", "/dev"}
        for directory in self._binds:
            parents = list(reversed(Path(directory).parents))[1:]  # without "/"
            for parent in map(str, parents):
                if parent not in made:  # 0755: bwrap would create 0700 dirs the program's uid cannot cross
                    args += ["--perms", "0755", "--dir", parent]
                    made.add(parent)
            args += ["--ro-bind", directory, directory]
        args += ["--proc", "/proc", "--dev", "/dev",
                 "--size", str(self.limits.tmpfs_mb << 20), "--perms", "1777", "--tmpfs", "/tmp", "--chdir", "/tmp"]
        if self._as_root:
            uid = SANDBOX_UID + os.getpid() % 60000
            args += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                     "--inh-caps=-all", "--bounding-set=-all", "--"]
        return args + [self._python, "-I", "-S", "-c", _DRIVER]


@dataclass
class RlimitsOnlySandbox(_Runner):
    """WEAKER fallback: resource limits, cleared environment, fresh cwd, timeout; NO filesystem/network isolation."""

    python: str | None = None

    def __post_init__(self) -> None:
        _require_prlimit()
        self._python, _ = _interpreter(self.python)
        warnings.warn(
            "code sandbox 'rlimits-only': model-written programs run WITHOUT filesystem or network isolation "
            "(they can read and write your files and open connections); only resource limits, a cleared "
            "environment and a timeout apply. Use bubblewrap for anything you care about (docs/code_rewards.md).",
            RuntimeWarning, stacklevel=3)

    def _command(self, workdir: str) -> list[str]:
        return [self._python, "-I", "-S", "-c", _DRIVER]


SANDBOX_KINDS = ("bwrap", "rlimits-only")


def build_sandbox(kind: str, limits: SandboxLimits, python: str | None = None) -> _Runner:
    """The sandbox named ``kind`` (``"bwrap"``, default and recommended, or ``"rlimits-only"``)."""
    if kind == "bwrap":
        return BubblewrapSandbox(limits=limits, python=python)
    if kind == "rlimits-only":
        return RlimitsOnlySandbox(limits=limits, python=python)
    raise ConfigError(f"code grader: option sandbox must be one of {list(SANDBOX_KINDS)}, got {kind!r}")
