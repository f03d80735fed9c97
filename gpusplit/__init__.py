"""gpusplit: plan and run split inference of GGUF models across GPUs and machines (llama.cpp).

The library the `gpusplit` command stands on (see docs/api.md):

    import gpusplit

    plan = gpusplit.plan("model.gguf", gpusplit.detect_devices(gpus=["24GiB", "8GiB"]), gpusplit.Request(n_ctx=8192))
    print(plan.best.strategy, gpusplit.document(plan)["llama_args"])

Names are imported on first use, so `import gpusplit` stays cheap for the CLI and its tab completion.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .base.version import __version__

# public name -> the module that defines it
_EXPORTS = {
    "read_model": "gpusplit.api",
    "read_adapter": "gpusplit.api",
    "detect_devices": "gpusplit.api",
    "plan": "gpusplit.api",
    "run": "gpusplit.api",
    "bench": "gpusplit.api",
    "demo_model_path": "gpusplit.api",
    "download_model": "gpusplit.api",
    "probe_devices": "gpusplit.api",
    "load_plan_document": "gpusplit.api",
    "document": "gpusplit.api",
    "Request": "gpusplit.api",
    "Reason": "gpusplit.base.reasons",
    "Matrix": "gpusplit.api",
    "Tests": "gpusplit.api",
    "tune": "gpusplit.api",
    "report": "gpusplit.api",
    "GpusplitError": "gpusplit.base.errors",
    "InputError": "gpusplit.base.errors",
    "GGUFError": "gpusplit.gguf.errors",
    "ModelInfo": "gpusplit.gguf.model",
    "Device": "gpusplit.devices.device",
    "Inventory": "gpusplit.devices.inventory",
    "Plan": "gpusplit.planning.planner",
    "RunResult": "gpusplit.jobs.runner",
}

__all__ = [
    "Device",
    "GGUFError",
    "GpusplitError",
    "InputError",
    "Inventory",
    "Matrix",
    "ModelInfo",
    "Plan",
    "Reason",
    "Request",
    "RunResult",
    "Tests",
    "__version__",
    "bench",
    "demo_model_path",
    "detect_devices",
    "document",
    "download_model",
    "load_plan_document",
    "plan",
    "probe_devices",
    "read_adapter",
    "read_model",
    "report",
    "run",
    "tune",
]

if TYPE_CHECKING:
    from .api import (
        Matrix,
        Request,
        Tests,
        bench,
        demo_model_path,
        detect_devices,
        document,
        download_model,
        load_plan_document,
        plan,
        probe_devices,
        read_adapter,
        read_model,
        report,
        run,
        tune,
    )
    from .base.errors import GpusplitError, InputError
    from .devices.device import Device
    from .devices.inventory import Inventory
    from .gguf.errors import GGUFError
    from .gguf.model import ModelInfo
    from .jobs.runner import RunResult
    from .planning.planner import Plan


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gpusplit' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
