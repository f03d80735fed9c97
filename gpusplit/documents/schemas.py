"""JSON Schemas of every `--json` document (built in documents.py; docs/json.md documents them).

Every object is closed (`additionalProperties: false`) and tests validate real outputs against
these, so a field added to a document and not here, or here and not there, fails. Versioned by
the `schema` field: a breaking change bumps the number.
"""

from __future__ import annotations

from typing import Any

from ..devices.speed import WEIGHT_CLASSES

INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
NULLABLE_INT = {"type": ["integer", "null"]}
NULLABLE_NUM = {"type": ["number", "null"]}
NULLABLE_STR = {"type": ["string", "null"]}
INTS = {"type": "array", "items": INT}
NUMS = {"type": "array", "items": NUM}
STRS = {"type": "array", "items": STR}
REASON = {
    "type": "object",
    "required": ["code", "text"],
    "properties": {"code": STR, "text": STR, "values": {"type": "object"}},
    "additionalProperties": False,
}
REASONS = {"type": "array", "items": REASON}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """A closed object: these properties, the first group required, nothing else."""
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
        "additionalProperties": False,
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _const(name: str) -> dict[str, Any]:
    return {"const": name}


# --------------------------------------------------------------------------------------------- inspect

LAYER = _object(
    {"name": STR, "tensors": INT, "params": INT, "bytes": INT, "types": {"type": "object", "additionalProperties": INT}}
)
TENSOR = _object({"name": STR, "shape": INTS, "type": STR, "bytes": INT, "shard": INT, "data_offset": INT})

MODEL = _object(
    {
        "path": STR, "name": STR, "architecture": STR, "file_type": NULLABLE_STR, "gguf_version": INT, "shards": INT,
        "complete": BOOL, "missing_bytes": INT, "header_bytes": INT, "file_bytes": INT, "params": INT, "total_bytes": INT,
        "n_layer": INT, "n_embd": INT, "n_head": INTS, "n_head_kv": INTS, "head_dim_k": INT, "head_dim_v": INT, "n_ff": INTS,
        "context_length": NULLABLE_INT, "n_vocab": INT, "n_merges": INT, "n_expert": INT, "n_expert_used": INT,
        "sliding_window": INT, "swa_layers": INTS, "tokenizer_model": NULLABLE_STR, "chat_template_chars": NULLABLE_INT,
        "layers": _array(LAYER),
    },
    {"tensors": _array(TENSOR)},
)  # fmt: skip

INSPECT = _object({"schema": _const("gpusplit.inspect/1"), "model": MODEL})

# --------------------------------------------------------------------------------------------- devices

NVML_INFO = _object(
    {
        "index": INT, "uuid": STR, "name": STR, "pci_bus_id": STR, "total_bytes": NULLABLE_INT, "free_bytes": NULLABLE_INT,
        "used_bytes": NULLABLE_INT, "reserved_bytes": NULLABLE_INT, "pcie_gen": NULLABLE_INT, "pcie_width": NULLABLE_INT,
        "pcie_gen_max": NULLABLE_INT, "pcie_width_max": NULLABLE_INT, "nvlink_links_up": NULLABLE_INT,
        "compute_capability": NULLABLE_STR, "memory_bus_width_bits": NULLABLE_INT, "memory_clock_max_mhz": NULLABLE_INT,
        "bandwidth_bytes_per_s": NULLABLE_NUM, "driver_version": NULLABLE_STR, "cuda_driver_version": NULLABLE_STR,
    }
)  # fmt: skip

RATES = {
    "type": "object",
    "properties": dict.fromkeys(WEIGHT_CLASSES, NUM),
    "additionalProperties": False,
}
SPEED = _object(
    {
        "token_overhead_s": NUM, "layer_overhead_s": NUM, "bandwidth": RATES, "cache_bandwidth": NUM, "cache_bytes": INT,
        "batch_overhead_s": NUM, "batch_layer_overhead_s": NUM, "flops": RATES, "expert_batch_factor": NUM,
        "expert_batch_factor_quant": NUM, "attention_score_s": NUM, "rtt_s": NULLABLE_NUM,
        "link_bytes_per_s": NULLABLE_NUM, "threads": NULLABLE_INT, "source": {"enum": ["measured", "catalog", "assumed"]},
        "identity": STR, "measured_at": STR, "probe": {"type": "object"},
    },
    {"unmeasured": STRS, "no_repack": BOOL, "row_overhead_s": {"type": "object", "additionalProperties": NUM},
     "sample_fixed_s": NUM, "sample_per_vocab_s": NUM, "load_fixed_s": NUM, "load_per_vocab_s": NUM,
     "load_hashed_s_per_byte": NUM, "load_cached_s_per_byte": NUM,
     "download_bytes_per_s": NULLABLE_NUM},
)  # fmt: skip
GROUP_SPEED = _object({"layer_sync_s": NUM, "batch_layer_sync_s": NUM, "identity": STR, "measured_at": STR})

DEVICE = _object(
    {
        "name": STR, "description": STR, "backend": STR, "type": STR, "total_bytes": INT, "free_bytes": INT, "index": NULLABLE_INT,
        "source": STR, "bandwidth_bytes_per_s": NULLABLE_NUM, "link_bytes_per_s": NULLABLE_NUM, "pci_bus_id": NULLABLE_STR,
        "supports_row_split": BOOL, "endpoint": NULLABLE_STR, "nvml": _nullable(NVML_INFO), "best": BOOL, "notes": STRS,
        "speed": _nullable(SPEED), "bandwidth_source": {"enum": ["measured", "catalog", "assumed"]},
    }
)  # fmt: skip

ENGINE = _object(
    {"installed": BOOL},
    {"rpc": BOOL, "backends": STRS, "cpu_repack": STR, "cpu_extra_buffers": STRS, "cpu_features": STRS},
)
NVML_SUMMARY = _object(
    {"available": BOOL, "reason": NULLABLE_STR, "driver_version": NULLABLE_STR, "cuda_driver_version": NULLABLE_STR, "gpus": INT}
)

DEVICES = _object(
    {
        "schema": _const("gpusplit.devices/2"), "devices": _array(DEVICE), "host": DEVICE, "best_gpu": NULLABLE_INT,
        "engine": _nullable(ENGINE), "nvml": _nullable(NVML_SUMMARY), "tensor_group": _nullable(GROUP_SPEED), "notes": REASONS,
    }
)  # fmt: skip

CATALOG_CARD = _object(
    {
        "name": STR, "vendor": STR, "backend": STR, "memory_bytes": INT, "bandwidth_bytes_per_s": NUM, "memory_type": STR,
        "interconnect": STR, "link_bytes_per_s": NULLABLE_NUM, "pcie": STR, "aliases": STRS, "source": STR,
        "unified_memory": BOOL, "logical_devices": INT, "notes": STR,
    }
)  # fmt: skip

CATALOG = _object({"schema": _const("gpusplit.catalog/1"), "cards": _array(CATALOG_CARD)})

# --------------------------------------------------------------------------------------------- plan

_PLAN_HOST_FIELDS = {
    "name": STR, "index": NULLABLE_INT, "kind": STR, "total_bytes": INT, "free_bytes": INT, "reserve_bytes": INT,
    "layers": STR, "n_layers": INT, "weights_bytes": INT, "kv_bytes": INT, "compute_bytes": INT, "output_bytes": INT,
    "runtime_bytes": INT, "planned_bytes": INT, "headroom_bytes": INT,
}  # fmt: skip
# the host's weights per llama.cpp buffer (CPU_Mapped, CPU_REPACK, AMX), as its log names them
# and the CPU_Mapped buffer it would be with --no-repack
PLAN_HOST = _object(
    _PLAN_HOST_FIELDS, {"weight_buffers": {"type": "object", "additionalProperties": INT}, "no_repack_mapped_bytes": INT}
)
PLAN_DEVICE = _object(
    {
        **_PLAN_HOST_FIELDS, "backend": STR, "description": STR, "bandwidth_bytes_per_s": NULLABLE_NUM,
        "endpoint": NULLABLE_STR, "pci_bus_id": NULLABLE_STR,
    }
)  # fmt: skip

BASIS = {"enum": ["measured", "catalog", "assumed"]}
RANGE = {"anyOf": [{"type": "array", "items": NUM, "minItems": 2, "maxItems": 2}, {"type": "null"}]}
STRATEGY = {"enum": ["single-gpu", "layer-split", "tensor-split", "expert-offload", "partial-offload", "cpu-only", "as-given"]}
SPLIT_MODE = {"enum": ["none", "layer", "row", "tensor"]}

ENGINE_PARAMS = _object(
    {
        "model_path": STR, "rpc": STRS, "n_gpu_layers": INT, "split_mode": SPLIT_MODE, "main_gpu": INT, "tensor_split": NUMS,
        "n_ctx": INT, "n_batch": INT, "n_ubatch": INT, "n_seq_max": INT, "type_k": STR, "type_v": STR, "flash_attn": BOOL,
        "swa_full": BOOL, "offload_kqv": BOOL, "use_mmap": BOOL, "n_threads": NULLABLE_INT, "n_cpu_moe": INT, "seed": INT,
        "extra": {"type": "object"},
    },
    {"lora": STRS, "no_repack": BOOL, "model_url": NULLABLE_STR},
)  # fmt: skip

LLAMA_CPP_PYTHON = _object(
    {
        "n_gpu_layers": INT, "split_mode": INT, "main_gpu": INT, "n_ctx": INT, "n_batch": INT,
        "n_ubatch": INT, "flash_attn": BOOL, "swa_full": BOOL, "offload_kqv": BOOL, "use_mmap": BOOL, "seed": INT,
    },
    # model_path, or repo_id and filename for Llama.from_pretrained (a hf:// name)
    {"model_path": STR, "repo_id": STR, "filename": STR, "tensor_split": NUMS, "type_k": INT, "type_v": INT,
     "n_threads": INT, "n_threads_batch": INT, "lora_path": STR},
)  # fmt: skip

ALTERNATIVE = _object(
    {
        "strategy": STRATEGY, "split_mode": SPLIT_MODE, "n_gpu_layers": INT, "tensor_split": NUMS, "n_cpu_moe": INT,
        "fits": BOOL, "all_on_gpu": BOOL, "predicted_tg_tps": NULLABLE_NUM, "predicted_pp_tps": NULLABLE_NUM,
        "predicted_basis": BASIS, "reasons": REASONS,
    }
)  # fmt: skip

DRAFT_ROW = _object({"name": STR, "weights_bytes": INT, "kv_bytes": INT, "compute_bytes": INT, "planned_bytes": INT})
DRAFT = _object({"path": STR, "name": STR, "n_gpu_layers": INT, "devices": _array(DRAFT_ROW), "host": DRAFT_ROW})

# where a generated token's predicted microseconds go: fixed costs, links, synchronisation, and per device
DEVICE_PARTS = _object({"layers": NUM, "rows": NUM, "weights": NUM, "output": NUM, "kv": NUM})
PREDICTED_PARTS = _object(
    {"fixed": NUM, "links": NUM, "sync": NUM, "devices": {"type": "object", "additionalProperties": DEVICE_PARTS}}
)

PLAN = _object(
    {
        "schema": _const("gpusplit.plan/2"),
        "model": _object(
            {
                "path": STR, "name": STR, "architecture": STR, "file_type": NULLABLE_STR, "params": INT, "total_bytes": INT,
                "n_layer": INT, "n_expert": INT, "context_length": NULLABLE_INT, "complete": BOOL, "missing_bytes": INT,
            }
        ),
        "settings": _object(
            {
                "n_ctx": INT, "n_batch": INT, "n_ubatch": INT, "n_parallel": INT, "type_k": STR, "type_v": STR,
                "flash_attn": BOOL, "swa_full": BOOL,
            },
            {"no_repack": BOOL},
        ),
        "strategy": STRATEGY,
        "split_mode": SPLIT_MODE,
        "tensor_split": NUMS,
        "n_gpu_layers": INT, "n_cpu_moe": INT, "main_gpu": INT, "fits": BOOL, "all_on_gpu": BOOL, "best_ctx": INT,
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "compute_source": {"enum": ["estimate", "measured"]},
        "pipeline_parallel": BOOL,
        "predicted": _object(
            {
                "tg_tokens_per_s": NULLABLE_NUM, "pp_tokens_per_s": NULLABLE_NUM, "tg_range": RANGE, "pp_range": RANGE,
                "basis": BASIS, "batch_fixed_s": NUM, "batch_token_s": NUM, "bytes_per_token": INT, "limited_by": STR,
                "assumptions": REASONS,
            },
            {"parts": PREDICTED_PARTS, "sample_s": NUM, "load_s": NUM,
             "load": {"type": "object", "additionalProperties": _object({"bytes": INT, "seconds": NUM}, {"cached_seconds": NUM})}},
        ),
        "devices": _array(PLAN_DEVICE),
        "host": PLAN_HOST,
        "llama_args": STRS,
        "llama_cpp_python": LLAMA_CPP_PYTHON,
        "engine_params": ENGINE_PARAMS,
        "reasons": REASONS,
        "warnings": REASONS,
        "request": {"type": "object"},
        "alternatives": _array(ALTERNATIVE),
    },
    {"draft": DRAFT, "workers": _array(_object({"endpoint": STR, "gpusplit": STRS, "llama_cpp": STRS}))},
)  # fmt: skip

# --------------------------------------------------------------------------------------------- run

COMPONENTS = _object({"weights": INT, "kv": INT, "compute": INT, "output": INT})
ACTUAL_SOURCE = {"enum": ["device", "group"]}

BUFFER_BYTES = {"type": "object", "additionalProperties": INT}  # llama.cpp buffer name -> bytes
# llama.cpp crashed with the CPU's extra buffer types holding weights; the work ran again without them
RECOVERY = _object({"crash": STR, "extra_buffers": STRS, "rerun": STR, "message": STR})

RUN = _object(
    {
        "schema": _const("gpusplit.run/2"), "plan": PLAN, "split_mode": SPLIT_MODE, "text": STR,
        "predicted": _object({"gen_tps": NULLABLE_NUM, "prompt_tps": NULLABLE_NUM, "gen_error_pct": NULLABLE_NUM,
                              "prompt_error_pct": NULLABLE_NUM, "basis": BASIS},
                             {"parts": {"anyOf": [PREDICTED_PARTS, {"type": "object", "maxProperties": 0}]},
                              "load_s": NULLABLE_NUM, "load_error_pct": NULLABLE_NUM}),
        "timings": _object({"load_ms": NUM, "prompt_tokens": INT, "prompt_tps": NULLABLE_NUM, "gen_tokens": INT,
                            "gen_tps": NULLABLE_NUM, "ttft_ms": NULLABLE_NUM}),
        "devices": _array(_object({"name": STR, "index": NULLABLE_INT, "planned": COMPONENTS, "actual": COMPONENTS,
                                   "planned_bytes": INT, "planned_runtime_bytes": INT, "actual_bytes": INT,
                                   "diff_bytes": INT, "actual_source": ACTUAL_SOURCE,
                                   "nvml_used_delta_bytes": NULLABLE_INT})),
        "host_weights": _object({"planned": BUFFER_BYTES, "actual": BUFFER_BYTES}),
        "recovery": _nullable(RECOVERY),
    }
)  # fmt: skip

# --------------------------------------------------------------------------------------------- bench

BENCH_RECORD = _object(
    {
        "schema": _const("gpusplit.bench/2"), "status": {"enum": ["ok", "failed"]},
        "model": _object({"name": STR, "path": STR, "architecture": STR, "file_type": NULLABLE_STR, "total_bytes": INT,
                          "params": INT}),
        "config": _object({"mode": STR, "split": STR, "ngl": NULLABLE_INT, "ctx": NULLABLE_INT, "kv": STR, "fa": BOOL}),
        "config_key": STR, "split_mode": _nullable(SPLIT_MODE), "n_gpu_layers": NULLABLE_INT, "backend": STR, "test": STR,
        "test_kind": {"enum": ["pp", "tg"]}, "n_tokens": INT, "depth": INT, "repetitions": INT,
        "samples_ts": NUMS, "avg_ts": NULLABLE_NUM, "stddev_ts": NULLABLE_NUM,
        "predicted_ts": NULLABLE_NUM, "predicted_basis": _nullable(BASIS), "prediction_error_pct": NULLABLE_NUM,
        "roofline_share": NULLABLE_NUM,
        "devices": _array(_object({"name": STR, "planned_bytes": INT, "actual_bytes": NULLABLE_INT, "actual_source": ACTUAL_SOURCE})),
        "error": NULLABLE_STR, "log_tail": STRS,
        "build": _object({}, {"llama_cpp_python": STR, "system_info": STR}),
        "inventory": _array(DEVICE),
        "gpusplit_version": STR, "timestamp": STR, "engine_params": _nullable(ENGINE_PARAMS),
    },
    # written since the host's extra buffer types are planned (older files lack them)
    {"no_repack": BOOL, "recovery": _nullable(RECOVERY), "predicted_parts": _nullable(PREDICTED_PARTS)},
)  # fmt: skip

BENCH = _array(BENCH_RECORD)

COMPARE = _object(
    {
        "schema": _const("gpusplit.bench-compare/1"), "a": STR, "b": STR,
        "rows": _array(_object({"config": STR, "test": STR, "a_ts": NUM, "b_ts": NUM, "ratio": NULLABLE_NUM})),
    }
)  # fmt: skip

TRIAL = _object(
    {
        "key": STR, "request": {"type": "object"}, "strategy": STR, "fits": BOOL, "predicted_tg": NULLABLE_NUM,
        "predicted_pp": NULLABLE_NUM, "measured_tg": NULLABLE_NUM, "measured_pp": NULLABLE_NUM, "score": NULLABLE_NUM,
        "status": {"enum": ["ok", "skipped", "failed"]}, "error": NULLABLE_STR, "seconds": NUM,
        "min_headroom_bytes": NULLABLE_INT, "recovery": _nullable(RECOVERY), "samples": NUMS, "round": INT,
    },
)  # fmt: skip
TUNE = _object(
    {
        "schema": _const("gpusplit.tune/2"), "objective": {"enum": ["tg", "pp", "mixed"]}, "budget_s": NUM,
        "elapsed_s": NUM, "measured": BOOL, "stopped": {"enum": ["budget", "done", "interrupted"]}, "notes": REASONS,
        "trials": _array(TRIAL), "best": _nullable(TRIAL), "plan": PLAN,
    },
    {"runner_up": NULLABLE_STR, "margin_pct": NULLABLE_NUM, "spread_pct": NULLABLE_NUM, "chosen": STR},
)  # fmt: skip

SCHEMAS: dict[str, dict[str, Any]] = {
    "gpusplit.inspect/1": INSPECT,
    "gpusplit.devices/2": DEVICES,
    "gpusplit.plan/2": PLAN,
    "gpusplit.run/2": RUN,
    "gpusplit.bench/2": BENCH_RECORD,
    "gpusplit.catalog/1": CATALOG,
    "gpusplit.bench-compare/1": COMPARE,
    "gpusplit.tune/2": TUNE,
}
