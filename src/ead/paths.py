"""Where ead keeps what it downloads or builds once: one cache directory, one environment variable."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """``$EAD_CACHE_DIR`` if set (and non-empty), else ``~/.cache/ead``. Not created here."""
    return Path(os.environ.get("EAD_CACHE_DIR") or Path.home() / ".cache" / "ead")
