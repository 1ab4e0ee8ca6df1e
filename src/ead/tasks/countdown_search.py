"""Countdown with search: a built-in task whose responses are long, variable and error-compounding.

The prompt is a Countdown problem (``3 7 9>5:``, see :mod:`ead.tasks.countdown`).
The response is a *search*: one or more attempts, each a full Countdown chain
followed by a check the model writes itself; after a failed check a ``|``
starts the next attempt, and the response ends either on a successful check or
with a ``.`` (giving up)::

    9-7=2,3+2=5;no|7-3=4,9-4=5;ok          solved on attempt 2
    3+7=10,10-9=1;no|9+3=12,12-7=5;no.     gave up after two attempts

Grammar (parsed by hand in :func:`parse_search`; nothing is ``eval``-ed)::

    response := attempt ("|" attempt)* ["."]
    attempt  := chain ";" ("ok" | "no")        chain as in ead.tasks.countdown.parse_chain

``ok`` must be the last attempt and ``.`` may only follow a ``no``; a response
that stops right after ``;no`` (no ``|`` or ``.``), or is cut by the length
budget, is malformed.

**Reward: the final attempt decides.** The response is correct iff its last
attempt says ``ok`` and is a valid chain (every number used once, exact
arithmetic) reaching the target. An earlier valid chain that the model itself
checked as ``no`` does not count. Why not "any attempt": it would reward spraying
chains and make the check meaningless (longer would always be better and the
task would reduce to enumeration within the budget); with the final attempt
deciding, a longer response helps only if the model both finds a solution and
recognises it, and a hot tail hurts in two ways, a slip inside the final chain
and a wrong check (``ok`` on a wrong chain ends the search with reward 0; ``no``
on a right one throws the solution away).

**Difficulty.** ``Problem.meta["difficulty"]`` is a level 1 (easy), 2 (medium)
or 3 (hard) from the *solution share*: the fraction of distinct canonical chains
(:func:`canonical_chains`) that reach the target. With ``+`` and ``-`` a chain's
value is a signed sum of the numbers, so with 4 distinct numbers a target with one
sign pattern is reached by 1/8 of the chains (hard, share < 0.2), two patterns or
coincidences give ~1/4 (medium, < 0.3), more give >= 0.3 (easy). The meta also
carries ``chains`` and ``solutions`` (the counts), ``random_search_attempts =
(chains + 1) / (solutions + 1)`` (expected attempts of a search trying distinct
chains in random order: harder problems need more attempts), and
``winning_first_steps`` / ``first_steps``: from how many of the distinct first
equations some chain still reaches the target (about half: the first equation is
a real choice, half of them are dead ends). Training and evaluation draw the
levels equally often.

The warm-start traces (:func:`search_trace`) are searches written by a
deliberately imperfect searcher: guided attempts (a winning chain) mixed with
random untried ones, arithmetic slips, wrong checks and early give-ups. See
``docs/long_reasoning.md`` for the measured properties.
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ead.tasks.base import Grade, Problem
from ead.tasks.countdown import (
    OPS,
    ChainSyntaxError,
    CountdownConfigError,
    Step,
    _moves,
    chain_mistake,
    field_checker,
    first_pairs_by_target,
    format_chain,
    is_eval_identity,
    is_integer,
    parse_chain,
)

__all__ = [
    "CountdownSearchConfig",
    "CountdownSearchGrader",
    "CountdownSearchTask",
    "SEARCH_PRESETS",
    "Attempt",
    "SearchSyntaxError",
    "parse_search",
    "format_search",
    "canonical_chains",
    "difficulty_level",
    "problem_difficulty",
    "search_trace",
]

FAIL_MARK = "|"
"""Separates a failed attempt from the next one."""
GIVE_UP_MARK = "."
"""Ends a response that gives up (only after a failed check)."""
CHECK_SEP = ";"
"""Separates an attempt's chain from its check."""
CHECK_OK, CHECK_NO = "ok", "no"
"""The check the model writes: its chain's last result equals the target, or not."""
DIFFICULTY_LEVELS: tuple[int, ...] = (1, 2, 3)
"""1 easy, 2 medium, 3 hard (see :func:`difficulty_level`)."""


@dataclass(frozen=True)
class CountdownSearchConfig:
    """Knobs of Countdown with search (frozen: it keys the warm-start cache)."""

    variant: str = "search"
    """Fixed: names the task family in problem identities and warm-start defaults."""
    num_count: int = 4
    """How many numbers the prompt gives (each attempt has ``num_count - 1`` steps; 3 gives almost no
    difficulty spread: every target is reached by about 1/4 of the chains)."""
    min_value: int = 1
    """Smallest number in a prompt."""
    max_value: int = 7
    """Largest number in a prompt (one-digit inputs, values up to 28: learnable by a ~1M model)."""
    ops: tuple[str, ...] = ("+", "-")
    """Operators allowed in a chain."""
    min_target: int = 1
    """Smallest target."""
    max_attempts: int = 8
    """Most attempts a warm-start trace makes; sets ``max_response_chars`` (the length budget)."""
    eval_fraction: float = 0.2
    """Share of problem identities held out (hash split; train never sees them)."""
    eval_size: int = 60
    """Held-out problems returned by :meth:`CountdownSearchTask.eval_problems` (a third per level)."""
    eval_seed: int = 0
    """Seed of the held-out list (independent of the training seed)."""
    trace_give_up_rate: float = 0.15
    """Warm start only: share of traces that give up after a uniformly drawn number of failed attempts."""
    trace_check_error_rate: float = 0.03
    """Warm start only: per attempt, the chance that the written check is the wrong one."""

    def __post_init__(self) -> None:
        need, is_int = field_checker(self), is_integer
        need(self.variant == "search", "variant", "must be 'search' for task.name=countdown-search")
        need(is_int(self.num_count) and 2 <= self.num_count <= 4, "num_count", "must be an integer in [2, 4]")
        need(is_int(self.min_value) and self.min_value >= 0, "min_value", "must be an integer >= 0")
        need(is_int(self.max_value) and self.min_value <= self.max_value <= 30, "max_value",
             "must be an integer in [min_value, 30]")
        need(isinstance(self.ops, tuple) and len(self.ops) > 0 and all(op in OPS for op in self.ops)
             and len(set(self.ops)) == len(self.ops), "ops", f"must be a non-empty tuple of distinct operators from {OPS}")
        need(is_int(self.min_target) and self.min_target >= 0, "min_target", "must be an integer >= 0")
        need(is_int(self.max_attempts) and 1 <= self.max_attempts <= 50, "max_attempts", "must be an integer in [1, 50]")
        need(0.0 < self.eval_fraction < 1.0, "eval_fraction", "must be in (0, 1)")
        need(is_int(self.eval_size) and self.eval_size >= 1, "eval_size", "must be an integer >= 1")
        need(is_int(self.eval_seed), "eval_seed", "must be an integer")
        need(0.0 <= self.trace_give_up_rate <= 1.0, "trace_give_up_rate", "must be in [0, 1]")
        need(0.0 <= self.trace_check_error_rate <= 1.0, "trace_check_error_rate", "must be in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ops"] = list(self.ops)
        return d

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> CountdownSearchConfig:
        """Inverse of :meth:`to_dict`, rejecting unknown fields by name."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(spec) - known)
        if unknown:
            raise CountdownConfigError(f"unknown countdown field(s) {unknown} for countdown-search; allowed: {sorted(known)}")
        spec = dict(spec)
        if "ops" in spec:
            spec["ops"] = tuple(spec["ops"])
        return cls(**spec)


SEARCH_PRESETS: dict[str, CountdownSearchConfig] = {"countdown-search": CountdownSearchConfig()}
"""Named configs (``task.name``)."""

# EAD sized for this task's responses (docs/long_reasoning.md, "Schedules sized for the task"): tau reaches
# tau_min at the base model's median response length m = 43 tokens at step 0, so the unit factor is
# k = m / (d0 * ln(1 + tau_max - tau_min)) = 43 / (25 * ln 2.1) = 2.3 (the Countdown demo's 0.4 would put it
# at t = 8, inside the first equation); c = 0 (the paper's 10 of ~700 tokens is under one token here);
# alpha = d0 / train.steps for the default 60 steps, so D doubles over a run.
SEARCH_EAD_SCHEDULE: dict[str, Any] = {
    "name": "ead", "tau_max": 1.2, "tau_min": 0.1, "warmup_tokens": 0,
    "d0": 25.0, "alpha": 0.41667, "d_max": 40000.0, "unit": 2.3,
}
"""The EAD this task trains and evaluates with by default (``ead train task.name=countdown-search``, ``ead eval --compare``)."""

TRAIN_DEFAULTS: dict[str, Any] = {
    "sampling": {"schedule": SEARCH_EAD_SCHEDULE,
                 "max_new_tokens": 244},  # >= max_response_chars + 1 = 241; prompt (<= 11) + 244 fits 256 positions
    "train": {"lr": 5e-5},  # the 40-step pilot: the demo's 2e-4 destroys this warm start (Mean@16 0.059 -> 0.003)
}
"""``ead train`` settings this task needs instead of the Countdown demo's, applied under the recipe and overrides."""


# --------------------------------------------------------------------------- format


class SearchSyntaxError(ValueError):
    """The response does not follow the search grammar; the message says where."""


@dataclass(frozen=True)
class Attempt:
    """One attempt as written: its chain (None if the chain did not parse) and its check."""

    chain: tuple[Step, ...]
    check: str  # "ok" or "no"


def format_search(attempts: list[tuple[list[Step], str]], gave_up: bool) -> str:
    """``[(chain, "no"), (chain, "ok")]`` -> ``'a-b=c,...;no|...;ok'``; ``gave_up`` appends ``'.'``."""
    text = FAIL_MARK.join(f"{format_chain(chain)}{CHECK_SEP}{check}" for chain, check in attempts)
    return text + (GIVE_UP_MARK if gave_up else "")


def parse_search(text: str) -> tuple[list[Attempt], bool]:
    """Strictly parse a search response into (attempts, gave_up); surrounding whitespace is ignored.

    Raises :class:`SearchSyntaxError` naming the attempt (1-based) and the rule broken.
    """
    text = text.strip()
    if not text:
        raise SearchSyntaxError("empty response")
    gave_up = text.endswith(GIVE_UP_MARK)
    body = text[:-1] if gave_up else text
    pieces = body.split(FAIL_MARK)
    attempts: list[Attempt] = []
    for i, piece in enumerate(pieces, start=1):
        chain_text, sep, check = piece.rpartition(CHECK_SEP)
        if not sep:
            raise SearchSyntaxError(f"attempt {i} has no check (';ok' or ';no')")
        if check not in (CHECK_OK, CHECK_NO):
            raise SearchSyntaxError(f"attempt {i}: check must be 'ok' or 'no', got {check!r}")
        if chain_text != chain_text.strip():
            raise SearchSyntaxError(f"attempt {i}: whitespace inside the response")
        try:
            chain = parse_chain(chain_text) if chain_text else None
        except ChainSyntaxError as err:
            raise SearchSyntaxError(f"attempt {i}: {err}") from None
        if chain is None:
            raise SearchSyntaxError(f"attempt {i} has an empty chain")
        last = i == len(pieces)
        if check == CHECK_OK and not last:
            raise SearchSyntaxError(f"attempt {i} says 'ok' but the response goes on")
        attempts.append(Attempt(tuple(chain), check))
    if gave_up and attempts[-1].check == CHECK_OK:
        raise SearchSyntaxError("'.' (give up) after an attempt that says 'ok'")
    if not gave_up and attempts[-1].check == CHECK_NO:
        raise SearchSyntaxError("the response ends after a failed check without '|' or '.'")
    return attempts, gave_up


# --------------------------------------------------------------------------- grader


@dataclass(frozen=True)
class CountdownSearchGrader:
    """Pure, picklable grader: reward 1.0 iff the final attempt says ``ok`` and is a valid chain to the target.

    ``info``: ``format_ok``; ``attempts`` (parsed); ``solved_attempt`` (1-based index of the final attempt when
    correct, else None); ``first_valid_attempt`` (first attempt that is a valid solution, checked right or not);
    ``wrong_checks`` (attempts whose check contradicts their own last result); ``gave_up``; ``mistake``: None,
    ``empty``, ``syntax``, ``gave_up``, or the final ``ok`` attempt's broken rule (``operator``, ``unavailable``,
    ``arithmetic``, ``unused``, ``wrong_target``); ``attempt_mistakes`` lists every attempt's rule (None = valid
    solution). ``answer_key`` is the value the final ``ok`` attempt claims (None when it gives up or is malformed).
    """

    def __call__(self, problem: Problem, response: str) -> Grade:
        numbers: list[int] = list(problem.answer["numbers"])
        target: int = int(problem.answer["target"])
        ops: str = problem.answer.get("ops", "+-")
        try:
            attempts, gave_up = parse_search(response)
        except SearchSyntaxError as err:
            kind = "empty" if not response.strip() else "syntax"
            return Grade(0.0, False, None, {"format_ok": False, "mistake": kind, "detail": str(err),
                                            "attempts": response.count(FAIL_MARK) + 1 if response.strip() else 0,
                                            "solved_attempt": None, "gave_up": False})
        mistakes = [chain_mistake(list(a.chain), numbers, target, ops)[0] for a in attempts]
        wrong_checks = sum((a.chain[-1].result == target) != (a.check == CHECK_OK) for a in attempts)
        valid = [i for i, m in enumerate(mistakes, start=1) if m is None]
        final_ok = attempts[-1].check == CHECK_OK and mistakes[-1] is None
        info: dict[str, Any] = {
            "format_ok": True,
            "attempts": len(attempts),
            "solved_attempt": len(attempts) if final_ok else None,
            "first_valid_attempt": valid[0] if valid else None,
            "wrong_checks": wrong_checks,
            "gave_up": gave_up,
            "mistake": None if final_ok else ("gave_up" if gave_up else mistakes[-1]),
            "attempt_mistakes": mistakes,
        }
        answer_key = None if gave_up else str(attempts[-1].chain[-1].result)
        return Grade(1.0 if final_ok else 0.0, final_ok, answer_key, info)


# --------------------------------------------------------------------------- search space


@functools.lru_cache(maxsize=20_000)
def canonical_chains(numbers: tuple[int, ...], ops: tuple[str, ...]) -> tuple[tuple[Step, ...], ...]:
    """Every distinct legal chain from the multiset ``numbers``, commutative operands larger first.

    ``-`` is forced larger-first (no negatives); ``+`` and ``*`` are written larger-first so ``3+7`` and
    ``7+3`` count once. Chains are distinct as strings.
    """
    pool = tuple(sorted(numbers))
    out: dict[str, tuple[Step, ...]] = {}

    def walk(pool: tuple[int, ...], prefix: tuple[Step, ...]) -> None:
        if len(pool) == 1:
            out.setdefault(format_chain(list(prefix)), prefix)
            return
        for step, nxt in _moves(pool, ops):
            if step.left < step.right:
                continue
            walk(nxt, prefix + (step,))

    walk(pool, ())
    return tuple(out[key] for key in sorted(out))


def difficulty_level(solution_share: float) -> int:
    """1 (easy) if at least 0.3 of the chains reach the target, 2 (medium) if at least 0.2, else 3 (hard)."""
    if solution_share >= 0.3:
        return 1
    if solution_share >= 0.2:
        return 2
    return 3


def problem_difficulty(numbers: tuple[int, ...], target: int, ops: tuple[str, ...]) -> dict[str, Any]:
    """Difficulty meta of a problem (see the module docstring); ``solutions`` 0 means unsolvable."""
    return dict(_difficulty(tuple(sorted(numbers)), target, tuple(ops)))


@functools.lru_cache(maxsize=50_000)
def _difficulty(numbers: tuple[int, ...], target: int, ops: tuple[str, ...]) -> dict[str, Any]:
    chains = canonical_chains(numbers, ops)
    solutions = sum(chain[-1].result == target for chain in chains)
    first_steps = {str(chain[0]) for chain in chains}
    winning_first = {str(chain[0]) for chain in chains if chain[-1].result == target}
    share = solutions / len(chains)
    return {
        "difficulty": difficulty_level(share),
        "solution_share": round(share, 4),
        "chains": len(chains),
        "solutions": solutions,
        "random_search_attempts": round((len(chains) + 1) / (solutions + 1), 3),
        "winning_first_steps": len(winning_first),
        "first_steps": len(first_steps),
    }


# --------------------------------------------------------------------------- task


@dataclass
class CountdownSearchTask:
    """Deterministic search problems, levels drawn equally often; implements :class:`ead.tasks.base.Task`."""

    config: CountdownSearchConfig = field(default_factory=CountdownSearchConfig)
    seed: int = 0
    name: str = field(init=False, default="countdown-search")
    grader: CountdownSearchGrader = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.config, CountdownSearchConfig):
            raise TypeError(f"config must be a CountdownSearchConfig, got {type(self.config).__name__}")
        self.grader = CountdownSearchGrader()
        self._eval: list[Problem] | None = None

    @property
    def max_response_chars(self) -> int:
        """Longest well-formed response of ``max_attempts`` attempts (use it + 1 for ``max_new_tokens``)."""
        c = self.config
        top = c.max_value * c.num_count if "*" not in c.ops else c.max_value**c.num_count
        digits = len(str(top))
        chain = (c.num_count - 1) * (3 * digits + 3) - 1
        return c.max_attempts * (chain + len(CHECK_SEP) + 2 + 1)  # ';no' plus '|' or '.' per attempt

    def _universe(self) -> dict[tuple[bool, int], list[tuple[tuple[int, ...], int]]]:
        return _universe(self.config)

    def _problem(self, numbers: tuple[int, ...], target: int) -> Problem:
        prompt = f"{' '.join(map(str, numbers))}>{target}:"
        answer = {"numbers": list(numbers), "target": target, "ops": "".join(self.config.ops)}
        meta = {"variant": "search", **problem_difficulty(numbers, target, self.config.ops)}
        return Problem(uid=f"{self.name}:{prompt}", prompt=prompt, answer=answer, meta=meta)

    def _levels(self, held_out: bool) -> list[int]:
        levels = [lv for lv in DIFFICULTY_LEVELS if self._universe().get((held_out, lv))]
        if not levels:
            raise CountdownConfigError("the countdown-search config leaves no problems in the "
                                       f"{'held-out' if held_out else 'training'} split")
        return levels

    def train_batch(self, batch_index: int, num_prompts: int) -> list[Problem]:
        """Problems of training batch ``batch_index``: a level uniformly, then a problem of it; deterministic."""
        rng = random.Random(f"countdown-search-train|{self.seed}|{batch_index}")
        levels = self._levels(held_out=False)
        out = []
        for _ in range(num_prompts):
            level = rng.choice(levels)
            out.append(self._problem(*rng.choice(self._universe()[(False, level)])))
        return out

    def eval_problems(self) -> list[Problem]:
        """``eval_size`` distinct held-out problems, the levels interleaved (1, 2, 3, 1, ...), fixed by ``eval_seed``."""
        if self._eval is None:
            rng = random.Random(f"countdown-search-eval|{self.config.eval_seed}")
            pools = {lv: rng.sample(self._universe()[(True, lv)], len(self._universe()[(True, lv)]))
                     for lv in self._levels(held_out=True)}
            total = sum(len(p) for p in pools.values())
            if self.config.eval_size > total:
                raise CountdownConfigError(f"countdown.eval_size {self.config.eval_size} is larger than the held-out "
                                           f"split of countdown-search allows ({total} problems)")
            chosen: list[Problem] = []
            while len(chosen) < self.config.eval_size:
                for lv in sorted(pools):
                    if pools[lv] and len(chosen) < self.config.eval_size:
                        chosen.append(self._problem(*pools[lv].pop()))
            self._eval = chosen
        return list(self._eval)


@functools.lru_cache(maxsize=16)
def _universe(config: CountdownSearchConfig) -> dict[tuple[bool, int], list[tuple[tuple[int, ...], int]]]:
    """Every (numbers, target) of the config, grouped by (held out?, difficulty level)."""
    groups: dict[tuple[bool, int], list[tuple[tuple[int, ...], int]]] = {}
    for numbers in _multisets(config.min_value, config.max_value, config.num_count):
        chains = canonical_chains(numbers, config.ops)
        solutions = Counter(chain[-1].result for chain in chains)  # target -> chains reaching it
        for target in sorted(t for t in solutions if t >= config.min_target):
            level = difficulty_level(solutions[target] / len(chains))
            groups.setdefault((is_eval_identity(config, numbers, target), level), []).append((numbers, target))
    return groups


def _multisets(low: int, high: int, count: int) -> list[tuple[int, ...]]:
    """Sorted tuples of ``count`` numbers from ``low..high`` (with repeats), in lexicographic order."""
    if count == 0:
        return [()]
    return [(first, *rest) for first in range(low, high + 1) for rest in _multisets(first, high, count - 1)]


# --------------------------------------------------------------------------- warm-start traces


def search_trace(
    problem: Problem,
    config: CountdownSearchConfig,
    rng: random.Random,
    unguided_rate: float,
    slip_rate: float,
    slip: Callable[[list[Step], random.Random], list[Step]],
) -> str:
    """One supervised search response from a deliberately imperfect searcher.

    Each attempt is, with probability ``1 - unguided_rate``, a winning chain not yet tried, else any
    untried chain (which may win by chance); with ``slip_rate`` it carries one arithmetic ``slip``; its
    check is the truth about the *written* last result, flipped with ``config.trace_check_error_rate``.
    The trace stops at the first ``ok``, or gives up (``.``) when the untried chains or ``max_attempts``
    run out, or, for a ``config.trace_give_up_rate`` share of traces, after a uniform 1..max_attempts.
    """
    numbers = tuple(problem.answer["numbers"])
    target = int(problem.answer["target"])
    untried = list(canonical_chains(numbers, config.ops))
    limit = config.max_attempts
    if rng.random() < config.trace_give_up_rate:
        limit = rng.randint(1, config.max_attempts)
    attempts: list[tuple[list[Step], str]] = []
    while untried and len(attempts) < limit:
        winners = [c for c in untried if c[-1].result == target]
        chain = rng.choice(winners) if winners and rng.random() >= unguided_rate else rng.choice(untried)
        untried.remove(chain)
        written = slip(list(chain), rng) if rng.random() < slip_rate else list(chain)
        says_ok = written[-1].result == target
        if rng.random() < config.trace_check_error_rate:
            says_ok = not says_ok
        attempts.append((written, CHECK_OK if says_ok else CHECK_NO))
        if says_ok:
            return format_search(attempts, gave_up=False)
    return format_search(attempts, gave_up=True)
