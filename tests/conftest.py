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
# Tests hold on a busy machine (a CI runner's neighbours, other helpers' builds): measurements do
# not watch other processes unless a test about that turns it on (GPUSPLIT_CONTENTION=watch).
os.environ["GPUSPLIT_CONTENTION"] = "ignore"
# One engine thread unless a test says otherwise: ggml's threads busy-wait at every barrier, so two
# on two cores beside any other process wait out time slices (tests/test_run.py: 20 s idle, 49-55 s
# beside a CPU hog at two threads; 22 s idle and 23 s beside the hog at one).
os.environ.setdefault("GPUSPLIT_THREADS", "1")


# ---------------------------------------------------------------------------------------------
# No test can take the suite down: llama.cpp crashes by signals (its AMX kernels on Intel Xeons,
# a failed GGML_ASSERT), so a model is loaded in an engine child or in a test marked `isolated`,
# which runs in a forked process whose death fails that test alone. Loading one in the pytest
# process itself fails the test that does it, on every CPU.

PYTEST_PID = os.getpid()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "isolated: runs in a forked process (it loads llama.cpp in-process)")
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None or os.environ.get("GPUSPLIT_NO_ENGINE"):
        return
    import llama_cpp
    import llama_cpp.llama_cpp as low_level

    loaders = ("llama_model_load_from_file", "llama_model_load_from_splits", "llama_load_model_from_file")
    for module in (llama_cpp, low_level):
        for name in loaders:
            load = getattr(module, name, None)
            if load is None:
                continue

            def guarded(*args, load=load):
                if os.getpid() == PYTEST_PID:
                    raise RuntimeError(
                        "a test loaded a llama.cpp model in the pytest process, where a llama.cpp crash takes the whole "
                        "suite down: mark it @pytest.mark.isolated or load it through the engine child (fixtures run "
                        "in the pytest process: load models in the test itself)"
                    )
                return load(*args)

            setattr(module, name, guarded)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """Run a test marked `isolated` in a forked process: an assertion fails it as usual, a skip
    skips it, an xfail xfails it, and a crash (a signal) fails it with the signal's name while the
    suite goes on. Its fixtures run here, in the pytest process; only the test body is forked."""
    if pyfuncitem.get_closest_marker("isolated") is None:
        return None
    import inspect
    import signal
    import sys
    import traceback

    assert not inspect.iscoroutinefunction(pyfuncitem.obj), "an isolated test cannot be async"
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the test, report, leave without pytest's teardown
        os.close(read_end)
        code, report = 0, ""
        try:
            pyfuncitem.obj(**args)
        except pytest.skip.Exception as exc:
            code, report = 2, str(exc.msg)
        except pytest.xfail.Exception as exc:
            code, report = 3, str(exc.msg)
        except BaseException as exc:
            code, report = 1, "".join(traceback.format_exception(exc))
        sys.stdout.flush()
        sys.stderr.flush()
        data = report.encode("utf-8", "replace")
        while data:
            data = data[os.write(write_end, data) :]
        os._exit(code)
    os.close(write_end)
    try:
        chunks = []
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(read_end)
        try:  # interrupted (Ctrl-C, a timeout): no orphan left running
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    report = b"".join(chunks).decode("utf-8", "replace")
    if os.WIFSIGNALED(status):
        pytest.fail(f"the test's process died with {signal.Signals(os.WTERMSIG(status)).name}", pytrace=False)
    code = os.WEXITSTATUS(status)
    if code == 2:
        pytest.skip(report)
    if code == 3:
        pytest.xfail(report)
    if code != 0:
        pytest.fail(report, pytrace=False)
    return True


@pytest.fixture
def plain_cpu_params(monkeypatch: pytest.MonkeyPatch):
    """llama_cpp.Llama() without the CPU's extra buffer types (llama.cpp's --no-repack), for tests
    of our files, not of llama.cpp's AMX kernels, which crash on some Xeons (see engine/tasks.py)."""
    low_level = pytest.importorskip("llama_cpp.llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    defaults = low_level.llama_model_default_params

    def no_extra_buffers():
        params = defaults()
        params.use_extra_bufts = False
        return params

    monkeypatch.setattr(low_level, "llama_model_default_params", no_extra_buffers)


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
