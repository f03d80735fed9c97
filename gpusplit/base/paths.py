"""Where gpusplit keeps what it makes: its cache folder (the demo model, device measurements,
Ollama blobs, worker notes)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import InputError
from .files import kind_of


def cache_dir() -> Path:
    """gpusplit's cache folder: $GPUSPLIT_CACHE_DIR, else $XDG_CACHE_HOME/gpusplit, else ~/.cache/gpusplit.
    InputError, naming the variable, where that path runs into something that is no folder (a file)."""
    env = os.environ.get("GPUSPLIT_CACHE_DIR")
    if env:
        return _checked(Path(env).expanduser(), "GPUSPLIT_CACHE_DIR")
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return _checked(Path(xdg).expanduser() / "gpusplit", "XDG_CACHE_HOME")
    return _checked(Path.home() / ".cache" / "gpusplit", "the cache folder")


def _checked(folder: Path, label: str) -> Path:
    """`folder`, once the nearest part of it that exists is a folder (the rest is made on first
    write): else the mkdir that comes later would fail with a bare "File exists"."""
    for part in (folder, *folder.parents):
        try:
            mode = part.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            return folder  # unreadable: the write that comes later says why
        if not stat.S_ISDIR(mode):
            where = "it" if part == folder else "{part}"
            raise InputError(label + " {folder}: " + where + " is {kind}, not a folder",
                             "set GPUSPLIT_CACHE_DIR to a folder gpusplit can keep its cache in", folder=str(folder),
                             part=str(part), kind=kind_of(mode))  # fmt: skip
        return folder
    return folder
