"""``ead eval``: defaults <- YAML (``--config``) <- explicit flags <- dotted overrides, validated into EvalConfig.

Examples::

    ead eval --model runs/demo --samples 16 --k 1,4,16
    ead eval --model Qwen/Qwen2.5-Math-1.5B --dataset math500.jsonl --compare \\
        data.prompt_template='{problem} Put your final answer in \\boxed{{}}.' max_new_tokens=3072
    ead eval --model runs/demo --schedule fixed:tau=0.6 --schedule ead:unit=0.4,warmup_tokens=0
    ead eval --engine vllm --model Qwen/Qwen2.5-Math-1.5B --dataset math500.jsonl --compare vllm.dtype=bfloat16
"""

from __future__ import annotations

import argparse
from typing import Any

PAPER_BASELINES = [{"name": "fixed", "tau": 0.6}, {"name": "fixed", "tau": 1.0}, {"name": "fixed", "tau": 1.2}]
"""The fixed temperatures the EAD paper compares against."""


def parse_schedule_spec(text: str) -> dict[str, Any]:
    """``"fixed:tau=0.6"`` -> ``{"name": "fixed", "tau": 0.6}``; ``"ead"`` -> ``{"name": "ead"}``."""
    from ead.config import ConfigError, yaml_load

    name, _, params = text.partition(":")
    spec: dict[str, Any] = {"name": name.strip()}
    for item in filter(None, (p.strip() for p in params.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"--schedule {text!r}: expected name:key=value,key=value")
        spec[key.strip()] = yaml_load(value)
    return spec


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="sampled evaluation (pass@k, maj@k, worst@k) of a model under one or more schedules",
        description="Evaluate a model: n samples per problem under each schedule, graded in a sandbox; "
                    "writes records (resumable), summary.json, pass_at_k.png and a table. Any EvalConfig "
                    "field can be given as a dotted override, e.g. data.prompt_field=question grader_timeout_s=5.",
    )
    parser.add_argument("--config", help="YAML file of EvalConfig fields")
    parser.add_argument("--model", help="HF id, save_pretrained dir, ead checkpoint or ead run dir")
    parser.add_argument("--dataset", help="countdown | countdown-fork | humaneval | a .jsonl/.parquet file | a Hub name")
    parser.add_argument("--samples", "-n", type=int, help="samples per problem and schedule")
    parser.add_argument("--k", type=_int_list, help="comma-separated k values for pass@k etc., e.g. 1,4,16")
    parser.add_argument("--schedule", action="append", metavar="SPEC",
                        help="name[:key=value,...], repeatable, e.g. fixed:tau=0.6 or ead:tau_max=1.2")
    parser.add_argument("--compare", action="store_true",
                        help="add the paper's comparison: fixed 0.6 / 1.0 / 1.2 and EAD (the training demo "
                             "schedule for built-in tasks, the paper defaults otherwise)")
    parser.add_argument("--engine", choices=["auto", "lean", "hf", "vllm"],
                        help="what samples: auto (default: lean when it supports the model, else hf), lean (ead's "
                             "KV-cached loop), hf (transformers generate) or vllm (needs ead-rlvr[vllm]; "
                             "engine settings as vllm.<field>=value overrides)")
    parser.add_argument("--schedule-step", type=int, metavar="STEP", dest="schedule_step",
                        help="training step fed to the schedules (EAD's decay length D_s grows with it); default: "
                             "the checkpoint's step for a trained run, else 0")
    parser.add_argument("--num-problems", type=int, help="only the first N problems")
    parser.add_argument("--output-dir", help="where records, summary and plots go")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted evaluation in --output-dir")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--print-config", action="store_true", help="print the resolved EvalConfig as YAML and exit")
    parser.add_argument("--list-fields", action="store_true",
                        help="list every EvalConfig field with its type, default and documentation, and exit")
    parser.add_argument("overrides", nargs="*", help="EvalConfig key=value overrides (dotted for nested dicts)")
    parser.set_defaults(func=run)


def _read_yaml(path: str | None) -> dict[str, Any]:
    from ead.config import read_config_file

    return {} if path is None else read_config_file(path, what="EvalConfig fields")


def build_config(args: argparse.Namespace):
    """The validated :class:`~ead.evaluation.runner.EvalConfig`: defaults <- YAML <- flags <- overrides."""
    from ead.config import load_config
    from ead.evaluation.runner import BUILTIN_TASKS, EvalConfig

    data = _read_yaml(args.config)
    flags = {"model": args.model, "dataset": args.dataset, "samples": args.samples, "k": args.k,
             "num_problems": args.num_problems, "output_dir": args.output_dir, "engine": args.engine,
             "step": getattr(args, "schedule_step", None)}
    data.update({key: value for key, value in flags.items() if value is not None})
    if str(data.get("model", "")).startswith("pretrained:"):  # a checkpoint fetched by `ead models fetch`
        from ead.modeling.pretrained import resolve_pretrained

        data["model"] = str(resolve_pretrained(data["model"]))
    if args.resume:
        data["resume"] = True
    if args.no_progress:
        data["progress"] = False
    if "samples" in data and "k" not in data:  # keep the default k values that fit
        default_k = EvalConfig.__dataclass_fields__["k"].default_factory()
        data["k"] = [k for k in default_k if k <= data["samples"]] or [data["samples"]]
    schedules = [parse_schedule_spec(s) for s in args.schedule or []]
    if args.compare:
        if data.get("dataset", "countdown") in BUILTIN_TASKS:
            from ead.tasks.countdown import DEMO_EAD_SCHEDULE

            ead = dict(DEMO_EAD_SCHEDULE)
        else:
            ead = {"name": "ead"}
        schedules = PAPER_BASELINES + [ead] + [s for s in schedules if s not in PAPER_BASELINES + [ead]]
    if schedules:
        data["schedules"] = schedules
    if isinstance(data.get("model"), str):
        from ead.paths import check_model_reference

        check_model_reference(data["model"], "--model")
    return load_config(EvalConfig, None, args.overrides, base=data)


def run(args: argparse.Namespace) -> int:
    from ead.config import dump_config, format_fields
    from ead.evaluation.runner import EvalConfig, run_eval

    if args.list_fields:
        print(format_fields(EvalConfig), end="")
        return 0
    config = build_config(args)
    if args.print_config:
        print(dump_config(config), end="")
        return 0
    from ead.paths import note_old_cache

    note_old_cache(config.model is None and config.warm_start_cache is None)
    summary = run_eval(config)
    note = schedule_step_note(summary)
    if note:
        print(note)
    print(f"records and plots: {config.output_dir}")
    return 0


def schedule_step_note(summary: dict[str, Any]) -> str | None:
    """Which training step the step-aware schedules (EAD) were evaluated at, and how to choose another."""
    from ead.evaluation.report import decay_length_tokens

    step = summary.get("config", {}).get("step", 0)
    lengths = {label: decay_length_tokens(entry["spec"], step) for label, entry in summary["schedules"].items()}
    lengths = {label: d for label, d in lengths.items() if d is not None}
    if not lengths:
        return None
    described = ", ".join(f"{label}: D = {d:.0f} tokens" for label, d in lengths.items())
    return (f"step-aware schedules were evaluated at training step {step} ({described}); "
            "choose another with --schedule-step N (0 = the schedule a fresh run starts with)")
