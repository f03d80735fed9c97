"""The CLI's edge: library errors become one stderr line and an exit code, here and nowhere else.

The library names parameters (`n_ctx`, `tensor_split`) and raises classes (`InputError`, ...);
FLAGS says what each parameter is on the command line and EXIT_CODES what each class exits with,
as huggingface_hub's CLI maps its library's errors at its edge. GPUSPLIT_DEBUG=1 shows the
traceback instead.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from ..base.errors import GpusplitError, InputError
from . import output

__all__ = [
    "EXIT_DOES_NOT_FIT", "EXIT_OK", "EXIT_RUNTIME", "EXIT_SLOWER", "EXIT_USAGE", "FLAGS", "CLIError", "Interrupted", "describe", "flag",
    "run_guarded",
]  # fmt: skip

EXIT_OK = 0
EXIT_RUNTIME = 1  # something failed while working: a worker died, llama.cpp refused, a disk filled
EXIT_USAGE = 2  # the input is wrong: an option, a file, a name
EXIT_DOES_NOT_FIT = 3  # plan --check: the model does not fit wholly on the GPUs
EXIT_SLOWER = 4  # bench --compare --fail-slower: a row slower beyond its noise and the given percent

# The library's parameters as the command line spells them (planning.request.Request's fields and
# the other keywords of the API). A parameter not here is shown by its own name.
FLAGS: dict[str, str] = {
    # the request
    "n_ctx": "--ctx",
    "n_batch": "--batch",
    "n_ubatch": "--ubatch",
    "n_parallel": "--parallel",
    "users": "--users",
    "min_user_tps": "--min-user-tps",
    "type_k": "--kv-type-k",
    "type_v": "--kv-type-v",
    "kv_type": "--kv-type",
    "flash_attn": "--flash-attn",
    "swa_full": "--swa-full",
    "split_mode": "--mode",
    "tensor_split": "--split",
    "n_gpu_layers": "--ngl",
    "main_gpu": "--main-gpu",
    "n_cpu_moe": "--n-cpu-moe",
    "spread": "--spread",
    "reserve": "--reserve",
    "cpu_bandwidth": "--cpu-bandwidth",
    "allow_ctx_overflow": "--allow-ctx-overflow",
    "lora": "--lora",
    "draft": "--draft",
    "n_gpu_layers_draft": "--ngl-draft",
    "mmproj": "--mmproj",
    "no_repack": "--no-repack",
    "n_threads": "--threads",
    "measure": "--measure",
    # the devices
    "gpus": "--gpu",
    "catalog": "`gpusplit devices --catalog`",
    "devices_file": "--devices-file",
    "rpc": "--rpc",
    "timeout": "--timeout",
    "ram": "--ram",
    # the model and saved documents
    "model": "MODEL",
    "saved_plan": "--plan",
    "save_plan": "`gpusplit plan --json MODEL > plan.json`",
    "on_log": "--verbose",
    "prompt": "--prompt",
    "n_predict": "--n-predict",
    # bench
    "n_prompt": "-p",
    "n_gen": "-n",
    "depths": "--depth",
    "parallel": "--parallel",
    "repetitions": "--repetitions",
    "results_file": "--output",
    "resume_file": "--resume",
    # tune
    "objective": "--objective",
    "budget": "--budget",
    "trials_file": "--trials",
    # worker
    "host": "--host",
    "port": "--port",
    "devices": "--device",
    "allow_remote": "--allow-remote",
    "cache_dir": "--cache-dir",
    # report
    "out": "-o",
    "files": "FILE",
}


def flag(parameter: str) -> str:
    """A library parameter as the command line spells it."""
    return FLAGS.get(parameter, parameter)


class CLIError(Exception):
    """A usage error of the command line itself (two options that contradict each other, ...):
    already in the CLI's terms. Exit code 2 unless told otherwise."""

    def __init__(self, message: str, hint: str = "", code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised where the program is: it unwinds (engine children stopped,
    finished work kept) and exits 130 or 143. A BaseException of our own, so that nothing on
    the way (typer turns KeyboardInterrupt into a bare exit code) swallows it."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


# Each class's exit code; the first that matches wins (subclasses before their bases).
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (InputError, EXIT_USAGE),
    (GpusplitError, EXIT_RUNTIME),
    (MemoryError, EXIT_RUNTIME),
    (OSError, EXIT_RUNTIME),
)


def debug_enabled() -> bool:
    return os.environ.get("GPUSPLIT_DEBUG", "") not in ("", "0")


def describe(exc: BaseException) -> tuple[str, int]:
    """The one line and exit code for an exception, or raise it again when unknown."""
    if isinstance(exc, CLIError):
        return str(exc), exc.code
    code = next((code for cls, code in EXIT_CODES if isinstance(exc, cls)), None)
    if code is None:
        raise exc
    if isinstance(exc, GpusplitError):
        message, hint = exc.render(flag)
        return (f"{message} ({hint})" if hint else message), code
    if isinstance(exc, MemoryError):
        return "out of memory", code
    assert isinstance(exc, OSError)
    return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), code


def run_guarded(func: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Run func; map a known failure to one stderr line and an exit code."""

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
