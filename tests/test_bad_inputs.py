"""Bad inputs end in a one-paragraph message naming the problem and the fix: exit code != 0, no traceback.

Each case goes through ``ead.cli.main`` the way a user would type it. None of them starts
a model: they are refused while loading the config, the data or the grader.
"""

import json

import pytest

from ead.cli import main


@pytest.fixture(autouse=True)
def no_training_or_eval_run(monkeypatch, request):
    """An input that is wrongly accepted must fail this test fast, not train the default demo.

    Data errors of ``ead train`` surface inside ``train`` (when it builds the task): those tests
    stop it at the policy load that comes next instead.
    """
    import ead.evaluation.runner as runner
    import ead.training.trainer as trainer

    def accepted(*args, **kwargs):
        raise AssertionError("the bad input was accepted")

    if request.node.name.startswith("test_train_on_"):
        monkeypatch.setattr(trainer, "load_policy", accepted)
    else:
        monkeypatch.setattr(trainer, "train", accepted)
    monkeypatch.setattr(runner, "_load_engine", accepted)


def _fails_cleanly(argv, capsys, *expected):
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0, err  # one paragraph
    for text in expected:
        assert text in err, (text, err)
    return err


@pytest.mark.parametrize("override, expected", [
    ("train.weight_decay=-5", ("train.weight_decay", ">= 0")),
    ("train.lr=.inf", ("train.lr", "finite")),
    ("train.lr=.nan", ("train.lr", "finite")),
    ("train.max_grad_norm=.inf", ("train.max_grad_norm", "finite")),
    ("model.device=tpu", ("model.device", "'tpu'", "cuda:1")),
    ("model.path=/nonexistent/model", ("model.path", "/nonexistent/model", "no such directory")),
    ("model.path=./no/such/dir", ("model.path", "no such directory")),
    ("output.dir=", ("output.dir", "empty")),
    ("eval.k=[]", ("eval.k", "at least one")),
    ("train.samples_per_prompt=1", ("train.samples_per_prompt", "every advantage", "grpo")),
])
def test_train_config_is_refused_with_the_field_and_fix(override, expected, capsys, tmp_path):
    _fails_cleanly(["train", f"output.dir={tmp_path / 'run'}", override], capsys, *expected)


@pytest.mark.parametrize("algorithm", ["dapo", "rloo", "dr_grpo"])
def test_one_sample_per_prompt_with_every_group_relative_algorithm(algorithm, capsys, tmp_path):
    _fails_cleanly(["train", "--algorithm", algorithm, f"output.dir={tmp_path / 'run'}",
                    "train.samples_per_prompt=1"], capsys, "train.samples_per_prompt", "every advantage")


@pytest.fixture()
def non_utf8(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps({"problem": "1+1", "answer": "2"}).encode() + b"\n" + b'{"problem": "\xff\xfe", "answer": "3"}\n')
    return path


def test_eval_on_non_utf8_jsonl_names_file_and_line(non_utf8, capsys, tiny_model_dir, tmp_path):
    _fails_cleanly(["eval", "--model", str(tiny_model_dir), "--dataset", str(non_utf8), "--output-dir", str(tmp_path / "o")],
                   capsys, f"{non_utf8}:2", "UTF-8")


def test_train_on_non_utf8_jsonl_names_file_and_line(non_utf8, capsys, tiny_model_dir, tmp_path):
    _fails_cleanly(["train", f"model.path={tiny_model_dir}", f"output.dir={tmp_path / 'run'}", "task.name=dataset",
                    f"task.dataset.train_file={non_utf8}", f"task.dataset.eval_file={non_utf8}",
                    "sampling.schedule={name: fixed}", "sampling.max_new_tokens=16", "train.lr=1e-4"],
                   capsys, f"{non_utf8}:2", "UTF-8")


def test_eval_on_corrupt_parquet(capsys, tiny_model_dir, tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    _fails_cleanly(["eval", "--model", str(tiny_model_dir), "--dataset", str(path), "--output-dir", str(tmp_path / "o")],
                   capsys, str(path), "Parquet")


def test_eval_with_an_unknown_grader(capsys, tiny_model_dir, tmp_path):
    data = tmp_path / "ok.jsonl"
    data.write_text(json.dumps({"problem": "1+1", "answer": "2"}) + "\n")
    _fails_cleanly(["eval", "--model", str(tiny_model_dir), "--dataset", str(data), "--output-dir", str(tmp_path / "o"),
                    "grader=nomod:fn"], capsys, "nomod", "grader")
