"""LoRA adapters planned with the model (`--lora`): their bytes go where the layers they adapt
live, checked against llama.cpp's own LoRA buffers; an adapter for another architecture is refused."""

from __future__ import annotations

import json

import pytest

from gpusplit.devices.inventory import detect
from gpusplit.gguf import GGUFError, read_model
from gpusplit.gguf.adapter import read_adapter
from gpusplit.planning.memory import Settings
from gpusplit.planning.planner import PlanError, PlanInputs, make_plan
from gpusplit.synthetic import write_tiny_lora

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    return write_tiny_lora(tmp_path_factory.mktemp("lora") / "dense-lora.gguf", "dense-f16", rank=8)


def test_adapter_header(adapter):
    info = read_adapter(adapter)
    assert info.architecture == "llama" and info.alpha == 16.0
    # attn_q (256 -> 256), attn_v (256 -> 64), ffn_down (512 -> 256) per block, rank 8, f32
    per_block = 4 * 8 * ((256 + 256) + (256 + 64) + (512 + 256))
    assert info.n_bytes == 6 * per_block
    assert {name.split(".")[2] for name, _ in info.targets} == {"attn_q", "attn_v", "ffn_down"}


def test_a_model_is_not_an_adapter(tiny_model):
    with pytest.raises(GGUFError, match="not a LoRA adapter"):
        read_adapter(tiny_model("dense-f16"))


def test_adapter_bytes_follow_their_layers(tiny_model, adapter):
    from gpusplit.planning.memory import Placement, plan_memory

    model = read_model(tiny_model("dense-f16"))
    info = read_adapter(adapter)
    # Blocks 0-2 on the CPU, 3-5 and the output on the device.
    memory = plan_memory(model, ["RPC0"], ["RPC"], [2**30], Settings(), Placement(n_gpu_layers=4), [info])
    assert memory.host.lora_bytes == memory.devices[0].lora_bytes == info.n_bytes // 2


def test_other_architecture_is_refused(tiny_model, tmp_path):
    other = write_tiny_lora(tmp_path / "qwen3-lora.gguf", "qwen3-f16")
    inventory = detect([], registry=[])
    request = PlanInputs(settings=Settings(n_ctx=256), adapters=(read_adapter(other),))
    with pytest.raises(PlanError, match="model arch and LoRA arch mismatch"):
        make_plan(read_model(tiny_model("dense-f16")), inventory.devices, inventory.host, request)


@pytest.mark.parametrize("ngl", [0, 4, -1])
def test_lora_buffers_match_a_real_load(tiny_model, two_workers, adapter, ngl):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    from gpusplit.engine.child import run_task
    from gpusplit.engine.logparse import parse_buffers
    from gpusplit.jobs.runner import rpc_buffer_names
    from gpusplit.planning.launch import engine_params

    inventory = detect(two_workers, registry=[])
    request = PlanInputs(
        settings=Settings(n_ctx=256), mode="layer", split=(0.5, 0.5), n_gpu_layers=ngl, adapters=(read_adapter(adapter),)
    )
    plan = make_plan(read_model(tiny_model("dense-f16")), inventory.devices, inventory.host, request)
    params = engine_params(plan)
    assert params.lora == (str(adapter),) and params.cli_flags()[-2:] == ["--lora", str(adapter)]
    _, log = run_task("load", {"params": params.as_dict()}, timeout=120)
    assert any("LoRA buffer size" in line for line in log)
    actual = parse_buffers(log, rpc_buffer_names(plan)).by_device
    for mem in plan.best.memory.devices + [plan.best.memory.host]:
        # model and LoRA buffers: two printed figures
        assert abs(mem.weights_bytes - actual.get(mem.name, {}).get("weights", 0)) <= 0.0101 * MIB, mem.name


def test_plan_cli_takes_lora(cli, tiny_model, adapter):
    result = cli("plan", "--json", str(tiny_model("dense-f16")), "--gpu", "8GiB", "--lora", str(adapter))
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["engine_params"]["lora"] == [str(adapter)]
    _valid(doc)
    assert doc["llama_args"][-2:] == ["--lora", str(adapter)]


def _valid(doc):
    """The document validates against the closed gpusplit.plan/2 schema."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (test extra) is not installed")
    from gpusplit.documents.schemas import schemas

    jsonschema.validate(doc, schemas()["gpusplit.plan/2"])
