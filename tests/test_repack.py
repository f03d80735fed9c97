"""Host weights on the files people download: llama.cpp's CPU backend copies Q4_0 / Q4_K / IQ4_NL /
MXFP4 weights the CPU computes with into a CPU_REPACK buffer beside the mapped file. Planned
against real loads of models quantized by llama.cpp's own quantizer."""

from __future__ import annotations

import pytest

from gpusplit.devices.inventory import detect
from gpusplit.gguf import read_model
from gpusplit.planning.cpu_buffers import repack_bytes
from gpusplit.planning.memory import Placement, Settings, plan_memory
from gpusplit.planning.planner import PlanInputs, make_plan
from gpusplit.planning.request import Request

MIB = 1024 * 1024
# llama.cpp prints each buffer to 0.01 MiB; the host's weights are two buffers (CPU_Mapped, CPU_REPACK).
TWO_FIGURES = 0.0101 * MIB
# llama_ftype: the quantizer's names for the mixes people download
FTYPES = {"Q4_K_M": 15, "Q4_0": 2, "Q6_K": 18, "IQ4_XS": 30}


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    from gpusplit.jobs.runner import quantize
    from gpusplit.synthetic import write_tiny_model

    folder = tmp_path_factory.mktemp("quantized")
    source = write_tiny_model(folder / "dense-f16.gguf", "dense-f16")
    out = {}
    for name, ftype in FTYPES.items():
        out[name] = folder / f"dense-{name}.gguf"
        quantize(str(source), str(out[name]), ftype, threads=1)
    return out


def _host_bytes(path, rpc, ngl, cpu):
    from gpusplit.engine.child import run_task
    from gpusplit.engine.logparse import parse_buffers
    from gpusplit.jobs.runner import rpc_buffer_names
    from gpusplit.planning.launch import engine_params

    inventory = detect(rpc, registry=[])
    settings = Settings(n_ctx=256, cpu_repack=cpu.repack, cpu_extra_buffers=tuple(cpu.extra_buffers))
    plan = make_plan(
        read_model(path), inventory.devices, inventory.host, PlanInputs(settings=settings, mode="layer", n_gpu_layers=ngl)
    )
    _, log = run_task("load", {"params": engine_params(plan).as_dict()}, timeout=120)
    actual = parse_buffers(log, rpc_buffer_names(plan)).by_device
    return plan.best.memory, actual, log


@pytest.mark.parametrize("quant", list(FTYPES))
def test_host_weights_exact_on_the_cpu_alone(quantized, quant):
    from gpusplit.engine.registry import cpu_backend_info

    memory, actual, log = _host_bytes(quantized[quant], [], 0, cpu_backend_info())
    assert abs(memory.host.weights_bytes - actual["CPU"]["weights"]) <= TWO_FIGURES
    repacked = any("CPU_REPACK model buffer size" in line for line in log)
    assert repacked == (memory.host.repack_bytes > 0)  # Q6_K and IQ4_XS are never repacked on x86


@pytest.mark.parametrize("quant", ["Q4_K_M", "Q4_0"])
@pytest.mark.parametrize("ngl", [2, 4])
def test_host_weights_exact_with_partial_offload(quantized, two_workers, quant, ngl):
    from gpusplit.engine.registry import cpu_backend_info

    memory, actual, _ = _host_bytes(quantized[quant], two_workers, ngl, cpu_backend_info())
    assert memory.host.repack_bytes + memory.host.amx_bytes > 0  # AMX takes them first on a Xeon with AMX
    assert abs(memory.host.weights_bytes - actual["CPU"]["weights"]) <= TWO_FIGURES
    for device in memory.devices:
        assert abs(device.weights_bytes - actual[device.name]["weights"]) <= 0.006 * MIB


def test_repack_rules(quantized):
    model = read_model(quantized["Q4_K_M"])
    by_type = {t.ggml_type.name: t for block in model.blocks for t in block.tensors if len(t.shape) == 2}
    assert repack_bytes(by_type["Q4_K"], "avx2") == by_type["Q4_K"].n_bytes
    assert repack_bytes(by_type["Q6_K"], "avx512") == 0
    assert repack_bytes(by_type["Q6_K"], "arm-dotprod") == by_type["Q6_K"].n_bytes  # ARM repacks the k-quants
    assert repack_bytes(by_type["Q4_K"], "none") == 0
    # A CUDA device's host buffer claims the CPU's weights first: with mmap nothing is repacked.
    memory = plan_memory(model, ["CUDA0"], ["CUDA"], [2**34], Settings(), Placement(n_gpu_layers=3))
    assert memory.host.repack_bytes == 0
    memory = plan_memory(model, ["RPC0"], ["RPC"], [2**34], Settings(), Placement(n_gpu_layers=3))
    assert memory.host.repack_bytes > 0


def test_plan_says_what_it_assumed_about_repacking(header_only_model):
    import gpusplit
    from gpusplit.devices.inventory import Inventory, host_device

    # The CPU alone, described without the engine: a native build for this CPU is assumed, and said.
    plan = gpusplit.plan(header_only_model("llama-3.1-8b"), Inventory(devices=[], host=host_device()), Request(n_ctx=1024))
    assert plan.best.memory.host.repack_bytes + plan.best.memory.host.amx_bytes > 0
    (copies,) = [r for r in plan.reasons if r.code == "host-copies"]
    assert copies.values["rules"] == "assumed" and copies.values["repack_bytes"] + copies.values["amx_bytes"] > 0
    # A GPU (CUDA, or given by size): its host buffer claims the CPU's weights, nothing is repacked.
    partial = gpusplit.plan(header_only_model("llama-3.1-8b"), gpusplit.detect_devices(gpus=["4GiB"]), Request(n_ctx=1024))
    assert partial.best.memory.host.weights_bytes > 0 and partial.best.memory.host.repack_bytes == 0
    assert "host-copies" not in [r.code for r in partial.reasons]
