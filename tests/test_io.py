"""The one JSONL reader/writer and atomic write: torn last lines, corrupt middles, full disks."""

import errno
import json
import os

import pytest

from ead.io import JsonlAppender, RunFileError, read_jsonl, repair_jsonl, write_atomic


def _write(path, text):
    path.write_bytes(text.encode() if isinstance(text, str) else text)


def test_torn_last_line_is_dropped_with_a_warning(tmp_path):
    path = tmp_path / "m.jsonl"
    _write(path, '{"step": 1}\n{"step": 2}\n{"step": 3, "reward/me')
    with pytest.warns(UserWarning, match="torn last line"):
        assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    assert path.read_text().endswith('"reward/me')  # reading never edits the file


def test_bad_line_in_the_middle_names_file_and_line_and_loses_nothing(tmp_path):
    path = tmp_path / "m.jsonl"
    _write(path, '{"step": 1}\n{"step": 2, oops\n{"step": 3}\n')
    with pytest.raises(RunFileError, match=r"m\.jsonl:2"):
        read_jsonl(path)
    with pytest.raises(RunFileError, match=r"m\.jsonl:2"):
        repair_jsonl(path)
    assert path.read_text() == '{"step": 1}\n{"step": 2, oops\n{"step": 3}\n'  # untouched


def test_non_utf8_middle_line_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    _write(path, b'{"a": 1}\n{"a": "\xff\xfe"}\n{"a": 3}\n')
    with pytest.raises(RunFileError, match=r"m\.jsonl:2"):
        read_jsonl(path)


def test_complete_last_object_without_newline_is_kept_and_repaired(tmp_path):
    path = tmp_path / "m.jsonl"
    _write(path, '{"step": 1}\n{"step": 2}')
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    with JsonlAppender(path) as out:
        out.write({"step": 3})
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n{"step": 3}\n'


def test_appender_cuts_a_torn_tail_before_appending(tmp_path):
    path = tmp_path / "m.jsonl"
    _write(path, '{"step": 1}\n\n{"step": 2}\n{"st')
    with pytest.warns(UserWarning, match="torn"):
        out = JsonlAppender(path)
    out.write({"step": 3, "loss": float("nan")})
    out.close()
    assert [json.loads(line) for line in path.read_text().splitlines() if line] == [
        {"step": 1}, {"step": 2}, {"step": 3, "loss": None}]


def test_repair_with_keep_drops_later_records(tmp_path):
    path = tmp_path / "m.jsonl"
    _write(path, "".join(json.dumps({"step": s}) + "\n" for s in range(5)) + '{"step": 5')
    with pytest.warns(UserWarning):
        kept = repair_jsonl(path, keep=lambda r: r["step"] <= 2)
    assert kept == [{"step": 0}, {"step": 1}, {"step": 2}]
    assert read_jsonl(path) == kept


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "status.json"
    write_atomic(path, "old\n")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("ead.io.os.fsync", full)
    with pytest.raises(RunFileError, match="disk full") as info:
        write_atomic(path, "new\n")
    assert str(tmp_path) in str(info.value)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temporary left behind
