"""Complete documents of gpusplit's, written by hand for tests of the files that hold them (a
record must be a whole one: the readers check every field)."""

from __future__ import annotations

from typing import Any


def bench_record(config_key: str = "mode=auto", test: str = "tg4", **changes: Any) -> dict[str, Any]:
    """A finished `gpusplit.bench/3` record of the CPU alone (`changes` replace its fields; the mean,
    interval and outliers follow its samples, as bench writes them, unless `changes` give them)."""
    from gpusplit.documents.render import noise_fields

    record = {
        "schema": "gpusplit.bench/3",
        "status": "ok",
        "model": {"name": "m", "path": "m.gguf", "architecture": "llama", "file_type": None, "total_bytes": 1, "params": 1},
        "config": {"mode": "auto", "split": "auto", "ngl": None, "ctx": None, "kv": "f16", "fa": False},
        "config_key": config_key,
        "split_mode": "layer",
        "n_gpu_layers": 0,
        "backend": "CPU",
        "test": test,
        "test_kind": "tg" if test.startswith("tg") else "pp",
        "n_tokens": 4,
        "depth": 0,
        "repetitions": 1,
        "samples_ts": [10.0],
        "avg_ts": 10.0,
        "stddev_ts": 0.0,
        "predicted_ts": None,
        "predicted_basis": None,
        "prediction_error_pct": None,
        "roofline_share": None,
        "devices": [],
        "error": None,
        "log_tail": [],
        "build": {},
        "inventory": [],
        "gpusplit_version": "0.1.0",
        "timestamp": "2026-12-07T00:00:00Z",
        "engine_params": None,
        "contention": None,
    }
    record.update(changes)
    for name, value in noise_fields(record["samples_ts"] if record["status"] == "ok" else None).items():
        record.setdefault(name, value)  # after the others: a record's schema comes first, as bench writes it
    return record
