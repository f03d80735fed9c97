"""A plan as data: the `gpusplit.plan/1` document and the exact llama.cpp parameters it implies.

Pure: no printing (cli/output.py renders), no engine import (engine/params.py is plain data).
"""

from __future__ import annotations

from typing import Any

from .engine.params import EngineParams
from .gguf.model import ModelInfo
from .memory import DeviceMemory
from .planner import Candidate, Plan

PLAN_SCHEMA = "gpusplit.plan/1"


def layer_ranges(layers: list[int], n_layer: int) -> str:
    """[0, 1, 2, 5, 32] with n_layer 32 -> '0-2, 5, output'."""
    blocks = sorted(il for il in layers if il < n_layer)
    parts: list[str] = []
    start = prev = None
    for il in blocks:
        if start is None:
            start = prev = il
        elif il == prev + 1:
            prev = il
        else:
            parts.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = il
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else str(start))
    if n_layer in layers:
        parts.append("output")
    return ", ".join(parts) if parts else "-"


def engine_params(
    plan: Plan, candidate: Candidate | None = None, model_path: str | None = None, n_ctx: int | None = None
) -> EngineParams:
    """The llama.cpp parameters of a candidate (the best one by default)."""
    c = candidate or plan.best
    model = plan.model
    p = c.placement
    ngl = model.n_layer + 1 if p.n_gpu_layers < 0 else p.n_gpu_layers
    # An explicit split makes the load reproducible (llama.cpp's default follows free memory).
    split = tuple(p.tensor_split) if c.llama_mode != "none" else ()
    rpc = tuple(dict.fromkeys(d.endpoint for d in plan.devices if d.endpoint))
    mode = c.llama_mode
    settings = c.settings
    return EngineParams(
        model_path=model_path or model.path,
        rpc=rpc,
        n_gpu_layers=ngl if plan.devices else 0,
        split_mode=mode,
        main_gpu=p.main_gpu,
        tensor_split=split,
        n_ctx=n_ctx or settings.n_ctx,
        n_batch=settings.n_batch,
        n_ubatch=settings.n_ubatch,
        n_seq_max=settings.n_parallel,
        type_k=settings.type_k,
        type_v=settings.type_v,
        flash_attn=settings.flash_attn,
        swa_full=settings.swa_full,
        offload_kqv=settings.offload_kqv,
        n_cpu_moe=p.n_cpu_moe,
    )


def _device_doc(mem: DeviceMemory, model: ModelInfo, kind: str, total: int, free: int, reserve: int) -> dict[str, Any]:
    return {
        "name": mem.name,
        "index": mem.index,
        "kind": kind,
        "total_bytes": total,
        "free_bytes": free,
        "reserve_bytes": reserve,
        "layers": layer_ranges(mem.layers, model.n_layer),
        "n_layers": len(mem.layers),
        "weights_bytes": mem.weights_bytes,
        "kv_bytes": mem.kv_bytes,
        "compute_bytes": mem.compute_bytes,
        "output_bytes": mem.output_bytes,
        "planned_bytes": mem.planned_bytes,
        "headroom_bytes": free - reserve - mem.planned_bytes,
    }


def candidate_summary(c: Candidate) -> dict[str, Any]:
    return {
        "strategy": c.strategy,
        "split_mode": c.llama_mode,
        "n_gpu_layers": c.placement.n_gpu_layers,
        "tensor_split": list(c.placement.tensor_split),
        "n_cpu_moe": c.placement.n_cpu_moe,
        "fits": c.fits,
        "predicted_tg_tps": _round(c.prediction.tg_tokens_per_s),
        "predicted_pp_tps": _round(c.prediction.pp_tokens_per_s),
        "reasons": c.reasons,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def plan_document(plan: Plan, measured: bool = False) -> dict[str, Any]:
    best = plan.best
    model = plan.model
    params = engine_params(plan)
    s = best.settings
    devices = []
    for d, mem, reserve in zip(plan.devices, best.memory.devices, plan.reserves):
        doc = _device_doc(
            mem, model, d.source if d.source in ("size", "catalog", "file") else d.backend, d.total_bytes, d.free_bytes, reserve
        )
        doc["backend"] = d.backend
        doc["description"] = d.description
        doc["bandwidth_bytes_per_s"] = d.bandwidth_bytes_per_s
        doc["endpoint"] = d.endpoint
        doc["pci_bus_id"] = d.pci_bus_id
        devices.append(doc)
    host = _device_doc(best.memory.host, model, "host", plan.host.total_bytes, plan.host.free_bytes, 0)
    prediction = best.prediction
    return {
        "schema": PLAN_SCHEMA,
        "model": {
            "path": model.path,
            "name": model.name,
            "architecture": model.architecture,
            "file_type": model.file_type,
            "params": model.n_params,
            "total_bytes": model.total_bytes,
            "n_layer": model.n_layer,
            "context_length": model.context_length,
            "complete": model.complete,
        },
        "settings": {
            "n_ctx": s.n_ctx,
            "n_batch": s.n_batch,
            "n_ubatch": s.n_ubatch,
            "n_parallel": s.n_parallel,
            "type_k": s.type_k,
            "type_v": s.type_v,
            "flash_attn": s.flash_attn,
            "swa_full": s.swa_full,
        },
        "strategy": best.strategy,
        "split_mode": best.llama_mode,
        "tensor_split": list(params.tensor_split),
        "n_gpu_layers": params.n_gpu_layers,
        "n_cpu_moe": best.placement.n_cpu_moe,
        "main_gpu": params.main_gpu,
        "fits": best.fits,
        "all_on_gpu": best.all_on_gpu and bool(plan.devices),
        "best_ctx": plan.best_ctx,
        "score": plan.score,
        "compute_source": "measured (llama.cpp dry run)" if measured else "estimate",
        "pipeline_parallel": best.memory.pipeline_parallel,
        "predicted": {
            "tg_tokens_per_s": _round(prediction.tg_tokens_per_s),
            "pp_tokens_per_s": _round(prediction.pp_tokens_per_s),
            "bytes_per_token": prediction.bytes_per_token,
            "limited_by": prediction.limited_by,
            "assumptions": list(prediction.assumptions),
        },
        "devices": devices,
        "host": host,
        "llama_args": params.cli_flags(),
        "llama_cpp_python": params.llama_kwargs(),
        "engine_params": params.as_dict(),
        "reasons": plan.reasons
        + best.memory.notes
        + (
            ["llama_cpp.Llama() takes no --n-cpu-moe: `gpusplit run` applies it as tensor buffer overrides"]
            if best.placement.n_cpu_moe
            else []
        ),
        "alternatives": [candidate_summary(c) for c in plan.alternatives],
    }
