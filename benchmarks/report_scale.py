"""How `gpusplit report`'s time grows with the devices of a plan and the records of a bench file.

    python benchmarks/report_scale.py [--sizes 10 100 1000] [--runs 3]

A real plan of a small generated model on two hypothetical cards is made in-process, and its
devices repeated to each size; a bench file holds that many records. Each case is timed in-process
(median of --runs, after one unmeasured run), printed as a Markdown table:

- "page" draws the page from the documents already read (documents.report.render): the charts and
  tables, the part that was quadratic in the devices (issue 35: a legend lookup per bar);
- "report" is the library's whole `report` of a file: reading and checking it, then the page. A
  plan document holds at most 64 devices (its schema), so larger plans are drawn only.

Linear work shows as a time per device (a plan's page) or per record (a bench file's report) that
stays about flat, or falls, as the size grows.
Needs the `report` extra (matplotlib).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gpusplit
from gpusplit.documents.report import Source, render, report
from gpusplit.synthetic import write_tiny_model

MAX_PLAN_DEVICES = 64  # the plan document's schema: devices has at most 64 entries


def seconds(work: Callable[[], Any], runs: int) -> float:
    work()  # matplotlib's first figure and the caches, unmeasured
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def plan_document(folder: Path) -> dict[str, Any]:
    model = folder / "dense-f16.gguf"
    write_tiny_model(model, "dense-f16")
    planned = gpusplit.plan(model, gpusplit.detect_devices(gpus=["2x24GiB"]))
    return gpusplit.document(planned)


def with_devices(doc: dict[str, Any], n: int) -> dict[str, Any]:
    card = doc["devices"][0]
    return dict(doc, devices=[dict(card, name=f"GPU{i}", index=i) for i in range(n)])


def bench_line(i: int) -> str:
    record = {
        "schema": "gpusplit.bench/2", "status": "ok",
        "model": {"name": "m", "path": "m.gguf", "architecture": "llama", "file_type": None, "total_bytes": 1, "params": 1},
        "config": {"mode": "auto", "split": "auto", "ngl": None, "ctx": None, "kv": "f16", "fa": False},
        "config_key": f"mode=layer,split={i}", "split_mode": "layer", "n_gpu_layers": 0, "backend": "CPU",
        "test": "tg4", "test_kind": "tg", "n_tokens": 4, "depth": 0, "repetitions": 3,
        "samples_ts": [9.0 + i % 7, 10.0 + i % 7, 11.0 + i % 7], "avg_ts": 10.0 + i % 7, "stddev_ts": 1.0,
        "predicted_ts": 12.0, "predicted_basis": "assumed", "prediction_error_pct": None, "roofline_share": None,
        "devices": [], "error": None, "log_tail": [], "build": {}, "inventory": [], "gpusplit_version": "0.1.0",
        "timestamp": "2026-12-07T00:00:00Z", "engine_params": None,
    }  # fmt: skip
    return json.dumps(record) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        doc = plan_document(folder)
        for n in args.sizes:
            many = with_devices(doc, n)
            page = seconds(lambda many=many: render([Source("plan.json", "plan", doc=many)]), args.runs)
            whole = None
            if n <= MAX_PLAN_DEVICES:
                path = folder / f"plan{n}.json"
                path.write_text(json.dumps(many))
                whole = seconds(lambda path=path: report([path]), args.runs)
            rows.append((f"plan, {n:,} devices", n, page, whole))
        for n in args.sizes:
            path = folder / f"bench{n}.jsonl"
            path.write_text("".join(bench_line(i) for i in range(n)))
            whole = seconds(lambda path=path: report([path]), args.runs)
            rows.append((f"bench, {n:,} records", n, None, whole))
    print(f"`python benchmarks/report_scale.py --sizes {' '.join(map(str, args.sizes))} --runs {args.runs}` "
          f"on {platform.processor() or platform.machine()}, Python {platform.python_version()}\n")  # fmt: skip
    print("| case | page (s) | report (s) | ms per device or record |")
    print("|---|---:|---:|---:|")
    for name, n, page, whole in rows:
        per = (page if page is not None else whole or 0.0) / n * 1e3  # a plan's by its page: every size has one
        shown = [f"{t:.3f}" if t is not None else "-" for t in (page, whole)]
        print(f"| {name} | {shown[0]} | {shown[1]} | {per:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
