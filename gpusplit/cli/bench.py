"""`gpusplit bench MODEL`: llama-bench-style numbers for a matrix of splits, modes and settings."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from . import output
from .errors import EXIT_RUNTIME, CLIError, Interrupted
from .options import Model, NoRepack, Rpc, Threads, Timeout, finite, local_model, request_from, resolve_model

FORMATS = ("md", "csv", "json", "jsonl")


def bench(
    model: Model = None,
    rpc: Rpc = None,
    timeout: Timeout = 3.0,
    mode: Annotated[
        Optional[List[str]],
        typer.Option("--mode", "-sm", help="Split modes to try (repeatable): auto, none, layer, row, tensor."),
    ] = None,
    split: Annotated[
        Optional[List[str]], typer.Option("--split", "-ts", help="Splits to try (repeatable): auto (the plan's) or 0.7,0.3.")
    ] = None,
    ngl: Annotated[
        Optional[List[int]], typer.Option("--ngl", "-ngl", help="n_gpu_layers values to try (repeatable; default: the plan's).")
    ] = None,
    ctx: Annotated[
        Optional[List[int]], typer.Option("--ctx", "-c", help="Context sizes to try (default: enough for the tests).")
    ] = None,
    kv_type: Annotated[Optional[List[str]], typer.Option("--kv-type", help="KV cache types to try (repeatable).")] = None,
    flash_attn: Annotated[
        Optional[List[int]],
        typer.Option("--flash-attn", "-fa", min=0, max=1, help="Flash attention values to try: 0, 1 (repeatable)."),
    ] = None,
    n_prompt: Annotated[
        Optional[List[int]], typer.Option("--n-prompt", "-p", min=0, help="Prompt tests: tokens per batch (default 512).")
    ] = None,
    n_gen: Annotated[
        Optional[List[int]], typer.Option("--n-gen", "-n", min=0, help="Generation tests: tokens (default 128).")
    ] = None,
    depth: Annotated[
        Optional[List[int]],
        typer.Option("--depth", "-d", min=0, help="Run the tests after this many tokens of context (default 0)."),
    ] = None,
    repetitions: Annotated[
        int, typer.Option("--repetitions", "-r", min=1, max=1000, help="Repetitions per test, after one warm-up.")
    ] = 5,
    threads: Threads = None,
    no_repack: NoRepack = False,
    output_format: Annotated[
        str, typer.Option("--output-format", "-o", help="Table format on stdout: md, csv, json or jsonl.")
    ] = "md",
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (an array of gpusplit.bench/1 records): -o json.")
    ] = False,
    plan_file: Annotated[
        Optional[str],
        typer.Option(
            "--plan", metavar="FILE", help="Run a saved plan (plan --json, tune --output) as it is, as one configuration."
        ),
    ] = None,
    output_file: Annotated[
        Optional[str], typer.Option("--output", help="Append every result to this JSONL file as it finishes.")
    ] = None,
    resume: Annotated[
        Optional[str], typer.Option("--resume", help="Skip the configurations already in this JSONL file, append the rest to it.")
    ] = None,
    compare_files: Annotated[
        Optional[List[str]], typer.Option("--compare", help="Compare two result files: --compare a.jsonl --compare b.jsonl.")
    ] = None,
    config_timeout: Annotated[
        float,
        typer.Option(
            "--config-timeout", min=1, callback=finite, help="Seconds before a configuration is stopped and marked failed."
        ),
    ] = 1800,
) -> int:
    """Benchmark prompt processing and generation over a matrix of splits and settings."""
    from .. import api
    from ..documents.results import append_record, check_results_file, done_keys, read_records

    if json_output:
        if output_format not in ("md", "json"):
            raise CLIError(f"--json and -o {output_format} ask for two formats", "give one of them")
        output_format = "json"
    if output_format not in FORMATS:
        raise CLIError(f"--output-format {output_format!r} is not one of {', '.join(FORMATS)}", "use md, csv, json or jsonl")
    if compare_files:
        return _compare(compare_files, output_format)
    if resume and output_file and os.path.abspath(resume) != os.path.abspath(output_file):
        raise CLIError("--resume and --output name different files", "--resume FILE appends to FILE; drop --output")
    target = Path(resume or output_file) if (resume or output_file) else None
    if target is not None:
        check_results_file(target, "resume_file" if resume else "results_file")  # never append to someone else's file
        _check_writable(target)
    previous = read_records(Path(resume)) if resume else []
    model = local_model(model, "bench")
    started = time.monotonic()
    records: list[dict[str, Any]] = list(previous)
    unsaved: list[dict[str, Any]] = []

    def save() -> None:
        """Append the finished configuration's records before the next one starts."""
        if target is not None:
            try:
                for record in unsaved:
                    append_record(target, record)
            except OSError as exc:
                raise CLIError(
                    f"cannot write results to {target}: {exc.strerror or exc}; stopped after {len(records) - len(previous)} results",
                    "every finished row is printed above; free space and use --resume",
                    EXIT_RUNTIME,
                ) from None
        unsaved.clear()

    def announce(k: int, total: int, key: str) -> None:
        save()
        eta = ""
        if k > 1:
            eta = f", ETA {(time.monotonic() - started) / (k - 1) * (total - k + 1):.0f} s"
        output.message(f"bench: configuration {k} of {total}: {key}{eta}")

    doc = api.load_plan_document(plan_file) if plan_file else None
    if doc is not None and (mode or split or ngl or ctx or kv_type or flash_attn or rpc):
        raise CLIError(
            "--plan fixes the configuration", "drop --mode/--split/--ngl/--ctx/--kv-type/--flash-attn/--rpc, or drop --plan"
        )
    request = request_from(threads=threads, no_repack=no_repack)
    matrix = api.Matrix(
        modes=tuple(mode or ["auto"]),
        splits=tuple(split or ["auto"]),
        ngls=tuple(ngl or [None]),
        ctxs=tuple(ctx or [None]),
        kv_types=tuple(kv_type or ["f16"]),
        flash_attn=tuple(bool(v) for v in (flash_attn or [0])),
    )
    tests = api.Tests(tuple(n_prompt or [512]), tuple(n_gen or [128]), tuple(depth or [0]))
    rows = api.bench(
        doc.engine_params.model_path if doc is not None else resolve_model(model),
        request,
        matrix=matrix,
        tests=tests,
        rpc=tuple(rpc or ()),
        timeout=timeout,
        repetitions=repetitions,
        config_timeout=config_timeout,
        skip=done_keys(previous),
        on_config=announce,
        saved_plan=doc,
    )
    from ..documents.render import bench_records

    warned: set[str] = set()
    try:
        for record in bench_records(rows):
            records.append(record)
            unsaved.append(record)
            if record.get("recovery") and record["recovery"]["message"] not in warned:
                # once: the later configurations run with --no-repack and carry the same recovery
                warned.add(record["recovery"]["message"])
                output.warn(f"{record['config_key']}: {record['recovery']['message']}; the later configurations run with it too")
        save()
    except (KeyboardInterrupt, Interrupted, CLIError):
        _emit(records, output_format)  # what finished is on stdout too, not only in the file
        raise
    _emit(records, output_format)
    return EXIT_RUNTIME if any(r["status"] != "ok" for r in records) else 0


def _check_writable(path: Path) -> None:
    if path.is_dir():
        raise CLIError(f"{path} is a directory", "give a file name for the JSONL results")
    try:
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise CLIError(f"cannot write results to {path}: {exc.strerror or exc}", "choose a writable --output") from None


# ---------------------------------------------------------------------------------------------
# Tables (llama-bench's columns, plus predicted speed and planned/actual memory per device)


def _varying(records: list[dict[str, Any]]) -> list[str]:
    keys = ["mode", "split", "ctx", "kv", "fa"]
    return [k for k in keys if len({json.dumps(r["config"][k]) for r in records}) > 1]


def _memory(r: dict[str, Any]) -> str:
    parts = []
    for d in r["devices"]:
        actual = "?" if d["actual_bytes"] is None else f"{d['actual_bytes'] / 2**20:.0f}"
        mark = "*" if d.get("actual_source") == "group" else ""
        parts.append(f"{d['name']} {d['planned_bytes'] / 2**20:.0f}/{actual}{mark}")
    return "; ".join(parts)


def _md_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
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
        "error",
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
        share = "-" if r["prediction_error_pct"] is None else f"{r['prediction_error_pct']:+.0f}%"
        ngl = "-" if r["n_gpu_layers"] is None else str(r["n_gpu_layers"])
        settings = [str(r["config"][k]) if k != "fa" else str(int(r["config"][k])) for k in varying]
        size, params = output.format_bytes(m["total_bytes"]), output.format_count(m["params"])
        rows.append([m["name"], size, params, r["backend"], ngl, *settings, r["test"], ts, pred, share, _memory(r)])
    return header, rows


CSV_HEADER = [
    "model", "size_bytes", "params", "backend", "n_gpu_layers", "mode", "split", "ctx", "kv", "fa", "test", "status",
    "avg_ts", "stddev_ts", "samples_ts", "predicted_ts", "prediction_error_pct", "predicted_basis", "error",
]  # fmt: skip


def _csv_rows(records: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for r in records:
        c = r["config"]
        rows.append([
            r["model"]["name"], r["model"]["total_bytes"], r["model"]["params"], r["backend"], r["n_gpu_layers"], c["mode"], c["split"],
            c["ctx"], c["kv"], int(c["fa"]), r["test"], r["status"], r["avg_ts"], r["stddev_ts"],
            " ".join(str(s) for s in r["samples_ts"]), r["predicted_ts"], r["prediction_error_pct"], r["predicted_basis"], r["error"] or "",
        ])  # fmt: skip
    return rows


def _emit(records: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        output.emit_json(records)
    elif fmt == "jsonl":
        for r in records:
            output.emit_jsonl(r)
    elif fmt == "csv":
        output.csv_table(CSV_HEADER, _csv_rows(records))
    else:
        header, rows = _md_rows(records)
        output.markdown_table(header, rows, right=("t/s", "predicted t/s", "error"))
        if any(d.get("actual_source") == "group" for r in records for d in r["devices"]):
            output.message("* tensor mode: llama.cpp logs the device group as one Meta() figure, the largest device's share")


def _compare(files: list[str], fmt: str) -> int:
    from ..documents.render import compare_document
    from ..documents.results import compare, read_records

    if len(files) != 2:
        raise CLIError("--compare takes exactly two files", "gpusplit bench --compare a.jsonl --compare b.jsonl")
    a, b = (read_records(Path(f)) for f in files)
    for name, records in zip(files, (a, b)):
        if not records:
            raise CLIError(f"{name}: no gpusplit.bench/1 records", "give files written by gpusplit bench --output")
    rows = list(compare(a, b))
    if fmt in ("json", "jsonl"):
        output.emit_json(compare_document(files[0], files[1], rows))
        return 0
    output.print_table(
        f"{files[1]} vs {files[0]}",
        ["configuration", "test", "a t/s", "b t/s", "b / a", "b is"],
        (
            (r["config"], r["test"], f"{r['a_ts']:.2f}", f"{r['b_ts']:.2f}", "-" if r["ratio"] is None else f"{r['ratio']:.3f}",
             change_text(r["ratio"]))
            for r in rows
        ),
        right=("a t/s", "b t/s", "b / a"),
    )  # fmt: skip
    return 0


def change_text(ratio: float | None, same_within: float = 0.005) -> str:
    """'12.3 % faster', '4.0 % slower', or 'the same' (within half a percent)."""
    if ratio is None:
        return "-"
    change = (ratio - 1) * 100
    if abs(change) < same_within * 100:
        return "the same"
    return f"{abs(change):.1f} % {'faster' if change > 0 else 'slower'}"
