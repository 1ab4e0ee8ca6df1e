"""Countdown with search: generator, difficulty (hand-worked), grader on hand-written traces, trace format."""

import pickle
import random
from collections import Counter

import pytest
import torch

from ead.config import ConfigError
from ead.tasks.base import Problem
from ead.tasks.countdown import CountdownConfigError, Step
from ead.tasks.countdown_search import (
    CountdownSearchConfig,
    CountdownSearchTask,
    SearchSyntaxError,
    canonical_chains,
    format_search,
    parse_search,
    problem_difficulty,
    search_trace,
)
from ead.training.length_metrics import length_by_difficulty, temperature_by_position


def problem(numbers, target):
    return Problem(uid="t", prompt="", answer={"numbers": list(numbers), "target": target, "ops": "+-"})


GRADER = CountdownSearchTask().grader
P = problem((3, 7, 9), 5)  # solutions include 7-3=4,9-4=5 and 9-7=2,3+2=5 and 9+3=12,12-7=5


def no_slip(steps, rng):
    raise AssertionError("slip_rate 0 must never slip")


# --------------------------------------------------------------------------- difficulty, by hand


def test_difficulty_two_numbers_by_hand():
    # 3 5>8: the chains are 5+3=8 and 5-3=2; one of two wins: share 1/2 (easy), (2+1)/(1+1) random attempts
    meta = problem_difficulty((3, 5), 8, ("+", "-"))
    assert (meta["chains"], meta["solutions"], meta["difficulty"]) == (2, 1, 1)
    assert meta["random_search_attempts"] == 1.5
    assert (meta["winning_first_steps"], meta["first_steps"]) == (1, 2)


def test_difficulty_three_numbers_by_hand():
    # 1 2 4: first steps 2+1 2-1 4+1 4-1 4+2 4-2, each followed by + or -: 12 chains. Reaching 7:
    # 2+1=3,4+3=7 / 4+1=5,5+2=7 / 4+2=6,6+1=7: 3 of 12 = 0.25 (medium), first steps 3 of 6.
    meta = problem_difficulty((4, 1, 2), 7, ("+", "-"))
    assert (meta["chains"], meta["solutions"], meta["difficulty"]) == (12, 3, 2)
    assert (meta["winning_first_steps"], meta["first_steps"]) == (3, 6)
    assert meta["random_search_attempts"] == pytest.approx(13 / 4)


def test_difficulty_four_numbers_by_hand():
    # 1 2 4 8 (no two partial results collide): 12 first steps x 6 x 2 = 144 chains. 15 = 1+2+4+8 needs
    # additions only: 6 first pairs x 3 x 1 = 18 chains, share 1/8 (hard).
    meta = problem_difficulty((1, 2, 4, 8), 15, ("+", "-"))
    assert (meta["chains"], meta["solutions"], meta["difficulty"]) == (144, 18, 3)
    assert meta["random_search_attempts"] == pytest.approx(145 / 19, abs=1e-3)


def test_canonical_chains_match_brute_force():
    def brute(pool):  # independent enumeration: every ordered pair of positions, both operators
        if len(pool) == 1:
            return {""}
        out = set()
        for i in range(len(pool)):
            for j in range(len(pool)):
                if i == j:
                    continue
                a, b = pool[i], pool[j]
                rest = [pool[k] for k in range(len(pool)) if k not in (i, j)]
                for op, value in (("+", a + b), ("-", a - b)):
                    if a < b or value < 0:
                        continue
                    for tail in brute(rest + [value]):
                        out.add(f"{a}{op}{b}={value}" + ("," + tail if tail else ""))
        return out

    for numbers in [(1, 1, 2, 5), (2, 3, 3), (6, 6, 6, 6), (1, 4, 5, 7)]:
        chains = {",".join(map(str, c)) for c in canonical_chains(numbers, ("+", "-"))}
        assert chains == brute(list(numbers)), numbers


# --------------------------------------------------------------------------- generator


def test_generator_is_deterministic_and_split():
    a, b, c = CountdownSearchTask(seed=3), CountdownSearchTask(seed=3), CountdownSearchTask(seed=4)
    assert [p.uid for p in a.train_batch(5, 20)] == [p.uid for p in b.train_batch(5, 20)]
    assert [p.uid for p in a.train_batch(5, 20)] != [p.uid for p in c.train_batch(5, 20)]
    held_out = {p.uid for p in a.eval_problems()}
    assert len(held_out) == 60
    assert not held_out & {p.uid for i in range(30) for p in a.train_batch(i, 32)}
    assert [p.uid for p in a.eval_problems()] == [p.uid for p in c.eval_problems()]  # not the training seed


def test_levels_are_balanced_and_meta_is_right():
    task = CountdownSearchTask()
    assert Counter(p.meta["difficulty"] for p in task.eval_problems()) == {1: 20, 2: 20, 3: 20}
    counts = Counter(p.meta["difficulty"] for i in range(20) for p in task.train_batch(i, 30))
    assert all(abs(counts[level] / 600 - 1 / 3) < 0.07 for level in (1, 2, 3)), counts
    for p in task.train_batch(0, 10):
        numbers, target = tuple(p.answer["numbers"]), p.answer["target"]
        assert p.prompt == f"{' '.join(map(str, numbers))}>{target}:"
        assert p.meta["solutions"] >= 1 and p.meta == {"variant": "search", **problem_difficulty(numbers, target, ("+", "-"))}


def test_max_response_chars_bounds_the_longest_trace():
    task = CountdownSearchTask()
    assert task.max_response_chars == 8 * 30  # values up to 28: 26-char chain + ';no' + '|' per attempt
    rng = random.Random(0)
    longest = max(len(search_trace(p, task.config, rng, 1.0, 0.0, no_slip)) for p in task.train_batch(0, 300))
    assert 150 < longest <= task.max_response_chars


def test_config_errors_name_the_field():
    with pytest.raises(CountdownConfigError, match="num_count"):
        CountdownSearchConfig(num_count=7)
    with pytest.raises(CountdownConfigError, match="unknown countdown field"):
        CountdownSearchConfig.from_dict({"variant": "search", "min_first_pairs": 2})
    assert CountdownSearchConfig.from_dict(CountdownSearchConfig().to_dict()) == CountdownSearchConfig()


# --------------------------------------------------------------------------- grader on hand-written traces


def test_success_on_attempt_two():
    g = GRADER(P, "7+3=10,10-9=1;no|9-7=2,3+2=5;ok")
    assert (g.reward, g.correct, g.answer_key) == (1.0, True, "5")
    assert g.info["attempts"] == 2 and g.info["solved_attempt"] == 2 and g.info["first_valid_attempt"] == 2
    assert g.info["wrong_checks"] == 0 and g.info["mistake"] is None and g.info["attempt_mistakes"] == ["wrong_target", None]


@pytest.mark.parametrize("text", [
    "7+3=10,10-9=1;no/9-7=2,3+2=5;ok",   # unknown marker
    "7+3=10,10-9=1;no",                   # stops after a failed check
    "9-7=2,3+2=5;ok|7+3=10,10-9=1;no.",   # goes on after ok
    "9-7=2,3+2=5;ok.",                    # gives up after ok
    "7+3=10,10-9=1;maybe.",               # check is not ok/no
    "7+3=10,10-9=1|9-7=2,3+2=5;ok",       # attempt without a check
    "7+3=10,10-9=1;no||9-7=2,3+2=5;ok",   # empty attempt
    "9-7=2, 3+2=5;ok",                    # whitespace inside
    "9-7=2,3+2=5;ok|",                    # truncated
])
def test_malformed_is_a_format_error(text):
    g = GRADER(P, text)
    assert g.reward == 0.0 and not g.correct and g.info["format_ok"] is False and g.info["mistake"] == "syntax"
    with pytest.raises(SearchSyntaxError):
        parse_search(text)


def test_empty_response():
    assert GRADER(P, "  ").info["mistake"] == "empty"


def test_wrong_check_ok_on_a_wrong_chain():
    g = GRADER(P, "7+3=10,10-9=1;ok")  # claims success, value is 1
    assert g.reward == 0.0 and g.info["mistake"] == "wrong_target" and g.info["wrong_checks"] == 1


def test_wrong_check_no_on_a_right_chain_throws_it_away():
    # the final attempt decides: a valid solution checked 'no' and followed by a give-up earns nothing
    g = GRADER(P, "9-7=2,3+2=5;no|7+3=10,10-9=1;no.")
    assert g.reward == 0.0 and g.info["mistake"] == "gave_up" and g.info["gave_up"] is True
    assert g.info["first_valid_attempt"] == 1 and g.info["wrong_checks"] == 1 and g.info["solved_attempt"] is None


def test_give_up():
    g = GRADER(P, "7+3=10,10-9=1;no|9+7=16,16-3=13;no.")
    assert (g.reward, g.answer_key, g.info["attempts"], g.info["wrong_checks"]) == (0.0, None, 2, 0)
    assert g.info["gave_up"] is True and g.info["mistake"] == "gave_up"


def test_number_used_twice():
    g = GRADER(P, "9-7=2,7-2=5;ok")  # 7 is gone after 9-7
    assert g.reward == 0.0 and g.info["mistake"] == "unavailable" and g.info["wrong_checks"] == 0
    g = GRADER(P, "9-3=6,6-3=3;no|7-3=4,9-4=5;ok")  # an earlier bad attempt does not matter
    assert g.reward == 1.0 and g.info["attempt_mistakes"] == ["unavailable", None]


def test_late_slip_invalidates_the_attempt():
    g = GRADER(P, "7+3=10,10-9=5;ok")  # the check agrees with the written value; the arithmetic is wrong
    assert g.reward == 0.0 and g.info["mistake"] == "arithmetic" and g.info["wrong_checks"] == 0


def test_grader_pickles():
    assert pickle.loads(pickle.dumps(GRADER))(P, "7-3=4,9-4=5;ok").correct


# --------------------------------------------------------------------------- trace format


def test_format_and_parse_round_trip():
    attempts = [([Step(7, "+", 3, 10), Step(10, "-", 9, 1)], "no"), ([Step(9, "-", 7, 2), Step(3, "+", 2, 5)], "ok")]
    text = format_search(attempts, gave_up=False)
    assert text == "7+3=10,10-9=1;no|9-7=2,3+2=5;ok"
    parsed, gave_up = parse_search(text)
    assert not gave_up and [(list(a.chain), a.check) for a in parsed] == attempts
    assert parse_search(format_search(attempts[:1], gave_up=True))[1] is True


def test_clean_traces_solve_and_searches_lengthen_with_difficulty():
    task = CountdownSearchTask(CountdownSearchConfig(trace_give_up_rate=0.0, trace_check_error_rate=0.0))
    rng = random.Random(1)
    attempts = {1: [], 3: []}
    for p in task.train_batch(0, 400):
        text = search_trace(p, task.config, rng, 1.0, 0.0, no_slip)  # blind search, no mistakes
        g = task.grader(p, text)
        assert g.correct or g.info["attempts"] == task.config.max_attempts, text
        if p.meta["difficulty"] in attempts:
            attempts[p.meta["difficulty"]].append(g.info["attempts"])
    mean = {d: sum(v) / len(v) for d, v in attempts.items()}
    assert mean[3] > mean[1] + 1.5, mean  # hard: ~1/8 of chains win, easy: >= 0.3


def test_imperfect_traces_all_parse():
    task = CountdownSearchTask()
    rng = random.Random(2)
    from ead.modeling.warmstart import _slip

    grades = [task.grader(p, search_trace(p, task.config, rng, 0.85, 0.3, _slip)) for p in task.train_batch(1, 300)]
    assert all(g.info["format_ok"] for g in grades)
    assert 0.3 < sum(g.correct for g in grades) / len(grades) < 0.98
    assert any(g.info["gave_up"] for g in grades) and any(g.info["mistake"] == "arithmetic" for g in grades)


# --------------------------------------------------------------------------- metrics and wiring


def test_length_by_difficulty_by_hand():
    out = length_by_difficulty(torch.tensor([10, 20, 30, 40]), [1, 1, 3, None], torch.tensor([True, False, True, True]), "eval")
    assert out == {"eval/length_mean/difficulty_1": 15.0, "eval/correct_frac/difficulty_1": 0.5,
                   "eval/length_mean/difficulty_3": 30.0, "eval/correct_frac/difficulty_3": 1.0}
    with pytest.raises(ValueError):
        length_by_difficulty(torch.tensor([1, 2]), [1], None, "eval")


def test_temperature_by_position_by_hand():
    temps = torch.tensor([[1.0, 0.5, 0.3, 0.0], [1.2, 0.7, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    out = temperature_by_position(temps, mask, [0, 1, 2, 4])
    assert out == pytest.approx({"behaviour/temperature_pos_000_001": 1.1, "behaviour/temperature_pos_001_002": 0.6,
                                 "behaviour/temperature_pos_002_004": 0.3})


def test_task_section_builds_the_task_and_checks_the_budget():
    from ead.training.config import ModelSection, TaskSection
    from ead.training.setup import build_task, check_length_budget

    task = build_task(TaskSection(name="countdown-search", countdown={"max_attempts": 4}), ModelSection())
    assert isinstance(task, CountdownSearchTask) and task.config.max_attempts == 4
    check_length_budget(task, 121, builtin_model=True)
    with pytest.raises(ConfigError, match="max_new_tokens=121"):
        check_length_budget(task, 24, builtin_model=True)
    with pytest.raises(ConfigError, match="min_first_pairs"):
        build_task(TaskSection(name="countdown-search", countdown={"min_first_pairs": 2}), ModelSection())


def test_training_logs_length_by_difficulty_and_temperature_by_position(tiny_model_dir, tmp_path):
    from ead.training.config import load_train_config
    from ead.training.logger import read_metrics
    from ead.training.trainer import train

    overrides = [f"model.path={tiny_model_dir}", f"output.dir={tmp_path / 'run'}", "train.steps=1",
                 "task.name=countdown-search", "train.prompts_per_step=6", "train.samples_per_prompt=2",
                 "train.mini_batch_size=12", "train.micro_batch_size=12", "sampling.max_new_tokens=8",
                 "eval.every=1", "eval.at_start=false", "eval.samples=2", "eval.k=[1,2]", "task.num_eval_problems=6",
                 "output.save_every=0", "output.progress=false", "grading.inline=true", "model.num_threads=1"]
    records = read_metrics(train(load_train_config(overrides=overrides)) / "metrics.jsonl")
    step = records[-1]
    assert any(k.startswith("response/length_mean/difficulty_") for k in step)
    assert "eval/length_mean/difficulty_1" in step and "eval/correct_frac/difficulty_3" in step  # eval interleaves levels
    assert any(k.startswith("behaviour/temperature_pos_") for k in step)


def test_sweep_long_recipe_loads_and_fits_the_length_budget():
    from ead.experiments.grid import builtin_recipe, load_sweep_config
    from ead.training.config import load_train_config
    from ead.training.setup import build_task, check_length_budget

    sweep = load_sweep_config(builtin_recipe("sweep_long"))
    cells = sweep.cells()
    assert len(cells) == 7 * 2 * 5 and len(sweep.seeds) >= 5
    assert {c.id.split("__")[0] for c in cells} == {"fixed-0.6", "fixed-1.0", "fixed-1.2", "ead-tis", "ead-notis",
                                                    "reversed-ead", "mean-matched"}
    by_sampler = {c.id.split("__")[0]: load_train_config(sweep.recipe, c.overrides, algorithm=c.algorithm)
                  for c in cells if c.algorithm == "grpo" and c.seed == 0}
    ead, matched = by_sampler["ead-tis"].sampling.schedule, by_sampler["mean-matched"].sampling.schedule
    # The control keeps every EAD parameter and only flattens it to its mean over L = 43 positions.
    assert matched["name"] == "mean_matched" and matched["length"] == 43
    assert {k: v for k, v in matched.items() if k not in ("name", "length")} == {k: v for k, v in ead.items() if k != "name"}
    from ead.tasks.countdown_search import SEARCH_EAD_SCHEDULE

    assert ead.to_config() == SEARCH_EAD_SCHEDULE  # the grid trains the EAD `ead train task.name=countdown-search` uses
    for cell in cells[:: len(cells) // 12]:
        config = load_train_config(sweep.recipe, cell.overrides, algorithm=cell.algorithm)
        assert config.task.name == "countdown-search"
        check_length_budget(build_task(config.task, config.model), config.sampling.max_new_tokens, builtin_model=True)
