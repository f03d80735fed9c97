"""From a Request to a Plan: the request checked against the model and the devices (one line naming
the parameter and a fix), the CPU backend's weight copies, the adapters, projector and draft model
read, then the planner's pure functions. No printing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from ..base.errors import InputError
from ..base.reasons import Reason
from ..base.units import format_bytes
from ..devices.cpu import CpuBackend, native_cpu_backend
from ..devices.inventory import Inventory
from ..engine.detect import detect_devices
from ..gguf.adapter import AdapterInfo, read_projector
from ..gguf.adapter import read_adapter as read_adapter_file
from ..gguf.errors import GGUFError
from ..gguf.model import ModelInfo
from ..sources import default_projector, read_model
from .cpu_buffers import MODELLED
from .memory import DeviceMemory, Settings
from .planner import DraftRequest, Plan, PlanInputs, make_plan
from .predict import DEFAULT_CPU_BANDWIDTH
from .refusals import require_device_count
from .request import DEFAULT, Request
from .serving import serving

DEFAULT_CTX = 4096
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Models and devices


def read_adapter(location: str | os.PathLike[str]) -> AdapterInfo:
    """Read a LoRA adapter's header: the base tensors it adapts and their bytes."""
    return read_adapter_file(os.fspath(location))


def require_complete(model: ModelInfo, command: str) -> None:
    """A file whose tensor data is missing cannot load: say so before the engine does."""
    if model.complete:
        return
    if model.missing_bytes >= model.total_bytes:
        what, hint = (
            "holds only a header (its tensor data is missing)",
            "use the complete file; plan and inspect read headers alone",
        )
    else:
        what = f"is truncated: {format_bytes(model.missing_bytes)} of its tensor data is missing"
        hint = "download it again (resume the download), then run it; plan and inspect read the header alone"
    raise InputError(f"{model.path} {what}, so it cannot {command}", hint)


# ---------------------------------------------------------------------------------------------
# Planning


def plan(model: ModelInfo | str | os.PathLike[str], devices: Inventory | None = None, request: Request = DEFAULT) -> Plan:
    """How to split `model` over `devices` (default: the devices here) as `request` asks: bytes per
    device, the strategy, the best context, a fit score and llama.cpp's parameters.
    `gpusplit.document(plan)` is its `gpusplit.plan/2` document.

    A `tensor_split`, `n_gpu_layers` or `n_cpu_moe` is evaluated as given. Predicted speeds use
    each device's measured figures (`probe_devices`) where there are some. LoRA adapters are loaded
    with the model (their bytes where the layers they adapt go); a draft model is placed as
    llama-server places it and a multimodal projector on the first GPU, both counted in the fit.
    The host's weights include the copies llama.cpp's CPU backend makes (AMX, CPU_REPACK) unless
    the request says `no_repack`.
    """
    info = model if isinstance(model, ModelInfo) else read_model(model)
    inventory = devices if devices is not None else detect_devices(threads=request.n_threads)
    require_device_count(len(inventory.devices))  # before any work for devices llama.cpp would refuse
    cpu = cpu_backend(inventory)
    inputs = resolve(info, inventory, request, cpu)
    result = make_plan(info, list(inventory.devices), inventory.host, inputs)
    note = host_copies_note(result.best.memory.host, cpu, request.no_repack)
    if note:
        result.reasons.append(note)
    result.serving = serving(result)
    return result


def _companion(parameter: str, read: Callable[[str], T], location: str) -> T:
    """A companion file read, an error in it naming the parameter that gave it."""
    try:
        return read(location)
    except GGUFError as exc:
        raise exc.as_parameter(parameter) from None


def context_size(model: ModelInfo, request: Request) -> int:
    """The context the request plans: as given, else 4096 (or the model's trained context if smaller)."""
    limit = model.context_length or DEFAULT_CTX
    if request.n_ctx is None:
        return min(DEFAULT_CTX, limit)
    if model.context_length and request.n_ctx > model.context_length and not request.allow_ctx_overflow:
        raise InputError(
            "{p.n_ctx} {n_ctx} is above the model's context length {limit}",
            "lower {p.n_ctx} or set {p.allow_ctx_overflow}",
            parameter="n_ctx",
            n_ctx=request.n_ctx,
            limit=model.context_length,
        )
    return request.n_ctx


def resolve(model: ModelInfo, inventory: Inventory, request: Request, cpu: CpuBackend) -> PlanInputs:
    """The request checked against the model and the devices, its companion files read and its
    defaults taken: what the planner's pure functions work from."""
    found = inventory.devices
    n_ctx = context_size(model, request)
    if request.n_cpu_moe is not None and request.n_cpu_moe > model.n_layer:
        raise InputError(
            "{p.n_cpu_moe} {value} is out of range",
            "use 0 to {n_layer}",
            parameter="n_cpu_moe",
            value=request.n_cpu_moe,
            n_layer=model.n_layer,
        )
    if request.tensor_split is not None and len(request.tensor_split) > len(found):
        raise InputError(
            "{p.tensor_split} has {given} entries but there are {n} devices",
            "one share per device",
            parameter="tensor_split",
            given=len(request.tensor_split),
            n=len(found),
        )
    if request.main_gpu is not None and request.main_gpu >= max(len(found), 1):
        raise InputError(
            "{p.main_gpu} {value} is out of range",
            "there are {n} devices (0 to {last})",
            parameter="main_gpu",
            value=request.main_gpu,
            n=len(found),
            last=len(found) - 1,
        )
    mmproj = request.mmproj if request.mmproj is not None else default_projector(model.path)
    type_k, type_v = request.kv_types
    settings = Settings(
        n_ctx=n_ctx,
        n_batch=request.n_batch,
        n_ubatch=request.n_ubatch,
        n_parallel=max(request.n_parallel, request.users or 1),
        type_k=type_k,
        type_v=type_v,
        flash_attn=request.flash_attn,
        swa_full=request.swa_full,
        cpu_repack=cpu.repack,
        cpu_extra_buffers=cpu.extra_buffers,
        no_repack=request.no_repack,
    )
    return PlanInputs(
        request=request,
        settings=settings,
        mode=request.split_mode,
        split=request.tensor_split,
        n_gpu_layers=request.n_gpu_layers,
        main_gpu=request.main_gpu,
        n_cpu_moe=request.n_cpu_moe,
        spread=request.spread,
        reserve=request.reserves(len(found)),
        cpu_bandwidth=request.cpu_bandwidth or DEFAULT_CPU_BANDWIDTH,
        tensor_group=inventory.group_speed,
        adapters=tuple(_companion("lora", read_adapter, path) for path in request.lora),
        draft=None
        if request.draft is None
        else DraftRequest(_companion("draft", read_model, request.draft), request.n_gpu_layers_draft),
        projector=_companion("mmproj", read_projector, mmproj) if mmproj else None,
    )


def cpu_backend(inventory: Inventory) -> CpuBackend:
    """What llama.cpp's CPU backend does with the host's weights: the engine's report where the
    inventory has one (detected here, or a devices file's), else what a native build for this CPU
    would do."""
    reported = inventory.engine.cpu_backend(inventory.engine_from_file) if inventory.engine is not None else None
    return reported if reported is not None else native_cpu_backend()


def host_copies_note(host: DeviceMemory, cpu: CpuBackend, no_repack: bool) -> Reason | None:
    """The plan's reason line for the weights llama.cpp copies beside the mapped file (or would, but
    for --no-repack), saying where the rules came from."""
    copies = [(host.amx_bytes, "AMX"), (host.repack_bytes, f"CPU_REPACK ({cpu.repack} rules)")]
    parts = [f"{format_bytes(n)} in {name}" for n, name in copies if n]
    where = {
        "engine": "llama.cpp reported by this engine",
        "file": "as the devices file's engine reported them",
    }.get(cpu.source, "assumed: a native build for this CPU")
    offered = ", ".join(cpu.extra_buffers) or "none"
    unmodelled = [b for b in cpu.extra_buffers if b not in MODELLED]
    tail = f"; what {', '.join(unmodelled)} would take is not modelled" if unmodelled else ""
    if no_repack:
        if not cpu.extra_buffers:
            return None
        return Reason(
            "no-repack",
            f"--no-repack: the host keeps its weights in the mapped file only (extra buffer types {offered} off{tail})",
        )
    if not parts:
        return None
    return Reason(
        "host-copies",
        f"the CPU also keeps {' and '.join(parts)} beside the mapped file: llama.cpp copies the weights it computes "
        f"with into its extra buffer types ({offered}; {where}){tail}; --no-repack keeps only the mapped file",
        {"amx_bytes": host.amx_bytes, "repack_bytes": host.repack_bytes, "rules": cpu.source},
    )
