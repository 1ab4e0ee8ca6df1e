"""``ead schedule``: print and plot tau_t for given parameters (see what you will run before you run it)."""

from __future__ import annotations

import argparse

from ead.config import parse_override


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "schedule", help="print and plot a temperature schedule",
        description="Example: ead schedule name=ead unit=0.4 warmup_tokens=0 --steps 0 20 --length 24 --png tau.png",
    )
    parser.add_argument("params", nargs="*", help="schedule fields as key=value (name=ead|fixed|linear|cosine|reversed_ead)")
    parser.add_argument("--steps", type=int, nargs="+", default=[0], help="global training steps to show")
    parser.add_argument("--length", type=int, default=512, help="response positions to show (tokens)")
    parser.add_argument("--every", type=int, default=0, help="print every N-th position (0: about 20 rows)")
    parser.add_argument("--png", help="write a plot of tau_t against t here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    from ead.config import ConfigError
    from ead.schedules import ScheduleError, schedule_from_dict

    spec = {"name": "ead"}
    for text in args.params:
        path, value = parse_override(text)
        spec[".".join(path)] = value
    try:
        schedule = schedule_from_dict(spec)
    except ScheduleError as exc:
        raise ConfigError(f"ead schedule {' '.join(args.params)}: {exc}") from None
    if getattr(schedule, "needs_logits", False):
        raise ConfigError(f"schedule {schedule.name!r} sets each token's temperature from the model's logits, so it "
                          "has no curve over positions to print; see docs/exploration_methods.md")
    positions = torch.arange(args.length)
    curves = {step: schedule.temperatures(positions, step) for step in args.steps}
    every = args.every or max(1, args.length // 20)
    table = Table(title=f"{schedule.to_dict()}")
    table.add_column("t", justify="right")
    for step in args.steps:
        table.add_column(f"tau (step {step})", justify="right")
    for t in range(0, args.length, every):
        table.add_row(str(t), *[f"{float(curves[s][t]):.4f}" for s in args.steps])
    Console().print(table)
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for step, tau in curves.items():
            ax.plot(positions.numpy(), tau.numpy(), label=f"step {step}")
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("response position t (tokens)")
        ax.set_ylabel("temperature tau_t")
        ax.set_title(schedule.name)
        ax.legend()
        fig.tight_layout()
        from pathlib import Path

        Path(args.png).parent.mkdir(parents=True, exist_ok=True)  # `--png plots/tau.png` into a new folder
        fig.savefig(args.png, dpi=120)
        plt.close(fig)
        print(f"wrote {args.png}")
    return 0
