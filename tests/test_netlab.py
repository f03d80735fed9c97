"""The namespaced-hosts harness itself: its links have the bandwidth and delay their profile says,
a gpusplit worker inside one is reached as a remote machine, and nothing is left behind."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest
from netlab import PREFIX, Lab, Profile, unavailable

REASON = unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no namespaced hosts here: {REASON}")

ECHO = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
while True:
    conn, _ = server.accept()
    with conn:
        while data := conn.recv(1 << 16):
            conn.sendall(data)
"""


def _leftovers() -> list[str]:
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=10).stdout
    return [line for line in (names + links).splitlines() if f"{PREFIX}-" in line or " gsh" in line]


def test_a_link_has_its_profiles_delay_and_bandwidth():
    before = _leftovers()
    profile = Profile("test", 40e6, 0.005)  # 40 Mbit/s, 10 ms round trip
    with Lab() as lab:
        host = lab.host(profile)
        lab.spawn(host, [sys.executable, "-c", ECHO, host.address, "7000"])
        lab.wait_listening(host, 7000)
        host_part, port = lab.relay(host, 7000).rsplit(":", 1)
        with socket.create_connection((host_part, int(port)), timeout=10) as conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            trips = []
            for _ in range(5):
                started = time.monotonic()
                conn.sendall(b"x")
                assert conn.recv(1) == b"x"
                trips.append(time.monotonic() - started)
            payload = b"\0" * (2 << 20)
            started = time.monotonic()
            # Sent from a thread while this one reads the echo: one thread doing both fills both
            # sides' buffers and deadlocks (sendall waits for room, the echo waits for a reader).
            sender = threading.Thread(target=conn.sendall, args=(payload,), daemon=True)
            sender.start()
            received = 0
            while received < len(payload):
                received += len(conn.recv(1 << 16))
            sender.join(timeout=60)
            echoed_s = time.monotonic() - started
            # A token's logits after the idle of its compute: a real link carries them at its
            # rate, with no bucket filled while idle (one of 64 KiB let them through 35-50 % fast).
            small = []
            for _ in range(3):
                time.sleep(0.05)
                started = time.monotonic()
                conn.sendall(b"\0" * 100_000)
                received = 0
                while received < 100_000:
                    received += len(conn.recv(1 << 16))
                small.append(time.monotonic() - started)
    assert 0.010 <= min(trips) < 1.0, trips  # both delays at least; above, only a busy runner's scheduling
    # 2 MiB each way through 40 Mbit/s links (the two directions overlap): at least 0.42 s
    assert 0.4 <= echoed_s < 60, echoed_s
    # 100 kB through 40 Mbit/s each way: 20 ms there and the last of it back, plus the delays
    assert min(small) >= 0.9 * (100_000 * 8 / 40e6 + 0.010), small
    assert _leftovers() == before  # namespaces and veth pairs gone


def test_a_worker_in_a_namespace_is_a_remote_machine(cli):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    with Lab() as lab:
        host = lab.host("1gbe")
        lab.spawn(host, [sys.executable, "-m", "gpusplit", "worker", "--host", host.address, "--port", "50052",
                         "--threads", "1", "--allow-remote"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        lab.wait_listening(host, 50052)
        endpoint = lab.relay(host, 50052)
        result = cli("devices", "--rpc", endpoint, "--json")
    assert result.exit_code == 0, result.stderr
    (worker,) = [d for d in json.loads(result.stdout)["devices"] if d["backend"] == "RPC"]
    assert worker["endpoint"] == endpoint and not endpoint.startswith("127.")
    assert worker["total_bytes"] > 0


def test_link_rates_measure_each_way_of_a_shaped_link():
    """devices/rpc.link_rates moves real tensor bytes both ways through a worker's RPC: over a link
    shaped to 40 Mbit/s (5 MB/s), both ways read near 5 MB/s, not the loopback's gigabytes."""
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    from gpusplit.devices.rpc import link_rates, probe

    with Lab() as lab:
        host = lab.host(Profile("test", 40e6, 0.002))
        lab.spawn(host, [sys.executable, "-m", "gpusplit", "worker", "--host", host.address, "--port", "50052",
                         "--threads", "1", "--allow-remote"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        lab.wait_listening(host, 50052)
        endpoint = lab.relay(host, 50052)
        up, down = link_rates(endpoint, nbytes=2 << 20, rounds=1)
        after = probe(endpoint)  # the worker still serves, its test buffer freed
    assert 3.5e6 <= up <= 6e6, up
    assert 3.5e6 <= down <= 6e6, down
    assert after.devices and after.version.startswith("7.")
