"""The engine layer: the only code that touches llama.cpp (llama-cpp-python and its libggml).

Nothing here is imported at CLI start-up; commands import the submodule they need.
"""

from __future__ import annotations

import importlib.util
import os
from importlib.metadata import PackageNotFoundError, version

from ..base.errors import GpusplitError, InputError

REINSTALL_HINT = 'install the engine: CMAKE_ARGS="-DGGML_RPC=ON" pip install "llama-cpp-python==0.3.36"'
REINSTALL_RPC_HINT = (
    'reinstall the engine with RPC: CMAKE_ARGS="-DGGML_RPC=ON" pip install --force-reinstall --no-cache-dir '
    '"llama-cpp-python==0.3.36"'
)


class EngineError(GpusplitError):
    """The engine is missing, lacks a feature, or failed; `hint` says what to do."""


class EngineInputError(EngineError, InputError):
    """What the engine was given is wrong: a device it does not have, a port in use, a prompt that
    tokenizes to nothing or does not fit the context."""


def engine_lib_dir() -> str | None:
    """Where llama-cpp-python keeps its shared libraries, without importing it (cheap)."""
    if os.environ.get("GPUSPLIT_NO_ENGINE"):
        return None  # lets tests and users see the engine-less behaviour on a machine that has it
    try:
        spec = importlib.util.find_spec("llama_cpp")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    lib_dir = os.path.join(list(spec.submodule_search_locations)[0], "lib")
    return lib_dir if os.path.isfile(os.path.join(lib_dir, "libggml.so.0")) else None


def engine_available() -> bool:
    return engine_lib_dir() is not None


def engine_build_id() -> str:
    """Which llama.cpp build measurements were made with: the package version and the size of its
    CPU and device libraries (a rebuild with CUDA or other flags changes them). Cheap: no import."""
    lib_dir = engine_lib_dir()
    if lib_dir is None:
        return "none"
    try:
        release = version("llama-cpp-python")
    except PackageNotFoundError:
        release = "?"
    sizes = []
    for name in sorted(os.listdir(lib_dir)):
        if name.startswith("libggml") and name.endswith(".so"):
            sizes.append(f"{name}:{os.path.getsize(os.path.join(lib_dir, name))}")
    return f"llama-cpp-python=={release}|" + ",".join(sizes)


def require_engine() -> None:
    """Raise EngineError (with how to install it) when llama-cpp-python is not there."""
    if not engine_available():
        raise EngineError("the llama.cpp engine (llama-cpp-python) is not installed", REINSTALL_HINT)
