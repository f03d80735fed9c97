"""The output contract: every --json document validates against its schema (and docs/json.md
documents it), plain text without escape codes under NO_COLOR / TERM=dumb / pipes, env vars."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from gpusplit.documents.schemas import bench_array, schemas

SCHEMAS = schemas()
BENCH = bench_array()

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (test extra) is not installed")
ROOT = Path(__file__).resolve().parent.parent


def valid(doc, schema):
    jsonschema.validate(doc, schema)
    return doc


def test_inspect_devices_plan_catalog_validate(cli, header_only_model, tiny_model):
    valid(json.loads(cli("inspect", "--json", "--tensors", str(tiny_model("moe-f16"))).stdout), SCHEMAS["gpusplit.inspect/1"])
    valid(json.loads(cli("devices", "--json").stdout), SCHEMAS["gpusplit.devices/2"])
    valid(json.loads(cli("devices", "--json", "--gpu", "2xRTX 4090").stdout), SCHEMAS["gpusplit.devices/2"])
    valid(json.loads(cli("devices", "--catalog", "--json").stdout), SCHEMAS["gpusplit.catalog/1"])
    for args in (["--gpu", "RTX 4090", "--gpu", "RTX 3090"], ["--gpu", "8GiB"], []):
        path = str(header_only_model("llama-3.1-70b")) if args else str(tiny_model("dense-f16"))
        valid(json.loads(cli("plan", "--json", path, *args, "--ram", "64GiB").stdout), SCHEMAS["gpusplit.plan/2"])


def test_run_and_bench_validate(cli, tiny_model, tmp_path):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    path = str(tiny_model("dense-f16"))
    valid(json.loads(cli("run", "--json", "-n", "4", path).stdout), SCHEMAS["gpusplit.run/3"])
    out = tmp_path / "b.jsonl"
    records = json.loads(
        cli("bench", path, "-p", "16", "-n", "2", "-r", "1", "--ctx", "256", "-o", "json", "--output", str(out)).stdout
    )
    valid(records, BENCH)
    compare = json.loads(cli("bench", "--compare", str(out), "--compare", str(out), "-o", "json").stdout)
    valid(compare, SCHEMAS["gpusplit.bench-compare/4"])


def test_docs_describe_every_schema_and_its_fields():
    text = (ROOT / "docs" / "json.md").read_text()
    from gpusplit.base.reasons import CODES
    from gpusplit.documents.schemas import resolve

    for name, schema in SCHEMAS.items():
        assert f"`{name}`" in text, name
        for field in resolve(schema, schema).get("required", []):
            assert f"`{field}`" in text, f"{name}: {field}"
    for code in CODES:
        assert f"| `{code}` |" in text, code


@pytest.mark.parametrize("env", [{"NO_COLOR": "1", "TERM": "xterm-256color"}, {"TERM": "dumb"}])
def test_plain_text_in_a_terminal_when_asked(env, header_only_model):
    pexpect = pytest.importorskip("pexpect", reason="pexpect (test extra) is not installed")
    full_env = {**os.environ, "NO_COLOR": "", **env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for args in (
        ["--help"],
        ["devices", "--gpu", "24GiB"],
        ["plan", str(header_only_model("llama-3.1-8b")), "--gpu", "RTX 4090"],
    ):
        child = pexpect.spawn("gpusplit", args, env=full_env, encoding="utf-8", timeout=60)
        child.expect(pexpect.EOF)
        assert "\x1b" not in child.before, args
        assert child.before.strip()


def test_piped_output_has_no_escape_codes(cli, header_only_model):
    # cli() captures like a pipe: not a terminal.
    for args in (["devices"], ["plan", str(header_only_model("llama-3.1-8b")), "--gpu", "RTX 4090"], ["inspect"]):
        result = cli(*args)
        assert "\x1b" not in result.stdout and "\x1b" not in result.stderr


def test_environment_variables(cli, header_only_model, monkeypatch):
    path = str(header_only_model("llama-3.1-8b"))
    monkeypatch.setenv("GPUSPLIT_GPU", "RTX 4090")
    doc = json.loads(cli("plan", "--json", path).stdout)
    assert [d["description"] for d in doc["devices"]] == ["RTX 4090"]
    monkeypatch.setenv("GPUSPLIT_RESERVE", "2GiB")
    doc = json.loads(cli("plan", "--json", path).stdout)
    assert doc["devices"][0]["reserve_bytes"] == 2 * 2**30
    monkeypatch.delenv("GPUSPLIT_GPU")
    monkeypatch.setenv("GPUSPLIT_RPC", "127.0.0.1:1")
    result = cli("devices", "--timeout", "1")
    assert result.exit_code == 1 and "127.0.0.1:1" in result.stderr
