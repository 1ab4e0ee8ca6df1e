"""``ead train``: the built-in EAD demo with no arguments; a recipe plus dotted overrides otherwise."""

from __future__ import annotations

import argparse

from ead.training.config import ALGORITHM_PRESETS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="RLVR training with EAD rollouts (default: built-in Countdown task and tiny model)",
        description="Train a policy with GRPO/DAPO and EAD sampling. Overrides are dotted: "
                    "train.steps=100 sampling.schedule.tau_max=1.4 output.dir=runs/x",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", help="YAML file of TrainConfig sections")
    source.add_argument("--recipe", help="a recipe shipped with ead: qwen2.5-math-1.5b-paper (the paper's setting, "
                                         "GPU) or smollm2-135m-cpu (SmolLM2-135M-Instruct on CPU); see docs/real_models.md")
    parser.add_argument("--algorithm", choices=sorted(ALGORITHM_PRESETS), help="algorithm preset applied before the recipe")
    parser.add_argument("--resume", action="store_true", help="continue from output.dir's latest checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the run already in output.dir (metrics, checkpoints, plots, config.yaml) "
                             "and start over; without it an existing run is refused")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ead.training.config import load_train_config, recipe_path
    from ead.training.trainer import train

    path = recipe_path(args.recipe) if args.recipe else args.config
    config = load_train_config(path, args.overrides, algorithm=args.algorithm)
    run_dir = train(config, resume=args.resume, overwrite=args.overwrite)
    _print_summary(run_dir)
    return 0


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
