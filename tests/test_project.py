"""Project contracts: the README's commands, CI, start-up cost, the engine boundary."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README starts with a bash block of set-up commands"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_readme_starts_with_two_setup_commands_and_ci_runs_the_test_one():
    commands = _readme_commands()
    assert len(commands) == 2
    install, test = commands
    assert 'CMAKE_ARGS="-DGGML_RPC=ON"' in install and install.rstrip().endswith("gpusplit plan && gpusplit run")
    assert test.rstrip().endswith("python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci, ".ci/run must run the README's test command verbatim"


def _run(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60
    )


def test_help_and_inspect_never_import_the_engine(tmp_path):
    code = (
        "import sys\n"
        "from gpusplit.cli.app import run\n"
        "for argv in (['--help'], ['inspect', '--help'], ['inspect', '--json'], ['plan', '--json', '--gpu', '24GiB'],\n"
        "             ['plan', '--gpu', 'RTX 4090', '--gpu', '8GiB'], ['devices', '--gpu', '24GiB']):\n"
        "    try:\n"
        "        run(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('ENGINE' if 'llama_cpp' in sys.modules else 'CLEAN', file=sys.stderr)\n"
    )
    result = _run(code, {"GPUSPLIT_CACHE_DIR": str(tmp_path)})
    assert result.stderr.strip().endswith("CLEAN"), result.stderr


def test_tab_completion_imports_neither_engine_nor_nvml():
    code = (
        "import sys\n"
        "from gpusplit.cli.app import run\n"
        "try:\n"
        "    run([])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('llama_cpp', 'pynvml', 'numpy', 'gguf') if m in sys.modules]\n"
        "print('HEAVY ' + ','.join(heavy) if heavy else 'CLEAN', file=sys.stderr)\n"
    )
    result = _run(code, {"_GPUSPLIT_COMPLETE": "complete_bash", "COMP_WORDS": "gpusplit plan --sp", "COMP_CWORD": "2"})
    assert "--split" in result.stdout
    assert result.stderr.strip().endswith("CLEAN"), result.stderr


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "gpusplit", "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith("gpusplit ")


def test_debug_env_shows_the_traceback(tmp_path):
    missing = str(tmp_path / "absent.gguf")
    quiet = subprocess.run([sys.executable, "-m", "gpusplit", "inspect", missing], capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    loud = subprocess.run(
        [sys.executable, "-m", "gpusplit", "inspect", missing],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GPUSPLIT_DEBUG": "1"},
    )
    assert "Traceback" in loud.stderr and "GGUFError" in loud.stderr


def test_gpu_prepare_hands_cmake_absolute_paths(tmp_path):
    """pip builds the CUDA wheel in a temporary folder, so every path benchmarks/gpu/prepare.sh
    hands to CMake must be absolute, even when its output folder is given relative."""
    script = ROOT / "benchmarks" / "gpu" / "prepare.sh"
    result = subprocess.run(
        ["bash", str(script), "--dry-run"],
        env={**os.environ, "GPUSPLIT_GPU_OUT": "relative/gpu"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    values = dict(line.split("=", 1) for line in result.stdout.splitlines())
    out = Path(values["out"])
    # relative to the repository (the script works from there), made absolute
    assert out.is_absolute() and out == ROOT / "relative" / "gpu"
    paths = [arg.split("=", 1)[1] for arg in values["CMAKE_ARGS"].split() if "=" in arg]
    assert paths and all(Path(p).is_absolute() and p.startswith(str(out)) for p in paths)
    assert not (ROOT / "relative").exists()  # a dry run creates nothing
