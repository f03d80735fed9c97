"""A draft model for speculative decoding (`plan --draft`): placed as llama-server places it
(the main model's split mode and proportions, its own -ngld, f16 caches) and counted in the fit."""

from __future__ import annotations

import json

import pytest

from gpusplit.devices.inventory import detect
from gpusplit.gguf import read_model
from gpusplit.planning.memory import Settings
from gpusplit.planning.planner import DraftRequest, PlanInputs, make_plan
from gpusplit.synthetic import write_tiny_projector

MIB = 1024 * 1024


def test_draft_counts_in_the_fit(cli, tiny_model):
    main, draft = str(tiny_model("dense-f16")), str(tiny_model("tied-f16"))
    alone = json.loads(cli("plan", "--json", main, "--gpu", "1GiB").stdout)
    both = cli("plan", "--json", main, "--gpu", "1GiB", "--draft", draft, "--ngl-draft", "3")
    assert both.exit_code == 0, both.stderr
    doc = json.loads(both.stdout)
    _valid(doc)
    assert doc["llama_args"][-4:] == ["-md", draft, "-ngld", "3"]
    on_gpu = doc["draft"]["devices"][0]["planned_bytes"]
    assert on_gpu > 0 and doc["draft"]["host"]["planned_bytes"] > 0  # 3 of 7 layers offloaded: the rest on the CPU
    assert alone["fits"] and doc["fits"]
    # A device with room for the model but not for the model and its draft: --check says so.
    need = alone["devices"][0]["planned_bytes"]
    gpu = ["--gpu", f"{(need + 600 * 1024) // 1024}KiB", "--reserve", "0"]
    assert cli("plan", "--check", main, *gpu).exit_code == 0
    assert cli("plan", "--check", main, *gpu, "--draft", draft).exit_code == 3


def test_draft_placement_matches_a_real_load(tiny_model, two_workers):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    from gpusplit.engine.child import run_task
    from gpusplit.engine.logparse import parse_buffers
    from gpusplit.jobs.runner import rpc_buffer_names
    from gpusplit.planning.launch import engine_params

    inventory = detect(two_workers, registry=[])
    draft = read_model(tiny_model("moe-f16"))
    request = PlanInputs(settings=Settings(n_ctx=512), mode="layer", split=(0.3, 0.7), draft=DraftRequest(draft, -1))
    plan = make_plan(read_model(tiny_model("dense-f16")), inventory.devices, inventory.host, request)
    # llama-server loads the draft with the main model's parameters but its own file, -ngld and f16 caches.
    params = engine_params(plan).with_(model_path=draft.path, n_gpu_layers=draft.n_layer + 1)
    _, log = run_task("load", {"params": params.as_dict()}, timeout=120)
    actual = parse_buffers(log, rpc_buffer_names(plan)).by_device
    for mem in plan.draft.devices + [plan.draft.host]:
        real = actual.get(mem.name, {})
        assert abs(mem.weights_bytes - real.get("weights", 0)) <= 0.006 * MIB, mem.name
        assert abs(mem.kv_bytes - real.get("kv", 0)) <= 0.006 * MIB, mem.name
        assert mem.compute_bytes == pytest.approx(real.get("compute", 0), rel=0.10), mem.name


def test_projector_goes_to_the_first_gpu(cli, tiny_model, tmp_path):
    projector = write_tiny_projector(tmp_path / "mmproj.gguf")
    main = str(tiny_model("dense-f16"))
    plain = json.loads(cli("plan", "--json", main, "--gpu", "8GiB", "--gpu", "8GiB", "--mode", "layer").stdout)
    result = cli("plan", "--json", main, "--gpu", "8GiB", "--gpu", "8GiB", "--mode", "layer", "--mmproj", str(projector))
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    size = 2 * (256 * 1024 + 1024 * 588)
    _valid(doc)
    assert doc["devices"][0]["weights_bytes"] - plain["devices"][0]["weights_bytes"] == size
    assert doc["devices"][1]["weights_bytes"] == plain["devices"][1]["weights_bytes"]
    assert doc["llama_args"][-2:] == ["--mmproj", str(projector)]
    assert [(r["values"]["type"], r["values"]["device"]) for r in doc["reasons"] if r["code"] == "projector"] == [("mlp", "GPU0")]


def test_a_model_is_not_a_projector(cli, tiny_model):
    result = cli("plan", str(tiny_model("dense-f16")), "--gpu", "8GiB", "--mmproj", str(tiny_model("dense-f16")))
    assert result.exit_code == 2 and "not a projector" in result.stderr


def _valid(doc):
    """The document validates against the closed gpusplit.plan/2 schema."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (test extra) is not installed")
    from gpusplit.documents.schemas import schemas

    jsonschema.validate(doc, schemas()["gpusplit.plan/2"])
