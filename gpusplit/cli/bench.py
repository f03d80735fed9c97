"""`gpusplit bench MODEL`: llama-bench-style numbers for a matrix of splits, modes and settings."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from .. import __version__
from . import output
from .errors import EXIT_RUNTIME, CLIError, Interrupted
from .options import Model, Rpc, Timeout

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
        Optional[List[int]], typer.Option("--flash-attn", "-fa", help="Flash attention values to try: 0, 1 (repeatable).")
    ] = None,
    n_prompt: Annotated[
        Optional[List[int]], typer.Option("--n-prompt", "-p", help="Prompt tests: tokens per batch (default 512).")
    ] = None,
    n_gen: Annotated[Optional[List[int]], typer.Option("--n-gen", "-n", help="Generation tests: tokens (default 128).")] = None,
    depth: Annotated[
        Optional[List[int]], typer.Option("--depth", "-d", help="Run the tests after this many tokens of context (default 0).")
    ] = None,
    repetitions: Annotated[
        int, typer.Option("--repetitions", "-r", min=1, max=1000, help="Repetitions per test, after one warm-up.")
    ] = 5,
    threads: Annotated[
        Optional[int], typer.Option("--threads", "-t", min=1, max=1024, help="CPU threads (default: all cores).")
    ] = None,
    output_format: Annotated[
        str, typer.Option("--output-format", "-o", help="Table format on stdout: md, csv, json or jsonl.")
    ] = "md",
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
        float, typer.Option("--config-timeout", min=1, help="Seconds before a configuration is stopped and marked failed.")
    ] = 1800,
) -> int:
    """Benchmark prompt processing and generation over a matrix of splits and settings."""
    if output_format not in FORMATS:
        raise CLIError(f"--output-format {output_format!r} is not one of {', '.join(FORMATS)}", "use md, csv, json or jsonl")
    if compare_files:
        return _compare(compare_files, output_format)
    from ..bench import append_record, done_keys, matrix, read_records, tests_for
    from ..devices.rpc import parse_endpoints
    from ..engine import REINSTALL_HINT, EngineError, engine_available

    if not engine_available():
        raise EngineError("the llama.cpp engine (llama-cpp-python) is not installed", REINSTALL_HINT)
    if resume and output_file and os.path.abspath(resume) != os.path.abspath(output_file):
        raise CLIError("--resume and --output name different files", "--resume FILE appends to FILE; drop --output")
    target = Path(resume or output_file) if (resume or output_file) else None
    if target is not None:
        _check_writable(target)
    previous = read_records(Path(resume)) if resume else []
    skip = done_keys(previous)

    modes = mode or ["auto"]
    for m in modes:
        if m not in ("auto", "none", "layer", "row", "tensor"):
            raise CLIError(f"--mode {m!r} is not a split mode", "use auto, none, layer, row or tensor")
    splits = split or ["auto"]
    for s in splits:
        if s != "auto":
            from .planning import parse_split

            parse_split(s)
    kvs = [k.lower() for k in (kv_type or ["f16"])]
    fas = [bool(v) for v in (flash_attn or [0])]
    tests = tests_for(n_prompt or [512], n_gen or [128], depth or [0])
    if not tests:
        raise CLIError("no tests: -p and -n are all 0", "use -p 512 and/or -n 128")
    configs = matrix(modes, splits, list(ngl or [None]), list(ctx or [None]), kvs, fas)
    endpoints = parse_endpoints(rpc or [])
    from .models import resolve_model

    model_path = resolve_model(model)
    from .models import require_local

    require_local(model_path, "bench")
    from ..gguf.model import read_model

    info = read_model(model_path)
    if not info.complete:
        raise CLIError(f"{output.sanitize(model_path)} holds only a header (its tensor data is missing), so it cannot run")
    model_doc = {"name": info.name, "path": info.path, "architecture": info.architecture, "file_type": info.file_type,
                 "total_bytes": info.total_bytes, "params": info.n_params}  # fmt: skip
    from ..devices.inventory import detect

    inventory = detect(endpoints, rpc_timeout=timeout)
    inventory_doc = [d.as_dict() for d in inventory.devices]
    needed = max(t.n + t.depth for t in tests)

    records: list[dict[str, Any]] = list(previous)
    started = time.monotonic()
    total = len(configs)
    try:
        for k, config in enumerate(configs, 1):
            pending = [t for t in tests if (config.key(), t.name) not in skip]
            if not pending:
                continue
            eta = ""
            if k > 1:
                per = (time.monotonic() - started) / (k - 1)
                eta = f", ETA {per * (total - k + 1):.0f} s"
            output.message(f"bench: configuration {k} of {total}: {config.key()}{eta}")
            new = _run_config(
                config, pending, model_path, endpoints, timeout, needed, repetitions, threads, config_timeout, model_doc, inventory_doc,
            )  # fmt: skip
            records.extend(new)
            if target is not None:
                try:
                    for r in new:
                        append_record(target, r)
                except OSError as exc:
                    _emit(records, output_format)
                    raise CLIError(
                        f"cannot write results to {target}: {exc.strerror or exc}; stopped after {k} of {total} configurations",
                        "every finished row is printed above; free space and use --resume",
                        EXIT_RUNTIME,
                    ) from None
    except (KeyboardInterrupt, Interrupted):
        _emit(records, output_format)  # what finished is on stdout too, not only in the file
        raise
    _emit(records, output_format)
    return EXIT_RUNTIME if any(r["status"] != "ok" for r in records) else 0


def _run_config(
    config, tests, model_path, endpoints, timeout, needed, repetitions, threads, config_timeout, model_doc, inventory_doc
):
    """One configuration in its own engine child; a failure becomes failed records."""
    from ..bench import record
    from ..devices.rpc import RPCError
    from ..engine import EngineError
    from ..engine.child import EngineCrash, run_task
    from ..engine.logparse import parse_buffers
    from ..gguf.errors import GGUFError
    from ..planner import PlanError
    from ..report import plan_document
    from .planning import build_plan

    common = {
        "model": model_doc,
        "config": config,
        "version": __version__,
        "inventory": inventory_doc,
        "repetitions": repetitions,
    }
    try:
        ctx = config.ctx or max(256, -(-needed // 256) * 256)
        plan, _ = build_plan(
            model=model_path,
            rpc=endpoints,
            timeout=timeout,
            ctx=ctx,
            kv_type=config.kv,
            flash_attn=config.fa,
            ngl=config.ngl,
            mode=None if config.mode == "auto" else config.mode,
            split=None if config.split == "auto" else config.split,
            allow_ctx_overflow=True,
        )
        doc = plan_document(plan)
    except (CLIError, PlanError, GGUFError, EngineError, RPCError, ValueError) as exc:
        message = getattr(exc, "message", str(exc))
        return [record(test=t, samples=None, error=f"plan: {message}", **common) for t in tests]
    if not doc["fits"]:
        return [record(test=t, samples=None, error="the plan does not fit these devices", plan=doc, **common) for t in tests]
    params = dict(doc["engine_params"])
    params["n_threads"] = threads or os.cpu_count() or 1
    from .run import rpc_names

    buffer_names = rpc_names(doc)
    try:
        result, log = run_task(
            "bench",
            {"params": params, "tests": [t.as_dict() for t in tests], "repetitions": repetitions},
            timeout=config_timeout,
        )
    except EngineCrash as exc:
        return [record(test=t, samples=None, error=exc.message, log_tail=exc.log_tail, plan=doc, **common) for t in tests]
    except EngineError as exc:
        return [record(test=t, samples=None, error=exc.message, plan=doc, **common) for t in tests]
    actual = parse_buffers(log, buffer_names).by_device
    by_name = {r["test"]: r["samples_ts"] for r in result["results"]}
    return [
        record(test=t, samples=by_name.get(t.name), plan=doc, actual=actual, build=result.get("build"), **common) for t in tests
    ]


def _check_writable(path: Path) -> None:
    if path.is_dir():
        raise CLIError(f"{path} is a directory", "give a file name for the JSONL results")
    try:
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise CLIError(f"cannot write results to {path}: {exc.strerror or exc}", "choose a writable --output") from None


def _emit(records: list[dict[str, Any]], fmt: str) -> None:
    from ..bench import render_csv, render_md

    if fmt == "json":
        output.emit_json(records)
    elif fmt == "jsonl":
        for r in records:
            output.emit_jsonl(r)
    elif fmt == "csv":
        sys.stdout.write(render_csv(records))
    else:
        sys.stdout.write(render_md(records))
    sys.stdout.flush()


def _compare(files: list[str], fmt: str) -> int:
    from ..bench import compare, read_records

    if len(files) != 2:
        raise CLIError("--compare takes exactly two files", "gpusplit bench --compare a.jsonl --compare b.jsonl")
    a, b = (read_records(Path(f)) for f in files)
    for name, records in zip(files, (a, b)):
        if not records:
            raise CLIError(f"{name}: no gpusplit.bench/1 records", "give files written by gpusplit bench --output")
    rows = list(compare(a, b))
    if fmt in ("json", "jsonl"):
        output.emit_json({"schema": "gpusplit.bench-compare/1", "a": files[0], "b": files[1], "rows": rows})
        return 0
    output.print_table(
        f"{files[1]} vs {files[0]}",
        ["configuration", "test", "a t/s", "b t/s", "b / a"],
        (
            (r["config"], r["test"], f"{r['a_ts']:.2f}", f"{r['b_ts']:.2f}", "-" if r["ratio"] is None else f"{r['ratio']:.3f}")
            for r in rows
        ),
        right=("a t/s", "b t/s", "b / a"),
    )
    return 0
