"""Every JSON document gpusplit writes, each built by exactly one function here.

`gpusplit.plan/2` plan_document, `gpusplit.run/3` run_document, `gpusplit.bench/3` bench_record,
`gpusplit.devices/2` devices_document, `gpusplit.tune/3` tune_document, `gpusplit.inspect/1` inspect_document,
`gpusplit.catalog/1` catalog_document, `gpusplit.bench-compare/4` compare_document.

`schemas.py` holds their JSON Schemas, closed (`additionalProperties: false`), and a test checks each
document against its schema: a field added here and not there fails. Pure: no printing, no engine.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..base.contention import Contention
from ..base.reasons import Reason
from ..base.stats import Summary, summarize
from ..base.units import format_bytes
from ..devices.inventory import Inventory
from ..engine.logparse import TENSOR_GROUP, spread_group
from ..engine.params import EngineParams
from ..gguf.model import ModelInfo
from ..jobs.bench import BenchRow
from ..jobs.bench import contended_warning as contended_warning  # the CLI says it as tune does
from ..jobs.runner import RunResult
from ..jobs.tune import TuneResult
from ..planning.cpu_buffers import AMX, MAPPED, REPACK
from ..planning.launch import draft_layers, engine_params, llama_server_args, worker_commands
from ..planning.planner import Plan
from ..planning.predict import parallel_tokens_per_s, prompt_tokens_per_s
from ..sources import python_downloads

if TYPE_CHECKING:
    from ..gguf.model import TensorGroup
    from ..jobs.tune import Trial
    from ..planning.memory import DeviceMemory
    from ..planning.planner import Candidate
    from ..planning.servers import Server, Serving

# /2: reasons, warnings and notes are {"code", "text"}; a plan carries its request; engine_params
# says no_repack (it said use_extra_bufts). The /1 documents are still read.
# run/3, bench/3, tune/3 (trial/3), bench-compare/3: every measured figure carries its noise (its 95 %
# interval, the outliers set aside) and what other work took of the CPUs while it was measured.
# bench-compare/4: a side of several runs (records of one row) is judged over its runs' means.
PLAN_SCHEMA = "gpusplit.plan/2"
RUN_SCHEMA = "gpusplit.run/3"
BENCH_SCHEMA = "gpusplit.bench/3"
DEVICES_SCHEMA = "gpusplit.devices/2"
INSPECT_SCHEMA = "gpusplit.inspect/1"
CATALOG_SCHEMA = "gpusplit.catalog/1"
COMPARE_SCHEMA = "gpusplit.bench-compare/4"
TUNE_SCHEMA = "gpusplit.tune/3"

COMPONENTS = ("weights", "kv", "compute", "output")


def mean_sd(samples: list[float]) -> tuple[float, float]:
    """The mean and standard deviation of a test's samples (NaN, NaN for none)."""
    if not samples:
        return math.nan, math.nan
    return statistics.fmean(samples), statistics.stdev(samples) if len(samples) > 1 else 0.0


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def interval(summary: Summary | None, digits: int = 3) -> list[float] | None:
    """A summary's 95 % interval as [low, high] (its low end at least 0: a speed); None without one."""
    if summary is None or not math.isfinite(summary.high - summary.low):
        return None
    return [round(max(summary.low, 0.0), digits), round(summary.high, digits)]


def noise_fields(samples: list[float] | None) -> dict[str, Any]:
    """A bench record's figures of base/stats.py from its (rounded) samples: the mean with the
    outliers set aside, its 95 % interval, and the outliers; None and [] for no samples."""
    summary = summarize(samples) if samples else None
    return {
        "mean_ts": None if summary is None else round(summary.mean, 3),
        "interval_ts": interval(summary),
        "outliers_ts": [] if summary is None else list(summary.outliers),
    }


def contention_document(seen: Contention | None) -> dict[str, Any] | None:
    return None if seen is None else seen.as_dict()


def rate_interval(token_ms: Summary | None) -> list[float] | None:
    """Tokens/s's 95 % interval from a summary of per-token milliseconds (None where its low end is
    not above 0: too few tokens, or noise as wide as the mean, bounds no rate)."""
    if token_ms is None or not math.isfinite(token_ms.high - token_ms.low) or token_ms.low <= 0:
        return None
    return [round(1000 / token_ms.high, 2), round(1000 / token_ms.low, 2)]


# ---------------------------------------------------------------------------------------------
# inspect


def _layer_summary(group: TensorGroup) -> dict[str, Any]:
    return {
        "name": group.name,
        "tensors": len(group.tensors),
        "params": group.n_elements,
        "bytes": group.n_bytes,
        "types": group.type_mix,
    }


def model_summary(model: ModelInfo, *, tensors: bool = False) -> dict[str, Any]:
    """What the header says, exact integers: the `model` of `gpusplit.inspect/1`."""
    doc: dict[str, Any] = {
        "path": model.path,
        "name": model.name,
        "architecture": model.architecture,
        "file_type": model.file_type,
        "gguf_version": model.gguf_version,
        "shards": model.n_shards,
        "complete": model.complete,
        "missing_bytes": model.missing_bytes,
        "header_bytes": model.header_bytes,
        "file_bytes": model.file_bytes,
        "params": model.n_params,
        "total_bytes": model.total_bytes,
        "n_layer": model.n_layer,
        "n_embd": model.n_embd,
        "n_head": list(model.n_head),
        "n_head_kv": list(model.n_head_kv),
        "head_dim_k": model.head_dim_k,
        "head_dim_v": model.head_dim_v,
        "n_ff": list(model.n_ff),
        "context_length": model.context_length,
        "n_vocab": model.n_vocab,
        "n_merges": model.n_merges,
        "n_expert": model.n_expert,
        "n_expert_used": model.n_expert_used,
        "sliding_window": model.sliding_window,
        "swa_layers": [il for il, swa in enumerate(model.swa_layers) if swa],
        "tokenizer_model": model.tokenizer_model,
        "chat_template_chars": model.chat_template_chars,
        "layers": [_layer_summary(g) for g in model.groups if g.tensors],
    }
    if tensors:
        doc["tensors"] = [
            {
                "name": t.name,
                "shape": list(t.shape),
                "type": t.ggml_type.name,
                "bytes": t.n_bytes,
                "shard": t.shard,
                "data_offset": t.data_offset,
            }
            for g in model.groups
            for t in g.tensors
        ]
    return doc


def inspect_document(model: ModelInfo, *, tensors: bool = False) -> dict[str, Any]:
    return {"schema": INSPECT_SCHEMA, "model": model_summary(model, tensors=tensors)}


# ---------------------------------------------------------------------------------------------
# devices and catalog


def devices_document(inventory: Inventory) -> dict[str, Any]:
    nvml = None
    if inventory.nvml is not None:
        nvml = {
            "available": inventory.nvml.available,
            "reason": inventory.nvml.reason,
            "driver_version": inventory.nvml.driver_version,
            "cuda_driver_version": inventory.nvml.cuda_driver_version,
            "gpus": len(inventory.nvml.gpus),
        }
    best = inventory.best_gpu
    return {
        "schema": DEVICES_SCHEMA,
        "devices": [d.as_dict() for d in inventory.devices],
        "host": inventory.host.as_dict(),
        "best_gpu": best.index if best else None,
        "engine": None if inventory.engine is None else inventory.engine.as_dict(),
        "nvml": nvml,
        "tensor_group": None if inventory.group_speed is None else inventory.group_speed.as_dict(),
        "notes": [n.as_dict() for n in inventory.notes],
    }


def catalog_document(entries: Iterable[Any]) -> dict[str, Any]:
    return {"schema": CATALOG_SCHEMA, "cards": [e.as_dict() for e in entries]}


# ---------------------------------------------------------------------------------------------
# plan


def layer_ranges(layers: list[int], n_layer: int) -> str:
    """[0, 1, 2, 5, 32] with n_layer 32 -> '0-2, 5, output'."""
    blocks = sorted(il for il in layers if il < n_layer)
    runs: list[list[int]] = []  # consecutive blocks
    for il in blocks:
        if runs and il == runs[-1][-1] + 1:
            runs[-1].append(il)
        else:
            runs.append([il])
    parts = [f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs]
    if n_layer in layers:
        parts.append("output")
    return ", ".join(parts) if parts else "-"


def _plan_device(mem: DeviceMemory, model: ModelInfo, kind: str, total: int, free: int, reserve: int) -> dict[str, Any]:
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
        "runtime_bytes": mem.runtime_bytes,
        "planned_bytes": mem.planned_bytes,
        "headroom_bytes": free - reserve - mem.planned_bytes,
    }


def host_weight_buffers(host: DeviceMemory) -> dict[str, int]:
    """The host's weights by llama.cpp buffer: the mapped file and the CPU backend's copies (as its
    log names them), each where it holds something."""
    buffers = {MAPPED: host.mapped_bytes, REPACK: host.repack_bytes, AMX: host.amx_bytes}
    return {name: size for name, size in buffers.items() if size}


NO_REPACK_PYTHON = (
    "llama_cpp.Llama() takes no --no-repack: set use_extra_bufts = False on the model parameters it builds "
    "(llama_cpp.llama_model_default_params); `gpusplit run` does"
)


def _alternative(c: Candidate) -> dict[str, Any]:
    return {
        "strategy": c.strategy,
        "split_mode": c.llama_mode,
        "n_gpu_layers": c.placement.n_gpu_layers,
        "tensor_split": list(c.placement.tensor_split),
        "n_cpu_moe": c.placement.n_cpu_moe,
        "fits": c.fits,
        "all_on_gpu": c.all_on_gpu,
        "predicted_tg_tps": _round(c.prediction.tg_tokens_per_s),
        "predicted_pp_tps": _round(c.prediction.pp_tokens_per_s),
        "predicted_basis": c.prediction.basis,
        "reasons": [r.as_dict() for r in c.reasons],
    }


def memory_parts(device: Mapping[str, Any]) -> dict[str, int]:
    """A `gpusplit.plan/1` device's planned bytes by part, as the memory bars draw them (the output
    layer's compute buffer counted with compute)."""
    return {
        "weights": device.get("weights_bytes", 0),
        "KV": device.get("kv_bytes", 0),
        "compute": device.get("compute_bytes", 0) + device.get("output_bytes", 0),
        "runtime": device.get("runtime_bytes", 0),
    }


def plan_document(plan: Plan) -> dict[str, Any]:
    """`gpusplit.plan/2`: the best candidate in full, the others in summary."""
    best = plan.best
    params = engine_params(plan)
    s = best.settings
    draft = _draft_document(plan)
    return {
        "schema": PLAN_SCHEMA,
        "model": _model_document(plan.model),
        "settings": {
            "n_ctx": s.n_ctx,
            "n_batch": s.n_batch,
            "n_ubatch": s.n_ubatch,
            "n_parallel": s.n_parallel,
            "type_k": s.type_k,
            "type_v": s.type_v,
            "flash_attn": s.flash_attn,
            "swa_full": s.swa_full,
            "no_repack": s.no_repack,
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
        "compute_source": plan.compute_source,
        "pipeline_parallel": best.memory.pipeline_parallel,
        "predicted": prediction_document(best.prediction),
        "devices": _plan_devices(plan),
        "host": _plan_host(plan),
        "llama_args": llama_server_args(plan),
        "workers": worker_commands(plan),
        "llama_cpp_python": params.llama_kwargs(),
        "python_downloads": [asdict(d) for d in python_downloads(params.model_path, params.model_url)],
        "engine_params": params.as_dict(),
        "reasons": [r.as_dict() for r in [*plan.reasons, *best.memory.notes, *_launch_reasons(plan, params)]],
        "warnings": [w.as_dict() for w in plan.warnings],
        "request": plan.request.as_dict(),
        "alternatives": [_alternative(c) for c in plan.alternatives],
        **({"draft": draft} if draft is not None else {}),
        **({"serving": _serving_document(plan.serving)} if plan.serving is not None else {}),
    }


def _serving_document(serving: Serving) -> dict[str, Any]:
    def server(s: Server) -> dict[str, Any]:
        return {
            "devices": list(s.devices),
            "slots": s.slots,
            "users": s.users,
            "tokens_per_s": _round(s.tokens_per_s, 3),
            "per_user_tokens_per_s": _round(s.per_user_tokens_per_s, 3),
            "first_token_s": _round(s.first_token_s, 4),
            "command": list(s.command),
        }

    return {
        "users": serving.users,
        "depth": serving.depth,
        "prompt_tokens": serving.prompt_tokens,
        "server": server(serving.server),
        "replicas": [server(r) for r in serving.replicas],
        "replicas_tokens_per_s": _round(serving.replicas_tokens_per_s, 3),
        "winner": serving.winner,
        "ratio": _round(serving.ratio, 4),
    }


def _model_document(model: ModelInfo) -> dict[str, Any]:
    return {
        "path": model.path,
        "name": model.name,
        "architecture": model.architecture,
        "file_type": model.file_type,
        "params": model.n_params,
        "total_bytes": model.total_bytes,
        "n_layer": model.n_layer,
        "n_expert": model.n_expert,
        "context_length": model.context_length,
        "complete": model.complete,
        "missing_bytes": model.missing_bytes,
    }


def _plan_devices(plan: Plan) -> list[dict[str, Any]]:
    devices = []
    for d, mem, reserve in zip(plan.devices, plan.best.memory.devices, plan.reserves):
        kind = d.source if d.source in ("size", "catalog", "file") else d.backend
        doc = _plan_device(mem, plan.model, kind, d.total_bytes, d.free_bytes, reserve)
        doc.update(
            backend=d.backend,
            description=d.description,
            bandwidth_bytes_per_s=d.bandwidth_bytes_per_s,
            endpoint=d.endpoint,
            pci_bus_id=d.pci_bus_id,
        )
        devices.append(doc)
    return devices


def _plan_host(plan: Plan) -> dict[str, Any]:
    memory = plan.best.memory.host
    host = _plan_device(memory, plan.model, "host", plan.host.total_bytes, plan.host.free_bytes, 0)
    host["weight_buffers"] = host_weight_buffers(memory)
    host["no_repack_mapped_bytes"] = memory.mapped_no_repack_bytes
    return host


def _launch_reasons(plan: Plan, params: EngineParams) -> list[Reason]:
    """What the launch lines cannot say: the settings llama_cpp.Llama() lacks, where the projector
    goes and what of it is not planned."""
    best = plan.best
    reasons = []
    if best.placement.n_cpu_moe:
        reasons.append(
            Reason(
                "python-n-cpu-moe", "llama_cpp.Llama() takes no --n-cpu-moe: `gpusplit run` applies it as tensor buffer overrides"
            )
        )
    if params.no_repack:
        reasons.append(Reason("python-no-repack", NO_REPACK_PYTHON))
    projector = plan.inputs.projector
    if projector is not None:
        where = next((m.name for m in [*best.memory.devices, best.memory.host] if m.projector_bytes), "CPU")
        reasons.append(
            Reason(
                "projector",
                f"projector ({projector.projector_type}) on {where}: {format_bytes(projector.n_bytes)} of weights; its compute "
                "buffer, reserved by llama.cpp's warm-up on its largest image, is not planned",
                {"device": where, "type": projector.projector_type, "bytes": projector.n_bytes},
            )
        )
    if plan.draft is not None and plan.inputs.draft is not None:
        reasons.append(
            Reason(
                "python-draft",
                "llama_cpp.Llama() takes no draft model (it has prompt-lookup decoding only): -md is for llama-server",
            )
        )
    return reasons


def _draft_document(plan: Plan) -> dict[str, Any] | None:
    if plan.draft is None or plan.inputs.draft is None:
        return None
    draft = plan.inputs.draft
    return {
        "path": draft.model.path,
        "name": draft.model.name,
        "n_gpu_layers": draft_layers(draft),
        "devices": [_draft_row(m) for m in plan.draft.devices],
        "host": _draft_row(plan.draft.host),
    }


def _draft_row(mem: DeviceMemory) -> dict[str, Any]:
    return {
        "name": mem.name,
        "weights_bytes": mem.weights_bytes,
        "kv_bytes": mem.kv_bytes,
        "compute_bytes": mem.compute_bytes,
        "planned_bytes": mem.planned_bytes,
    }


def prediction_document(p: Any) -> dict[str, Any]:
    """A predict.Prediction as the plan document's `predicted`."""

    def span(pair: tuple[float, float] | None) -> list[float] | None:
        return None if pair is None else [round(pair[0], 2), round(pair[1], 2)]

    return {
        "tg_tokens_per_s": _round(p.tg_tokens_per_s),
        "pp_tokens_per_s": _round(p.pp_tokens_per_s),
        "tg_range": span(p.tg_range),
        "pp_range": span(p.pp_range),
        "basis": p.basis,
        "batch_fixed_s": round(p.batch_fixed_s, 7),
        "batch_token_s": round(p.batch_token_s, 9),
        "bytes_per_token": p.bytes_per_token,
        "limited_by": p.limited_by,
        "assumptions": [a.as_dict() for a in p.assumptions],
        "parts": _parts(p.parts),
        "sample_s": round(p.sample_s, 9),
        "load": {
            name: {"bytes": nbytes, "seconds": round(seconds, 3)}
            | ({"cached_seconds": round(p.load_cached[name], 3)} if name in p.load_cached else {})
            for name, (nbytes, seconds) in p.load.items()
        },
        "load_s": round(p.load_s, 3),
    }


def _parts(parts: Mapping[str, Any]) -> dict[str, Any]:
    """A prediction's seconds per generated token by part, in microseconds (rounded)."""

    def us(x: float) -> float:
        return round(x * 1e6, 2)

    return {
        **{k: us(v) for k, v in parts.items() if k != "devices"},
        "devices": {name: {k: us(v) for k, v in d.items()} for name, d in (parts.get("devices") or {}).items()},
    }


def predicted_pp(predicted: Mapping[str, Any], n_tokens: int, ubatch: int = 512) -> float | None:
    """Prompt tokens/s a plan document's `predicted` gives a prompt of n_tokens (one batch; its
    fixed cost fitted for a batch of `ubatch`)."""
    return prompt_tokens_per_s(
        predicted["batch_fixed_s"], predicted["batch_token_s"], predicted.get("tg_tokens_per_s"), n_tokens, ubatch
    )


def _ubatch(plan_doc: Mapping[str, Any]) -> int:
    """The batch a plan document's prompt figures are for: its micro-batch, or its context if smaller."""
    settings = plan_doc["settings"]
    return max(min(int(settings["n_ubatch"]), int(settings["n_ctx"])), 1)


def error_pct(predicted: float | None, measured: float | None) -> float | None:
    """How far a prediction was off, in percent of the measured figure (+: predicted too fast)."""
    if not predicted or not measured:
        return None
    return round(100 * (predicted - measured) / measured, 1)


# ---------------------------------------------------------------------------------------------
# planned vs actual, shared by run/1 and bench/1


def actual_rows(plan_doc: Mapping[str, Any], actual: Mapping[str, Mapping[str, int]]) -> list[dict[str, Any]]:
    """Per device the plan uses (and the host): planned and actual bytes by component.

    `actual` is what llama.cpp's log says per device. In tensor mode llama.cpp logs one figure for
    the whole group (`Meta()`, the largest device's share); each device of the group then shows
    that figure, marked `actual_source: "group"` rather than `"device"`.
    """
    members = []
    if plan_doc["split_mode"] == "tensor" and TENSOR_GROUP in actual:
        members = [d["name"] for d in plan_doc["devices"] if d["planned_bytes"]]
    actual = spread_group(actual, members)
    rows = []
    for d in [*plan_doc["devices"], plan_doc["host"]]:
        source = "group" if d["name"] in members else "device"
        parts = {k: int((actual.get(d["name"]) or {}).get(k, 0)) for k in COMPONENTS}
        actual_total = sum(parts.values())
        if not d["planned_bytes"] and not actual_total:
            continue
        # llama.cpp's buffers against llama.cpp's figures; the runtime (driver context, cuBLAS)
        # only NVML sees
        runtime = d.get("runtime_bytes", 0)
        buffers = d["planned_bytes"] - runtime
        rows.append(
            {
                "name": d["name"],
                "index": d["index"],
                "planned": {k: d[f"{k}_bytes"] for k in COMPONENTS},
                "actual": parts,
                "planned_bytes": buffers,
                "planned_runtime_bytes": runtime,
                "actual_bytes": actual_total,
                "diff_bytes": buffers - actual_total,
                "actual_source": source,
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# run


def run_document(result: RunResult) -> dict[str, Any]:
    """`gpusplit.run/1`: the plan, the text, timings, planned vs actual per device."""
    plan_doc = plan_document(result.plan)
    rows = actual_rows(plan_doc, result.actual)
    for row in rows:
        row["nvml_used_delta_bytes"] = result.nvml_used_delta.get(row["name"])
    t = result.timings
    predicted = plan_doc["predicted"]
    pp = predicted_pp(predicted, t.prompt_tokens, _ubatch(plan_doc))
    tg = predicted["tg_tokens_per_s"]
    # run samples each token (greedily, over the vocabulary) besides decoding it
    gen = 1 / (1 / tg + (predicted.get("sample_s") or 0.0)) if tg else None
    return {
        "schema": RUN_SCHEMA,
        "plan": plan_doc,
        "split_mode": plan_doc["split_mode"],
        "text": result.text,
        "predicted": {
            "gen_tps": _round(gen),
            "prompt_tps": _round(pp),
            "gen_error_pct": error_pct(gen, t.gen_tps),
            "prompt_error_pct": error_pct(pp, t.prompt_tps),
            "basis": predicted["basis"],
            # where a generated token's predicted time goes: the term to look at when gen_tps misses
            "parts": predicted.get("parts") or None,
            # the RPC workers' uploads (the local part of a load is not predicted): None without workers
            "load_s": predicted.get("load_s") or None,
            "load_error_pct": error_pct(predicted.get("load_s"), t.load_ms / 1000),
        },
        "timings": {
            "load_ms": round(t.load_ms, 2),
            "prompt_tokens": t.prompt_tokens,
            "prompt_tps": _round(t.prompt_tps),
            "gen_tokens": t.gen_tokens,
            "gen_tps": _round(t.gen_tps),
            "ttft_ms": _round(t.ttft_ms),
            "gen_interval_tps": rate_interval(t.token_summary),
            "gen_outliers": 0 if t.token_summary is None else len(t.token_summary.outliers),
        },
        "devices": rows,
        # the host's weights by llama.cpp buffer (CPU_Mapped, CPU_REPACK, AMX): planned and as logged
        "host_weights": {"planned": dict(plan_doc["host"].get("weight_buffers") or {}), "actual": dict(result.host_weights)},
        "recovery": None if result.recovery is None else result.recovery.to_dict(),
        "contention": contention_document(result.contention),
    }


# ---------------------------------------------------------------------------------------------
# bench


def bench_model(model: ModelInfo) -> dict[str, Any]:
    return {
        "name": model.name,
        "path": model.path,
        "architecture": model.architecture,
        "file_type": model.file_type,
        "total_bytes": model.total_bytes,
        "params": model.n_params,
    }


def bench_record(row: BenchRow, plan_doc: dict[str, Any] | None = None) -> dict[str, Any]:
    """One `gpusplit.bench/3` record: a (configuration, test) pair, finished or failed. `plan_doc`
    is the row's plan as a document where the caller rendered it already (one per configuration)."""
    test = row.test
    samples = list(row.samples) if row.samples is not None else None
    rounded = [round(s, 3) for s in samples or []]  # the noise from the samples as written: a reader gets the same
    avg, sd = mean_sd(samples or [])
    predicted = None
    backend = "CPU"
    split_mode = n_gpu_layers = None
    devices = []
    basis = None
    doc = plan_doc if plan_doc is not None or row.plan is None else plan_document(row.plan)
    if doc is not None:
        pred = doc["predicted"]
        if test.kind == "tg" and test.parallel > 1 and row.plan is not None:
            # sequences decoded together, each at its depth (the plan's figures are one at depth 0)
            predicted = parallel_tokens_per_s(row.plan.prediction_at(test.depth), test.parallel)
        elif test.depth and row.plan is not None:  # the plan's figures are at depth 0
            deep = row.plan.prediction_at(test.depth)
            predicted = (
                deep.tg_tokens_per_s
                if test.kind == "tg"
                else prompt_tokens_per_s(deep.batch_fixed_s, deep.batch_token_s, deep.tg_tokens_per_s, test.n, _ubatch(doc))
            )
        else:
            predicted = pred["tg_tokens_per_s"] if test.kind == "tg" else predicted_pp(pred, test.n, _ubatch(doc))
        basis = pred["basis"]
        backends = sorted({d["backend"] for d in doc["devices"] if d["planned_bytes"]})
        backend = ",".join(backends) if backends else "CPU"
        split_mode, n_gpu_layers = doc["split_mode"], doc["n_gpu_layers"]
        loaded = row.actual is not None and samples is not None
        for actual_row in actual_rows(doc, row.actual or {}):
            devices.append(
                {
                    "name": actual_row["name"],
                    "planned_bytes": actual_row["planned_bytes"],
                    "actual_bytes": actual_row["actual_bytes"] if loaded else None,
                    "actual_source": actual_row["actual_source"],
                }
            )
    ok = row.ok
    return {
        "schema": BENCH_SCHEMA,
        "status": "ok" if ok else "failed",
        "model": bench_model(row.model),
        "config": row.config.as_dict(),
        "config_key": row.config.key(),
        "split_mode": split_mode,
        "n_gpu_layers": n_gpu_layers,
        "backend": backend,
        "test": test.name,
        "test_kind": test.kind,
        "n_tokens": test.n,
        "depth": test.depth,
        "parallel": test.parallel,
        "repetitions": row.repetitions,
        "samples_ts": rounded,
        "avg_ts": None if not ok else round(avg, 3),
        "stddev_ts": None if not ok else round(sd, 3),
        **noise_fields(rounded if ok else None),
        "contention": contention_document(row.contention),
        # each sequence's share where several were decoded together (llama-server: what a user gets)
        "per_user_ts": None if not ok or test.parallel <= 1 else round(avg / test.parallel, 3),
        "predicted_ts": None if predicted is None else round(predicted, 3),
        "predicted_basis": basis,
        "prediction_error_pct": error_pct(predicted, avg) if ok else None,
        "roofline_share": None if not ok or not predicted else round(avg / predicted, 4),
        "devices": devices,
        "error": row.error,
        "log_tail": list(row.log_tail),
        "build": dict(row.build or {}),
        "inventory": [d.as_dict() for d in row.inventory],
        "gpusplit_version": row.version,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "engine_params": None if doc is None else doc["engine_params"],
        "no_repack": doc is not None and doc["engine_params"]["no_repack"],
        "recovery": None if row.recovery is None else row.recovery.to_dict(),
        # a generation test's predicted seconds per token by part (microseconds): which term missed
        "predicted_parts": (doc["predicted"].get("parts") or None) if doc is not None and test.kind == "tg" else None,
    }


def bench_records(rows: Iterable[BenchRow]) -> Iterator[dict[str, Any]]:
    """Rows as `gpusplit.bench/3` records, each configuration's plan rendered once."""
    rendered: dict[int, dict[str, Any]] = {}
    for row in rows:
        doc = None
        if row.plan is not None:
            doc = rendered.get(id(row.plan))
            if doc is None:
                rendered.clear()  # one configuration at a time
                doc = rendered[id(row.plan)] = plan_document(row.plan)
        yield bench_record(row, doc)


def compare_document(a: str, b: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schema": COMPARE_SCHEMA, "a": a, "b": b, "rows": rows}


TRIAL_VALUES = ("strategy", "fits", "predicted_tg", "predicted_pp", "measured_tg", "measured_pp", "score", "status", "error",
                "seconds", "min_headroom_bytes", "samples", "round")  # fmt: skip


def trial_document(trial: Trial) -> dict[str, Any]:
    """One tune trial: its key and request, what was predicted and measured."""
    return {
        "key": trial.key,
        "request": trial.request.as_dict(),
        **{name: getattr(trial, name) for name in TRIAL_VALUES},
        "measured_tg_interval": None if trial.tg_interval is None else [round(x, 3) for x in trial.tg_interval],
        "measured_pp_interval": None if trial.pp_interval is None else [round(x, 3) for x in trial.pp_interval],
        "contention": contention_document(trial.contention),
        "recovery": None if trial.recovery is None else trial.recovery.to_dict(),
    }


def tune_document(result: TuneResult, objective: str, budget_s: float) -> dict[str, Any]:
    """`gpusplit.tune/3`: every trial, the winner and its `gpusplit.plan/2` document."""
    return {
        "schema": TUNE_SCHEMA,
        "objective": objective,
        "budget_s": budget_s,
        "elapsed_s": round(result.elapsed_s, 3),
        "measured": result.measured,
        "stopped": result.stopped,
        "notes": [n.as_dict() for n in result.notes],
        "trials": [trial_document(t) for t in result.trials],
        "best": None if result.best is None else trial_document(result.best),
        # the final rounds: the best few measured again in turn; the margin inside the spread is noise
        "runner_up": result.runner_up,
        "margin_pct": result.margin_pct,
        "spread_pct": result.spread_pct,
        "chosen": result.chosen,
        "plan": plan_document(result.plan),
    }


def document_of(result: Any, **context: Any) -> dict[str, Any]:
    """Any result's document, by what it is (see api.document)."""
    if isinstance(result, Plan):
        return plan_document(result)
    if isinstance(result, Inventory):
        return devices_document(result)
    if isinstance(result, ModelInfo):
        return inspect_document(result, **context)
    if isinstance(result, RunResult):
        return run_document(result)
    if isinstance(result, BenchRow):
        return bench_record(result)
    if isinstance(result, TuneResult):
        return tune_document(result, context["objective"], context["budget_s"])
    raise TypeError(f"no gpusplit document for a {type(result).__name__}")
