"""Countdown task: grader on hand-worked chains, generator properties, determinism, split."""

from __future__ import annotations

import dataclasses
import itertools
import pickle
import random

import pytest

from ead.tasks.base import Problem, Task
from ead.tasks.countdown import (
    PRESETS,
    CountdownConfig,
    CountdownConfigError,
    CountdownGrader,
    CountdownTask,
    Step,
    format_chain,
    is_eval_identity,
    parse_chain,
)


def problem(numbers, target, ops="+-"):
    return Problem(uid="t", prompt="", answer={"numbers": list(numbers), "target": target, "ops": ops})


P = problem([3, 7, 9], 5)
GRADE = CountdownGrader()


# --------------------------------------------------------------------------- grader


@pytest.mark.parametrize("chain", ["7-3=4,9-4=5", "9-7=2,3+2=5", "3+9=12,12-7=5", "9+3=12,12-7=5", " 7-3=4,9-4=5\n"])
def test_correct_chains(chain):
    g = GRADE(P, chain)
    assert g.correct and g.reward == 1.0
    assert g.answer_key == "5"
    assert g.info["mistake"] is None and g.info["format_ok"]


@pytest.mark.parametrize(
    "chain, error, key",
    [
        ("7-3=4,9-4=6", "arithmetic", "6"),  # 9-4 is 5
        ("7-3=5,9-5=4", "arithmetic", "4"),  # first step wrong
        ("3-7=4,9-4=5", "arithmetic", "5"),  # would be negative
        ("9-7=2,7-2=5", "unavailable", "5"),  # 7 used twice
        ("8-3=5,9-5=4", "unavailable", "4"),  # 8 is not given
        ("7-3=4,4+1=5", "unavailable", "5"),  # 1 is not given
        ("7+3=10,10+9=19", "wrong_target", "19"),  # valid chain, wrong value
        ("7-3=4", "unused", "4"),  # 9 never used
        ("7*3=21,21-9=12", "operator", "12"),  # * not allowed here
    ],
)
def test_wrong_chains(chain, error, key):
    g = GRADE(P, chain)
    assert not g.correct and g.reward == 0.0
    assert g.info["mistake"] == error
    assert g.info["format_ok"]
    assert g.answer_key == key


@pytest.mark.parametrize(
    "text, error",
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("hello", "syntax"),
        ("7 - 3 = 4, 9 - 4 = 5", "syntax"),  # no spaces inside
        ("7-3=4,9-4=5 done", "syntax"),  # trailing text
        ("7-3=4,,9-4=5", "syntax"),
        ("7-3=4,9-4=5,", "syntax"),
        ("07-3=4,9-4=5", "syntax"),  # leading zero
        ("7-3=4,9-4=-5", "syntax"),  # no negative numbers
        ("__import__('os')", "syntax"),
        ("7-3", "syntax"),
        ("=5", "syntax"),
    ],
)
def test_unparseable(text, error):
    g = GRADE(P, text)
    assert (g.reward, g.correct, g.answer_key) == (0.0, False, None)
    assert g.info["mistake"] == error and not g.info["format_ok"]


def test_repeated_numbers_must_each_be_used():
    p = problem([2, 2, 7], 11)
    assert GRADE(p, "2+2=4,7+4=11").correct
    assert GRADE(p, "2+7=9,9+2=11").correct
    assert GRADE(p, "2+2=4,4+7=11").correct
    assert GRADE(p, "2+2=4,2+7=9").info["mistake"] == "unavailable"  # a third 2


def test_format_reward_is_opt_in():
    g = CountdownGrader(format_reward=0.1)
    assert g(P, "7+3=10,10+9=19").reward == 0.1
    assert g(P, "garbage").reward == 0.0
    assert g(P, "7-3=4,9-4=5").reward == 1.0


def test_grader_is_picklable_and_pure():
    task = CountdownTask()
    g = pickle.loads(pickle.dumps(task.grader))
    assert g == task.grader
    assert g(P, "7-3=4,9-4=5") == GRADE(P, "7-3=4,9-4=5")


def test_parse_and_format_round_trip():
    steps = [Step(7, "-", 3, 4), Step(9, "-", 4, 5)]
    assert format_chain(steps) == "7-3=4,9-4=5"
    assert parse_chain("7-3=4,9-4=5") == steps


# --------------------------------------------------------------------------- generator


def brute_force_chains(numbers, ops):
    """Every legal chain (as text) with its final value; written independently of the generator."""
    out = []

    def rec(pool, prefix):
        if len(pool) == 1:
            out.append((",".join(prefix), pool[0]))
            return
        for i, j in itertools.permutations(range(len(pool)), 2):
            x, y = pool[i], pool[j]
            rest = [v for k, v in enumerate(pool) if k not in (i, j)]
            for op in ops:
                z = x + y if op == "+" else x - y
                if z >= 0:
                    rec(rest + [z], prefix + [f"{x}{op}{y}={z}"])

    rec(list(numbers), [])
    return out


def test_generated_problems_have_several_answers_and_the_grader_agrees():
    task = CountdownTask(seed=3)
    for p in task.train_batch(0, 25) + task.eval_problems()[:15]:
        numbers, target = p.answer["numbers"], p.answer["target"]
        assert p.prompt == " ".join(map(str, numbers)) + f">{target}:"
        chains = brute_force_chains(numbers, "+-")
        winners = [c for c, v in chains if v == target]
        first_pairs = {tuple(sorted(map(int, c.split(",")[0].split("=")[0].replace("-", "+").split("+")))) for c in winners}
        assert len(first_pairs) >= 2, p.prompt  # several answers, differing in the first step
        for chain, value in chains:
            assert GRADE(p, chain).correct == (value == target), (p.prompt, chain)


def test_reference_and_decoy_chains():
    task = CountdownTask(seed=0)
    rng = random.Random(0)
    for p in task.train_batch(0, 20):
        ref = format_chain(task.reference_chain(p, rng))
        assert task.grader(p, ref).correct
        assert len(ref) <= task.max_response_chars
        decoy = format_chain(task.decoy_chain(p, rng))
        assert task.grader(p, decoy).info["mistake"] in (None, "wrong_target")  # arithmetic always right


def test_train_batch_is_deterministic_and_leaves_global_rng_alone():
    random.seed(123)
    expected_next = random.random()
    random.seed(123)
    a = CountdownTask(seed=7).train_batch(5, 16)
    assert random.random() == expected_next
    assert a == CountdownTask(seed=7).train_batch(5, 16)
    assert a != CountdownTask(seed=7).train_batch(6, 16)
    assert a != CountdownTask(seed=8).train_batch(5, 16)
    assert a[:4] == CountdownTask(seed=7).train_batch(5, 4)


def test_train_and_eval_are_disjoint():
    cfg = CountdownConfig()
    task = CountdownTask(cfg, seed=1)
    evals = task.eval_problems()
    assert len(evals) == cfg.eval_size and len({p.uid for p in evals}) == cfg.eval_size
    eval_uids = {p.uid for p in evals}
    for b in range(100):
        for p in task.train_batch(b, 32):
            assert p.uid not in eval_uids
            assert not is_eval_identity(cfg, tuple(p.answer["numbers"]), p.answer["target"])
    # the held-out list does not depend on the training seed
    assert [p.uid for p in CountdownTask(cfg, seed=99).eval_problems()] == [p.uid for p in evals]


def test_implements_task_protocol():
    task = CountdownTask()
    assert isinstance(task, Task)
    assert task.name == "countdown"


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"num_count": 1}, "num_count"),
        ({"num_count": True}, "num_count"),
        ({"min_value": 5, "max_value": 4}, "max_value"),
        ({"ops": ("/",)}, "ops"),
        ({"ops": ["+"]}, "ops"),
        ({"eval_fraction": 0.0}, "eval_fraction"),
        ({"eval_size": 0}, "eval_size"),
        ({"variant": "hard"}, "variant"),
        ({"format_reward": 1.0}, "format_reward"),
        ({"variant": "fork", "ops": ("+",)}, "ops"),
        ({"variant": "fork", "num_count": 4, "max_value": 4}, "max_value"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(CountdownConfigError, match=f"countdown.{field}"):
        CountdownConfig(**kwargs)


def test_config_dict_round_trip():
    cfg = PRESETS["countdown-fork"]
    assert CountdownConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(CountdownConfigError, match="nope"):
        CountdownConfig.from_dict({"nope": 1})


def test_too_large_eval_size_is_reported():
    cfg = CountdownConfig(max_value=3, eval_size=500)
    with pytest.raises(CountdownConfigError, match="eval_size"):
        CountdownTask(cfg).eval_problems()


# --------------------------------------------------------------------------- fork variant


def test_fork_variant_has_one_right_first_step():
    task = CountdownTask(PRESETS["countdown-fork"], seed=0)
    assert task.name == "countdown-fork"
    rng = random.Random(0)
    for p in task.train_batch(0, 30):
        numbers, target = p.answer["numbers"], p.answer["target"]
        lo, hi = numbers[0], numbers[-1]
        assert len(set(numbers)) == len(numbers) and target == hi - lo + sum(numbers[1:-1])
        right = format_chain(task.reference_chain(p, rng))
        wrong = format_chain(task.decoy_chain(p, rng))
        assert right.startswith(f"{hi}-{lo}=") and task.grader(p, right).correct
        assert wrong.startswith(f"{lo}+") and task.grader(p, wrong).info["mistake"] == "wrong_target"
        assert right[0] != wrong[0]  # the first character already commits to a branch


def test_fork_eval_split_is_disjoint_too():
    cfg = dataclasses.replace(PRESETS["countdown-fork"], eval_size=50)
    task = CountdownTask(cfg, seed=0)
    eval_uids = {p.uid for p in task.eval_problems()}
    assert len(eval_uids) == 50
    assert not eval_uids & {p.uid for b in range(20) for p in task.train_batch(b, 32)}
