"""`gpusplit plan`: the JSON contract, exit codes, and every way of naming devices."""

from __future__ import annotations

import json

import pytest

from gpusplit.synthetic import HEADER_ONLY_MODELS, SMALL_TINY_MODELS

KEYS = {
    "schema", "model", "settings", "strategy", "split_mode", "tensor_split", "n_gpu_layers", "main_gpu", "fits",
    "best_ctx", "score", "devices", "host", "llama_args", "reasons",
}  # fmt: skip
DEVICE_KEYS = {
    "name",
    "kind",
    "total_bytes",
    "free_bytes",
    "layers",
    "weights_bytes",
    "kv_bytes",
    "compute_bytes",
    "planned_bytes",
}


def plan_json(cli, *args):
    result = cli("plan", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_plan_document_contract(cli, header_only_model):
    doc = plan_json(cli, str(header_only_model("llama-3.1-70b")), "--gpu", "RTX 4090", "--gpu", "RTX 3090", "--ctx", "8192")
    assert KEYS <= set(doc)
    assert doc["schema"] == "gpusplit.plan/2"
    assert set(doc["settings"]) >= {"n_ctx", "n_batch", "n_ubatch", "type_k", "type_v", "flash_attn"}
    for d in [*doc["devices"], doc["host"]]:
        assert DEVICE_KEYS <= set(d)
        assert d["planned_bytes"] == (
            d["weights_bytes"] + d["kv_bytes"] + d["compute_bytes"] + d["output_bytes"] + d["runtime_bytes"]
        )
    # Each GPU (size-only and catalog cards are taken for CUDA) also holds the driver's context and
    # cuBLAS's workspace (flash attention is off): 692 MiB as measured on an H200; the host none.
    assert [d["runtime_bytes"] for d in doc["devices"]] == [692 * 2**20] * 2 and doc["host"]["runtime_bytes"] == 0
    assert doc["strategy"] == "layer-split" and doc["fits"] is True
    assert doc["n_gpu_layers"] == 81 and doc["split_mode"] == "layer"
    assert doc["llama_args"][doc["llama_args"].index("-ts") + 1] == ",".join(f"{x:g}" for x in doc["tensor_split"])
    assert doc["llama_cpp_python"]["tensor_split"] == doc["tensor_split"]
    assert 0 < doc["score"] <= 1 and doc["best_ctx"] >= 8192
    assert doc["predicted"]["tg_tokens_per_s"] > 0


def test_plan_human_output(cli, header_only_model):
    result = cli("plan", str(header_only_model("llama-3.1-8b")), "--gpu", "RTX 4090")
    assert result.exit_code == 0
    assert "single-gpu" in result.stdout and "llama-server" in result.stdout and "llama_cpp.Llama(" in result.stdout
    assert "-ngl 33" in result.stdout


@pytest.mark.parametrize("name", sorted(HEADER_ONLY_MODELS))
def test_plan_every_header_only_model(cli, header_only_model, name):
    gpus = ["--gpu", "A100-80GB"] * (8 if name == "deepseek-v3" else 2)  # 377 GiB of weights
    doc = plan_json(cli, str(header_only_model(name)), *gpus)
    assert doc["fits"]
    assert doc["model"]["complete"] is False


@pytest.mark.parametrize("name", SMALL_TINY_MODELS)
def test_plan_every_tiny_model_on_this_machine(cli, tiny_model, name):
    doc = plan_json(cli, str(tiny_model(name)))
    assert doc["fits"]
    host = doc["host"]
    assert host["weights_bytes"] + sum(d["weights_bytes"] for d in doc["devices"]) >= doc["model"]["total_bytes"]


def test_check_exit_codes(cli, header_only_model):
    path = str(header_only_model("llama-3.1-70b"))
    assert cli("plan", "--check", path, "--gpu", "A100-80GB").exit_code == 0
    partial = cli("plan", "--check", path, "--gpu", "RTX 4090", "--ram", "256GiB")
    assert partial.exit_code == 3
    assert "does not fit wholly on the GPUs" in partial.stderr
    # Fits with part of the model on the CPU: still exit 3, and stdout is only the document.
    as_json = cli("plan", "--check", "--json", path, "--gpu", "RTX 4090", "--ram", "256GiB")
    doc = json.loads(as_json.stdout)
    assert as_json.exit_code == 3 and doc["fits"] is True and doc["all_on_gpu"] is False
    # Does not fit at all (8 GiB of host RAM for a 40 GiB model): exit 3 too.
    too_small = cli("plan", "--check", "--json", path, "--gpu", "RTX 4090", "--ram", "8GiB")
    assert too_small.exit_code == 3 and json.loads(too_small.stdout)["fits"] is False


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--split", "-1,2"], "--split"),
        (["--split", "nan,1"], "--split"),
        (["--split", "0,0"], "all zeros"),
        (["--split", "1,1,1"], "3 entries but there are 2 devices"),
        (["--main-gpu", "5"], "--main-gpu 5 is out of range"),
        (["--ctx", "0"], "--ctx 0"),
        (["--ctx", "999999999"], "above the model's context length"),
        (["--kv-type", "q8_0"], "quantized V cache requires flash_attn"),
        (["--kv-type", "q3_k"], "not a KV cache type"),
        (["--mode", "diagonal"], "not a split mode"),
        (["--gpu", "RTX 4900"], "RTX 4090"),
        (["--reserve", "lots"], "--reserve"),
        (["--ngl", "-5"], "--ngl"),
    ],
)
def test_impossible_requests_exit_2_in_one_line(cli, header_only_model, args, phrase):
    base = ["plan", str(header_only_model("llama-3.1-8b"))]
    if "--gpu" not in args:
        base += ["--gpu", "24GiB", "--gpu", "8GiB"]
    result = cli(*base, *args)
    assert result.exit_code == 2, result.stdout
    assert phrase in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_ctx_overflow_is_allowed_on_request(cli, tiny_model):
    assert plan_json(cli, str(tiny_model("dense-f16")), "--ctx", "8192", "--allow-ctx-overflow")["settings"]["n_ctx"] == 8192


def test_devices_file_plans_like_the_same_hypothetical_devices(cli, tmp_path, header_only_model):
    inventory = cli("devices", "--json", "--gpu", "RTX 4090", "--gpu", "RTX 3090")
    path = tmp_path / "server.json"
    path.write_text(inventory.stdout)
    model = str(header_only_model("llama-3.1-70b"))
    from_file = plan_json(cli, model, "--devices-file", str(path), "--ram", "64GiB")
    direct = plan_json(cli, model, "--gpu", "RTX 4090", "--gpu", "RTX 3090", "--ram", "64GiB")
    assert from_file["tensor_split"] == direct["tensor_split"]
    assert [d["planned_bytes"] for d in from_file["devices"]] == [d["planned_bytes"] for d in direct["devices"]]


def test_user_split_and_ngl_are_kept(cli, header_only_model):
    doc = plan_json(
        cli, str(header_only_model("llama-3.1-70b")), "--gpu", "24GiB", "--gpu", "24GiB", "--split", "3,1", "--ngl", "40"
    )
    assert doc["tensor_split"] == [3.0, 1.0] and doc["n_gpu_layers"] == 40
    assert doc["strategy"] == "as-given"


def test_plans_on_cuda_suggest_flash_attention(cli, header_only_model):
    """llama-cpp-python turns flash attention off, llama.cpp's tools on for CUDA ('auto'); on an
    H200 it generated 15 % faster: a plan on a CUDA-like GPU without it says so, others do not."""
    model = str(header_only_model("llama-3.1-8b"))
    off = plan_json(cli, model, "--gpu", "24GiB")
    assert "flash-attn-off" in [r["code"] for r in off["reasons"]]
    on = plan_json(cli, model, "--gpu", "24GiB", "--flash-attn")
    assert "flash-attn-off" not in [r["code"] for r in on["reasons"]]
    assert on["devices"][0]["runtime_bytes"] == off["devices"][0]["runtime_bytes"] - 94 * 2**20  # no cuBLAS
    rpc_like = plan_json(cli, model, "--gpu", "24GiB", "--ram", "64GiB", "--ngl", "0", "--ubatch", "16")
    # no layer and batches too small to offload: the GPU holds nothing, nothing to suggest
    assert rpc_like["devices"][0]["planned_bytes"] == 0
    assert "flash-attn-off" not in [r["code"] for r in rpc_like["reasons"]]


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--mode", "row", "--main-gpu", "1", "--parallel", "2", "--kv-type", "q8_0", "--flash-attn", "--no-repack"],
        ["--split", "3,1", "--ngl", "40", "--n-cpu-moe", "0", "--kv-type-k", "q8_0", "--kv-type-v", "q4_0", "--flash-attn"],
    ],
)
def test_every_printed_flag_line_is_one_llama_server_parses(cli, header_only_model, extra):
    """The flags a plan prints, checked against llama-server's own option table (llama.cpp's
    common/arg.cpp, recorded in tests/data): each word an option it knows, with its values."""
    from llama_server import model_source, rejected

    model = str(header_only_model("llama-3.1-70b"))
    doc = plan_json(cli, model, "--gpu", "24GiB", "--gpu", "24GiB", *extra)
    assert not rejected(doc["llama_args"]), doc["llama_args"]
    assert model_source(doc["llama_args"]) == ("-m", model)


def test_a_plan_over_workers_says_how_to_start_each(cli, tmp_path, header_only_model):
    """Each worker's start command, bound where the plan reaches it: gpusplit's (with
    --allow-remote and the weight cache off loopback) and llama.cpp's ggml-rpc-server; the
    llama-server line names both; each worker's load is predicted, and again from its cache."""
    import gpusplit
    from gpusplit.planning.predict import CACHE_READ_BYTES_PER_S

    gib = 2**30
    workers = [("RPC0", "10.0.0.7:50052"), ("RPC1", "127.0.0.1:50053")]
    devices = {
        "schema": "gpusplit.devices/2",
        "devices": [
            {"name": name, "description": endpoint, "backend": "RPC", "type": "gpu", "total_bytes": 24 * gib,
             "free_bytes": 24 * gib, "index": i, "endpoint": endpoint}
            for i, (name, endpoint) in enumerate(workers)
        ],
    }  # fmt: skip
    path = tmp_path / "workers.json"
    path.write_text(json.dumps(devices))
    model = str(header_only_model("llama-3.1-8b"))
    model_info = gpusplit.read_model(model)
    doc = plan_json(cli, model, "--devices-file", str(path), "--split", "1,1")
    assert doc["workers"] == [
        {"endpoint": "10.0.0.7:50052", "gpusplit": ["gpusplit", "worker", "--host", "10.0.0.7", "--port", "50052", "--allow-remote",
                      "--cache"],
         "llama_cpp": ["ggml-rpc-server", "-H", "10.0.0.7", "-p", "50052", "-c"]},
        {"endpoint": "127.0.0.1:50053", "gpusplit": ["gpusplit", "worker", "--host", "127.0.0.1", "--port", "50053"],
         "llama_cpp": ["ggml-rpc-server", "-H", "127.0.0.1", "-p", "50053"]},
    ]  # fmt: skip
    args = doc["llama_args"]
    assert args[args.index("--rpc") + 1] == "10.0.0.7:50052,127.0.0.1:50053"
    # at load each worker receives the weights it holds, over its link (unmeasured: 10 GbE assumed)
    load = doc["predicted"]["load"]
    for device in doc["devices"]:
        assert load[device["name"]]["bytes"] == device["weights_bytes"] > 0
        assert load[device["name"]]["seconds"] == pytest.approx(device["weights_bytes"] / 1.25e9, abs=1e-3)
        # from the worker's cache: its tensors over 10 MiB (the FFN's, the output) read from its disk
        # instead of the (assumed 10 GbE) link, the rest sent as before
        first, last = (int(x) for x in device["layers"].split(",")[0].split("-"))
        groups = list(model_info.blocks[first : last + 1]) + ([model_info.output] if "output" in device["layers"] else [])
        tensors = [t.n_bytes for g in groups for t in g.tensors]
        hashed = sum(n for n in tensors if n > 10 * 2**20) / sum(tensors) * device["weights_bytes"]
        expected = hashed / CACHE_READ_BYTES_PER_S + (device["weights_bytes"] - hashed) / 1.25e9
        assert load[device["name"]]["cached_seconds"] == pytest.approx(expected, abs=2e-3)
        assert expected < load[device["name"]]["seconds"]
    assert doc["predicted"]["load_s"] == pytest.approx(sum(x["seconds"] for x in load.values()), abs=2e-3)
    shown = cli("plan", model, "--devices-file", str(path), "--split", "1,1").stdout
    assert (
        "gpusplit worker --host 10.0.0.7 --port 50052 --allow-remote --cache    # or: ggml-rpc-server -H 10.0.0.7 -p 50052 -c"
        in shown
    )
    assert "s again from its cache" in shown
    # the gpusplit command is one the CLI takes
    assert cli("worker", "--help").exit_code == 0 and all(
        flag in cli("worker", "--help").stdout for flag in ("--host", "--port", "--allow-remote", "--cache")
    )


def test_plan_draws_each_devices_memory_as_a_bar(cli, header_only_model):
    """Under the table, a bar per device: each part of its planned memory in a character of its own
    (readable with NO_COLOR), scaled to its free memory, the rest dots; a device it overfills says so."""
    model = str(header_only_model("llama-3.1-8b"))
    doc = plan_json(cli, model, "--gpu", "RTX 4090", "--ctx", "8192")
    shown = cli("plan", model, "--gpu", "RTX 4090", "--ctx", "8192").stdout
    (gpu,) = [d for d in doc["devices"] if d["name"] == "GPU0"]
    (bar,) = [line for line in shown.splitlines() if line.startswith("  GPU0 ")]
    cells = {char: bar.count(char) for char in "█▓▒░·"}
    assert sum(cells.values()) == 40
    assert cells["█"] == pytest.approx(40 * gpu["weights_bytes"] / gpu["free_bytes"], abs=1)
    assert cells["▓"] == pytest.approx(40 * gpu["kv_bytes"] / gpu["free_bytes"], abs=1)
    assert "of 24.00 GiB free" in bar and "does not fit" not in bar
    over = cli("plan", model, "--gpu", "RTX 3060 8GB", "--ctx", "131072").stdout
    (bar,) = [line for line in over.splitlines() if line.startswith("  GPU0 ")]
    assert "·" not in bar and bar.endswith("does not fit")
