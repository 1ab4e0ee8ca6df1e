"""The ``ead`` command line: each subcommand lives beside the code it drives and registers itself here.

Flags and dotted overrides mix freely (``ead train train.steps=3 --resume output.dir=x``): every
word of the form ``key=value`` that argparse did not take is a config override of the command.
User errors (a bad config value, a missing file or directory) end in a one-paragraph message and
exit code 2; ``EAD_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# module path -> provides register(subparsers); imported lazily so `ead --help` stays fast
COMMANDS = [
    "ead.training.command",
    "ead.evaluation.command",
    "ead.schedule_command",
    "ead.experiments.command",
    "ead.modeling.command",
]

OVERRIDES_DEST = "overrides"
"""Each command keeps its key=value words in ``args.overrides`` (``ead schedule``: ``args.params``)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ead", description="Exploratory Annealed Decoding for RLVR")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("ead"):
                continue  # a command module not present in this build
            raise
        module.register(subparsers)
    return parser


def _is_override(word: str) -> bool:
    key, eq, _ = word.partition("=")
    return bool(eq) and bool(key) and not word.startswith("-")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """argparse, then the leftover ``key=value`` words appended to the command's overrides, in order."""
    args, extra = parser.parse_known_args(argv)
    dest = "params" if hasattr(args, "params") else OVERRIDES_DEST
    unknown = [word for word in extra if not _is_override(word)]
    if unknown or (extra and not hasattr(args, dest)):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        # Keep the command-line order: the words argparse took positionally came first only if they preceded the
        # flags, so rebuild the list from argv itself.
        words = list(sys.argv[1:] if argv is None else argv)
        taken = set(getattr(args, dest) or []) | set(extra)
        setattr(args, dest, [w for w in words if w in taken and _is_override(w)])
    return args


# Errors a user causes (bad value, missing file, missing directory): a message, not a traceback.
def _user_errors() -> tuple[type[BaseException], ...]:
    from ead.config import ConfigError
    from ead.data import DataError
    from ead.grading.registry import GraderNotFoundError
    from ead.schedules import ScheduleError
    from ead.tasks.countdown import CountdownConfigError

    return (ConfigError, ScheduleError, DataError, CountdownConfigError, GraderNotFoundError,
            FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parse_args(parser, argv)
    except SystemExit as exc:  # argparse already printed its usage and message
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here when the output was still buffered
        return status
    except KeyboardInterrupt:
        print(f"ead {args.command}: interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`ead sweep ... --dry-run | head`): nothing is wrong with the run. Point stdout at
        # /dev/null so the interpreter's final flush does not raise again, and exit as a SIGPIPE'd tool does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except _user_errors() as exc:
        if os.environ.get("EAD_DEBUG"):
            raise
        print(f"ead {args.command}: {describe_error(exc)} (EAD_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2


def describe_error(exc: BaseException) -> str:
    """One paragraph naming the problem: the config field or the file, and what is wrong with it."""
    from ead.config import ConfigError

    if isinstance(exc, ConfigError):
        return f"{getattr(exc, 'label', 'configuration error')}: {exc}"  # e.g. RunFileError: "error"
    if isinstance(exc, ValueError):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError) and exc.filename is not None:
        reason = {FileNotFoundError: "no such file or directory", NotADirectoryError: "a path component is not a directory",
                  IsADirectoryError: "is a directory, expected a file", PermissionError: "permission denied"}
        return f"{exc.filename}: {reason.get(type(exc), exc.strerror or str(exc))}"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
