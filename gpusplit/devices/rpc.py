"""Talking to llama.cpp RPC workers from Python, before ggml does.

ggml aborts the whole process when an RPC endpoint does not answer (llama-cpp-facts.md), so every
endpoint is first checked here: a TCP connect and the protocol's HELLO, DEVICE_COUNT and
GET_DEVICE_MEMORY commands, each under a timeout. That also gives the workers' live memory without
the engine installed.

Wire format (ggml-rpc.cpp, protocol 7.x): request = cmd (u8) | size (u64) | data; response =
size (u64) | data.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import GpusplitError, InputError
from ..base.files import open_regular_fd, write_whole
from ..base.paths import cache_dir

if TYPE_CHECKING:
    from .device import Device

RPC_PROTO_MAJOR = 7
RPC_PROTO_VERSION = "7.0.0"  # ggml-rpc.h of the llama.cpp that llama-cpp-python 0.3.36 vendors
CMD_ALLOC_BUFFER = 0
CMD_BUFFER_GET_BASE = 3
CMD_FREE_BUFFER = 4
CMD_SET_TENSOR = 6
CMD_GET_TENSOR = 8
CMD_GET_DEVICE_MEMORY = 11
CMD_HELLO = 14
CMD_DEVICE_COUNT = 15
CONN_CAPS_SIZE = 24
DEFAULT_PORT = 50052
MAX_REMOTE_DEVICES = 16

_ENDPOINT_RE = re.compile(r"^(?P<host>[A-Za-z0-9._-]+):(?P<port>\d{1,5})$")


class EndpointError(InputError, ValueError):
    """An endpoint that is not host:port."""


class RPCError(GpusplitError, RuntimeError):
    """A worker that could not be reached or did not speak llama.cpp's RPC protocol."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"RPC worker {endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason


@dataclass(frozen=True)
class RemoteDevice:
    endpoint: str
    device: int  # index on that worker
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class WorkerInfo:
    endpoint: str
    version: str
    devices: tuple[RemoteDevice, ...]


def parse_endpoint(text: str) -> tuple[str, int]:
    match = _ENDPOINT_RE.match(text.strip())
    if not match:
        raise EndpointError(
            "{p.rpc} {text!r} is not host:port (for example 127.0.0.1:{port})", parameter="rpc", text=text, port=DEFAULT_PORT
        )
    port = int(match["port"])
    if not 1 <= port <= 65535:
        raise EndpointError("{p.rpc} {text!r}: port {port} is not in 1-65535", parameter="rpc", text=text, port=port)
    return match["host"], port


def is_loopback(host: str) -> bool:
    """'localhost', '127.0.0.1', '::1': this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def on_this_machine(endpoint: str | None) -> bool:
    """Whether an RPC worker at `endpoint` ("host:port") runs on this machine (a loopback address)."""
    return endpoint is not None and bool(endpoint) and is_loopback(parse_endpoint(endpoint)[0])


def serves_this_cpu(device: Device, host: Device) -> bool:
    """Whether an RPC device is this machine's CPU served by a worker on it, so that it computes on
    the cores the CPU alone would use. A `gpusplit worker` says what it serves in a note in this
    machine's cache (see `write_worker_note`): only a worker on this machine can leave one. A worker
    without a note (llama.cpp's own rpc-server, which reports only memory) on a loopback address
    is taken for this CPU when its device reports the host's RAM, as a CPU device does."""
    if not on_this_machine(device.endpoint):
        return False
    note = read_worker_note(device.endpoint or "")
    if note is not None:
        return bool(note["devices"]) and all(d.get("type") == "cpu" for d in note["devices"])
    return device.total_bytes == host.total_bytes


MAX_NOTE_BYTES = 1 << 20  # a note is a few hundred bytes; more is not one


def _notes_folder() -> Path:
    return cache_dir() / "workers"


def _note_path(endpoint: str, folder: Path | None = None) -> Path:
    return (folder or _notes_folder()) / (re.sub(r"[^A-Za-z0-9._-]", "_", endpoint) + ".json")


def write_worker_note(
    endpoint: str,
    devices: list[dict[str, str]],
    threads: int,
    folder: Path | None = None,
    build: str | None = None,
    weight_cache: bool = False,
) -> Path:
    """What a worker on this machine serves (devices: name, description, type cpu|gpu), with how
    many threads, which llama.cpp build and whether it keeps a weight cache, for clients on the
    same machine; `remove_worker_note` when it stops. A note whose process is gone is ignored."""
    path = _note_path(endpoint, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    note: dict[str, Any] = {"endpoint": endpoint, "pid": os.getpid(), "threads": threads, "devices": devices}
    if build is not None:
        note["build"] = build
        note["weight_cache"] = weight_cache
    write_whole(path, json.dumps(note).encode(), "worker_note")
    return path


def _read_note(path: Path) -> dict[str, Any]:
    """A note's JSON object: from a regular file only (a FIFO planted there cannot hang the
    reader), at most MAX_NOTE_BYTES read; OSError or ValueError otherwise."""
    with os.fdopen(open_regular_fd(path), "rb") as f:
        if os.fstat(f.fileno()).st_uid != os.getuid():
            raise ValueError(f"{path}: another user's note")  # a shared cache folder: not our workers
        note = json.loads(f.read(MAX_NOTE_BYTES))
    if not isinstance(note, dict):
        raise ValueError(f"{path}: not a worker note")
    return note


def remove_worker_note(endpoint: str, folder: Path | None = None) -> None:
    path = _note_path(endpoint, folder)
    try:
        if _read_note(path).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def same_cpu_service(endpoint: str, folder: Path | None = None) -> tuple[Any, ...] | None:
    """What a live `gpusplit worker` on this machine serves, as a key two workers share only when
    they compute and load alike: this machine's CPU (every device a CPU, by description), at the
    same thread count, with the same llama.cpp build, both with a weight cache or both without.
    None for anything else (a GPU, another machine, a worker whose note does not say its build,
    llama.cpp's own rpc-server)."""
    note = _computing_note(endpoint, folder)
    if note is None:
        return None
    devices, threads, build = note["devices"], note["threads"], note.get("build")
    if not devices or not isinstance(build, str):
        return None
    if not all(isinstance(d, dict) and d.get("type") == "cpu" for d in devices):
        return None
    return (tuple(str(d.get("description", "")) for d in devices), threads, build, note.get("weight_cache") is True)


def served_key(endpoint: str | None) -> str:
    """What a gpusplit worker on this machine says of how it computes, for its speed figures'
    identity: one restarted on the same port with other threads or a weight cache is another
    device, not its old figures. Empty for anything without a note."""
    note = _computing_note(endpoint)
    return "" if note is None else f"|threads={note['threads']}|weight_cache={note.get('weight_cache') is True}"


def _computing_note(endpoint: str | None, folder: Path | None = None) -> dict | None:
    """The note of a live worker on this machine that says its thread count, or None."""
    note = read_worker_note(endpoint, folder) if endpoint and on_this_machine(endpoint) else None
    return note if note is not None and isinstance(note.get("threads"), int) else None


def read_worker_note(endpoint: str, folder: Path | None = None) -> dict | None:
    """The note of a live worker at `endpoint` on this machine, or None."""
    try:
        note = _read_note(_note_path(endpoint, folder))
        pid = int(note["pid"])
        os.kill(pid, 0)  # the worker that wrote it still runs (a dead one's port may be anyone's now)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if note.get("endpoint") != endpoint or not isinstance(note.get("devices"), list):
        return None
    return note


def parse_endpoints(values: list[str] | tuple[str, ...]) -> list[str]:
    """`--rpc a:1,b:2 --rpc c:3` -> ['a:1', 'b:2', 'c:3'], validated, duplicates refused."""
    endpoints: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            host, port = parse_endpoint(part)
            endpoint = f"{host}:{port}"
            if endpoint in endpoints:
                raise EndpointError("{p.rpc} {endpoint} is given twice", parameter="rpc", endpoint=endpoint)
            endpoints.append(endpoint)
    return endpoints


class _Conn:
    def __init__(self, endpoint: str, deadline: float, timeout: float) -> None:
        self.endpoint = endpoint
        self.deadline = deadline
        self.timeout = timeout  # the whole exchange's, as the caller gave it: said when it runs out
        host, port = parse_endpoint(endpoint)
        try:
            self.sock = socket.create_connection((host, port), timeout=self._left())
        except TimeoutError:
            raise RPCError(endpoint, f"no answer within {timeout:g} s (is the worker running and reachable?)") from None
        except ConnectionRefusedError:
            raise RPCError(endpoint, "connection refused (no worker listening there; start one with `gpusplit worker`)") from None
        except OSError as exc:
            raise RPCError(endpoint, f"cannot connect: {exc.strerror or exc}") from None

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise RPCError(self.endpoint, f"no answer within {self.timeout:g} s (busy with another client, or not an RPC worker)")
        return left

    def _recv_exact(self, n: int) -> bytes:
        data = bytearray(n)
        view = memoryview(data)
        got = 0
        while got < n:
            self.sock.settimeout(self._left())
            try:
                count = self.sock.recv_into(view[got:])
            except TimeoutError:
                raise RPCError(
                    self.endpoint, f"no answer within {self.timeout:g} s (busy with another client, or not an RPC worker)"
                ) from None
            except OSError as exc:
                raise RPCError(self.endpoint, f"connection failed: {exc.strerror or exc}") from None
            if not count:
                raise RPCError(self.endpoint, "closed the connection (not a llama.cpp RPC worker, or a different version)")
            got += count
        return bytes(data)

    def send(self, cmd: int, payload: bytes) -> None:
        """A command the server answers nothing to (SET_TENSOR, FREE_BUFFER)."""
        self.sock.settimeout(self._left())
        try:
            self.sock.sendall(struct.pack("<BQ", cmd, len(payload)) + payload)
        except OSError as exc:
            raise RPCError(self.endpoint, f"send failed: {exc.strerror or exc}") from None

    def call(self, cmd: int, payload: bytes, response_size: int) -> bytes:
        self.send(cmd, payload)
        (size,) = struct.unpack("<Q", self._recv_exact(8))
        if size != response_size:
            raise RPCError(self.endpoint, f"unexpected reply of {size} bytes to command {cmd} (not a compatible RPC worker)")
        return self._recv_exact(size)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def version_mismatch(theirs: str) -> str:
    """One line: both protocol versions and the fix."""
    return (
        f"speaks RPC protocol {theirs}, this llama.cpp speaks {RPC_PROTO_VERSION}: run the same llama.cpp on both "
        "sides (`gpusplit worker` from the same gpusplit and llama-cpp-python, or llama.cpp's `ggml-rpc-server`, "
        "`rpc-server` in older builds, from the release llama-cpp-python 0.3.36 vendors)"
    )


def _older_hello(endpoint: str, deadline: float, timeout: float) -> bytes | None:
    """The version of a server that speaks the HELLO of protocols 2-6 (no payload, 3 bytes back), or None."""
    try:
        conn = _Conn(endpoint, deadline, timeout)
    except RPCError:
        return None
    try:
        return conn.call(CMD_HELLO, b"", 3)
    except RPCError:
        return None
    finally:
        conn.close()


def probe(endpoint: str, timeout: float = 3.0) -> WorkerInfo:
    """Handshake with a worker and read its devices' live memory, all within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    conn = _Conn(endpoint, deadline, timeout)
    try:
        try:
            hello = conn.call(CMD_HELLO, b"\0" * CONN_CAPS_SIZE, 4 + CONN_CAPS_SIZE)
        except RPCError:
            # A server of protocol 2-6 takes HELLO without its connection capabilities and hangs up on
            # ours: ask again as it expects, to name its version rather than a closed connection.
            older = _older_hello(endpoint, deadline, timeout)
            if older is None:
                raise
            hello = older
        major, minor, patch = hello[0], hello[1], hello[2]
        if major != RPC_PROTO_MAJOR:
            raise RPCError(endpoint, version_mismatch(f"{major}.{minor}.{patch}"))
        (count,) = struct.unpack("<I", conn.call(CMD_DEVICE_COUNT, b"", 4))
        if count > MAX_REMOTE_DEVICES:
            raise RPCError(endpoint, f"claims {count} devices (more than {MAX_REMOTE_DEVICES})")
        devices = []
        for device in range(count):
            free, total = struct.unpack("<QQ", conn.call(CMD_GET_DEVICE_MEMORY, struct.pack("<I", device), 16))
            devices.append(RemoteDevice(endpoint, device, free, total))
        return WorkerInfo(endpoint, f"{major}.{minor}.{patch}", tuple(devices))
    finally:
        conn.close()


def round_trips(endpoint: str, count: int = 20, timeout: float = 3.0) -> list[float]:
    """Seconds of `count` request/answer exchanges (device count queries) on one connection, after
    the handshake: the latency a decode pays for each of its round trips to the worker."""
    conn = _Conn(endpoint, time.monotonic() + timeout, timeout)
    try:
        conn.call(CMD_HELLO, b"\0" * CONN_CAPS_SIZE, 4 + CONN_CAPS_SIZE)
        times = []
        for _ in range(count):
            started = time.perf_counter()
            conn.call(CMD_DEVICE_COUNT, b"", 4)
            times.append(time.perf_counter() - started)
        return times
    finally:
        conn.close()


def _rpc_tensor(buffer: int, data: int, nbytes: int) -> bytes:
    """ggml-rpc.cpp's packed rpc_tensor (296 bytes): an F32 vector of nbytes at `data` in `buffer`."""
    ne = (nbytes // 4, 1, 1, 1)
    nb = (4, nbytes, nbytes, nbytes)
    return (
        struct.pack("<QIQ4I4II", 0, 0, buffer, *ne, *nb, 0)
        + b"\0" * 64  # op_params
        + struct.pack("<i", 0)  # flags
        + b"\0" * (8 * 10)  # src
        + struct.pack("<QQQ", 0, 0, data)  # view_src, view_offs, data
        + b"\0" * 64  # name
        + struct.pack("<i", 0)  # use_count
    )


def link_rates(endpoint: str, nbytes: int = 8 << 20, rounds: int = 2, timeout: float = 120.0) -> tuple[float, float]:
    """Bytes per second to the worker and back, as llama.cpp moves them: SET_TENSOR of `nbytes`
    into a buffer on its first device (then one round trip, as the server answers nothing to it),
    and GET_TENSOR of the same bytes; the faster of `rounds` after a warm-up round (TCP's window
    grows over the first ones). The round trip is taken out of both."""
    nbytes -= nbytes % 4
    conn = _Conn(endpoint, time.monotonic() + timeout, timeout)
    buffer = None
    try:
        conn.call(CMD_HELLO, b"\0" * CONN_CAPS_SIZE, 4 + CONN_CAPS_SIZE)
        rtt = min(_timed(lambda: conn.call(CMD_DEVICE_COUNT, b"", 4)) for _ in range(5))
        buffer, size = struct.unpack("<QQ", conn.call(CMD_ALLOC_BUFFER, struct.pack("<IQ", 0, nbytes), 16))
        if not buffer or size < nbytes:
            raise RPCError(endpoint, f"could not allocate {nbytes} bytes to measure its link")
        (base,) = struct.unpack("<Q", conn.call(CMD_BUFFER_GET_BASE, struct.pack("<Q", buffer), 8))
        tensor = _rpc_tensor(buffer, base, nbytes)
        payload = tensor + struct.pack("<BQ", 0, 0) + bytes(nbytes)  # cache flag (not to the worker's -c cache), offset
        request = tensor + struct.pack("<QQ", 0, nbytes)

        def upload() -> None:
            conn.send(CMD_SET_TENSOR, payload)
            conn.call(CMD_DEVICE_COUNT, b"", 4)

        def download() -> None:
            conn.call(CMD_GET_TENSOR, request, nbytes)

        up = min(_timed(upload) for _ in range(rounds + 1))
        down = min(_timed(download) for _ in range(rounds + 1))
        return nbytes / max(up - rtt, 1e-9), nbytes / max(down - rtt, 1e-9)
    finally:
        if buffer:
            try:
                conn.send(CMD_FREE_BUFFER, struct.pack("<Q", buffer))
            except RPCError:
                pass  # the worker frees a client's buffers when it hangs up
        conn.close()


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started
