"""Where ``ead`` keeps things on disk, decided in one place.

* :func:`cache_dir`: every cache of every command (the built-in model's warm starts, fetched models):
  ``$EAD_CACHE_DIR`` if set, else ``~/.cache/ead``. ``ead train``, ``ead eval`` and ``ead sweep`` all
  use it, so ``ead eval`` after ``ead train``, in any directory, reuses the warm-started base model.
* :func:`check_model_reference`: a model argument that looks like a local path but does not exist is a
  user error ("no such directory"), not a Hub lookup that fails with "couldn't connect".
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "check_model_reference", "looks_like_path", "note_old_cache", "old_local_cache_note"]


def cache_dir() -> Path:
    """``$EAD_CACHE_DIR`` if set, else ``~/.cache/ead``: the one cache location of every command."""
    return Path(os.environ.get("EAD_CACHE_DIR") or Path.home() / ".cache" / "ead")


def looks_like_path(text: str) -> bool:
    """True for ``./x``, ``/x``, ``~/x``, ``x/``, ``a/b/c`` or ``runs/x`` when ``runs/`` exists here.

    A Hub id is ``name`` or ``org/name``: one slash at most, no leading dot, slash or tilde.
    """
    if text.startswith((".", "/", "~")) or text.endswith(("/", os.sep)) or "\\" in text:
        return True
    parts = text.split("/")
    return len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).is_dir())


def check_model_reference(text: str, field: str) -> None:
    """Raise :class:`~ead.config.ConfigError` if ``text`` looks like a local path that does not exist."""
    from ead.config import ConfigError

    path = Path(text).expanduser()
    if looks_like_path(text) and not path.exists():
        import difflib

        parent = next((p for p in path.parents if p.is_dir()), None)
        names = [p.name for p in parent.iterdir()] if parent is not None else []
        close = difflib.get_close_matches(path.relative_to(parent).parts[0], names, n=3) if parent is not None else []
        hint = f"; did you mean {', '.join(repr(str(parent / c)) for c in close)}?" if close else ""
        raise ConfigError(f"{field}: no such directory {text!r} (it looks like a local path, so the Hugging Face "
                          f"Hub is not tried; a Hub id looks like org/name){hint}")


def old_local_cache_note(used: Path) -> str | None:
    """A one-line note when the pre-1.0 per-directory cache ``./.cache/ead`` exists but is not the one in use."""
    old = Path(".cache") / "ead"
    if old.is_dir() and old.resolve() != Path(used).resolve():
        return (f"note: ./{old} (the old per-directory warm-start cache) is no longer used; the cache is now {used} "
                "(set EAD_CACHE_DIR to choose it). Nothing was deleted; remove ./.cache/ead when you no longer need it.")
    return None


def note_old_cache(uses_default_cache: bool) -> None:
    """Print :func:`old_local_cache_note` to stderr when the command uses the default cache and the note applies."""
    import sys

    note = old_local_cache_note(cache_dir()) if uses_default_cache else None
    if note:
        print(note, file=sys.stderr)
