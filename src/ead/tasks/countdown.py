"""Countdown: the built-in, fully offline, verifiable arithmetic task.

A problem is a few numbers and a target, written as a short plain-text prompt
for the character tokenizer::

    3 7 9>5:

A response is a chain of equations, each combining two numbers that are still
available into a new one::

    7-3=4,9-4=5

Rules (checked by :class:`CountdownGrader` with a hand-written parser; nothing
is ever ``eval``-ed):

* the available pool starts as the prompt's numbers (a multiset); each step
  ``x op y=z`` removes ``x`` and ``y`` from the pool and adds ``z``;
* ``op`` is one of the problem's operators; ``z`` must be the exact result;
  numbers are non-negative integers without leading zeros, so a subtraction
  may not go below zero (there is no way to write a negative number);
* after the last step the pool must hold exactly one number (every given number
  was used exactly once) and it must equal the target.

Every generated problem has at least ``min_first_pairs`` different first pairs
that lead to a solution, so there are several valid answers, and the first
characters of a response commit to one of them: the exploration decision the
EAD schedule samples hot.

The ``fork`` variant isolates that mechanism. Its numbers are distinct and its
target is ``max - min + (the rest)``, so the right first step is ``max-min``
and everything after it is a forced chain of additions; the tempting wrong
branch (``min+...``, summing in prompt order) never reaches the target. The
first character already says which branch was taken (the generator rejects
problems where ``min`` and ``max`` start with the same digit). Its warm-start
data (see :mod:`ead.modeling.warmstart`) mostly takes the wrong branch, so the
base policy under-samples the right one, and the long exact arithmetic tail
punishes sampling hot late in the response. See ``docs/builtin_task.md``.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ead.tasks.base import Grade, Problem

__all__ = [
    "CountdownConfig",
    "CountdownConfigError",
    "CountdownGrader",
    "CountdownTask",
    "Step",
    "PRESETS",
    "parse_chain",
    "format_chain",
    "reachable_targets",
    "first_pairs_by_target",
    "is_eval_identity",
    "apply_op",
    "chain_mistake",
]

OPS: tuple[str, ...] = ("+", "-", "*")
"""Operators the task knows. ``*`` exists but is much harder for a tiny model."""


class CountdownConfigError(ValueError):
    """A Countdown config field is out of range; the message names the field."""


def is_integer(value: Any) -> bool:
    """A real int (``True`` is an int to Python, not to a config)."""
    return isinstance(value, int) and not isinstance(value, bool)


def field_checker(config: Any):
    """``need(ok, name, what)`` raising :class:`CountdownConfigError` that names ``countdown.<name>`` and its value."""

    def need(ok: bool, name: str, what: str) -> None:
        if not ok:
            raise CountdownConfigError(f"countdown.{name} {what}, got {getattr(config, name)!r}")

    return need


@dataclass(frozen=True)
class CountdownConfig:
    """Difficulty knobs of the Countdown task (frozen: it keys the warm-start cache)."""

    variant: Literal["standard", "fork"] = "standard"
    """``standard``: several solutions, any first pair; ``fork``: one right first step, then a forced tail."""
    num_count: int = 3
    """How many numbers the prompt gives (the chain has ``num_count - 1`` steps)."""
    min_value: int = 1
    """Smallest number that can appear in a prompt."""
    max_value: int = 9
    """Largest number that can appear in a prompt (9: one-digit inputs, which a ~1M model learns in minutes)."""
    ops: tuple[str, ...] = ("+", "-")
    """Operators allowed in a chain (a subset of ``+ - *``)."""
    min_first_pairs: int = 2
    """Standard variant: a problem needs at least this many distinct first pairs that reach the target."""
    min_target: int = 1
    """Smallest target (0 is excluded by default: ``a-a`` tricks are not interesting)."""
    eval_fraction: float = 0.2
    """Share of all problem identities reserved for evaluation (hash split; train never sees them)."""
    eval_size: int = 100
    """Number of held-out problems returned by :meth:`CountdownTask.eval_problems`."""
    eval_seed: int = 0
    """Seed of the held-out list; independent of the training seed so every run evaluates alike."""
    format_reward: float = 0.0
    """Reward for a well-formed chain that is wrong (0 = plain 1/0 reward, the default)."""

    def __post_init__(self) -> None:
        need, is_int = field_checker(self), is_integer
        need(self.variant in ("standard", "fork"), "variant", "must be 'standard' or 'fork'")
        need(is_int(self.num_count) and 2 <= self.num_count <= 6, "num_count", "must be an integer in [2, 6]")
        need(is_int(self.min_value) and self.min_value >= 0, "min_value", "must be an integer >= 0")
        need(is_int(self.max_value) and self.max_value >= self.min_value, "max_value", "must be an integer >= min_value")
        need(self.max_value <= 999, "max_value", "must be <= 999")
        need(
            isinstance(self.ops, tuple) and len(self.ops) > 0 and all(op in OPS for op in self.ops)
            and len(set(self.ops)) == len(self.ops),
            "ops",
            f"must be a non-empty tuple of distinct operators from {OPS}",
        )
        need(is_int(self.min_first_pairs) and self.min_first_pairs >= 1, "min_first_pairs", "must be an integer >= 1")
        need(is_int(self.min_target) and self.min_target >= 0, "min_target", "must be an integer >= 0")
        need(0.0 < self.eval_fraction < 1.0, "eval_fraction", "must be in (0, 1)")
        need(is_int(self.eval_size) and self.eval_size >= 1, "eval_size", "must be an integer >= 1")
        need(is_int(self.eval_seed), "eval_seed", "must be an integer")
        need(0.0 <= self.format_reward < 1.0, "format_reward", "must be in [0, 1)")
        if self.variant == "fork":
            need("+" in self.ops and "-" in self.ops, "ops", "must contain '+' and '-' for the fork variant")
            need(self.num_count >= 3, "num_count", "must be >= 3 for the fork variant")
            need(self.min_value >= 1, "min_value", "must be >= 1 for the fork variant")
            need(
                self.max_value - self.min_value + 1 >= self.num_count + 1,
                "max_value",
                "must leave room for num_count distinct numbers (fork variant)",
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (``ops`` becomes a list)."""
        d = asdict(self)
        d["ops"] = list(self.ops)
        return d

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> CountdownConfig:
        """Inverse of :meth:`to_dict`, rejecting unknown fields by name."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(spec) - known)
        if unknown:
            raise CountdownConfigError(f"unknown countdown field(s) {unknown}; allowed: {sorted(known)}")
        spec = dict(spec)
        if "ops" in spec:
            spec["ops"] = tuple(spec["ops"])
        return cls(**spec)


PRESETS: dict[str, CountdownConfig] = {
    "countdown": CountdownConfig(),
    "countdown-fork": CountdownConfig(variant="fork", num_count=4, min_value=1, max_value=12, eval_size=60),
}
"""Named configs: the default task of ``ead train`` and the fork variant."""


def preset_config(preset: str, overrides: dict[str, Any] | None = None) -> CountdownConfig:
    """``PRESETS[preset]`` with ``overrides`` (CountdownConfig fields) applied; raises CountdownConfigError."""
    if preset not in PRESETS:
        raise CountdownConfigError(f"countdown preset {preset!r} is not one of {sorted(PRESETS)}")
    return CountdownConfig.from_dict({**PRESETS[preset].to_dict(), **(overrides or {})})


# The demo recipe's EAD: the paper's parameters with the unit factor k rescaled to the task's
# response lengths. Countdown chains are ~12 tokens where the paper's responses are hundreds to
# thousands; k = 0.4 puts D_0 at 10 tokens so tau drops below 1 around t = 2 and reaches tau_min
# near t = 7 at step 0, the same *fractions* of a response as k = 20 on ~700-token responses.
# c scales to 0 (10 tokens of ~700 is under one token of ~12). See docs/schedules.md.
DEMO_EAD_SCHEDULE: dict[str, Any] = {
    "name": "ead", "tau_max": 1.2, "tau_min": 0.1, "warmup_tokens": 0,
    "d0": 25.0, "alpha": 5.0, "d_max": 40000.0, "unit": 0.4,
}
"""EAD scaled to Countdown's response lengths: ``ead train``'s default behaviour schedule, ``ead eval --compare``'s EAD."""


# --------------------------------------------------------------------------- chains


@dataclass(frozen=True)
class Step:
    """One equation ``left op right=result`` as written (``result`` is what the response claims)."""

    left: int
    op: str
    right: int
    result: int

    def __str__(self) -> str:
        return f"{self.left}{self.op}{self.right}={self.result}"


def apply_op(left: int, op: str, right: int) -> int:
    """Exact integer result of ``left op right`` (may be negative for ``-``)."""
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    raise ValueError(f"unknown operator {op!r}")


def format_chain(steps: list[Step]) -> str:
    """``[Step(7,'-',3,4), Step(9,'-',4,5)]`` -> ``'7-3=4,9-4=5'``."""
    return ",".join(str(s) for s in steps)


class ChainSyntaxError(ValueError):
    """The response is not a chain ``a op b=c(,a op b=c)*``."""


def _read_number(text: str, pos: int) -> tuple[int, int]:
    """Parse a non-negative integer without leading zeros at ``pos``; return (value, new_pos)."""
    end = pos
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    if end == pos:
        raise ChainSyntaxError(f"expected a number at position {pos}")
    digits = text[pos:end]
    if len(digits) > 1 and digits[0] == "0":
        raise ChainSyntaxError(f"leading zero at position {pos}")
    if len(digits) > 6:
        raise ChainSyntaxError(f"number too long at position {pos}")
    return int(digits), end


def parse_chain(text: str) -> list[Step]:
    """Strictly parse ``'7-3=4,9-4=5'`` into steps; surrounding whitespace is ignored, nothing else is.

    Raises :class:`ChainSyntaxError` on anything else (no spaces inside, no
    trailing text, no empty steps, no unknown symbols).
    """
    text = text.strip()
    if not text:
        raise ChainSyntaxError("empty response")
    steps: list[Step] = []
    pos = 0
    while True:
        left, pos = _read_number(text, pos)
        if pos >= len(text) or text[pos] not in OPS:
            raise ChainSyntaxError(f"expected an operator at position {pos}")
        op = text[pos]
        right, pos = _read_number(text, pos + 1)
        if pos >= len(text) or text[pos] != "=":
            raise ChainSyntaxError(f"expected '=' at position {pos}")
        result, pos = _read_number(text, pos + 1)
        steps.append(Step(left, op, right, result))
        if pos == len(text):
            return steps
        if text[pos] != ",":
            raise ChainSyntaxError(f"expected ',' or end at position {pos}")
        pos += 1


# --------------------------------------------------------------------------- grader


def chain_mistake(steps: list[Step], numbers: list[int], target: int, ops: str) -> tuple[str | None, int]:
    """The first rule a parsed chain breaks (None if it is a valid chain reaching ``target``), and how many
    steps were fine before it: ``operator``, ``unavailable``, ``arithmetic``, ``unused``, ``wrong_target``."""
    pool = Counter(numbers)
    for i, step in enumerate(steps):
        if step.op not in ops:
            return "operator", i
        pool[step.left] -= 1
        pool[step.right] -= 1
        if pool[step.left] < 0 or pool[step.right] < 0:
            return "unavailable", i
        if apply_op(step.left, step.op, step.right) != step.result:
            return "arithmetic", i
        pool[step.result] += 1
    if sum(pool.values()) != 1:
        return "unused", len(steps)
    if steps[-1].result != target:
        return "wrong_target", len(steps)
    return None, len(steps)


@dataclass(frozen=True)
class CountdownGrader:
    """Pure, picklable grader: reward 1.0 for a valid chain reaching the target, else ``format_reward`` or 0.

    ``answer_key`` is the final value the response *claims* (the last step's
    right-hand side), or None if the text does not parse, so majority voting
    groups responses by claimed result. ``info['error']`` names the first rule
    broken: ``empty``, ``syntax``, ``operator``, ``unavailable`` (a number not
    in the pool, e.g. reused), ``arithmetic``, ``unused`` (numbers left over),
    ``wrong_target``, or None when correct.
    """

    format_reward: float = 0.0

    def __call__(self, problem: Problem, response: str) -> Grade:
        numbers: list[int] = list(problem.answer["numbers"])
        target: int = int(problem.answer["target"])
        ops: str = problem.answer.get("ops", "+-")
        try:
            steps = parse_chain(response)
        except ChainSyntaxError as err:
            kind = "empty" if not response.strip() else "syntax"
            return Grade(0.0, False, None, {"format_ok": False, "mistake": kind, "detail": str(err), "steps": 0})

        claimed = steps[-1].result
        info: dict[str, Any] = {"format_ok": True, "mistake": None, "steps": len(steps)}
        info["mistake"], steps_ok = chain_mistake(steps, numbers, target, ops)
        if steps_ok:
            info["steps_ok"] = steps_ok
        correct = info["mistake"] is None
        reward = 1.0 if correct else self.format_reward
        return Grade(reward, correct, str(claimed), info)


# --------------------------------------------------------------------------- search


def _moves(pool: tuple[int, ...], ops: tuple[str, ...]):
    """Every legal step from a sorted pool: yields (Step, next sorted pool)."""
    for i in range(len(pool)):
        for j in range(len(pool)):
            if i == j:
                continue
            x, y = pool[i], pool[j]
            rest = [pool[k] for k in range(len(pool)) if k != i and k != j]
            for op in ops:
                z = apply_op(x, op, y)
                if z < 0:
                    continue
                yield Step(x, op, y, z), tuple(sorted(rest + [z]))


@functools.lru_cache(maxsize=200_000)
def reachable_targets(pool: tuple[int, ...], ops: tuple[str, ...]) -> frozenset[int]:
    """All final values a legal chain can reach from the sorted ``pool``."""
    if len(pool) == 1:
        return frozenset(pool)
    out: set[int] = set()
    for _, nxt in _moves(pool, ops):
        out |= reachable_targets(nxt, ops)
    return frozenset(out)


def first_pairs_by_target(numbers: tuple[int, ...], ops: tuple[str, ...]) -> dict[int, set[tuple[int, int]]]:
    """For each reachable target, the set of unordered first pairs (by value) that can reach it."""
    pool = tuple(sorted(numbers))
    by_target: dict[int, set[tuple[int, int]]] = {}
    for step, nxt in _moves(pool, ops):
        pair = (min(step.left, step.right), max(step.left, step.right))
        for t in reachable_targets(nxt, ops):
            by_target.setdefault(t, set()).add(pair)
    return by_target


def random_solution(numbers: tuple[int, ...], target: int, ops: tuple[str, ...], rng: random.Random) -> list[Step]:
    """A correct chain, choosing uniformly among the winning moves at every step (diverse first moves)."""
    pool = tuple(sorted(numbers))
    steps: list[Step] = []
    while len(pool) > 1:
        winning = [(s, nxt) for s, nxt in _moves(pool, ops) if target in reachable_targets(nxt, ops)]
        if not winning:
            raise ValueError(f"target {target} is not reachable from {numbers}")
        step, pool = rng.choice(winning)
        steps.append(step)
    return steps


def random_chain(numbers: tuple[int, ...], ops: tuple[str, ...], rng: random.Random) -> list[Step]:
    """A legal chain with correct arithmetic and random moves (usually not reaching the target)."""
    pool = tuple(sorted(numbers))
    steps: list[Step] = []
    while len(pool) > 1:
        step, pool = rng.choice(list(_moves(pool, ops)))
        steps.append(step)
    return steps


def fork_chains(numbers: tuple[int, ...]) -> tuple[list[Step], list[Step]]:
    """(right, wrong) canonical chains of a fork problem with sorted distinct ``numbers``.

    right: ``max-min``, then add the middle numbers in prompt order;
    wrong: add everything in prompt order starting from ``min``.
    """
    lo, *middle, hi = numbers
    right = [Step(hi, "-", lo, hi - lo)]
    for m in middle:
        right.append(Step(right[-1].result, "+", m, right[-1].result + m))
    wrong = [Step(lo, "+", middle[0], lo + middle[0])]
    for m in [*middle[1:], hi]:
        wrong.append(Step(wrong[-1].result, "+", m, wrong[-1].result + m))
    return right, wrong


# --------------------------------------------------------------------------- task


def _identity(config: CountdownConfig, numbers: tuple[int, ...], target: int) -> str:
    return f"{config.variant}|{''.join(config.ops)}|{' '.join(map(str, numbers))}>{target}"


def is_eval_identity(config: CountdownConfig, numbers: tuple[int, ...], target: int) -> bool:
    """Hash split of problem identities: stable across seeds, Python versions and machines."""
    digest = hashlib.sha256(_identity(config, numbers, target).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < config.eval_fraction


@dataclass
class CountdownTask:
    """Deterministic Countdown problems: ``train_batch`` from (seed, batch_index), a fixed held-out list.

    Implements :class:`ead.tasks.base.Task`.
    """

    config: CountdownConfig = field(default_factory=CountdownConfig)
    seed: int = 0
    name: str = field(init=False)
    grader: CountdownGrader = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.config, CountdownConfig):
            raise TypeError(f"config must be a CountdownConfig, got {type(self.config).__name__}")
        self.name = "countdown" if self.config.variant == "standard" else "countdown-fork"
        self.grader = CountdownGrader(format_reward=self.config.format_reward)
        self._eval: list[Problem] | None = None

    # -- generation ---------------------------------------------------------

    @property
    def max_response_chars(self) -> int:
        """Upper bound on the characters of a correct chain (use it for ``max_new_tokens``, plus 1 for eos)."""
        c = self.config
        top = c.max_value * c.num_count if "*" not in c.ops else c.max_value**c.num_count
        digits = len(str(top))
        return (c.num_count - 1) * (3 * digits + 3) - 1

    def _draw(self, rng: random.Random) -> tuple[tuple[int, ...], int, dict[str, Any]] | None:
        """One candidate (sorted numbers, target, meta), or None to retry."""
        c = self.config
        if c.variant == "fork":
            numbers = tuple(sorted(rng.sample(range(c.min_value, c.max_value + 1), c.num_count)))
            lo, hi = numbers[0], numbers[-1]
            if str(lo)[0] == str(hi)[0]:
                return None  # the first character must already name the branch
            target = hi - lo + sum(numbers[1:-1])
            if target < c.min_target:
                return None
            return numbers, target, {"right_first": hi, "wrong_first": lo}
        numbers = tuple(sorted(rng.randint(c.min_value, c.max_value) for _ in range(c.num_count)))
        by_target = first_pairs_by_target(numbers, c.ops)
        targets = sorted(t for t, pairs in by_target.items() if t >= c.min_target and len(pairs) >= c.min_first_pairs)
        if not targets:
            return None
        target = rng.choice(targets)
        return numbers, target, {"first_pairs": len(by_target[target])}

    def _problem(self, numbers: tuple[int, ...], target: int, meta: dict[str, Any]) -> Problem:
        prompt = f"{' '.join(map(str, numbers))}>{target}:"
        answer = {"numbers": list(numbers), "target": target, "ops": "".join(self.config.ops)}
        return Problem(uid=f"{self.name}:{prompt}", prompt=prompt, answer=answer, meta={"variant": self.config.variant, **meta})

    def _sample(self, rng: random.Random, want_eval: bool, what: str) -> Problem:
        for _ in range(10_000):
            drawn = self._draw(rng)
            if drawn is not None and is_eval_identity(self.config, drawn[0], drawn[1]) == want_eval:
                return self._problem(*drawn)
        raise CountdownConfigError(f"could not generate a {what} problem: the countdown config leaves too few problems")

    def train_batch(self, batch_index: int, num_prompts: int) -> list[Problem]:
        """Problems for training batch ``batch_index``; the same (seed, batch_index) always gives the same list."""
        rng = random.Random(f"countdown-train|{self.seed}|{batch_index}")
        return [self._sample(rng, want_eval=False, what="training") for _ in range(num_prompts)]

    def eval_problems(self) -> list[Problem]:
        """``eval_size`` distinct held-out problems, fixed by ``config.eval_seed`` (not by the training seed)."""
        if self._eval is None:
            rng = random.Random(f"countdown-eval|{self.config.eval_seed}")
            seen: dict[str, Problem] = {}
            stalled = 0  # draws since the last new held-out problem
            while len(seen) < self.config.eval_size:
                drawn = self._draw(rng)
                if drawn is not None and is_eval_identity(self.config, drawn[0], drawn[1]):
                    problem = self._problem(*drawn)
                    if problem.uid not in seen:
                        seen[problem.uid] = problem
                        stalled = 0
                        continue
                stalled += 1
                if stalled > 20_000:
                    raise CountdownConfigError(
                        f"countdown.eval_size {self.config.eval_size} is larger than the held-out split allows "
                        f"(found {len(seen)} distinct problems)"
                    )
            self._eval = list(seen.values())
        return list(self._eval)

    # -- supervised traces (used by the warm start) -------------------------

    def reference_chain(self, problem: Problem, rng: random.Random) -> list[Step]:
        """A correct chain: a random winning path (standard) or the canonical right branch (fork)."""
        numbers = tuple(problem.answer["numbers"])
        if self.config.variant == "fork":
            return fork_chains(numbers)[0]
        return random_solution(numbers, int(problem.answer["target"]), self.config.ops, rng)

    def decoy_chain(self, problem: Problem, rng: random.Random) -> list[Step]:
        """A plausible wrong chain with correct arithmetic: the common branch (fork) or random moves (standard)."""
        numbers = tuple(problem.answer["numbers"])
        if self.config.variant == "fork":
            return fork_chains(numbers)[1]
        return random_chain(numbers, self.config.ops, rng)
