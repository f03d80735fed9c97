"""The CI recipe in examples/ works as documented."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _smoke(args, tmp_path, **env):
    full_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(["bash", str(ROOT / "examples" / "ci-smoke.sh"), *args], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_ci_smoke_passes_when_the_model_fits(tmp_path, header_only_model):
    result = _smoke([str(header_only_model("llama-3.1-70b"))], tmp_path, CTX="4096")
    assert result.returncode == 0, result.stderr
    assert "fits:" in result.stdout
    assert json.loads((tmp_path / "plan.json").read_text())["fits"] is True


def test_ci_smoke_fails_with_3_when_it_stops_fitting(tmp_path, header_only_model):
    result = _smoke([str(header_only_model("llama-3.1-70b"))], tmp_path, CTX="131072")
    assert result.returncode == 3
    assert "no longer fits" in result.stderr


def test_ci_smoke_with_a_saved_inventory(tmp_path, header_only_model, cli):
    inventory = tmp_path / "server.json"
    inventory.write_text(cli("devices", "--json", "--gpu", "A100-80GB").stdout)
    result = _smoke([str(header_only_model("llama-3.1-70b")), str(inventory)], tmp_path, CTX="8192")
    assert result.returncode == 0, result.stderr


def test_the_api_example_plans_runs_and_benches(tmp_path):
    """examples/api.py (the script docs/api.md shows) works through the library, no subprocess."""
    import pytest

    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "api.py")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("plan: ") and "fits: True" in lines[0]
    assert lines[1].startswith("llama-server -m ") and " -c 1024 " in lines[1]
    assert lines[2].startswith("generated 16 tokens at ")
    assert any(line.startswith("bench pp64: ") and line.endswith(" tokens/s") for line in lines)
    assert any(line.startswith("bench tg16: ") and line.endswith(" tokens/s") for line in lines)


def test_api_docs_cover_every_public_name():
    import gpusplit

    text = (ROOT / "docs" / "api.md").read_text()
    for name in gpusplit.__all__:
        if name != "__version__" and name not in ("Device", "ModelInfo", "GGUFError"):
            assert f"`gpusplit.{name}" in text, name
