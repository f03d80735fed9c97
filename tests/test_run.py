"""`gpusplit run`: real generation on the CPU and over loopback workers, and every failure's line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import free_port, start_worker

pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")

MIB = 1024 * 1024


def run_json(cli, *args):
    result = cli("run", "--json", "-n", "12", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _check_memory(doc):
    for d in doc["devices"]:
        planned, actual = d["planned"], d["actual"]
        if d["name"] != "Meta()":
            # Sliding-window models print two KV lines, each rounded to 0.01 MiB.
            assert abs(planned["weights"] - actual["weights"]) <= 0.006 * MIB, d
            assert abs(planned["kv"] - actual["kv"]) <= 0.011 * MIB, d
        assert abs(d["planned_bytes"] - d["actual_bytes"]) <= max(0.02 * d["actual_bytes"], 4 * MIB), d
        assert d["diff_bytes"] == d["planned_bytes"] - d["actual_bytes"]


@pytest.mark.parametrize("name", ["dense-f16", "tied-q8_0", "moe-f16", "gemma3-f16", "qwen3-f16"])
def test_run_on_the_cpu(cli, tiny_model, name):
    doc = run_json(cli, str(tiny_model(name)))
    assert doc["schema"] == "gpusplit.run/3"
    t = doc["timings"]
    assert t["gen_tokens"] > 0 and t["prompt_tokens"] > 0
    assert t["load_ms"] > 0 and t["prompt_tps"] > 0 and t["gen_tps"] > 0 and t["ttft_ms"] > 0
    assert doc["plan"]["schema"] == "gpusplit.plan/2"
    _check_memory(doc)


def test_splits_over_workers_give_the_single_device_text(cli, tiny_model, two_workers):
    path = str(tiny_model("dense-f16"))
    rpc = ",".join(two_workers)
    single = run_json(cli, path)
    layer = run_json(cli, path, "--rpc", rpc, "--mode", "layer", "--split", "0.6,0.4")
    tensor = run_json(cli, path, "--rpc", rpc, "--mode", "row")
    assert single["text"] == layer["text"] == tensor["text"]
    assert layer["split_mode"] == "layer" and tensor["split_mode"] == "tensor"
    assert {"row-as-tensor", "tensor-flash-attn"} & {r["code"] for r in tensor["plan"]["reasons"]}
    assert {d["name"] for d in layer["devices"]} == {"RPC0", "RPC1", "CPU"}
    _check_memory(layer)
    _check_memory(tensor)


def test_human_output_streams_text_then_tables(cli, tiny_model):
    path = str(tiny_model("dense-f16"))
    human = cli("run", "-n", "12", path)
    assert human.exit_code == 0, human.stderr
    doc = run_json(cli, path)
    first_line = human.stdout.splitlines()[0]
    assert first_line == doc["text"].replace("\ufffd", "\ufffd")
    assert "timings" in human.stdout and "memory: planned / actual" in human.stdout
    assert f"{doc['timings']['gen_tokens']}" in human.stdout


def test_saved_plan_runs(cli, tiny_model, tmp_path):
    path = str(tiny_model("dense-q8_0"))
    plan = cli("plan", "--json", path, "--ctx", "1024")
    saved = tmp_path / "plan.json"
    saved.write_text(plan.stdout)
    doc = run_json(cli, "--plan", str(saved))
    assert doc["plan"]["settings"]["n_ctx"] == 1024
    assert doc["text"] == run_json(cli, path, "--ctx", "1024")["text"]


def test_header_only_file_is_refused(cli, header_only_model):
    result = cli("run", str(header_only_model("llama-3.1-8b")), "--ram", "64GiB")
    assert result.exit_code == 2
    assert "holds only a header" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_plan_that_does_not_fit_is_refused(cli, tiny_model):
    result = cli("run", str(tiny_model("dense-f16")), "--ram", "1MiB")
    assert result.exit_code == 1
    assert "does not fit" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_engine_says_how_to_install(cli, tiny_model, monkeypatch):
    monkeypatch.setenv("GPUSPLIT_NO_ENGINE", "1")
    result = cli("run", str(tiny_model("dense-f16")))
    assert result.exit_code == 1
    assert 'CMAKE_ARGS="-DGGML_RPC=ON" pip install' in result.stderr


def test_tensor_mode_with_quantized_kv_is_caught_before_loading(cli, tiny_model, two_workers):
    result = cli("run", str(tiny_model("dense-f16")), "--rpc", ",".join(two_workers), "--mode", "tensor", "--split", "1,1",
                 "--kv-type", "q8_0", "--flash-attn")  # fmt: skip
    assert result.exit_code == 2
    assert "unquantized KV cache" in result.stderr


def test_llama_cpp_refusing_the_file_is_one_line_with_its_reason(cli, tmp_path):
    from ggufpack import llama_header

    # A well-formed llama file that llama.cpp refuses (no layer_norm_rms_epsilon, missing tensors).
    path = tmp_path / "incomplete.gguf"
    path.write_bytes(llama_header().build())
    result = cli("run", str(path))
    assert result.exit_code == 1, result.stderr
    assert "llama.cpp could not load" in result.stderr and "Traceback" not in result.stderr
    assert "key not found in model" in result.stderr or "missing tensor" in result.stderr  # llama.cpp's own reason
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_architecture_llama_cpp_does_not_know_is_refused_before_loading(cli, tmp_path):
    from ggufpack import STRING, U32, Packed, llama_header

    p = Packed()
    p.add("general.architecture", STRING, "notanarch")
    for key, value in (("block_count", 2), ("embedding_length", 64), ("attention.head_count", 4)):
        p.add(f"notanarch.{key}", U32, value)
    p.tensors = llama_header().tensors
    path = tmp_path / "alien.gguf"
    path.write_bytes(p.build())
    for command in ("plan", "run"):
        result = cli(command, str(path))
        assert result.exit_code == 2, result.stderr
        assert "unknown model architecture: 'notanarch'" in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_dead_worker_in_a_saved_plan_fails_cleanly(cli, tiny_model, tmp_path):
    port = free_port()
    worker = start_worker(port)
    plan = cli("plan", "--json", str(tiny_model("dense-f16")), "--rpc", f"127.0.0.1:{port}", "--ngl", "-1")
    worker.terminate()
    worker.wait(timeout=10)
    saved = tmp_path / "plan.json"
    saved.write_text(plan.stdout)
    result = cli("run", "--plan", str(saved))
    assert result.exit_code == 1
    assert f"127.0.0.1:{port}" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_worker_killed_during_generation(tiny_model, tmp_path):
    port = free_port()
    worker = start_worker(port)
    model = str(tiny_model("dense-f16"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpusplit", "run", model, "--rpc", f"127.0.0.1:{port}", "--ngl", "-1", "-n", "2000",
         "--ctx", "2048", "--mode", "none", "--main-gpu", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # Kill the worker once text streams: generation is under way, whatever this machine's speed.
    assert proc.stdout is not None and proc.stdout.read(1)
    worker.kill()
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "engine process failed" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2


def test_expert_offload_runs_with_llama_cpp_overrides(cli, tiny_model, two_workers):
    path = str(tiny_model("moe-f16"))
    rpc = ",".join(two_workers)
    base = run_json(cli, path, "--rpc", rpc, "--mode", "layer", "--split", "0.5,0.5")
    moe = run_json(cli, path, "--rpc", rpc, "--mode", "layer", "--split", "0.5,0.5", "--n-cpu-moe", "2")
    assert moe["plan"]["n_cpu_moe"] == 2 and moe["plan"]["llama_args"][-4:-2] == ["--n-cpu-moe", "2"]
    dev = {d["name"]: d for d in moe["devices"]}
    before = {d["name"]: d for d in base["devices"]}
    # The experts of blocks 0 and 1 left RPC0 for the CPU, exactly as planned.
    assert abs(dev["RPC0"]["planned"]["weights"] - dev["RPC0"]["actual"]["weights"]) <= 0.006 * MIB
    assert dev["RPC0"]["actual"]["weights"] < before["RPC0"]["actual"]["weights"]
    # With mmap llama.cpp maps the file span holding the CPU tensors, interleaved GPU tensors included.
    assert dev["CPU"]["actual"]["weights"] >= dev["CPU"]["planned"]["weights"]
    assert moe["text"] == base["text"]


def test_nvml_used_memory_is_read_after_loading_and_after_generating(cli, tiny_model, monkeypatch):
    """NVML's used memory is read before the child starts, when it has loaded and when it has
    generated (CUDA's pool and cuBLAS's workspace grow during the first decodes); the delta is the
    largest reading minus the first, and the child holds the model while the last one is taken."""
    import time

    from gpusplit.jobs import runner

    readings = iter([1000 * MIB, 5000 * MIB, 7000 * MIB])
    seen: list[float] = []

    def fake_used(pci_ids):
        seen.append(time.monotonic())
        return {name: next(readings) for name in pci_ids}

    doc = run_json(cli, str(tiny_model("dense-f16")))  # a plan for this machine
    monkeypatch.setattr(runner, "_nvidia_devices", lambda plan_doc: {"CPU": "00000000:01:00.0"})
    monkeypatch.setattr(runner, "_nvml_used", fake_used)
    from gpusplit.documents.read import plan_from_document

    params = runner.EngineParams.from_dict(doc["plan"]["engine_params"])
    result = runner.generate(plan_from_document(doc["plan"]), params, "Once upon a time", 8)
    assert len(seen) == 3
    assert result.nvml_used_delta == {"CPU": 6000 * MIB}


@pytest.mark.isolated
def test_a_cpu_run_warms_up_before_it_times(tiny_model, monkeypatch):
    """On the CPU too, warm-up decodes come before the timed prompt (llama.cpp's tools warm up
    whatever the device): a cold 13-token prompt of the demo model read 242 and 2,797 t/s in two
    runs where warm it reads several thousand. Single tokens first (two threads on a VM ran their
    first 30-50 ms of them at half speed), then one of the prompt's size, so that the timed prompt
    finds its graph built."""
    import llama_cpp

    from gpusplit.engine import tasks
    from gpusplit.engine.params import EngineParams

    sizes = []
    real = llama_cpp.llama_decode
    monkeypatch.setattr(llama_cpp, "llama_decode", lambda ctx, batch: sizes.append(batch.n_tokens) or real(ctx, batch))
    # (without the CPU's extra buffer types: llama.cpp's AMX kernels crash on some Xeons)
    params = EngineParams(model_path=str(tiny_model("dense-f16")), n_gpu_layers=0, n_ctx=256, n_threads=1, no_repack=True)
    result = tasks.task_generate(
        {"params": params.as_dict(), "prompt": "hello there, how are you", "n_predict": 4, "stream": False}, lambda e: None
    )
    n = result["prompt_tokens"]
    assert n > 1
    warm = sizes.index(n)  # the warm-up's prompt-sized decode
    assert warm >= 1 and set(sizes[:warm]) == {1}
    assert sizes[warm + 1] == n  # the timed prompt
    assert result["perf"]["n_p_eval"] == n  # the warm-up's decodes are not counted
