"""Results files against a hostile user: bench --output/--resume and tune --trials/--resume append
only to a file of gpusplit's own (a complete record of ours in it, and at most its last line cut
short) or to a harmless stream (/dev/null, /dev/full, this process's stdout); anything else is one
line, exit 2, and the file as it was."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from records import bench_record

from gpusplit.base import journal
from gpusplit.documents.results import is_bench_record, read_records

# every line begins a JSON object and none ends one: what the old check took for records cut short
BRACES = '{ shopping: milk, eggs\n{ call the bank\n{"not": "gpusplit"\n'
REFUSED_DEVICES = [d for d in ("/dev/zero", "/dev/urandom", "/dev/random") if os.path.exists(d)]
CHECK = "from pathlib import Path\nfrom gpusplit.base import journal\nfrom gpusplit.documents.results import is_bench_record\n"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("option", ["--output", "--resume"])
def test_bench_refuses_lines_that_only_begin_with_a_brace(cli, tiny_model, tmp_path, option):
    path = tmp_path / "notes.jsonl"
    path.write_text(BRACES)
    before = digest(path)
    result = cli("bench", str(tiny_model("dense-f16")), "-p", "8", "-n", "4", "-r", "1", option, str(path))
    assert result.exit_code == 2
    assert "line 1 is not a gpusplit.bench/3 record" in one_line(result.stderr) and str(path) in result.stderr
    assert digest(path) == before


@pytest.mark.parametrize("option", ["--trials", "--resume"])
def test_tune_refuses_lines_that_only_begin_with_a_brace(cli, tiny_model, tmp_path, option):
    path = tmp_path / "notes.jsonl"
    path.write_text(BRACES)
    before = digest(path)
    result = cli("tune", str(tiny_model("dense-f16")), "--gpu", "8GiB", "--budget", "5", option, str(path))
    assert result.exit_code == 2
    assert "is not a gpusplit.trial/3 record" in one_line(result.stderr) and "left untouched" in result.stderr
    assert digest(path) == before


def test_a_file_of_ours_needs_a_complete_record_and_only_its_last_line_cut_short(tmp_path):
    record = json.dumps(bench_record("a"))
    cut = record[:40]

    def check(path: Path) -> None:
        journal.check_ours(path, is_bench_record, "gpusplit.bench/2", "results_file")

    cases = {
        "only-cut.jsonl": (cut, "holds no complete gpusplit.bench/2 record"),
        "cut-inside.jsonl": (f"{record}\n{cut}\n{record}\n", "line 2 is a record cut short"),
        "other-tool-then-ours.jsonl": (f'{{"tps": 1}}\n{record}\n', "line 1 is not a gpusplit.bench/2 record"),
    }
    for name, (text, said) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(journal.ForeignFileError, match=said):
            check(path)
    for text in ("", "\n\n", f"{record}\n", f"{record}\n{cut}", f"{record}\n{cut}\n"):
        path = tmp_path / "ours.jsonl"
        path.write_text(text)
        check(path)  # raises on a refusal


@pytest.mark.parametrize("device", REFUSED_DEVICES)
def test_bench_and_tune_refuse_a_device_that_is_not_a_harmless_stream(cli, tiny_model, device):
    model = str(tiny_model("dense-f16"))
    bench = cli("bench", model, "-p", "8", "-n", "4", "-r", "1", "--output", device)
    assert bench.exit_code == 2 and f"{device} is a character device, not a results file" in one_line(bench.stderr)
    tune = cli("tune", model, "--gpu", "8GiB", "--budget", "5", "--trials", device)
    assert tune.exit_code == 2 and "character device" in one_line(tune.stderr)


def test_a_fifo_nobody_reads_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(journal.ForeignFileError, match="is a FIFO \\(a named pipe\\), not a results file"):
        journal.check_ours(fifo, is_bench_record, "gpusplit.bench/2", "results_file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_dev_null_and_our_own_stdout_are_written_to(tmp_path):
    journal.check_ours(Path(os.devnull), is_bench_record, "gpusplit.bench/2", "results_file")
    journal.append(Path(os.devnull), bench_record("a"))  # a stream is not synced (fsync of /dev/null fails)
    script = CHECK + (
        "journal.check_ours(Path('/dev/stdout'), is_bench_record, 'gpusplit.bench/2', 'results_file')\n"
        "journal.append(Path('/dev/stdout'), {'schema': 'gpusplit.bench/2', 'config_key': 'a'})\n"
    )
    piped = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)  # stdout a pipe
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout) == {"schema": "gpusplit.bench/2", "config_key": "a"}


def test_resume_accepts_a_torn_last_line_and_removes_it_before_appending(cli, tiny_model, tmp_path):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    model = str(tiny_model("dense-f16"))
    fast = ["-r", "1", "-p", "16", "-n", "4", "--ctx", "512"]
    out = tmp_path / "bench.jsonl"
    assert cli("bench", model, *fast, "--output", str(out)).exit_code == 0
    first = out.read_bytes()
    with out.open("ab") as f:
        f.write(b'{"schema": "gpusplit.bench/2", "status": "ok", "model": {"na')  # killed mid-write
    resumed = cli("bench", model, *fast, "--ctx", "768", "--resume", str(out), "-o", "jsonl")
    assert resumed.exit_code == 0, resumed.stderr
    records = read_records(out)
    assert sorted(r["config"]["ctx"] for r in records) == [512, 512, 768, 768]
    text = out.read_bytes()
    assert text.startswith(first)  # the finished rows kept as they were, not run again
    assert all(isinstance(json.loads(line), dict) for line in text.splitlines())  # the torn line is gone
