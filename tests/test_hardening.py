"""Hardening: bad input on every option, resource ceilings, fuzz regressions, faults during work."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port, start_worker

from gpusplit.gguf import GGUFError
from gpusplit.gguf.reader import Limits, read_gguf

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from gpusplit.synthetic import write_tiny_model

    return str(write_tiny_model(tmp_path_factory.mktemp("m") / "dense-f16.gguf", "dense-f16"))


@pytest.fixture(scope="module")
def split_without_siblings(tmp_path_factory):
    import gguf
    import numpy as np

    d = tmp_path_factory.mktemp("split")
    w = gguf.GGUFWriter(str(d / "s.gguf"), "llama", split_max_tensors=1)
    w.add_block_count(1)
    w.add_embedding_length(32)
    w.add_head_count(2)
    for name in ("token_embd.weight", "output.weight"):
        w.add_tensor(name, np.ones((4, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    (d / "s-00002-of-00002.gguf").unlink()
    return str(d / "s-00001-of-00002.gguf")


# (command args, the option or input the one-line error must name)
BAD = [
    (["inspect", "{dir}"], "is a directory"),
    (["inspect", "{missing}"], "no such file"),
    (["inspect", "{unreadable}"], "not a GGUF file"),
    (["inspect", "{split}"], "shard 2 of 2 is missing"),
    (["inspect", "--bogus"], "--bogus"),
    (["devices", "--rpc", "nohost"], "host:port"),
    (["devices", "--rpc", "h:0"], "port 0"),
    (["devices", "--timeout", "0"], "--timeout"),
    (["devices", "--timeout", "nan"], "--timeout"),
    (["devices", "--timeout", "1e9"], "--timeout"),
    (["devices", "--gpu", "RTX 9999"], "RTX 9999"),
    (["devices", "--gpu", "0GiB"], "0GiB"),
    (["devices", "--gpu", "999xRTX 4090"], "999"),
    (["plan", "{model}", "--ctx", "-5"], "--ctx"),
    (["plan", "{model}", "--ctx", "abc"], "--ctx"),
    (["plan", "{model}", "--batch", "0"], "--batch"),
    (["plan", "{model}", "--ubatch", "-1"], "--ubatch"),
    (["plan", "{model}", "--parallel", "0"], "--parallel"),
    (["plan", "{model}", "--kv-type", "q9_9"], "q9_9"),
    (["plan", "{model}", "--kv-type-k", ""], "--kv-type-k"),
    (["plan", "{model}", "--ngl", "-2"], "--ngl"),
    (["plan", "{model}", "--ngl", "1.5"], "--ngl"),
    (["plan", "{model}", "--mode", "diagonal"], "--mode"),
    (["plan", "{model}", "--gpu", "8GiB", "--split", "inf,1"], "--split"),
    (["plan", "{model}", "--gpu", "8GiB", "--split", "1,1"], "--split"),
    (["plan", "{model}", "--gpu", "8GiB", "--main-gpu", "3"], "--main-gpu"),
    (["plan", "{model}", "--n-cpu-moe", "99"], "--n-cpu-moe"),
    (["plan", "{model}", "--reserve", "lots"], "--reserve"),
    (["plan", "{model}", "--ram", "0"], "--ram"),
    (["plan", "{model}", "--ram", "1e999GiB"], "--ram"),
    (["plan", "{model}", "--cpu-bandwidth", "fast"], "--cpu-bandwidth"),
    (["plan", "{model}", "--devices-file", "{dir}"], "--devices-file"),
    (["plan", "{model}", "--devices-file", "{missing}"], "--devices-file"),
    (["plan", "{model}", "--gpu", "8GiB", "--devices-file", "{missing}"], "--gpu and --devices-file"),
    (["run", "{model}", "-n", "0"], "--n-predict"),
    (["run", "{model}", "--temp", "-1"], "--temp"),
    (["run", "{model}", "--seed", "-1"], "--seed"),
    (["run", "{model}", "--threads", "0"], "--threads"),
    (["run", "{model}", "--prompt", ""], "--prompt"),
    (["run", "{model}", "--prompt-file", "{dir}"], "--prompt-file"),
    (["run", "{model}", "--prompt-file", "{missing}"], "--prompt-file"),
    (["run", "--plan", "{missing}"], "--plan"),
    (["run", "--plan", "{dir}"], "--plan"),
    (["run", "--plan", "{model}"], "--plan"),
    (["bench", "{model}", "-r", "0"], "--repetitions"),
    (["bench", "{model}", "-o", "xml"], "--output-format"),
    (["bench", "{model}", "--mode", "diagonal"], "--mode"),
    (["bench", "{model}", "--split", "a,b"], "--split"),
    (["bench", "{model}", "--output", "{dir}"], "is a directory"),
    (["bench", "--compare", "{missing}"], "--compare"),
    (["worker", "--port", "0"], "--port"),
    (["worker", "--port", "70000"], "--port"),
    (["worker", "--port", "abc"], "--port"),
    (["worker", "--threads", "-1"], "--threads"),
    (["worker", "--host", "0.0.0.0"], "--allow-remote"),
]


@pytest.mark.parametrize(("args", "named"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, model_file, split_without_siblings, args, named):
    unreadable = tmp_path / "text.gguf"
    unreadable.write_text("not a model")
    values = {"dir": str(tmp_path), "missing": str(tmp_path / "absent"), "model": model_file,
              "unreadable": str(unreadable), "split": split_without_siblings}  # fmt: skip
    result = cli(*[a.format(**values) for a in args])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gpusplit: error:")
    if named:
        assert named in lines[0]
    assert "Traceback" not in result.stderr


def test_parse_time_budget(header_only_model):
    with pytest.raises(GGUFError, match="parse took longer than"):
        read_gguf(header_only_model("llama-3.1-70b"), Limits(max_seconds=0.001))
    assert read_gguf(header_only_model("llama-3.1-70b"), Limits(max_seconds=30)).tensors


def _regression_corpus() -> list[tuple[str, bytes, bool]]:
    """(name, bytes, must fail): one file per hostile class, then whatever the fuzzer once found."""
    from hostile import CASES

    corpus = [(f"hostile-{name}", build(), True) for name, build, _, _ in CASES]
    found = sorted(p for p in (ROOT / "tests" / "fuzz_regressions").iterdir() if p.suffix != ".md")
    return corpus + [(p.name, p.read_bytes(), False) for p in found]


REGRESSIONS = _regression_corpus()


def test_the_regression_corpus_is_not_empty():
    assert len(REGRESSIONS) >= 20


@pytest.mark.parametrize(("name", "data", "must_fail"), REGRESSIONS, ids=[r[0] for r in REGRESSIONS])
def test_fuzz_regressions(name, data, must_fail):
    from gpusplit.gguf.model import describe
    from gpusplit.gguf.reader import BytesSource, parse_source

    started = time.monotonic()
    try:
        model = describe(parse_source(BytesSource(data)))
    except GGUFError as exc:
        assert exc.field and exc.reason
        assert exc.offset is None or exc.offset >= 0
    else:
        assert not must_fail, f"{name} was accepted"
        assert model.n_layer >= 1
    assert time.monotonic() - started < 20.0, name  # milliseconds here; far above for a busy runner, a hang is minutes


def test_disk_full_during_bench_output(cli, model_file):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    result = cli(
        "bench",
        model_file,
        "-p",
        "16",
        "-n",
        "2",
        "-r",
        "1",
        "--ctx",
        "256",
        "--ctx",
        "512",
        "--output",
        "/dev/full",
        "-o",
        "json",
    )
    assert result.exit_code == 1
    assert "No space left on device" in result.stderr and "--resume" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # the progress line, then the error
    rows = json.loads(result.stdout)
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)  # the finished configuration is not lost


def _engine_children(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "gpusplit.engine.child" in cmdline and marker in cmdline:
                pids.append(int(entry.name))
    return pids


def _children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out.append(int(entry.name))
    return out


@pytest.mark.parametrize(
    ("sig", "code", "phase"),
    [(signal.SIGINT, 130, "generation"), (signal.SIGTERM, 143, "generation"), (signal.SIGTERM, 143, "load")],
)
def test_signals_during_run_leave_no_child(tiny_model, sig, code, phase):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    model = str(tiny_model("dense-large-f16"))
    proc = subprocess.Popen([sys.executable, "-m", "gpusplit", "run", model, "-n", "1900", "--ctx", "2048"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    children: list[int] = []
    while time.monotonic() < deadline and not children:
        children = _children_of(proc.pid)
        time.sleep(0.01)
    assert children, "the engine child never started"
    if phase == "generation":
        proc.stdout.read(1)  # the first generated text has arrived
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] in ("gpusplit: error: interrupted", "gpusplit: error: terminated (SIGTERM)")
    time.sleep(0.5)
    assert all(not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2] for pid in children)


def test_sigterm_during_bench_keeps_finished_rows(tiny_model, tmp_path):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    out = tmp_path / "r.jsonl"
    from gpusplit.documents.results import read_records

    proc = subprocess.Popen(
        [sys.executable, "-m", "gpusplit", "bench", str(tiny_model("dense-f16")), "-p", "16", "-n", "300", "-r", "3",
         "--ctx", "512", "--ctx", "768", "--ctx", "1024", "--output", str(out), "-o", "jsonl"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(read_records(out)) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    kept = read_records(out)
    assert len(kept) >= 2
    printed = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert printed == kept  # the finished rows are on stdout too
    assert not _children_of(proc.pid)


def test_worker_killed_during_bench_gives_failed_rows(tiny_model):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    port = free_port()
    worker = start_worker(port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpusplit", "bench", str(tiny_model("dense-large-f16")), "--rpc", f"127.0.0.1:{port}",
         "--ngl", "0", "--ngl", "-1", "--ctx", "2048", "--ctx", "1792", "-p", "16", "-n", "400", "-r", "1", "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # Kill the worker while the first configuration that uses it (3 of 4) is generating.
    progress = []
    for line in proc.stderr:
        progress.append(line)
        if "configuration 3 of 4" in line:
            break
    time.sleep(2)
    worker.kill()
    stdout, _ = proc.communicate(timeout=300)
    records = json.loads(stdout)
    assert proc.returncode == 1
    by_config = {}
    for r in records:
        by_config.setdefault(r["config_key"], []).append(r)
    statuses = {key: {r["status"] for r in rows} for key, rows in by_config.items()}
    assert len(statuses) == 4
    failed = [r for r in records if r["status"] == "failed"]
    assert any("engine process failed" in r["error"] and r["log_tail"] for r in failed)
    assert any("refused" in r["error"] for r in failed)  # configurations planned after the worker died
    assert any(r["status"] == "ok" for r in records)


def test_worker_survives_a_client_that_disconnects_mid_transfer():
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    from gpusplit.devices.rpc import probe

    port = free_port()
    worker = start_worker(port)
    try:
        # Half a HELLO, then gone; then garbage; then a real client.
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(struct.pack("<BQ", 14, 24) + b"\0" * 5)
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(os.urandom(64))
        time.sleep(0.2)
        info = probe(f"127.0.0.1:{port}", timeout=5)
        assert info.devices and worker.poll() is None
    finally:
        worker.terminate()
        worker.wait(timeout=10)


def test_output_turning_read_only_during_bench(tiny_model, tmp_path):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    from gpusplit.documents.results import read_records

    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        out = mount_point / "r.jsonl"
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpusplit", "bench", str(tiny_model("dense-f16")), "-p", "16", "-n", "300", "-r", "2",
             "--ctx", "512", "--ctx", "768", "--ctx", "1024", "--output", str(out), "-o", "jsonl"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(read_records(out)) < 2:
            time.sleep(0.02)
        subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
        stdout, err = proc.communicate(timeout=180)
        assert proc.returncode == 1, err
        assert "Read-only file system" in err and "--resume" in err
        kept = read_records(out)
        printed = [json.loads(line) for line in stdout.splitlines() if line.strip()]
        assert len(kept) == 2 and len(printed) >= 4  # the file kept what it could; stdout has the rest
        assert printed[:2] == kept
    finally:
        subprocess.run(["umount", str(mount_point)], capture_output=True)
