"""scripts/verl_prepare_data.py on the real MATH-500 and GSM8K files, read back with pyarrow."""

import importlib.util
import json
from pathlib import Path

import pytest

pq = pytest.importorskip("pyarrow.parquet")

ROOT = Path(__file__).resolve().parents[2]
DATA = Path("/work/shared/data")


def load_script():
    spec = importlib.util.spec_from_file_location("verl_prepare_data", ROOT / "scripts" / "verl_prepare_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sample_file(tmp_path, name, rows):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_math500_rows_have_verls_columns_and_types(tmp_path):
    script = load_script()
    source = DATA / "math500.jsonl"
    if not source.is_file():  # the shared copy is absent on some machines: the first rows' shape, by hand
        source = _sample_file(tmp_path, "math500.jsonl", [
            {"problem": "Compute $1+1$.", "solution": "\\boxed{2}", "answer": "2"},
            {"problem": "What is $\\frac{1}{2}$ of 4?", "solution": "\\boxed{2}", "answer": "2"}])
    expected = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    out = tmp_path / "math500" / "test.parquet"
    assert script.main([str(source), str(out), "--split", "test"]) == 0
    table = pq.read_table(out)
    assert table.num_rows == len(expected)
    assert table.column_names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert str(table.schema.field("prompt").type) == "list<element: struct<role: string, content: string>>"
    rows = table.to_pylist()
    first = rows[0]
    assert first["data_source"] == "DigitalLearningGmbH/MATH-lighteval" and first["ability"] == "math"
    assert first["prompt"] == [{"role": "user", "content": expected[0]["problem"] + " " + script.DEFAULT_INSTRUCTION}]
    assert first["reward_model"] == {"style": "rule", "ground_truth": expected[0]["answer"]}
    assert [r["extra_info"]["index"] for r in rows] == list(range(len(expected)))
    assert {r["extra_info"]["split"] for r in rows} == {"test"}
    assert [r["reward_model"]["ground_truth"] for r in rows] == [str(e["answer"]) for e in expected]


def test_gsm8k_answers_keep_the_number_after_the_marker(tmp_path):
    script = load_script()
    source = _sample_file(tmp_path, "gsm.jsonl", [{"question": "q1", "answer": "work\n#### 1,234"},
                                                  {"question": "q2", "answer": "more work #### -7"}])
    out = tmp_path / "g.parquet"
    assert script.main([str(source), str(out), "--prompt-field", "question", "--gsm8k-answers",
                        "--data-source", "openai/gsm8k", "--instruction", "", "--system-prompt", "Be brief."]) == 0
    rows = pq.read_table(out).to_pylist()
    assert [r["reward_model"]["ground_truth"] for r in rows] == ["1234", "-7"]
    assert rows[0]["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q1"}]


def test_a_bad_row_is_a_message_naming_file_row_and_field(tmp_path, capsys):
    script = load_script()
    source = _sample_file(tmp_path, "bad.jsonl", [{"problem": "p", "answer": "1"}, {"problem": "p2"}])
    assert script.main([str(source), str(tmp_path / "x.parquet")]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and "'answer'" in err
