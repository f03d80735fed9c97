"""What other work took during a measurement (gpusplit/base/contention.py): the counters, the rule,
and a real neighbour noticed."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from gpusplit.base import contention
from gpusplit.base.contention import Contention, CpuSample
from gpusplit.base.errors import InputError


def test_proc_stat_counts_busy_and_steal_apart():
    # user nice system idle iowait irq softirq steal guest guest_nice, in ticks of 1/100 s here
    text = "cpu  1000 50 300 9000 200 10 40 70 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    busy, steal = contention.parse_stat(text)
    tick = contention._TICK
    assert busy == pytest.approx((1000 + 50 + 300 + 10 + 40) / tick) and steal == pytest.approx(70 / tick)
    assert contention.parse_stat("intr 1 2 3\n") is None and contention.parse_stat("cpu a b c d e\n") is None
    assert contention.parse_stat("cpu 1 2 3 4\n") == (6 / tick, 0.0)  # an old kernel without steal


def test_a_process_held_to_some_cpus_counts_only_their_lines():
    """taskset, a container's cpuset or a CI runner's slice: the CPUs the measurement may use are
    its machine. A neighbour on the others does not slow it; one on its own must not be diluted
    over the machine's (a hog on the one CPU of 64 this process had read as 0.9 of 64 busy)."""
    text = (
        "cpu  1000 0 0 9000 0 0 0 70 0 0\n"
        "cpu0 600 0 0 4000 0 0 0 50 0 0\n"
        "cpu1 300 0 100 4000 0 0 0 20 0 0\n"
        "cpu2 100 0 0 1000 0 0 0 0 0 0\n"
        "intr 12345 1 2 3\n"
    )
    tick = contention._TICK
    assert contention.parse_stat(text, frozenset({1})) == (pytest.approx(400 / tick), pytest.approx(20 / tick))
    assert contention.parse_stat(text, frozenset({0, 2})) == (pytest.approx(700 / tick), pytest.approx(50 / tick))
    assert contention.parse_stat(text, frozenset({1, 7})) is None  # a CPU with no line: not this way
    assert not Contention(1.0, 0.9, 0.0, 64, 1).contended  # the machine's size hid it
    assert Contention(1.0, 0.9, 0.0, 1, 1).contended  # the usable CPUs' size shows it


def test_the_meter_counts_the_cpus_this_process_may_use(monkeypatch):
    import os

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this system")
    first = min(os.sched_getaffinity(0))
    monkeypatch.setenv(contention.ENV, "watch")  # the suite runs with it off (tests/conftest.py)
    monkeypatch.setattr(contention.psutil, "cpu_count", lambda logical=True: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {first})
    assert contention.usable_cpus() == frozenset({first}) and contention.cpu_count() == 1
    meter = contention.Meter(threads=1)
    if not meter.available:
        pytest.skip("no /proc/stat here")
    assert meter.cpus == frozenset({first}) and meter.cpu_count == 1
    before = meter.sample()
    seen = meter.since(before)
    assert seen is not None and seen.cpus == 1
    # all of the machine's CPUs usable: the first line, and the machine's count
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert contention.usable_cpus() is None and contention.Meter().cpus is None


def test_others_are_the_busy_time_less_the_measured_processes():
    before = CpuSample(at=10.0, busy_s=100.0, steal_s=5.0, ours_s=20.0)
    after = CpuSample(at=12.0, busy_s=104.0, steal_s=5.2, ours_s=23.0)  # 2 s: 4 CPU-s busy, 3 of them ours
    seen = contention.between(before, after, threads=2)
    assert seen.seconds == 2.0 and seen.others_cpu_s == pytest.approx(1.0) and seen.steal_s == pytest.approx(0.2)
    assert seen.others_cpus == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("others_cpu_s", "steal_s", "cpus", "threads", "contended"),
    [
        (0.6, 0.0, 2, 2, True),  # a neighbour on a machine the measurement fills
        (0.2, 0.0, 2, 2, False),  # a tenth of a CPU: background
        (1.8, 0.0, 4, 2, False),  # 0.9 CPUs beside a 2-thread measurement on 4: two were spare
        (5.0, 0.0, 4, 2, True),  # 2.5 CPUs: beyond the two spare ones by more than a quarter
        (0.0, 0.3, 2, 2, True),  # the hypervisor took 7.5 % of the CPUs' time
        (0.0, 0.1, 2, 2, False),  # 2.5 %
    ],
)
def test_the_rule_counts_what_the_measurement_needed(others_cpu_s, steal_s, cpus, threads, contended):
    assert Contention(2.0, others_cpu_s, steal_s, cpus, threads).contended is contended


def test_a_tick_or_two_in_a_short_repetition_is_rounding_not_a_neighbour():
    """A 72 ms repetition on 2 CPUs: one 10 ms tick of someone else reads 0.14 CPUs, two of steal
    14 %; under 0.05 s in all neither is contention (a probe refused a device for 6 % of steal)."""
    assert not Contention(0.072, 0.02, 0.0, 2, 2).contended
    assert not Contention(0.072, 0.0, 0.02, 2, 2).contended
    assert Contention(0.2, 0.1, 0.0, 2, 2).contended  # half a CPU for 200 ms is a neighbour


def test_contention_adds_and_round_trips():
    a = Contention(1.0, 0.5, 0.0, 2, 2, mhz=2000.0)
    b = Contention(3.0, 0.1, 0.3, 2, 2, mhz=None)
    both = a + b
    assert both.seconds == 4.0 and both.others_cpus == pytest.approx(0.15) and both.mhz == 2000.0
    assert contention.total([]) is None and contention.total([a, b]) == both
    back = Contention.from_dict(both.as_dict())
    assert back.others_cpus == pytest.approx(both.others_cpus, rel=1e-3) and back.steal_pct == pytest.approx(both.steal_pct)
    assert "0.15 of 2 CPUs" in both.describe()


def test_a_bad_setting_is_refused_by_name(monkeypatch):
    monkeypatch.setenv(contention.ENV, "sometimes")
    with pytest.raises(InputError) as raised:
        contention.watching()
    assert "GPUSPLIT_CONTENTION=sometimes" in raised.value.render()[0]
    monkeypatch.setenv(contention.ENV, "ignore")
    assert contention.watching() is False and contention.Meter().sample() is None
    monkeypatch.setenv(contention.ENV, "watch")
    assert contention.watching() is True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_a_real_neighbour_is_seen_and_a_worker_is_not_one(monkeypatch):
    """A busy loop in another process for a second is others' time (at least half a CPU whatever
    else runs: it gets a CPU of its own or shares with more others); the same loop started as a
    `gpusplit worker` is the measurement's own."""
    monkeypatch.setenv(contention.ENV, "watch")
    loop = "import time\nend = time.time() + 30\nwhile time.time() < end: pass"
    hog = subprocess.Popen([sys.executable, "-c", loop])
    worker = subprocess.Popen([sys.executable, "-c", loop, "gpusplit", "worker"])
    try:
        deadline = time.monotonic() + 20
        while worker.pid not in contention.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.05)  # its command line is readable once it has started
        assert worker.pid in contention.worker_pids() and hog.pid not in contention.worker_pids()
        meter = contention.Meter({worker.pid}, threads=2)
        before = meter.sample()
        time.sleep(1.0)
        after = meter.sample()
        assert before is not None and after is not None
        seen = contention.between(before, after, threads=2)
        assert seen.others_cpus >= 0.5 and seen.contended
        assert after.ours_s - before.ours_s > 0.2  # the worker's loop counted as the measurement's
    finally:
        hog.kill()
        worker.kill()
        hog.wait()
        worker.wait()
