"""Results files: gpusplit appends to its own JSONL as results come, resumes from it, and never
writes into a file it did not write (bench --output/--resume, tune --trials/--resume/--output)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from records import bench_record

from gpusplit.base import journal
from gpusplit.documents.results import append_trial, is_bench_record, is_trial_record, read_records, read_trials
from gpusplit.jobs.tune import Trial
from gpusplit.planning.request import Request

SYSTEM_TEXT = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def foreign_files(tmp_path: Path) -> list[Path]:
    """A system file's copy, another tool's JSON Lines, a pretty-printed plan, a binary file."""
    files = {
        "passwd": SYSTEM_TEXT,
        "other.jsonl": '{"model": "x", "tps": 12.5}\n{"model": "y", "tps": 13.0}\n',
        "plan.json": json.dumps({"schema": "gpusplit.plan/2", "fits": True}, indent=1) + "\n",
    }
    paths = []
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        paths.append(tmp_path / name)
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)))
    return [*paths, tmp_path / "blob.bin"]


@pytest.mark.parametrize("option", ["--resume", "--output"])
def test_bench_refuses_a_file_it_did_not_write_and_leaves_it_as_it_was(cli, tiny_model, tmp_path, option):
    for path in foreign_files(tmp_path):
        before = digest(path)
        result = cli("bench", str(tiny_model("dense-f16")), "-p", "8", "-n", "4", "-r", "1", option, str(path))
        assert result.exit_code == 2, (path, result.stderr)
        assert "not a gpusplit.bench/3 record" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert digest(path) == before


def test_tune_refuses_foreign_trials_and_output_files(cli, tiny_model, tmp_path):
    model = str(tiny_model("dense-f16"))
    for option in ("--trials", "--resume", "--output"):
        for path in foreign_files(tmp_path):
            if option == "--output" and path.name == "plan.json":
                continue  # a plan document is tune's own --output: it may be replaced
            before = digest(path)
            result = cli("tune", model, "--gpu", "8GiB", "--budget", "5", option, str(path))
            assert result.exit_code == 2, (option, path, result.stderr)
            assert "left untouched" in result.stderr and len(result.stderr.strip().splitlines()) == 1
            assert digest(path) == before


def test_a_torn_last_line_is_skipped_and_the_next_record_starts_a_line(tmp_path):
    path = tmp_path / "bench.jsonl"
    first = bench_record("a")
    journal.append(path, first)
    with path.open("a") as f:
        f.write('{"schema": "gpusplit.bench/2", "config_key": "b", "te')  # killed mid-write
    journal.check_ours(path, is_bench_record, "gpusplit.bench/2", "resume_file")  # still ours
    second = bench_record("c")
    journal.append(path, second)
    assert [(r["config_key"], r["avg_ts"]) for r in read_records(path)] == [("a", 10.0), ("c", 10.0)]
    journal.check_ours(path, is_bench_record, "gpusplit.bench/2", "resume_file")
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1]) == second  # the torn line removed, not left mid-file


def test_trials_are_marked_and_older_files_still_resume(tmp_path):
    """A trial/1 line (and an unmarked one, written before the mark) carried a tune Config under
    "config": read back, its fields land on the tune's request; a new line is a trial/3 record."""
    path = tmp_path / "trials.jsonl"
    old = {"strategy": "cpu-only", "fits": True, "predicted_tg": None, "predicted_pp": None, "measured_pp": None, "error": None,
           "seconds": 1.0, "min_headroom_bytes": 0, "recovery": None, "samples": [], "round": 0}  # fmt: skip
    unmarked = {
        "key": "mode=auto",
        "config": {"mode": None, "threads": 2},
        "measured_tg": 50.0,
        "score": 50.0,
        "status": "ok",
        **old,
    }
    marked = {"schema": "gpusplit.trial/1", "key": "mode=layer", "config": {"mode": "layer", "ubatch": 1024},
              "measured_tg": 40.0, "score": 40.0, "status": "ok", **old}  # fmt: skip
    path.write_text(json.dumps(unmarked) + "\n" + json.dumps(marked) + "\n")
    journal.check_ours(path, is_trial_record, "gpusplit.trial/3", "resume_file")
    new = Trial(Request(split_mode="none"), measured_tg=60.0, score=60.0)
    append_trial(path, new)
    assert json.loads(path.read_text().splitlines()[2])["schema"] == "gpusplit.trial/3"
    base = Request(n_ctx=1024)
    old_unmarked, old_marked, again = read_trials(path, base)
    assert old_unmarked.request == base.with_(n_threads=2) and old_unmarked.score == 50.0
    assert old_marked.request == base.with_(split_mode="layer", n_ubatch=1024, n_batch=1024)
    assert again.request == new.request and again.key == new.key
    assert not is_trial_record({"key": "k", "config": {}, "status": "ok", "password": "x"})  # not only a trial's fields
