"""`gpusplit inspect` on every fixture: exact figures, JSON contract, demo model."""

from __future__ import annotations

import json

import pytest

from gpusplit.synthetic import (
    HEADER_ONLY_MODELS,
    SMALL_TINY_MODELS,
    TINY_MODELS,
    header_only_data_size,
    tensor_plan,
    tiny_model_size,
)


@pytest.mark.parametrize("name", SMALL_TINY_MODELS)
def test_inspect_json_describes_each_tiny_model_exactly(cli, tiny_model, name):
    spec = TINY_MODELS[name]
    result = cli("inspect", "--json", str(tiny_model(name)))
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == "gpusplit.inspect/1"
    model = doc["model"]
    assert model["architecture"] == spec.arch
    assert model["n_layer"] == spec.n_layer
    assert model["n_embd"] == spec.n_embd
    assert model["n_head_kv"] == [spec.n_head_kv] * spec.n_layer
    assert model["n_expert"] == spec.n_expert
    assert model["n_vocab"] == spec.n_vocab
    assert model["complete"] is True
    assert model["total_bytes"] == tiny_model_size(spec)
    plan = tensor_plan(spec)
    assert sum(layer["tensors"] for layer in model["layers"]) == len(plan)
    assert [layer["name"] for layer in model["layers"]] == ["input", *(f"blk.{i}" for i in range(spec.n_layer)), "output"]
    # Parameters: every tensor's element count.
    n_params = 0
    for t in plan:
        count = 1
        for d in t.shape:
            count *= d
        n_params += count
    assert model["params"] == n_params


def test_tied_model_has_no_output_weight(cli, tiny_model):
    doc = json.loads(cli("inspect", "--json", "--tensors", str(tiny_model("tied-f16"))).stdout)
    names = {t["name"] for t in doc["model"]["tensors"]}
    assert "output.weight" not in names and "output_norm.weight" in names


def test_gemma3_sliding_window_layers(cli, tiny_model):
    spec = TINY_MODELS["gemma3-f16"]
    doc = json.loads(cli("inspect", "--json", str(tiny_model("gemma3-f16"))).stdout)["model"]
    assert doc["sliding_window"] == spec.sliding_window
    # llama.cpp's gemma3 pattern: every sixth layer is global.
    assert doc["swa_layers"] == [il for il in range(spec.n_layer) if il % 6 < 5]


@pytest.mark.parametrize("name", sorted(HEADER_ONLY_MODELS))
def test_inspect_header_only_models(cli, header_only_model, name):
    path = header_only_model(name)
    result = cli("inspect", "--json", str(path))
    assert result.exit_code == 0, result.stderr
    model = json.loads(result.stdout)["model"]
    spec = HEADER_ONLY_MODELS[name]
    assert model["complete"] is False
    assert model["total_bytes"] == header_only_data_size(name)
    assert model["missing_bytes"] >= model["total_bytes"]
    assert model["n_layer"] == spec.n_layer
    assert model["n_vocab"] == spec.n_vocab
    human = cli("inspect", str(path))
    assert human.exit_code == 0
    assert "header only" in human.stdout
    assert f"{spec.n_vocab:,} tokens" in human.stdout


def test_llama_70b_header_counts_its_vocabulary(cli, header_only_model):
    model = json.loads(cli("inspect", "--json", str(header_only_model("llama-3.1-70b"))).stdout)["model"]
    assert model["n_vocab"] == 128_256
    assert model["n_merges"] == 280_147
    assert model["n_layer"] == 80
    assert model["n_head_kv"] == [8] * 80
    assert model["file_type"] == "Q4_K_M"


def test_human_output_lists_every_layer(cli, tiny_model):
    result = cli("inspect", str(tiny_model("dense-q8_0")))
    assert result.exit_code == 0
    for i in range(TINY_MODELS["dense-q8_0"].n_layer):
        assert f"blk.{i}" in result.stdout
    assert "Q8_0" in result.stdout
    assert result.stderr == ""


def test_no_model_uses_the_demo_model_and_says_so(cli):
    result = cli("inspect", "--json")
    assert result.exit_code == 0
    assert "demo model" in result.stderr
    assert json.loads(result.stdout)["model"]["architecture"] == "llama"


def test_bad_option_is_one_line_exit_2(cli):
    result = cli("inspect", "--no-such-flag")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "--no-such-flag" in result.stderr
