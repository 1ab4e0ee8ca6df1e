"""ead.grading.code / code_sandbox: hostile programs are contained and counted; HumanEval scores as it should.

Every attack program below would *pass* its test if the attack did nothing to it (it ends by
defining the right function), so a 0 reward with the expected status is the sandbox's doing.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import stat
import string
import sys
import threading
import time
from pathlib import Path

import pytest

from ead.config import ConfigError
from ead.grading.code import CodeGrader, assemble_program, extract_program
from ead.grading.code_sandbox import (SANDBOX_UID, BubblewrapSandbox, RlimitsOnlySandbox, SandboxLimits,
                                      SandboxUnavailableError)
from ead.grading.registry import build_grader
from ead.grading.sandbox import GraderPool
from ead.tasks.base import Problem


def bwrap_skip_reason() -> str | None:
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    try:
        BubblewrapSandbox()
    except SandboxUnavailableError as exc:
        return f"bubblewrap cannot create a sandbox here: {exc}"
    return None


SKIP = bwrap_skip_reason()
needs_bwrap = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")

# A problem whose test passes iff f() == 1; every attack ends with a correct f.
F_PROBLEM = Problem("f", "def f():\n", {"prompt": "def f():\n", "test": "def check(c):\n    assert c() == 1\n",
                                        "entry_point": "f"})
SOLUTION = "\n\ndef f():\n    return 1\n"


# ----------------------------------------------------------------------------- program assembly (no sandbox)


def test_extract_program_takes_the_first_fenced_block_else_everything():
    assert extract_program("Here:\n```python\nx = 1\n```\nand ```python\ny = 2\n```") == "x = 1\n"
    assert extract_program("```py\nx = 1\n```") == "x = 1\n"
    assert extract_program("```\nx = 1\n```") == "x = 1\n"
    assert extract_program("text\n```python\nx = 1\n") == "x = 1\n"  # unclosed: to the end
    assert extract_program("    return 1\n") == "    return 1\n"


def test_assemble_program_rule():
    answer = {"prompt": "def add(a, b):\n    \"\"\"Sum.\"\"\"\n", "test": "def check(c):\n    assert c(1, 2) == 3\n",
              "entry_point": "add"}
    body = "    return a + b\n"
    program, rule = assemble_program(answer, body)  # a body: after the prompt
    assert rule == "prompt+completion"
    assert program == answer["prompt"] + body + "\n\n" + answer["test"] + "\n\ncheck(add)\n"
    full = "def add(a, b):\n    return a + b\n"
    program, rule = assemble_program(answer, full)  # redefines the entry point: alone
    assert rule == "completion" and program.startswith(full) and answer["prompt"] not in program
    helper = "def helper():\n    return 0\n"  # defines something else: still after the prompt
    assert assemble_program(answer, helper)[1] == "prompt+completion"
    nested = "if True:\n    def add(a, b):\n        return 0\n"  # not top level
    assert assemble_program(answer, nested)[1] == "prompt+completion"


def test_bad_options_and_missing_bwrap_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="sandbox must be one of"):
        CodeGrader(sandbox="docker")
    with pytest.raises(ConfigError, match="memory_mb must be a positive"):
        SandboxLimits(memory_mb=0)
    with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap.*rlimits-only"):
        BubblewrapSandbox(bwrap=str(tmp_path / "no-bwrap"))
    # A bwrap that cannot create namespaces (as under a restrictive seccomp/AppArmor profile).
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(SandboxUnavailableError, match="cannot start a sandbox here.*No permissions.*user namespaces"):
        BubblewrapSandbox(bwrap=str(fake))


# ----------------------------------------------------------------------------- attacks


@pytest.fixture(scope="module")
def sandbox():
    if SKIP is not None:
        pytest.skip(SKIP)
    return BubblewrapSandbox(limits=SandboxLimits(timeout_s=3.0, cpu_s=1))


@pytest.fixture(scope="module")
def grader():
    if SKIP is not None:
        pytest.skip(SKIP)
    return CodeGrader(timeout_s=2.0, cpu_s=1)  # a busy loop meets the CPU limit, a sleep the wall clock


def _sandbox_uids(grader_pids: list[int]) -> set[int]:
    """The uids the sandboxes started by these processes run under (``SANDBOX_UID + pid % 60000``, as root)."""
    return {SANDBOX_UID + pid % 60000 for pid in grader_pids}


def _child_pids() -> list[int]:
    """This process's children (the grader pool's workers while it is open)."""
    return [int(pid) for task in Path("/proc/self/task").iterdir()
            for pid in (task / "children").read_text().split()]


def _sandbox_processes(uids: set[int], settle_s: float = 1.0) -> list[int]:
    """Host pids under ``uids`` (the sandboxes of this test's graders, as root; none otherwise): none must
    outlive a call. Only this test's uids count, so sandboxes of another process on the machine cannot
    fail it. The kernel tears a PID namespace down asynchronously, so a process that is being killed
    gets ``settle_s`` to disappear."""
    deadline = time.monotonic() + settle_s
    while True:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid in uids:
                        pids.append(int(entry.name))
                except OSError:
                    pass
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


@needs_bwrap
def test_sandbox_sees_no_user_files_no_secrets_and_runs_unprivileged(sandbox, tmp_path, monkeypatch):
    secret = "hunter2-" + secrets.token_hex(4)
    monkeypatch.setenv("EAD_FAKE_API_KEY", secret)
    home_canary = Path.home() / f".ead-canary-{secrets.token_hex(4)}"
    home_canary.write_text(secret)
    try:
        program = (
            "import os\n"
            "print('ENV', dict(os.environ))\n"
            "print('ROOT', sorted(os.listdir('/')))\n"
            "print('HOME', sorted(os.listdir('/root')) if os.path.isdir('/root') else [])\n"
            "for pid in os.listdir('/proc'):\n"
            "    try: print('PROC', pid, open(f'/proc/{pid}/environ').read())\n"
            "    except (OSError, ValueError): pass\n"
            "print('UID', os.getuid(), os.getgid())\n"
            "print('CAPS', [l for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapBnd', 'NoNewPrivs'))])\n"
            f"for path in ['{home_canary}', '{tmp_path}', '/work', '/home', '/etc/passwd', '{Path.cwd()}']:\n"
            "    print('EXISTS', path, os.path.exists(path))\n"
        )
        result = sandbox.run(program)
    finally:
        home_canary.unlink()
    assert result.status == "passed", result
    out = result.stdout
    assert secret not in out and "EAD_FAKE_API_KEY" not in out
    env_line = next(line for line in out.splitlines() if line.startswith("ENV"))
    assert set(eval(env_line[4:])) <= {"PATH", "LANG", "HOME", "PWD"}  # noqa: S307 - our own print of a dict
    root = eval(next(line for line in out.splitlines() if line.startswith("ROOT"))[5:])  # noqa: S307
    assert set(root) <= {"bin", "dev", "lib", "lib32", "lib64", "libx32", "proc", "root", "sbin", "tmp", "usr"}
    # /root holds at most the way to the bound interpreter prefix, if that lives there (pyenv)
    prefix = Path(os.path.realpath(sys.base_prefix))
    allowed = [prefix.parts[2]] if prefix.parts[1:2] == ("root",) else []
    assert f"HOME {allowed}" in out, out
    assert all(line.endswith("False") for line in out.splitlines() if line.startswith("EXISTS")), out
    if os.geteuid() == 0:
        uid_line = next(line for line in out.splitlines() if line.startswith("UID"))
        assert int(uid_line.split()[1]) >= SANDBOX_UID
    assert "CapEff:\\t0000000000000000" in out and "CapBnd:\\t0000000000000000" in out and "NoNewPrivs:\\t1" in out


@needs_bwrap
def test_writes_and_deletes_never_reach_the_host(grader, tmp_path):
    canary = tmp_path / "canary.txt"
    canary.write_text("keep me")
    host_tmp = Path("/tmp") / f"pwned-{secrets.token_hex(4)}"
    attacks = {
        "write-user-dir": f"open({str(tmp_path / 'pwned')!r}, 'w').write('x')",
        "write-cwd": f"open({str(Path.cwd() / 'pwned')!r}, 'w').write('x')",
        "delete-canary": f"import os; os.remove({str(canary)!r})",
        "delete-interpreter": "import os, sys; os.remove(sys.executable)",
        "write-usr": "open('/usr/pwned', 'w').write('x')",
    }
    grades = {name: grader(F_PROBLEM, code + SOLUTION) for name, code in attacks.items()}
    for name, grade in grades.items():
        assert grade.info["status"] == "failed" and grade.reward == 0.0, (name, grade.info)
        assert any(e in grade.info["detail"] for e in ("FileNotFoundError", "PermissionError", "OSError")), grade.info
    # Its own /tmp is writable and private: the program passes, the host's /tmp is untouched.
    grade = grader(F_PROBLEM, f"open({str(host_tmp)!r}, 'w').write('x')" + SOLUTION)
    assert grade.info["status"] == "passed"
    assert not host_tmp.exists() and not (tmp_path / "pwned").exists() and not (Path.cwd() / "pwned").exists()
    assert canary.read_text() == "keep me" and os.access(sys.executable, os.X_OK)


@needs_bwrap
def test_socket_to_a_host_listener_fails_and_the_listener_gets_nothing(grader):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    accepted, done = [], threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                accepted.append(listener.accept())
            except OSError:
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'leak')" + SOLUTION
        grade = grader(F_PROBLEM, program)
        outbound = grader(F_PROBLEM, "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)" + SOLUTION)
    finally:
        done.set()
        thread.join()
        listener.close()
    assert accepted == []
    assert grade.info["status"] == "failed" and "ConnectionRefusedError" in grade.info["detail"], grade.info
    assert outbound.info["status"] == "failed" and "Network is unreachable" in outbound.info["detail"], outbound.info


@needs_bwrap
def test_resource_attacks_are_contained_and_counted_in_one_pool_batch(grader):
    attacks = {
        "infinite-loop": ("while True:\n    pass\n", "timeout"),
        "sleep": ("import time\ntime.sleep(60)\n", "timeout"),
        "fork-bomb": ("import os\nwhile True:\n    os.fork()\n", ("failed", "timeout")),
        "memory-hog": ("x = bytearray(10 * 2**30)\n", "oom"),
        "ctypes-segfault": ("import ctypes\nctypes.string_at(0)\n", "failed"),
        "exit-early": ("import os\nos._exit(0)\n", "failed"),
        "huge-output": ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", "failed"),
        "syntax": ("def f(:\n", "failed"),
    }
    names = list(attacks) + ["honest"]
    responses = [attacks[n][0] + SOLUTION for n in attacks] + ["```python" + SOLUTION + "```"]
    with GraderPool(grader, timeout_s=grader.max_call_seconds + 5, num_workers=2) as pool:
        grades, stats = pool.grade_batch([F_PROBLEM] * len(responses), responses)
        uids = _sandbox_uids(_child_pids())
    assert len(uids) >= 2  # the pool's two workers: the check below watches their sandboxes' uids
    assert stats["errors"] == 0 and stats["timeouts"] == 0  # the sandbox, not the pool, caught everything
    by_name = dict(zip(names, grades))
    for name, (_, expected) in attacks.items():
        info = by_name[name].info
        assert info["status"] in ((expected,) if isinstance(expected, str) else expected), (name, info)
        assert by_name[name].reward == 0.0 and not by_name[name].correct
    assert "wall-clock" in by_name["sleep"].info["detail"]
    assert "SIGSEGV" in by_name["ctypes-segfault"].info["detail"]
    assert "before the tests finished" in by_name["exit-early"].info["detail"]
    assert by_name["honest"].correct and by_name["honest"].reward == 1.0  # the batch went on
    assert _sandbox_processes(uids) == []  # nothing the fork bomb started survives


@needs_bwrap
def test_process_limit_stops_forking_at_max_processes():
    program = ("import os, time\nforks = 0\ntry:\n    while forks < 1000:\n        if os.fork() == 0:\n"
               "            time.sleep(30)\n            os._exit(0)\n        forks += 1\n"
               "except OSError as exc:\n    print('stopped', forks, type(exc).__name__)\n")
    result = BubblewrapSandbox(limits=SandboxLimits(max_processes=8)).run(program)
    assert result.status == "passed", result
    _, forks, error = result.stdout.split()
    # As root the program has a uid of its own and counts as one of the 8; otherwise the limit is the
    # caller's current process count + 8 + 2 (docs/code_rewards.md), so other processes may come and go.
    bound = 8 if os.geteuid() == 0 else 8 + 2 + 10
    assert 0 <= int(forks) < bound and error == "BlockingIOError", result.stdout
    assert _sandbox_processes(_sandbox_uids([os.getpid()])) == []  # the children (asleep for 30 s) died with the PID namespace


@needs_bwrap
def test_cpu_limit_ends_a_busy_loop_before_a_generous_wall_clock():
    sandbox = BubblewrapSandbox(limits=SandboxLimits(timeout_s=30.0, cpu_s=1))
    result = sandbox.run("while True:\n    pass\n")
    assert result.status == "timeout" and "CPU limit 1 s (SIGXCPU)" in result.detail, result
    stubborn = sandbox.run("import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n")
    assert stubborn.status == "timeout" and "SIGKILL at the hard limit" in stubborn.detail, stubborn
    assert result.seconds < 30 and stubborn.seconds < 30


def test_ead_eval_without_bubblewrap_is_one_message_not_a_traceback(tmp_path, monkeypatch, capsys):
    import ead.grading.code_sandbox as code_sandbox
    from ead.cli import main

    real_which = shutil.which
    monkeypatch.setattr(code_sandbox.shutil, "which", lambda name: None if name == "bwrap" else real_which(name))
    argv = ["eval", "--model", "gpt2-does-not-matter", "--dataset", "humaneval", "--output-dir", str(tmp_path / "out"),
            "--no-progress"]
    monkeypatch.setattr("ead.modeling.loading.load_tokenizer", lambda path: None)  # the grader is refused first
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "bubblewrap (`bwrap`) is not installed" in err and "apt-get install bubblewrap" in err
    assert "Traceback" not in err


def test_pool_timeout_must_exceed_the_sandbox_timeout():
    class Limited:
        max_call_seconds = 8.0

        def __call__(self, problem, response):  # pragma: no cover - never called
            raise AssertionError

    with pytest.raises(ConfigError, match=r"pool's timeout \(8 s\) must exceed the grader's own limit \(8 s\)"):
        GraderPool(Limited(), timeout_s=8, inline=True)
    GraderPool(Limited(), timeout_s=8.5, inline=True).close()


def test_rlimits_only_fallback_is_explicit_warned_and_still_limits(tmp_path):
    assert CodeGrader.__dataclass_fields__["sandbox"].default == "bwrap"
    with pytest.warns(RuntimeWarning, match="WITHOUT filesystem or network isolation"):
        weak = RlimitsOnlySandbox(limits=SandboxLimits(timeout_s=2.0, cpu_s=2))
    assert weak.run("print(6 * 7)").stdout.strip() == "42"
    assert weak.run("while True:\n    pass\n").status == "timeout"
    assert weak.run("x = bytearray(10 * 2**30)\n").status == "oom"


# ----------------------------------------------------------------------------- HumanEval


@needs_bwrap
def test_humaneval_canonical_solutions_pass_and_empty_programs_fail():
    from ead.data import DataSpec, load_problems
    from ead.tasks.humaneval import HUMANEVAL_SIZE, humaneval_rows

    problems = load_problems(DataSpec(path="humaneval")).problems
    canonical = [row["canonical_solution"] for row in humaneval_rows()]
    assert len(problems) == HUMANEVAL_SIZE == 164 and problems[0].uid == "HumanEval/0"
    assert problems[0].prompt.startswith("from typing import List\n\n\ndef has_close_elements(")
    with GraderPool(build_grader("code"), timeout_s=10, num_workers=2) as pool:
        start = time.monotonic()
        passed, stats = pool.grade_batch(problems, canonical)
        empty, _ = pool.grade_batch(problems, [""] * len(problems))
        seconds = time.monotonic() - start
    print(f"HumanEval 2 x 164 programs through the pool (2 workers): {seconds:.1f} s")
    assert [g.info["status"] for g in passed].count("passed") == 164, [g.info for g in passed if not g.correct][:3]
    assert sum(g.reward for g in passed) == 164.0 and stats["errors"] == stats["timeouts"] == 0
    assert sum(g.correct for g in empty) == 0 and {g.info["status"] for g in empty} == {"failed"}


def test_humaneval_preset_shapes_rows_for_the_code_grader():
    from ead.data import DATASET_PRESETS, DataSpec, DatasetTask, load_problems

    problems = load_problems(DataSpec(path="humaneval", limit=3)).problems
    assert [p.uid for p in problems] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert set(problems[1].answer) == {"prompt", "test", "entry_point"}
    assert problems[1].answer["entry_point"] == "separate_paren_groups"
    assert problems[1].prompt == problems[1].answer["prompt"]
    templated = load_problems(DataSpec(path="humaneval", limit=1, prompt_template="Complete:\n{prompt}")).problems
    assert templated[0].prompt.startswith("Complete:\nfrom typing import List")
    assert DATASET_PRESETS["humaneval"].grader == "code"
    if SKIP is None:
        task = DatasetTask.from_config({"train_file": "humaneval", "eval_file": "humaneval", "limit": 2})
        assert isinstance(task.grader, CodeGrader) and len(task.train_batch(0, 3)) == 3


@pytest.fixture(scope="module")
def printable_model_dir(tmp_path_factory):
    """A tiny random Llama whose character tokenizer covers every printable character (HumanEval prompts)."""
    from ead.modeling.tiny import TinyModelConfig, build_char_tokenizer, build_tiny_model, save_tiny_model

    tokenizer = build_char_tokenizer("".join(dict.fromkeys(string.printable)))
    model = build_tiny_model(tokenizer, TinyModelConfig(num_layers=1, hidden_size=16, num_heads=2,
                                                         intermediate_size=32, max_positions=4096))
    return str(save_tiny_model(model, tokenizer, tmp_path_factory.mktemp("printable") / "model"))


@needs_bwrap
def test_ead_eval_on_humaneval_through_the_cli(printable_model_dir, tmp_path, monkeypatch):
    """The preset picks the code grader, which grades the model's samples in the sandbox (a random model scores 0)."""
    from ead.cli import main

    model_dir = printable_model_dir
    graded = []
    real_call = CodeGrader.__call__

    def spy(self, problem, response):
        grade = real_call(self, problem, response)
        graded.append((problem.uid, response, grade.info["status"], grade.info["rule"]))
        return grade

    monkeypatch.setattr(CodeGrader, "__call__", spy)  # grader_inline: graded in this process, so the spy sees it
    out = tmp_path / "eval"
    argv = ["eval", "--model", str(model_dir), "--dataset", "humaneval", "--samples", "2", "--k", "1,2",
            "--num-problems", "2", "--schedule", "fixed:tau=1.0", "--output-dir", str(out), "--no-progress",
            "sampling.max_new_tokens=8", "grading.inline=true", "model.num_threads=1"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    result = summary["schedules"]["fixed(tau=1)"]
    assert result["num_problems"] == 2 and result["metrics"]["pass@2"]["mean"] == 0.0
    records = [json.loads(line) for line in (out / "records" / "fixed_tau=1.jsonl").read_text().splitlines()]
    assert [r["uid"] for r in records] == ["HumanEval/0", "HumanEval/1"]
    assert all(r["rewards"] == [0.0, 0.0] for r in records)
    assert sorted((uid, response) for uid, response, _, _ in graded) == \
        sorted((r["uid"], sample) for r in records for sample in r["samples"])
    assert {status for _, _, status, _ in graded} <= {"failed", "timeout"}


@needs_bwrap
def test_ead_train_on_humaneval_through_the_cli(printable_model_dir, tmp_path):
    """One training step and one periodic eval, rewards from the code grader in a real grader pool."""
    from ead.cli import main
    from ead.training.logger import read_metrics

    run_dir = tmp_path / "run"
    argv = ["train", f"model.path={printable_model_dir}", f"output.dir={run_dir}", "task.name=dataset",
            "task.dataset={train_file: humaneval, eval_file: humaneval}", "task.num_eval_problems=2",
            "train.steps=1", "train.prompts_per_step=2", "train.samples_per_prompt=2", "train.mini_batch_size=4",
            "train.micro_batch_size=4", "sampling.max_new_tokens=4", "eval.every=1", "eval.samples=2", "eval.k=[1,2]",
            "output.save_every=0", "output.progress=false", "model.num_threads=1", "grading.workers=1",
            "sampling.schedule={name: fixed}", "train.lr=1e-4"]
    assert main(argv) == 0
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1]
    assert records[1]["reward/mean"] == 0.0 and records[1]["eval/pass@2"] == 0.0
