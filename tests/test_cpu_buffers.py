"""Host weights on every CPU: the mapped file plus the copies llama.cpp's CPU backend makes in its
extra buffer types (AMX, CPU_REPACK), planned against llama.cpp's own buffers.

The AMX figures come from an Intel Xeon with AMX (tests/data/amx-measured.json: llama.cpp's log
on that host for each quantized fixture of benchmarks/accuracy.py, with extra buffer types on and
off), so they are checked on any CPU; the CPU_REPACK-only figures are checked by real loads here
(tests/test_repack.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gpusplit.documents.render import plan_document
from gpusplit.gguf import read_model
from gpusplit.gguf.reader import TensorInfo
from gpusplit.gguf.types import type_by_name
from gpusplit.planning.cpu_buffers import AMX, MAPPED, MUL_MAT, MUL_MAT_ID, OTHER, REPACK, amx_bytes, host_copy, weight_op
from gpusplit.planning.memory import Placement, Settings, plan_memory
from gpusplit.planning.request import Request

MIB = 1024 * 1024
MEASURED = json.loads((Path(__file__).parent / "data" / "amx-measured.json").read_text())
AMX_HOST = Settings(n_ctx=512, cpu_repack="avx512", cpu_extra_buffers=(AMX, REPACK))


def _tensor(name: str, shape: tuple[int, ...], type_name: str) -> TensorInfo:
    t = type_by_name(type_name)
    n = 1
    for d in shape:
        n *= d
    return TensorInfo(name, shape, t, 0, 0, n, n // t.block_size * t.type_size)


def _mib(n: int) -> float:
    return round(n / MIB, 2)


def test_ops_follow_llama_cpp_tensor_table():
    assert weight_op(_tensor("blk.3.attn_q.weight", (256, 256), "Q4_0")) == MUL_MAT
    assert weight_op(_tensor("output.weight", (256, 1000), "Q6_K")) == MUL_MAT
    assert weight_op(_tensor("blk.0.ffn_up_exps.weight", (256, 512, 8), "Q4_K")) == MUL_MAT_ID
    assert weight_op(_tensor("token_embd.weight", (256, 1000), "Q8_0")) == OTHER  # GET_ROWS
    assert weight_op(_tensor("blk.2.ssm_conv1d.weight", (4, 256), "F32")) == OTHER  # SSM_CONV
    assert weight_op(_tensor("blk.2.attn_norm.weight", (256,), "F32")) == OTHER
    assert weight_op(_tensor("blk.0.exp_probs_b.bias", (8,), "F32")) == OTHER


def test_amx_takes_only_what_its_kernels_can_run():
    # rows (out features) a multiple of 32, row length a multiple of the type's block for the tiles
    assert amx_bytes(_tensor("blk.0.attn_q.weight", (576, 576), "Q4_1")) == 576 * 18 * 20
    assert amx_bytes(_tensor("blk.0.attn_k.weight", (576, 200), "Q4_1")) == 0  # 200 rows
    assert amx_bytes(_tensor("blk.0.attn_q.weight", (320, 256), "Q4_K")) == 0  # 320 is not a multiple of 256
    # Q8_0 keeps an int32 compensation per block of 32: 38 bytes instead of 34
    assert amx_bytes(_tensor("blk.0.ffn_up.weight", (512, 64), "Q8_0")) == 64 * 16 * 38
    assert amx_bytes(_tensor("blk.0.ffn_up.weight", (512, 64), "F16")) == 512 * 64 * 2  # copied as is
    assert amx_bytes(_tensor("blk.0.ffn_up.weight", (512, 64), "Q5_0")) == 0  # no AMX kernel
    assert amx_bytes(_tensor("blk.0.ffn_up_exps.weight", (512, 64, 4), "Q4_0")) == 0  # MUL_MAT_ID is not AMX's
    # experts then go on to CPU_REPACK, as llama.cpp logged on the AMX host
    assert host_copy(_tensor("blk.0.ffn_up_exps.weight", (512, 64, 4), "Q4_0"), (AMX, REPACK), "avx512")[0] == REPACK
    assert host_copy(_tensor("blk.0.ffn_up.weight", (512, 64), "Q4_0"), (AMX, REPACK), "avx512")[0] == AMX
    assert host_copy(_tensor("blk.0.ffn_up.weight", (512, 64), "Q4_0"), (), "avx512") == (MAPPED, 0)


def test_published_gemma_3_270m_host_weights(header_only_model):
    """Gemma-3-270M as published in Q4_K_M (Q5_0/Q4_K/Q6_K layers, tied Q8_0 embeddings), its real
    shapes: llama.cpp 0.3.36 allocated AMX 213.91 + CPU_Mapped 235.16 MiB on an AMX host, and
    CPU_REPACK 12.66 beside the mapped file on an AVX512 host without AMX."""
    model = read_model(header_only_model("gemma-3-270m"))
    host = plan_memory(model, [], [], [], AMX_HOST, Placement(n_gpu_layers=0)).host
    assert (_mib(host.amx_bytes), _mib(host.mapped_bytes), host.repack_bytes) == (213.91, 235.16, 0)
    assert host.weights_bytes == host.amx_bytes + host.mapped_bytes
    plain = Settings(n_ctx=512, cpu_repack="avx512")
    host = plan_memory(model, [], [], [], plain, Placement(n_gpu_layers=0)).host
    assert (_mib(host.repack_bytes), _mib(host.mapped_bytes), host.amx_bytes) == (12.66, 235.16, 0)
    off = Settings(n_ctx=512, cpu_repack="avx512", cpu_extra_buffers=(AMX, REPACK), no_repack=True)
    host = plan_memory(model, [], [], [], off, Placement(n_gpu_layers=0)).host
    assert host.weights_bytes == host.mapped_bytes == model.total_bytes


def test_a_gpu_host_buffer_comes_before_amx(header_only_model):
    """With a CUDA device, its pinned host buffer type is first in the CPU's list; with mmap the
    weights it claims go back to the mapped file, so nothing is copied into AMX either."""
    model = read_model(header_only_model("gemma-3-270m"))
    memory = plan_memory(model, ["CUDA0"], ["CUDA"], [8 << 30], AMX_HOST, Placement(n_gpu_layers=4))
    assert memory.host.amx_bytes == memory.host.repack_bytes == 0
    over_rpc = plan_memory(model, ["RPC0"], ["RPC"], [8 << 30], AMX_HOST, Placement(n_gpu_layers=4))
    assert 0 < over_rpc.host.amx_bytes < plan_memory(model, [], [], [], AMX_HOST, Placement(n_gpu_layers=0)).host.amx_bytes


# ---------------------------------------------------------------------------------------------
# every quantized fixture against what llama.cpp allocated on the AMX host


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    from accuracy import fixture

    folder = tmp_path_factory.mktemp("amx")
    return lambda name: fixture(folder, name)


@pytest.mark.engine
@pytest.mark.parametrize("name", list(MEASURED["models"]))
def test_host_weights_equal_llama_cpp_buffers_on_an_amx_host(fixtures, name):
    recorded = MEASURED["models"][name]
    path = fixtures(name)
    assert path.stat().st_size == recorded["file_bytes"], (
        "the fixture generator changed since the AMX figures were recorded: record them again on an AMX host"
    )
    model = read_model(path)
    for key, settings in (("extra_bufts_on", AMX_HOST), ("extra_bufts_off", Settings(n_ctx=512, no_repack=True))):
        host = plan_memory(model, [], [], [], settings, Placement(n_gpu_layers=0)).host
        planned = {MAPPED: host.mapped_bytes, AMX: host.amx_bytes, REPACK: host.repack_bytes}
        assert {k: _mib(v) for k, v in planned.items() if v} == recorded[key]["buffers"], key
    # the tensors llama.cpp logged as repacked for AMX (f16 ones are copied without that line)
    amx = {t.name for g in (*model.blocks, model.output) for t in g.tensors if host_copy(t, (AMX, REPACK), "avx512")[0] == AMX}
    if not any(t.name == "output.weight" for t in model.output.tensors):
        amx |= {t.name for t in model.input.tensors if host_copy(t, (AMX, REPACK), "avx512", op=MUL_MAT)[0] == AMX}
    logged = {tensor for tensor, _ in recorded["extra_bufts_on"]["amx_tensors"]}
    assert amx == logged or (not logged and name.endswith("f16"))


@pytest.mark.engine
@pytest.mark.parametrize("name", ["dense-f16", "dense-Q4_0", "dense-IQ4_NL", "moe-MXFP4_MOE"])
def test_this_engine_and_its_plans_agree_with_llama_cpp_buffers(fixtures, name):
    """Whatever CPU runs this: the engine's report of its extra buffer types covers what llama.cpp
    used, and `plan`'s host weights equal llama.cpp's buffers, buffer by buffer."""
    import gpusplit
    from gpusplit.engine.child import run_task
    from gpusplit.engine.logparse import extra_weight_buffers, parse_buffers
    from gpusplit.planning.launch import engine_params

    inventory = gpusplit.detect_devices()
    engine = inventory.engine
    assert engine is not None and engine.cpu_repack in ("none", "avx2", "avx512", "arm-dotprod")
    plan = gpusplit.plan(fixtures(name), inventory, Request(n_ctx=512, n_gpu_layers=0))
    _, log = run_task("load", {"params": engine_params(plan).as_dict()}, timeout=120)
    assert set(extra_weight_buffers(log)) <= set(engine.cpu_extra_buffers or ())
    planned = plan_document(plan)["host"]["weight_buffers"]
    actual = parse_buffers(log).host_weights
    assert set(planned) == {k for k, v in actual.items() if v}
    for buffer, size in planned.items():
        assert abs(size - actual[buffer]) <= 0.0051 * MIB, buffer
    copies = [r for r in plan.reasons if r.code == "host-copies"]
    assert [r.values["rules"] for r in copies] == (["engine"] if planned.keys() - {MAPPED} else [])


def test_plan_for_an_amx_host_from_its_devices_file(cli, header_only_model, tmp_path):
    """`devices --json` written on an AMX host carries its engine's report; planning with that file
    anywhere counts the AMX copies (Gemma-3-270M: 449.07 MiB of host weights, as llama.cpp held)."""
    doc = json.loads(cli("devices", "--json", "--gpu", "8GiB").stdout)
    doc["devices"] = []
    doc["engine"] = {"installed": True, "cpu_repack": "avx512", "cpu_extra_buffers": ["AMX", "CPU_REPACK"]}
    path = tmp_path / "amx-host.json"
    path.write_text(json.dumps(doc))
    result = cli("plan", "--json", str(header_only_model("gemma-3-270m")), "--devices-file", str(path), "--ctx", "512")
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert {k: _mib(v) for k, v in plan["host"]["weight_buffers"].items()} == {"CPU_Mapped": 235.16, "AMX": 213.91}
    (copies,) = [r for r in plan["reasons"] if r["code"] == "host-copies"]
    assert _mib(copies["values"]["amx_bytes"]) == 213.91 and copies["values"]["rules"] == "file"
    no_repack = json.loads(cli("plan", "--json", str(header_only_model("gemma-3-270m")), "--devices-file", str(path),
                               "--ctx", "512", "--no-repack").stdout)  # fmt: skip
    assert no_repack["host"]["weight_buffers"] == {"CPU_Mapped": model_bytes(no_repack)}
    assert no_repack["llama_args"][-1] == "--no-repack" and no_repack["engine_params"]["no_repack"] is True
    doc["engine"]["cpu_extra_buffers"] = ["AMX", "GPU_MAGIC"]
    path.write_text(json.dumps(doc))
    bad = cli("plan", str(header_only_model("gemma-3-270m")), "--devices-file", str(path))
    assert bad.exit_code == 2 and "cpu_extra_buffers" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def model_bytes(plan: dict) -> int:
    return plan["model"]["total_bytes"]


# A Sapphire Rapids Xeon's /proc/cpuinfo flags (abridged), an Ampere Altra's features, an old Atom's.
XEON_AMX = "flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512dq avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n"
ARM_DOTPROD = "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n"
ATOM = "flags\t\t: fpu sse sse2 ssse3\n"


@pytest.mark.parametrize(
    ("cpuinfo", "machine", "extra", "repack"),
    [
        (XEON_AMX, "x86_64", ["AMX", "CPU_REPACK"], "avx512"),
        (XEON_AMX.replace(" amx_int8", ""), "x86_64", ["CPU_REPACK"], "avx512"),
        (ARM_DOTPROD, "aarch64", ["CPU_REPACK"], "arm-dotprod"),
        (ATOM, "x86_64", [], "none"),
    ],
)
def test_without_the_engine_a_native_build_for_this_cpu_is_assumed(cpuinfo, machine, extra, repack):
    from gpusplit.devices.cpu import cpu_flags, native_cpu_backend

    cpu = native_cpu_backend(cpu_flags(cpuinfo), machine)
    assert (list(cpu.extra_buffers), cpu.repack, cpu.source) == (extra, repack, "assumed")


def test_the_cpu_backend_comes_from_the_engine_then_a_file_then_this_cpu():
    from gpusplit.devices.cpu import CpuBackend
    from gpusplit.devices.inventory import EngineInfo, Inventory, host_device
    from gpusplit.planning.prepare import cpu_backend

    host = host_device()
    # a live engine may list extra buffer types not modelled here: kept (and said), not refused
    live = Inventory([], host, engine=EngineInfo(True, cpu_repack="avx512", cpu_extra_buffers=("CPU_HBM", "CPU_REPACK")))
    assert cpu_backend(live) == CpuBackend(("CPU_HBM", "CPU_REPACK"), "avx512", (), "engine")
    # a devices file written before the extra buffer types were reported: its CPU_REPACK rules alone
    old = Inventory([], host, engine=EngineInfo(True, cpu_repack="avx2"), engine_from_file=True)
    assert cpu_backend(old) == CpuBackend(("CPU_REPACK",), "avx2", (), "file")
    assert cpu_backend(Inventory([], host)).source == "assumed"
