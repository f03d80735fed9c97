"""One way to write a file whole and one way to open a file to read.

A write goes to a temporary file that only this process can have created (a random name, opened
with O_CREAT|O_EXCL|O_NOFOLLOW in the target's own folder: a file or a link planted there is never
touched), is flushed to disk, then renamed onto the target; a failure removes it. So a reader sees
the old file or the new one, never half of one, and nothing but the named file changes.

    write_whole(out, page.encode(), parameter="out")
    with replacing(path, "model") as tmp:  # for writers that take a path (llama.cpp's quantizer)
        quantize(src, str(tmp), ftype)

A read opens a regular file only: with O_NONBLOCK, so that opening a FIFO cannot wait for a writer,
and checked with fstat on the descriptor it reads (not the name, which can change in between), so
that a FIFO, a device such as /dev/zero or a directory is refused in one line naming what it is.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import InputError

MAX_DOCUMENT_BYTES = 64 << 20  # a document of gpusplit's is kilobytes; a results file, megabytes
_TEMP_TRIES = 16  # fresh random names to try: a clash of 64 random bits is someone planting names
_MAX_NAME = 200  # bytes of the target's name in a temporary name, which must stay within NAME_MAX (255)

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (a named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def kind_of(mode: int) -> str:
    """What a file of this st_mode is, in words ("a FIFO (a named pipe)"); "a file" for a regular one."""
    if stat.S_ISREG(mode):
        return "a file"
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


class NotRegularError(OSError):
    """A path that names something other than a regular file (`kind` says what, in words)."""

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(f"{path} is {kind}, not a file")
        self.path = path
        self.kind = kind


# ---------------------------------------------------------------------------------------------
# Reading


def open_regular_fd(path: str | os.PathLike[str]) -> int:
    """A read-only descriptor of the regular file `path`: never waits (a FIFO is opened
    non-blocking), and NotRegularError for anything but a regular file, checked on the descriptor.
    Other failures are the OSError open raised (FileNotFoundError, PermissionError, ...)."""
    name = os.fspath(path)
    fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularError(name, kind_of(mode))
    return fd


def open_regular(path: str | os.PathLike[str], parameter: str) -> BinaryIO:
    """The regular file `path` opened to read (see open_regular_fd), or InputError naming
    `parameter`, the path and what is wrong with it."""
    name = os.fspath(path)
    try:
        fd = open_regular_fd(name)
    except NotRegularError as exc:
        raise InputError("{p} {where} is {kind}, not a file", "give a regular file", parameter=parameter, where=name,
                         kind=exc.kind) from None  # fmt: skip
    except FileNotFoundError:
        raise InputError("{p} {where}: no such file", parameter=parameter, where=name) from None
    except IsADirectoryError:
        raise InputError("{p} {where} is a directory, not a file", parameter=parameter, where=name) from None
    except OSError as exc:
        raise InputError(
            "{p} {where}: cannot read it ({why})", parameter=parameter, where=name, why=exc.strerror or str(exc)
        ) from None
    return os.fdopen(fd, "rb")


def read_bounded(path: str | os.PathLike[str], parameter: str, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """A file's bytes, at most `limit`: a regular file only (no FIFO, device or directory), checked
    on the open descriptor, so that a read can neither hang nor run out of memory."""
    with open_regular(path, parameter) as f:
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise InputError("{p} {where}: cannot read it ({why})", parameter=parameter, where=os.fspath(path),
                             why=exc.strerror or str(exc)) from None  # fmt: skip
    if len(data) > limit:
        raise InputError("{p} {where} is larger than {limit:,} bytes: not a gpusplit document", parameter=parameter,
                         where=os.fspath(path), limit=limit)  # fmt: skip
    return data


# ---------------------------------------------------------------------------------------------
# Writing


def check_folder(path: str | os.PathLike[str], parameter: str) -> None:
    """InputError unless `path` can be written whole: its folder exists, is a folder and can be
    written in, and `path` itself is no directory. Cheap: commands call it before their work, so
    that a mistyped folder is said at once rather than after the work is done."""
    name = os.fspath(path)
    folder = os.path.dirname(name) or "."
    try:
        mode = os.stat(folder).st_mode
    except FileNotFoundError:
        raise InputError("{p} {path}: the folder {folder} does not exist", "create it, or name a file in a folder that exists",
                         parameter=parameter, path=name, folder=folder) from None  # fmt: skip
    except OSError as exc:
        raise InputError("{p} {path}: cannot use the folder {folder} ({why})", parameter=parameter, path=name,
                         folder=folder, why=exc.strerror or str(exc)) from None  # fmt: skip
    if not stat.S_ISDIR(mode):
        raise InputError("{p} {path}: {folder} is {kind}, not a folder", "name a file in a folder", parameter=parameter,
                         path=name, folder=folder, kind=kind_of(mode))  # fmt: skip
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError("{p} {path}: the folder {folder} cannot be written in", "name a file in a folder you can write to",
                         parameter=parameter, path=name, folder=folder)  # fmt: skip
    if os.path.isdir(name):
        raise InputError("{p} {path} is a directory", "name a file", parameter=parameter, path=name)


def _temporary(target: Path) -> tuple[int, Path]:
    """A new empty file beside `target` that this call created (a fresh random name, O_EXCL and
    O_NOFOLLOW: an existing file or link is never opened), and its descriptor to write with.
    Its permissions are a new file's usual ones (0666 less the umask), unlike mkstemp's 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    stem = os.fsdecode(os.fsencode(target.name)[:_MAX_NAME])  # in bytes, as NAME_MAX counts
    for _ in range(_TEMP_TRIES):
        tmp = target.with_name(f".{stem}.{os.urandom(8).hex()}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{target.parent}: no fresh temporary name in {_TEMP_TRIES} tries")


def _remove(tmp: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def _fsync_path(tmp: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str], parameter: str) -> Iterator[Path]:
    """A fresh temporary file beside `path` (see _temporary) for a writer that takes a path; when
    the block ends it is flushed to disk and renamed onto `path`, and when it raises, removed."""
    target = Path(path)
    check_folder(target, parameter)
    fd, tmp = _temporary(target)
    os.close(fd)
    try:
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def write_whole(path: str | os.PathLike[str], write: Callable[[BinaryIO], None] | bytes, parameter: str) -> int:
    """Write `path` whole or not at all: `write` (bytes, or a function given the open file) goes to
    a fresh temporary file beside it, which is flushed to disk and renamed onto `path` (see the
    module's docstring). InputError where the folder is missing or no folder; the size written."""
    target = Path(path)
    check_folder(target, parameter)
    fd, tmp = _temporary(target)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(write, bytes):
                f.write(write)
            else:
                write(f)
            f.flush()
            size = f.tell()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise
    return size
