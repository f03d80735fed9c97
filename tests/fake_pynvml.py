"""A recorded fake of the pynvml (nvidia-ml-py) calls gpusplit.devices.nvml makes.

`FakePynvml(gpus, ...)` stands in for the pynvml module: same function names and signatures, same
constants, an NVMLError hierarchy named and numbered as pynvml's. Each GPU is a dict of recorded
answers; an answer that is an NVMLError class (or instance) is raised instead, as NVML would.
tests/test_nvml.py checks these names, signatures and constants against the real pynvml.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

MiB = 1024 * 1024


class NVMLError(Exception):
    value = 999  # NVML_ERROR_UNKNOWN
    _strings = {
        2: "Invalid Argument",
        3: "Not Supported",
        9: "Driver Not Loaded",
        12: "NVML Shared Library Not Found",
        13: "Function Not Found",
        15: "GPU is lost",
        18: "RM has detected an NVML/RM version mismatch.",
        1: "Uninitialized",
    }

    def __init__(self, value: int | None = None) -> None:
        super().__init__()
        if value is not None:
            self.value = value

    def __str__(self) -> str:
        return self._strings.get(self.value, f"NVML Error with code {self.value}")


def _error(name: str, value: int) -> type[NVMLError]:
    return type(name, (NVMLError,), {"value": value})


NVMLError_Uninitialized = _error("NVMLError_Uninitialized", 1)
NVMLError_InvalidArgument = _error("NVMLError_InvalidArgument", 2)
NVMLError_NotSupported = _error("NVMLError_NotSupported", 3)
NVMLError_DriverNotLoaded = _error("NVMLError_DriverNotLoaded", 9)
NVMLError_LibraryNotFound = _error("NVMLError_LibraryNotFound", 12)
NVMLError_FunctionNotFound = _error("NVMLError_FunctionNotFound", 13)
NVMLError_GpuIsLost = _error("NVMLError_GpuIsLost", 15)
NVMLError_LibRmVersionMismatch = _error("NVMLError_LibRmVersionMismatch", 18)

ERRORS = {
    cls.__name__: cls
    for cls in (
        NVMLError,
        NVMLError_Uninitialized,
        NVMLError_InvalidArgument,
        NVMLError_NotSupported,
        NVMLError_DriverNotLoaded,
        NVMLError_LibraryNotFound,
        NVMLError_FunctionNotFound,
        NVMLError_GpuIsLost,
        NVMLError_LibRmVersionMismatch,
    )
}
CONSTANTS = {
    "NVML_FEATURE_DISABLED": 0,
    "NVML_FEATURE_ENABLED": 1,
    "NVML_CLOCK_MEM": 2,
    "NVML_NVLINK_MAX_LINKS": 36,
    "nvmlMemory_v2": 0x2000028,
}


def _mem(total: int, reserved: int, used: int) -> dict[str, Any]:
    """Both views of one GPU's memory: v2 keeps the driver's reservation apart, v1 counts it as used."""
    free = total - reserved - used
    return {
        "memory_v2": SimpleNamespace(version=CONSTANTS["nvmlMemory_v2"], total=total, reserved=reserved, free=free, used=used),
        "memory_v1": SimpleNamespace(total=total, free=free, used=reserved + used),
    }


# nvidia-smi on an idle HGX H100 node, driver 550.54.15: "1MiB / 81559MiB", 528 MiB reserved.
H100_SXM = {
    "name": "NVIDIA H100 80GB HBM3",
    "uuid": "GPU-5e1c3a9e-7d2b-4f4e-9c1a-2b8f6d0e4a11",
    "busId": b"00000000:18:00.0",
    **_mem(81559 * MiB, 528 * MiB, 1 * MiB),
    "curr_gen": 5,
    "curr_width": 16,
    "max_gen": 5,
    "max_width": 16,
    "nvlink": [1] * 18,  # 18 NVLink 4 links, all up; link 18 and above: InvalidArgument
    "cc": (9, 0),
    "bus_width": 5120,
    "clock_mem": 2619,
}

# A workstation: RTX 3060 12GB in an x8 slot (idling at gen 1) below an RTX 4090 in the x16 slot.
RTX3060 = {
    "name": "NVIDIA GeForce RTX 3060",
    "uuid": "GPU-8f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
    "busId": b"00000000:21:00.0",
    **_mem(12288 * MiB, 261 * MiB, 12 * MiB),
    "curr_gen": 1,
    "curr_width": 8,
    "max_gen": 4,
    "max_width": 8,
    "nvlink": NVMLError_NotSupported,
    "cc": (8, 6),
    "bus_width": 192,
    "clock_mem": 7501,
}
RTX4090 = {
    "name": "NVIDIA GeForce RTX 4090",
    "uuid": "GPU-8f3ab0c1-d2e3-f405-1627-38495a6b7c8d",
    "busId": b"00000000:41:00.0",
    **_mem(24564 * MiB, 309 * MiB, 427 * MiB),
    "curr_gen": 4,
    "curr_width": 16,
    "max_gen": 4,
    "max_width": 16,
    "nvlink": NVMLError_NotSupported,
    "cc": (8, 9),
    "bus_width": 384,
    "clock_mem": 10501,
}


class FakePynvml:
    """Module-like: pass an instance as `query_nvml(pynvml_module=...)`. `calls` records the calls."""

    def __init__(
        self,
        gpus: list[dict[str, Any]],
        driver: str = "550.54.15",
        cuda: int = 12040,
        init_error: BaseException | type[BaseException] | None = None,
        missing: tuple[str, ...] = (),
    ) -> None:
        self._gpus = gpus
        self._driver = driver
        self._cuda = cuda
        self._init_error = init_error
        self._missing = set(missing)  # names this (older) pynvml lacks
        self._initialised = 0
        self.calls: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_") and name in object.__getattribute__(self, "_missing"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    # -- plumbing ------------------------------------------------------------------------------
    def _record(self, name: str) -> None:
        self.calls.append(name)
        if not self._initialised and name != "nvmlInit":
            raise NVMLError_Uninitialized()

    def _answer(self, name: str, handle: Any, key: str) -> Any:
        self._record(name)
        value = self._gpus[handle.index][key]
        if (isinstance(value, type) and issubclass(value, BaseException)) or isinstance(value, BaseException):
            raise value
        return value

    # -- what gpusplit uses (signatures as pynvml's) -------------------------------------------
    def nvmlInit(self) -> None:
        self._record("nvmlInit")
        if self._init_error is not None:
            raise self._init_error
        self._initialised += 1

    def nvmlShutdown(self) -> None:
        self._record("nvmlShutdown")
        self._initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._record("nvmlSystemGetDriverVersion")
        return self._driver

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._record("nvmlSystemGetCudaDriverVersion_v2")
        return self._cuda

    def nvmlDeviceGetCount(self) -> int:
        self._record("nvmlDeviceGetCount")
        return len(self._gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self._record("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self._gpus):
            raise NVMLError_InvalidArgument()
        if self._gpus[index].get("lost"):
            raise NVMLError_GpuIsLost()
        return SimpleNamespace(index=index)

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self._answer("nvmlDeviceGetName", handle, "name")

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._answer("nvmlDeviceGetUUID", handle, "uuid")

    def nvmlDeviceGetPciInfo(self, handle: Any) -> Any:
        bus_id = self._answer("nvmlDeviceGetPciInfo", handle, "busId")
        return SimpleNamespace(busId=bus_id, busIdLegacy=bus_id[-12:] if bus_id else bus_id)

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> Any:
        if not version:
            return self._answer("nvmlDeviceGetMemoryInfo", handle, "memory_v1")
        if version != CONSTANTS["nvmlMemory_v2"]:
            raise NVMLError_InvalidArgument()
        return self._answer("nvmlDeviceGetMemoryInfo_v2", handle, "memory_v2")

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: Any) -> int:
        return self._answer("nvmlDeviceGetCurrPcieLinkGeneration", handle, "curr_gen")

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: Any) -> int:
        return self._answer("nvmlDeviceGetCurrPcieLinkWidth", handle, "curr_width")

    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle: Any) -> int:
        return self._answer("nvmlDeviceGetMaxPcieLinkGeneration", handle, "max_gen")

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle: Any) -> int:
        return self._answer("nvmlDeviceGetMaxPcieLinkWidth", handle, "max_width")

    def nvmlDeviceGetNvLinkState(self, device: Any, link: int) -> int:
        states = self._answer("nvmlDeviceGetNvLinkState", device, "nvlink")
        if not 0 <= link < min(len(states), CONSTANTS["NVML_NVLINK_MAX_LINKS"]):
            raise NVMLError_InvalidArgument()
        return states[link]

    def nvmlDeviceGetCudaComputeCapability(self, handle: Any) -> tuple[int, int]:
        return self._answer("nvmlDeviceGetCudaComputeCapability", handle, "cc")

    def nvmlDeviceGetMemoryBusWidth(self, device: Any) -> int:
        return self._answer("nvmlDeviceGetMemoryBusWidth", device, "bus_width")

    def nvmlDeviceGetMaxClockInfo(self, handle: Any, type: int) -> int:
        if type != CONSTANTS["NVML_CLOCK_MEM"]:
            raise NVMLError_InvalidArgument()  # only the memory clock is recorded
        return self._answer("nvmlDeviceGetMaxClockInfo", handle, "clock_mem")


for _name, _value in {**ERRORS, **CONSTANTS}.items():
    setattr(FakePynvml, _name, _value)

FAKE_FUNCTIONS = sorted(n for n in vars(FakePynvml) if n.startswith("nvml") and callable(vars(FakePynvml)[n]))


# -- recorded boxes --------------------------------------------------------------------------------
def h100_box() -> FakePynvml:
    return FakePynvml([dict(H100_SXM)], driver="550.54.15", cuda=12040)


def mixed_box() -> FakePynvml:
    """NVML index order is PCI order: the 3060 (21:00.0) is GPU 0, the 4090 (41:00.0) GPU 1."""
    return FakePynvml([dict(RTX3060), dict(RTX4090)], driver="535.171.04", cuda=12020)


def old_driver_box() -> FakePynvml:
    """A driver without memory v2 or the bus-width query, and a 3060 that will not tell its link."""
    gpus = [dict(RTX3060), dict(RTX4090)]
    for gpu in gpus:
        gpu["memory_v2"] = NVMLError_FunctionNotFound
        gpu["bus_width"] = NVMLError_FunctionNotFound
    gpus[0]["curr_gen"] = NVMLError_NotSupported
    gpus[0]["curr_width"] = NVMLError_NotSupported
    gpus[0]["cc"] = NVMLError_NotSupported
    return FakePynvml(gpus, driver="470.223.02", cuda=11040)


def failing_init(error: BaseException | type[BaseException]) -> FakePynvml:
    return FakePynvml([], init_error=error)
