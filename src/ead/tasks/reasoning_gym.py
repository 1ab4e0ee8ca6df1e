"""reasoning-gym (Stojanovski et al., 2025, arXiv 2505.24760) as a task source: ``task.name: reasoning_gym``.

reasoning-gym (``pip install 'ead-rlvr[reasoning]'``) ships 100+ procedural generators
(``basic_arithmetic``, ``chain_sum``, ``leg_counting``, ...), each with its own scorer
``dataset.score_answer(answer, entry) -> float``. This module turns one generator into a
:class:`~ead.tasks.base.Task`:

* **one pool per config**: the generator is built with ``seed`` and its own options; item ``i``
  is a pure function of (options, seed, i) (reasoning-gym seeds each item with ``seed + i``);
* **held-out set**: items ``[0, eval_size)``; **training pool**: items
  ``[eval_size, eval_size + train_size)`` minus any whose question is also held out (small
  generators repeat questions); training epochs are shuffles of that pool by ``task.seed``, so
  ``train_batch`` is a pure function of (seed, batch index, batch size) and resuming is exact;
* **grading**: :class:`ReasoningGymGrader` (picklable, run in the sandboxed ``GraderPool``)
  extracts the final answer (``<answer>...</answer>``, reasoning-gym's convention, or the whole
  response) and calls the generator's own scorer. Everything it needs travels in
  ``Problem.answer`` as JSON: the generator name, its options and the item (question, answer, metadata).

``reasoning_gym`` is imported only when a task or a scorer is built, never at ``ead`` import.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass, field
from typing import Any, Literal

from ead.tasks.base import Grade, Problem

__all__ = ["DEFAULT_PROMPT", "ReasoningGymGrader", "ReasoningGymOptions", "ReasoningGymTask", "eval_rows",
           "generator_config", "parse_generator_spec"]

INSTALL_HINT = "task.name=reasoning_gym needs the reasoning-gym package: pip install 'ead-rlvr[reasoning]'"

DEFAULT_PROMPT = "{question}\nGive your final answer inside <answer></answer> tags."
"""How a question becomes a prompt when ``prompt_template`` is not set (``{question}`` is the generator's text)."""


class ReasoningGymError(ValueError):
    """A bad generator name or option; the message names the field."""


def _reasoning_gym():
    try:
        import reasoning_gym
    except ImportError:
        raise ReasoningGymError(INSTALL_HINT) from None
    return reasoning_gym


@dataclass
class ReasoningGymOptions:
    """``task.reasoning_gym``: which generator, with which options, and how many problems."""

    dataset: str = "basic_arithmetic"
    """A reasoning-gym generator name (``python -c "import reasoning_gym; print(sorted(reasoning_gym.factory.DATASETS))"``)."""
    options: dict[str, Any] = field(default_factory=dict)
    """The generator's own config fields (e.g. basic_arithmetic: {min_terms: 2, max_terms: 3, max_digits: 2}),
    checked against its config class at load."""
    seed: int = 0
    """Seed of the generator: fixes the problem pool (held-out and training items). ``task.seed`` orders training."""
    train_size: int = 10_000
    """Items in the training pool (cycled in shuffled epochs)."""
    eval_size: int = 200
    """Held-out items (``task.num_eval_problems`` takes the first of them)."""
    prompt_template: str = DEFAULT_PROMPT
    """``str.format`` template with ``{question}``."""
    answer_extraction: Literal["tag", "full"] = "tag"
    """'tag': the scorer gets the text inside the last <answer></answer> (no tag: scored as no answer);
    'full': the whole response, stripped."""
    chat_template: bool = False
    """Wrap the prompt in the tokenizer's chat template (user turn + generation prompt)."""
    system_prompt: str | None = None
    """Optional system turn when ``chat_template`` is on."""

    def __post_init__(self) -> None:
        from ead.config import require

        require(self.train_size >= 1, "train_size", "must be >= 1")
        require(self.eval_size >= 1, "eval_size", "must be >= 1")
        require("{question}" in self.prompt_template, "prompt_template", "must contain {question}")

    def check(self, where: str = "task.reasoning_gym") -> None:
        """Import reasoning-gym and check the generator name and its options (raises ConfigError naming ``where``)."""
        from ead.config import ConfigError

        try:
            generator_config(self.dataset, self.options, self.seed, self.eval_size + self.train_size)
        except ReasoningGymError as exc:
            raise ConfigError(str(exc) if str(exc) == INSTALL_HINT else f"{where}.{exc}") from None


def generator_config(name: str, options: dict[str, Any], seed: int, size: int) -> dict[str, Any]:
    """The generator's full config as a JSON-safe dict, validated by its config class (ReasoningGymError if bad)."""
    reasoning_gym = _reasoning_gym()
    datasets = reasoning_gym.factory.DATASETS
    if name not in datasets:
        import difflib

        close = difflib.get_close_matches(name, list(datasets), n=5)
        raise ReasoningGymError(f"dataset {name!r} is not a reasoning-gym generator"
                                f"{f' (close: {close})' if close else ''}; {len(datasets)} exist, e.g. "
                                "basic_arithmetic, chain_sum, leg_counting")
    _, config_cls = datasets[name]
    reserved = sorted({"seed", "size"} & set(options))
    if reserved:
        raise ReasoningGymError(f"options must not set {reserved}: use task.reasoning_gym.seed / train_size / eval_size")
    try:
        config = config_cls(**options, seed=seed, size=size)
        if hasattr(config, "validate"):
            config.validate()
    except (TypeError, ValueError, AssertionError) as exc:
        fields = sorted(getattr(config_cls, "__dataclass_fields__", {}))
        raise ReasoningGymError(f"options for {name}: {exc or type(exc).__name__}; its fields are "
                                f"{[f for f in fields if f not in ('seed', 'size')]}") from None
    values = dict(vars(config))
    try:
        return json.loads(json.dumps(values))  # tuples -> lists; the scorer side rebuilds from this dict
    except TypeError as exc:
        raise ReasoningGymError(f"options for {name}: the config is not JSON-serialisable ({exc})") from None


@functools.lru_cache(maxsize=8)
def _generator(name: str, config_json: str):
    """The generator (scorer) instance for a config, built once per process (grader workers included)."""
    reasoning_gym = _reasoning_gym()
    _, config_cls = reasoning_gym.factory.DATASETS[name]
    config = json.loads(config_json)
    fields = getattr(config_cls, "__dataclass_fields__", {})
    for key, value in config.items():  # JSON made tuples lists: give fields declared as tuples their tuple back
        if isinstance(value, list) and isinstance(getattr(fields.get(key), "default", None), tuple):
            config[key] = tuple(value)
    return reasoning_gym.create_dataset(name, **config)


def _entry(item: dict[str, Any], name: str, index: int) -> dict[str, Any]:
    entry = {"question": item["question"], "answer": item["answer"], "metadata": item.get("metadata", {})}
    try:
        return json.loads(json.dumps(entry))
    except TypeError as exc:
        raise ReasoningGymError(f"dataset {name}: item {index} is not JSON-serialisable ({exc}); "
                                "this generator cannot be graded out of process") from None


def _extract_tag(response: str, tag: str = "answer") -> str | None:
    """Text inside the last ``<tag>...</tag>`` (stripped), else None."""
    end = response.rfind(f"</{tag}>")
    if end < 0:
        return None
    start = response.rfind(f"<{tag}>", 0, end)
    return None if start < 0 else response[start + len(tag) + 2 : end].strip()


@dataclass(frozen=True)
class ReasoningGymGrader:
    """The generator's own scorer on the extracted answer; ``correct`` means full score (1.0).

    Stateless and picklable: the generator is rebuilt (once per process) from ``problem.answer``."""

    answer_extraction: Literal["tag", "full"] = "tag"

    def __call__(self, problem: Problem, response: str) -> Grade:
        gold = problem.answer
        answer = _extract_tag(response) if self.answer_extraction == "tag" else response.strip()
        scorer = _generator(gold["dataset"], json.dumps(gold["config"], sort_keys=True))
        score = float(scorer.score_answer(answer, gold["entry"]))
        return Grade(reward=score, correct=score >= 1.0, answer_key=answer or None,
                     info={"format_ok": answer is not None, "score": score})


class ReasoningGymTask:
    """A reasoning-gym generator as a :class:`~ead.tasks.base.Task` (module docstring)."""

    def __init__(self, options: ReasoningGymOptions | None = None, seed: int = 0, tokenizer: Any = None):
        self.options = options or ReasoningGymOptions()
        self.name = f"reasoning_gym:{self.options.dataset}"
        self.seed = seed
        self.tokenizer = tokenizer
        self.config = generator_config(self.options.dataset, self.options.options, self.options.seed,
                                       self.options.eval_size + self.options.train_size)
        self.grader = ReasoningGymGrader(self.options.answer_extraction)
        self._eval = [self._problem(i) for i in range(self.options.eval_size)]
        self._train_pool: list[int] | None = None

    def _generator(self):
        return _generator(self.options.dataset, json.dumps(self.config, sort_keys=True))

    def _prompt(self, question: str) -> str:
        prompt = self.options.prompt_template.format(question=question)
        if self.options.chat_template:
            if self.tokenizer is None or not getattr(self.tokenizer, "chat_template", None):
                raise ReasoningGymError("chat_template is on but the tokenizer has no chat template")
            messages = [{"role": "system", "content": self.options.system_prompt}] if self.options.system_prompt else []
            messages.append({"role": "user", "content": prompt})
            prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return prompt

    def _problem(self, index: int) -> Problem:
        name = self.options.dataset
        entry = _entry(self._generator()[index], name, index)
        return Problem(uid=f"reasoning_gym:{name}:{self.options.seed}:{index}", prompt=self._prompt(entry["question"]),
                       answer={"dataset": name, "config": self.config, "entry": entry},
                       meta={"source": "reasoning_gym", "dataset": name, "index": index,
                             "split": "eval" if index < self.options.eval_size else "train"})

    def _pool(self) -> list[int]:
        """Generator indices of the training pool, held-out questions removed (computed once)."""
        if self._train_pool is None:
            held_out = {p.answer["entry"]["question"] for p in self._eval}
            first = self.options.eval_size
            generator = self._generator()
            self._train_pool = [i for i in range(first, first + self.options.train_size)
                                if generator[i]["question"] not in held_out]
            if not self._train_pool:
                raise ReasoningGymError(f"dataset {self.options.dataset}: every training item repeats a held-out "
                                        "question; raise train_size or make the generator's space larger")
        return self._train_pool

    @functools.lru_cache(maxsize=4)  # noqa: B019 - a few epochs' permutations, freed with the task
    def _epoch_order(self, epoch: int) -> list[int]:
        order = list(self._pool())
        random.Random(f"{self.seed}|{epoch}").shuffle(order)
        return order

    def train_batch(self, batch_index: int, num_prompts: int) -> list[Problem]:
        """Stream positions ``[b*m, (b+1)*m)`` over epochs of the shuffled training pool."""
        size = len(self._pool())
        out = []
        for position in range(batch_index * num_prompts, (batch_index + 1) * num_prompts):
            epoch, offset = divmod(position, size)
            out.append(self._problem(self._epoch_order(epoch)[offset]))
        return out

    def eval_problems(self) -> list[Problem]:
        return list(self._eval)


def parse_generator_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"basic_arithmetic:max_terms=2,max_digits=1"`` -> ``("basic_arithmetic", {"max_terms": 2, "max_digits": 1})``
    (values read as YAML scalars; the same ``name:key=value,...`` form as ``ead eval --schedule``)."""
    import yaml

    name, _, params = spec.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in params.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ReasoningGymError(f"generator option {item!r} in {spec!r} is not key=value "
                                    "(e.g. reasoning_gym:basic_arithmetic:max_terms=2,max_digits=1)")
        options[key.strip()] = yaml.safe_load(value)
    return name, options


def eval_rows(spec: str) -> list[dict[str, Any]]:
    """Rows of the held-out set of generator ``spec`` (``name`` or ``name:key=value,...``; seed 0, 200 items) for
    ``ead eval --dataset reasoning_gym:<spec>`` (the dataset preset in :mod:`ead.data`)."""
    name, options = parse_generator_spec(spec)
    task = ReasoningGymTask(ReasoningGymOptions(dataset=name, options=options, train_size=1))
    return [{"uid": p.uid, "prompt": p.prompt, "answer": p.answer} for p in task.eval_problems()]
