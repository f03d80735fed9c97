"""One record type for every device: detected by llama.cpp, remote over RPC, or hypothetical."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Annotated, Any, Literal

from msgspec import Meta

from ..base.checked import Bytes, Count, Rate
from .speed import DeviceSpeed

Small = Annotated[int, Meta(ge=0, le=1_000_000)]  # PCIe generation and width, links, a bus width

# ggml_backend_dev_type values (ggml-backend.h)
DEV_TYPE_CPU, DEV_TYPE_GPU, DEV_TYPE_IGPU, DEV_TYPE_ACCEL = 0, 1, 2, 3
DEV_TYPE_NAMES = {DEV_TYPE_CPU: "cpu", DEV_TYPE_GPU: "gpu", DEV_TYPE_IGPU: "igpu", DEV_TYPE_ACCEL: "accel"}


@dataclass(frozen=True)
class NvmlInfo:
    """What NVML adds to an NVIDIA GPU (any field may be None where NVML does not support it)."""

    index: Count
    uuid: str
    name: str
    pci_bus_id: str  # normalised "0000:01:00.0"
    total_bytes: Bytes | None = None
    free_bytes: Bytes | None = None
    used_bytes: Bytes | None = None
    reserved_bytes: Bytes | None = None  # memory v2: what the driver keeps for itself
    pcie_gen: Small | None = None
    pcie_width: Small | None = None
    pcie_gen_max: Small | None = None
    pcie_width_max: Small | None = None
    nvlink_links_up: Small | None = None
    compute_capability: str | None = None  # "9.0"
    memory_bus_width_bits: Small | None = None
    memory_clock_max_mhz: Small | None = None
    bandwidth_bytes_per_s: Rate | None = None  # theoretical: bus width x max memory clock x 2 (DDR)
    driver_version: str | None = None
    cuda_driver_version: str | None = None  # "12.4"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Device:
    """A device as the planner sees it.

    `index` is the position in llama.cpp's model device list (what `tensor_split[i]` and
    `main_gpu` refer to), None for the host (CPU) row and for devices llama.cpp would not use.
    """

    name: str  # ggml device name: "CUDA0", "RPC0", "Vulkan1", "CPU"; "GPU0" for hypothetical ones
    description: str
    backend: str  # CUDA, ROCm, Vulkan, Metal, SYCL, RPC, CPU, or "hypothetical"
    type: str  # gpu, igpu, accel, cpu
    total_bytes: Bytes
    free_bytes: Bytes
    index: Annotated[int, Meta(ge=0, lt=64)] | None = None
    source: Literal["ggml", "nvml", "rpc", "catalog", "size", "file", "host"] = "ggml"
    bandwidth_bytes_per_s: Rate | None = None
    link_bytes_per_s: Rate | None = None  # peer link (NVLink) or host link (PCIe) bandwidth
    pci_bus_id: str | None = None
    supports_row_split: bool = False  # the backend has a split buffer type (llama.cpp's -sm row)
    endpoint: str | None = None  # host:port of an RPC worker
    nvml: NvmlInfo | None = None
    best: bool = False  # the GPU a single-GPU plan uses by default
    notes: tuple[str, ...] = field(default=())
    # What llama.cpp was measured to do on it (devices --probe); bandwidth_bytes_per_s is then the
    # measured figure. bandwidth_source: measured, catalog (a datasheet, NVML's or --gpu's), assumed.
    speed: DeviceSpeed | None = None
    bandwidth_source: Literal["measured", "catalog", "assumed"] = "assumed"

    @property
    def is_gpu(self) -> bool:
        return self.type in ("gpu", "igpu", "accel") and self.backend != "CPU"

    def with_(self, **changes: Any) -> Device:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["notes"] = list(self.notes)
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Device:
        """The inverse of as_dict (the schema `devices --json` prints)."""
        known = {f for f in cls.__dataclass_fields__}
        data = {k: v for k, v in doc.items() if k in known}
        if isinstance(data.get("nvml"), dict):
            nvml_fields = set(NvmlInfo.__dataclass_fields__)
            data["nvml"] = NvmlInfo(**{k: v for k, v in data["nvml"].items() if k in nvml_fields})
        if isinstance(data.get("speed"), dict):
            data["speed"] = DeviceSpeed.from_dict(data["speed"])
        data["notes"] = tuple(data.get("notes") or ())
        return cls(**data)


def pick_best_gpu(devices: list[Device]) -> Device | None:
    """The best GPU (LM-Kit's GetBestGpuDeviceId): most free memory, then bandwidth as the tie-breaker."""
    gpus = [d for d in devices if d.is_gpu and d.index is not None]
    if not gpus:
        return None
    return max(gpus, key=lambda d: (d.free_bytes, d.bandwidth_bytes_per_s or 0.0, -(d.index or 0)))


def normalise_pci_bus_id(bus_id: str | bytes | None) -> str | None:
    """'00000000:01:00.0' (NVML) and '0000:01:00.0' (CUDA, ggml) -> '0000:01:00.0', lower case."""
    if bus_id is None:
        return None
    if isinstance(bus_id, bytes):
        bus_id = bus_id.decode("ascii", "replace")
    bus_id = bus_id.strip().lower()
    if not bus_id:
        return None
    parts = bus_id.split(":")
    if len(parts) == 3:
        domain, bus, devfn = parts
        try:
            return f"{int(domain, 16):04x}:{bus}:{devfn}"
        except ValueError:
            return bus_id
    return bus_id


def is_hypothetical(devices: Sequence[Device]) -> bool:
    """Devices described rather than found (--gpu sizes or catalog names, a saved devices file):
    they can be planned for, not run on or measured."""
    return any(d.source in ("size", "catalog", "file") for d in devices)
