"""What RL changed in each sampler's trained policy on countdown-search (docs/long_reasoning.md).

    PYTHONPATH=src nice -n 10 python docs/results/long_reasoning/final_policies.py \\
        docs/results/long_reasoning/sweep --seeds 0 --out docs/results/long_reasoning/final_policies_s0.json

The sweep's metrics say *whether* a sampler ends better; this says *how* its policy differs. For every
finished cell of the given seeds whose final checkpoint is still on this machine (checkpoints are not
committed: run it where the grid ran), it samples the trained policy at tau = 1, ``--n`` responses per
held-out problem under the same seed for every cell, and summarises them as ``measure_search.py`` does for
the base model, per difficulty level: Mean@n, attempts, length, the final attempt's mistake, wrong
self-checks, how often the first equation is a winning one (the early strategy choice), and success
after a winning or a dead-end first equation. The base model is measured the same way for reference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_search import run  # noqa: E402  (the base-model measurement, reused as is)

from ead.schedules import FixedSchedule  # noqa: E402
from ead.tasks.countdown_search import CountdownSearchTask  # noqa: E402

COLUMNS = [  # (label, key in a level's summary, format)
    ("Mean@n", "mean@{n}", "{:.3f}"),
    ("attempts", "attempts_mean", "{:.2f}"),
    ("length", "length_mean", "{:.0f}"),
    ("first eq. winning", "first_step_winning_frac", "{:.2f}"),
    ("success | winning first", "success_given_winning_first_step", "{:.3f}"),
    ("success | dead-end first", "success_given_dead_end_first_step", "{:.3f}"),
    ("wrong checks", "wrong_checks_per_response", "{:.2f}"),
]


def final_checkpoint(cell: Path) -> Path | None:
    """The model directory of the cell's last checkpoint, if the cell finished and its weights are here."""
    latest = cell / "checkpoints" / "latest"
    if not (cell / "DONE").is_file() or not latest.is_file():
        return None
    model = cell / "checkpoints" / latest.read_text().strip() / "model"
    return model if model.is_dir() else None


def table(results: dict[str, dict], n: int) -> str:
    """Markdown: one row per (model, level), the COLUMNS of its summary."""
    head = "| model | level | " + " | ".join(label for label, _, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, result in results.items():
        summary = result["fixed-1.0"]
        for level in ("all", "1", "2", "3"):
            cells = []
            for _, key, fmt in COLUMNS:
                value = summary[level].get(key.format(n=n))
                cells.append("-" if value is None else fmt.format(value))
            lines.append(f"| {name} | {level} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1, help="sampling seed (the same for every model)")
    parser.add_argument("--base", default=None, help="base model dir (default: the cached warm start)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = CountdownSearchTask()
    budget = task.max_response_chars + 1
    models: dict[str, str] = {}
    base = args.base
    if base is None:  # the warm start every cell started from (the trainer's own cache lookup)
        from ead.modeling.loading import builtin_model_path, countdown_config

        base = str(builtin_model_path(countdown_config("countdown-search"), None, num_threads=1))
    models["base"] = base
    for cell in sorted(args.sweep_dir.glob("cells/*__s*")):
        if int(cell.name.rsplit("__s", 1)[1]) in args.seeds and (model := final_checkpoint(cell)) is not None:
            models[cell.name] = str(model)
    if args.out is not None and args.out.exists():
        raise SystemExit(f"{args.out} exists; pass another --out (this script never overwrites a result)")
    results = {}
    for name, path in models.items():
        print(f"== {name}", flush=True)
        results[name] = run(path, task, {"fixed-1.0": FixedSchedule(1.0)}, args.n, args.seed, budget, None)
        results[name].pop("_examples", None)
    print(table(results, args.n))
    if args.out is not None:
        args.out.write_text(json.dumps({"n": args.n, "seed": args.seed, "models": models, "results": results},
                                       indent=1) + "\n")


if __name__ == "__main__":
    main()
