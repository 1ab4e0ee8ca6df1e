"""The one JSONL reader/writer and the one atomic file write of ``ead``.

Every file a run keeps goes through here: ``metrics.jsonl`` (training), ``records/*.jsonl``
(``ead eval``), sweep ``status.json``, ``config.yaml``, checkpoint pointers.

JSONL contract: one JSON object per line, each line written with a single ``write`` and
ended by ``"\\n"``. A process killed mid-write, or a disk that fills up, can leave a torn
LAST line:

* :func:`read_jsonl` drops a torn last line (partial JSON) with a warning; a complete
  last object that only lacks its newline is kept;
* :func:`repair_jsonl` (called by :class:`JsonlAppender` before it appends) cuts the
  file back to its last complete line, so a resumed run never writes after garbage;
* a bad line anywhere *before* the last one is corruption, not a crash artefact:
  :class:`RunFileError` naming ``file:line``. Later records are never silently dropped.

:func:`write_atomic` writes a temporary file in the same directory, fsyncs it and
renames it over the target (``os.replace`` is atomic on POSIX): readers see the old
file or the new one, never half of one. A full disk is reported as such, naming the file.

Pure standard library plus :mod:`ead.config` (for the error type), so core modules,
training and evaluation may all import it.
"""

from __future__ import annotations

import errno
import json
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ead.config import ConfigError

__all__ = ["JsonlAppender", "RunFileError", "disk_full_error", "read_jsonl", "repair_jsonl", "write_atomic",
           "fsync_dir"]


class RunFileError(ConfigError):
    """A file ead reads or writes is corrupt or cannot be written (the message names it and the fix).

    A :class:`~ead.config.ConfigError` so every command reports it as a message, not a traceback.
    """

    label = "error"


def disk_full_error(exc: OSError, what: str, where: Path | str, intact: str = "") -> RunFileError | OSError:
    """A :class:`RunFileError` saying "disk full" for ENOSPC/EDQUOT/EFBIG (file-size limit), else ``exc``."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return exc
    note = f" {intact}" if intact else ""
    return RunFileError(f"disk full while writing {what} in {where} ({exc.strerror or exc}).{note} "
                        "Free some space (or point output.dir at a larger disk) and rerun with --resume.")


# ----------------------------------------------------------------------------- JSONL


def _scan(path: Path) -> tuple[list[tuple[int, Any]], int, str | None]:
    """``([(line number, record), ...], bytes of complete good lines, why the tail is torn or None)``."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    ends_with_newline = lines[-1] == b""
    if ends_with_newline:
        lines.pop()
    last_content = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records: list[tuple[int, Any]] = []
    good_bytes, offset, torn = 0, 0, None
    for i, line in enumerate(lines):
        has_newline = i < len(lines) - 1 or ends_with_newline
        offset += len(line) + int(has_newline)
        if not line.strip():
            good_bytes = offset if has_newline else good_bytes
            continue
        try:
            record = json.loads(line)
            problem = None if isinstance(record, dict) else f"expected a JSON object, got {type(record).__name__}"
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError (non-UTF-8 bytes)
            record, problem = None, str(exc)
        if problem is not None and i == last_content:
            torn = f"line {i + 1} is incomplete ({problem})"
            break
        if problem is not None:
            raise RunFileError(f"{path}:{i + 1}: not a JSON object line ({problem}); a bad line before the last "
                               "is corruption, not an interrupted write. Fix or remove that line by hand "
                               "(every later record is kept as it is).")
        records.append((i + 1, record))
        good_bytes = offset  # a complete object without its newline is kept (the newline is added back)
    return records, good_bytes, torn


def read_jsonl(path: Path | str, missing_ok: bool = True) -> list[dict[str, Any]]:
    """Every complete record of a JSONL file; a torn last line is dropped with a warning.

    Raises :class:`RunFileError` (naming ``file:line``) for a bad line before the last one.
    """
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return []
        raise RunFileError(f"{path} does not exist")
    records, _, torn = _scan(path)
    if torn is not None:
        warnings.warn(f"{path}: dropping the torn last line ({torn}); it was cut off mid-write", stacklevel=2)
    return [record for _, record in records]


def repair_jsonl(path: Path | str, keep: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
    """Cut ``path`` back to its last complete line (and to the records ``keep`` accepts); returns them.

    With ``keep``, records after the first rejected one are removed too (a resumed run
    re-logs them); the file is rewritten atomically in that case.
    """
    path = Path(path)
    if not path.exists():
        return []
    records, good_bytes, torn = _scan(path)
    if torn is not None:
        warnings.warn(f"{path}: cutting off the torn last line ({torn}) before appending", stacklevel=2)
    kept = [record for _, record in records]
    if keep is not None:
        first_rejected = next((i for i, record in enumerate(kept) if not keep(record)), len(kept))
        if first_rejected < len(kept):
            kept = kept[:first_rejected]
            write_atomic(path, "".join(json.dumps(record) + "\n" for record in kept))
            return kept
    size = path.stat().st_size
    if good_bytes < size:
        with open(path, "r+b") as handle:
            handle.truncate(good_bytes)
    if kept and not _ends_with_newline(path):  # a complete last object without its newline
        with open(path, "ab") as handle:
            handle.write(b"\n")
    return kept


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


class JsonlAppender:
    """Append one JSON object per line, flushed per line; repairs a torn tail first.

    Non-finite floats are written as ``null`` (JSON has no NaN/inf).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_jsonl(self.path)
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(_finite_or_none(record)) + "\n"
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as exc:
            raise disk_full_error(exc, "a record", self.path,
                                  "Complete records already written are kept; a torn last line is cut off on "
                                  "resume.") from exc

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass  # the write that failed already said why

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


# ----------------------------------------------------------------------------- atomic write


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: some filesystems refuse directory fds)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path | str, data: str | bytes | Iterable[str]) -> None:
    """Replace ``path`` with ``data`` atomically: the old content or the new, never a mix."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    payload = data if isinstance(data, (str, bytes)) else "".join(data)
    try:
        with open(tmp, "wb") as handle:
            handle.write(payload.encode("utf-8") if isinstance(payload, str) else payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_full_error(exc, path.name, path.parent, f"The previous {path.name} is intact.") from exc
    fsync_dir(path.parent)
