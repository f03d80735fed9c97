"""Every statement true, every byte safe: one regression test (or more) per finding of issue 12.

Each test failed on the code before the fix; the finding is named in its docstring.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from gpusplit.documents.render import plan_document
from gpusplit.planning.request import Request

HOSTILE = [b"\x1b", b"\x07", "\x9b".encode(), "\x9d".encode(), "\x90".encode()]
HOSTILE_CHARS = ["\x1b", "\x07", "\x9b", "\x9d", "\x90"]


def _clean(text: str) -> bool:
    return not any(c in text for c in HOSTILE_CHARS)


@pytest.fixture(scope="module")
def hostile_model(tiny_model, tmp_path_factory) -> Path:
    """dense-f16 whose general.name sets the terminal title, a colour, and holds C1 controls."""
    source = tiny_model("dense-f16").read_bytes()
    name = b"gpusplit synthetic dense-f16"
    evil = "\x1b]0;PWN\x07\x1b[31mX\x9b2J\x9dZ".encode()
    evil += b"a" * (len(name) - len(evil))
    assert len(evil) == len(name) and source.count(name) == 1
    path = tmp_path_factory.mktemp("hostile") / "hostile.gguf"
    path.write_bytes(source.replace(name, evil))
    return path


# ---------------------------------------------------------------------------------------------
# 1. Terminal injection


@pytest.mark.parametrize("fmt", ["md", "csv", "json", "jsonl"])
def test_bench_tables_strip_a_hostile_model_name(cli, hostile_model, fmt):
    """Finding 1: bench's md and csv tables printed general.name raw (OSC title, colour, C1)."""
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    result = cli("bench", str(hostile_model), "-p", "8", "-n", "2", "-r", "1", "--ctx", "256", "-o", fmt)
    assert result.exit_code == 0, result.stderr
    assert "X" in result.stdout  # what is left of the name: the title-setting OSC went whole
    assert _clean(result.stdout) and _clean(result.stderr)


def test_run_verbose_strips_llama_cpp_log_lines(cli, hostile_model):
    """Finding 1: run --verbose copied llama.cpp's log (which prints general.name) raw to stderr."""
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    result = cli("run", str(hostile_model), "-n", "2", "--verbose")
    assert result.exit_code == 0, result.stderr
    assert "general.name" in result.stderr
    assert _clean(result.stderr) and _clean(result.stdout)


def test_plan_and_inspect_strip_a_hostile_model_name(cli, hostile_model):
    for args in (["plan", str(hostile_model)], ["plan", "--json", str(hostile_model)], ["inspect", str(hostile_model)]):
        result = cli(*args)
        assert result.exit_code == 0, result.stderr
        assert _clean(result.stdout) and _clean(result.stderr), args


def test_crash_hints_with_llama_cpp_log_tail_are_stripped(capsys):
    """Finding 1: a crash hint carries llama.cpp's last log lines, which were printed raw."""
    from gpusplit.cli.errors import run_guarded
    from gpusplit.engine.child import EngineCrash

    def crash() -> None:
        raise EngineCrash("the llama.cpp engine process failed: llama.cpp aborted", ["\x1b]0;PWN\x07recv failed\x9b2J"], -6)

    assert run_guarded(crash) == 1
    err = capsys.readouterr().err
    assert "recv failed" in err and _clean(err)
    assert len(err.strip().splitlines()) == 1


def test_json_keeps_text_lines_but_drops_controls(capsys):
    from gpusplit.cli import output

    output.emit_json({"text": "line one\n\tline two \x1b[2J\x9b5m\x07 end" + "x" * 5000})
    doc = json.loads(capsys.readouterr().out)
    assert doc["text"].startswith("line one\n\tline two  end") and len(doc["text"]) > 5000  # not cut short
    assert _clean(doc["text"])


def test_markdown_and_csv_cells_are_sanitized(capsys):
    from gpusplit.cli import output

    output.markdown_table(["model", "t/s"], [["a|b\x1b]8;;http://x\x07link\x1b]8;;\x07", "1.0"]])
    output.csv_table(["model"], [["evil\x1b[31m\x85,name"]])
    out = capsys.readouterr().out
    assert _clean(out) and "\x85" not in out and "a\\|blink" in out and '"evil?,name"' in out


# ---------------------------------------------------------------------------------------------
# 2. --check and experts on the CPU


def test_check_fails_when_experts_stay_on_the_cpu(cli, header_only_model):
    """Finding 2: a Mixtral-shaped file on one 24 GiB card planned as expert offload said
    "wholly on the GPUs" and `plan --check` exited 0."""
    path = str(header_only_model("mixtral-8x7b"))
    result = cli("plan", path, "--gpu", "24GiB", "--ram", "64GiB", "--check")
    assert result.exit_code == 3
    assert "wholly on the GPUs, " not in result.stdout
    assert "experts of blocks 0-" in result.stdout and "on the CPU" in result.stdout
    doc = json.loads(cli("plan", path, "--gpu", "24GiB", "--ram", "64GiB", "--json").stdout)
    assert doc["strategy"] == "expert-offload" and doc["n_cpu_moe"] > 0
    assert doc["fits"] is True and doc["all_on_gpu"] is False
    # Enough memory: the same model is wholly on the GPUs and --check passes.
    assert cli("plan", path, "--gpu", "2xA100-80GB", "--ram", "64GiB", "--check").exit_code == 0


# ---------------------------------------------------------------------------------------------
# 3. --spread


def test_spread_gives_every_gpu_a_layer(cli, header_only_model):
    """Finding 3: a Gemma-3-like model (262k vocabulary) with --gpu "2xRTX 4060" --spread planned
    -ts 1,0 (everything on GPU0) while saying the layers were split in proportion to memory."""
    path = str(header_only_model("gemma-3-270m"))
    doc = json.loads(cli("plan", "--json", path, "--gpu", "2xRTX 4060", "--spread", "--ram", "16GiB").stdout)
    assert doc["strategy"] == "layer-split" and doc["fits"]
    assert all(share > 0 for share in doc["tensor_split"])
    blocks = [d["n_layers"] - (1 if "output" in d["layers"] else 0) for d in doc["devices"]]
    assert all(b >= 1 for b in blocks) and sum(blocks) == doc["model"]["n_layer"]
    reason = next(r for r in doc["reasons"] if r["code"] == "layer-split")
    assert reason["values"]["blocks"] == {"GPU0": blocks[0], "GPU1": blocks[1]} and reason["values"]["idle"] == []


def test_a_gpu_left_idle_is_explained(cli, header_only_model):
    """Finding 3: without --spread the idle GPU is named, with the reason, not hidden."""
    path = str(header_only_model("gemma-3-270m"))
    doc = json.loads(cli("plan", "--json", path, "--gpu", "2xRTX 4060", "--mode", "layer", "--ram", "16GiB").stdout)
    idle = [d["name"] for d in doc["devices"] if d["n_layers"] == 0]
    assert idle == ["GPU1"]
    reason = next(r for r in doc["reasons"] if r["code"] == "layer-split")
    assert reason["values"]["idle"] == ["GPU1"] and reason["values"]["blocks"]["GPU1"] == 0


def test_whole_layer_counts_place_exactly_in_llama_cpp(tiny_model, two_workers):
    """The integer split --spread falls back to lands layer for layer where planned (llama.cpp's
    float32 upper_bound over the cumulative split)."""
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    import re

    import gpusplit
    from gpusplit.engine.child import run_task
    from gpusplit.planning.launch import engine_params
    from gpusplit.planning.planner import at_least_one_block

    model = gpusplit.read_model(tiny_model("dense-f16"))
    inventory = gpusplit.detect_devices(rpc=two_workers)
    split = at_least_one_block(model, (1.0, 0.0), [0, 1], 2)
    assert split[1] >= 2 and sum(split) == model.n_layer + 1  # whole layers, output included
    plan = gpusplit.plan(model, inventory, Request(n_ctx=256, split_mode="layer", tensor_split=split, n_gpu_layers=-1))
    _, log = run_task("dryrun", {"params": engine_params(plan).as_dict()})
    actual = {int(il): dev for il, dev in re.findall(r"layer\s+(\d+) assigned to device (\S+),", "\n".join(log))}
    names = [d.name for d in inventory.devices]
    assert actual == {il: names[dev] for il, dev in enumerate(plan.best.memory.layer_device)}
    assert set(actual.values()) == {"RPC0", "RPC1"}


# ---------------------------------------------------------------------------------------------
# 4. A truncated download


@pytest.fixture
def truncated_model(tiny_model, tmp_path) -> Path:
    data = tiny_model("dense-f16").read_bytes()
    path = tmp_path / "truncated.gguf"
    path.write_bytes(data[: len(data) - 100_000])
    return path


def test_plan_warns_about_a_truncated_file(cli, truncated_model):
    """Finding 4: a file cut short after its header planned silently, exit 0."""
    result = cli("plan", str(truncated_model))
    assert result.exit_code == 0
    assert [line for line in result.stderr.splitlines() if "warning" in line] != []
    doc = json.loads(cli("plan", "--json", str(truncated_model)).stdout)
    assert doc["model"]["complete"] is False and doc["model"]["missing_bytes"] == 100_000
    assert [(w["code"], w["values"]["missing_bytes"]) for w in doc["warnings"]] == [("incomplete-file", 100_000)]


@pytest.mark.parametrize("command", ["run", "bench"])
def test_run_and_bench_refuse_a_truncated_file(cli, truncated_model, command, monkeypatch):
    """Finding 4: run and bench refuse it with exit 2 and the missing bytes, engine or not."""
    monkeypatch.setenv("GPUSPLIT_NO_ENGINE", "1")
    result = cli(command, str(truncated_model))
    assert result.exit_code == 2
    assert "truncated" in result.stderr and "97.66 KiB" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# 5. plan --measure: one source for every figure


def test_measure_gives_best_ctx_and_score_from_the_dry_run(tmp_path, two_workers):
    """Finding 5: with --measure, fits came from the dry run but best_ctx and score from the
    estimate. Now the measured best context is the dry run's boundary: it fits at best_ctx and
    not 256 tokens later."""
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    import gpusplit
    from gpusplit.engine.child import run_task
    from gpusplit.jobs.runner import rpc_buffer_names
    from gpusplit.planning.launch import engine_params
    from gpusplit.planning.planner import context_budgets
    from gpusplit.synthetic import write_header_only

    # The real shapes of Llama 3.1 8B, its data a sparse hole: llama.cpp's dry run reads no data.
    model = gpusplit.read_model(write_header_only(tmp_path / "8b.gguf", "llama-3.1-8b", sparse=True))
    inventory = gpusplit.detect_devices(rpc=two_workers, ram="64GiB")
    # Leave each worker 6 GiB, so the context is limited by memory, not by the model.
    reserve = min(d.free_bytes for d in inventory.devices) - 6 * 2**30
    request = Request(n_ctx=4096, split_mode="none", main_gpu=0, n_gpu_layers=-1, reserve=(reserve,))
    measured = gpusplit.plan(model, inventory, request, measure=True)
    estimated = gpusplit.plan(model, inventory, request)
    doc = plan_document(measured)
    assert doc["compute_source"] == "measured" and plan_document(estimated)["compute_source"] == "estimate"
    best = doc["best_ctx"]
    assert 4096 < best < model.context_length
    contexts, budgets = context_budgets(measured, measured.best)
    i = contexts.index(best)
    load = {"params": engine_params(measured).as_dict(), "contexts": [best, best + 256]}
    result, _ = run_task("measure", {"loads": [load], "rpc_names": rpc_buffer_names(measured)})
    compute = result["loads"][0]["measured"]
    assert all(compute[str(best)].get(n, 0) <= b for n, b in budgets[i].items())
    assert any(compute[str(best + 256)].get(n, 0) > b for n, b in budgets[i + 1].items())


# ---------------------------------------------------------------------------------------------
# 6. A shell-safe llama-server line


def test_measure_refuses_a_file_without_its_data(cli, header_only_model, monkeypatch):
    result = cli("plan", str(header_only_model("llama-3.1-8b")), "--measure")
    assert result.exit_code == 2 and "cannot be measured" in result.stderr


def test_llama_server_line_round_trips_through_the_shell(cli, tiny_model, tmp_path):
    """Finding 6: paths with spaces, ; & ( ) * ? or quotes came out unquoted."""
    folder = tmp_path / "my models; rm -rf ~ & (copy) * ?"
    folder.mkdir()
    path = folder / 'it\'s "quoted".gguf'
    path.write_bytes(tiny_model("dense-f16").read_bytes())
    result = cli("plan", str(path))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    line = next(line.strip() for line in lines if line.strip().startswith("llama-server "))
    doc = json.loads(cli("plan", "--json", str(path)).stdout)
    assert shlex.split(line) == ["llama-server", *doc["llama_args"]]
    assert str(path) in shlex.split(line)


# ---------------------------------------------------------------------------------------------
# 7. Options are validated before the engine is looked for


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["bench", "--mode", "diagonal"], "--mode"),
        (["bench", "--kv-type", "q9_9"], "--kv-type"),
        (["bench", "--split", "a,b"], "--split"),
        (["bench", "--ctx", "0"], "--ctx"),
        (["bench", "-p", "0", "-n", "0"], "no tests"),
        (["run", "--mode", "diagonal"], "--mode"),
        (["run", "--kv-type", "q9_9"], "--kv-type"),
        (["plan", "--measure", "--split", "x"], "--split"),
        (["worker", "--host", "0.0.0.0"], "--host"),
    ],
)
def test_bad_options_exit_2_without_the_engine(cli, monkeypatch, args, named):
    """Finding 7: without the llama extra, `bench --mode diagonal` exited 1 (engine missing)."""
    monkeypatch.setenv("GPUSPLIT_NO_ENGINE", "1")
    result = cli(*args)
    assert result.exit_code == 2, result.stderr
    assert named in result.stderr and len(result.stderr.strip().splitlines()) <= 2


# ---------------------------------------------------------------------------------------------
# 8. Host memory on every OS


def test_host_memory_comes_from_psutil_on_any_platform(cli, monkeypatch, header_only_model):
    """Finding 8: host memory came from /proc/meminfo, so it was 0 on macOS and Windows and every
    plan "did not fit"."""
    from collections import namedtuple

    import psutil

    import gpusplit.devices.inventory as inventory

    memory = namedtuple("svmem", "total available percent used free")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory(32 * 2**30, 20 * 2**30, 37.5, 12 * 2**30, 8 * 2**30))
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(inventory, "open", lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError(a[0])), raising=False)
    host = inventory.host_device()
    assert (host.total_bytes, host.free_bytes) == (32 * 2**30, 20 * 2**30)
    doc = json.loads(cli("plan", "--json", str(header_only_model("llama-3.1-8b")), "--gpu", "8GiB").stdout)
    assert doc["host"]["free_bytes"] == 20 * 2**30 and doc["fits"] is True


# ---------------------------------------------------------------------------------------------
# 9. Tensor mode: what llama.cpp allocated, per device


def test_tensor_mode_shows_actual_memory_per_device(cli, tiny_model, two_workers):
    """Finding 9: in tensor mode run and bench showed "?" for the workers' actual memory."""
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    path = str(tiny_model("dense-f16"))
    rpc = ",".join(two_workers)
    records = json.loads(
        cli("bench", path, "--rpc", rpc, "--mode", "tensor", "-p", "8", "-n", "2", "-r", "1", "-o", "json").stdout
    )
    for r in records:
        workers = {d["name"]: d for d in r["devices"] if d["name"].startswith("RPC")}
        assert set(workers) == {"RPC0", "RPC1"}
        assert all(d["actual_bytes"] and d["actual_source"] == "group" for d in workers.values())
    table = cli("bench", path, "--rpc", rpc, "--mode", "tensor", "-p", "8", "-n", "2", "-r", "1").stdout
    assert "?" not in table.split("\n", 2)[2]
    run = json.loads(cli("run", path, "--rpc", rpc, "--mode", "tensor", "-n", "4", "--json").stdout)
    rows = {d["name"]: d for d in run["devices"]}
    assert {"RPC0", "RPC1", "CPU"} <= set(rows) and "Meta()" not in rows
    for name in ("RPC0", "RPC1"):
        assert rows[name]["actual_bytes"] > 0 and rows[name]["actual_source"] == "group"
        # Equal shares: each device's planned bytes are close to the group's figure.
        assert abs(rows[name]["diff_bytes"]) <= max(0.1 * rows[name]["actual_bytes"], 2 * 2**20)


# ---------------------------------------------------------------------------------------------
# 10. Help readable in 80 columns


@pytest.mark.parametrize("command", ["plan", "run", "bench", "devices", "worker", "inspect"])
def test_help_is_whole_and_fits_80_columns(command):
    """Finding 10: rich's option panels squeezed the help into a narrow column and cut it with '…'."""
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"}
    text = subprocess.run(
        [sys.executable, "-m", "gpusplit", command, "--help"], capture_output=True, text=True, env=env, timeout=60, check=True
    ).stdout
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    flat = " ".join(text.split())
    import typer

    from gpusplit.cli.app import app

    click_command = typer.main.get_command(app).commands[command]
    for param in click_command.params:
        if param.help:
            words = " ".join(param.help.split())
            assert words in flat.replace("- ", "-"), (command, param.name)
