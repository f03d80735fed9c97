"""`gpusplit bench`: every row present, failures kept as rows, nothing lost to a kill, formats agree."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from gpusplit.documents.results import read_records

pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")

FAST = ["-r", "2", "-p", "32", "-n", "4"]


def test_matrix_over_cpu_and_workers(cli, tiny_model, two_workers, tmp_path):
    out = tmp_path / "results.jsonl"
    result = cli(
        "bench", str(tiny_model("dense-f16")), "--rpc", ",".join(two_workers), "--mode", "layer", "--mode", "tensor",
        "--split", "0.5,0.5", "--split", "0.7,0.3", "--mode", "none", *FAST, "--output", str(out), "-o", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    # layer x 2 splits, tensor x 2 splits, none (split ignored) = 5 configurations x 2 tests.
    assert len(records) == 10
    assert {(r["config"]["mode"], r["test"]) for r in records} >= {("layer", "pp32"), ("tensor", "tg4"), ("none", "pp32")}
    for r in records:
        assert r["status"] == "ok"
        assert len(r["samples_ts"]) == 2 and r["avg_ts"] > 0 and r["stddev_ts"] >= 0
        assert r["avg_ts"] == pytest.approx(sum(r["samples_ts"]) / 2, rel=1e-3)
        assert r["build"]["llama_cpp_python"] == "0.3.36"
        assert r["inventory"] and r["gpusplit_version"]
    assert read_records(out) == records
    layer = next(r for r in records if r["config"]["mode"] == "layer")
    assert {d["name"] for d in layer["devices"]} == {"RPC0", "RPC1", "CPU"}
    assert all(d["actual_bytes"] for d in layer["devices"])


def test_failed_configurations_become_rows_and_the_rest_completes(cli, tiny_model, two_workers):
    result = cli(
        "bench", str(tiny_model("dense-f16")), "--rpc", ",".join(two_workers), "--mode", "tensor", "--mode", "layer",
        "--split", "1,1", "--kv-type", "q8_0", "--flash-attn", "1", *FAST, "-o", "json",
    )  # fmt: skip
    assert result.exit_code == 1
    records = json.loads(result.stdout)
    failed = [r for r in records if r["status"] == "failed"]
    ok = [r for r in records if r["status"] == "ok"]
    assert failed and ok
    assert all(r["config"]["mode"] == "tensor" for r in failed)
    assert "unquantized KV cache" in failed[0]["error"]
    assert all(r["config"]["mode"] == "layer" for r in ok)


def test_engine_failure_keeps_the_log_tail(cli, tiny_model):
    # A context of 256 tokens cannot take a 512-token prompt test: llama.cpp refuses the batch.
    result = cli(
        "bench", str(tiny_model("dense-f16")), "--ctx", "256", "--ctx", "1024", "-p", "512", "-n", "2", "-r", "1", "-o", "json"
    )
    records = json.loads(result.stdout)
    bad = [r for r in records if r["config"]["ctx"] == 256]
    good = [r for r in records if r["config"]["ctx"] == 1024]
    assert result.exit_code == 1
    assert all(r["status"] == "failed" for r in bad) and all(r["status"] == "ok" for r in good)
    assert bad[0]["error"]


def test_sigkill_keeps_finished_rows_and_resume_finishes(tiny_model, tmp_path):
    out = tmp_path / "killed.jsonl"
    args = [sys.executable, "-m", "gpusplit", "bench", str(tiny_model("dense-f16")), "-p", "16", "-n", "200", "-r", "3",
            "--ctx", "512", "--ctx", "768", "--ctx", "1024", "--ctx", "1280", "--ctx", "1536", "--ctx", "1792"]  # fmt: skip
    proc = subprocess.Popen(
        [*args, "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(read_records(out)) < 4:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = read_records(out)
    # two configurations x two tests at least; four configurations left are seconds of work, more
    # than a busy runner keeps this poll waiting
    assert 4 <= len(kept) < 12
    finished = {r["config_key"] for r in kept}
    resumed = subprocess.run([*args, "--resume", str(out), "-o", "jsonl"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    final = read_records(out)
    assert len(final) == 12
    assert len({(r["config_key"], r["test"]) for r in final}) == 12  # nothing run twice
    assert finished < {r["config_key"] for r in final}


def test_formats_parse_and_agree(cli, tiny_model, tmp_path):
    out = tmp_path / "r.jsonl"
    first = cli("bench", str(tiny_model("dense-f16")), *FAST, "--ctx", "512", "--output", str(out), "-o", "jsonl")
    assert first.exit_code == 0
    # --resume on a finished file runs nothing and prints the same records in any format.
    docs = {fmt: cli("bench", str(tiny_model("dense-f16")), *FAST, "--ctx", "512", "--resume", str(out), "-o", fmt).stdout
            for fmt in ("md", "csv", "json", "jsonl")}  # fmt: skip
    as_json = json.loads(docs["json"])
    as_jsonl = [json.loads(line) for line in docs["jsonl"].splitlines()]
    as_csv = list(csv.DictReader(io.StringIO(docs["csv"])))
    md_rows = [line for line in docs["md"].splitlines() if line.startswith("| gpusplit synthetic")]
    assert as_json == as_jsonl == read_records(out)
    # --json is -o json, as in every other command; with another -o it names the clash
    flag = cli("bench", str(tiny_model("dense-f16")), *FAST, "--ctx", "512", "--resume", str(out), "--json")
    assert json.loads(flag.stdout) == as_json
    clash = cli("bench", str(tiny_model("dense-f16")), *FAST, "--resume", str(out), "--json", "-o", "csv")
    assert clash.exit_code == 2 and "--json and -o csv" in clash.stderr
    assert [float(row["avg_ts"]) for row in as_csv] == [r["avg_ts"] for r in as_json]
    assert len(md_rows) == len(as_json) == 2
    for row, r in zip(md_rows, as_json):
        assert f"{r['mean_ts']:.2f} ± " in row and r["test"] in row  # the mean and its 95 % interval


def test_compare_reads_files_bench_wrote(cli, tiny_model, tmp_path):
    """A real file against itself: every row, the same within noise (tests/test_compare.py holds
    the verdicts and the gate on records written by hand)."""
    out = tmp_path / "a.jsonl"
    cli("bench", str(tiny_model("dense-f16")), *FAST, "--ctx", "512", "--output", str(out))
    result = cli("bench", "--compare", str(out), "--compare", str(out), "-o", "json", "--fail-slower", "0")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert len(rows) == 2 and all(r["ratio"] == 1.0 and r["verdict"] == "same" for r in rows)


def test_unwritable_output_is_refused_before_running(cli, tiny_model, tmp_path):
    result = cli("bench", str(tiny_model("dense-f16")), "--output", str(tmp_path), *FAST)
    assert result.exit_code == 2 and "is a directory" in result.stderr


def test_depth_tests_reuse_their_context_and_pay_for_it(cli, tiny_model):
    """A test after -d tokens of context fills that context once and keeps it between repetitions
    (as llama-bench does): with the context exactly as long as depth + test, any run that kept its
    predecessor's tokens would overflow it and fail. Attention over the deeper context costs, and
    the prediction prices it (measured: about 0.3x at depth 1536 on this tiny model, a figure for
    benchmarks/, not for a test that a busy machine runs)."""
    result = cli("bench", str(tiny_model("dense-f16")), "-p", "256", "-n", "8", "-d", "0", "-d", "1536", "-r", "3", "-o", "json")
    assert result.exit_code == 0, result.stderr
    records = {r["test"]: r for r in json.loads(result.stdout)}
    assert set(records) == {"pp256", "tg8", "pp256 @ d1536", "tg8 @ d1536"}
    assert all(r["status"] == "ok" and len(r["samples_ts"]) == 3 for r in records.values())
    assert records["pp256 @ d1536"]["depth"] == 1536 and records["pp256"]["depth"] == 0
    for kind in ("pp256", "tg8"):  # and the prediction prices the deeper context
        assert records[f"{kind} @ d1536"]["predicted_ts"] < records[kind]["predicted_ts"]


@pytest.mark.isolated
def test_each_generated_token_waits_for_the_last(tiny_model, monkeypatch):
    """tg decodes one token at a time and waits for each, as generation must (the next token comes
    from the last logits) and as llama-bench does: without the wait llama.cpp overlaps consecutive
    tokens across an RPC split, and tg over workers read up to a third faster than generation.
    Its warm-up is the test's tokens for at most WARM_UP_S (llama-bench's one token left the first
    repetition at half speed on a 2-vCPU VM; the whole test cost the probe a sixth of its time)."""
    import llama_cpp

    from gpusplit.engine import tasks
    from gpusplit.engine.params import EngineParams
    from gpusplit.engine.tasks import task_bench

    waits, decodes = [], []
    real_sync, real_decode = llama_cpp.llama_synchronize, llama_cpp.llama_decode
    monkeypatch.setattr(llama_cpp, "llama_synchronize", lambda ctx: waits.append(1) or real_sync(ctx))
    monkeypatch.setattr(llama_cpp, "llama_decode", lambda ctx, batch: decodes.append(batch.n_tokens) or real_decode(ctx, batch))
    # (without the CPU's extra buffer types: llama.cpp's AMX kernels crash on some Xeons)
    params = EngineParams(model_path=str(tiny_model("dense-f16")), n_ctx=256, n_threads=1, no_repack=True)
    test = {"name": "tg8", "kind": "tg", "n": 8, "depth": 0}
    monkeypatch.setattr(tasks, "WARM_UP_S", 60.0)  # a busy machine must not cut the warm-up short here
    result = task_bench({"params": params.as_dict(), "tests": [test], "repetitions": 2}, lambda event: None)
    assert len(result["results"][0]["samples_ts"]) == 2
    assert decodes == [1] * (3 * 8)  # a warm-up and two runs of 8 tokens, one at a time
    assert len(waits) >= len(decodes)  # each token waited for
    decodes.clear()
    monkeypatch.setattr(tasks, "WARM_UP_S", 0.0)
    task_bench({"params": params.as_dict(), "tests": [test], "repetitions": 2}, lambda event: None)
    assert decodes == [1] * (1 + 2 * 8)  # the warm-up stops once WARM_UP_S has passed


def test_a_series_times_each_model_in_one_engine_child(tiny_model):
    """The probe's runs, one engine child for all: each run's own samples and load, reported as each
    finishes, in order."""
    from gpusplit.engine.params import EngineParams
    from gpusplit.jobs.runner import bench_series

    tg = [{"name": "tg", "kind": "tg", "n": 4, "depth": 0}]
    pp = [*tg, {"name": "pp", "kind": "pp", "n": 32, "depth": 0, "repetitions": 1}]
    runs = [
        (EngineParams(model_path=str(tiny_model("dense-f16")), n_ctx=256, n_threads=1), pp, 2),
        (EngineParams(model_path=str(tiny_model("moe-f16")), n_ctx=256, n_threads=1), tg, 3),
    ]
    done = []
    outcomes = bench_series(runs, done.append, timeout=120)
    assert done == [0, 1]
    assert [sorted(o.samples) for o in outcomes] == [["pp", "tg"], ["tg"]]
    assert [len(o.samples["tg"]) for o in outcomes] == [2, 3] and len(outcomes[0].samples["pp"]) == 1
    assert all(o.load_ms > 0 for o in outcomes)
