"""What llama.cpp refuses, refused at plan time: one row per rule, each confirmed by a real load
that llama.cpp 0.3.36 itself refuses with the same reason."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpusplit.cli.errors import describe
from gpusplit.devices.inventory import detect
from gpusplit.gguf import read_model
from gpusplit.planning.memory import Placement, Settings
from gpusplit.planning.planner import PlanError, PlanInputs, make_plan
from gpusplit.planning.refusals import refusals
from gpusplit.synthetic import TINY_MODELS, write_tiny_model

# Head size 48: a multiple of no K-quant block (256) and of no 32-element block.
HEAD_48 = replace(TINY_MODELS["dense-f16"], name="head48-f16", n_embd=192, n_head=4, n_head_kv=2, head_dim=48)

# (rule, model, settings, reason llama.cpp logs)
CASES = [
    (
        "quantized-v-needs-flash-attn",
        "dense",
        Settings(n_ctx=256, type_v="q8_0"),
        "quantized V cache requires flash_attn to be enabled",
    ),
    (
        "k-cache-block",
        "head48",
        Settings(n_ctx=256, type_k="q4_0", flash_attn=True),
        "K cache type q4_0 with block size 32 does not divide n_embd_head_k=48",
    ),
    (
        "v-cache-block",
        "head48",
        Settings(n_ctx=256, type_v="q8_0", flash_attn=True),
        "V cache type q8_0 with block size 32 does not divide n_embd_head_v=48",
    ),
    ("too-many-sequences", "dense", Settings(n_ctx=257 * 256, n_parallel=257), "n_seq_max must be <= 256"),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refusals")
    return {
        "dense": write_tiny_model(folder / "dense.gguf", "dense-f16"),
        "head48": write_tiny_model(folder / "head48.gguf", HEAD_48),
    }


def _plan(path, settings):
    inventory = detect([], registry=[])
    return make_plan(read_model(path), inventory.devices, inventory.host, PlanInputs(settings=settings))


@pytest.mark.parametrize(("rule", "model", "settings", "reason"), CASES, ids=[c[0] for c in CASES])
def test_plan_refuses_what_llama_cpp_refuses(models, rule, model, settings, reason):
    with pytest.raises(PlanError) as err:
        _plan(models[model], settings)
    assert reason in err.value.message and err.value.hint
    assert describe(err.value)[1] == 2  # the CLI exits 2 for it (wrong input)
    assert [r.rule for r in refusals(read_model(models[model]), settings, Placement(), 0)] == [rule]


@pytest.mark.parametrize(("rule", "model", "settings", "reason"), CASES, ids=[c[0] for c in CASES])
def test_llama_cpp_really_refuses_it(models, rule, model, settings, reason):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    from gpusplit.base.errors import GpusplitError
    from gpusplit.engine.child import run_task
    from gpusplit.planning.launch import engine_params

    allowed = _plan(models[model], Settings(n_ctx=256))  # a plan llama.cpp accepts, then the refused settings
    params = engine_params(allowed).with_(
        n_ctx=settings.n_ctx, n_seq_max=settings.n_parallel, type_k=settings.type_k, type_v=settings.type_v,
        flash_attn=settings.flash_attn,
    )  # fmt: skip
    with pytest.raises(GpusplitError) as err:
        run_task("load", {"params": params.as_dict()}, timeout=120)
    assert reason in str(err.value) + " ".join(getattr(err.value, "log_tail", []))


def test_accepted_neighbours_are_not_refused(models):
    # The same model and types where llama.cpp accepts them: f16 K/V, or a block that divides 64.
    dense = read_model(models["dense"])
    head48 = read_model(models["head48"])
    assert refusals(dense, Settings(type_k="q8_0", type_v="q8_0", flash_attn=True), Placement(), 2) == []
    assert refusals(head48, Settings(type_k="q4_0", flash_attn=False), Placement(), 2) == []  # K checked only with FA
    assert refusals(dense, Settings(n_parallel=256), Placement(), 16) == []
    assert [r.rule for r in refusals(dense, Settings(), Placement(), 17)] == ["too-many-devices"]


def test_tensor_parallelism_refused_for_architectures_without_it(models):
    # llama_model_create throws for these before reading any weight (src/llama-arch.cpp's list).
    model = replace(read_model(models["dense"]), architecture="mamba2")
    found = refusals(model, Settings(flash_attn=True), Placement(split_mode="tensor"), 2)
    assert [r.rule for r in found] == ["tensor-architecture"]
    assert "not implemented for architecture 'mamba2'" in found[0].reason
    assert refusals(read_model(models["dense"]), Settings(flash_attn=True), Placement(split_mode="tensor"), 2) == []
