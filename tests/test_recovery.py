"""No crash reaches the user. On Intel Xeons with AMX, llama.cpp 0.3.36 crashes (SIGSEGV in its AMX
matmul) once weights sit in its AMX buffer; `run`, `bench`, `tune` and the probe then run the work
again with the CPU's extra buffer types off (--no-repack), say so in one line and in their JSON,
and the plans they hand on carry --no-repack.

The crash is injected on every CPU by the engine child's test hook (GPUSPLIT_TEST_FAULT): a
SIGSEGV after the load, as on the AMX host, while an extra buffer type (here CPU_REPACK, which
this Q4_0 model fills on x86 and ARM alike) holds weights."""

from __future__ import annotations

import json

import pytest

from gpusplit.planning.cpu_buffers import AMX, REPACK

pytestmark = pytest.mark.engine
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def q4_0(tmp_path_factory):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    from gpusplit.engine.registry import cpu_backend_info
    from gpusplit.jobs.runner import quantize
    from gpusplit.synthetic import write_tiny_model

    if not cpu_backend_info().extra_buffers:
        pytest.skip("this llama.cpp build has no extra buffer types to crash in")
    folder = tmp_path_factory.mktemp("recovery")
    source = write_tiny_model(folder / "dense-f16.gguf", "dense-f16")
    path = folder / "dense-Q4_0.gguf"
    quantize(str(source), str(path), 2, threads=1)  # LLAMA_FTYPE_MOSTLY_Q4_0
    return str(path)


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning:" in line]


def test_run_recovers_from_the_crash_and_says_so(cli, q4_0, monkeypatch):
    clean = cli("run", q4_0, "-n", "12", "--no-repack", "--json")
    assert clean.exit_code == 0, clean.stderr
    monkeypatch.setenv("GPUSPLIT_TEST_FAULT", "extra-buffers")
    result = cli("run", q4_0, "-n", "12", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    recovery = doc["recovery"]
    assert recovery["crash"] == "SIGSEGV" and recovery["rerun"] == "--no-repack"
    assert recovery["extra_buffers"] and set(recovery["extra_buffers"]) <= {AMX, REPACK}
    assert doc["text"] == json.loads(clean.stdout)["text"]  # the same greedy text as a plain --no-repack run
    (warning,) = _warnings(result.stderr)
    assert "crashed (SIGSEGV)" in warning and "--no-repack" in warning
    assert "Traceback" not in result.stderr
    # The plan it hands on is the one that ran: --no-repack, and host weights that match llama.cpp's.
    plan = doc["plan"]
    assert "--no-repack" in plan["llama_args"] and plan["engine_params"]["no_repack"] is True
    assert plan["settings"]["no_repack"] is True
    assert doc["host_weights"]["actual"] == {"CPU_Mapped": doc["host_weights"]["actual"]["CPU_Mapped"]}
    (cpu,) = [d for d in doc["devices"] if d["name"] == "CPU"]
    assert abs(cpu["planned"]["weights"] - cpu["actual"]["weights"]) <= 0.0051 * MIB


def test_a_run_without_extra_buffers_never_needs_it(cli, q4_0, monkeypatch):
    monkeypatch.setenv("GPUSPLIT_TEST_FAULT", "extra-buffers")
    result = cli("run", q4_0, "-n", "4", "--no-repack", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["recovery"] is None and not _warnings(result.stderr)


def test_host_weights_by_buffer_match_llama_cpp(cli, q4_0):
    """The planned-vs-actual table no longer drops the CPU backend's copies: each buffer is there."""
    result = cli("run", q4_0, "-n", "4", "--json")
    assert result.exit_code == 0, result.stderr
    host = json.loads(result.stdout)["host_weights"]
    assert set(host["planned"]) == set(host["actual"]) and len(host["actual"]) == 2  # mapped + one copy
    for name, planned in host["planned"].items():
        assert abs(planned - host["actual"][name]) <= 0.0051 * MIB, name


def test_another_crash_is_one_line_with_llama_cpp_last_words(cli, q4_0, monkeypatch):
    monkeypatch.setenv("GPUSPLIT_TEST_FAULT", "always")
    result = cli("run", q4_0, "-n", "4")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    (line,) = errors
    assert "also when run again with --no-repack" in line and "llama.cpp's last words" in line and "--verbose" in line


def test_bench_rows_recover_and_carry_no_repack(cli, q4_0, monkeypatch, tmp_path):
    monkeypatch.setenv("GPUSPLIT_TEST_FAULT", "extra-buffers")
    out = tmp_path / "rows.jsonl"
    result = cli(
        "bench", q4_0, "-p", "16", "-n", "4", "-r", "1", "--ctx", "256", "--ctx", "512", "--output", str(out), "-o", "json"
    )
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert all(r["recovery"]["crash"] == "SIGSEGV" and r["no_repack"] for r in rows)
    assert all(r["engine_params"]["no_repack"] is True for r in rows)
    # one crash, one line: the second configuration ran with --no-repack from the start
    assert len(_warnings(result.stderr)) == 1 and "crashed" in _warnings(result.stderr)[0]
    assert rows[2]["engine_params"]["n_ctx"] == 512
    monkeypatch.delenv("GPUSPLIT_TEST_FAULT")
    plain = json.loads(cli("bench", q4_0, "-p", "16", "-n", "4", "-r", "1", "--ctx", "256", "-o", "json").stdout)
    assert all(r["recovery"] is None and not r["no_repack"] for r in plain)


def test_tune_recovers_and_its_winner_carries_no_repack(cli, q4_0, monkeypatch, tmp_path):
    monkeypatch.setenv("GPUSPLIT_TEST_FAULT", "extra-buffers")
    winner = tmp_path / "winner.json"
    result = cli("tune", q4_0, "--ctx", "256", "--budget", "8s", "--output", str(winner), "--json")
    assert result.exit_code in (0, 130), result.stderr
    doc = json.loads(result.stdout)
    measured = [t for t in doc["trials"] if t["status"] == "ok"]
    assert measured and measured[0]["recovery"]["crash"] == "SIGSEGV"
    assert all(t["key"].endswith("nr=1") for t in measured[1:])  # after the crash, every trial without them
    plan = json.loads(winner.read_text())
    assert "--no-repack" in plan["llama_args"] and plan["engine_params"]["no_repack"] is True


def test_a_series_keeps_what_ran_and_recovers_once(q4_0, tiny_model, monkeypatch):
    """The probe's series: a crash loses nothing done, the rest runs without the extra buffer types,
    and a run that fails whatever is done comes back failed while the others are measured."""
    from gpusplit.engine.params import EngineParams
    from gpusplit.jobs.runner import bench_series

    tg = [{"name": "tg", "kind": "tg", "n": 4, "depth": 0}]
    runs = [
        (EngineParams(model_path=str(tiny_model("dense-f16")), n_ctx=256, n_threads=1, no_repack=True), tg, 1),
        (EngineParams(model_path=q4_0, n_ctx=256, n_threads=1), tg, 1),
        (EngineParams(model_path=str(tiny_model("moe-f16")), n_ctx=256, n_threads=1), tg, 1),
    ]
    monkeypatch.setenv("GPUSPLIT_TEST_FAULT", "extra-buffers")
    done = []
    outcomes = bench_series(runs, done.append, timeout=120)
    assert sorted(done) == [0, 1, 2] and all(o.error is None and o.samples["tg"] for o in outcomes)
    assert outcomes[0].recovery is None and outcomes[1].recovery is not None and outcomes[2].recovery is not None
    monkeypatch.setenv("GPUSPLIT_TEST_FAULT", "always")
    failed = bench_series(runs[:2], timeout=120)
    assert all(o.error and "crashed" in o.error and not o.samples for o in failed)
