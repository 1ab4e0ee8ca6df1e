"""``ead eval``: defaults <- YAML (``--config``) <- explicit flags <- dotted overrides, validated into EvalConfig.

Examples::

    ead eval --model runs/demo --samples 16 --k 1,4,16
    ead eval --model Qwen/Qwen2.5-Math-1.5B --dataset math500.jsonl --compare \\
        data.prompt_template='{problem} Put your final answer in \\boxed{{}}.' --max-new-tokens 3072
    ead eval --model runs/demo --schedule fixed:tau=0.6 --schedule ead:unit=0.4,warmup_tokens=0
    ead eval --engine vllm --model Qwen/Qwen2.5-Math-1.5B --dataset math500.jsonl --compare sampling.vllm.dtype=bfloat16
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
                    "field can be given as a dotted override, e.g. data.prompt_field=question grading.timeout_s=5 "
                    "(model.*, sampling.* and grading.* are the sections shared with ead train).",
    )
    parser.add_argument("--config", help="YAML file of EvalConfig fields")
    parser.add_argument("--model", help="model.path: HF id, save_pretrained dir, ead checkpoint or ead run dir")
    parser.add_argument("--dataset", help="countdown | countdown-fork | countdown-search | humaneval | a .jsonl/.parquet file | a Hub name")
    parser.add_argument("--samples", "-n", type=int, help="samples per problem and schedule")
    parser.add_argument("--k", type=_int_list, help="comma-separated k values for pass@k etc., e.g. 1,4,16")
    parser.add_argument("--schedule", action="append", metavar="SPEC",
                        help="name[:key=value,...], repeatable, e.g. fixed:tau=0.6 or ead:tau_max=1.2")
    parser.add_argument("--compare", action="store_true",
                        help="add the paper's comparison: fixed 0.6 / 1.0 / 1.2 and EAD (ead train's default EAD for a built-in "
                             "task, sized to its response lengths; the paper defaults otherwise)")
    parser.add_argument("--engine", choices=["auto", "lean", "hf", "vllm"],
                        help="what samples: auto (default: lean when it supports the model, else hf), lean (ead's "
                             "KV-cached loop), hf (transformers generate) or vllm (needs ead-rlvr[vllm]; "
                             "engine settings as sampling.vllm.<field>=value overrides); sets sampling.engine")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="model.dtype: weights dtype")
    parser.add_argument("--device", help="model.device: auto (default), cpu, cuda, cuda:1, mps")
    parser.add_argument("--top-k", type=int, dest="top_k", help="sampling.top_k: top-k after the temperature")
    parser.add_argument("--top-p", type=float, dest="top_p", help="sampling.top_p: nucleus threshold after the temperature")
    parser.add_argument("--max-new-tokens", type=int, dest="max_new_tokens",
                        help="sampling.max_new_tokens: response budget (default: the task's)")
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
    parser.add_argument("overrides", nargs="*",
                        help="EvalConfig key=value overrides, dotted for nested fields (model.dtype=bfloat16)")
    parser.set_defaults(func=run)


FLAG_FIELDS = {"model": "model.path", "dtype": "model.dtype", "device": "model.device", "dataset": "dataset",
               "samples": "samples", "k": "k", "num_problems": "num_problems", "output_dir": "output_dir",
               "engine": "sampling.engine", "top_k": "sampling.top_k", "top_p": "sampling.top_p",
               "max_new_tokens": "sampling.max_new_tokens", "schedule_step": "step"}
"""argparse destination -> the EvalConfig field (dotted) it sets; --schedule/--compare, --resume and
--no-progress are handled on their own (they build a list or set a bool)."""


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The dotted EvalConfig fields the explicit flags set (None where a flag was not given)."""
    return {dotted: getattr(args, dest, None) for dest, dotted in FLAG_FIELDS.items()}


def _refuse_moved_fields(data: dict[str, Any], overrides: list[str], path: str | None) -> None:
    """An old flat field (``dtype``, ``top_k``, ``grader_inline``, ...) in the YAML or an override: the new name."""
    from ead.config import parse_override
    from ead.evaluation.runner import moved_field_error

    for name, value in data.items():
        error = moved_field_error(name, value, where=f"{path}: ")
        if error is not None:
            raise error
    for text in overrides:
        keys, value = parse_override(text)
        error = moved_field_error(keys[0], value if len(keys) == 1 else {}, where=f"override {text!r}: ")
        if error is not None:
            raise error


def _read_yaml(path: str | None) -> dict[str, Any]:
    from ead.config import read_config_file

    return {} if path is None else read_config_file(path, what="EvalConfig fields")


def build_config(args: argparse.Namespace):
    """The validated :class:`~ead.evaluation.runner.EvalConfig`: defaults <- YAML <- flags <- overrides."""
    from ead.config import load_config
    from ead.evaluation.runner import BUILTIN_TASKS, EvalConfig

    data = _read_yaml(args.config)
    _refuse_moved_fields(data, args.overrides, args.config)
    for dotted, value in flag_values(args).items():
        if value is not None:
            section, _, name = dotted.rpartition(".")
            (data.setdefault(section, {}) if section else data)[name] = value
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    if str(model.get("path", "")).startswith("pretrained:"):  # a checkpoint fetched by `ead models fetch`
        from ead.modeling.pretrained import resolve_pretrained

        model["path"] = str(resolve_pretrained(model["path"]))
    if args.resume:
        data["resume"] = True
    if args.no_progress:
        data["progress"] = False
    if "samples" in data and "k" not in data:  # keep the default k values that fit
        default_k = EvalConfig.__dataclass_fields__["k"].default_factory()
        data["k"] = [k for k in default_k if k <= data["samples"]] or [data["samples"]]
    schedules = [parse_schedule_spec(s) for s in args.schedule or []]
    if args.compare:
        dataset = data.get("dataset", "countdown")
        if dataset in BUILTIN_TASKS:  # the EAD `ead train` uses on this task: sized for its response lengths
            from ead.modeling.loading import task_train_defaults
            from ead.tasks.countdown import DEMO_EAD_SCHEDULE

            ead = dict(task_train_defaults(dataset).get("sampling", {}).get("schedule", DEMO_EAD_SCHEDULE))
        else:
            ead = {"name": "ead"}
        schedules = PAPER_BASELINES + [ead] + [s for s in schedules if s not in PAPER_BASELINES + [ead]]
    if schedules:
        data["schedules"] = schedules
    if args.model is not None:  # named after the flag (ModelSection would say model.path)
        from ead.paths import check_model_reference

        check_model_reference(data["model"]["path"], "--model")
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

    note_old_cache(config.model.path is None and config.model.warm_start_cache is None)
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
