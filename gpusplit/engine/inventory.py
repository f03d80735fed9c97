"""ggml's device registry as the calling process sees it: read in an engine child (this process
opens no GPU context), and summarised for the devices document."""

from __future__ import annotations

from ..devices.cpu import CpuBackend
from ..devices.inventory import EngineInfo, RegistryDevice
from .child import run_task
from .registry import supports_rpc


def registry_devices() -> tuple[list[RegistryDevice], CpuBackend]:
    """ggml's device list as the device layer takes it (RegistryDevice), RPC entries left out, and
    what the CPU backend offers (cpu_backend_info). Read in an engine child (see
    tasks.task_registry): this process opens no GPU context."""
    result, _ = run_task("registry", {}, timeout=120)
    fields = RegistryDevice.__dataclass_fields__
    devices = [RegistryDevice(**{f: d[f] for f in fields}) for d in result["devices"] if d["backend"] != "RPC"]
    cpu = result.get("cpu") or {}  # the child's JSON: cpu_backend_info's fields
    backend = CpuBackend(
        tuple(cpu.get("extra_buffers", ())), str(cpu.get("repack", "none")), tuple(cpu.get("features", ())), "engine"
    )
    return devices, backend


def engine_summary(devices: list[RegistryDevice], cpu: CpuBackend) -> EngineInfo:
    """What the devices document says of the engine: installed, RPC support, backends, and what
    its CPU backend does with the weights it computes with: its extra buffer types in llama.cpp's
    order (AMX, CPU_KLEIDIAI, CPU_REPACK), the CPU_REPACK rules of its build, its features."""
    return EngineInfo(
        installed=True,
        rpc=supports_rpc(),
        backends=tuple(sorted({d.backend for d in devices})),
        cpu_repack=cpu.repack,
        cpu_extra_buffers=cpu.extra_buffers,
        cpu_features=cpu.features,
    )
