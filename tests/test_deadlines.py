"""Deadlines, not timeouts, for every network read (issue 35): a server that drips one byte every
0.2 s never lets a single read time out, so only a deadline checked while bytes arrive stops it.
Against tests/dripserver.py on 127.0.0.1. The time bounds below detect a hang (the drip server gives
up after 60 s); they are far from the ~1 s each case takes."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from dripserver import DripServer

from gpusplit.base.errors import InputError
from gpusplit.sources.hub import HubError, RemoteModel, download, ollama_blob_path

HANG = 30.0  # seconds: far above the 1 s deadline, far below the drip server's 60 s


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def deadline_1s(monkeypatch, tmp_path):
    monkeypatch.setenv("GPUSPLIT_HTTP_DEADLINE", "1")
    monkeypatch.delenv("GPUSPLIT_HTTP_TIMEOUT", raising=False)
    monkeypatch.setenv("GPUSPLIT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("drip_head", [False, True], ids=["body", "status-and-headers"])
def test_a_dripping_gguf_header_stops_at_the_deadline(cli, deadline_1s, tiny_model, drip_head):
    with DripServer(0.2, drip_head=drip_head) as server:
        url = server.add("/x.gguf", tiny_model("dense-q8_0").read_bytes())
        started = time.monotonic()
        result = cli("inspect", url)
        elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.stderr  # the server's failure, not wrong input
    line = _one_line(result.stderr)
    assert server.netloc in line and "1 s deadline" in line and "GPUSPLIT_HTTP_DEADLINE" in line, line
    assert elapsed < HANG


def test_each_wait_is_cut_to_the_time_left(cli, deadline_1s, monkeypatch, tiny_model):
    """A per-read timeout of 60 s does not outlast a 1 s deadline: the socket waits only the time
    left (a byte comes every 25 s; without the cut, the first wait alone would last 25 s)."""
    monkeypatch.setenv("GPUSPLIT_HTTP_TIMEOUT", "60")
    with DripServer(25.0, drip_head=True) as server:
        url = server.add("/x.gguf", tiny_model("dense-q8_0").read_bytes())
        started = time.monotonic()
        result = cli("inspect", url)
        elapsed = time.monotonic() - started
    assert result.exit_code == 1 and "1 s deadline" in _one_line(result.stderr)
    assert elapsed < 15.0


def test_a_dripping_ollama_manifest_stops_at_the_deadline(cli, deadline_1s, tiny_model):
    manifest = {"schemaVersion": 2, "layers": [{"mediaType": "application/vnd.ollama.image.model",
                                                "digest": "sha256:" + "0" * 64, "size": 1}]}  # fmt: skip
    with DripServer(0.2) as server:
        server.add("/v2/library/tiny/manifests/latest", json.dumps(manifest).encode(), "application/json")
        started = time.monotonic()
        result = cli("inspect", f"ollama://{server.netloc}/tiny")
        elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.stderr
    line = _one_line(result.stderr)
    assert "(manifest)" in line and server.netloc in line and "1 s deadline" in line, line
    assert elapsed < HANG


def test_a_manifest_over_the_cap_is_refused(cli, deadline_1s):
    with DripServer(0.0) as server:  # no drip: 9 MiB at once
        server.add("/v2/library/huge/manifests/latest", b" " * (9 << 20), "application/json")
        result = cli("inspect", f"ollama://{server.netloc}/huge")
    assert result.exit_code == 1 and "larger than 8 MiB" in _one_line(result.stderr)


def test_a_dripping_hub_listing_stops_at_the_deadline(cli, deadline_1s, monkeypatch, tmp_path):
    listing = {"id": "acme/Tiny-GGUF", "siblings": [{"rfilename": "Tiny-Q8_0.gguf"}]}
    with DripServer(0.2) as server:
        server.add("/api/models/acme/Tiny-GGUF", json.dumps(listing).encode(), "application/json")
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        started = time.monotonic()
        result = cli("inspect", "hf://acme/Tiny-GGUF:Q8_0")
        elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.stderr
    line = _one_line(result.stderr)
    assert "listing of acme/Tiny-GGUF" in line and "1 s deadline" in line, line
    assert elapsed < HANG


def test_a_stalled_download_stops_and_then_resumes(deadline_1s):
    """A download has no total deadline (it may take hours) but a stall one: less than 64 KiB in
    the deadline's span stops it, what came is kept, and the next try resumes from there."""
    blob = hashlib.sha256(b"seed").digest() * (4 << 15)  # 4 MiB
    digest = f"sha256:{hashlib.sha256(blob).hexdigest()}"
    with DripServer(0.2, fast_bytes=3 << 20) as stalling:
        model = RemoteModel("ollama://test/blob", "ollama", stalling.add("/blob", blob), digest=digest, size=len(blob))
        started = time.monotonic()
        with pytest.raises(HubError, match=r"less than 64 KiB in 1 s \(stalled\)") as stalled:
            download(model)
        elapsed = time.monotonic() - started
    assert stalling.netloc in str(stalled.value) and "GPUSPLIT_HTTP_DEADLINE" in str(stalled.value)
    assert elapsed < HANG
    kept = ollama_blob_path(digest).with_suffix(".partial").stat().st_size
    assert kept >= 3 << 20  # every byte that arrived before the stall
    with DripServer(0.0) as steady:
        path = download(RemoteModel("ollama://test/blob", "ollama", steady.add("/blob", blob), digest=digest, size=len(blob)))
    with open(path, "rb") as f:
        assert f.read() == blob


@pytest.mark.parametrize("variable", ["GPUSPLIT_HTTP_TIMEOUT", "GPUSPLIT_HTTP_DEADLINE"])
@pytest.mark.parametrize("value", ["abc", "nan", "inf", "0", "-5", "1e12", "30s"])
def test_a_bad_time_in_the_environment_is_one_line_exit_2(cli, monkeypatch, variable, value):
    monkeypatch.delenv("GPUSPLIT_HTTP_TIMEOUT", raising=False)
    monkeypatch.delenv("GPUSPLIT_HTTP_DEADLINE", raising=False)
    monkeypatch.setenv(variable, value)
    with DripServer(0.0) as server:  # never reached: the value is refused first
        url = server.add("/x.gguf", b"GGUF")
        result = cli("inspect", url)
        assert server.requests == []
    assert result.exit_code == 2, result.stderr
    line = _one_line(result.stderr)
    assert f"{variable}='{value}'" in line and "number of seconds" in line, line


def test_a_bad_time_is_refused_for_names_too(cli, monkeypatch):
    monkeypatch.setenv("GPUSPLIT_HTTP_DEADLINE", "abc")
    result = cli("inspect", "ollama://127.0.0.1:9/tiny")
    assert result.exit_code == 2 and "GPUSPLIT_HTTP_DEADLINE='abc'" in _one_line(result.stderr)
    with pytest.raises(InputError, match="GPUSPLIT_HTTP_DEADLINE"):
        download(RemoteModel("ollama://test/blob", "ollama", "http://127.0.0.1:9/blob", digest="sha256:" + "1" * 64))


def test_a_redirect_is_followed_without_reading_its_body(cli, deadline_1s, tiny_model):
    """A redirect's own body is never needed: a dripping one (urllib would read all of it) does
    not hold up the header behind it."""
    with DripServer(0.0) as fast, DripServer(0.2) as slow:
        target = fast.add("/x.gguf", tiny_model("dense-q8_0").read_bytes())
        url = slow.redirect("/moved.gguf", target, b"<html>" + b" " * 4096 + b"</html>")
        result = cli("inspect", "--json", url)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["model"]["file_type"] == "Q8_0"
