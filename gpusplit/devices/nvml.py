"""What NVML (the NVIDIA driver's management library) says about the GPUs: one report, no prints.

`query_nvml()` never raises: without a driver, without nvidia-ml-py, or with a driver too old for a
query, it returns a report saying so, and a field NVML cannot give is None. GPUs are matched to
llama.cpp's (ggml's) devices by PCI bus id (`match_by_pci`), never by index.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gpusplit.devices.device import NvmlInfo, normalise_pci_bus_id


@dataclass(frozen=True)
class NvmlReport:
    available: bool
    reason: str | None = None  # why NVML is not available (None when it is)
    driver_version: str | None = None  # "550.54.15"
    cuda_driver_version: str | None = None  # "12.4": the newest CUDA the driver supports
    gpus: tuple[NvmlInfo, ...] = ()  # in NVML index order
    notes: tuple[str, ...] = field(default=())  # GPUs NVML listed but could not read


def query_nvml(pynvml_module: Any = None) -> NvmlReport:
    """Ask NVML about every GPU; `pynvml_module` replaces the real pynvml (tests pass a fake)."""
    nv = pynvml_module
    if nv is None:
        try:
            import pynvml  # heavy and optional: only where NVML is asked
        except ImportError:
            return NvmlReport(available=False, reason="nvidia-ml-py is not installed")
        nv = pynvml
    try:
        nv.nvmlInit()
    except nv.NVMLError as e:
        return NvmlReport(available=False, reason=_init_failure(nv, e))
    except OSError as e:
        return NvmlReport(available=False, reason=f"NVML could not be loaded: {e}")
    try:
        return _query(nv)
    finally:
        try:
            nv.nvmlShutdown()
        except nv.NVMLError:
            pass


def _init_failure(nv: Any, e: Exception) -> str:
    if isinstance(e, getattr(nv, "NVMLError_LibraryNotFound", ())):
        return "NVML not found (no NVIDIA driver)"
    if isinstance(e, getattr(nv, "NVMLError_DriverNotLoaded", ())):
        return "NVIDIA driver not loaded"
    return f"NVML failed to initialise: {e}"


def _call(nv: Any, name: str, *args: Any) -> Any:
    """One NVML query; None where this pynvml lacks it or NVML refuses it (NotSupported, ...)."""
    fn = getattr(nv, name, None)
    if fn is None:
        return None
    try:
        return fn(*args)
    except nv.NVMLError:
        return None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


def _query(nv: Any) -> NvmlReport:
    driver = _text(_call(nv, "nvmlSystemGetDriverVersion"))
    cuda = _call(nv, "nvmlSystemGetCudaDriverVersion_v2")
    if cuda is None:
        cuda = _call(nv, "nvmlSystemGetCudaDriverVersion")
    cuda_version = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) and cuda > 0 else None
    try:
        count = nv.nvmlDeviceGetCount()
    except nv.NVMLError as e:
        return NvmlReport(False, f"NVML could not count the GPUs: {e}", driver, cuda_version)
    gpus, notes = [], []
    for index in range(count):
        try:
            gpus.append(_gpu(nv, index, driver, cuda_version))
        except nv.NVMLError as e:
            notes.append(f"NVML GPU {index}: skipped, its handle, UUID or PCI bus id could not be read ({e})")
    return NvmlReport(True, None, driver, cuda_version, tuple(gpus), tuple(notes))


def _gpu(nv: Any, index: int, driver: str | None, cuda: str | None) -> NvmlInfo:
    h = nv.nvmlDeviceGetHandleByIndex(index)
    uuid = _text(nv.nvmlDeviceGetUUID(h)) or ""
    pci = normalise_pci_bus_id(nv.nvmlDeviceGetPciInfo(h).busId) or ""
    cc = _call(nv, "nvmlDeviceGetCudaComputeCapability", h)
    bus_width = _call(nv, "nvmlDeviceGetMemoryBusWidth", h)
    clock = _call(nv, "nvmlDeviceGetMaxClockInfo", h, getattr(nv, "NVML_CLOCK_MEM", 2))
    bandwidth = bus_width / 8 * clock * 1e6 * 2 if bus_width and clock else None  # x2: double data rate
    return NvmlInfo(
        index=index,
        uuid=uuid,
        name=_text(_call(nv, "nvmlDeviceGetName", h)) or "",
        pci_bus_id=pci,
        pcie_gen=_call(nv, "nvmlDeviceGetCurrPcieLinkGeneration", h),
        pcie_width=_call(nv, "nvmlDeviceGetCurrPcieLinkWidth", h),
        pcie_gen_max=_call(nv, "nvmlDeviceGetMaxPcieLinkGeneration", h),
        pcie_width_max=_call(nv, "nvmlDeviceGetMaxPcieLinkWidth", h),
        nvlink_links_up=_nvlink_links_up(nv, h),
        compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
        memory_bus_width_bits=bus_width,
        memory_clock_max_mhz=clock,
        bandwidth_bytes_per_s=bandwidth,
        driver_version=driver,
        cuda_driver_version=cuda,
        **_memory(nv, h),
    )


def _memory(nv: Any, h: Any) -> dict[str, int | None]:
    """Memory v2 (with what the driver reserves) where the driver has it, else v1."""
    v2 = getattr(nv, "nvmlMemory_v2", None)
    if v2 is not None:
        try:
            m = nv.nvmlDeviceGetMemoryInfo(h, version=v2)
            return {"total_bytes": m.total, "free_bytes": m.free, "used_bytes": m.used, "reserved_bytes": m.reserved}
        except (nv.NVMLError, TypeError, AttributeError):
            pass  # older driver (FunctionNotFound) or older pynvml (no `version`): fall back to v1
    m = _call(nv, "nvmlDeviceGetMemoryInfo", h)
    if m is None:
        return {}
    return {"total_bytes": m.total, "free_bytes": m.free, "used_bytes": m.used}


def _nvlink_links_up(nv: Any, h: Any) -> int | None:
    """Active NVLink links; None where the GPU has no NVLink (the first link is NotSupported)."""
    enabled = getattr(nv, "NVML_FEATURE_ENABLED", 1)
    up = 0
    for link in range(getattr(nv, "NVML_NVLINK_MAX_LINKS", 18)):
        try:
            state = nv.nvmlDeviceGetNvLinkState(h, link)
        except (nv.NVMLError, AttributeError):  # NotSupported / InvalidArgument: past the last link
            return None if link == 0 else up
        up += state == enabled
    return up


def match_by_pci(report: NvmlReport, pci_bus_id: str | bytes | None) -> NvmlInfo | None:
    """The NVML record of the GPU at this PCI bus id (either "00000000:01:00.0" or "0000:01:00.0")."""
    wanted = normalise_pci_bus_id(pci_bus_id)
    if wanted is None:
        return None
    return next((g for g in report.gpus if normalise_pci_bus_id(g.pci_bus_id) == wanted), None)


def cuda_visible(report: NvmlReport, env: Mapping[str, str] | None = None) -> list[NvmlInfo]:
    """The GPUs CUDA (and so llama.cpp's CUDA backend) will see, in CUDA's order. See `resolve_cuda_visible`."""
    return resolve_cuda_visible(report, env)[0]


def resolve_cuda_visible(report: NvmlReport, env: Mapping[str, str] | None = None) -> tuple[list[NvmlInfo], list[str]]:
    """Apply CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER; returns (GPUs in CUDA's order, notes).

    Entries are integers (positions in CUDA's order), `GPU-<uuid>` (a unique prefix is enough) or
    `MIG-...` (not supported here: skipped with a note). As CUDA does, an invalid entry ends the list:
    the devices listed after it are ignored. Unset means every GPU; an empty value means none.

    CUDA's default order, FASTEST_FIRST, is CUDA's own heuristic; it is approximated here as
    descending (compute capability, memory bandwidth, total memory), ties in PCI bus id order, so the
    integer positions are exact only with CUDA_DEVICE_ORDER=PCI_BUS_ID. Either way, match these GPUs
    to llama.cpp's devices by PCI bus id (`match_by_pci`), not by position.
    """
    env = os.environ if env is None else env
    if (env.get("CUDA_DEVICE_ORDER") or "").strip().upper() == "PCI_BUS_ID":
        order = sorted(report.gpus, key=lambda g: (g.pci_bus_id, g.index))
    else:
        order = sorted(report.gpus, key=_fastest_first)
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return order, []
    visible: list[NvmlInfo] = []
    notes: list[str] = []
    for entry in (e.strip() for e in listed.split(",")):
        if not entry:
            if listed.strip():
                notes.append("CUDA_VISIBLE_DEVICES: empty entry; CUDA ignores the devices after it")
            break
        if entry.upper().startswith("MIG-"):
            notes.append(f"CUDA_VISIBLE_DEVICES: {entry}: MIG instances are not supported; skipped")
            continue
        gpu = _lookup(order, entry)
        if gpu is None:
            notes.append(f"CUDA_VISIBLE_DEVICES: {entry!r} matches no GPU; CUDA ignores the devices after it")
            break
        if gpu in visible:
            notes.append(f"CUDA_VISIBLE_DEVICES: {entry!r} names a GPU already listed; counted once")
            continue
        visible.append(gpu)
    return visible, notes


def _fastest_first(g: NvmlInfo) -> tuple:
    try:
        cc = tuple(int(p) for p in (g.compute_capability or "0.0").split("."))
    except ValueError:
        cc = (0, 0)
    return (tuple(-p for p in cc), -(g.bandwidth_bytes_per_s or 0.0), -(g.total_bytes or 0), g.pci_bus_id)


def _lookup(order: list[NvmlInfo], entry: str) -> NvmlInfo | None:
    if entry.upper().startswith("GPU-"):
        hits = [g for g in order if g.uuid.lower().startswith(entry.lower())]
        return hits[0] if len(hits) == 1 else None
    if entry.isdigit() and int(entry) < len(order):
        return order[int(entry)]
    return None
