"""Device inventory: llama.cpp's order, NVML matched by PCI bus id, hypothetical devices, RPC probing."""

from __future__ import annotations

import json
import socket
import time

import fake_pynvml
import pytest

from gpusplit.base.errors import InputError
from gpusplit.base.units import size_from_text as parse_size
from gpusplit.devices.device import Device, pick_best_gpu
from gpusplit.devices.hypothetical import hypothetical_devices
from gpusplit.devices.inventory import RegistryDevice, detect, from_nvml_and_workers, from_registry, order_like_llama
from gpusplit.devices.nvml import query_nvml
from gpusplit.devices.rpc import EndpointError, RPCError, parse_endpoints, probe
from gpusplit.documents.read import load_devices_file

GIB = 2**30


def _reg(name, backend, dev_type, device_id=None, free=8 * GIB):
    return RegistryDevice(name, f"{name} desc", backend, dev_type, free, 2 * free, device_id)


def test_llama_order_puts_rpc_first_dedups_gpus_and_drops_cpu():
    registry = [
        _reg("CPU", "CPU", 0),
        _reg("CUDA0", "CUDA", 1, "0000:41:00.0"),
        _reg("Vulkan0", "Vulkan", 1, "0000:41:00.0"),  # the same card seen by a second backend
        _reg("CUDA1", "CUDA", 1, "0000:21:00.0"),
        _reg("BLAS", "BLAS", 3),
        _reg("RPC0", "RPC", 1),
        _reg("Vulkan1", "Vulkan", 2),  # an iGPU: dropped while discrete GPUs exist
    ]
    assert [d.name for d in order_like_llama(registry)] == ["RPC0", "CUDA0", "CUDA1"]


def test_integrated_gpus_only_without_discrete_ones():
    registry = [_reg("CPU", "CPU", 0), _reg("Vulkan0", "Vulkan", 2), _reg("RPC0", "RPC", 1)]
    # RPC workers do not count as discrete GPUs: the local iGPU stays.
    assert [d.name for d in order_like_llama(registry)] == ["RPC0", "Vulkan0"]


def test_nvml_is_matched_by_pci_bus_id_not_by_index():
    nvml = query_nvml(fake_pynvml.mixed_box())
    # NVML numbers by bus: the 3060 (21:00.0) is 0, the 4090 (41:00.0) is 1; CUDA puts the 4090 first.
    registry = [_reg("CUDA0", "CUDA", 1, "0000:41:00.0"), _reg("CUDA1", "CUDA", 1, "0000:21:00.0")]
    devices = from_registry(registry, nvml, [])
    assert [d.nvml.name for d in devices] == ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3060"]
    assert [d.nvml.index for d in devices] == [1, 0]
    assert devices[0].bandwidth_bytes_per_s == pytest.approx(1008e9, rel=0.01)
    assert devices[0].link_bytes_per_s == pytest.approx(16 * 1.969e9)


def test_without_the_engine_nvml_and_cuda_visible_devices_decide():
    nvml = query_nvml(fake_pynvml.mixed_box())
    devices, _ = from_nvml_and_workers(nvml, [], env={"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "1"})
    assert [(d.name, d.description, d.index) for d in devices] == [("CUDA0", "NVIDIA GeForce RTX 4090", 0)]
    devices, _ = from_nvml_and_workers(nvml, [], env={"CUDA_VISIBLE_DEVICES": ""})
    assert devices == []


def test_no_driver_gives_a_cpu_only_inventory(monkeypatch):
    monkeypatch.setenv("GPUSPLIT_NO_ENGINE", "1")
    inventory = detect(nvml_module=fake_pynvml.failing_init(fake_pynvml.NVMLError_LibraryNotFound))
    assert inventory.devices == []
    assert inventory.host.total_bytes > 0 and inventory.host.backend == "CPU"
    assert inventory.nvml is not None and not inventory.nvml.available
    assert "no-gpu-found" in [n.code for n in inventory.notes]


def test_best_gpu_most_free_memory_then_bandwidth():
    a = Device("GPU0", "", "CUDA", "gpu", 24 * GIB, 20 * GIB, index=0, bandwidth_bytes_per_s=1e12)
    b = Device("GPU1", "", "CUDA", "gpu", 24 * GIB, 20 * GIB, index=1, bandwidth_bytes_per_s=2e12)
    c = Device("GPU2", "", "CUDA", "gpu", 48 * GIB, 10 * GIB, index=2, bandwidth_bytes_per_s=3e12)
    assert pick_best_gpu([a, b, c]) is b


@pytest.mark.parametrize(
    ("spec", "total", "bandwidth", "count"),
    [
        ("24GiB", 24 * GIB, None, 1),
        ("8GB", 8 * 10**9, None, 1),
        ("16GiB@448GB/s", 16 * GIB, 448e9, 1),
        ("RTX 4090", 24 * GIB, 1008e9, 1),
        ("A100-80GB", 80 * GIB, None, 1),
        ("2xRTX 3090", 24 * GIB, 936e9, 2),
        ("0.5TiB@3.35TB/s", 2**39, 3.35e12, 1),
    ],
)
def test_hypothetical_gpu_specs(spec, total, bandwidth, count):
    devices = hypothetical_devices([spec])
    assert len(devices) == count
    assert [d.name for d in devices] == [f"GPU{i}" for i in range(count)]
    assert all(d.total_bytes == total == d.free_bytes for d in devices)
    if bandwidth is not None:
        assert devices[0].bandwidth_bytes_per_s == pytest.approx(bandwidth)


@pytest.mark.parametrize("bad", ["", "0GiB", "-4GiB", "24 furlongs", "24GiB@fast", "nan GiB", "99xRTX 4090", "1e99GiB"])
def test_bad_gpu_specs_are_refused(bad):
    with pytest.raises((InputError, ValueError)):
        hypothetical_devices([bad])


def test_parse_size_units_are_exact():
    assert parse_size("1.5GiB") == 3 * 2**29
    assert parse_size("512MiB") == 2**29
    assert parse_size("1TB") == 10**12


def test_devices_file_round_trip(tmp_path, cli):
    result = cli("devices", "--json", "--gpu", "RTX 4090", "--gpu", "8GiB@256GB/s")
    assert result.exit_code == 0
    path = tmp_path / "inventory.json"
    path.write_text(result.stdout)
    doc = load_devices_file(str(path))
    assert [(d.name, d.total_bytes, d.bandwidth_bytes_per_s) for d in doc.devices] == [
        ("GPU0", 24 * GIB, 1008e9),
        ("GPU1", 8 * GIB, 256e9),
    ]
    assert doc.host.backend == "CPU"


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        ("not json", "not JSON"),
        ('{"devices": []}', "not a gpusplit.devices/1 or gpusplit.devices/2 document"),
        ('{"schema": "gpusplit.devices/2", "devices": [{"name": "x"}]}', r"devices\[0\].description: is missing"),
    ],
)
def test_bad_devices_files(tmp_path, content, phrase):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=phrase):
        load_devices_file(str(path))


def test_endpoint_parsing():
    assert parse_endpoints(["127.0.0.1:50052,localhost:1", "h:2"]) == ["127.0.0.1:50052", "localhost:1", "h:2"]
    for bad in (["nohost"], ["h:0"], ["h:99999"], ["a:1,a:1"], ["h:port"]):
        with pytest.raises(EndpointError):
            parse_endpoints(bad)


def test_refused_worker_fails_at_once_naming_it():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(RPCError, match=f"127.0.0.1:{port}: connection refused"):
        probe(f"127.0.0.1:{port}", timeout=2)


def test_silent_worker_times_out_naming_it(cli):
    # A listener that accepts but never answers: the handshake must time out, not hang.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    try:
        started = time.monotonic()
        result = cli("devices", "--rpc", f"127.0.0.1:{port}", "--timeout", "0.5")
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert result.exit_code == 1
    assert f"127.0.0.1:{port}" in result.stderr and "no answer within 0.5 s" in result.stderr  # --timeout's, not 3 s
    assert len(result.stderr.strip().splitlines()) == 1
    assert elapsed < 60  # a hang would be forever: no bound on how fast this machine is today


def test_devices_cli_without_gpu(cli, monkeypatch):
    result = cli("devices", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["schema"] == "gpusplit.devices/2"
    assert doc["host"]["backend"] == "CPU" and doc["host"]["total_bytes"] > 0
    assert all(d["backend"] != "CPU" for d in doc["devices"])
    human = cli("devices")
    assert human.exit_code == 0 and "host" in human.stdout


def test_unknown_card_lists_close_matches(cli):
    result = cli("devices", "--gpu", "RTX 4900")
    assert result.exit_code == 2
    assert "RTX 4090" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_catalog_listing(cli):
    doc = json.loads(cli("devices", "--catalog", "--json").stdout)
    assert len(doc["cards"]) >= 30
    assert all(card["source"].startswith("http") for card in doc["cards"])


def test_a_worker_note_counts_only_while_its_worker_runs(tmp_path):
    """A worker's note says what it serves; a note left by a worker that is gone (its port may be
    someone else's now) is ignored, and a worker removes only its own note."""
    import json
    import subprocess
    import sys

    from gpusplit.devices.rpc import read_worker_note, remove_worker_note, write_worker_note

    path = write_worker_note("127.0.0.1:50060", [{"name": "CPU", "description": "x", "type": "cpu"}], 2, folder=tmp_path)
    assert read_worker_note("127.0.0.1:50060", folder=tmp_path)["devices"][0]["type"] == "cpu"
    assert read_worker_note("127.0.0.1:50061", folder=tmp_path) is None
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    path.write_text(json.dumps({**json.loads(path.read_text()), "pid": int(gone)}))
    assert read_worker_note("127.0.0.1:50060", folder=tmp_path) is None
    remove_worker_note("127.0.0.1:50060", folder=tmp_path)
    assert path.exists()  # not this process's note: left alone


def _fake_rpc_server(version: tuple[int, int, int], hello_payload: int):
    """A listener that speaks only llama.cpp RPC's HELLO as a server of `version` does: it takes a
    HELLO whose payload is `hello_payload` bytes (24 from protocol 7, none before) and hangs up on
    any other; it answers with its version (and, from protocol 7, its connection capabilities)."""
    import struct
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                try:
                    head = conn.recv(9, socket.MSG_WAITALL)
                    cmd, size = struct.unpack("<BQ", head)
                    if cmd != 14 or size != hello_payload:
                        continue  # ggml-rpc.cpp: "HELLO request size mismatch", the connection closed
                    conn.recv(size, socket.MSG_WAITALL) if size else b""
                    reply = bytes([*version, 0]) + b"\0" * 24 if hello_payload else bytes(version)
                    conn.sendall(struct.pack("<Q", len(reply)) + reply)
                    conn.recv(1)  # the client hangs up when it has read the version
                except OSError:
                    continue

    threading.Thread(target=serve, daemon=True).start()
    return server


@pytest.mark.parametrize(
    ("version", "payload"),
    [((3, 0, 0), 0), ((6, 1, 0), 0), ((8, 0, 0), 24)],  # older llama.cpp builds, and a newer protocol
)
def test_a_worker_of_another_protocol_is_named_with_both_versions(cli, version, payload):
    server = _fake_rpc_server(version, payload)
    port = server.getsockname()[1]
    try:
        result = cli("devices", "--rpc", f"127.0.0.1:{port}", "--timeout", "2")
    finally:
        server.close()
    theirs = ".".join(map(str, version))
    assert result.exit_code == 1, result.stderr
    assert f"127.0.0.1:{port}: speaks RPC protocol {theirs}, this llama.cpp speaks 7.0.0" in result.stderr
    assert "ggml-rpc-server" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_cpu_is_named_from_its_first_processor():
    from gpusplit.devices.cpu import cpu_name

    x86 = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nprocessor\t: 1\nmodel name\t: other\n"
    assert cpu_name(x86) == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu_name("processor\t: 0\nFeatures\t: fp asimd\nHardware\t: BCM2835\n") == "BCM2835"  # an ARM board
    assert cpu_name("") != ""  # the platform's word for it, at worst "CPU"
