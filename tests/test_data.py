"""ead.data: field mapping on the real benchmark files, validation messages, DatasetTask determinism."""

import copy
import json
import sys
import types
from pathlib import Path

import pytest

from ead.data import DataError, DatasetTask, DataSpec, answer_to_text, load_problems
from ead.grading.math import MathGrader
from ead.tasks.base import Task

DATA = Path("/work/shared/data")
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared benchmark files not present")


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@needs_data
@pytest.mark.parametrize(
    "name, prompt_field, uid_field, rows, first_answer",
    [
        ("math500.jsonl", "problem", None, 500, "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("gsm8k_test.jsonl", "question", "idx", 1319, None),
        ("aime24.jsonl", "problem", "id", 30, "204"),
        ("amc23.jsonl", "problem", "id", 40, "27"),  # stored as the float 27.0
    ],
)
def test_benchmark_files_load_through_field_mapping(name, prompt_field, uid_field, rows, first_answer):
    spec = DataSpec(path=str(DATA / name), prompt_field=prompt_field, uid_field=uid_field)
    problems = load_problems(spec)
    assert len(problems) == rows and problems.skipped == []
    first = problems[0]
    assert first.meta == {"source": str(DATA / name), "row": 1}
    if first_answer is not None:
        assert first.answer == first_answer
    else:
        assert first.answer.endswith("#### 18")  # MathGrader reads the #### line itself
    assert all(isinstance(p.answer, str) and p.prompt for p in problems)


@needs_data
def test_prompt_template_and_default_uid():
    spec = DataSpec(
        path=str(DATA / "math500.jsonl"), prompt_template="{problem}\nPut your final answer in \\boxed{{}}.", limit=3
    )
    problems = load_problems(spec)
    assert len(problems) == 3 and problems[1].uid == "math500:2"
    assert problems[0].prompt.endswith("\nPut your final answer in \\boxed{}.")
    assert problems[0].prompt.startswith("Convert the point $(0,3)$")


def test_answer_to_text():
    assert answer_to_text(27.0) == "27"
    assert answer_to_text(-3) == "-3"
    assert answer_to_text(0.25) == "0.25"
    assert answer_to_text("  \\frac12 ") == "\\frac12"
    for bad in (True, None, [1], {"a": 1}, float("nan"), float("inf")):
        with pytest.raises((TypeError, ValueError)):
            answer_to_text(bad)


@pytest.mark.parametrize(
    "row, message",
    [
        ({"answer": "1"}, r"rows.jsonl:3: missing field 'problem'"),
        ({"problem": "  ", "answer": "1"}, r"rows.jsonl:3: field 'problem' must be a non-empty string"),
        ({"problem": "q", "answer": [1, 2]}, r"rows.jsonl:3: field 'answer' must be a string or a number, got list"),
        ({"problem": "q", "answer": True}, r"rows.jsonl:3: field 'answer' must be a string or a number, got True"),
        ({"problem": "q", "answer": ""}, r"rows.jsonl:3: field 'answer' is empty"),
    ],
)
def test_validation_errors_name_file_row_and_field(tmp_path, row, message):
    # line 2 is blank: rows are 1-based *line* numbers, so the bad row is reported as line 3
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"problem": "ok", "answer": "1"}) + "\n\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=message):
        load_problems(DataSpec(path=str(path)))


def test_file_level_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_problems(DataSpec(path=str(tmp_path / "missing.jsonl")))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "q", "answer": "1"}\n{oops\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        load_problems(DataSpec(path=str(bad)))
    dup = _write_jsonl(tmp_path / "dup.jsonl", [{"id": 1, "problem": "q", "answer": 1}] * 2)
    with pytest.raises(DataError, match=r"dup.jsonl:2: duplicate uid '1' \(also row 1\)"):
        load_problems(DataSpec(path=dup, uid_field="id"))
    tpl = _write_jsonl(tmp_path / "tpl.jsonl", [{"problem": "q", "answer": 1}])
    with pytest.raises(DataError, match=r"tpl.jsonl:1: prompt_template uses field 'question'"):
        load_problems(DataSpec(path=tpl, prompt_template="{question}"))


def test_raw_answers_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist([{"q": "2+2?", "a": 4.0}, {"q": "1/2?", "a": 0.5}]), path)
    problems = load_problems(DataSpec(path=str(path), prompt_field="q", answer_field="a"))
    assert [p.answer for p in problems] == ["4", "0.5"] and problems[1].uid == "t:2"
    raw = _write_jsonl(tmp_path / "raw.jsonl", [{"problem": "q", "answer": {"numbers": [1, 2], "target": 3}}])
    assert load_problems(DataSpec(path=raw, answer_format="raw"))[0].answer == {"numbers": [1, 2], "target": 3}


def test_long_prompts_error_or_skip(tmp_path, tiny_tokenizer):
    path = _write_jsonl(tmp_path / "p.jsonl", [{"problem": "1+1", "answer": 2}, {"problem": "9" * 50, "answer": 1}])
    with pytest.raises(DataError, match=r"p.jsonl:2: prompt has 50 tokens > data.max_prompt_tokens=10"):
        load_problems(DataSpec(path=path, max_prompt_tokens=10), tiny_tokenizer)
    loaded = load_problems(DataSpec(path=path, max_prompt_tokens=10, skip_long_prompts=True), tiny_tokenizer)
    assert len(loaded) == 1 and len(loaded.skipped) == 1 and "p.jsonl:2" in loaded.skipped[0]
    with pytest.raises(DataError, match="needs a tokenizer"):
        load_problems(DataSpec(path=path, max_prompt_tokens=10))


def test_chat_template(tmp_path, tiny_tokenizer):
    path = _write_jsonl(tmp_path / "c.jsonl", [{"problem": "1+1", "answer": 2}])
    with pytest.raises(DataError, match="no chat template"):
        load_problems(DataSpec(path=path, chat_template=True), tiny_tokenizer)
    chat_tok = copy.deepcopy(tiny_tokenizer)  # a copy, so the session fixture stays unchanged
    chat_tok.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"
    problems = load_problems(DataSpec(path=path, chat_template=True, system_prompt="be brief"), chat_tok)
    assert problems[0].prompt == "<system>be brief<user>1+1<assistant>"


def test_hub_names_load_lazily(monkeypatch):
    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        return [{"question": "q1", "answer": "a #### 3"}, {"question": "q2", "answer": "b #### 4"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake_load_dataset))
    problems = load_problems(DataSpec(path="openai/gsm8k", hub_config="main", split="test", prompt_field="question"))
    assert calls == [("openai/gsm8k", "main", "test")]
    assert problems.source == "openai/gsm8k[test]" and problems[1].uid == "openai/gsm8k:2"


def test_dataset_task_is_deterministic_epoch_shuffled(tmp_path):
    path = _write_jsonl(tmp_path / "train.jsonl", [{"problem": f"q{i}", "answer": i} for i in range(10)])
    task = DatasetTask(train=DataSpec(path=path), eval=DataSpec(path=path, limit=3), seed=7)
    assert isinstance(task, Task) and isinstance(task.grader, MathGrader)
    batches = [[p.uid for p in task.train_batch(b, 4)] for b in range(5)]  # 20 positions = 2 epochs
    stream = [u for b in batches for u in b]
    assert sorted(stream[:10]) == sorted(stream[10:]) == sorted(f"train:{i}" for i in range(1, 11))
    assert stream[:10] != stream[10:]  # each epoch reshuffled
    again = DatasetTask(train=DataSpec(path=path), seed=7)
    assert [p.uid for p in again.train_batch(3, 4)] == batches[3]
    assert [p.uid for p in DatasetTask(train=DataSpec(path=path), seed=8).train_batch(0, 10)] != stream[:10]
    assert [p.uid for p in task.eval_problems()] == ["train:1", "train:2", "train:3"]
    with pytest.raises(DataError, match="no eval data"):
        again.eval_problems()


def test_dataset_task_from_config(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"question": f"q{i}", "answer": f"x #### {i}"} for i in range(6)])
    task = DatasetTask.from_config(
        {"train_file": path, "eval_file": path, "prompt_field": "question", "limit": 4, "name": "gsm"}, seed=3
    )
    assert task.name == "gsm" and len(task.train_set) == 4 and len(task.eval_problems()) == 4
    assert task.grader(task.eval_problems()[2], "so #### 2").correct
    with pytest.raises(ValueError, match=r"unknown dataset option\(s\) \['promt_field'\]"):
        DatasetTask.from_config({"eval_file": path, "promt_field": "question"})
