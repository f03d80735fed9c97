"""JSON Schemas of every `--json` document (docs/json.md documents them; tests validate real
outputs against them). Versioned by the `schema` field: a breaking change bumps the number."""

from __future__ import annotations

from typing import Any

INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
NULLABLE_INT = {"type": ["integer", "null"]}
NULLABLE_NUM = {"type": ["number", "null"]}
NULLABLE_STR = {"type": ["string", "null"]}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": sorted(required), "properties": {**required, **(optional or {})}}


def _const(name: str) -> dict[str, Any]:
    return {"const": name}


LAYER = _object({"name": STR, "tensors": INT, "params": INT, "bytes": INT, "types": {"type": "object"}})

MODEL = _object(
    {
        "path": STR, "name": STR, "architecture": STR, "file_type": NULLABLE_STR, "gguf_version": INT, "shards": INT,
        "complete": BOOL, "missing_bytes": INT, "header_bytes": INT, "file_bytes": INT, "params": INT, "total_bytes": INT,
        "n_layer": INT, "n_embd": INT, "n_head": {"type": "array", "items": INT}, "n_head_kv": {"type": "array", "items": INT},
        "head_dim_k": INT, "head_dim_v": INT, "n_ff": {"type": "array", "items": INT}, "context_length": NULLABLE_INT,
        "n_vocab": INT, "n_merges": INT, "n_expert": INT, "n_expert_used": INT, "sliding_window": INT,
        "swa_layers": {"type": "array", "items": INT}, "tokenizer_model": NULLABLE_STR, "chat_template_chars": NULLABLE_INT,
        "layers": {"type": "array", "items": LAYER},
    },
    {"tensors": {"type": "array"}},
)  # fmt: skip

INSPECT = _object({"schema": _const("gpusplit.inspect/1"), "model": MODEL})

DEVICE = _object(
    {
        "name": STR, "description": STR, "backend": STR, "type": STR, "total_bytes": INT, "free_bytes": INT, "index": NULLABLE_INT,
        "source": STR, "bandwidth_bytes_per_s": NULLABLE_NUM, "link_bytes_per_s": NULLABLE_NUM, "pci_bus_id": NULLABLE_STR,
        "supports_row_split": BOOL, "endpoint": NULLABLE_STR, "nvml": {"type": ["object", "null"]}, "best": BOOL,
        "notes": {"type": "array", "items": STR},
    }
)  # fmt: skip

DEVICES = _object(
    {
        "schema": _const("gpusplit.devices/1"), "devices": {"type": "array", "items": DEVICE}, "host": DEVICE,
        "best_gpu": NULLABLE_INT, "engine": {"type": "object"}, "nvml": {"type": ["object", "null"]},
        "notes": {"type": "array", "items": STR},
    }
)  # fmt: skip

PLAN_DEVICE = _object(
    {
        "name": STR, "index": NULLABLE_INT, "kind": STR, "total_bytes": INT, "free_bytes": INT, "reserve_bytes": INT,
        "layers": STR, "n_layers": INT, "weights_bytes": INT, "kv_bytes": INT, "compute_bytes": INT, "output_bytes": INT,
        "planned_bytes": INT, "headroom_bytes": INT,
    }
)  # fmt: skip

PLAN = _object(
    {
        "schema": _const("gpusplit.plan/1"),
        "model": _object({"path": STR, "name": STR, "architecture": STR, "params": INT, "total_bytes": INT, "n_layer": INT, "complete": BOOL}),
        "settings": _object({"n_ctx": INT, "n_batch": INT, "n_ubatch": INT, "n_parallel": INT, "type_k": STR, "type_v": STR, "flash_attn": BOOL, "swa_full": BOOL}),
        "strategy": {"enum": ["single-gpu", "layer-split", "tensor-split", "expert-offload", "partial-offload", "cpu-only", "as-given"]},
        "split_mode": {"enum": ["none", "layer", "row", "tensor"]},
        "tensor_split": {"type": "array", "items": NUM},
        "n_gpu_layers": INT, "n_cpu_moe": INT, "main_gpu": INT, "fits": BOOL, "all_on_gpu": BOOL, "best_ctx": INT,
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "compute_source": STR, "pipeline_parallel": BOOL,
        "predicted": _object({"tg_tokens_per_s": NULLABLE_NUM, "pp_tokens_per_s": NULLABLE_NUM, "bytes_per_token": INT,
                              "limited_by": STR, "assumptions": {"type": "array", "items": STR}}),
        "devices": {"type": "array", "items": PLAN_DEVICE},
        "host": PLAN_DEVICE,
        "llama_args": {"type": "array", "items": STR},
        "llama_cpp_python": {"type": "object"},
        "engine_params": {"type": "object"},
        "reasons": {"type": "array", "items": STR},
        "alternatives": {"type": "array"},
    }
)  # fmt: skip

COMPONENTS = _object({"weights": INT, "kv": INT, "compute": INT, "output": INT})

RUN = _object(
    {
        "schema": _const("gpusplit.run/1"), "plan": PLAN, "split_mode": STR, "text": STR,
        "timings": _object({"load_ms": NUM, "prompt_tokens": INT, "prompt_tps": NULLABLE_NUM, "gen_tokens": INT,
                            "gen_tps": NULLABLE_NUM, "ttft_ms": NULLABLE_NUM}),
        "devices": {"type": "array", "items": _object({"name": STR, "planned": COMPONENTS, "actual": COMPONENTS,
                                                       "planned_bytes": INT, "actual_bytes": INT, "diff_bytes": INT,
                                                       "nvml_used_delta_bytes": NULLABLE_INT})},
    }
)  # fmt: skip

BENCH_RECORD = _object(
    {
        "schema": _const("gpusplit.bench/1"), "status": {"enum": ["ok", "failed"]}, "model": {"type": "object"},
        "config": _object({"mode": STR, "split": STR, "ngl": NULLABLE_INT, "ctx": NULLABLE_INT, "kv": STR, "fa": BOOL}),
        "config_key": STR, "split_mode": NULLABLE_STR, "n_gpu_layers": NULLABLE_INT, "backend": STR, "test": STR,
        "test_kind": {"enum": ["pp", "tg"]}, "n_tokens": INT, "depth": INT, "repetitions": INT,
        "samples_ts": {"type": "array", "items": NUM}, "avg_ts": NULLABLE_NUM, "stddev_ts": NULLABLE_NUM,
        "predicted_ts": NULLABLE_NUM, "roofline_share": NULLABLE_NUM, "devices": {"type": "array"}, "error": NULLABLE_STR,
        "log_tail": {"type": "array", "items": STR}, "build": {"type": "object"}, "inventory": {"type": "array"},
        "gpusplit_version": STR, "timestamp": STR, "engine_params": {"type": ["object", "null"]},
    }
)  # fmt: skip

BENCH = {"type": "array", "items": BENCH_RECORD}

CATALOG = _object({"schema": _const("gpusplit.catalog/1"), "cards": {"type": "array", "items": {"type": "object"}}})

COMPARE = _object({"schema": _const("gpusplit.bench-compare/1"), "a": STR, "b": STR, "rows": {"type": "array"}})

SCHEMAS: dict[str, dict[str, Any]] = {
    "gpusplit.inspect/1": INSPECT,
    "gpusplit.devices/1": DEVICES,
    "gpusplit.plan/1": PLAN,
    "gpusplit.run/1": RUN,
    "gpusplit.bench/1": BENCH_RECORD,
    "gpusplit.catalog/1": CATALOG,
    "gpusplit.bench-compare/1": COMPARE,
}
