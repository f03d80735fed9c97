"""Where gpusplit keeps what it makes: its cache folder (the demo model, device measurements,
Ollama blobs, worker notes)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """gpusplit's cache folder: $GPUSPLIT_CACHE_DIR, else $XDG_CACHE_HOME/gpusplit, else ~/.cache/gpusplit."""
    env = os.environ.get("GPUSPLIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "gpusplit"
    return Path.home() / ".cache" / "gpusplit"
