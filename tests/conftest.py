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


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder the session's generated models go into (each written once, on first use)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model(model_dir: Path):
    """tiny_model("dense-f16") -> path of that small real model, written once per session."""
    from gpusplit.synthetic import write_tiny_model

    def get(name: str) -> Path:
        path = model_dir / f"{name}.gguf"
        if not path.exists():
            write_tiny_model(path, name)
        return path

    return get


@pytest.fixture(scope="session")
def header_only_model(model_dir: Path):
    """header_only_model("llama-3.1-70b") -> path of that header-only file, written once per session."""
    from gpusplit.synthetic import write_header_only

    def get(name: str) -> Path:
        path = model_dir / f"{name}.header.gguf"
        if not path.exists():
            write_header_only(path, name)
        return path

    return get


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_worker(port: int, *extra: str):
    """A real `gpusplit worker` process on 127.0.0.1:port, returned once it answers RPC."""
    import subprocess
    import time

    from gpusplit.devices.rpc import RPCError, probe

    proc = subprocess.Popen(
        [sys.executable, "-m", "gpusplit", "worker", "--port", str(port), "--threads", "1", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"worker on port {port} exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            probe(f"127.0.0.1:{port}", timeout=1.0)
            return proc
        except RPCError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def two_workers():
    """Two loopback RPC workers (real ggml devices): yields their endpoints, stops them after."""
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    ports = [free_port(), free_port()]
    procs = [start_worker(p) for p in ports]
    yield [f"127.0.0.1:{p}" for p in ports]
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=10)
