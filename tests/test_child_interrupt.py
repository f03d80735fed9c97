"""An interrupt that lands while an engine child is being set up (a SIGTERM raised as Interrupted
at any bytecode) kills the child and leaves nothing that keeps this process alive: a bench that had
printed "terminated (SIGTERM)" once lived 60 s more beside a loaded runner, waiting out a timer."""

from __future__ import annotations

import subprocess
import threading

import pytest

from gpusplit.engine import child


def test_an_interrupt_while_the_timer_starts_kills_the_child_and_leaves_no_live_timer(monkeypatch):
    spawned: list[subprocess.Popen] = []
    timers: list[threading.Timer] = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        spawned.append(proc)
        return proc

    class InterruptedTimer(threading.Timer):
        def start(self) -> None:
            timers.append(self)
            super().start()
            raise KeyboardInterrupt  # the signal handler's exception, right after the thread started

    monkeypatch.setattr(child.subprocess, "Popen", recording_popen)
    monkeypatch.setattr(child.threading, "Timer", InterruptedTimer)
    with pytest.raises(KeyboardInterrupt):
        child.run_task("load", {}, timeout=3600)
    (proc,) = spawned
    assert proc.poll() is not None  # killed and reaped, not left running the task
    (timer,) = timers
    timer.join(20)  # a cancelled timer ends at once; an uncancelled one would wait out its hour
    assert timer.daemon and not timer.is_alive()  # and as a daemon it could not hold the exit anyway
