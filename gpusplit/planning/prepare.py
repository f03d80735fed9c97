"""From a user's settings to a Plan: every setting checked the same way whether it came from the
command line or a script (one line naming the problem and a fix), the CPU backend's weight copies,
the projector and draft model read, then the planner's pure functions, and llama.cpp's dry run when
No printing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..base.errors import InputError
from ..base.units import parse_rate, parse_size
from .values import check_kv_type, check_mode, parse_split

if TYPE_CHECKING:
    from ..devices.inventory import Inventory
    from ..gguf.adapter import AdapterInfo
    from ..gguf.model import ModelInfo
    from .planner import Plan

DEFAULT_CTX = 4096


# ---------------------------------------------------------------------------------------------
# Models and devices


def read_adapter(location: str | os.PathLike[str]) -> AdapterInfo:
    """Read a LoRA adapter's header (`--lora`): the base tensors it adapts and their bytes."""
    from ..gguf.adapter import read_adapter as read

    return read(os.fspath(location))


def require_complete(model: ModelInfo | dict[str, Any], command: str) -> None:
    """A file whose tensor data is missing cannot load: say so before the engine does. `model` is
    a ModelInfo or the `model` of a plan document."""
    if not isinstance(model, dict):
        model = {
            "path": model.path,
            "complete": model.complete,
            "missing_bytes": model.missing_bytes,
            "total_bytes": model.total_bytes,
        }
    model_doc = model
    if model_doc.get("complete", True):
        return
    from ..base.units import format_bytes

    missing = model_doc.get("missing_bytes") or 0
    if missing >= model_doc.get("total_bytes", 0):
        what, hint = (
            "holds only a header (its tensor data is missing)",
            "use the complete file; plan and inspect read headers alone",
        )
    else:
        what = f"is truncated: {format_bytes(missing)} of its tensor data is missing"
        hint = "download it again (resume the download), then run it; plan and inspect read the header alone"
    raise InputError(f"{model_doc['path']} {what}, so it cannot {command}", hint)


# ---------------------------------------------------------------------------------------------
# Planning


def plan(
    model: ModelInfo | str | os.PathLike[str],
    devices: Inventory | None = None,
    *,
    ctx: int | None = None,
    batch: int = 512,
    ubatch: int = 512,
    parallel: int = 1,
    kv_type: str | None = None,
    kv_type_k: str | None = None,
    kv_type_v: str | None = None,
    flash_attn: bool = False,
    swa_full: bool = True,
    ngl: int | None = None,
    mode: str | None = None,
    split: str | Sequence[float] | None = None,
    main_gpu: int | None = None,
    n_cpu_moe: int | None = None,
    spread: bool = False,
    reserve: int | str | None = None,
    cpu_bandwidth: float | str | None = None,
    allow_ctx_overflow: bool = False,
    threads: int | None = None,
    lora: Sequence[str | os.PathLike[str]] = (),
    draft: ModelInfo | str | os.PathLike[str] | None = None,
    ngl_draft: int = -1,
    mmproj: str | os.PathLike[str] | None = None,
    no_repack: bool = False,
) -> Plan:
    """How to split `model` over `devices` (default: `detect_devices()`): bytes per device, the
    strategy, the best context, a fit score and llama.cpp's parameters.
    `gpusplit.document(plan)` is the `gpusplit.plan/1` document.

    Settings mirror llama.cpp's (ctx, batch, ubatch, parallel, kv_type, flash_attn, ...); a
    `split`, `ngl` or `n_cpu_moe` is evaluated as given.
    Predicted speeds use each device's measured figures (`probe_devices`) where there are some;
    `threads` picks the CPU's (when `devices` is not given). `lora` adapters are loaded with the
    model: their bytes go where the layers they adapt go. A `draft` model (speculative decoding,
    llama-server's -md) is placed as llama-server places it, `ngl_draft` of its layers offloaded,
    and counted in the fit; so is a multimodal projector (`mmproj`; by default the one the model's
    source loads with it, as Ollama does its manifest's; "" for none), on the first GPU. The host's
    weights include the copies llama.cpp's CPU backend makes (AMX, CPU_REPACK); `no_repack` plans
    the load without them (llama.cpp's --no-repack: the engine turns its extra buffer types off).
    """
    from ..engine.detect import detect_devices
    from ..sources import default_projector, read_model
    from .memory import Settings
    from .planner import Request, make_plan
    from .predict import DEFAULT_CPU_BANDWIDTH

    check_mode(mode)
    info = model if not isinstance(model, (str, os.PathLike)) else read_model(model)
    inventory = devices if devices is not None else detect_devices(threads=threads)
    found = inventory.devices
    limit = info.context_length or DEFAULT_CTX
    n_ctx = ctx if ctx is not None else min(DEFAULT_CTX, limit)
    if n_ctx <= 0:
        raise InputError(f"--ctx {n_ctx} must be positive", f"the model was trained for {limit} tokens")
    if info.context_length and n_ctx > info.context_length and not allow_ctx_overflow:
        raise InputError(
            f"--ctx {n_ctx} is above the model's context length {info.context_length}", "lower --ctx or add --allow-ctx-overflow"
        )
    type_k = check_kv_type(kv_type_k, "--kv-type-k") or check_kv_type(kv_type) or "f16"
    type_v = check_kv_type(kv_type_v, "--kv-type-v") or check_kv_type(kv_type) or "f16"
    if n_cpu_moe is not None and (n_cpu_moe < 0 or n_cpu_moe > info.n_layer):
        raise InputError(f"--n-cpu-moe {n_cpu_moe} is out of range", f"use 0 to {info.n_layer}")
    if ngl is not None and ngl < -1:
        raise InputError(f"--ngl {ngl} is negative", f"use -1 for all or 0 to {info.n_layer + 1}")
    split_values = parse_split(split)
    if split_values is not None and len(split_values) > len(found):
        raise InputError(f"--split has {len(split_values)} entries but there are {len(found)} devices", "one share per device")
    if main_gpu is not None and not 0 <= main_gpu < max(len(found), 1):
        raise InputError(f"--main-gpu {main_gpu} is out of range", f"there are {len(found)} devices (0 to {len(found) - 1})")
    if mmproj is None:
        mmproj = default_projector(info.path)
    cpu = cpu_backend(inventory)
    settings = Settings(
        n_ctx=n_ctx,
        n_batch=batch,
        n_ubatch=ubatch,
        n_parallel=parallel,
        type_k=type_k,
        type_v=type_v,
        flash_attn=flash_attn,
        swa_full=swa_full,
        cpu_repack=cpu["repack"],
        cpu_extra_buffers=tuple(cpu["extra_buffers"]),
        extra_buffers=not no_repack,
    )
    request = Request(
        settings=settings,
        mode=None if mode in (None, "auto") else mode,
        split=split_values,
        n_gpu_layers=ngl,
        main_gpu=main_gpu,
        n_cpu_moe=n_cpu_moe,
        spread=spread,
        reserve=parse_size(reserve, "--reserve"),
        cpu_bandwidth=parse_rate(cpu_bandwidth, "--cpu-bandwidth") or DEFAULT_CPU_BANDWIDTH,
        tensor_group=inventory.group_speed,
        adapters=tuple(read_adapter(path) for path in lora),
        draft=_draft_request(draft, ngl_draft),
        projector=_read_projector(mmproj) if mmproj else None,
    )
    result = make_plan(info, list(found), inventory.host, request)
    note = host_copies_note(result.best.memory.host, cpu, no_repack)
    if note:
        result.reasons.append(note)
    return result


def cpu_backend(inventory: Inventory) -> dict[str, Any]:
    """What llama.cpp's CPU backend does with the host's weights: the engine's report where the
    inventory has one (detected here, or a devices file's), else what a native build for this CPU
    would do ({"extra_buffers", "repack", "source"})."""
    from ..devices.cpu import EXTRA_BUFFERS
    from .cpu_buffers import REPACK_RULES

    engine = inventory.engine or {}
    if inventory.engine_from_file and "cpu_repack" in engine and "cpu_extra_buffers" not in engine:
        # a devices file written before the extra buffer types were reported: CPU_REPACK alone
        engine = {**engine, "cpu_extra_buffers": [] if engine["cpu_repack"] == "none" else ["CPU_REPACK"]}
    if "cpu_extra_buffers" in engine:
        extra, repack = engine["cpu_extra_buffers"], engine.get("cpu_repack") or "none"
        wrong = not isinstance(extra, list) or any(b not in EXTRA_BUFFERS for b in extra) or repack not in REPACK_RULES
        if inventory.engine_from_file and wrong:
            # a devices file (untrusted input) that says something else; a live engine may list types
            # this code does not model (they are said, not counted)
            raise InputError(
                f"the devices' engine.cpu_extra_buffers may list only {', '.join(EXTRA_BUFFERS)} and engine.cpu_repack "
                f"be one of {', '.join(REPACK_RULES)}",
                "write the file with `gpusplit devices --json`",
            )
        return {"extra_buffers": extra, "repack": repack, "source": "file" if inventory.engine_from_file else "engine"}
    from ..devices.cpu import native_cpu_backend

    return native_cpu_backend()


def host_copies_note(host: Any, cpu: dict[str, Any], no_repack: bool) -> str | None:
    """The plan's reason line for the weights llama.cpp copies beside the mapped file (or would, but
    for --no-repack), saying where the rules came from."""
    from ..base.units import format_bytes
    from .cpu_buffers import HOST_COPIES_NOTE, MODELLED

    copies = [(host.amx_bytes, "AMX"), (host.repack_bytes, f"CPU_REPACK ({cpu['repack']} rules)")]
    parts = [f"{format_bytes(n)} in {name}" for n, name in copies if n]
    where = {
        "engine": "llama.cpp reported by this engine",
        "file": "as the devices file's engine reported them",
    }.get(cpu.get("source", ""), "assumed: a native build for this CPU")
    offered = ", ".join(cpu["extra_buffers"]) or "none"
    unmodelled = [b for b in cpu["extra_buffers"] if b not in MODELLED]
    tail = f"; what {', '.join(unmodelled)} would take is not modelled" if unmodelled else ""
    if no_repack:
        if not cpu["extra_buffers"]:
            return None
        return f"--no-repack: the host keeps its weights in the mapped file only (extra buffer types {offered} off{tail})"
    if not parts:
        return None
    return (
        f"{HOST_COPIES_NOTE}{' and '.join(parts)} beside the mapped file: llama.cpp copies the weights it computes "
        f"with into its extra buffer types ({offered}; {where}){tail}; --no-repack keeps only the mapped file"
    )


def _read_projector(location: str | os.PathLike[str]) -> Any:
    from ..gguf.adapter import read_projector

    return read_projector(os.fspath(location))


def _draft_request(draft: ModelInfo | str | os.PathLike[str] | None, ngl_draft: int) -> Any:
    from .planner import DraftRequest

    if draft is None:
        return None
    if ngl_draft < -1:
        raise InputError(f"--ngl-draft {ngl_draft} is negative", "use -1 for all, or a count of layers")
    from ..sources import read_model

    return DraftRequest(draft if not isinstance(draft, (str, os.PathLike)) else read_model(draft), ngl_draft)
