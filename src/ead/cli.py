"""The ``ead`` command line: each subcommand lives beside the code it drives and registers itself here."""

from __future__ import annotations

import argparse
import importlib
import sys

# module path -> provides register(subparsers); imported lazily so `ead --help` stays fast
COMMANDS = [
    "ead.training.command",
    "ead.evaluation.command",
    "ead.schedule_command",
    "ead.experiments.command",
    "ead.modeling.command",
]


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


def main(argv: list[str] | None = None) -> int:
    from ead.config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"ead {args.command}: {getattr(exc, 'label', 'configuration error')}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ead {args.command}: interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
