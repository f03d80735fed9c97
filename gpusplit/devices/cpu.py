"""What llama.cpp's CPU backend would do with this CPU when the engine is not there to say.

pip builds llama-cpp-python for the CPU it is installed on (GGML_NATIVE), so the CPU's own flags
tell which extra buffer types such a build has: AMX on a CPU with AMX-INT8 and AVX512-VNNI (Intel
Sapphire Rapids and later), CPU_REPACK with the rules of its widest vector unit. The engine's own
report (engine/registry.py, cpu_backend_info) replaces this guess wherever it is installed.
"""

from __future__ import annotations

import platform
from typing import Any

CPUINFO_LIMIT = 1 << 20  # /proc/cpuinfo of a 512-thread machine is ~1 MiB; one processor's flags are enough


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


def native_cpu_backend(flags: set[str] | None = None, machine: str | None = None) -> dict[str, Any]:
    """The CPU backend a native build would have here, in the shape of the engine's report:
    {"extra_buffers", "repack", "features", "source": "assumed"}."""
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    features: list[str] = []
    extra: list[str] = []
    if machine in ("x86_64", "amd64"):
        if not flags:
            repack = "avx2"  # no /proc/cpuinfo (macOS, Windows): the usual x86 wheel
        else:
            repack = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "none"
        features = [name.upper() for name in ("avx2", "avx512f", "avx512_vnni", "amx_int8") if name in flags]
        if {"amx_int8", "avx512_vnni"} <= flags:
            extra.append("AMX")
    elif machine in ("aarch64", "arm64"):
        # no /proc/cpuinfo on macOS: every Apple Silicon CPU has the dot-product extension
        dotprod = "asimddp" in flags or (not flags and machine == "arm64")
        repack = "arm-dotprod" if dotprod else "none"
        features = ["DOTPROD"] if dotprod else []
    else:
        repack = "none"
    if repack != "none":
        extra.append("CPU_REPACK")
    return {"extra_buffers": extra, "repack": repack, "features": features, "source": "assumed"}
