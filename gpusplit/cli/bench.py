"""`gpusplit bench MODEL`: llama-bench-style numbers for a matrix of splits, modes and settings."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, List, Optional

import msgspec
import typer

from . import output
from .errors import EXIT_RUNTIME, EXIT_SLOWER, CLIError, Interrupted
from .lazy import lazy_module
from .options import Model, NoRepack, Rpc, Threads, Timeout, finite, local_model, request_from, resolve_model

if TYPE_CHECKING:
    from .. import api
    from ..base import contention, stats
    from ..documents import models, render
    from ..documents import results as result_files
    from ..documents.models import BenchRecord
else:
    api = lazy_module("gpusplit.api")
    models, render = lazy_module("gpusplit.documents.models"), lazy_module("gpusplit.documents.render")
    result_files = lazy_module("gpusplit.documents.results")
    contention, stats = lazy_module("gpusplit.base.contention"), lazy_module("gpusplit.base.stats")

FORMATS = ("md", "csv", "json", "jsonl")


ModeList = Annotated[
    Optional[List[str]], typer.Option("--mode", "-sm", help="Split modes to try (repeatable): auto, none, layer, row, tensor.")
]
SplitList = Annotated[
    Optional[List[str]], typer.Option("--split", "-ts", help="Splits to try (repeatable): auto (the plan's) or 0.7,0.3.")
]
NglList = Annotated[
    Optional[List[int]], typer.Option("--ngl", "-ngl", help="n_gpu_layers values to try (repeatable; default: the plan's).")
]
CtxList = Annotated[
    Optional[List[int]], typer.Option("--ctx", "-c", help="Context sizes to try (default: enough for the tests).")
]
KvTypeList = Annotated[Optional[List[str]], typer.Option("--kv-type", help="KV cache types to try (repeatable).")]
FlashAttnList = Annotated[
    Optional[List[int]],
    typer.Option("--flash-attn", "-fa", min=0, max=1, help="Flash attention values to try: 0, 1 (repeatable)."),
]
NPrompt = Annotated[
    Optional[List[int]], typer.Option("--n-prompt", "-p", min=0, help="Prompt tests: tokens per batch (default 512).")
]
NGen = Annotated[Optional[List[int]], typer.Option("--n-gen", "-n", min=0, help="Generation tests: tokens (default 128).")]
Depth = Annotated[
    Optional[List[int]], typer.Option("--depth", "-d", min=0, help="Run the tests after this many tokens of context (default 0).")
]
Parallel = Annotated[
    Optional[List[int]],
    typer.Option(
        "--parallel",
        "-np",
        min=1,
        max=256,
        help="Generation tests with N sequences decoded together (repeatable: 1, 2, 4, 8), as llama-server's busy "
        "slots and llama-batched-bench: each after its own --depth tokens of prompt, t/s all of them together.",
    ),
]
Repetitions = Annotated[
    int, typer.Option("--repetitions", "-r", min=1, max=1000, help="Repetitions per test, after one warm-up.")
]
OutputFormat = Annotated[str, typer.Option("--output-format", "-o", help="Table format on stdout: md, csv, json or jsonl.")]
JsonOutput = Annotated[
    bool, typer.Option("--json", help="Print one JSON document (an array of gpusplit.bench/3 records): -o json.")
]
PlanFile = Annotated[
    Optional[str],
    typer.Option("--plan", metavar="FILE", help="Run a saved plan (plan --json, tune --output) as it is, as one configuration."),
]
OutputFile = Annotated[Optional[str], typer.Option("--output", help="Append every result to this JSONL file as it finishes.")]
Resume = Annotated[
    Optional[str], typer.Option("--resume", help="Skip the configurations already in this JSONL file, append the rest to it.")
]
CompareFiles = Annotated[
    Optional[List[str]],
    typer.Option(
        "--compare",
        help="Compare two result files: --compare a.jsonl --compare b.jsonl; a file with several runs of a row "
        "(benches appended to it) is judged over its runs.",
    ),
]
FailSlower = Annotated[
    Optional[float],
    typer.Option(
        "--fail-slower",
        metavar="PCT",
        min=0,
        max=100,
        callback=finite,
        help="With --compare: exit 4 when a row of the second file is slower than the first's by more than PCT "
        "percent beyond both sides' noise (95 % intervals over their runs, or one run's repetitions); a row measured "
        "beside other work "
        "is judged too, and said to be.",
    ),
]
ConfigTimeout = Annotated[
    float,
    typer.Option("--config-timeout", min=1, callback=finite, help="Seconds before a configuration is stopped and marked failed."),
]


def bench(
    model: Model = None,
    rpc: Rpc = None,
    timeout: Timeout = 3.0,
    mode: ModeList = None,
    split: SplitList = None,
    ngl: NglList = None,
    ctx: CtxList = None,
    kv_type: KvTypeList = None,
    flash_attn: FlashAttnList = None,
    n_prompt: NPrompt = None,
    n_gen: NGen = None,
    depth: Depth = None,
    parallel: Parallel = None,
    repetitions: Repetitions = 5,
    threads: Threads = None,
    no_repack: NoRepack = False,
    output_format: OutputFormat = "md",
    json_output: JsonOutput = False,
    plan_file: PlanFile = None,
    output_file: OutputFile = None,
    resume: Resume = None,
    compare_files: CompareFiles = None,
    fail_slower: FailSlower = None,
    config_timeout: ConfigTimeout = 1800,
) -> int:
    """Benchmark prompt processing and generation over a matrix of splits and settings."""
    output_format = _format(output_format, json_output)
    if compare_files:
        return _compare(compare_files, output_format, fail_slower)
    if fail_slower is not None:
        raise CLIError("--fail-slower gates a comparison", "give it with --compare base.jsonl --compare new.jsonl")
    results = _Results(_results_file(resume, output_file), result_files.read_records(Path(resume)) if resume else [])
    model = local_model(model, "bench")
    doc = api.load_plan_document(plan_file) if plan_file else None
    if doc is not None and (mode or split or ngl or ctx or kv_type or flash_attn or rpc):
        raise CLIError(
            "--plan fixes the configuration", "drop --mode/--split/--ngl/--ctx/--kv-type/--flash-attn/--rpc, or drop --plan"
        )
    matrix = api.Matrix(
        modes=tuple(mode or ["auto"]),
        splits=tuple(split or ["auto"]),
        ngls=tuple(ngl or [None]),
        ctxs=tuple(ctx or [None]),
        kv_types=tuple(kv_type or ["f16"]),
        flash_attn=tuple(bool(v) for v in (flash_attn or [0])),
    )
    rows = api.bench(
        doc.engine_params.model_path if doc is not None else resolve_model(model),
        request_from(threads=threads, no_repack=no_repack),
        matrix=matrix,
        tests=api.Tests(tuple(n_prompt or [512]), tuple(n_gen or [128]), tuple(depth or [0]), tuple(parallel or [1])),
        rpc=tuple(rpc or ()),
        timeout=timeout,
        repetitions=repetitions,
        config_timeout=config_timeout,
        skip=result_files.done_keys(results.previous),
        on_config=results.announce,
        saved_plan=doc,
    )
    try:
        results.collect(render.bench_records(rows))
    except (KeyboardInterrupt, Interrupted, CLIError):
        _emit(results.records, output_format)  # what finished is on stdout too, not only in the file
        _warn_contended(results.records)
        raise
    _emit(results.records, output_format)
    _warn_contended(results.records)
    return EXIT_RUNTIME if any(r["status"] != "ok" for r in results.records) else 0


def _warn_contended(records: list[dict[str, Any]]) -> None:
    """One line for the whole bench when any row was measured while other work took CPU time it
    needed: how many, the worst one's disturbance, and the fix."""
    seen = [contention.Contention.from_dict(r["contention"]) if r.get("contention") else None for r in records
            if r["status"] == "ok"]  # fmt: skip
    warning = render.contended_warning(seen, "row")
    if warning is not None:
        output.warn(warning.text)


def _format(output_format: str, json_output: bool) -> str:
    if json_output:
        if output_format not in ("md", "json"):
            raise CLIError(f"--json and -o {output_format} ask for two formats", "give one of them")
        return "json"
    if output_format not in FORMATS:
        raise CLIError(f"--output-format {output_format!r} is not one of {', '.join(FORMATS)}", "use md, csv, json or jsonl")
    return output_format


def _results_file(resume: str | None, output_file: str | None) -> Path | None:
    """The JSONL file results are appended to, checked to be one (never someone else's file)."""
    if resume and output_file and os.path.abspath(resume) != os.path.abspath(output_file):
        raise CLIError("--resume and --output name different files", "--resume FILE appends to FILE; drop --output")
    named = resume or output_file
    if not named:
        return None
    target = Path(named)
    result_files.check_results_file(target, "resume_file" if resume else "results_file")
    _check_writable(target)
    return target


class _Results:
    """The records so far (a resumed file's first), each configuration's appended to the results
    file before the next one starts: nothing finished is lost to a crash or Ctrl-C."""

    def __init__(self, target: Path | None, previous: list[dict[str, Any]]) -> None:
        self.target = target
        self.previous = previous
        self.records: list[dict[str, Any]] = list(previous)
        self.unsaved: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self.warned: set[str] = set()

    def save(self) -> None:
        if self.target is not None:
            try:
                for record in self.unsaved:
                    result_files.append_record(self.target, record)
            except OSError as exc:
                done = len(self.records) - len(self.previous)
                raise CLIError(
                    f"cannot write results to {self.target}: {exc.strerror or exc}; stopped after {done} results",
                    "every finished row is printed above; free space and use --resume",
                    EXIT_RUNTIME,
                ) from None
        self.unsaved.clear()

    def announce(self, k: int, total: int, key: str) -> None:
        self.save()
        eta = ""
        if k > 1:
            eta = f", ETA {(time.monotonic() - self.started) / (k - 1) * (total - k + 1):.0f} s"
        output.message(f"bench: configuration {k} of {total}: {key}{eta}")

    def collect(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self.records.append(record)
            self.unsaved.append(record)
            recovery = record.get("recovery")
            if recovery and recovery["message"] not in self.warned:
                # once: the later configurations run with --no-repack and carry the same recovery
                self.warned.add(recovery["message"])
                output.warn(f"{record['config_key']}: {recovery['message']}; the later configurations run with it too")
        self.save()


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


def _varying(records: list[BenchRecord]) -> list[str]:
    keys = ["mode", "split", "ctx", "kv", "fa"]
    return [k for k in keys if len({getattr(r.config, k) for r in records}) > 1]


def _memory(r: BenchRecord) -> str:
    parts = []
    for d in r.devices:
        actual = "?" if d.actual_bytes is None else f"{d.actual_bytes / 2**20:.0f}"
        mark = "*" if d.actual_source == "group" else ""
        parts.append(f"{d.name} {d.planned_bytes / 2**20:.0f}/{actual}{mark}")
    return "; ".join(parts)


def _md_rows(records: list[BenchRecord]) -> tuple[list[str], list[list[str]]]:
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
        m = r.model
        if r.status == "ok":
            ts = ts_text(r)
        else:
            ts = "FAILED: " + (r.error or "unknown")[:80]
        pred = "-" if r.predicted_ts is None else f"{r.predicted_ts:.2f}"
        share = "-" if r.prediction_error_pct is None else f"{r.prediction_error_pct:+.0f}%"
        ngl = "-" if r.n_gpu_layers is None else str(r.n_gpu_layers)
        settings = [str(getattr(r.config, k)) if k != "fa" else str(int(r.config.fa)) for k in varying]
        size, params = output.format_bytes(m.total_bytes), output.format_count(m.params)
        rows.append([m.name, size, params, r.backend, ngl, *settings, r.test, ts, pred, share, _memory(r)])
    return header, rows


def ts_text(r: BenchRecord) -> str:
    """'123.40 ± 1.7 %': the mean with outliers set aside and its 95 % interval's half width (none
    for one repetition), then how many repetitions were set aside, and `busy` where other work took
    CPU time the test needed."""
    summary = stats.summarize(r.samples_ts) if r.samples_ts else None
    half = None if summary is None else summary.half_width_pct
    text = f"{r.mean_ts or 0:.2f}" + ("" if half is None else f" ± {half:.1f} %")
    if r.outliers_ts:
        text += f" ({len(r.outliers_ts)} outlier{'s' if len(r.outliers_ts) > 1 else ''} set aside)"
    return text + (" busy" if r.contention is not None and r.contention.contended else "")


CSV_HEADER = [
    "model", "size_bytes", "params", "backend", "n_gpu_layers", "mode", "split", "ctx", "kv", "fa", "test", "status",
    "avg_ts", "stddev_ts", "samples_ts", "predicted_ts", "prediction_error_pct", "predicted_basis", "error",
    "mean_ts", "interval_low_ts", "interval_high_ts", "outliers_ts", "contended",
]  # fmt: skip


def _csv_rows(records: list[BenchRecord]) -> list[list[object]]:
    rows: list[list[object]] = []
    for r in records:
        c = r.config
        low, high = r.interval_ts or (None, None)
        # contended: empty where nothing was watched (GPUSPLIT_CONTENTION=ignore, an older record)
        busy = "" if r.contention is None else str(r.contention.contended).lower()
        rows.append([
            r.model.name, r.model.total_bytes, r.model.params, r.backend, r.n_gpu_layers, c.mode, c.split, c.ctx, c.kv,
            int(c.fa), r.test, r.status, r.avg_ts, r.stddev_ts, " ".join(str(s) for s in r.samples_ts), r.predicted_ts,
            r.prediction_error_pct, r.predicted_basis, r.error or "", r.mean_ts, low, high,
            " ".join(str(s) for s in r.outliers_ts), busy,
        ])  # fmt: skip
    return rows


def _emit(records: list[dict[str, Any]], fmt: str) -> None:
    """The records on stdout: as they are (json, jsonl), or read by their type into a table."""
    if fmt == "json":
        output.emit_json(records)
        return
    if fmt == "jsonl":
        for r in records:
            output.emit_jsonl(r)
        return
    typed = [msgspec.convert(r, models.BenchRecord) for r in records]
    if fmt == "csv":
        output.csv_table(CSV_HEADER, _csv_rows(typed))
        return
    header, rows = _md_rows(typed)
    output.markdown_table(header, rows, right=("t/s", "predicted t/s", "error"))
    if any(d.actual_source == "group" for r in typed for d in r.devices):
        output.message("* tensor mode: llama.cpp logs the device group as one Meta() figure, the largest device's share")


def _compare(files: list[str], fmt: str, fail_slower: float | None = None) -> int:
    if len(files) != 2:
        raise CLIError("--compare takes exactly two files", "gpusplit bench --compare a.jsonl --compare b.jsonl")
    a, b = (result_files.read_records(Path(f)) for f in files)
    for name, records in zip(files, (a, b)):
        if not records:
            raise CLIError(f"{name}: no gpusplit bench records", "give files written by gpusplit bench --output")
    rows = list(result_files.compare(a, b, files[0], files[1]))
    lost = result_files.lost(a, b)
    if fmt in ("json", "jsonl"):
        output.emit_json(render.compare_document(files[0], files[1], rows))
    else:
        # Markdown: what a terminal reads and a CI step summary ($GITHUB_STEP_SUMMARY) renders
        output.line(f"{files[1]} against {files[0]}")
        output.line()
        output.markdown_table(
            ["configuration", "test", "a t/s", "b t/s", "runs", "change", "95 % interval", "b is", "measured"],
            [[r["config"], r["test"], f"{r['a_ts']:.2f}", f"{r['b_ts']:.2f}", f"{r['a_runs']}/{r['b_runs']}",
              f"{r['change_pct']:+.1f} %", _interval_text(r), change_text(r), "busy" if r["contended"] else ""]
             for r in rows],
            right=("a t/s", "b t/s", "runs", "change", "95 % interval"),
        )  # fmt: skip
    busy = sum(1 for r in rows if r["contended"])
    if busy:
        output.warn(
            f"{busy} of {len(rows)} compared rows were measured, in one file or both, while other work took CPU time "
            "they needed (marked busy): their changes may be the neighbours', not the code's; measure them again on "
            f"an idle machine, or set {contention.ENV}=ignore when benchmarking to accept it"
        )
    failed = [result_files.failed_runs(records) for records in (a, b)]
    if any(failed):
        output.warn(f"failed runs left out of the comparison: {failed[0]} in {files[0]}, {failed[1]} in {files[1]}")
    for config, test in lost:
        # a configuration that no longer runs is the worst regression: the gate counts it
        output.warn(f"{config} {test}: measured in {files[0]}, failed every run in {files[1]}")
    if fail_slower is None:
        return 0
    blind = sum(1 for r in rows if r["change_high_pct"] is None)
    if blind:
        output.warn(
            f"{blind} of {len(rows)} rows have no interval to judge them by: one run of one repetition, or too few "
            "runs for how far apart they are (bench -r 3 or more, and 3 runs or more a side)"
        )
    single = result_files.single_runs(rows)
    if single:
        # one run's repetitions agree within a few percent where runs minutes apart differ by tens
        output.warn(
            f"{single} of {len(rows)} rows have one run on a side: their interval cannot see how far runs drift "
            "apart, so the gate may fire on drift alone; append 3 or more benches (--output) to each file"
        )
    slower = result_files.regressions(rows, fail_slower)
    for r in slower:
        # judged all the same: a gate that passed whenever the runner was busy would let a slowdown through
        output.warn(
            f"{r['config']} {r['test']}: {-r['change_pct']:.1f} % slower (at least {-r['change_high_pct']:.1f} % "
            f"beyond the noise), over --fail-slower {fail_slower:g} %"
            + ("; measured beside other work (busy): confirm it on an idle machine" if r["contended"] else "")
        )
    return EXIT_SLOWER if slower or lost else 0


def _interval_text(row: dict[str, Any]) -> str:
    low, high = row["change_low_pct"], row["change_high_pct"]
    return "-" if low is None or high is None else f"{low:+.1f} .. {high:+.1f} %"


def change_text(row: dict[str, Any]) -> str:
    """'12.3 % faster', '4.0 % slower' (only where the intervals separate), or 'the same within noise'."""
    if row["verdict"] == "same":
        return "the same within noise"
    return f"{abs(row['change_pct']):.1f} % {row['verdict']}"
