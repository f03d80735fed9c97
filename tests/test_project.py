"""Project contracts: the README's commands, CI, start-up cost, the engine boundary."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


# a child that runs the CLI on its argv, then reports what it imported
RUN_ARGV = "import sys\nfrom gpusplit.cli.app import run\ntry:\n    run(sys.argv[1:])\nexcept SystemExit:\n    pass\n"


def test_help_and_command_completion_import_no_command_module():
    """`gpusplit --help` lists the commands from a table and `gpusplit <TAB>` completes them from it:
    neither imports a command's module, nor the library below them (the planner, the documents,
    msgspec): what they cost is typer's own start-up."""
    code = (
        RUN_ARGV
        + "loaded = [m for m in sys.modules if m.startswith(('gpusplit.cli.', 'gpusplit.planning', 'gpusplit.documents',\n"
        "          'gpusplit.jobs', 'gpusplit.engine', 'gpusplit.devices', 'gpusplit.gguf', 'msgspec', 'rich'))]\n"
        "print('LOADED ' + ' '.join(sorted(loaded)), file=sys.stderr)\n"
    )
    kept = {"gpusplit.cli.app", "gpusplit.cli.errors", "gpusplit.cli.output"}
    for argv, env in (
        (["--help"], {}),
        ([], {"_GPUSPLIT_COMPLETE": "complete_bash", "COMP_WORDS": "gpusplit ", "COMP_CWORD": "1"}),
    ):
        result = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, env={**os.environ, **env}, timeout=60
        )
        loaded = set(result.stderr.strip().rsplit("LOADED", 1)[1].split())
        assert loaded <= kept, loaded - kept
        names = ["devices", "inspect", "plan", "run", "bench", "tune", "worker", "report"]
        assert all(name in result.stdout for name in names), result.stdout


LIBRARY = ("gpusplit.api", "gpusplit.planning.", "gpusplit.documents.", "gpusplit.jobs.", "gpusplit.engine.")
LIBRARY += ("gpusplit.devices.", "gpusplit.gguf.", "gpusplit.sources", "gpusplit.synthetic")


@pytest.mark.parametrize("command", ["devices", "inspect", "plan", "run", "bench", "tune", "worker", "report"])
def test_a_commands_help_and_option_completion_run_no_library_module(command):
    """A command's own --help and the completion of its options build that command from its
    module, whose library modules load on first use (cli/lazy.py): none of them has run."""
    code = (
        RUN_ARGV + "from importlib.util import _LazyModule\n"
        f"ran = [n for n, m in list(sys.modules.items()) if n.startswith({LIBRARY!r}) and type(m) is not _LazyModule]\n"
        "print('RAN ' + ' '.join(sorted(ran)), file=sys.stderr)\n"
    )
    completion = {"_GPUSPLIT_COMPLETE": "complete_bash", "COMP_WORDS": f"gpusplit {command} --", "COMP_CWORD": "2"}
    for argv, env in (([command, "--help"], {}), ([], completion)):
        result = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, env={**os.environ, **env}, timeout=60
        )
        assert result.stderr.strip().endswith("RAN"), result.stderr
        assert "--json" in result.stdout or "--host" in result.stdout or "--output" in result.stdout, result.stdout


def test_the_command_table_says_what_each_command_does():
    """The one-line help `gpusplit --help` prints without importing the commands is each command's
    own: its docstring's first paragraph, and its module holds it under the command's name."""
    import inspect

    from gpusplit.cli.app import COMMANDS, command_function

    for name, (_, text) in COMMANDS.items():
        assert inspect.getdoc(command_function(name)).split("\n\n")[0] == text, name


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
