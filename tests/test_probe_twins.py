"""Two `gpusplit worker`s on this machine serving its CPU at the same threads with the same build
compute alike: the probe measures the first in full and the second's link only (issue 36: the CPU
and two such workers took 163-179 s)."""

from __future__ import annotations

import os

import pytest

from gpusplit.devices.device import Device
from gpusplit.devices.inventory import Inventory, host_device
from gpusplit.devices.rpc import remove_worker_note, same_cpu_service, served_key, write_worker_note
from gpusplit.devices.speed import DeviceSpeed, identity_of
from gpusplit.jobs import probe

CPU = [{"name": "CPU", "description": "AMD EPYC 7B13", "type": "cpu"}]


def test_only_cpu_workers_here_at_the_same_threads_and_build_share_a_service(tmp_path):
    notes = tmp_path / "workers"
    write_worker_note("127.0.0.1:5001", CPU, 1, notes, build="b1")
    write_worker_note("127.0.0.1:5002", CPU, 1, notes, build="b1")
    write_worker_note("127.0.0.1:5003", CPU, 2, notes, build="b1")  # other threads
    write_worker_note("127.0.0.1:5004", CPU, 1, notes, build="b2")  # another llama.cpp
    write_worker_note("127.0.0.1:5005", CPU, 1, notes)  # a note from before notes said their build
    write_worker_note("127.0.0.1:5006", [{"name": "CUDA0", "description": "H100", "type": "gpu"}], 1, notes, build="b1")
    write_worker_note("127.0.0.1:5008", CPU, 1, notes, build="b1", weight_cache=True)  # loads from its cache
    write_worker_note("10.0.0.2:5007", CPU, 1, notes, build="b1")  # not this machine, whatever its note says
    key = same_cpu_service("127.0.0.1:5001", notes)
    assert key is not None and key == same_cpu_service("127.0.0.1:5002", notes)
    assert same_cpu_service("127.0.0.1:5003", notes) not in (None, key)
    assert same_cpu_service("127.0.0.1:5004", notes) not in (None, key)
    assert same_cpu_service("127.0.0.1:5008", notes) not in (None, key)
    for endpoint in ("127.0.0.1:5005", "127.0.0.1:5006", "10.0.0.2:5007", "127.0.0.1:5999"):
        assert same_cpu_service(endpoint, notes) is None, endpoint


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_a_note_another_user_left_in_a_shared_cache_is_not_read(tmp_path):
    notes = tmp_path / "workers"
    path = write_worker_note("127.0.0.1:5001", CPU, 1, notes, build="b1")
    assert same_cpu_service("127.0.0.1:5001", notes) is not None
    os.chown(path, 12345, -1)
    assert same_cpu_service("127.0.0.1:5001", notes) is None


def _workers(monkeypatch, tmp_path, threads: tuple[int, ...]):
    monkeypatch.setenv("GPUSPLIT_CACHE_DIR", str(tmp_path / "cache"))
    host = host_device()
    devices, endpoints = [], []
    for index, count in enumerate(threads):
        endpoint = f"127.0.0.1:{5101 + index}"
        write_worker_note(endpoint, CPU, count, build="b1")
        endpoints.append(endpoint)
        devices.append(Device(f"RPC{index}", "AMD EPYC 7B13", "RPC", "gpu", host.total_bytes, host.free_bytes, index=index,
                              endpoint=endpoint))  # fmt: skip
    return Inventory(devices=devices, host=host), endpoints


@pytest.fixture
def three_workers(monkeypatch, tmp_path):
    """RPC0 and RPC1 twins (one thread each), RPC2 at two threads; the notes in the cache folder."""
    inventory, endpoints = _workers(monkeypatch, tmp_path, (1, 1, 2))
    yield inventory
    for endpoint in endpoints:
        remove_worker_note(endpoint)


def _fake_probe(monkeypatch, failing=()):
    probed, saved, more = [], {}, []

    def fake_probe_device(target, paths, threads, on_step=None, on_more=None):
        if target.device.name in failing:
            raise probe.ProbeError(f"{target.device.name} could not be measured")
        probed.append(target.device.name)
        rate = 1e9 * (len(probed) + 1)  # each device measured in full reads at its own rate
        return DeviceSpeed(token_overhead_s=0.001, layer_overhead_s=0.0001, bandwidth={"float": rate}, cache_bandwidth=1e11,
                           cache_bytes=2**25, batch_overhead_s=0.01, batch_layer_overhead_s=0.001, flops={"float": 1e10},
                           rtt_s=0.5, identity=target.identity)  # fmt: skip

    monkeypatch.setattr(probe, "probe_device", fake_probe_device)
    monkeypatch.setattr(probe, "probe_models", lambda on_step=None, gpu=False: {})
    monkeypatch.setattr(probe, "probe_group", lambda *args: None)
    monkeypatch.setattr(probe, "_round_trip", lambda endpoint: 0.0002)
    monkeypatch.setattr(probe, "_link_rates", lambda endpoint, raw: (3e9, 2e9))
    monkeypatch.setattr(probe.speed_cache, "save", lambda folder, identity, record: saved.__setitem__(identity, record))
    monkeypatch.setattr(probe, "attach_speeds", lambda inventory, *args: inventory)
    return probed, saved, more


def test_a_twin_gets_the_first_workers_figures_and_its_own_link(monkeypatch, tmp_path, three_workers):
    probed, saved, more = _fake_probe(monkeypatch)
    steps = []
    inventory = probe.run_probe(three_workers, 2, "b1", tmp_path, lambda text, measured: steps.append(text), False, more.append)
    assert probed == ["CPU", "RPC0", "RPC2"]  # RPC1 computes as RPC0: not timed again
    targets = probe.targets(three_workers, 2, "b1")
    first, twin, other = (saved[t.identity] for t in targets[1:])
    assert twin.bandwidth == first.bandwidth and twin.flops == first.flops
    assert other.bandwidth != first.bandwidth  # two threads: its own figures
    assert twin.identity == targets[2].identity and twin.rtt_s == 0.0002 and first.rtt_s == 0.5
    assert twin.download_bytes_per_s == 2e9
    (note,) = [n for n in inventory.notes if n.code == "probe-twin"]
    assert note.values == {"twin": "RPC0"}
    assert any("RPC1" in text and "RPC0" in text for text in steps) and more == []


def test_a_twin_whose_first_failed_is_measured_in_full(monkeypatch, tmp_path, three_workers):
    probed, _, more = _fake_probe(monkeypatch, failing={"RPC0"})
    inventory = probe.run_probe(three_workers, 2, "b1", tmp_path, None, False, more.append)
    assert probed == ["CPU", "RPC1", "RPC2"] and more == [probe.DEVICE_STEPS]
    assert not [n for n in inventory.notes if n.code == "probe-twin"]


def test_a_twin_adds_no_steps_to_the_progress(three_workers, monkeypatch):
    with_twin = probe.step_count(three_workers)
    remove_worker_note("127.0.0.1:5102")
    write_worker_note("127.0.0.1:5102", CPU, 3, build="b1")  # RPC1 at three threads: a device of its own
    assert probe.step_count(three_workers) == with_twin + probe.DEVICE_STEPS


def test_a_twin_of_a_failed_worker_is_the_next_one_measured(monkeypatch, tmp_path):
    inventory, endpoints = _workers(monkeypatch, tmp_path, (1, 1, 1))
    try:
        probed, saved, more = _fake_probe(monkeypatch, failing={"RPC0"})
        probe.run_probe(inventory, 2, "b1", tmp_path, None, False, more.append)
        targets = probe.targets(inventory, 2, "b1")
    finally:
        for endpoint in endpoints:
            remove_worker_note(endpoint)
    assert probed == ["CPU", "RPC1"] and more == [probe.DEVICE_STEPS]  # RPC2 computes as RPC1, measured in full
    assert saved[targets[3].identity].bandwidth == saved[targets[2].identity].bandwidth


def test_the_twin_note_is_the_one_shown_whatever_else_the_link_said(monkeypatch, tmp_path, three_workers):
    _fake_probe(monkeypatch)

    def unmeasured(endpoint, raw):
        raw.setdefault("notes", []).append({"code": "link-unmeasured", "text": "link rates not measured: refused"})
        return None, None

    monkeypatch.setattr(probe, "_link_rates", unmeasured)
    inventory = probe.run_probe(three_workers, 2, "b1", tmp_path)
    codes = [n.code for n in inventory.notes]  # one note per device: RPC1's is its twin's
    assert "probe-twin" in codes and "link-unmeasured" not in codes


def test_a_worker_restarted_with_other_threads_is_not_found_under_its_old_figures(monkeypatch, tmp_path):
    inventory, endpoints = _workers(monkeypatch, tmp_path, (1,))
    (worker,) = inventory.devices

    def identity() -> str:
        (target,) = probe.targets(inventory, 2, "b1")[1:]  # as the probe files it
        looked_up = identity_of(worker, 2, "b1", served_key(worker.endpoint))  # as attach_speeds looks it up
        assert target.identity == looked_up
        return target.identity

    try:
        at_one = identity()
        write_worker_note(endpoints[0], CPU, 2, build="b1")  # the same port, restarted with two threads
        at_two = identity()
        remove_worker_note(endpoints[0])
        gone = identity()  # no note (llama.cpp's rpc-server): the endpoint alone
    finally:
        remove_worker_note(endpoints[0])
    assert len({at_one, at_two, gone}) == 3
