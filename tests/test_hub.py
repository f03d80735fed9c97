"""Models by name (hf://, ollama://) against local fake servers that speak the subset of the
Hugging Face Hub and Ollama registry APIs gpusplit uses: only headers fetched for plan and inspect,
whole files downloaded (and cached) for run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakehub import TOKEN, FakeHub, FakeOllama
from llama_server import model_source, rejected, run_python_lines

from gpusplit.planning.request import Request
from gpusplit.sources.hub import ModelNameError, choose_gguf, parse_hf, parse_ollama


@pytest.fixture
def hub(monkeypatch, tmp_path, tiny_model):
    server = FakeHub()
    q8 = tiny_model("dense-q8_0").read_bytes()
    f16 = tiny_model("dense-f16").read_bytes()
    server.add_repo(
        "acme/Tiny-GGUF", {"Tiny-Q8_0.gguf": q8, "Tiny-F16.gguf": f16, "README.md": b"# tiny", "mmproj-Tiny-F16.gguf": b"x"}
    )
    server.add_repo("acme/Private-GGUF", {"Tiny-Q8_0.gguf": q8}, private=True)
    server.add_repo("acme/Gated-GGUF", {"Tiny-Q8_0.gguf": q8}, gated=True)
    server.add_repo("acme/Weights", {"model.safetensors": b"\0" * 64, "config.json": b"{}"})
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("GPUSPLIT_CACHE_DIR", str(tmp_path / "cache"))
    yield server
    server.close()


@pytest.fixture
def ollama(monkeypatch, tmp_path, tiny_model):
    server = FakeOllama()
    projector = tmp_path / "mmproj.gguf"
    _write_projector(projector)
    server.add_model("library/tiny:q8", tiny_model("dense-q8_0"), projector=projector.read_bytes())
    server.add_model("acme/tiny:latest", tiny_model("dense-f16"))
    monkeypatch.setenv("GPUSPLIT_CACHE_DIR", str(tmp_path / "cache"))
    yield server
    server.close()


# ---------------------------------------------------------------------------------------------
# Names


def test_hf_names():
    n = parse_hf("hf://bartowski/Llama-3.1-70B-GGUF:q4_k_m@v1.0")
    assert (n.repo, n.quant, n.path, n.revision) == ("bartowski/Llama-3.1-70B-GGUF", "q4_k_m", None, "v1.0")
    n = parse_hf("hf://o/r/Q8_0/model-Q8_0-00001-of-00002.gguf")
    assert (n.repo, n.quant, n.path) == ("o/r", None, "Q8_0/model-Q8_0-00001-of-00002.gguf")
    for bad in ("hf://onlyowner", "hf://o/r:", "hf://o/r@", "hf://o w/r", "hf://o/r/notes.txt", "hf://o/r/../x.gguf"):
        with pytest.raises(ModelNameError):
            parse_hf(bad)


def test_ollama_names():
    assert parse_ollama("ollama://llama3.1").base == "https://registry.ollama.ai/v2/library/llama3.1"
    n = parse_ollama("ollama://llama3.1:70b")
    assert (n.registry, n.namespace, n.model, n.tag) == ("registry.ollama.ai", "library", "llama3.1", "70b")
    n = parse_ollama("ollama://acme/tiny")
    assert (n.namespace, n.model, n.tag) == ("acme", "tiny", "latest")
    n = parse_ollama("ollama://127.0.0.1:8080/acme/tiny:q8")
    assert n.base == "http://127.0.0.1:8080/v2/acme/tiny" and n.tag == "q8"  # a loopback registry speaks http
    n = parse_ollama("ollama://registry.example.com/tiny:1b")
    assert (n.registry, n.namespace, n.model) == ("registry.example.com", "library", "tiny")
    with pytest.raises(ModelNameError):
        parse_ollama("ollama://a/b/c/d")


def test_choosing_a_file_by_quantization():
    files = [
        "Model-Q4_K_M.gguf", "Model-Q4_K_S.gguf", "model-q8_0.gguf", "mmproj-Model-F16.gguf", "README.md",
        "Q6_K/Model-Q6_K-00002-of-00002.gguf", "Q6_K/Model-Q6_K-00001-of-00002.gguf",
    ]  # fmt: skip
    assert choose_gguf("n", files, "q4_k_m", None)[0] == ["Model-Q4_K_M.gguf"]  # case-insensitive
    assert choose_gguf("n", files, "Q8_0", None)[0] == ["model-q8_0.gguf"]
    chosen, projectors = choose_gguf("n", files, "Q6_K", None)
    assert chosen == ["Q6_K/Model-Q6_K-00001-of-00002.gguf", "Q6_K/Model-Q6_K-00002-of-00002.gguf"]  # shards, in order
    assert projectors == ["mmproj-Model-F16.gguf"]
    with pytest.raises(ModelNameError, match="no GGUF file matches 'Q4_K'") as err:
        choose_gguf("n", files, "Q4_K", None)  # a whole token: Q4_K is not Q4_K_M
    assert "Q4_K_M" in err.value.hint and "Q6_K" in err.value.hint
    with pytest.raises(ModelNameError, match="holds 4 models"):
        choose_gguf("n", files, None, None)
    assert choose_gguf("n", ["only-Q8_0.gguf", "x.md"], None, None)[0] == ["only-Q8_0.gguf"]
    assert choose_gguf("n", files, None, "Q6_K/Model-Q6_K-00001-of-00002.gguf")[0][1].endswith("00002-of-00002.gguf")


# ---------------------------------------------------------------------------------------------
# Hugging Face, through huggingface_hub against the fake Hub


def test_plan_a_hf_name_reads_only_the_header(cli, hub, tiny_model):
    result = cli("plan", "--json", "hf://acme/Tiny-GGUF:q8_0", "--gpu", "8GiB")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["model"]["path"] == "hf://acme/Tiny-GGUF:q8_0" and doc["model"]["file_type"] == "Q8_0"
    _valid(doc)
    assert doc["llama_args"][:2] == ["-hf", "acme/Tiny-GGUF:q8_0"]  # llama.cpp's own flag for the name
    assert not rejected(doc["llama_args"])
    assert doc["llama_cpp_python"]["repo_id"] == "acme/Tiny-GGUF" and doc["llama_cpp_python"]["filename"] == "*q8_0*.gguf"
    size = tiny_model("dense-q8_0").stat().st_size
    fetched = sum(s.bytes_sent for s in hub.cdn.seen)
    assert 0 < fetched < size / 4  # the header, not the weights
    assert "is Tiny-Q8_0.gguf" in result.stderr and "mmproj-Tiny-F16.gguf" in result.stderr


def test_inspect_a_split_model_in_a_subfolder(cli, hub, tmp_path):
    from gpusplit.api import read_model

    shards = _split(tmp_path)
    hub.add_repo("acme/Split-GGUF", {f"F16/{p.name}": p.read_bytes() for p in shards})
    result = cli("inspect", "--json", "hf://acme/Split-GGUF:F16")
    assert result.exit_code == 0, result.stderr
    model = json.loads(result.stdout)["model"]
    assert model["shards"] == len(shards) == 3
    assert model["total_bytes"] == read_model(shards[0]).total_bytes
    assert "(3 shards)" in result.stderr


def test_private_and_gated_repos_name_hf_token(cli, hub, monkeypatch):
    for repo, words in (("acme/Private-GGUF", "or it is private"), ("acme/Gated-GGUF", "is gated")):
        result = cli("plan", f"hf://{repo}:Q8_0", "--gpu", "8GiB")
        assert result.exit_code == 2 and words in result.stderr and "HF_TOKEN" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result = cli("plan", "--json", "hf://acme/Gated-GGUF:Q8_0", "--gpu", "8GiB")
    assert result.exit_code == 0, result.stderr
    # The token went to the Hub, never to the CDN the Hub redirected to.
    assert any(s.headers.get("authorization") == f"Bearer {TOKEN}" for s in hub.seen)
    assert hub.cdn.seen and not any("authorization" in s.headers for s in hub.cdn.seen)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("hf://acme/Absent-GGUF:Q8_0", "no model repo acme/Absent-GGUF"),
        ("hf://acme/Weights", "holds no GGUF model file"),
        ("hf://acme/Tiny-GGUF:Q4_K_M", "no GGUF file matches 'Q4_K_M'"),
        ("hf://acme/Tiny-GGUF", "holds 2 models"),
        ("hf://acme/Tiny-GGUF:Q8_0@v9", "has no revision 'v9'"),
        ("hf://acme/Tiny-GGUF/absent.gguf", "has no file absent.gguf"),
    ],
)
def test_bad_names_are_one_line_exit_2(cli, hub, name, words):
    result = cli("plan", name, "--gpu", "8GiB")
    assert result.exit_code == 2, result.stderr
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_no_gguf_match_lists_what_the_repo_has(cli, hub):
    result = cli("inspect", "hf://acme/Tiny-GGUF:Q4_K_M")
    assert "F16, Q8_0" in result.stderr


def test_unreachable_hub_is_exit_1(cli, hub, monkeypatch):
    from conftest import free_port

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    result = cli("plan", "hf://acme/Tiny-GGUF:Q8_0", "--gpu", "8GiB")
    assert result.exit_code == 1 and "cannot reach" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_slow_server_names_the_timeout(cli, hub, monkeypatch):
    hub.cdn.delay = 3.0
    monkeypatch.setenv("GPUSPLIT_HTTP_TIMEOUT", "1")
    result = cli("plan", "hf://acme/Tiny-GGUF:Q8_0", "--gpu", "8GiB")
    assert result.exit_code == 1 and "no answer within 1 s (GPUSPLIT_HTTP_TIMEOUT)" in result.stderr


def test_run_downloads_through_the_hf_cache_then_works_offline(cli, hub, monkeypatch, tmp_path):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    result = cli("run", "hf://acme/Tiny-GGUF:Q8_0", "-n", "4", "--ctx", "256", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    local = doc["plan"]["model"]["path"]
    assert local.startswith(str(tmp_path / "hf" / "hub")) and local.endswith("Tiny-Q8_0.gguf")
    # Offline, the cached snapshot plans without the network; an uncached repo says so in one line.
    hub.close()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = cli("plan", "--json", "hf://acme/Tiny-GGUF:Q8_0", "--gpu", "8GiB")
    assert offline.exit_code == 0, offline.stderr
    missing = cli("plan", "hf://acme/Gated-GGUF:Q8_0", "--gpu", "8GiB")
    assert missing.exit_code == 2 and "not in the Hugging Face cache" in missing.stderr


# ---------------------------------------------------------------------------------------------
# Ollama's registry


def test_plan_an_ollama_name_reads_the_blob_header(cli, ollama, tiny_model):
    name = f"ollama://{ollama.netloc}/tiny:q8"
    result = cli("plan", "--json", name, "--gpu", "8GiB")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["model"]["file_type"] == "Q8_0"
    assert sum(s.bytes_sent for s in ollama.cdn.seen) < tiny_model("dense-q8_0").stat().st_size / 4
    assert "projector layer" in result.stderr
    # Ollama loads the manifest's projector with the model: it is planned on the GPU too.
    doc = json.loads(result.stdout)
    # one manifest fetch for the header and the projector (was two)
    assert sum(1 for s in ollama.seen if "/manifests/" in s.path) == 1
    assert doc["llama_args"][-2] == "--mmproj-url" and "/blobs/sha256:" in doc["llama_args"][-1]
    # llama-server cannot open an ollama:// name: it downloads the model's blob by URL (-mu)
    flag, where = model_source(doc["llama_args"])
    assert flag == "-mu" and where.startswith(f"http://{ollama.netloc}/v2/library/tiny/blobs/sha256:"), doc["llama_args"]
    assert where != doc["llama_args"][-1] and not rejected(doc["llama_args"])
    assert doc["engine_params"]["model_url"] == where
    assert [(r["values"]["type"], r["values"]["device"]) for r in doc["reasons"] if r["code"] == "projector"] == [("mlp", "GPU0")]
    other = cli("inspect", "--json", f"ollama://{ollama.netloc}/acme/tiny")
    assert other.exit_code == 0 and json.loads(other.stdout)["model"]["file_type"] == "F16"


def test_plan_of_an_ollama_name_prints_python_that_downloads_the_blob(cli, ollama, tmp_path, tiny_model):
    shown = cli("plan", f"ollama://{ollama.netloc}/tiny:q8", "--gpu", "8GiB")
    assert shown.exit_code == 0, shown.stderr
    kwargs = run_python_lines(shown.stdout, tmp_path)
    assert kwargs["model_path"] == "tiny-q8.gguf"
    assert (tmp_path / "tiny-q8.gguf").read_bytes() == tiny_model("dense-q8_0").read_bytes()


def test_plan_of_a_hf_name_prints_from_pretrained(cli, hub):
    shown = cli("plan", "hf://acme/Tiny-GGUF:q8_0", "--gpu", "8GiB")
    assert shown.exit_code == 0, shown.stderr
    kwargs = run_python_lines(shown.stdout, Path.cwd())
    assert kwargs["from_pretrained"] is True
    assert (kwargs["repo_id"], kwargs["filename"]) == ("acme/Tiny-GGUF", "*q8_0*.gguf")


def test_the_library_plans_an_ollama_projector_as_the_cli_does(ollama):
    import gpusplit
    from gpusplit.documents.render import plan_document

    name = f"ollama://{ollama.netloc}/tiny:q8"
    devices = gpusplit.detect_devices(gpus=["8GiB"])
    with_projector = plan_document(gpusplit.plan(name, devices))
    assert "--mmproj-url" in with_projector["llama_args"]
    without = plan_document(gpusplit.plan(name, devices, Request(mmproj="")))
    assert "--mmproj-url" not in without["llama_args"]
    assert with_projector["devices"][0]["planned_bytes"] > without["devices"][0]["planned_bytes"]


def test_unknown_ollama_model_is_exit_2(cli, ollama):
    result = cli("plan", f"ollama://{ollama.netloc}/absent:7b", "--gpu", "8GiB")
    assert result.exit_code == 2 and "not found" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_run_downloads_an_ollama_blob_once(cli, ollama, tmp_path, tiny_model):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    name = f"ollama://{ollama.netloc}/tiny:q8"
    first = cli("run", name, "-n", "4", "--ctx", "256", "--json")
    assert first.exit_code == 0, first.stderr
    blob = json.loads(first.stdout)["plan"]["model"]["path"]
    assert blob.startswith(str(tmp_path / "cache" / "ollama" / "blobs" / "sha256-"))
    with open(blob, "rb") as f:
        assert f.read() == tiny_model("dense-q8_0").read_bytes()  # checked against its digest too
    served = sum(s.bytes_sent for s in ollama.cdn.seen)
    again = cli("run", name, "-n", "4", "--ctx", "256", "--json")
    assert again.exit_code == 0
    assert sum(s.bytes_sent for s in ollama.cdn.seen) - served < 1024 * 1024  # the header only, no second download


def _write_projector(path):
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "clip")
    w.add_string("clip.projector_type", "mlp")
    w.add_tensor("mm.0.weight", np.zeros((256, 1024), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _split(folder):
    """A model in three shards, as gguf-split writes them (split.* keys, -0000N-of-00003)."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(folder / "Split-F16.gguf"), "llama", split_max_tensors=1)
    w.add_block_count(1)
    w.add_embedding_length(32)
    w.add_head_count(2)
    for name in ("token_embd.weight", "blk.0.attn_q.weight", "output.weight"):
        w.add_tensor(name, np.ones((4, 32), np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return sorted(folder.glob("Split-F16-*-of-00003.gguf"))


def _valid(doc):
    """The document validates against the closed gpusplit.plan/2 schema."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (test extra) is not installed")
    from gpusplit.documents.schemas import schemas

    jsonschema.validate(doc, schemas()["gpusplit.plan/2"])
