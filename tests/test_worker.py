"""Real RPC workers on loopback: listed in llama.cpp's order, used by llama.cpp for real splits."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest
from conftest import free_port, start_worker

pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")

CHILD = r"""
import json, sys
from gpusplit.engine.registry import add_rpc_server
model, mode, split, endpoints = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4:]
for e in endpoints:
    add_rpc_server(e)
import llama_cpp
kwargs = dict(model_path=model, n_ctx=256, n_gpu_layers=-1 if endpoints else 0, split_mode=mode, verbose=True, seed=0)
if split:
    kwargs["tensor_split"] = split
if mode == 3:
    kwargs["flash_attn"] = True  # llama.cpp refuses SPLIT_MODE_TENSOR without flash attention
llm = llama_cpp.Llama(**kwargs)
out = llm("The", max_tokens=16, temperature=0.0)
print(json.dumps({"text": out["choices"][0]["text"], "tokens": out["usage"]["completion_tokens"]}))
"""

# Buffer names: "CPU_Mapped", and "RPC0[host:port]" (the worker's device 0) for RPC devices.
BUFFER_RE = re.compile(r"load_tensors:\s+(.+?) model buffer size =\s+([\d.]+) MiB")
ASSIGNED_RE = re.compile(r"load_tensors: layer\s+(\d+) assigned to device (\S+),")


def run_child(model, mode=1, split=None, endpoints=()):
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(model), str(mode), json.dumps(split), *endpoints],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    buffers = {dev: float(mib) for dev, mib in BUFFER_RE.findall(proc.stderr)}
    assigned = {int(layer): dev for layer, dev in ASSIGNED_RE.findall(proc.stderr)}
    return json.loads(proc.stdout.strip().splitlines()[-1]), buffers, assigned


def test_devices_lists_both_workers_in_order(cli, two_workers):
    result = cli("devices", "--json", "--rpc", ",".join(two_workers))
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    rpc = [d for d in doc["devices"] if d["backend"] == "RPC"]
    assert [(d["name"], d["endpoint"], d["index"]) for d in rpc] == [
        ("RPC0", two_workers[0], 0),
        ("RPC1", two_workers[1], 1),
    ]
    assert all(d["total_bytes"] > 0 and 0 < d["free_bytes"] <= d["total_bytes"] for d in rpc)


def test_layer_split_places_layers_as_llama_cpp_says_and_matches_single_device(tiny_model, two_workers):
    from gpusplit.gguf import read_model

    path = tiny_model("dense-f16")
    model = read_model(path)
    single, _, _ = run_child(path)
    split, buffers, assigned = run_child(path, mode=1, split=[0.6, 0.4], endpoints=two_workers)
    # Greedy output is the same on one CPU device and split over two workers.
    assert split["text"] == single["text"] and split["tokens"] == single["tokens"] > 0
    # ngl counts the output layer: 7 offloadable layers, upper_bound([0.6, 1.0], il / 7):
    # blocks 0-4 on RPC0; block 5 and the output layer on RPC1; the input layer on the CPU.
    assert assigned == {0: "RPC0", 1: "RPC0", 2: "RPC0", 3: "RPC0", 4: "RPC0", 5: "RPC1", 6: "RPC1"}
    mib = 1024 * 1024
    rpc0 = sum(model.blocks[il].n_bytes for il in range(5))
    rpc1 = model.blocks[5].n_bytes + model.output.n_bytes
    assert buffers[f"RPC0[{two_workers[0]}]"] == pytest.approx(rpc0 / mib, abs=0.006)
    assert buffers[f"RPC0[{two_workers[1]}]"] == pytest.approx(rpc1 / mib, abs=0.006)
    assert buffers["CPU_Mapped"] == pytest.approx(model.input.n_bytes / mib, abs=0.006)


def test_tensor_split_over_two_workers_matches_single_device(tiny_model, two_workers):
    path = tiny_model("dense-f16")
    single, _, _ = run_child(path)
    tensor, buffers, assigned = run_child(path, mode=3, split=[0.5, 0.5], endpoints=two_workers)
    assert tensor["text"] == single["text"]
    # Tensor parallelism: a Meta device over both workers holds every layer, and the buffer it
    # reports (one device's share) is about half of the offloaded weights.
    from gpusplit.gguf import read_model

    model = read_model(path)
    assert set(assigned.values()) == {"Meta()"}
    offloaded = (model.total_bytes - model.input.n_bytes) / 2**20
    assert 0.45 * offloaded < buffers["Meta()"] < 0.6 * offloaded


def test_worker_refuses_remote_bind_without_flag(cli):
    result = cli("worker", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.exit_code == 2
    assert "--allow-remote" in result.stderr and "authentication" in result.stderr


def test_port_in_use_is_one_line(cli, two_workers):
    port = two_workers[0].split(":")[1]
    result = cli("worker", "--port", port)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"gpusplit: error: port {port} on 127.0.0.1 is already in use (pick another with --port)"


def test_unknown_device_name(cli):
    result = cli("worker", "--port", str(free_port()), "--device", "CUDA7")
    assert result.exit_code == 2
    assert "CUDA7" in result.stderr and "CPU" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_worker_stops_cleanly_on_signals(sig):
    proc = start_worker(free_port())
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "worker stopped" in err
    assert "Traceback" not in err


def test_a_caching_worker_keeps_large_weights_and_serves_the_next_load_from_them(tmp_path):
    """`gpusplit worker --cache-dir` hands llama.cpp's RPC server its weight cache: a load stores
    each weight over 10 MiB there (named by its hash, as ggml-rpc-server -c does), and a second
    load of the same model generates the same text from them."""
    from dataclasses import replace

    from gpusplit.synthetic import TINY_MODELS, write_tiny_model

    # one block and a 32,768-entry vocabulary: its output matrix (16 MiB of f16) goes by hash
    spec = replace(TINY_MODELS["dense-f16"], name="cache-f16", n_layer=1, n_vocab=32768)
    model = write_tiny_model(tmp_path / "cache-f16.gguf", spec)
    cache = tmp_path / "rpc-cache"
    port = free_port()
    proc = start_worker(port, "--cache-dir", str(cache))
    try:
        endpoint = f"127.0.0.1:{port}"
        first, _, _ = run_child(model, endpoints=[endpoint])
        stored = sorted(cache.iterdir())
        assert [p.stat().st_size for p in stored] == [32768 * 256 * 2]
        assert re.fullmatch(r"[0-9a-f]{16}", stored[0].name)
        second, _, _ = run_child(model, endpoints=[endpoint])
        assert second == first and sorted(cache.iterdir()) == stored
    finally:
        proc.terminate()
        _, log = proc.communicate(timeout=10)
    # stored by the first load only: the second one's hash found it (nothing sent, nothing saved)
    assert log.count("saved to") == 1, log[-2000:]
