"""Hosts joined by real links, on one machine: each "host" is a network namespace holding one end
of a veth pair, the other end here; `tc tbf` on both ends limits the bandwidth each way, and a relay
in this process adds the one-way delay (this kernel has no netem). Programs run inside a host with
`Lab.spawn`; clients connect to `Lab.relay(...)`'s port on this side's veth address. Only the addresses of namespaces
this lab made are used (10.213.K.0/30), every wait is bounded, and `close()` (or leaving the `with`
block) kills what it started and deletes what it made, also after a failure.

    with Lab() as lab:
        host = lab.host("1gbe")
        worker = lab.spawn(host, [sys.executable, "-m", "gpusplit", "worker", "--host", host.address, ...])
        endpoint = lab.relay(host, 50052)        # "10.213.1.1:PORT", delayed as the profile says
"""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field

PREFIX = "gslab"


@dataclass(frozen=True)
class Profile:
    name: str
    rate_bits: float | None  # per direction; None: unlimited (the veth's own speed)
    one_way_s: float  # delay added each way (half the round trip)


# Round trips of real links, halved: switched 10 GbE ~0.1 ms, 2.5/1 GbE ~0.3 ms, home Wi-Fi ~3 ms,
# a WAN path ~20 ms (WireGuard between sites, say).
PROFILES = {
    p.name: p
    for p in (
        Profile("veth", None, 0.0),
        Profile("10gbe", 10e9, 0.00005),
        Profile("2.5gbe", 2.5e9, 0.00015),
        Profile("1gbe", 1e9, 0.00015),
        Profile("wifi", 300e6, 0.0015),
        Profile("wan", 100e6, 0.010),
    )
}


def unavailable() -> str | None:
    """Why namespaced hosts cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    name = f"{PREFIX}-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip() or made.returncode}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
    return None


@dataclass
class Host:
    namespace: str
    address: str  # the namespace's end of the veth pair
    local: str  # this side's end
    profile: Profile
    device: str = ""  # this side's veth device


def _ip(*args: str, namespace: str | None = None) -> None:
    command = ["ip", *args] if namespace is None else ["ip", "netns", "exec", namespace, "ip", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")


def _shape(device: str, rate_bits: float, namespace: str | None = None) -> None:
    # A bucket of 100 us at the rate (at least 4 KiB; tbf cuts GSO super-packets larger than it into
    # segments), and packets queue up to 50 ms behind it. A real link has no bucket: one of 1 ms (at
    # least 64 KiB) let a token's logits (196 KB), after the idle of its compute, arrive 35-50 %
    # faster than the rate allows (scratch measurement: 196 KB in 3.9 ms over 300 Mbit/s, 5.2 at
    # the rate; 5.5 with this bucket, and bulk transfers as before).
    burst = max(int(rate_bits / 8 / 10_000), 4096)
    command = ["tc", "qdisc", "add", "dev", device, "root", "tbf", "rate", f"{int(rate_bits)}bit",
               "burst", str(burst), "latency", "50ms"]  # fmt: skip
    if namespace is not None:
        command = ["ip", "netns", "exec", namespace, *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")


class _Relay:
    """listen:port -> target, each byte held `delay` seconds each way."""

    def __init__(self, listen: str, target: tuple[str, int], delay: float) -> None:
        self.target, self.delay = target, delay
        self.listener = socket.create_server((listen, 0))
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._pump, args=(client, server), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        """Both directions in one loop that never blocks: read what arrives, and send each chunk
        once it is `delay` old, as much of it as the socket takes. (It used a blocking sendall:
        sending a 2 MiB echo, it waited for the echo server to read while the server waited for
        it to read the echo, until the client's 10 s timeout.)"""
        pending: dict[socket.socket, deque[tuple[float, bytes]]] = {a: deque(), b: deque()}  # to send to key
        due: dict[socket.socket, bytearray] = {a: bytearray(), b: bytearray()}  # old enough, not yet sent
        other = {a: b, b: a}
        selector = selectors.DefaultSelector()
        for sock in (a, b):
            sock.setblocking(False)
        open_ = {a, b}  # still sending to us

        def watch(sock: socket.socket) -> None:
            events = (selectors.EVENT_READ if sock in open_ else 0) | (selectors.EVENT_WRITE if due[sock] else 0)
            registered = sock in selector.get_map()
            if events and registered:
                selector.modify(sock, events)
            elif events:
                selector.register(sock, events)
            elif registered:
                selector.unregister(sock)

        try:
            while not self.stopped.is_set():
                now = time.monotonic()
                for target, queue in pending.items():
                    while queue and queue[0][0] <= now:
                        due[target] += queue.popleft()[1]
                if len(open_) < 2 and not any(pending.values()) and not any(due.values()):
                    break  # one side hung up and everything it sent is delivered
                for sock in (a, b):
                    watch(sock)
                waiting = [q[0][0] for q in pending.values() if q]
                wait = max(0.0, min(waiting) - now) if waiting else 0.2
                for key, events in selector.select(timeout=min(wait, 0.2)):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if events & selectors.EVENT_WRITE:
                        try:
                            sent = sock.send(due[sock])
                        except (BlockingIOError, InterruptedError):
                            sent = 0
                        except OSError:
                            return  # that side is gone: so is the connection
                        del due[sock][:sent]
                    if events & selectors.EVENT_READ:
                        try:
                            data = sock.recv(1 << 16)
                        except (BlockingIOError, InterruptedError):
                            continue
                        except OSError:
                            data = b""
                        if data:
                            pending[other[sock]].append((time.monotonic() + self.delay, data))
                        else:
                            open_.discard(sock)
        finally:
            selector.close()
            for sock in (a, b):
                sock.close()

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=2)


@dataclass
class Lab:
    """Namespaced hosts, their programs and relays; everything undone by close()."""

    hosts: list[Host] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)
    relays: list[_Relay] = field(default_factory=list)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host(self, profile: str | Profile) -> Host:
        """A new namespace joined to this one by a veth pair shaped as `profile` says."""
        spec = PROFILES[profile] if isinstance(profile, str) else profile
        k = len(self.hosts) + 1
        if k > 60:
            raise RuntimeError("a lab holds at most 60 hosts")
        tag = f"{os.getpid() % 100000}x{k}"
        namespace, local_dev, remote_dev = f"{PREFIX}-{tag}", f"gsh{tag}", f"gsw{tag}"
        subnet = f"10.213.{k}"
        host = Host(namespace, f"{subnet}.2", f"{subnet}.1", spec, local_dev)
        _ip("netns", "add", namespace)
        self.hosts.append(host)  # from here on, close() deletes it
        _ip("link", "add", local_dev, "type", "veth", "peer", "name", remote_dev)
        _ip("link", "set", remote_dev, "netns", namespace)
        _ip("addr", "add", f"{host.local}/30", "dev", local_dev)
        _ip("link", "set", local_dev, "up")
        _ip("addr", "add", f"{host.address}/30", "dev", remote_dev, namespace=namespace)
        _ip("link", "set", remote_dev, "up", namespace=namespace)
        _ip("link", "set", "lo", "up", namespace=namespace)
        if spec.rate_bits:
            _shape(local_dev, spec.rate_bits)
            _shape(remote_dev, spec.rate_bits, namespace=namespace)
        return host

    def spawn(self, host: Host, argv: list[str], **popen: object) -> subprocess.Popen:
        """`argv` run inside the host's namespace (killed by close())."""
        proc = subprocess.Popen(["ip", "netns", "exec", host.namespace, *argv], **popen)  # type: ignore[call-overload]
        self.processes.append(proc)
        return proc

    def relay(self, host: Host, port: int) -> str:
        """An endpoint for the host's `port`, its profile's delay added each way. It listens on this
        side's veth address, not loopback: to a client the worker is on another machine."""
        relay = _Relay(host.local, (host.address, port), host.profile.one_way_s)
        self.relays.append(relay)
        return f"{host.local}:{relay.port}"

    def wait_listening(self, host: Host, port: int, timeout: float = 60.0) -> None:
        """Until something accepts connections on the host's port (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection((host.address, port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"nothing listens on {host.address}:{port} after {timeout:.0f} s")

    def close(self) -> None:
        for relay in self.relays:
            relay.close()
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for host in self.hosts:
            # Deleting the namespace deletes its veth end, and with it this side's, but not at once:
            # this side's is deleted here too, so that nothing outlives close().
            subprocess.run(["ip", "link", "del", host.device], capture_output=True, timeout=10)
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True, timeout=10)
        self.relays, self.processes, self.hosts = [], [], []
