"""``ead train``: the built-in EAD demo with no arguments; a recipe plus dotted overrides otherwise."""

from __future__ import annotations

import argparse

from ead.training.config import ALGORITHM_PRESETS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="RLVR training with EAD rollouts (default: built-in Countdown task and tiny model)",
        description="Train a policy with GRPO/DAPO and EAD sampling. Overrides are dotted and may come "
                    "anywhere on the line: train.steps=100 sampling.schedule.tau_max=1.4 output.dir=runs/x. "
                    "Every field, its type, default and meaning: ead train --list-fields; the resolved config: "
                    "ead train ... --print-config.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="RECIPE",
                        help="YAML file of TrainConfig sections, or the name of a recipe shipped with ead: "
                             f"{', '.join(builtin_train_recipes())}")
    source.add_argument("--recipe", help="a recipe shipped with ead, by name (the same list as --config); see "
                                         "docs/real_models.md for the real-model ones")
    parser.add_argument("--algorithm", choices=sorted(ALGORITHM_PRESETS),
                        help="algorithm preset applied before the recipe (algorithm.name in a recipe selects it too)")
    parser.add_argument("--resume", action="store_true", help="continue from output.dir's latest checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the run already in output.dir (metrics, checkpoints, plots, config.yaml) "
                             "and start over; without it an existing run is refused")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (defaults <- preset <- recipe <- overrides) as YAML and exit")
    parser.add_argument("--list-fields", action="store_true",
                        help="list every config field with its type, default and documentation, and exit")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides")
    parser.set_defaults(func=run)


def builtin_train_recipes() -> list[str]:
    """Names of the recipes shipped with ead (``src/ead/recipes/train/*.yaml``)."""
    from ead.training.config import train_recipes

    return sorted(train_recipes())


def resolve_train_recipe(name: str | None) -> str | None:
    """A YAML path as given, or the path of the shipped recipe of that name (a file of that name wins)."""
    from pathlib import Path

    from ead.training.config import train_recipes

    recipes = train_recipes()
    if name is None or Path(name).exists() or name.removesuffix(".yaml") not in recipes:
        return name
    return str(recipes[name.removesuffix(".yaml")])


def run(args: argparse.Namespace) -> int:
    from ead.config import dump_config, format_fields
    from ead.training.config import TrainConfig, load_train_config, recipe_path

    if args.list_fields:
        print(format_fields(TrainConfig), end="")
        return 0
    path = recipe_path(args.recipe) if args.recipe else resolve_train_recipe(args.config)
    config = load_train_config(path, args.overrides, algorithm=args.algorithm)
    if args.print_config:
        print(dump_config(config), end="")
        return 0
    from ead.training.trainer import train

    from ead.paths import note_old_cache

    note_old_cache(config.model.path is None and config.model.warm_start_cache is None)
    run_dir = train(config, resume=args.resume, overwrite=args.overwrite)
    if _is_main_process():  # the report is the CLI's job: the trainer never imports reporting (no import circle)
        from ead.reporting.training import write_training_report
        from ead.training.logger import read_metrics

        write_training_report(run_dir, read_metrics(run_dir / "metrics.jsonl"))
        _print_summary(run_dir)
    return 0


def _is_main_process() -> bool:
    """Rank 0 of a data-parallel launch (accelerate / torchrun set RANK), or a plain single process."""
    import os

    return os.environ.get("RANK", "0") == "0"


def _print_summary(run_dir) -> None:
    from rich.console import Console
    from rich.table import Table

    from ead.training.logger import read_metrics

    records = read_metrics(run_dir / "metrics.jsonl")
    table = Table(title=f"ead train: {run_dir}")
    table.add_column("metric")
    table.add_column("first", justify="right")
    table.add_column("last", justify="right")
    for key in ("reward/mean", "eval/pass@1", "eval/pass@16", "eval/worst@16", "entropy/mean", "response/length_mean",
                "is/truncated_frac", "time/step_s"):
        values = [r[key] for r in records if r.get(key) is not None]
        if values:
            table.add_row(key, f"{values[0]:.3f}", f"{values[-1]:.3f}")
    console = Console()
    console.print(table)
    console.print(f"curves: {run_dir / 'training_curves.png'}   report: {run_dir / 'report.html'}")
