"""What llama.cpp's CPU backend would do with this CPU when the engine is not there to say.

pip builds llama-cpp-python for the CPU it is installed on (GGML_NATIVE), so the CPU's own flags
tell which extra buffer types such a build has: AMX on a CPU with AMX-INT8 and AVX512-VNNI (Intel
Sapphire Rapids and later), CPU_REPACK with the rules of its widest vector unit. The engine's own
report (engine/registry.py, cpu_backend_info) replaces this guess wherever it is installed.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ..base.errors import InputError

CPUINFO_LIMIT = 1 << 20  # /proc/cpuinfo of a 512-thread machine is ~1 MiB; one processor's flags are enough
# llama.cpp's names for the host's weight buffers: the mapped file and the CPU backend's copies
AMX = "AMX"
REPACK = "CPU_REPACK"
KLEIDIAI = "CPU_KLEIDIAI"
MAPPED = "CPU_Mapped"
EXTRA_BUFFERS = (AMX, KLEIDIAI, REPACK)  # ggml-cpu's order (it has others, for hardware not modelled here)


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name (/proc/cpuinfo's `model name`, or an ARM board's `Hardware`/`Model`),
    else the platform's word for it."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read(CPUINFO_LIMIT)
        except OSError:
            cpuinfo = ""
    found: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        found.setdefault(key.strip(), value.strip())  # the first processor's
    name = next((found[key] for key in ("model name", "Hardware", "Model") if found.get(key)), "")
    return name or platform.processor() or platform.machine() or "CPU"


THREADS_ENV = "GPUSPLIT_THREADS"
MAX_THREADS = 1024  # as --threads


def default_threads() -> int:
    """The CPU threads runs use unless told: $GPUSPLIT_THREADS, else every CPU this process may run
    on (its affinity: what taskset or a container's cpuset leaves it, not the host's count: ggml's
    threads busy-wait, and one more than there are CPUs waits a time slice at every barrier)."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        if not re.fullmatch("[0-9]{1,5}", value) or not 1 <= int(value) <= MAX_THREADS:
            raise InputError(
                "{env}={value}: not a thread count",
                f"set it to a whole number from 1 to {MAX_THREADS}, or unset it",
                env=THREADS_ENV,
                value=value[:40],
            )
        return int(value)
    return usable_cpus()


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity where the platform has one, else every CPU
    (the count contention measures against too; psutil only when asked)."""
    from ..base.contention import cpu_count

    return cpu_count()


def repack_level(features: Iterable[str]) -> str:
    """Which CPU_REPACK rules a build follows (cpu_buffers.REPACK_RULES), from the features it was
    compiled for (ggml's names: AVX512, AVX2, DOTPROD; ggml_cpu_has_* report the build's flags,
    not the CPU's)."""
    found = set(features)
    if "AVX512" in found:
        return "avx512"
    if "AVX2" in found:
        return "avx2"
    return "arm-dotprod" if "DOTPROD" in found else "none"


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The first processor's flags (x86 `flags`, ARM `Features`) from /proc/cpuinfo; empty elsewhere."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read(CPUINFO_LIMIT)
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


@dataclass(frozen=True)
class CpuBackend:
    """What llama.cpp's CPU backend does with the weights it computes with: its extra buffer types
    in the order llama.cpp tries them (AMX, CPU_KLEIDIAI, CPU_REPACK; a live engine may list others,
    which are said, not counted), the CPU_REPACK rules of its build (none, avx2, avx512,
    arm-dotprod), its features, and where this came from: the engine here, a devices file's
    engine, or assumed (a native build for this CPU)."""

    extra_buffers: tuple[str, ...]
    repack: str
    features: tuple[str, ...] = ()
    source: Literal["engine", "file", "assumed"] = "assumed"


def native_cpu_backend(flags: set[str] | None = None, machine: str | None = None) -> CpuBackend:
    """The CPU backend a native build would have here (what is planned without the engine)."""
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    features: list[str] = []  # in ggml's names (ggml_backend_get_features), as a native build reports them
    if machine in ("x86_64", "amd64"):
        if not flags:
            features = ["AVX2"]  # no /proc/cpuinfo (macOS, Windows): the usual x86 wheel
        names = {"avx2": "AVX2", "avx512f": "AVX512", "avx512_vnni": "AVX512_VNNI", "amx_int8": "AMX_INT8"}
        features += [name for flag, name in names.items() if flag in flags]
    elif machine in ("aarch64", "arm64") and ("asimddp" in flags or (not flags and machine == "arm64")):
        features = ["DOTPROD"]  # no /proc/cpuinfo on macOS: every Apple Silicon CPU has it
    repack = repack_level(features)
    # ggml-cpu registers AMX for a build with AMX-INT8 and AVX512-VNNI, before CPU_REPACK
    extra = [AMX] if {"AMX_INT8", "AVX512_VNNI"} <= set(features) else []
    extra += [REPACK] if repack != "none" else []
    return CpuBackend(tuple(extra), repack, tuple(features), "assumed")
