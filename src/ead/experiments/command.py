"""``ead sweep`` (run a grid, resumable) and ``ead report`` (aggregate sweeps into HTML + PNGs)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    sweep = subparsers.add_parser(
        "sweep",
        help="run a grid of training cells (schedules x algorithms x seeds) with one budget, resumable",
        description="Run every cell of a sweep recipe, JOBS at a time. Rerun the same command to resume: "
                    "finished cells (DONE marker) are skipped, unfinished ones continue from their checkpoint. "
                    "Built-in recipes: sweep_default, sweep_fork, sweep_fork_rare, sweep_exploration, sweep_exploration_fork. Overrides are dotted: jobs=1 out_dir=runs/x "
                    "base='[train.steps=10]'.",
    )
    sweep.add_argument("recipe", help="sweep YAML, or the name of a built-in one (sweep_default, sweep_fork)")
    sweep.add_argument("overrides", nargs="*", help="key.path=value overrides of the sweep config")
    sweep.add_argument("--dry-run", action="store_true", help="list the cells and their state, run nothing")
    sweep.add_argument("--report", metavar="OUT", help="after the sweep, write the report to OUT")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.add_argument("--only", action="append", default=[], metavar="AXIS=V1,V2",
                       help="run only the cells whose AXIS value is one of V1,V2 (repeatable; the sweep keeps its "
                            "full grid, so a later run without --only fills in the rest)")
    sweep.set_defaults(func=run_sweep_command)

    report = subparsers.add_parser(
        "report",
        help="aggregate one or more sweeps: curves with seed spread, final-metric and steps-to-target tables",
        description="Build report.html (self-contained), PNGs, summary.md and summary.json from sweep "
                    "directories; several sweeps (e.g. the default and the fork task) are reported side by side.",
    )
    report.add_argument("run_dirs", nargs="*", help="sweep output directories (each holds sweep.yaml)")
    report.add_argument("--from-summary", metavar="SUMMARY_JSON",
                        help="rebuild the page from a summary.json that ead report wrote (nothing is rerun), e.g. "
                             "ead report --from-summary docs/results/summary.json --out docs/results")
    report.add_argument("--merge-summary", metavar="SUMMARY_JSON",
                        help="complete the sweeps with the groups of a committed summary.json of the same sweep "
                             "(after ead sweep --only reran some groups; groups in both must reproduce seed by seed)")
    report.add_argument("--finding", metavar="FILE",
                        help="Markdown paragraph(s) stating the finding, shown first on the page")
    report.add_argument("--out", help="output directory (default: RUN_DIR/report for one sweep, else ./report)")
    report.add_argument("--title", default="EAD vs fixed temperature", help="page title")
    report.add_argument("--command", dest="command_line", default=None,
                        help="the command that produced the sweeps, printed in the report")
    report.set_defaults(func=run_report_command)


def _resolve_recipe(name: str) -> str:
    from pathlib import Path

    from ead.experiments.grid import builtin_recipe

    if Path(name).is_file():
        return name
    return str(builtin_recipe(name.removesuffix(".yaml")))


def run_sweep_command(args: argparse.Namespace) -> int:
    from ead.experiments.grid import load_sweep_config
    from ead.experiments.sweep import is_done, is_selected, run_sweep, validate_cells

    config = load_sweep_config(_resolve_recipe(args.recipe), args.overrides)
    only = parse_only(args.only, config)
    if args.dry_run:
        validate_cells(config)
        cells = [c for c in config.cells() if is_selected(c, only)]
        for cell in cells:
            state = "done" if is_done(cell.run_dir) else (
                "resume" if (cell.run_dir / "checkpoints" / "latest").is_file() else "new")
            print(f"{state:7s} {cell.id}")
        print(f"{len(cells)} cells, {config.jobs} at a time, out_dir={config.out_dir}")
        return 0
    result = run_sweep(config, progress=not args.no_progress, only=only)
    print(f"ead sweep: {len(result.done)} finished now, {len(result.skipped)} already done, "
          f"{len(result.failed)} failed{': ' + ', '.join(result.failed) if result.failed else ''}")
    if args.report:
        from ead.experiments.summary import build_report

        print(f"report: {build_report([config.out_dir], args.report)}")
    return 0 if result.ok else 1


def parse_only(words: list[str], config) -> dict[str, set[str]]:
    """``--only AXIS=V1,V2`` -> {axis: {values}}, every axis and value checked against the recipe."""
    from ead.config import ConfigError

    only: dict[str, set[str]] = {}
    for word in words:
        axis, sep, values = word.partition("=")
        if not sep or not values:
            raise ConfigError(f"--only {word!r}: expected AXIS=VALUE[,VALUE...]")
        if axis not in config.axes:
            raise ConfigError(f"--only {word!r}: the sweep has no axis {axis!r} (axes: {', '.join(config.axes)})")
        wanted = set(values.split(","))
        unknown = sorted(wanted - set(config.axes[axis]))
        if unknown:
            raise ConfigError(f"--only {word!r}: axis {axis!r} has no value {', '.join(map(repr, unknown))} "
                              f"(values: {', '.join(config.axes[axis])})")
        only[axis] = only.get(axis, set()) | wanted
    return only


def run_report_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ead.config import ConfigError
    from ead.experiments.summary import build_report, report_from_summary

    if bool(args.run_dirs) == bool(args.from_summary):
        raise ConfigError("ead report needs either sweep directories or --from-summary SUMMARY_JSON (not both)")
    finding = None
    if args.finding:
        if not Path(args.finding).is_file():
            raise ConfigError(f"--finding {args.finding}: no such file")
        finding = Path(args.finding).read_text()
    command = args.command_line or " ".join(["ead", *sys.argv[1:]])
    if args.from_summary:
        if not Path(args.from_summary).is_file():
            raise ConfigError(f"--from-summary {args.from_summary}: no such file")
        out = args.out or str(Path(args.from_summary).parent)
        print(f"report: {report_from_summary(args.from_summary, out, title=args.title, command=command, finding=finding)}")
        return 0
    out = args.out or (str(Path(args.run_dirs[0]) / "report") if len(args.run_dirs) == 1 else "report")
    if args.merge_summary and not Path(args.merge_summary).is_file():
        raise ConfigError(f"--merge-summary {args.merge_summary}: no such file")
    try:
        page = build_report(args.run_dirs, out, title=args.title, command=command, finding=finding,
                            merge_with=args.merge_summary)
    except ValueError as exc:
        raise ConfigError(f"--merge-summary {args.merge_summary}: {exc}") from None
    print(f"report: {page}")
    return 0
