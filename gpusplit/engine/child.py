"""Engine work in a child process, so a llama.cpp abort (a dead RPC worker, a failed GGML_ASSERT)
is reported by the CLI instead of killing it.

Protocol: the parent writes one JSON request to the child's stdin; the child writes JSON lines to
stdout (`{"event": ...}` while it works, then one `{"result": ...}` or `{"error": ...}`) and
llama.cpp's log lines to stderr, which the parent keeps (the last ones explain a crash).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ..base.errors import InputError
from . import EngineError, EngineInputError, tasks
from .logparse import extra_weight_buffers
from .tasks import keep_log

LOG_TAIL = 12


# Signals of a crash inside llama.cpp's own code (not an abort it chose, not a kill from outside).
CRASH_SIGNALS = frozenset({"SIGSEGV", "SIGILL", "SIGBUS", "SIGFPE"})
# Log lines that say what went wrong, in the order they are preferred for the one-line error.
_TELLING = re.compile(r"error|fail|assert|abort|exception|terminate|illegal|fault|crash|cannot|unable", re.IGNORECASE)


class EngineCrash(EngineError):
    """The child died (abort, signal) before giving a result. `signal` names the signal that
    killed it (None for an exit), `extra_buffers` the CPU backend's extra buffer types (AMX,
    CPU_REPACK, ...) that held weights when it died."""

    def __init__(
        self,
        message: str,
        log_tail: list[str],
        returncode: int,
        extra_buffers: tuple[str, ...] = (),
        timed_out: bool = False,
        held_before: tuple[str, ...] = (),
    ) -> None:
        """`held_before`: this is the second crash, the work run again with --no-repack after a
        first crash with weights in those buffers."""
        said = last_meaningful_line(log_tail)
        if timed_out:
            hint = TIMEOUT_HINT
        elif returncode == -signal.SIGKILL:
            hint = KILLED_HINT
        else:
            hint = CRASH_AGAIN_HINT if held_before else CRASH_HINT
        if held_before:
            message += ", also when run again with {p.no_repack} (the first time it crashed with weights in {held})"
        super().__init__(
            message, ('llama.cpp\'s last words: "{said}"; ' if said else "") + hint, said=said, held=", ".join(held_before)
        )
        self.log_tail = log_tail
        self.returncode = returncode
        self.extra_buffers = extra_buffers
        self.timed_out = timed_out

    def again_without_repack(self, held: tuple[str, ...]) -> EngineCrash:
        """This crash as the second one: it came when the work ran again with --no-repack after a
        first crash with weights in `held` (the CPU backend's extra buffer types)."""
        return EngineCrash(self.template, self.log_tail, self.returncode, self.extra_buffers, self.timed_out, held)

    @property
    def signal(self) -> str | None:
        if self.returncode >= 0 or self.timed_out:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"


def last_meaningful_line(log: list[str]) -> str | None:
    """llama.cpp's last line that says what went wrong (an error, an assert), else its last line."""
    lines = [line.strip() for line in log if line.strip()]
    telling = [line for line in lines if _TELLING.search(line)]
    return (telling or lines)[-1] if lines else None


# What to try after a crash (templates: the CLI names the flags, a script the parameters).
TIMEOUT_HINT = "raise the time limit, or try a smaller test"
KILLED_HINT = (
    "it was probably out of memory: lower {p.n_ctx} or {p.n_gpu_layers}, set {p.no_repack} (no copies of the host's "
    "weights), or free memory"
)
CRASH_HINT = "llama.cpp's whole log shows why ({p.on_log}); try {p.no_repack}, another {p.split_mode} or fewer {p.n_gpu_layers}"
CRASH_AGAIN_HINT = "llama.cpp's whole log shows why ({p.on_log}); try another {p.split_mode} or fewer {p.n_gpu_layers}"


# llama.cpp's own reason for refusing a model or a context (llama.cpp, llama-context.cpp).
_REASON = re.compile(
    r"^(?:llama_init_from_model|llama_model_load): (?:error loading model: |failed to initialize the context: )?(.+)$"
)
_GENERIC = ("failed to load model", "failed to initialize the context")


def llama_reason(log: list[str]) -> str | None:
    """The last specific reason llama.cpp logged for refusing a load (None if it gave none)."""
    for line in reversed(log):
        match = _REASON.match(line.strip())
        if match and not match[1].startswith(_GENERIC):
            return match[1].strip()
    return None


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return {"SIGABRT": "llama.cpp aborted", "SIGKILL": "it was killed (out of memory?)", "SIGSEGV": "it crashed"}.get(
            name, f"it died with {name}"
        )
    return f"it exited with code {code}"


def run_task(
    task: str,
    request: dict[str, Any],
    on_event: Callable[[dict[str, Any]], None] | None = None,
    timeout: float | None = None,
    on_log: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Run one engine task in a child; returns (result, every log line)."""
    env = {**os.environ, "GGML_NO_BACKTRACE": "1", "PYTHONUNBUFFERED": "1"}
    log: list[str] = []
    tail: deque[str] = deque(maxlen=LOG_TAIL)

    def read_log() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            log.append(line)
            tail.append(line)
            if on_log is not None:
                on_log(line)

    reader = threading.Thread(target=read_log, daemon=True)
    timer: threading.Timer | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpusplit.engine.child", task],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        # Its own session: a Ctrl-C at the terminal reaches the CLI, which stops the child itself.
        start_new_session=True,
    )
    # From here on a SIGTERM (raised as Interrupted) anywhere kills the child; and the timer never
    # keeps this process alive: one left uncancelled kept a bench that had printed "terminated"
    # alive 60 s more on a loaded runner.
    try:
        reader.start()
        if timeout:
            timer = threading.Timer(timeout, proc.kill)
            timer.daemon = True
            timer.start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(request).encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        for raw in proc.stdout:
            try:
                message = json.loads(raw)
            except json.JSONDecodeError:
                continue  # stray output from the C side
            if "event" in message and on_event is not None:
                on_event(message)
            elif "result" in message:
                result = message["result"]
            elif "error" in message:
                error = message["error"]
        proc.wait()
    except BaseException:
        # Ctrl-C, SIGTERM (raised by the CLI as Interrupted) or any error: no orphan child.
        proc.kill()
        proc.wait()
        raise
    finally:
        if timer:
            timer.cancel()
        if reader.ident is not None:  # started
            reader.join(timeout=5)
    if error is not None:
        raise child_error(error, llama_reason(log))
    if result is None:
        reason = _describe_exit(proc.returncode)
        timed_out = bool(timer is not None and proc.returncode == -signal.SIGKILL and timeout)
        if timed_out:
            reason = f"it took longer than {timeout:g} s and was stopped"
        raise EngineCrash(
            f"the llama.cpp engine process failed: {reason}", list(tail), proc.returncode, extra_weight_buffers(log), timed_out
        )
    return result, log


def error_message(exc: EngineError) -> dict[str, Any]:
    """An engine error as the child sends it: its templates and values (the parent renders it in
    the library's terms or the CLI's), and whether it is wrong input."""
    return {
        "template": exc.template,
        "hint": exc.hint_template,
        "values": {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v) for k, v in exc.values.items()},
        "parameter": exc.parameter,
        "input": isinstance(exc, InputError),
    }


def child_error(error: dict[str, Any], reason: str | None) -> EngineError:
    """The child's error as the parent raises it; llama.cpp's own reason, where its log gave one,
    joins the line (llama.cpp says why in its log only)."""
    template = str(error.get("template", "the engine failed"))
    values = dict(error.get("values") or {})
    shown = EngineError(template, **values).message
    if reason and reason not in shown:
        template, values = template + ": {llama_reason}", {**values, "llama_reason": reason}
    kind = EngineInputError if error.get("input") else EngineError
    return kind(template, str(error.get("hint", "")), parameter=error.get("parameter"), **values)


# ---------------------------------------------------------------------------------------------
# The child side


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _install_log_capture() -> Any:
    """Send every llama.cpp log line to stderr (the parent keeps them) and keep a copy here."""
    import llama_cpp  # heavy: the child imports it, the parent never

    @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    def callback(level: int, text: bytes | None, _user: Any) -> None:
        if text:
            keep_log(text)
            try:
                os.write(2, text)
            except OSError:
                pass

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    return callback  # keep a reference: ctypes callbacks die with their Python object


def _die_with_parent() -> None:
    """Linux: the kernel kills this child when the CLI dies, even by SIGKILL (PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def main(argv: list[str]) -> int:
    _die_with_parent()
    task = argv[0] if argv else ""
    request = json.loads(sys.stdin.read() or "{}")
    handler = getattr(tasks, f"task_{task}", None)
    if handler is None:
        emit({"error": {"template": "unknown engine task {task!r}", "values": {"task": task}, "input": True}})
        return 2
    keep = _install_log_capture()
    try:
        result = handler(request, emit)
    except EngineError as exc:
        emit({"error": error_message(exc)})
        return 1
    except ValueError as exc:
        # llama-cpp-python's way of saying llama.cpp refused the model or the context.
        emit({"error": {"template": "llama.cpp refused the load: {why}", "values": {"why": str(exc)}}})
        return 1
    emit({"result": result})
    del keep  # only now: llama.cpp may log until the result is out
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
