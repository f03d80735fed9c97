"""Every device llama.cpp would use, in llama.cpp's order, enriched from NVML, plus the host row.

Sources, best first: llama.cpp's own ggml registry (handed in by the engine layer when it is
installed: this module never reaches into the engine), NVML (NVIDIA details, matched by PCI bus
id), RPC workers (probed from Python), and the host's RAM (psutil, on every OS).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from ..base.reasons import Reason
from . import speed as speeds
from .cpu import REPACK, CpuBackend, cpu_name
from .device import DEV_TYPE_NAMES, Device, NvmlInfo, normalise_pci_bus_id, pick_best_gpu
from .nvml import NvmlReport, match_by_pci, query_nvml, resolve_cuda_visible
from .rpc import WorkerInfo, probe, served_key
from .speed import GroupSpeed


@dataclass(frozen=True)
class RegistryDevice:
    """The engine-independent view of one ggml registry entry (see engine.registry.RawDevice)."""

    name: str
    description: str
    backend: str
    type: int
    free_bytes: int
    total_bytes: int
    device_id: str | None = None
    supports_split_buffer: bool = False


@dataclass(frozen=True)
class EngineInfo:
    """What detection found of the engine (llama-cpp-python): installed, RPC support, its backends,
    and its CPU backend (flat, as the devices document says it; a devices file written before a
    field was reported lacks it)."""

    installed: bool
    rpc: bool | None = None
    backends: tuple[str, ...] | None = None
    cpu_repack: str | None = None
    cpu_extra_buffers: tuple[str, ...] | None = None
    cpu_features: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v is not None}

    def cpu_backend(self, from_file: bool) -> CpuBackend | None:
        """The CPU backend it reported (None: it reported none)."""
        extra = self.cpu_extra_buffers
        if extra is None and from_file and self.cpu_repack is not None:
            # a devices file written before the extra buffer types were reported: CPU_REPACK alone
            extra = () if self.cpu_repack == "none" else (REPACK,)
        if extra is None:
            return None
        return CpuBackend(extra, self.cpu_repack or "none", self.cpu_features or (), "file" if from_file else "engine")


@dataclass
class Inventory:
    """The devices to plan for, in llama.cpp's order (`devices`), and the host (`host`).
    `to_dict()` gives the `gpusplit.devices/1` document."""

    devices: list[Device]  # llama.cpp's model device list, index = position
    host: Device
    engine: EngineInfo | None = None  # what detection found of the engine; None: not consulted (--gpu)
    engine_from_file: bool = False  # `engine` is a devices file's (another machine's, perhaps)
    nvml: NvmlReport | None = None
    workers: list[WorkerInfo] = field(default_factory=list)
    notes: list[Reason] = field(default_factory=list)
    group_speed: GroupSpeed | None = None  # tensor parallelism over the devices, as measured

    @property
    def best_gpu(self) -> Device | None:
        return next((d for d in self.devices if d.best), None)


def order_like_llama(registry: list[RegistryDevice]) -> list[RegistryDevice]:
    """llama.cpp's default model device list (llama_prepare_model_devices): RPC devices first,
    then discrete GPUs deduplicated by device id, integrated GPUs only when there is no discrete
    GPU; CPU and ACCEL devices never."""
    rpc = [d for d in registry if d.type == 1 and d.backend == "RPC"]
    gpus: list[RegistryDevice] = []
    for d in registry:
        if d.type == 1 and d.backend != "RPC":
            if d.device_id and any(g.device_id == d.device_id for g in gpus):
                continue
            gpus.append(d)
    igpus: list[RegistryDevice] = []
    for d in registry:
        if d.type == 2 and (not igpus or igpus[-1].backend == d.backend):
            igpus.append(d)
    return rpc + gpus + ([] if gpus else igpus)


def host_memory() -> tuple[int, int]:
    """(total, available) RAM in bytes, on Linux, macOS and Windows alike (psutil)."""
    memory = psutil.virtual_memory()
    return int(memory.total), int(memory.available)


def host_device() -> Device:
    total, available = host_memory()
    return Device(
        name="CPU",
        description=f"{cpu_name()}, {os.cpu_count() or 1} threads",
        backend="CPU",
        type="cpu",
        total_bytes=total,
        free_bytes=available,
        source="host",
    )


def _nvml_fields(info: NvmlInfo | None) -> dict[str, Any]:
    if info is None:
        return {}
    return {
        "nvml": info,
        "pci_bus_id": normalise_pci_bus_id(info.pci_bus_id),
        "bandwidth_bytes_per_s": info.bandwidth_bytes_per_s,
        "bandwidth_source": "catalog" if info.bandwidth_bytes_per_s else "assumed",  # NVML's theoretical figure
        "link_bytes_per_s": pcie_bytes_per_s(info.pcie_gen, info.pcie_width),
    }


# PCIe per-lane payload rates, bytes/s, one direction (after 8b/10b or 128b/130b encoding).
_PCIE_LANE = {1: 0.25e9, 2: 0.5e9, 3: 0.985e9, 4: 1.969e9, 5: 3.938e9, 6: 7.563e9}


def pcie_bytes_per_s(gen: int | None, width: int | None) -> float | None:
    if not gen or not width or gen not in _PCIE_LANE:
        return None
    return _PCIE_LANE[gen] * width


def _free_bytes(d: RegistryDevice, info: NvmlInfo | None) -> int:
    """NVML's free memory for a CUDA device it matched, else the backend's own figure. CUDA's is
    read inside the detecting process, whose context (about 530 MiB on an H200) it counts as used
    though that process is gone when llama.cpp runs; the plan counts llama.cpp's own context."""
    if d.backend == "CUDA" and info is not None and info.free_bytes is not None:
        return min(info.free_bytes, d.total_bytes)
    return d.free_bytes


def from_registry(registry: list[RegistryDevice], nvml: NvmlReport | None, workers: list[WorkerInfo]) -> list[Device]:
    """Devices in llama.cpp's order, with NVML details matched by PCI bus id."""
    devices = []
    for index, d in enumerate(order_like_llama(registry)):
        info = match_by_pci(nvml, d.device_id) if nvml is not None and d.device_id else None
        endpoint = d.description if d.backend == "RPC" else None
        devices.append(
            Device(
                name=d.name,
                description=d.description,
                backend=d.backend,
                type=DEV_TYPE_NAMES.get(d.type, str(d.type)),
                total_bytes=d.total_bytes,
                free_bytes=_free_bytes(d, info),
                index=index,
                source="rpc" if d.backend == "RPC" else "ggml",
                supports_row_split=d.supports_split_buffer,
                endpoint=endpoint,
                **{"pci_bus_id": normalise_pci_bus_id(d.device_id), **_nvml_fields(info)},
            )
        )
    return devices


def rpc_devices(workers: list[WorkerInfo]) -> list[Device]:
    """RPC workers' devices as llama.cpp names and orders them: RPC0, RPC1, ... first in the list."""
    devices: list[Device] = []
    for worker in workers:
        for remote in worker.devices:
            devices.append(
                Device(
                    name=f"RPC{len(devices)}",
                    description=f"{worker.endpoint}" + (f" device {remote.device}" if len(worker.devices) > 1 else ""),
                    backend="RPC",
                    type="gpu",
                    total_bytes=remote.total_bytes,
                    free_bytes=remote.free_bytes,
                    index=len(devices),
                    source="rpc",
                    endpoint=worker.endpoint,
                )
            )
    return devices


def nvml_devices(nvml: NvmlReport | None, first_index: int, env: Any = None) -> tuple[list[Device], list[Reason]]:
    """Without the engine: the GPUs CUDA will see, from NVML."""
    if nvml is None or not nvml.available:
        return [], []
    visible, said = resolve_cuda_visible(nvml, env)
    notes = [Reason("nvml", note) for note in said]
    devices = [
        Device(
            name=f"CUDA{cuda_index}",
            description=info.name,
            backend="CUDA",
            type="gpu",
            total_bytes=info.total_bytes or 0,
            free_bytes=info.free_bytes or 0,
            index=first_index + cuda_index,
            source="nvml",
            **_nvml_fields(info),
        )
        for cuda_index, info in enumerate(visible)
    ]
    return devices, notes


def from_nvml_and_workers(
    nvml: NvmlReport | None, workers: list[WorkerInfo], env: Any = None
) -> tuple[list[Device], list[Reason]]:
    """Without the engine: RPC workers first (as llama.cpp will order them), then CUDA's GPUs."""
    remote = rpc_devices(workers)
    local, notes = nvml_devices(nvml, len(remote), env)
    return remote + local, notes


def detect(
    rpc: list[str] | None = None,
    rpc_timeout: float = 3.0,
    registry: list[RegistryDevice] | None = None,
    engine: EngineInfo | None = None,
    nvml_module: Any = None,
    env: Any = None,
) -> Inventory:
    """The devices llama.cpp would use on this machine (plus RPC workers), and the host row.

    `registry` is ggml's device list as the engine layer reads it (None: no engine installed);
    `engine` describes that engine for the document.
    """
    endpoints = list(rpc or [])
    workers = [probe(endpoint, rpc_timeout) for endpoint in endpoints]  # raises RPCError, names the worker
    nvml = query_nvml(nvml_module)
    notes: list[Reason] = []
    if registry is not None:
        # RPC workers come from the Python probe, not from registering them in this process's
        # registry: a registered worker that later dies aborts any ggml call in this process.
        remote = rpc_devices(workers)
        local = from_registry([d for d in registry if d.backend != "RPC"], nvml, [])
        devices = remote + [d.with_(index=len(remote) + i) for i, d in enumerate(local)]
        if nvml.available and not any(d.backend == "CUDA" for d in devices):
            notes.append(
                Reason(
                    "no-cuda-backend",
                    "NVML sees NVIDIA GPUs but this llama-cpp-python has no CUDA backend (rebuild with -DGGML_CUDA=ON)",
                )
            )
    else:
        devices, notes = from_nvml_and_workers(nvml, workers, env)
        notes.append(Reason("no-engine", "the llama.cpp engine is not installed: devices come from NVML and RPC workers only"))
    if not any(d.is_gpu for d in devices):
        notes.append(
            Reason("no-gpu-found", "no GPU found: llama.cpp will run on the CPU; plan for other hardware with --gpu 24GiB")
        )
    best = pick_best_gpu(devices)
    if best is not None:
        devices = [d.with_(best=True) if d is best else d for d in devices]
    engine = engine if engine is not None else EngineInfo(installed=False)
    return Inventory(devices=devices, host=host_device(), engine=engine, nvml=nvml, workers=workers, notes=notes)


def attach_speeds(inventory: Inventory, threads: int, build: str, folder: Path) -> Inventory:
    """The inventory with each device's (and the host's) cached measurement, where there is one;
    a measured device's bandwidth is then the measured figure."""

    def with_speed(device: Device) -> Device:
        found = speeds.load(folder, speeds.identity_of(device, threads, build, served_key(device.endpoint)))
        if not isinstance(found, speeds.DeviceSpeed):
            return device
        return device.with_(speed=found, bandwidth_bytes_per_s=found.bandwidth["float"], bandwidth_source="measured")

    inventory.host = with_speed(inventory.host)
    inventory.devices = [with_speed(d) for d in inventory.devices]
    members = [d.speed.identity for d in inventory.devices if d.speed is not None]
    if len(members) >= 2 and len(members) == len(inventory.devices):
        group = speeds.load(folder, speeds.group_identity(members))
        inventory.group_speed = group if isinstance(group, speeds.GroupSpeed) else None
    return inventory
