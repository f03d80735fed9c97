"""Remote headers over HTTP range requests, against local servers the tests start (no internet)."""

from __future__ import annotations

import json
import re
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gguf
import numpy as np
import pytest
from llama_server import model_source, rejected, run_python_lines

from gpusplit.gguf import GGUFError, read_gguf
from gpusplit.gguf.errors import FetchError
from gpusplit.gguf.remote import HTTPSource


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves files with `Range: bytes=a-b` support, counting the bytes it sends."""

    sent = 0
    ranges = True

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path.split("?")[0]))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        match = re.match(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        if not (match and type(self).ranges):
            body = data
            self.send_response(200)
        else:
            start, end = int(match[1]), min(int(match[2]), len(data) - 1)
            body = data[start : end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        type(self).sent += len(body)


@pytest.fixture
def server(tmp_path):
    def start(ranges: bool = True):
        handler = type("Handler", (RangeHandler,), {"ranges": ranges, "sent": 0})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(tmp_path)))
        httpd.handle_error = lambda request, address: None  # clients that hang up early are expected
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}", handler

    servers: list[ThreadingHTTPServer] = []
    yield start
    for httpd in servers:
        httpd.shutdown()


def test_remote_70b_header_matches_local_and_fetches_little(cli, server, tmp_path, header_only_model):
    local = header_only_model("llama-3.1-70b")
    (tmp_path / "model.gguf").write_bytes(local.read_bytes())
    base, handler = server()
    remote = cli("inspect", "--json", f"{base}/model.gguf?download=true")
    assert remote.exit_code == 0, remote.stderr
    here = json.loads(cli("inspect", "--json", str(local)).stdout)["model"]
    there = json.loads(remote.stdout)["model"]
    for key in ("n_layer", "n_vocab", "n_merges", "total_bytes", "params", "layers"):
        assert there[key] == here[key]
    header = here["header_bytes"]
    assert handler.sent < 2 * header
    assert "fetched" in remote.stderr


def _write_split_model(folder):
    """sp-0000N-of-00003.gguf in `folder`: a split model of one tensor per part."""
    w = gguf.GGUFWriter(str(folder / "sp.gguf"), "llama", split_max_tensors=1)
    w.add_block_count(1)
    w.add_embedding_length(32)
    w.add_head_count(2)
    for name in ("token_embd.weight", "blk.0.attn_q.weight", "output.weight"):
        w.add_tensor(name, np.ones((4, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_remote_split_model_reads_every_shard(server, tmp_path):
    _write_split_model(tmp_path)
    base, _ = server()
    f = read_gguf(f"{base}/sp-00001-of-00003.gguf")
    assert [t.name for t in f.tensors] == ["token_embd.weight", "blk.0.attn_q.weight", "output.weight"]
    assert len(f.shards) == 3
    (tmp_path / "sp-00003-of-00003.gguf").unlink()
    with pytest.raises(GGUFError, match="HTTP 404"):
        read_gguf(f"{base}/sp-00001-of-00003.gguf")


def test_server_without_range_support_is_refused(cli, server, tmp_path, tiny_model):
    (tmp_path / "m.gguf").write_bytes(tiny_model("dense-f16").read_bytes())
    base, _handler = server(ranges=False)
    result = cli("inspect", f"{base}/m.gguf")
    assert result.exit_code == 2
    assert "ignored the range request" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_plan_reads_a_url_and_run_refuses_one(cli, server, tmp_path, header_only_model, tiny_model):
    (tmp_path / "m.gguf").write_bytes(header_only_model("llama-3.1-8b").read_bytes())
    base, _ = server()
    plan = cli("plan", "--json", f"{base}/m.gguf", "--gpu", "RTX 4090")
    assert plan.exit_code == 0 and json.loads(plan.stdout)["strategy"] == "single-gpu"
    # llama-server takes a URL with -mu (it downloads the file), never with -m
    args = json.loads(plan.stdout)["llama_args"]
    assert model_source(args) == ("-mu", f"{base}/m.gguf") and not rejected(args)
    shown = cli("plan", f"{base}/m.gguf", "--gpu", "RTX 4090")
    assert f"llama-server -mu {base}/m.gguf " in shown.stdout
    run = cli("run", f"{base}/m.gguf")
    assert run.exit_code == 2 and "needs a local model file" in run.stderr


def test_plan_of_a_url_prints_python_that_downloads_first(cli, server, tmp_path, tiny_model):
    """llama_cpp.Llama opens a file on disk, never a URL: the printed lines download it, then load
    the downloaded file."""
    (tmp_path / "Tiny Q8.gguf").write_bytes(tiny_model("dense-q8_0").read_bytes())
    base, _ = server()
    shown = cli("plan", f"{base}/Tiny%20Q8.gguf", "--gpu", "8GiB")
    assert shown.exit_code == 0, shown.stderr
    where = tmp_path / "python"
    where.mkdir()
    kwargs = run_python_lines(shown.stdout, where)
    assert kwargs["model_path"] == "Tiny_Q8.gguf" and "from_pretrained" not in kwargs
    assert (where / "Tiny_Q8.gguf").read_bytes() == tiny_model("dense-q8_0").read_bytes()
    doc = json.loads(cli("plan", "--json", f"{base}/Tiny%20Q8.gguf", "--gpu", "8GiB").stdout)
    assert doc["python_downloads"] == [{"url": f"{base}/Tiny%20Q8.gguf", "path": "Tiny_Q8.gguf"}]


def test_plan_of_a_split_url_downloads_every_part(cli, server, tmp_path):
    _write_split_model(tmp_path)
    base, _ = server()
    doc = json.loads(cli("plan", "--json", f"{base}/sp-00001-of-00003.gguf", "--gpu", "8GiB").stdout)
    parts = [f"sp-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]
    assert doc["python_downloads"] == [{"url": f"{base}/{part}", "path": part} for part in parts]
    assert doc["llama_cpp_python"]["model_path"] == parts[0]  # llama.cpp finds the other parts beside it


def test_missing_url_and_unreachable_host(server):
    base, _ = server()
    with pytest.raises(GGUFError, match="HTTP 404"):  # the name's fault: wrong input
        HTTPSource(f"{base}/absent.gguf")
    with pytest.raises(FetchError, match="cannot fetch") as caught:  # the network's: a runtime failure
        HTTPSource("http://127.0.0.1:9/model.gguf", timeout=2)
    assert not isinstance(caught.value, GGUFError)
