"""`gpusplit worker`: serve this machine's ggml devices over llama.cpp's RPC protocol.

The server loop (`ggml_backend_rpc_start_server`) blocks in C and has no stop call, so it runs in a
daemon thread while the main thread waits for SIGINT/SIGTERM and then ends the process.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..devices.device import DEV_TYPE_CPU
from ..devices.rpc import remove_worker_note, write_worker_note
from . import EngineInputError, engine_build_id
from .registry import RawDevice, ggml, list_devices, rpc_library


@dataclass(frozen=True)
class WorkerPlan:
    endpoint: str
    devices: tuple[RawDevice, ...]
    threads: int
    cache_dir: Path | None = None  # llama.cpp's RPC weight cache (ggml-rpc-server -c): None for none


def default_cache_dir() -> Path:
    """Where llama.cpp's `ggml-rpc-server -c` keeps its weight cache (tools/rpc/rpc-server.cpp's
    fs_get_cache_directory() / "rpc"), so that both servers share one."""
    if os.environ.get("LLAMA_CACHE"):
        return Path(os.environ["LLAMA_CACHE"]) / "rpc"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "llama.cpp" / "rpc"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "llama.cpp" / "rpc"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llama.cpp" / "rpc"


def choose_devices(names: list[str]) -> tuple[RawDevice, ...]:
    """The named devices, or (like llama.cpp's rpc-server) every GPU, else the CPU."""
    available = [d for d in list_devices() if d.backend != "RPC"]
    if names:
        by_name = {d.name.lower(): d for d in available}
        chosen = []
        for name in names:
            dev = by_name.get(name.strip().lower())
            if dev is None:
                listing = ", ".join(d.name for d in available)
                raise EngineInputError(
                    "no local device named {name!r} (available: {listing})", parameter="devices", name=name, listing=listing
                )
            chosen.append(dev)
        return tuple(chosen)
    gpus = [d for d in available if d.type not in (0, 3)]
    if gpus:
        return tuple(gpus)
    return tuple(d for d in available if d.type == 0)[:1]


def check_port(host: str, port: int) -> None:
    """Fail with one clear line when the address is taken, before the C server tries."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise EngineInputError(
                    "port {port} on {host} is already in use",
                    "pick another with {p.port}",
                    parameter="port",
                    port=port,
                    host=host,
                ) from None
            raise EngineInputError(
                "cannot listen on {host}:{port}: {why}", parameter="host", host=host, port=port, why=exc.strerror or str(exc)
            ) from None


def serve(plan: WorkerPlan, on_started: Callable[[], None] | None = None) -> int:
    """Serve until SIGINT/SIGTERM (exit 0) or until the server loop fails (exit 1)."""
    ggml()
    rpc = rpc_library()
    start = rpc.ggml_backend_rpc_start_server
    start.restype = None
    start.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
    lib = ggml()
    handles = (ctypes.c_void_p * len(plan.devices))(*(lib.ggml_backend_dev_by_name(d.name.encode()) for d in plan.devices))

    stopped = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stopped.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def run_server() -> None:
        cache = str(plan.cache_dir).encode() if plan.cache_dir is not None else None
        start(plan.endpoint.encode(), cache, plan.threads, len(plan.devices), handles)
        stopped.set()  # the loop only returns on failure

    thread = threading.Thread(target=run_server, name="rpc-server", daemon=True)
    thread.start()
    # Clients on this machine read what is served from here (devices.rpc.serves_this_cpu).
    served = [
        {"name": d.name, "description": d.description, "type": "cpu" if d.type == DEV_TYPE_CPU else "gpu"} for d in plan.devices
    ]
    write_worker_note(plan.endpoint, served, plan.threads, build=engine_build_id(), weight_cache=plan.cache_dir is not None)
    if on_started is not None:
        on_started()
    try:
        while not stopped.wait(0.2):
            pass
    finally:
        remove_worker_note(plan.endpoint)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if received else 1
