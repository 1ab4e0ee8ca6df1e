"""reasoning-gym as a task source: determinism, held-out split, its scorer in the sandboxed pool, train/eval CLI."""

import json
import pickle

import pytest

rg = pytest.importorskip("reasoning_gym", reason="the reasoning extra is not installed: pip install 'ead-rlvr[reasoning]'")

from conftest import tiny_overrides  # noqa: E402
from ead.config import ConfigError  # noqa: E402
from ead.grading.sandbox import GraderPool  # noqa: E402
from ead.modeling.loading import build_task  # noqa: E402
from ead.tasks.reasoning_gym import ReasoningGymOptions  # noqa: E402
from ead.training.config import load_train_config  # noqa: E402

SMALL = {"dataset": "basic_arithmetic", "options": {"max_terms": 2, "max_digits": 1}, "train_size": 300,
         "eval_size": 20}


def test_problems_are_the_generators_items_and_deterministic():
    task = build_task("reasoning_gym", options=SMALL, seed=5)
    again = build_task("reasoning_gym", options=SMALL, seed=5)
    reordered = build_task("reasoning_gym", options=SMALL, seed=6)
    assert [p.uid for p in task.train_batch(3, 7)] == [p.uid for p in again.train_batch(3, 7)]
    assert [p.prompt for p in task.train_batch(3, 7)] == [p.prompt for p in again.train_batch(3, 7)]
    assert [p.uid for p in task.train_batch(0, 30)] != [p.uid for p in reordered.train_batch(0, 30)]  # task.seed orders
    assert [p.uid for p in task.eval_problems()] == [p.uid for p in reordered.eval_problems()]  # held-out set fixed
    # the held-out items are reasoning-gym's own items 0..eval_size-1 for this config, built here independently
    direct = rg.create_dataset("basic_arithmetic", max_terms=2, max_digits=1, seed=0, size=320)
    assert [p.answer["entry"]["question"] for p in task.eval_problems()] == [direct[i]["question"] for i in range(20)]
    assert [p.answer["entry"]["answer"] for p in task.eval_problems()] == [direct[i]["answer"] for i in range(20)]
    assert task.eval_problems()[0].prompt.startswith(direct[0]["question"] + "\n")
    # small generators repeat questions: no training problem (over two epochs) repeats a held-out one
    held_out = {p.answer["entry"]["question"] for p in task.eval_problems()}
    repeated = [direct[i]["question"] for i in range(20, 320) if direct[i]["question"] in held_out]
    assert repeated  # the space of one-digit sums is small enough that the filter is exercised
    stream = task.train_batch(0, 600)
    assert not {p.answer["entry"]["question"] for p in stream} & held_out
    assert len({p.uid for p in stream[:300 - len(repeated)]}) == 300 - len(repeated)  # one epoch = each item once
    json.dumps([p.answer for p in stream[:5]])  # what crosses to the grader process is plain JSON


def test_scorer_round_trip_in_the_sandboxed_pool():
    task = build_task("reasoning_gym", options=SMALL)
    problems = task.eval_problems()[:4]
    pickle.dumps(task.grader)
    responses = [f"Let me think. <answer>{p.answer['entry']['answer']}</answer>" for p in problems]
    wrong = [f"<answer>{int(p.answer['entry']['answer']) + 1}</answer>" for p in problems]
    with GraderPool(task.grader, timeout_s=60, num_workers=1) as pool:  # a separate worker process
        grades, stats = pool.grade_batch(problems * 3, responses + wrong + ["the answer is 3"] * 4)
    assert not any("error" in g.info for g in grades), grades
    assert [g.reward for g in grades[:4]] == [1.0] * 4 and all(g.correct for g in grades[:4])
    assert [g.reward for g in grades[4:8]] == [0.0] * 4 and not any(g.correct for g in grades[4:8])
    assert [g.reward for g in grades[8:]] == [0.0] * 4 and not any(g.info["format_ok"] for g in grades[8:])
    assert grades[0].answer_key == problems[0].answer["entry"]["answer"]  # majority voting groups by the answer


def test_options_are_checked_at_load_with_dotted_fields(tmp_path):
    base = ["task.name=reasoning_gym", f"output.dir={tmp_path}"]
    for bad, where in (("task.reasoning_gym.dataset=basic_arithmetik", r"task\.reasoning_gym\.dataset.*basic_arithmetic"),
                       ("task.reasoning_gym.options={max_termz: 3}", r"task\.reasoning_gym\.options.*max_terms"),
                       ("task.reasoning_gym.options={min_terms: 5, max_terms: 2}", r"task\.reasoning_gym\.options"),
                       ("task.reasoning_gym.eval_size=0", r"task\.reasoning_gym\.eval_size"),
                       ("task.reasoning_gym.answer_extraction=boxed", r"task\.reasoning_gym\.answer_extraction")):
        with pytest.raises(ConfigError, match=where):
            load_train_config(overrides=base + [bad])
    assert isinstance(load_train_config(overrides=base).task.reasoning_gym, ReasoningGymOptions)
    with pytest.raises(ConfigError, match="model.path is required"):
        from ead.training.trainer import train

        train(load_train_config(overrides=base))


def test_one_step_of_ead_train_on_reasoning_gym(tiny_model_dir, tmp_path):
    from ead.cli import main
    from ead.training.logger import read_metrics

    out = tmp_path / "run"
    overrides = tiny_overrides(tiny_model_dir, out, steps=1) + [
        "task.name=reasoning_gym", "task.reasoning_gym={dataset: basic_arithmetic, train_size: 50, eval_size: 4}",
        "sampling.schedule={name: fixed}", "train.lr=1e-4", "eval.every=1", "grading.inline=false",
        "grading.workers=1"]
    assert main(["train", *overrides]) == 0
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1]
    assert records[1]["reward/grade_errors"] == 0.0 and "eval/pass@1" in records[1]


def test_ead_eval_on_a_reasoning_gym_preset(tiny_model_dir, tmp_path):
    from ead.cli import main

    out = tmp_path / "eval"
    from ead.tasks.reasoning_gym import eval_rows

    rows = eval_rows("basic_arithmetic:max_terms=2,max_digits=1")  # name:key=value,... like --schedule
    direct = rg.create_dataset("basic_arithmetic", max_terms=2, max_digits=1, seed=0, size=201)
    assert [r["answer"]["entry"]["question"] for r in rows] == [direct[i]["question"] for i in range(200)]
    code = main(["eval", "--model", str(tiny_model_dir), "--dataset", "reasoning_gym:basic_arithmetic:max_terms=2",
                 "--samples", "2", "--k", "1,2", "--output-dir", str(out), "--no-progress", "sampling.max_new_tokens=6",
                 "num_problems=3", "model.num_threads=1", "grading.inline=true"])
    assert code == 0
    records = [json.loads(line) for line in next((out / "records").glob("*.jsonl")).open()]
    assert [r["uid"] for r in records] == [f"reasoning_gym:basic_arithmetic:0:{i}" for i in range(3)]
    assert main(["eval", "--model", str(tiny_model_dir), "--dataset", "reasoning_gym:no_such_generator",
                 "--output-dir", str(tmp_path / "bad"), "--no-progress"]) == 2  # a message, not a traceback
