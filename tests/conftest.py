from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# Tests import the hand-packing helpers (tests/ggufpack.py, tests/hostile.py) by name.
sys.path.insert(0, str(Path(__file__).parent))

# Keep the demo model and other caches out of the user's home.
os.environ.setdefault("GPUSPLIT_CACHE_DIR", str(Path(__file__).parent.parent / ".pytest_cache" / "gpusplit"))
os.environ.setdefault("GGML_NO_BACKTRACE", "1")


@dataclass
class CLIResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run gpusplit in-process, as `main` would, and capture what it prints."""
    from gpusplit.cli.app import run

    def invoke(*args: str) -> CLIResult:
        capsys.readouterr()
        code = run(list(args))
        out, err = capsys.readouterr()
        return CLIResult(code, out, err)

    return invoke
