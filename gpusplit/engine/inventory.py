"""ggml's device registry as the calling process sees it: read in an engine child (this process
opens no GPU context), and summarised for the devices document."""

from __future__ import annotations

from typing import Any

from ..devices.inventory import RegistryDevice
from .registry import supports_rpc


def registry_devices() -> tuple[list[RegistryDevice], dict[str, Any]]:
    """ggml's device list as the device layer takes it (RegistryDevice), RPC entries left out, and
    what the CPU backend offers (cpu_backend_info). Read in an engine child (see
    tasks.task_registry): this process opens no GPU context."""
    from .child import run_task

    result, _ = run_task("registry", {}, timeout=120)
    fields = RegistryDevice.__dataclass_fields__
    devices = [RegistryDevice(**{f: d[f] for f in fields}) for d in result["devices"] if d["backend"] != "RPC"]
    return devices, result.get("cpu") or {}


def engine_summary(devices: list[RegistryDevice], cpu: dict[str, Any]) -> dict[str, Any]:
    """What the devices document says of the engine: installed, RPC support, backends, and what
    its CPU backend does with the weights it computes with: its extra buffer types in llama.cpp's
    order (AMX, CPU_KLEIDIAI, CPU_REPACK), the CPU_REPACK rules of its build, its features."""
    return {
        "installed": True,
        "rpc": supports_rpc(),
        "backends": sorted({d.backend for d in devices}),
        "cpu_repack": cpu.get("repack", "none"),
        "cpu_extra_buffers": list(cpu.get("extra_buffers", [])),
        "cpu_features": list(cpu.get("features", [])),
    }
