"""What else the machine did while a figure was measured: the CPU time other processes took, the
hypervisor's steal, and the CPU's clock where it can be read.

A shared runner or VM gives no warning when another job takes its cores: one bench here read a
prompt 14.5x below its prediction with a build running beside it. Linux's /proc/stat counts every
CPU's busy time; less what the measured processes took themselves (psutil, per process), the rest
is other work. Steal is time the hypervisor gave this VM's CPUs to another guest. Where this
process may run on only some of the machine's CPUs (taskset, a container's cpuset, a CI runner's
slice), only those CPUs' lines count, and their number is the machine's size: a neighbour on CPUs
the measurement cannot use does not slow it, and one on its own CPUs must not hide among the rest.

The rule (the README repeats it; the engine applies it to each repetition of a test as well as to
the whole test): a measurement is *contended* when other processes kept more than
CONTENDED_CPUS of a CPU busy beyond the CPUs the measurement left free, or steal took more than
CONTENDED_STEAL_PCT of the CPUs' time. Counts come in clock ticks (10 ms), so a measurement whose
others took less than MIN_OTHERS_S in all is never called contended: that is a tick or two of
rounding, not a neighbour; the same holds for steal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from .errors import InputError

CONTENDED_CPUS = 0.25  # a quarter of a CPU kept busy by others, beyond the spare ones
CONTENDED_STEAL_PCT = 5.0
MIN_OTHERS_S = 0.05
# GPUSPLIT_CONTENTION=ignore: measure without watching other processes (a CI runner whose neighbours
# are known and accepted): figures are neither marked nor refused by the probe
ENV = "GPUSPLIT_CONTENTION"
_PROC_STAT = Path("/proc/stat")
_STAT_BYTES = 4096  # the first line ("cpu ...") is all that is read, for the whole machine
_STAT_CPU_BYTES = 1 << 20  # with per-CPU lines (about 100 bytes each, before the long intr line)
try:
    _TICK = float(os.sysconf("SC_CLK_TCK"))
except (AttributeError, ValueError, OSError):  # not a POSIX system: nothing is read anyway
    _TICK = 100.0


def watching() -> bool:
    """Whether measurements watch for other work (GPUSPLIT_CONTENTION: watch, the default, or ignore)."""
    value = os.environ.get(ENV, "watch").strip().lower() or "watch"
    if value not in ("watch", "ignore"):
        raise InputError(
            "{env}={value}: not watch or ignore", "unset it, or set it to watch or ignore", env=ENV, value=value[:40]
        )
    return value == "watch"


@dataclass(frozen=True)
class CpuSample:
    """The machine's CPU counters at one moment (seconds since boot, all CPUs together)."""

    at: float  # time.monotonic()
    busy_s: float  # user, nice, system, irq, softirq (guest time is inside user)
    steal_s: float
    ours_s: float  # the measured processes' own CPU time (user + system, all their threads)


def parse_stat(text: str, cpus: frozenset[int] | None = None) -> tuple[float, float] | None:
    """(busy seconds, steal seconds) from /proc/stat: its first line (all CPUs), or with `cpus` the
    sum of those CPUs' own lines; None where a line is not there."""
    if cpus is None:
        return _parse_cpu_line(text.split("\n", 1)[0].split(), "cpu")
    busy = steal = 0.0
    found = 0
    for line in text.split("\n"):
        words = line.split()
        if not words or not words[0].startswith("cpu") or not words[0][3:].isdecimal():
            continue
        if int(words[0][3:]) in cpus:
            parsed = _parse_cpu_line(words, words[0])
            if parsed is None:
                return None
            busy, steal, found = busy + parsed[0], steal + parsed[1], found + 1
    return (busy, steal) if found == len(cpus) else None


def _parse_cpu_line(words: list[str], name: str) -> tuple[float, float] | None:
    if len(words) < 5 or words[0] != name:
        return None
    try:
        ticks = [int(v) for v in words[1:]]
    except ValueError:
        return None
    ticks += [0] * (8 - len(ticks))
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    return (user + nice + system + irq + softirq) / _TICK, steal / _TICK


def usable_cpus() -> frozenset[int] | None:
    """The CPUs this process may run on where they are fewer than the machine's (None: all of
    them, or the system cannot say)."""
    try:
        allowed = frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    return allowed if allowed and len(allowed) < (psutil.cpu_count() or 0) else None


def cpu_count() -> int:
    """How many CPUs a measurement here can use: this process's affinity, else the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on this platform
        return psutil.cpu_count() or 1


def _read_stat(cpus: frozenset[int] | None = None) -> tuple[float, float] | None:
    try:
        with _PROC_STAT.open("rb") as f:  # a kernel file: one bounded read
            text = f.read(_STAT_BYTES if cpus is None else _STAT_CPU_BYTES).decode("ascii", "replace")
    except OSError:
        return None
    return parse_stat(text, cpus)


def _cpu_seconds(processes: Iterable[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except (psutil.Error, OSError):
            continue  # gone, or not ours to read: its time counts as others'
        total += times.user + times.system
    return total


class Meter:
    """Samples taken around measurements of the processes `pids` (this one always included), which
    keep `threads` CPUs busy."""

    def __init__(self, pids: Iterable[int] = (), threads: int = 1) -> None:
        wanted = {os.getpid(), *pids}
        self.processes: list[psutil.Process] = []
        for pid in sorted(wanted):
            try:
                self.processes.append(psutil.Process(pid))
            except (psutil.Error, OSError):
                continue
        self.threads = threads
        self.cpus = usable_cpus()
        if self.cpus is not None and _read_stat(self.cpus) is None:
            self.cpus = None  # no per-CPU lines (a container's own /proc/stat): the machine's
        self.cpu_count = len(self.cpus) if self.cpus is not None else psutil.cpu_count() or 1
        self.available = os.environ.get(ENV, "").strip().lower() != "ignore" and _read_stat(self.cpus) is not None

    def sample(self) -> CpuSample | None:
        stat = _read_stat(self.cpus) if self.available else None
        if stat is None:
            return None
        return CpuSample(time.monotonic(), stat[0], stat[1], _cpu_seconds(self.processes))

    def since(self, before: CpuSample | None) -> Contention | None:
        """The contention from `before` to now (None where nothing is watched)."""
        after = self.sample()
        return None if before is None or after is None else between(before, after, self.threads, cpus=self.cpu_count)


def cpu_mhz() -> float | None:
    """The CPUs' mean current clock in MHz, where the system says it (often not in a VM)."""
    try:
        freq = psutil.cpu_freq()
    except (psutil.Error, OSError, NotImplementedError, AttributeError):
        return None
    return round(freq.current, 1) if freq is not None and freq.current > 0 else None


@dataclass(frozen=True)
class Contention:
    """What other work did during `seconds` of measurement on a machine of `cpus` CPUs, of which the
    measurement itself kept `threads` busy."""

    seconds: float
    others_cpu_s: float
    steal_s: float
    cpus: int
    threads: int
    mhz: float | None = None

    @property
    def others_cpus(self) -> float:
        """Other processes' CPU time per second: how many CPUs they kept busy on average."""
        return self.others_cpu_s / self.seconds if self.seconds > 0 else 0.0

    @property
    def steal_pct(self) -> float:
        """The hypervisor's steal in percent of all CPUs' time."""
        return 100 * self.steal_s / (self.seconds * self.cpus) if self.seconds > 0 and self.cpus else 0.0

    @property
    def spare_cpus(self) -> int:
        return max(self.cpus - self.threads, 0)

    @property
    def contended(self) -> bool:
        """Other work took CPU time the measurement needed (see the module's rule)."""
        busy = self.others_cpu_s >= MIN_OTHERS_S and self.others_cpus > self.spare_cpus + CONTENDED_CPUS
        # steal comes in ticks too: one tick in a 72 ms repetition on 2 CPUs reads 7 %
        return busy or (self.steal_s >= MIN_OTHERS_S and self.steal_pct > CONTENDED_STEAL_PCT)

    def __add__(self, other: Contention) -> Contention:
        """Two measurements' contention as one (their times summed)."""
        seconds = self.seconds + other.seconds
        mhz = [m for m in (self.mhz, other.mhz) if m is not None]
        return Contention(
            seconds,
            self.others_cpu_s + other.others_cpu_s,
            self.steal_s + other.steal_s,
            max(self.cpus, other.cpus),
            max(self.threads, other.threads),
            round(sum(mhz) / len(mhz), 1) if mhz else None,
        )

    def describe(self) -> str:
        """'other processes kept 0.9 CPUs busy, steal 0 %' for warnings and notes."""
        text = f"other processes kept {self.others_cpus:.2f} of {self.cpus} CPUs busy"
        return text + (f", the hypervisor stole {self.steal_pct:.0f} %" if self.steal_pct >= 0.5 else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "contended": self.contended,
            "seconds": round(self.seconds, 4),
            "others_cpus": round(self.others_cpus, 3),
            "steal_pct": round(self.steal_pct, 2),
            "cpus": self.cpus,
            "threads": self.threads,
            "mhz": self.mhz,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Contention:
        """as_dict's output back (others' and steal's seconds from their rates)."""
        seconds = float(data["seconds"])
        cpus = int(data["cpus"])
        return cls(
            seconds,
            float(data["others_cpus"]) * seconds,
            float(data["steal_pct"]) / 100 * seconds * cpus,
            cpus,
            int(data["threads"]),
            None if data.get("mhz") is None else float(data["mhz"]),
        )


def between(before: CpuSample, after: CpuSample, threads: int, mhz: float | None = None, cpus: int | None = None) -> Contention:
    """The contention from `before` to `after`, a measurement keeping `threads` of `cpus` CPUs
    (default: those this process may use) busy."""
    seconds = max(after.at - before.at, 0.0)
    others = (after.busy_s - before.busy_s) - (after.ours_s - before.ours_s)
    steal = max(after.steal_s - before.steal_s, 0.0)
    return Contention(seconds, max(others, 0.0), steal, cpus or cpu_count(), threads, mhz)


WORKER_COMMANDS = (("gpusplit", "worker"), ("rpc-server",), ("ggml-rpc-server",))


def worker_pids() -> set[int]:
    """RPC workers running on this machine (gpusplit's or llama.cpp's rpc-server), found by their
    command line: work they do for a measurement is the measurement's, not a neighbour's. By
    command line rather than by listening port, since a worker standing for another machine lives
    in a network namespace whose sockets this one cannot see."""
    found = set()
    for process in psutil.process_iter(["cmdline"]):
        try:
            words = [Path(w).name for w in (process.info.get("cmdline") or [])[:8]]
        except (psutil.Error, OSError, TypeError):
            continue
        if any(all(any(w == name or w.startswith(name + ".") for w in words) for name in command) for command in WORKER_COMMANDS):
            found.add(process.pid)
    return found


def total(parts: Iterable[Contention]) -> Contention | None:
    """Several measurements' contention as one (None for none)."""
    out: Contention | None = None
    for part in parts:
        out = part if out is None else out + part
    return out
