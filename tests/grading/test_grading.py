"""ead.grading: extraction rules, MathGrader on the real benchmark files, the registry.

The benchmark checks are the "done when" bar of the evaluation issue (numbers in
docs/evaluation.md): every gold MATH-500 solution graded correct against its own
answer (>= 99%), every GSM8K gold answer correct against its ``#### N``, and answers
paired with a different problem's gold graded wrong (>= 99%). They run through a
GraderPool so a pathological sympy call cannot hang the test.
"""

import json
import pickle
import random
import sys
from pathlib import Path

import pytest

from ead.grading import GRADERS, GraderNotFoundError, GraderPool, MathGrader, build_grader, gold_answer
from ead.grading.extract import extract_answer, extract_gsm8k_final, find_boxed, last_number
from ead.tasks.base import Grade, Problem

DATA = Path("/work/shared/data")
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared benchmark files not present")


def _rows(name):
    with open(DATA / name) as f:
        return [json.loads(line) for line in f]


# ---------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so \\boxed{42}.", "42"),
        ("\\boxed{\\frac{1}{2}} then \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed{3} and later \\fbox{7}", "7"),  # the last box wins, whichever command
        ("\\boxed 5$", "5"),
        ("\\boxed{3} and a truncated \\boxed{\\frac{1}{", "3"),
        ("\\boxed{}", ""),
    ],
)
def test_find_boxed(text, expected):
    assert find_boxed(text) == expected


def test_extract_answer_priority_and_methods():
    assert extract_answer("x=3 so \\boxed{4}. The answer is 5") == ("4", "boxed")
    assert extract_answer("blah\n#### 1,234") == ("1234", "gsm8k")
    assert extract_answer("Thus the final answer is: $\\frac{3}{4}$.") == ("\\frac{3}{4}", "answer_is")
    assert extract_answer("we get 12 apples, then 15.5 pears.") == ("15.5", "last_number")
    assert extract_answer("we get 12 apples", allow_last_number=False) is None
    assert extract_answer("no digits here") is None
    assert extract_gsm8k_final("a\n#### $1,000.") == "1000"
    assert last_number("-3 and 2,500") == "2500"
    assert last_number("x2 y") is None


def test_gold_answer_forms():
    assert gold_answer("\\frac{1}{2}") == "\\frac{1}{2}"
    assert gold_answer("It is 3+4=<<3+4=7>>7\n#### 7") == "7"
    assert gold_answer("so $\\boxed{9}$") == "9"
    assert gold_answer(27) == "27"


# ---------------------------------------------------------------- MathGrader


def test_math_grader_equivalences_and_keys():
    g = MathGrader()
    p = Problem("p", "q", "\\frac{1}{2}")
    right = [g(p, r) for r in ["\\boxed{1/2}", "\\boxed{0.5}", "The answer is $\\frac12$", "\\boxed{\\dfrac{1}{2}}"]]
    assert all(x.correct and x.reward == 1.0 for x in right)
    assert len({x.answer_key for x in right}) == 1  # one vote bucket for majority voting
    wrong = g(p, "\\boxed{2}")
    assert not wrong.correct and wrong.reward == 0.0 and wrong.answer_key == "2"
    none = g(p, "I don't know")
    assert none == Grade(0.0, False, None, {"method": None, "extracted": None})
    assert g(Problem("s", "q", "\\{1,2\\}"), "\\boxed{\\{2, 1\\}}").correct
    assert g(Problem("i", "q", "[0, 1)"), "\\boxed{[0,1)}").correct
    assert not g(Problem("i", "q", "[0, 1)"), "\\boxed{(0,1)}").correct
    assert MathGrader(correct_reward=2.0, wrong_reward=-1.0)(p, "\\boxed{3}").reward == -1.0


def test_math_grader_is_picklable_and_registered():
    g = build_grader("math", timeout_seconds=3)
    assert pickle.loads(pickle.dumps(g)) == g == MathGrader(timeout_seconds=3)
    assert isinstance(build_grader("gsm8k"), MathGrader)


# ---------------------------------------------------------------- registry


def test_registry_countdown_is_lazy(monkeypatch):
    # restored after the test: a second copy of the module would make its classes differ from other modules' imports
    monkeypatch.delitem(sys.modules, "ead.tasks.countdown", raising=False)
    assert "countdown" in GRADERS
    assert "ead.tasks.countdown" not in sys.modules  # registering did not import it
    grader = build_grader("countdown")
    from ead.tasks.countdown import CountdownTask

    task = CountdownTask()
    problem = task.eval_problems()[0]
    assert type(grader) is type(task.grader)
    assert grader(problem, "garbage").correct is False


def _user_grader(problem, response):
    return Grade(1.0, response == problem.answer, response)


def test_registry_import_paths():
    assert build_grader(f"{__name__}:_user_grader") is _user_grader
    assert isinstance(build_grader("ead.grading.math:MathGrader", wrong_reward=-1.0), MathGrader)
    with pytest.raises(ValueError, match="takes no options"):
        build_grader(f"{__name__}:_user_grader", x=1)
    with pytest.raises(GraderNotFoundError, match="unknown grader 'nope'"):
        build_grader("nope")
    with pytest.raises(GraderNotFoundError, match="cannot import module"):
        build_grader("no_such_module_xyz:f")
    with pytest.raises(GraderNotFoundError, match="has no attribute"):
        build_grader("ead.grading.math:Missing")


# ---------------------------------------------------------------- benchmark bar


@pytest.fixture(scope="module")
def pool():
    with GraderPool(MathGrader(), timeout_s=20.0) as p:
        yield p


@needs_data
def test_math500_gold_solutions_grade_correct(pool):
    rows = _rows("math500.jsonl")
    problems = [Problem(f"math500:{i}", r["problem"], r["answer"]) for i, r in enumerate(rows)]
    grades, stats = pool.grade_batch(problems, [r["solution"] for r in rows])
    misses = [(i, rows[i]["answer"], g.info) for i, g in enumerate(grades) if not g.correct]
    assert stats["errors"] == stats["timeouts"] == 0
    assert len(misses) <= 0.01 * len(rows), misses
    assert misses == []  # measured: 500/500 (docs/evaluation.md); tighten-only


@needs_data
def test_math500_answers_of_other_problems_grade_wrong(pool):
    rows = _rows("math500.jsonl")
    perm = list(range(len(rows)))
    random.Random(0).shuffle(perm)
    pairs = [(i, j) for i, j in enumerate(perm) if rows[i]["answer"].strip() != rows[j]["answer"].strip()]
    problems = [Problem(f"math500:{i}", rows[i]["problem"], rows[i]["answer"]) for i, _ in pairs]
    grades, _ = pool.grade_batch(problems, [rows[j]["solution"] for _, j in pairs])
    false_positives = [(rows[i]["answer"], rows[j]["answer"]) for (i, j), g in zip(pairs, grades) if g.correct]
    assert len(false_positives) <= 0.01 * len(pairs), false_positives


@needs_data
def test_gsm8k_gold_answers_grade_correct_and_shuffled_wrong(pool):
    rows = _rows("gsm8k_test.jsonl")
    problems = [Problem(f"gsm8k:{i}", r["question"], extract_gsm8k_final(r["answer"])) for i, r in enumerate(rows)]
    grades, _ = pool.grade_batch(problems, [r["answer"] for r in rows])
    assert [i for i, g in enumerate(grades) if not g.correct] == []
    perm = list(range(len(rows)))
    random.Random(1).shuffle(perm)
    pairs = [(i, j) for i, j in enumerate(perm) if problems[i].answer != problems[j].answer]
    shuffled, _ = pool.grade_batch([problems[i] for i, _ in pairs], [rows[j]["answer"] for _, j in pairs])
    false_positives = [(problems[i].answer, problems[j].answer) for (i, j), g in zip(pairs, shuffled) if g.correct]
    assert len(false_positives) <= 0.01 * len(pairs), false_positives


@needs_data
@pytest.mark.parametrize("name", ["aime24.jsonl", "amc23.jsonl"])
def test_aime_amc_gold_answers_grade_correct(pool, name):
    rows = _rows(name)
    problems = [Problem(f"{name}:{i}", r["problem"], r["answer"]) for i, r in enumerate(rows)]
    responses = [f"... so the answer is $\\boxed{{{gold_answer(r['answer'])}}}$." for r in rows]
    grades, _ = pool.grade_batch(problems, responses)
    assert all(g.correct for g in grades)
