"""`gpusplit run MODEL`: load with the planned split, generate, and show what really happened."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Optional

import msgspec
import typer

from ..base.files import NotRegularError, open_regular_fd
from . import output
from .errors import CLIError
from .lazy import lazy_module
from .options import (
    AllowCtxOverflow,
    Batch,
    CpuBandwidth,
    Ctx,
    DeviceOptions,
    DevicesFile,
    FlashAttn,
    Gpu,
    KvType,
    KvTypeK,
    KvTypeV,
    Lora,
    MainGpu,
    Mode,
    Model,
    NCpuMoe,
    Ngl,
    NoRepack,
    Parallel,
    Ram,
    Reserve,
    Rpc,
    Split,
    Spread,
    SwaFull,
    Threads,
    Timeout,
    Ubatch,
    finite,
    local_model,
    plan_from,
    request_from,
)  # fmt: skip

if TYPE_CHECKING:
    from .. import api
    from ..documents import models, render
    from ..documents.models import PlanDoc, RunDevice, RunDoc
    from ..jobs.runner import RunResult
    from ..planning.planner import Plan
else:
    api = lazy_module("gpusplit.api")
    models, render = lazy_module("gpusplit.documents.models"), lazy_module("gpusplit.documents.render")

MAX_PROMPT_BYTES = 1024 * 1024
# the plan's reasons said before a run: llama.cpp runs something other than what was asked
TENSOR_PARALLEL_REASONS = frozenset({"row-as-tensor", "tensor-flash-attn", "tensor-kv-f16"})


PlanFile = Annotated[
    Optional[str], typer.Option("--plan", help="Run the plan saved by `gpusplit plan --json` instead of planning.")
]
Prompt = Annotated[Optional[str], typer.Option("--prompt", "-p", help="Prompt text (default 'Once upon a time').")]
PromptFile = Annotated[Optional[str], typer.Option("--prompt-file", help="Read the prompt from a file (at most 1 MiB).")]
NPredict = Annotated[int, typer.Option("--n-predict", "-n", min=1, max=1 << 20, help="Tokens to generate.")]
Temperature = Annotated[
    float,
    typer.Option("--temp", min=0.0, max=100.0, callback=finite, help="Temperature; 0 (the default) is greedy and reproducible."),
]
Seed = Annotated[int, typer.Option("--seed", min=0, max=2**32 - 1, help="Sampling seed (with --temp > 0).")]
RunTimeout = Annotated[
    Optional[float], typer.Option("--run-timeout", min=1, callback=finite, help="Stop the engine after this many seconds.")
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show llama.cpp's log on stderr.")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print one JSON document (schema gpusplit.run/3) at the end.")]


def run(
    model: Model = None,
    gpu: Gpu = None,
    devices_file: DevicesFile = None,
    rpc: Rpc = None,
    timeout: Timeout = 3.0,
    ctx: Ctx = None,
    batch: Batch = 512,
    ubatch: Ubatch = 512,
    parallel: Parallel = 1,
    kv_type: KvType = None,
    kv_type_k: KvTypeK = None,
    kv_type_v: KvTypeV = None,
    flash_attn: FlashAttn = False,
    swa_full: SwaFull = True,
    ngl: Ngl = None,
    mode: Mode = None,
    split: Split = None,
    main_gpu: MainGpu = None,
    n_cpu_moe: NCpuMoe = None,
    lora: Lora = None,
    spread: Spread = False,
    reserve: Reserve = None,
    ram: Ram = None,
    cpu_bandwidth: CpuBandwidth = None,
    allow_ctx_overflow: AllowCtxOverflow = False,
    no_repack: NoRepack = False,
    plan_file: PlanFile = None,
    prompt: Prompt = None,
    prompt_file: PromptFile = None,
    n_predict: NPredict = 64,
    temp: Temperature = 0.0,
    seed: Seed = 0,
    threads: Threads = None,
    run_timeout: RunTimeout = None,
    verbose: Verbose = False,
    json_output: JsonOutput = False,
) -> int:
    """Load the model with the planned split, generate, then show timings and planned vs actual memory."""
    text = _prompt(prompt, prompt_file)
    model = local_model(model, "run")
    if plan_file:
        planned = _saved_plan(plan_file, model, threads, no_repack)
    else:
        request = request_from(
            ctx=ctx, batch=batch, ubatch=ubatch, parallel=parallel, kv_type=kv_type, kv_type_k=kv_type_k, kv_type_v=kv_type_v,
            flash_attn=flash_attn, swa_full=swa_full, ngl=ngl, mode=mode, split=split, main_gpu=main_gpu, n_cpu_moe=n_cpu_moe,
            spread=spread, reserve=reserve, cpu_bandwidth=cpu_bandwidth, allow_ctx_overflow=allow_ctx_overflow, lora=lora,
            no_repack=no_repack, threads=threads,
        )  # fmt: skip
        devices = DeviceOptions(tuple(gpu or ()), devices_file, tuple(rpc or ()), timeout, ram)
        planned = plan_from(model, devices, request, runnable="run")
    _say_before_the_run(msgspec.convert(render.plan_document(planned), models.PlanDoc))
    result = _generate(planned, text, n_predict, temp, seed, run_timeout, stream=not json_output, verbose=verbose)
    doc = render.run_document(result)
    typed = msgspec.convert(doc, models.RunDoc)  # what is printed is what --json says, read by its type
    if typed.recovery is not None:
        output.warn(typed.recovery.message)
    busy = render.contended_warning([result.contention], "run")
    if busy is not None:
        output.warn(busy.text)
    if json_output:
        output.emit_json(doc)
    else:
        print_run(typed)
    return 0


def _saved_plan(plan_file: str, model: str | None, threads: int | None, no_repack: bool) -> Plan:
    """The plan `plan --json` saved, for this MODEL if one is given, with --threads and --no-repack."""
    saved = api.load_plan_document(plan_file)
    saved_model = saved.engine_params.model_path
    if model and os.path.abspath(model) != os.path.abspath(saved_model):
        raise CLIError(f"the plan is for {saved_model}, not {model}", "drop MODEL or plan again")
    planned = api.plan_from_document(saved, changes={"n_threads": threads} if threads else None)
    return api.without_repack(planned) if no_repack else planned


def _say_before_the_run(doc: PlanDoc) -> None:
    """The plan's warnings, and the reasons that say llama.cpp runs something other than was asked."""
    for warning in doc.warnings:
        output.warn(warning.text)
    for reason in doc.reasons:
        if reason.code in TENSOR_PARALLEL_REASONS:
            output.message(reason.text)


def _generate(
    planned: Plan, text: str, n_predict: int, temp: float, seed: int, run_timeout: float | None, *, stream: bool, verbose: bool
) -> RunResult:
    """The run, its tokens streamed to stdout (unless --json) after a load progress bar (on a terminal)."""
    progress = output.LoadProgress() if output.stderr_is_terminal() and not verbose else None

    def on_token(piece: str) -> None:
        if progress is not None:
            progress.close()
        output.stream_text(piece)

    try:
        result = api.run(
            planned,
            prompt=text,
            n_predict=n_predict,
            temperature=temp,
            seed=seed,
            timeout=run_timeout,
            on_token=on_token if stream else None,
            on_progress=progress.update if progress is not None else None,
            on_log=output.log_line if verbose else None,
        )
    finally:
        if progress is not None:
            progress.close()
    if stream:
        output.stream_text("\n")
    return result


def _prompt(prompt: str | None, prompt_file: str | None) -> str:
    if prompt is not None and prompt_file is not None:
        raise CLIError("--prompt and --prompt-file both give the prompt", "use one of them")
    if prompt_file is None:
        if prompt is not None and not prompt.strip():
            raise CLIError("--prompt is empty", "give some text to continue")
        return api.DEFAULT_PROMPT if prompt is None else prompt
    try:
        with os.fdopen(open_regular_fd(prompt_file), "rb") as f:  # a FIFO or a device is refused, never waited on
            data = f.read(MAX_PROMPT_BYTES + 1)
    except NotRegularError as exc:
        raise CLIError(f"--prompt-file {prompt_file} is {exc.kind}, not a file", "give a text file") from None
    except FileNotFoundError:
        raise CLIError(f"--prompt-file {prompt_file}: no such file", "check the path") from None
    except OSError as exc:
        raise CLIError(f"--prompt-file {prompt_file}: {exc.strerror or exc}") from None
    if len(data) > MAX_PROMPT_BYTES:
        raise CLIError(f"--prompt-file {prompt_file} is larger than 1 MiB", "shorten the prompt")
    text = data.decode("utf-8", errors="replace")
    if not text.strip():
        raise CLIError(f"--prompt-file {prompt_file} is empty", "give some text to continue")
    return text


def print_run(doc: RunDoc) -> None:
    """What the run did: timings against the prediction, then memory planned against allocated."""
    _print_timings(doc)
    fb = output.format_bytes
    grouped = [d.name for d in doc.devices if d.actual_source == "group"]
    output.print_table(
        "memory: planned / actual (llama.cpp's buffers)",
        ["device", "weights", "KV", "compute", "planned", "actual", "planned - actual"],
        [
            (
                d.name + (" *" if d.actual_source == "group" else ""),
                f"{fb(d.planned.weights)} / {fb(d.actual.weights)}",
                f"{fb(d.planned.kv)} / {fb(d.actual.kv)}",
                f"{fb(d.planned.compute)} / {fb(d.actual.compute)}",
                fb(d.planned_bytes),
                fb(d.actual_bytes),
                ("+" if d.diff_bytes >= 0 else "-")
                + fb(abs(d.diff_bytes))
                + (f" ({100 * d.diff_bytes / d.actual_bytes:+.1f}%)" if d.actual_bytes else ""),
            )
            for d in doc.devices
        ],
        right=("planned", "actual", "planned - actual"),
    )
    _print_nvml(doc.devices)
    host = doc.host_weights
    names = list(dict.fromkeys([*host.planned, *host.actual]))  # llama.cpp's buffer names, the mapped file first
    if len(names) > 1:
        # the host's weights, buffer by buffer: the copies llama.cpp makes beside the mapped file
        output.message(
            "host weights by llama.cpp buffer, planned / actual: "
            + ", ".join(f"{n} {fb(host.planned.get(n, 0))} / {fb(host.actual.get(n, 0))}" for n in names)
        )
    if grouped:
        output.message(
            f"* {', '.join(grouped)}: llama.cpp's tensor parallelism logs the group as one Meta() figure per buffer, "
            "the largest device's share; each device shows that figure"
        )


def _print_timings(doc: RunDoc) -> None:
    t, p = doc.timings, doc.predicted

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    def error(value: float | None) -> str:
        return "-" if value is None else f"{value:+.0f}%"

    busy = " busy" if doc.contention is not None and doc.contention.contended else ""
    load = f"{t.load_ms:.0f} ms" + (f" (uploads predicted {p.load_s * 1000:.0f} ms)" if p.load_s else "")
    output.print_table(
        f"timings (split mode {doc.split_mode}); predicted {p.basis}",
        ["load", "prompt tokens", "prompt t/s", "predicted", "error", "generated", "gen t/s", "predicted", "error", "first token"],
        [(load, str(t.prompt_tokens), num(t.prompt_tps, ".1f") + busy, num(p.prompt_tps, ".1f"), error(p.prompt_error_pct),
          str(t.gen_tokens), gen_text(t) + busy, num(p.gen_tps, ".1f"), error(p.gen_error_pct),
          f"{num(t.ttft_ms, '.0f')} ms")],
        right=("load", "prompt tokens", "prompt t/s", "predicted", "error", "generated", "gen t/s", "first token"),
    )  # fmt: skip


def gen_text(t: models.Timings) -> str:
    """'52.3 ± 4.1 %': generation's tokens/s and its 95 % interval's half width, from each token's
    decode time (then how many tokens were set aside as outliers)."""
    if t.gen_tps is None:
        return "-"
    text = f"{t.gen_tps:.1f}"
    if t.gen_interval_tps is not None:
        low, high = t.gen_interval_tps
        text += f" ± {100 * (high - low) / (high + low):.1f} %"
    if t.gen_outliers:
        text += f" ({t.gen_outliers} token{'s' if t.gen_outliers > 1 else ''} set aside)"
    return text


def _print_nvml(devices: list[RunDevice]) -> None:
    """Where NVML saw the run add memory: planned (with the driver's context) against it."""
    fb = output.format_bytes
    rows = []
    for d in devices:
        used = d.nvml_used_delta_bytes
        if used:
            total = d.planned_bytes + d.planned_runtime_bytes
            rows.append((d.name, fb(total), fb(d.planned_runtime_bytes), fb(used), f"{100 * (total - used) / used:+.1f}%"))
    if rows:
        output.print_table(
            "memory: planned with the driver's context / NVML's used memory (what the run added)",
            ["device", "planned", "of it runtime", "NVML", "planned vs NVML"],
            rows,
            right=("planned", "of it runtime", "NVML", "planned vs NVML"),
        )
