"""Caches unlike plain attention: deepseek2's MLA (one K-only latent cache) and Mamba-2's recurrent
state, planned by llama.cpp 0.3.36's rules and checked against real loads of generated models."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpusplit.devices.inventory import detect
from gpusplit.gguf import read_model
from gpusplit.planning.memory import Settings, layer_kv_bytes
from gpusplit.planning.planner import PlanError, PlanInputs, make_plan
from gpusplit.synthetic import write_tiny_model
from gpusplit.synthetic.tiny import MAMBA2_TINY, MLA_TINY

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def state_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("state")
    return {
        "mla": write_tiny_model(folder / "mla.gguf", MLA_TINY),
        "mamba2": write_tiny_model(folder / "mamba2.gguf", MAMBA2_TINY),
    }


def test_mla_keeps_one_latent_k_cache_and_no_v(state_models):
    model = read_model(state_models["mla"])
    assert model.is_mla and model.memory_rules == "mla" and model.kv_lora_rank == MLA_TINY.kv_lora_rank
    latent = MLA_TINY.kv_lora_rank + MLA_TINY.rope_dim  # 96 values a token a layer
    for flash_attn in (False, True):
        settings = Settings(n_ctx=512, flash_attn=flash_attn)
        assert layer_kv_bytes(model, settings, 0) == latent * 2 * 512  # f16 K, nothing for V
    # A q8_0 cache: 96 / 32 blocks of 34 bytes a row.
    assert layer_kv_bytes(model, Settings(n_ctx=512, type_k="q8_0", type_v="q8_0", flash_attn=True), 1) == 3 * 34 * 512


def test_mamba2_keeps_a_recurrent_state_per_sequence_and_no_kv(state_models):
    model = read_model(state_models["mamba2"])
    assert model.memory_rules == "recurrent" and not any(model.kv_layers)
    d_inner, d_state = 2 * MAMBA2_TINY.n_embd, MAMBA2_TINY.ssm_d_state
    n_embd_r = (MAMBA2_TINY.ssm_d_conv - 1) * (d_inner + 2 * MAMBA2_TINY.ssm_n_group * d_state)
    n_embd_s = d_state * d_inner
    assert (model.n_embd_r, model.n_embd_s) == (n_embd_r, n_embd_s)
    for n_parallel in (1, 3):
        settings = Settings(n_ctx=1024, n_parallel=n_parallel)
        # f32 whatever the KV type, and independent of the context length.
        assert layer_kv_bytes(model, settings, 2) == 4 * (n_embd_r + n_embd_s) * n_parallel
        assert layer_kv_bytes(model, replace(settings, n_ctx=4096, type_k="q8_0"), 2) == 4 * (n_embd_r + n_embd_s) * n_parallel


def test_unknown_architecture_is_planned_with_a_warning(state_models):
    model = replace(read_model(state_models["mla"]), architecture="dots3note", memory_rules="approximate")
    inventory = detect([], registry=[])
    plan = make_plan(model, inventory.devices, inventory.host, PlanInputs(settings=Settings(n_ctx=256)))
    assert [w.code for w in plan.warnings] == ["memory-approximate"]
    known = make_plan(
        read_model(state_models["mla"]), inventory.devices, inventory.host, PlanInputs(settings=Settings(n_ctx=256))
    )
    assert "memory-approximate" not in [w.code for w in known.warnings]


def test_mamba2_compute_is_bounded_and_other_recurrent_graphs_warn_that_it_is_estimated(state_models):
    inventory = detect([], registry=[])
    mamba2 = read_model(state_models["mamba2"])
    plan = make_plan(mamba2, inventory.devices, inventory.host, PlanInputs(settings=Settings(n_ctx=256)))
    assert plan.warnings == []
    assert [n.values["rule"] for n in plan.best.memory.notes if n.code == "compute-sizing"] == ["bound"]
    # a hybrid's attention layers beside Mamba-2 ones were never traced: the fitted estimate, said
    hybrid = replace(mamba2, architecture="granitehybrid", memory_rules="hybrid")
    plan = make_plan(hybrid, inventory.devices, inventory.host, PlanInputs(settings=Settings(n_ctx=256)))
    assert [w.code for w in plan.warnings] == ["compute-estimated"]
    assert [n.values["rule"] for n in plan.best.memory.notes if n.code == "compute-sizing"] == ["estimate"]


def test_nextn_blocks_hold_no_weights_and_no_cache(state_models):
    from gpusplit.planning.memory import Placement, plan_memory

    model = read_model(state_models["mla"])
    last = model.blocks[-1].n_bytes
    # As GLM-4.5 files carry it: the last block is the multi-token-prediction block, skipped at load.
    nextn = replace(model, n_nextn=1, kv_layers=(True,) * (model.n_layer - 1) + (False,))
    plain = plan_memory(model, ["RPC0"], ["RPC"], [2**30], Settings(n_ctx=256), Placement(n_gpu_layers=-1))
    skipped = plan_memory(nextn, ["RPC0"], ["RPC"], [2**30], Settings(n_ctx=256), Placement(n_gpu_layers=-1))
    assert plain.devices[0].weights_bytes - skipped.devices[0].weights_bytes == last
    assert skipped.devices[0].kv_bytes == plain.devices[0].kv_bytes * (model.n_layer - 1) // model.n_layer


def test_mla_refuses_different_k_and_v_types(state_models):
    inventory = detect([], registry=[])
    settings = Settings(n_ctx=256, type_k="q8_0", type_v="f16", flash_attn=True)
    with pytest.raises(PlanError, match=r"model does not support different K \(q8_0\) and V \(f16\) cache types"):
        make_plan(read_model(state_models["mla"]), inventory.devices, inventory.host, PlanInputs(settings=settings))


# ---------------------------------------------------------------------------------------------
# Against llama.cpp itself


def _load(path, settings, **changes):
    from gpusplit.engine.child import run_task
    from gpusplit.engine.logparse import parse_buffers
    from gpusplit.planning.launch import engine_params

    inventory = detect([], registry=[])
    plan = make_plan(read_model(path), inventory.devices, inventory.host, PlanInputs(settings=settings))
    _, log = run_task("load", {"params": engine_params(plan).with_(**changes).as_dict()}, timeout=120)
    return plan, parse_buffers(log).by_device["CPU"], log


@pytest.mark.parametrize("flash_attn", [False, True])
def test_mla_cache_matches_a_real_load(state_models, flash_attn):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    plan, actual, log = _load(state_models["mla"], Settings(n_ctx=1024, flash_attn=flash_attn))
    assert abs(plan.best.memory.host.kv_bytes - actual["kv"]) <= 0.006 * MIB
    assert any("V (f16):    0.00 MiB" in line for line in log)  # llama.cpp's own words: no V cache


@pytest.mark.parametrize("n_parallel", [1, 4])
def test_recurrent_state_matches_a_real_load(state_models, n_parallel):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    plan, actual, _ = _load(state_models["mamba2"], Settings(n_ctx=1024, n_parallel=n_parallel))
    assert plan.best.memory.host.kv_bytes > 0
    assert abs(plan.best.memory.host.kv_bytes - actual["kv"]) <= 0.006 * MIB


def test_llama_cpp_refuses_mla_with_different_k_and_v_types(state_models):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    from gpusplit.base.errors import GpusplitError

    with pytest.raises(GpusplitError) as err:
        _load(state_models["mla"], Settings(n_ctx=256, flash_attn=True), type_k="q8_0", type_v="f16")
    said = str(err.value) + " ".join(getattr(err.value, "log_tail", []))
    assert "model does not support different K (q8_0) and V (f16) cache types" in said


# ---------------------------------------------------------------------------------------------
# Header-only files with the real shapes of the models people split across many GPUs


def test_deepseek_v3_plans_its_latent_cache(header_only_model):
    model = read_model(header_only_model("deepseek-v3"))
    assert model.is_mla and model.memory_rules == "mla"
    # 61 layers x (kv_lora_rank 512 + rope 64) x f16 x 32768 cells: 2.14 GiB, not the 4.05 GiB of a K+V plan.
    kv = sum(layer_kv_bytes(model, Settings(n_ctx=32768), il) for il in range(model.n_layer))
    assert kv == 61 * 576 * 2 * 32768
    assert 370 * 2**30 < model.total_bytes < 380 * 2**30  # the published Q4_K_M is 404 GB


def test_gpt_oss_120b_sliding_window_every_other_layer(header_only_model):
    model = read_model(header_only_model("gpt-oss-120b"))
    assert model.memory_rules == "attention" and model.swa_layers[:4] == (True, False, True, False)
    full = 8 * 64 * 2 * 2 * 32768  # K and V, 8 KV heads of 64, f16
    assert layer_kv_bytes(model, Settings(n_ctx=32768), 0) == full  # llama.cpp's default: a full-size SWA cache
    # Without it: window 128 + one ubatch of 512, padded to 256 -> 768 cells on the sliding layers.
    assert layer_kv_bytes(model, Settings(n_ctx=32768, swa_full=False), 0) == full // 32768 * 768
    assert layer_kv_bytes(model, Settings(n_ctx=32768, swa_full=False), 1) == full
    experts = {t.ggml_type.name for b in model.blocks for t in b.tensors if "_exps.weight" in t.name}
    assert experts == {"MXFP4"}


def test_qwen3_next_keeps_kv_on_every_fourth_layer_and_state_on_the_rest(header_only_model):
    model = read_model(header_only_model("qwen3-next-80b-a3b"))
    assert model.memory_rules == "hybrid"
    assert [il for il in range(model.n_layer) if model.has_kv(il)] == list(range(3, 48, 4))
    # conv state: (kernel 4 - 1) x (inner 4096 + 2 x 16 groups x 128); delta-net state: 128 x 4096
    assert (model.n_embd_r, model.n_embd_s) == (3 * (4096 + 2 * 16 * 128), 128 * 4096)
    settings = Settings(n_ctx=32768, n_parallel=2)
    assert layer_kv_bytes(model, settings, 0) == 4 * (model.n_embd_r + model.n_embd_s) * 2
    # 2 KV heads of 256, K and V, f16, 16384 cells per sequence x 2 sequences
    assert layer_kv_bytes(model, settings, 3) == 2 * 256 * 2 * 2 * 32768


def test_llama_4_scout_chunked_layers_are_sized_like_a_window(header_only_model):
    model = read_model(header_only_model("llama-4-scout"))
    assert model.memory_rules == "attention" and model.swa_layers[:4] == (True, True, True, False)
    full = 8 * 128 * 2 * 2 * 65536
    assert layer_kv_bytes(model, Settings(n_ctx=65536), 0) == full  # llama.cpp's default full-size cache
    # Without it a chunked layer keeps chunk 8192 + one ubatch of 512 cells, padded to 256.
    assert layer_kv_bytes(model, Settings(n_ctx=65536, swa_full=False), 0) == full // 65536 * 8704
