"""Files a hostile user or a stray leftover puts in gpusplit's way: a writer replaces only the file
named (never a file or a link at a temporary name beside it) and says a missing folder before any
work; a reader refuses a FIFO, a device or a directory at once in one line, and never waits on one
or reads it without end."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gpusplit.base.errors import InputError
from gpusplit.base.files import check_folder, open_regular_fd, read_bounded, replacing, write_whole

HANG = 60  # seconds: far beyond any of these refusals; a command still running then is hung


def _gpusplit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in a child with a deadline, so that a read that hangs fails the test, not the suite."""
    try:
        return subprocess.run([sys.executable, "-m", "gpusplit", *args], capture_output=True, text=True, timeout=HANG,
                              env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"gpusplit {' '.join(args)} still ran after {HANG} s: it waits on its input")


def _refused(code: int, stderr: str, *words: str) -> None:
    """Exit 2 with at most two stderr lines that name the problem, and no traceback."""
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert 1 <= len(lines) <= 2, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    for word in words:
        assert word in stderr, (word, stderr)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


@pytest.fixture
def plan_doc(cli, tiny_model, tmp_path: Path) -> Path:
    """A plan --json document for this machine's devices: an input `report` draws, and `run --plan` runs."""
    result = cli("plan", str(tiny_model("dense-f16")), "--json")
    assert result.exit_code == 0, result.stderr
    path = tmp_path / "plan.json"
    path.write_text(result.stdout)
    return path


# ---------------------------------------------------------------------------------------------
# report -o: the page goes to the file named and nowhere else


def test_report_leaves_a_file_at_the_old_temporary_name_untouched(cli, plan_doc, tmp_path):
    pytest.importorskip("matplotlib", reason="the 'report' extra (matplotlib) is not installed")
    out = tmp_path / "out.html"
    mine = tmp_path / "out.html.tmp"
    mine.write_text("the user's own file")
    result = cli("report", str(plan_doc), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert mine.read_text() == "the user's own file"
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.html", "out.html.tmp", "plan.json"]


def test_report_never_follows_a_link_at_the_old_temporary_name(cli, plan_doc, tmp_path):
    pytest.importorskip("matplotlib", reason="the 'report' extra (matplotlib) is not installed")
    victim = tmp_path / "victim.txt"
    victim.write_text("not to be overwritten")
    link = tmp_path / "out.html.tmp"
    link.symlink_to(victim)
    out = tmp_path / "out.html"
    result = cli("report", str(plan_doc), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert victim.read_text() == "not to be overwritten"
    assert link.is_symlink() and os.readlink(link) == str(victim)
    assert not out.is_symlink() and out.read_text().startswith("<!DOCTYPE html>")


def test_report_into_a_missing_folder_is_refused_before_the_page_is_drawn(cli, plan_doc, tmp_path, monkeypatch):
    api = importlib.import_module("gpusplit.api")

    def no_page(*args, **kwargs):
        raise AssertionError("the page was drawn before the folder was checked")

    monkeypatch.setattr(api, "make_report", no_page)
    before = sorted(tmp_path.iterdir())
    result = cli("report", str(plan_doc), "-o", str(tmp_path / "nodir" / "x.html"))
    _refused(result.exit_code, result.stderr, "-o", "nodir", "does not exist")
    assert ".tmp" not in result.stderr
    assert sorted(tmp_path.iterdir()) == before


def test_tune_into_a_missing_folder_is_refused_before_the_search(cli, tiny_model, tmp_path, monkeypatch):
    api = importlib.import_module("gpusplit.api")

    def no_search(*args, **kwargs):
        raise AssertionError("the search ran before the folder was checked")

    monkeypatch.setattr(api, "tune", no_search)
    result = cli("tune", str(tiny_model("dense-f16")), "--output", str(tmp_path / "nodir" / "plan.json"), "--budget", "5s")
    _refused(result.exit_code, result.stderr, "nodir", "does not exist")
    assert not (tmp_path / "nodir").exists()


def test_report_into_a_file_as_folder_is_refused(cli, plan_doc, tmp_path):
    result = cli("report", str(plan_doc), "-o", str(plan_doc / "x.html"))
    _refused(result.exit_code, result.stderr, "-o", str(plan_doc), "not a folder")


# ---------------------------------------------------------------------------------------------
# Inputs that are no regular file


def test_a_fifo_as_model_is_refused_at_once(fifo):
    done = _gpusplit("inspect", str(fifo))
    _refused(done.returncode, done.stderr, str(fifo), "FIFO")


def test_a_directory_as_model_is_refused(cli, tmp_path):
    result = cli("inspect", str(tmp_path))
    _refused(result.exit_code, result.stderr, str(tmp_path), "directory")


def test_a_device_as_model_is_refused(cli):
    result = cli("inspect", "/dev/zero")
    _refused(result.exit_code, result.stderr, "/dev/zero", "device")


def test_a_fifo_as_devices_file_is_refused_at_once(fifo, tiny_model):
    done = _gpusplit("plan", str(tiny_model("dense-f16")), "--devices-file", str(fifo))
    _refused(done.returncode, done.stderr, "--devices-file", str(fifo), "FIFO")


def test_dev_zero_as_devices_file_is_refused_unread(tiny_model):
    done = _gpusplit("plan", str(tiny_model("dense-f16")), "--devices-file", "/dev/zero")
    _refused(done.returncode, done.stderr, "--devices-file", "/dev/zero", "device")


@pytest.mark.parametrize("flag", ["--lora", "--draft"])
def test_a_fifo_as_companion_model_is_refused_at_once(fifo, tiny_model, flag):
    done = _gpusplit("plan", str(tiny_model("dense-f16")), "--gpu", "24GiB", flag, str(fifo))
    _refused(done.returncode, done.stderr, flag, str(fifo), "FIFO")


def test_a_fifo_as_the_saved_plans_model_is_refused_at_once(fifo, plan_doc, tmp_path):
    doc = json.loads(plan_doc.read_text())
    doc["model"]["path"] = doc["engine_params"]["model_path"] = str(fifo)
    saved = tmp_path / "fifo-plan.json"
    saved.write_text(json.dumps(doc))
    done = _gpusplit("run", "--plan", str(saved), "-n", "1")
    _refused(done.returncode, done.stderr, str(fifo), "FIFO")


def test_a_fifo_as_report_input_is_refused_at_once(fifo, tmp_path):
    done = _gpusplit("report", str(fifo), "-o", str(tmp_path / "r.html"))
    _refused(done.returncode, done.stderr, str(fifo), "FIFO")
    assert not (tmp_path / "r.html").exists()


def test_a_fifo_as_prompt_file_is_refused_at_once(fifo, tiny_model):
    done = _gpusplit("run", str(tiny_model("dense-f16")), "--prompt-file", str(fifo), "-n", "1")
    _refused(done.returncode, done.stderr, "--prompt-file", str(fifo), "FIFO")


@pytest.mark.parametrize("below", [False, True])
def test_a_cache_dir_that_is_a_file_is_one_line(cli, tmp_path, monkeypatch, below):
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("GPUSPLIT_CACHE_DIR", str(afile / "sub" if below else afile))
    result = cli("inspect")  # no MODEL: the demo model, kept in the cache
    _refused(result.exit_code, result.stderr, "GPUSPLIT_CACHE_DIR", str(afile), "not a folder")
    assert afile.read_text() == "x"


# ---------------------------------------------------------------------------------------------
# write_whole, replacing, check_folder


def test_write_whole_writes_the_target_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "doc.json"
    assert write_whole(target, b"new", "out") == 3
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_write_whole_keeps_the_old_file_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "doc.json"
    target.write_bytes(b"old")
    seen = []

    def write(f):
        f.write(b"new, ")
        seen.append(target.read_bytes())  # mid-write, a reader sees the old file whole
        f.write(b"whole")

    with target.open("rb") as held:
        write_whole(target, write, "out")
        assert held.read() == b"old"  # replaced by a rename: an open reader keeps the old file
    assert seen == [b"old"]
    assert target.read_bytes() == b"new, whole"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_a_failing_writer_leaves_the_target_and_no_temporary_file(tmp_path):
    target = tmp_path / "doc.json"
    target.write_bytes(b"old")

    def write(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_whole(target, write, "out")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]


def test_write_whole_never_opens_a_link_planted_at_its_temporary_name(tmp_path, monkeypatch):
    """The temporary names are random; even one guessed and planted (here: the random source made
    to give it first) is created exclusively, so the link is left alone and another name is used."""
    target = tmp_path / "doc.json"
    victim = tmp_path / "victim"
    victim.write_bytes(b"victim")
    draws = iter([b"\x01" * 8, b"\x02" * 8])
    monkeypatch.setattr(os, "urandom", lambda n: next(draws))
    planted = tmp_path / f".doc.json.{'01' * 8}.tmp"
    planted.symlink_to(victim)
    write_whole(target, b"page", "out")
    assert victim.read_bytes() == b"victim"
    assert planted.is_symlink() and os.readlink(planted) == str(victim)
    assert target.read_bytes() == b"page"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["doc.json", "victim", planted.name])


def test_write_whole_into_a_missing_folder_names_it_and_creates_nothing(tmp_path):
    with pytest.raises(InputError) as caught:
        write_whole(tmp_path / "nodir" / "x.html", b"page", "out")
    assert "nodir" in caught.value.message and "does not exist" in caught.value.message
    assert list(tmp_path.iterdir()) == []


def test_check_folder_refuses_a_directory_as_the_target(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        check_folder(tmp_path, "out")


def test_replacing_renames_on_success_and_removes_on_failure(tmp_path):
    target = tmp_path / "model.gguf"
    with replacing(target, "path") as tmp:
        assert tmp.parent == tmp_path and tmp.exists() and tmp != target
        tmp.write_bytes(b"GGUF")
    assert target.read_bytes() == b"GGUF" and not tmp.exists()
    with pytest.raises(RuntimeError), replacing(target, "path") as tmp2:
        tmp2.write_bytes(b"half")
        raise RuntimeError("quantizer died")
    assert target.read_bytes() == b"GGUF"
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


def test_the_speed_cache_never_follows_a_link_at_its_old_temporary_name(tmp_path):
    from gpusplit.devices import speed

    identity = "group|x"
    path = speed._path(tmp_path, identity)
    victim = tmp_path / "victim"
    victim.write_bytes(b"victim")
    path.with_suffix(f".{os.getpid()}.tmp").symlink_to(victim)
    record = speed.GroupSpeed(1.4e-3, 2e-3, identity)
    speed.save(tmp_path, identity, record)
    assert victim.read_bytes() == b"victim"
    assert speed.load(tmp_path, identity) == record


# ---------------------------------------------------------------------------------------------
# open_regular_fd, read_bounded


def _within(seconds: float, call):
    """call() in a thread, waited for at most `seconds`: the thread (alive if call() still runs)
    and what it returned or raised. A regression then fails the test rather than hangs the suite."""
    box: dict[str, object] = {}

    def run():
        try:
            box["value"] = call()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return thread, box


def test_read_bounded_refuses_a_fifo_without_waiting(fifo):
    thread, box = _within(HANG, lambda: read_bounded(fifo, "devices_file"))
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # wakes the blocked open
        pytest.fail("opening a FIFO waited for a writer")
    error = box.get("error")
    assert isinstance(error, InputError), box
    assert "FIFO" in error.message and str(fifo) in error.message


@pytest.mark.parametrize(("path", "kind"), [("/dev/zero", "a character device"), ("/", "a directory")])
def test_open_regular_fd_names_what_the_path_is(path, kind):
    with pytest.raises(OSError, match=kind):
        os.close(open_regular_fd(path))


def test_read_bounded_stops_at_its_limit(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(InputError, match="larger than 100 bytes"):
        read_bounded(big, "files", 100)
    assert read_bounded(big, "files", 101) == b"x" * 101
