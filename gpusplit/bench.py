"""The bench matrix, its result records, JSONL append/resume, comparisons and table renderers.

Each configuration (mode x split x ngl x ctx x KV type x flash attention) runs llama-bench's
tests (pp: a batch of random tokens; tg: one token at a time) in its own engine child; a failure
becomes a failed record and the matrix goes on. Records are appended to the output file and
flushed as each configuration finishes, so an interrupted bench keeps every finished row.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import statistics
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_SCHEMA = "gpusplit.bench/1"


@dataclass(frozen=True)
class Config:
    mode: str  # auto, none, layer, row, tensor
    split: str  # "auto" (the plan's) or "0.5,0.5"
    ngl: int | None  # None: the plan's
    ctx: int | None  # None: large enough for the tests
    kv: str
    fa: bool

    def key(self) -> str:
        return f"mode={self.mode} split={self.split} ngl={'auto' if self.ngl is None else self.ngl} ctx={self.ctx or 'auto'} kv={self.kv} fa={int(self.fa)}"

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "split": self.split, "ngl": self.ngl, "ctx": self.ctx, "kv": self.kv, "fa": self.fa}


@dataclass(frozen=True)
class Test:
    name: str  # pp512, tg128, pp512@d1024
    kind: str  # pp or tg
    n: int
    depth: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "n": self.n, "depth": self.depth}


def tests_for(n_prompt: list[int], n_gen: list[int], depths: list[int]) -> list[Test]:
    tests = []
    for depth in depths or [0]:
        suffix = f" @ d{depth}" if depth else ""
        tests += [Test(f"pp{n}{suffix}", "pp", n, depth) for n in n_prompt if n > 0]
        tests += [Test(f"tg{n}{suffix}", "tg", n, depth) for n in n_gen if n > 0]
    return tests


def matrix(
    modes: list[str], splits: list[str], ngls: list[int | None], ctxs: list[int | None], kvs: list[str], fas: list[bool]
) -> list[Config]:
    """Every combination; a split only matters for the modes that use one."""
    configs: list[Config] = []
    seen = set()
    for mode, split, ngl, ctx, kv, fa in itertools.product(modes, splits, ngls, ctxs, kvs, fas):
        if mode == "none":
            split = "auto"
        c = Config(mode, split, ngl, ctx, kv, fa)
        if c.key() not in seen:
            seen.add(c.key())
            configs.append(c)
    return configs


def mean_sd(samples: list[float]) -> tuple[float, float]:
    if not samples:
        return math.nan, math.nan
    return statistics.fmean(samples), statistics.stdev(samples) if len(samples) > 1 else 0.0


# ---------------------------------------------------------------------------------------------
# JSONL: append, resume, read


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record and make it durable before the next configuration starts."""
    line = json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record of a JSONL file; a line cut short by a kill is ignored."""
    records = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("schema") == BENCH_SCHEMA:
            records.append(record)
    return records


def done_keys(records: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(r.get("config_key", ""), r.get("test", "")) for r in records}


# ---------------------------------------------------------------------------------------------
# Records


def record(
    *,
    model: dict[str, Any],
    config: Config,
    test: Test,
    samples: list[float] | None,
    error: str | None = None,
    log_tail: list[str] | None = None,
    plan: dict[str, Any] | None = None,
    actual: dict[str, dict[str, int]] | None = None,
    build: dict[str, Any] | None = None,
    inventory: list[dict[str, Any]] | None = None,
    version: str = "",
    repetitions: int = 0,
) -> dict[str, Any]:
    avg, sd = mean_sd(samples or [])
    predicted = None
    backend = "CPU"
    split_mode = n_gpu_layers = None
    devices = []
    if plan is not None:
        pred = plan["predicted"]
        predicted = pred["tg_tokens_per_s"] if test.kind == "tg" else pred["pp_tokens_per_s"]
        backends = sorted({d["backend"] for d in plan["devices"] if d["planned_bytes"]})
        backend = ",".join(backends) if backends else "CPU"
        split_mode, n_gpu_layers = plan["split_mode"], plan["n_gpu_layers"]
        for d in [*plan["devices"], plan["host"]]:
            real = (actual or {}).get(d["name"], {})
            if d["planned_bytes"] or real:
                devices.append(
                    {"name": d["name"], "planned_bytes": d["planned_bytes"], "actual_bytes": sum(real.values()) if real else None}
                )
    ok = error is None and samples is not None
    return {
        "schema": BENCH_SCHEMA,
        "status": "ok" if ok else "failed",
        "model": model,
        "config": config.as_dict(),
        "config_key": config.key(),
        "split_mode": split_mode,
        "n_gpu_layers": n_gpu_layers,
        "backend": backend,
        "test": test.name,
        "test_kind": test.kind,
        "n_tokens": test.n,
        "depth": test.depth,
        "repetitions": repetitions,
        "samples_ts": [round(s, 3) for s in samples or []],
        "avg_ts": None if not ok else round(avg, 3),
        "stddev_ts": None if not ok else round(sd, 3),
        "predicted_ts": None if predicted is None else round(predicted, 3),
        "roofline_share": None if not ok or not predicted else round(avg / predicted, 4),
        "devices": devices,
        "error": error,
        "log_tail": log_tail or [],
        "build": build or {},
        "inventory": inventory or [],
        "gpusplit_version": version,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "engine_params": None if plan is None else plan["engine_params"],
    }


# ---------------------------------------------------------------------------------------------
# Renderers (text in, text out: the CLI prints them)


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


def _params(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def _varying(records: list[dict[str, Any]]) -> list[str]:
    keys = ["mode", "split", "ctx", "kv", "fa"]
    return [k for k in keys if len({json.dumps(r["config"][k]) for r in records}) > 1]


def _memory(r: dict[str, Any]) -> str:
    parts = []
    for d in r["devices"]:
        actual = "?" if d["actual_bytes"] is None else f"{d['actual_bytes'] / 2**20:.0f}"
        parts.append(f"{d['name']} {d['planned_bytes'] / 2**20:.0f}/{actual}")
    return "; ".join(parts)


def table_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    varying = _varying(records)
    header = [
        "model",
        "size",
        "params",
        "backend",
        "ngl",
        *varying,
        "test",
        "t/s",
        "predicted t/s",
        "roofline",
        "memory MiB planned/actual",
    ]
    rows = []
    for r in records:
        m = r["model"]
        if r["status"] == "ok":
            ts = f"{r['avg_ts']:.2f} ± {r['stddev_ts']:.2f}"
        else:
            ts = "FAILED: " + (r["error"] or "unknown")[:80]
        pred = "-" if r["predicted_ts"] is None else f"{r['predicted_ts']:.2f}"
        share = "-" if r["roofline_share"] is None else f"{100 * r['roofline_share']:.0f}%"
        ngl = "-" if r["n_gpu_layers"] is None else str(r["n_gpu_layers"])
        settings = [str(r["config"][k]) if k != "fa" else str(int(r["config"][k])) for k in varying]
        rows.append(
            [
                m["name"],
                _size(m["total_bytes"]),
                _params(m["params"]),
                r["backend"],
                ngl,
                *settings,
                r["test"],
                ts,
                pred,
                share,
                _memory(r),
            ]
        )
    return header, rows


def render_md(records: list[dict[str, Any]]) -> str:
    header, rows = table_rows(records)
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---:" if h in ("t/s", "predicted t/s", "roofline") else "---" for h in header) + " |",
    ]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_csv(records: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["model", "size_bytes", "params", "backend", "n_gpu_layers", "mode", "split", "ctx", "kv", "fa", "test", "status",
                     "avg_ts", "stddev_ts", "samples_ts", "predicted_ts", "roofline_share", "error"])  # fmt: skip
    for r in records:
        c = r["config"]
        writer.writerow([
            r["model"]["name"], r["model"]["total_bytes"], r["model"]["params"], r["backend"], r["n_gpu_layers"], c["mode"], c["split"],
            c["ctx"], c["kv"], int(c["fa"]), r["test"], r["status"], r["avg_ts"], r["stddev_ts"],
            " ".join(str(s) for s in r["samples_ts"]), r["predicted_ts"], r["roofline_share"], r["error"] or "",
        ])  # fmt: skip
    return buf.getvalue()


def compare(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Per (configuration, test) present in both: b's mean t/s over a's."""
    index = {(r["config_key"], r["test"]): r for r in a if r["status"] == "ok"}
    for r in b:
        other = index.get((r["config_key"], r["test"]))
        if other is None or r["status"] != "ok":
            continue
        yield {
            "config": r["config_key"],
            "test": r["test"],
            "a_ts": other["avg_ts"],
            "b_ts": r["avg_ts"],
            "ratio": round(r["avg_ts"] / other["avg_ts"], 4) if other["avg_ts"] else None,
        }
