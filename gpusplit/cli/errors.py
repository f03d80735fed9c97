"""Known failures become one line on stderr with a hint and an exit code; GPUSPLIT_DEBUG=1
shows the traceback instead."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from ..base.errors import EXIT_DOES_NOT_FIT, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, GpusplitError, InputError
from . import output

__all__ = ["EXIT_DOES_NOT_FIT", "EXIT_OK", "EXIT_RUNTIME", "EXIT_USAGE", "CLIError", "Interrupted", "describe", "run_guarded"]

# The CLI's own usage errors are the library's input errors (exit code 2 unless told otherwise).
CLIError = InputError


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised where the program is: it unwinds (engine children stopped,
    finished work kept) and exits 130 or 143. A BaseException of our own, so that nothing on
    the way (typer turns KeyboardInterrupt into a bare exit code) swallows it."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def debug_enabled() -> bool:
    return os.environ.get("GPUSPLIT_DEBUG", "") not in ("", "0")


def describe(exc: BaseException) -> tuple[str, int]:
    """The one line and exit code for an exception, or raise it again when unknown."""
    if isinstance(exc, GpusplitError):
        return str(exc), exc.exit_code
    if isinstance(exc, MemoryError):
        return "out of memory", EXIT_RUNTIME
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), EXIT_RUNTIME
    raise exc


def run_guarded(func: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Run func; map a known failure to one stderr line and an exit code."""
    import signal

    def on_signal(signum: int, frame: object) -> None:
        if signum == signal.SIGTERM:
            raise Interrupted("terminated (SIGTERM)", 143)
        raise Interrupted("interrupted", 130)

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        previous = {}
    try:
        result = func(*args, **kwargs)
    except Interrupted as exc:
        output.error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        output.error("interrupted")
        return 130
    except BrokenPipeError:
        # stdout went away (`| head`): nothing to report, and no traceback.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the interpreter's flush at exit
        except OSError:
            pass
        return EXIT_OK
    except Exception as exc:
        if debug_enabled():
            raise
        try:
            line, code = describe(exc)
        except Exception:
            line, code = f"internal error: {type(exc).__name__}: {exc} (set GPUSPLIT_DEBUG=1 for the traceback)", EXIT_RUNTIME
        output.error(line)
        return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return int(result or 0)
