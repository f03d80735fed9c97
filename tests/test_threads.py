"""The CPU threads a run uses unless told: GPUSPLIT_THREADS, else the CPUs this process may run on."""

from __future__ import annotations

import os

import pytest

from gpusplit.base.errors import InputError
from gpusplit.devices.cpu import THREADS_ENV, default_threads


def test_the_variable_sets_the_threads(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, " 3 ")
    assert default_threads() == 3


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "1025", "9" * 50, "²", "\uff12"])
def test_a_bad_value_is_named_with_the_fix(monkeypatch, value):
    monkeypatch.setenv(THREADS_ENV, value)
    with pytest.raises(InputError) as caught:
        default_threads()
    text = caught.value.message
    assert "GPUSPLIT_THREADS=" in text and "not a thread count" in text and len(text) < 120
    assert "1 to 1024" in caught.value.hint


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this platform")
def test_unset_it_is_the_cpus_this_process_may_run_on(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5})  # taskset -c 0,5 on a bigger host
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert default_threads() == 2
