"""ctypes over the ggml backend registry that libllama uses (the `libggml.so.0` instance).

llama-cpp-python ships `libggml.so`, `libggml.so.0` and `libggml.so.0.x` as three copies; only
`libggml.so.0` (libllama's DT_NEEDED soname) is the instance whose registry model loading reads,
so devices and RPC servers are read and registered there. Loading it by path before or after
`import llama_cpp` gives the same instance, and costs ~30 ms instead of importing llama_cpp.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..devices.cpu import CpuBackend, repack_level
from . import REINSTALL_HINT, REINSTALL_RPC_HINT, EngineError, engine_lib_dir

if TYPE_CHECKING:
    pass


class _Caps(ctypes.Structure):
    _fields_ = [
        ("async_", ctypes.c_bool),
        ("host_buffer", ctypes.c_bool),
        ("buffer_from_host_ptr", ctypes.c_bool),
        ("events", ctypes.c_bool),
        ("mmap_support", ctypes.c_bool),
    ]


class _Props(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("description", ctypes.c_char_p),
        ("memory_free", ctypes.c_size_t),
        ("memory_total", ctypes.c_size_t),
        ("type", ctypes.c_int),
        ("device_id", ctypes.c_char_p),
        ("caps", _Caps),
    ]


@dataclass(frozen=True)
class RawDevice:
    """One entry of ggml's device registry, in registry order."""

    registry_index: int
    name: str
    description: str
    backend: str  # the backend registry's name: CUDA, Vulkan, Metal, RPC, CPU, BLAS, ...
    type: int  # ggml_backend_dev_type
    free_bytes: int
    total_bytes: int
    device_id: str | None  # PCI bus id where the backend knows it
    supports_split_buffer: bool  # ggml_backend_split_buffer_type exists (llama.cpp's row mode)


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_registered_rpc: set[str] = set()


def _fn(lib: ctypes.CDLL, name: str, restype: object, *argtypes: object) -> object:
    func = getattr(lib, name)
    func.restype = restype
    func.argtypes = list(argtypes)
    return func


def ggml() -> ctypes.CDLL:
    """The libggml.so.0 that libllama uses, with the prototypes gpusplit calls."""
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        lib_dir = engine_lib_dir()
        if lib_dir is None:
            raise EngineError("the llama.cpp engine (llama-cpp-python) is not installed", REINSTALL_HINT)
        try:
            lib = ctypes.CDLL(os.path.join(lib_dir, "libggml.so.0"), mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            raise EngineError(f"cannot load llama.cpp's libggml: {exc}", REINSTALL_HINT) from None
        vp, sz, cp = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
        _fn(lib, "ggml_backend_dev_count", sz)
        _fn(lib, "ggml_backend_dev_get", vp, sz)
        _fn(lib, "ggml_backend_dev_name", cp, vp)
        _fn(lib, "ggml_backend_dev_description", cp, vp)
        _fn(lib, "ggml_backend_dev_type", ctypes.c_int, vp)
        _fn(lib, "ggml_backend_dev_memory", None, vp, ctypes.POINTER(sz), ctypes.POINTER(sz))
        _fn(lib, "ggml_backend_dev_get_props", None, vp, ctypes.POINTER(_Props))
        _fn(lib, "ggml_backend_dev_backend_reg", vp, vp)
        _fn(lib, "ggml_backend_dev_by_name", vp, cp)
        _fn(lib, "ggml_backend_reg_name", cp, vp)
        _fn(lib, "ggml_backend_reg_by_name", vp, cp)
        _fn(lib, "ggml_backend_reg_get_proc_address", vp, vp, cp)
        _fn(lib, "ggml_backend_register", None, vp)
        _fn(lib, "ggml_backend_buft_name", cp, vp)
        _lib = lib
        return lib


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


def list_devices() -> list[RawDevice]:
    """Every device in ggml's registry, in registry order, with live memory."""
    lib = ggml()
    devices = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        props = _Props()
        lib.ggml_backend_dev_get_props(dev, ctypes.byref(props))
        reg = lib.ggml_backend_dev_backend_reg(dev)
        backend = _text(lib.ggml_backend_reg_name(reg)) if reg else ""
        split = bool(reg) and bool(lib.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_split_buffer_type"))
        devices.append(
            RawDevice(
                registry_index=i,
                name=_text(props.name) or _text(lib.ggml_backend_dev_name(dev)),
                description=_text(props.description),
                backend=backend,
                type=int(props.type),
                free_bytes=int(props.memory_free),
                total_bytes=int(props.memory_total),
                device_id=_text(props.device_id) or None,
                supports_split_buffer=split,
            )
        )
    return devices


class _Feature(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_char_p)]


def cpu_backend_info() -> CpuBackend:
    """The CPU backend's extra buffer types (ggml_backend_dev_get_extra_bufts, in the order llama.cpp
    tries them), its build's features (ggml_backend_get_features: AVX512, AMX_INT8, DOTPROD,
    KLEIDIAI, REPACK, ...) and the CPU_REPACK rules they select (cpu_buffers.REPACK_RULES). The AMX
    buffer type exists only in a build for a CPU with AMX, and only once the kernel grants the
    tile state, so the list is what llama.cpp will use on this machine."""
    lib = ggml()
    reg = lib.ggml_backend_reg_by_name(b"CPU")
    dev = lib.ggml_backend_dev_by_name(b"CPU")

    def listed(proc: bytes, item: type, arg: int | None) -> list[Any]:
        """A NULL-terminated array that a CPU backend function returns (empty if it has none)."""
        address = lib.ggml_backend_reg_get_proc_address(reg, proc) if reg and arg else None
        array = ctypes.CFUNCTYPE(ctypes.POINTER(item), ctypes.c_void_p)(address)(arg) if address else None
        out: list[Any] = []
        while array and (array[len(out)].name if item is _Feature else array[len(out)]):
            out.append(array[len(out)])
        return out

    features = [
        _text(f.name) if _text(f.value) in ("1", "") else f"{_text(f.name)}={_text(f.value)}"
        for f in listed(b"ggml_backend_get_features", _Feature, reg)
    ]
    extra = [_text(lib.ggml_backend_buft_name(b)) for b in listed(b"ggml_backend_dev_get_extra_bufts", ctypes.c_void_p, dev)]
    return CpuBackend(tuple(extra), repack_level(features), tuple(features), "engine")


def cpu_repack_level() -> str:
    """`avx512`, `avx2`, `arm-dotprod` or `none`: the CPU_REPACK rules of this machine's build."""
    return cpu_backend_info().repack


def supports_rpc() -> bool:
    lib = ggml()
    return bool(lib.ggml_backend_reg_by_name(b"RPC"))


def add_rpc_server(endpoint: str) -> None:
    """Register an RPC worker in libllama's registry, once per process.

    ggml aborts the process when the endpoint does not answer, so callers probe it first
    (`gpusplit.devices.rpc.probe`); the engine's model loading runs in a child process anyway.
    """
    lib = ggml()
    with _lock:
        if endpoint in _registered_rpc:
            return
        reg = lib.ggml_backend_reg_by_name(b"RPC")
        if not reg:
            raise EngineError("the installed llama-cpp-python was built without RPC", REINSTALL_RPC_HINT)
        address = lib.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_rpc_add_server")
        if not address:
            raise EngineError("this llama.cpp's RPC backend cannot add servers", REINSTALL_RPC_HINT)
        add_server = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)(address)
        server_reg = add_server(endpoint.encode())
        if not server_reg:
            raise EngineError(f"RPC worker {endpoint} was refused by llama.cpp")
        lib.ggml_backend_register(server_reg)
        _registered_rpc.add(endpoint)


def rpc_library() -> ctypes.CDLL:
    """libggml-rpc.so (for the worker's server entry point)."""
    ggml()
    lib_dir = engine_lib_dir()
    assert lib_dir is not None
    path = os.path.join(lib_dir, "libggml-rpc.so.0")
    if not os.path.exists(path):
        raise EngineError("the installed llama-cpp-python was built without RPC", REINSTALL_RPC_HINT)
    return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


def cpu_buffer_type() -> int:
    """ggml_backend_cpu_buffer_type() of the CPU backend libllama uses (for tensor overrides)."""
    ggml()
    lib_dir = engine_lib_dir()
    assert lib_dir is not None
    cpu = ctypes.CDLL(os.path.join(lib_dir, "libggml-cpu.so.0"), mode=ctypes.RTLD_GLOBAL)
    fn = cpu.ggml_backend_cpu_buffer_type
    fn.restype = ctypes.c_void_p
    fn.argtypes = []
    return int(fn())
