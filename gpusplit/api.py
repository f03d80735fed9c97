"""The library face of gpusplit: what the CLI itself calls, and what scripts import. Each call is a
few lines over the module that does the work (sources, devices, planning, the jobs, the
documents); `document(obj)` turns any result into its JSON document.

    import gpusplit

    model = gpusplit.read_model("model.gguf")
    devices = gpusplit.detect_devices(rpc=["127.0.0.1:50052", "127.0.0.1:50053"])
    plan = gpusplit.plan(model, devices, gpusplit.Request(n_ctx=4096))
    print(gpusplit.document(plan)["llama_args"])
    result = gpusplit.run(plan, prompt="Once upon a time", n_predict=32)
    print(result.text, result.timings.gen_tps)
    for row in gpusplit.bench("model.gguf", rpc=["127.0.0.1:50052"], matrix=gpusplit.Matrix(modes=("layer", "tensor"))):
        print(row.config.key(), row.test.name, row.mean_ts)

Every failure is a `gpusplit.GpusplitError` with a one-line `message` and a `hint`, in the
library's terms (a parameter by its name: `n_ctx`, `tensor_split`); `InputError` is wrong input.
Nothing here prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .base.errors import GpusplitError, InputError
from .base.files import check_folder, write_whole
from .base.reasons import Reason
from .base.units import format_bytes, parse_duration, parse_rate, parse_size, parse_sizes
from .devices.cpu import default_threads
from .devices.device import is_hypothetical
from .devices.inventory import Inventory
from .devices.rpc import is_loopback
from .devices.rpc import probe as probe_worker
from .documents.models import PlanDoc
from .documents.read import load_plan_document, plan_from_document, read_devices_file
from .documents.render import document_of
from .documents.report import check_replaceable
from .documents.report import report as make_report  # matplotlib, the report extra, only when it draws
from .documents.results import append_trial, check_trials_file, read_trials
from .engine import REINSTALL_RPC_HINT, EngineError, require_engine
from .engine.detect import detect_devices as detect_here
from .engine.detect import with_ram
from .engine.registry import supports_rpc
from .engine.worker import WorkerPlan, check_port, choose_devices, default_cache_dir, serve
from .gguf.model import ModelInfo
from .jobs.bench import BenchRow
from .jobs.bench import bench as run_bench
from .jobs.matrix import Matrix, Tests
from .jobs.probe import probe_devices as probe_here
from .jobs.runner import RunResult, generate
from .jobs.runner import measure as measure_plan
from .jobs.tune import Trial, TuneResult, tune_model
from .planning.launch import engine_params
from .planning.planner import Plan
from .planning.planner import without_repack as plan_without_repack
from .planning.prepare import plan as make_plan
from .planning.prepare import read_adapter, require_complete
from .planning.request import DEFAULT, Request, kv_type, split_mode, split_shares
from .sources import default_projector, download, is_remote, source_of
from .sources import read_model as read_from
from .synthetic import demo_model_path as demo_path

__all__ = [
    "DEFAULT_PROMPT", "Matrix", "Reason", "Request", "Tests", "bench", "default_threads", "demo_model_path", "detect_devices",
    "document", "download_model", "format_bytes", "is_hypothetical", "is_remote", "kv_type", "load_plan_document",
    "model_projector", "parse_duration", "parse_rate", "parse_size", "parse_sizes", "plan", "plan_from_document",
    "probe_devices", "read_adapter", "read_model", "report", "require_complete", "run", "serve_worker", "source_of",
    "split_mode", "split_shares", "tune", "without_repack", "write_report",
]  # fmt: skip

DEFAULT_PROMPT = "Once upon a time"


# ---------------------------------------------------------------------------------------------
# Models


def read_model(
    location: str | os.PathLike[str],
    on_fetch: Callable[[int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> ModelInfo:
    """Read a GGUF model's header: a file, the first shard of a split model, an http(s) URL, or a
    model name (hf://OWNER/REPO[:QUANT|/file.gguf][@REV], ollama://[REGISTRY/][NS/]MODEL[:TAG])
    (range requests; `on_fetch(bytes_so_far)` reports progress, `on_note` what a name resolved
    to). Reads no tensor data."""
    return read_from(location, on_fetch, on_note)


def model_projector(name: str) -> str | None:
    """The projector an ollama:// model's manifest carries (Ollama loads it with the model): its
    blob URL, for `Request(mmproj=...)`; None for anything else."""
    return default_projector(name)


def download_model(name: str, on_progress: Callable[[int, int], None] | None = None) -> str:
    """A hf:// or ollama:// model on disk (huggingface_hub's cache, or gpusplit's for Ollama):
    the local path of its first file, for `run` and `bench`."""
    return download(name, on_progress)


def demo_model_path() -> str:
    """The built-in demo model (a small real model, generated into the cache on first use)."""
    return str(demo_path())


# ---------------------------------------------------------------------------------------------
# Devices


def detect_devices(
    *,
    rpc: Sequence[str] | None = None,
    gpus: Sequence[str] | None = None,
    devices_file: str | os.PathLike[str] | None = None,
    timeout: float = 3.0,
    ram: int | str | None = None,
    threads: int | None = None,
) -> Inventory:
    """The devices to plan for, in llama.cpp's order, and the host: what llama.cpp would use here
    (its device registry when the engine is installed, NVML, and the `rpc` workers as "host:port"),
    hypothetical cards (`gpus`: "24GiB", "RTX 4090", "16GiB@448GB/s", "2xA100-80GB"), or a saved
    `gpusplit devices --json` document (`devices_file`). `ram` replaces the host's free memory.
    Devices measured by `probe_devices` carry their speed (the CPU's at `threads`, default all cores)."""
    if gpus and devices_file:
        raise InputError("{p.gpus} and {p.devices_file} both describe the devices", "give one of them", parameter="gpus")
    if devices_file:
        return with_ram(read_devices_file(devices_file), ram)
    return detect_here(rpc=rpc, gpus=gpus, timeout=timeout, ram=ram, threads=threads)


def probe_devices(
    *,
    rpc: Sequence[str] | None = None,
    timeout: float = 3.0,
    request: Request | None = None,
    on_step: Callable[[int, int, str], None] | None = None,
) -> Inventory:
    """Measure what llama.cpp achieves on every device here (the CPU at the request's `n_threads`,
    each GPU, each `rpc` worker; with its `no_repack`, the CPU's weights uncopied), cache the
    figures and return the inventory carrying them: plans made later predict speed from them.
    Needs the engine; tens of seconds."""
    request = request or DEFAULT
    return probe_here(rpc=rpc, timeout=timeout, threads=request.n_threads, on_step=on_step, no_repack=request.no_repack)


# ---------------------------------------------------------------------------------------------
# Planning


def plan(
    model: ModelInfo | str | os.PathLike[str],
    devices: Inventory | None = None,
    request: Request | None = None,
    *,
    measure: bool = False,
) -> Plan:
    """How to split `model` over `devices` (default: `detect_devices()`) as `request` asks (see
    `Request`): bytes per device, the strategy, the best context, a fit score and llama.cpp's
    parameters. With `measure`, compute buffers, the fit, the best context and the score come
    from llama.cpp's dry run on the real devices (needs the engine)."""
    planned = make_plan(model, devices, request or DEFAULT)
    if measure:
        if is_hypothetical(planned.devices):
            raise InputError(
                "{p.measure} needs the real devices", "plan for the devices here, or without {p.measure}", parameter="measure"
            )
        require_complete(planned.model, "be measured")  # llama.cpp checks that the tensor data is there
        require_engine()
        planned = measure_plan(planned)
    return planned


def without_repack(plan: Plan, why: Reason | None = None) -> Plan:
    """The same plan loaded with llama.cpp's --no-repack (no AMX / CPU_REPACK copies of the host's
    weights); `why` joins its reasons."""
    return plan_without_repack(plan, why)


# ---------------------------------------------------------------------------------------------
# Documents


def document(result: Any, **context: Any) -> dict[str, Any]:
    """The JSON document of a result: a Plan (`gpusplit.plan/2`), a RunResult (`gpusplit.run/3`),
    a BenchRow (`gpusplit.bench/3`), an Inventory (`gpusplit.devices/2`), a ModelInfo
    (`gpusplit.inspect/1`) or a TuneResult (`gpusplit.tune/3`, given `objective` and `budget_s`):
    what the CLI prints with --json."""
    return document_of(result, **context)


# ---------------------------------------------------------------------------------------------
# Running


def run(
    plan: Plan | PlanDoc | dict[str, Any],
    *,
    prompt: str = DEFAULT_PROMPT,
    n_predict: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
    timeout: float | None = None,
    on_token: Callable[[str], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
    on_log: Callable[[str], None] | None = None,
) -> RunResult:
    """Load the planned model with the plan's split (and its request's threads) in an engine child
    process and generate.

    `plan` is a Plan or a saved `gpusplit.plan` document. `on_token` receives text as it is
    generated, `on_progress` the load progress (0-1), `on_log` llama.cpp's log lines.
    `document(result)` is the `gpusplit.run/3` document; `result.contention` says what other work
    took of the CPUs meanwhile, `result.timings.token_ms` each generated token's decode.
    """
    if not prompt or not prompt.strip():
        raise InputError("{p.prompt} is empty", "give some text to continue", parameter="prompt")
    if not isinstance(plan, Plan):
        plan = plan_from_document(plan)  # its configuration, on the devices here now
    require_complete(plan.model, "run")
    if is_hypothetical(plan.devices):
        raise InputError(
            "this plan is for hypothetical devices ({p.gpus})", "plan against the real devices to run", parameter="saved_plan"
        )
    if not plan.best.fits:
        raise GpusplitError(
            "the plan does not fit these devices",
            "the plan's figures say where; lower {p.n_ctx}, quantize the KV cache ({p.type_k} q8_0), or add devices",
        )
    require_engine()
    for endpoint in dict.fromkeys(d.endpoint for d in plan.devices if d.endpoint):
        probe_worker(endpoint)  # a dead worker must fail here, not abort llama.cpp
    params = engine_params(plan).with_(seed=seed, n_threads=plan.request.n_threads or default_threads())
    return generate(plan, params, prompt, n_predict, temperature, on_token, on_progress, on_log, timeout)


def bench(
    model: str | os.PathLike[str],
    request: Request | None = None,
    *,
    matrix: Matrix | None = None,
    tests: Tests | None = None,
    rpc: Sequence[str] = (),
    timeout: float = 3.0,
    repetitions: int = 5,
    config_timeout: float = 1800.0,
    skip: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
    on_config: Callable[[int, int, str], None] | None = None,
    saved_plan: Plan | PlanDoc | dict[str, Any] | None = None,
) -> Iterator[BenchRow]:
    """llama-bench's tests over a matrix of configurations, each the `request` with the matrix's
    fields changed (jobs/bench.py), one BenchRow per (configuration, test) as each configuration
    finishes; `document(row)` is its `gpusplit.bench/1` record. `saved_plan` (a Plan, or a saved
    `gpusplit.plan` document) runs that one configuration as it was planned."""
    if saved_plan is not None and not isinstance(saved_plan, Plan):
        saved_plan = plan_from_document(saved_plan)  # on the devices it names (its own RPC workers)
    return run_bench(
        model, request or DEFAULT, matrix=matrix or Matrix(), tests=tests or Tests(), rpc=rpc, timeout=timeout, repetitions=repetitions,
        config_timeout=config_timeout, skip=skip, on_config=on_config, saved_plan=saved_plan,
    )  # fmt: skip


def tune(
    model: ModelInfo | str | os.PathLike[str],
    devices: Inventory | None = None,
    request: Request | None = None,
    *,
    objective: str = "tg",
    budget: float | str = 120.0,
    trials_file: str | os.PathLike[str] | None = None,
    resume: bool = False,
    on_trial: Callable[[Trial], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    min_user_tps: float | None = None,
) -> TuneResult:
    """The fastest configuration that fits, found by measurement within `budget` seconds
    (`objective`: tg, pp or mixed; with `request.users` N, the generation of N users together, each
    at least `min_user_tps` tokens/s), every move the `request` with one field changed; its `.plan`
    is the winner (jobs/tune.py). Each trial is appended to `trials_file` (JSONL) as it ends; with
    `resume` the trials already there are not run again."""
    request = request or DEFAULT
    path = Path(trials_file) if trials_file is not None else None
    if path is not None:
        check_trials_file(path, "resume_file" if resume else "trials_file")  # never append to someone else's file
    previous = read_trials(path, request) if path is not None and resume else []

    def record(trial: Trial) -> None:
        if path is not None:
            append_trial(path, trial)
        if on_trial is not None:
            on_trial(trial)

    return tune_model(model, devices, request, objective=objective, budget=budget, previous=previous, on_trial=record,
                      should_stop=should_stop, min_user_tps=min_user_tps)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Reports


def report(
    files: Sequence[str | os.PathLike[str]], *, on_warning: Callable[[str], None] | None = None, generated_by: str = ""
) -> str:
    """One self-contained HTML page (a string) from gpusplit's outputs: bench JSONL or --json, tune
    --trials JSONL or --json, plan/run/devices --json files, in any mix (gpusplit/report.py). A
    file that cannot be read goes to `on_warning` and is left out; nothing readable is an
    InputError, and so is a missing matplotlib (the `report` extra)."""
    return make_report(files, on_warning or (lambda text: None), generated_by)


def write_report(
    files: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    on_warning: Callable[[str], None] | None = None,
    generated_by: str = "",
) -> int:
    """`report`'s page written to `out` (whole or not at all), its size returned. A file at `out`
    that is not a page report wrote is refused before any work (ForeignFileError): a mistyped
    name must not replace a results file."""
    path = Path(out)
    check_replaceable(path)
    check_folder(path, "out")  # a missing folder is said before the page is drawn, not after
    page = report(files, on_warning=on_warning, generated_by=generated_by)
    return write_whole(path, page.encode("utf-8"), "out")


# ---------------------------------------------------------------------------------------------
# Workers


def serve_worker(
    host: str = "127.0.0.1",
    port: int = 50052,
    *,
    devices: Sequence[str] = (),
    threads: int | None = None,
    allow_remote: bool = False,
    cache: bool | str | os.PathLike[str] = False,
    on_warning: Callable[[str], None] | None = None,
    on_started: Callable[[str], None] | None = None,
) -> None:
    """Serve this machine's devices (by ggml name; default every GPU, else the CPU) over llama.cpp's
    RPC protocol until SIGINT/SIGTERM. The protocol has no authentication: a non-loopback `host`
    needs `allow_remote`. `on_started` receives a line describing what is served. With `cache`
    (True: llama.cpp's own folder, which `ggml-rpc-server -c` uses; or a folder), weights over
    10 MiB are kept on disk here as they arrive, and a later load of the same weights reads them
    from there instead of the link."""
    if not is_loopback(host) and not allow_remote:
        raise InputError(
            "{p.host} {host} is not a loopback address and the RPC protocol has no authentication",
            "set {p.allow_remote} on a trusted network, or keep the default 127.0.0.1",
            parameter="host",
            host=host,
        )
    require_engine()
    if not supports_rpc():
        raise EngineError("the installed llama-cpp-python was built without RPC", REINSTALL_RPC_HINT)
    if not is_loopback(host) and on_warning is not None:
        on_warning(f"serving on {host}: anyone who can reach port {port} can use these devices (no authentication)")
    chosen = choose_devices(list(devices))
    check_port(host, port)
    cache_dir = None
    if cache:
        cache_dir = default_cache_dir() if cache is True else Path(cache).expanduser()
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                "cannot use {folder} as the weight cache: {why}",
                "give another {p.cache_dir}",
                parameter="cache_dir",
                folder=str(cache_dir),
                why=exc.strerror or str(exc),
            ) from None
    worker = WorkerPlan(f"{host}:{port}", chosen, threads or default_threads(), cache_dir)
    listing = ", ".join(f"{d.name} ({d.description}, {format_bytes(d.free_bytes)} free)" for d in chosen)
    caching = f", caching weights in {cache_dir}" if cache_dir is not None else ""

    def started() -> None:
        if on_started is not None:
            on_started(f"worker serving {listing} on {worker.endpoint} with {worker.threads} threads{caching}; Ctrl-C stops it")

    if serve(worker, on_started=started) != 0:
        raise EngineError("the RPC server on {endpoint} stopped unexpectedly", endpoint=worker.endpoint)
