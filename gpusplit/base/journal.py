"""Results files: JSON Lines that gpusplit appends to as each result comes (a run cut short loses
nothing), reads back to resume, and never writes into unless the file is its own.

A file is ours when it is missing or empty, or when every line is one of our records; a line cut
short by a kill (it begins a JSON object but does not parse) is skipped, wherever it is, since the
next append starts on a fresh line. Anything else (a system file, someone's notes, another tool's
JSON) is refused before a byte is written, and left as it was.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import InputError
from .jsonio import read_bounded

Record = dict[str, Any]


class ForeignFileError(InputError):
    """A results file that gpusplit did not write (exit 2; the file is left untouched)."""


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                yield number, raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                yield number, "\0"  # binary: not JSON, not a torn record


def _parse(line: str) -> Record | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def is_torn(line: bytes) -> bool:
    """A record cut short by a kill: it begins a JSON object and does not end one."""
    text = line.strip()
    return text.startswith(b"{") and not text.endswith(b"}")


def record_lines(path: Path, parameter: str, limit: int = 256 << 20) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of each non-blank line of a results file that is not torn (a kill cut
    it short); nothing when the file does not exist. The file is read whole or refused: at most
    `limit` bytes, a regular file only."""
    if not path.exists():
        return
    data = read_bounded(path, parameter, limit)
    for number, raw in enumerate(data.split(b"\n"), 1):
        if raw.strip() and not is_torn(raw):
            yield number, raw


def _is_stream(path: Path) -> bool:
    """A character device or a pipe (/dev/stdout, /dev/null, a FIFO): it holds nothing to damage."""
    mode = path.stat().st_mode
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _require_file(path: Path, parameter: str, hint: str) -> None:
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise ForeignFileError("{p} {path} is {kind}", hint, parameter=parameter, path=str(path), kind=kind)


def check_ours(path: Path, is_ours: Callable[[Record], bool], what: str, parameter: str) -> None:
    """Raise ForeignFileError when `path` exists and holds anything but our records (see above)."""
    if not path.exists() or _is_stream(path):
        return
    _require_file(path, parameter, "name a new file to write the results to")
    for number, line in _lines(path):
        if not line:
            continue
        record = _parse(line)
        if record is None and line.startswith("{") and not line.endswith("}"):
            continue  # a record cut short by a kill
        if record is None or not is_ours(record):
            raise ForeignFileError(
                "{p} {path}: line {number} is not a {what} record, so the file is not gpusplit's",
                "name a new file, or one gpusplit wrote; this one was left untouched",
                parameter=parameter,
                path=str(path),
                number=number,
                what=what,
            )


def append(path: Path, record: Record) -> None:
    """Append one record and make it durable before the next result is awaited. A torn last line
    (a kill mid-write) is closed first, so the new record starts a line of its own."""
    line = json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"
    with path.open("a+b") as f:
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write(line.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def check_replaceable(path: Path, is_ours: Callable[[Record], bool], what: str, parameter: str, limit: int = 64 << 20) -> None:
    """Raise ForeignFileError unless `path` is missing, empty or one JSON document of ours: a file
    gpusplit would overwrite (a saved plan) must be one it wrote."""
    if not path.exists():
        return
    _require_file(path, parameter, "name a new file to write to")
    size = path.stat().st_size
    if size == 0:
        return
    document = None
    if size <= limit:
        try:
            document = _parse(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            document = None
    if document is None or not is_ours(document):
        raise ForeignFileError(
            "{p} {path} is not a {what} document, so gpusplit will not overwrite it",
            "name a new file, or one gpusplit wrote; this one was left untouched",
            parameter=parameter,
            path=str(path),
            what=what,
        )
