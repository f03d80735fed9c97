"""Results files: JSON Lines that gpusplit appends to as each result comes (a run cut short loses
nothing), reads back to resume, and never writes into unless the file is its own.

A file is ours when it is missing or empty (or blank), or when it holds at least one complete record
of ours (its schema is a gpusplit results schema; tune's oldest lines, a trial's fields) and
nothing else, save a last line cut short by a kill: a JSON object begun and not finished. Only the last line can be one, since the next append removes it before
writing (the record in it is lost either way), so a line cut short anywhere else is not ours.
Anything else (a system file, someone's notes, another tool's JSON, lines that merely begin with
`{`) is refused before a byte is written, and left as it was.

Of the files that are not regular, these hold nothing to damage and are written to: /dev/null (to
drop the records), /dev/full (every write fails as on a full disk: to test that), and this
process's own standard output or error when it is a terminal or a pipe (/dev/stdout, /dev/stderr,
/dev/fd/1), to stream the records to another program. Any other device (/dev/zero,
/dev/urandom, a disk), FIFO, socket or directory is refused: a FIFO nobody reads would block the run,
and a device is not somewhere results are kept.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from .errors import InputError
from .files import kind_of
from .jsonio import head, read_bounded

Record = dict[str, Any]
MAX_RESULTS_BYTES = 256 << 20  # a bench or tune file is kilobytes to megabytes
_TAIL_BYTES = 1 << 20  # more than any one record: a torn last line longer than this is not ours
_HARMLESS_DEVICES = (os.devnull, "/dev/full")
_REFUSED = "name a new file, or one gpusplit wrote; this one was left untouched"
_STREAMS = "name a regular file (or /dev/stdout to stream the records, /dev/null to drop them)"


class ForeignFileError(InputError):
    """A results file that gpusplit did not write (exit 2; the file is left untouched)."""


def _record(line: bytes) -> Record | None:
    """The JSON object a line holds, or None."""
    try:
        value = msgspec.json.decode(line)
    except (msgspec.DecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _cut_short(line: bytes) -> bool:
    """A record a kill cut short: a line that begins a JSON object and stops before its end. A
    line that ends one and still does not parse (a NaN in it, nesting too deep) is whole and wrong:
    its reader names what is wrong with it."""
    return is_torn(line) and _record(line) is None


def is_torn(line: bytes) -> bool:
    """A record cut short by a kill: it begins a JSON object and does not end one."""
    text = line.strip()
    return text.startswith(b"{") and not text.endswith(b"}")


def _numbered(data: bytes) -> list[tuple[int, bytes]]:
    """(line number, bytes) of each non-blank line."""
    return [(number, raw) for number, raw in enumerate(data.split(b"\n"), 1) if raw.strip()]


def record_lines(path: Path, parameter: str, limit: int = MAX_RESULTS_BYTES) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of each non-blank line of a results file but a last one cut short by a
    kill; nothing when the file does not exist. The file is read whole or refused: at most `limit`
    bytes, a regular file only. A line cut short before the last is yielded for its reader to name."""
    if not path.exists():
        return
    lines = _numbered(read_bounded(path, parameter, limit))
    if lines and _cut_short(lines[-1][1]):
        lines.pop()
    yield from lines


def _same_file(st: os.stat_result, fd: int) -> bool:
    try:
        return os.path.samestat(st, os.fstat(fd))
    except OSError:
        return False  # that descriptor is closed


def _harmless_stream(st: os.stat_result) -> bool:
    """/dev/null, /dev/full, or this process's own stdout or stderr as a terminal or pipe (see above)."""
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        return False
    for device in _HARMLESS_DEVICES:
        try:
            if os.path.samestat(st, os.stat(device)):
                return True
        except OSError:
            pass  # not on this system
    return _same_file(st, 1) or _same_file(st, 2)


def _require_file(path: Path, parameter: str, hint: str) -> None:
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise ForeignFileError("{p} {path} is {kind}", hint, parameter=parameter, path=str(path), kind=kind)


def check_ours(path: Path, is_ours: Callable[[Record], bool], what: str, parameter: str, limit: int = MAX_RESULTS_BYTES) -> None:
    """Raise ForeignFileError when `path` exists and is not a results file of ours (see above)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ForeignFileError("{p} {path}: cannot read it ({why})", _REFUSED, parameter=parameter, path=str(path),
                               why=exc.strerror or str(exc)) from None  # fmt: skip
    if _harmless_stream(st):
        return
    if not stat.S_ISREG(st.st_mode):
        raise ForeignFileError("{p} {path} is {kind}, not a results file", _STREAMS, parameter=parameter, path=str(path),
                               kind=kind_of(st.st_mode))  # fmt: skip
    if st.st_size > limit:
        raise ForeignFileError("{p} {path} is larger than {limit:,} bytes, so it is not gpusplit's results file",
                               _REFUSED, parameter=parameter, path=str(path), limit=limit)  # fmt: skip
    lines = _numbered(read_bounded(path, parameter, limit))
    if not lines:
        return  # empty or blank: nothing to damage
    if _cut_short(lines[-1][1]):
        lines.pop()  # the last record, cut short by a kill
    for number, line in lines:
        record = _record(line)
        if record is not None and is_ours(record):
            continue
        if _cut_short(line) and str(head(line)).startswith("gpusplit."):  # an earlier version closed one and wrote on
            raise ForeignFileError(
                "{p} {path}: line {number} is a record cut short (a kill?) and only the last line may be one",
                "if gpusplit wrote the file, delete that line; otherwise name a new file; this one was left untouched",
                parameter=parameter, path=str(path), number=number,
            )  # fmt: skip
        raise ForeignFileError("{p} {path}: line {number} is not a {what} record, so the file is not gpusplit's",
                               _REFUSED, parameter=parameter, path=str(path), number=number, what=what)  # fmt: skip
    if not lines:
        raise ForeignFileError("{p} {path} holds no complete {what} record, so the file is not gpusplit's",
                               _REFUSED, parameter=parameter, path=str(path), what=what)  # fmt: skip


def _torn_tail(reader: BinaryIO, size: int) -> int | None:
    """Where a last line cut short by a kill begins (it has no newline after it), or None."""
    start = max(0, size - _TAIL_BYTES)
    reader.seek(start)
    tail = reader.read(size - start)
    if tail.endswith(b"\n"):
        return None
    cut = tail.rfind(b"\n") + 1
    if cut == 0 and start > 0:
        return None  # a line longer than any record: not one of ours to remove
    return start + cut if _cut_short(tail[cut:]) else None


def append(path: Path, record: Record) -> None:
    """Append one record and make it durable before the next result is awaited. A last line cut
    short by a kill is removed first (it can never be read), so that only a last line is ever torn;
    a complete last line without its newline gets one."""
    line = (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        st = os.fstat(fd)
        regular = stat.S_ISREG(st.st_mode)  # else a stream (see above): nothing to mend or sync
        if regular and st.st_size > 0:
            with open(path, "rb") as reader:
                torn = _torn_tail(reader, st.st_size)
                reader.seek(st.st_size - 1)
                last = reader.read(1)
            if torn is not None:
                os.ftruncate(fd, torn)
            elif last != b"\n":
                line = b"\n" + line
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]
        if regular:
            os.fsync(fd)
    finally:
        os.close(fd)


def check_replaceable(path: Path, is_ours: Callable[[Record], bool], what: str, parameter: str, limit: int = 64 << 20) -> None:
    """Raise ForeignFileError unless `path` is missing, empty or one JSON document of ours: a file
    gpusplit would overwrite (a saved plan) must be one it wrote."""
    if not path.exists():
        return
    _require_file(path, parameter, "name a new file to write to")
    size = path.stat().st_size
    if size == 0:
        return
    document = _record(path.read_bytes()) if size <= limit else None
    if document is None or not is_ours(document):
        raise ForeignFileError(
            "{p} {path} is not a {what} document, so gpusplit will not overwrite it",
            _REFUSED,
            parameter=parameter,
            path=str(path),
            what=what,
        )
