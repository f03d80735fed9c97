"""The plan against llama.cpp itself: layer placement, bytes per device, --measure."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")

from gpusplit.devices.inventory import detect
from gpusplit.engine.child import run_task
from gpusplit.engine.logparse import parse_buffers
from gpusplit.gguf import read_model
from gpusplit.jobs.runner import rpc_buffer_names
from gpusplit.planning.launch import engine_params
from gpusplit.planning.memory import Settings
from gpusplit.planning.planner import PlanInputs, make_plan

ASSIGNED = re.compile(r"load_tensors: layer\s+(\d+) assigned to device (\S+),")
MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("split", "ngl"),
    [((0.6, 0.4), -1), ((0.5, 0.5), -1), ((0.1, 0.9), -1), ((0.3, 0.7), 4), ((1.0, 3.0), 6), ((0.55, 0.45), 2)],
)
def test_layer_placement_matches_llama_cpp(tiny_model, two_workers, split, ngl):
    model = read_model(tiny_model("dense-f16"))
    inventory = detect(two_workers, registry=[])
    plan = make_plan(
        model,
        inventory.devices,
        inventory.host,
        PlanInputs(settings=Settings(n_ctx=256), mode="layer", split=split, n_gpu_layers=ngl),
    )
    _, log = run_task("dryrun", {"params": engine_params(plan).as_dict()})
    actual = {int(il): dev for il, dev in ASSIGNED.findall("\n".join(log))}
    names = [d.name for d in inventory.devices]
    planned = {il: ("CPU" if dev is None else names[dev]) for il, dev in enumerate(plan.best.memory.layer_device)}
    assert actual == planned


def test_planned_bytes_match_a_real_load(tiny_model, two_workers):
    model = read_model(tiny_model("dense-f16"))
    inventory = detect(two_workers, registry=[])
    plan = make_plan(
        model,
        inventory.devices,
        inventory.host,
        PlanInputs(settings=Settings(n_ctx=1024), mode="layer", split=(0.6, 0.4), n_gpu_layers=-1),
    )
    _, log = run_task("load", {"params": engine_params(plan).as_dict()})
    actual = parse_buffers(log, rpc_buffer_names(plan)).by_device
    for mem in plan.best.memory.devices + [plan.best.memory.host]:
        real = actual[mem.name]
        assert abs(mem.weights_bytes - real.get("weights", 0)) <= 0.006 * MIB
        assert abs(mem.kv_bytes - real.get("kv", 0)) <= 0.006 * MIB
        assert mem.compute_bytes == pytest.approx(real["compute"], rel=0.10)


def test_measure_takes_compute_from_a_dry_run(cli, tiny_model, two_workers):
    path = str(tiny_model("dense-f16"))
    args = ["plan", "--json", path, "--rpc", ",".join(two_workers), "--split", "0.6,0.4", "--mode", "layer", "--ctx", "1024"]
    estimated = json.loads(cli(*args).stdout)
    measured_result = cli(*args, "--measure")
    assert measured_result.exit_code == 0, measured_result.stderr
    measured = json.loads(measured_result.stdout)
    assert estimated["compute_source"] == "estimate" and measured["compute_source"].startswith("measured")
    _, log = run_task("dryrun", {"params": measured["engine_params"]})
    dry = parse_buffers(log, {f"{e}#0": f"RPC{i}" for i, e in enumerate(two_workers)}).by_device
    assert [d["compute_bytes"] for d in measured["devices"]] == [dry[f"RPC{i}"]["compute"] for i in range(2)]
    assert measured["host"]["compute_bytes"] == dry["CPU"]["compute"]


def test_measure_refuses_hypothetical_devices(cli, tiny_model):
    result = cli("plan", str(tiny_model("dense-f16")), "--gpu", "24GiB", "--measure")
    assert result.exit_code == 2 and "--measure needs the real devices" in result.stderr


@pytest.mark.parametrize(("split", "flash_attn"), [((0.5, 0.5), False), ((0.85, 0.15), False), ((0.5, 0.5), True)])
def test_sliding_window_pipeline_compute_matches_a_real_load(tiny_model, two_workers, split, flash_attn):
    # gemma3: five sliding-window layers, then a global one. Under pipeline parallelism a device
    # builds (and copies) only the masks its own layers use, and a device holding only the
    # output layer keeps a copy of its input per pipeline copy.
    model = read_model(tiny_model("gemma3-f16"))
    inventory = detect(two_workers, registry=[])
    settings = Settings(n_ctx=1024, flash_attn=flash_attn)
    plan = make_plan(
        model, inventory.devices, inventory.host, PlanInputs(settings=settings, mode="layer", split=split, n_gpu_layers=-1)
    )
    assert plan.best.memory.pipeline_parallel
    _, log = run_task("load", {"params": engine_params(plan).as_dict()})
    actual = parse_buffers(log, rpc_buffer_names(plan)).by_device
    for mem in plan.best.memory.devices + [plan.best.memory.host]:
        assert mem.compute_bytes == pytest.approx(actual[mem.name]["compute"], rel=0.10), mem.name
