"""`gpusplit run MODEL`: load with the planned split, generate, and show what really happened."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from . import output
from .errors import CLIError
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

MAX_PROMPT_BYTES = 1024 * 1024
# the plan's reasons said before a run: llama.cpp runs something other than what was asked
TENSOR_PARALLEL_REASONS = frozenset({"row-as-tensor", "tensor-flash-attn", "tensor-kv-f16"})


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
    plan_file: Annotated[
        Optional[str], typer.Option("--plan", help="Run the plan saved by `gpusplit plan --json` instead of planning.")
    ] = None,
    prompt: Annotated[Optional[str], typer.Option("--prompt", "-p", help="Prompt text (default 'Once upon a time').")] = None,
    prompt_file: Annotated[
        Optional[str], typer.Option("--prompt-file", help="Read the prompt from a file (at most 1 MiB).")
    ] = None,
    n_predict: Annotated[int, typer.Option("--n-predict", "-n", min=1, max=1 << 20, help="Tokens to generate.")] = 64,
    temp: Annotated[
        float,
        typer.Option(
            "--temp", min=0.0, max=100.0, callback=finite, help="Temperature; 0 (the default) is greedy and reproducible."
        ),
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", min=0, max=2**32 - 1, help="Sampling seed (with --temp > 0).")] = 0,
    threads: Threads = None,
    run_timeout: Annotated[
        Optional[float], typer.Option("--run-timeout", min=1, callback=finite, help="Stop the engine after this many seconds.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show llama.cpp's log on stderr.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (schema gpusplit.run/1) at the end.")
    ] = False,
) -> int:
    """Load the model with the planned split, generate, then show timings and planned vs actual memory."""
    from .. import api
    from ..documents.render import plan_document, run_document

    text = _prompt(prompt, prompt_file)
    model = local_model(model, "run")
    if plan_file:
        saved = api.load_plan_document(plan_file)
        saved_model = saved.engine_params.model_path
        if model and os.path.abspath(model) != os.path.abspath(saved_model):
            raise CLIError(f"the plan is for {saved_model}, not {model}", "drop MODEL or plan again")
        planned = api.plan_from_document(saved, changes={"n_threads": threads} if threads else None)
        if no_repack:
            planned = api.without_repack(planned)
    else:
        request = request_from(
            ctx=ctx, batch=batch, ubatch=ubatch, parallel=parallel, kv_type=kv_type, kv_type_k=kv_type_k, kv_type_v=kv_type_v,
            flash_attn=flash_attn, swa_full=swa_full, ngl=ngl, mode=mode, split=split, main_gpu=main_gpu, n_cpu_moe=n_cpu_moe,
            spread=spread, reserve=reserve, cpu_bandwidth=cpu_bandwidth, allow_ctx_overflow=allow_ctx_overflow, lora=lora,
            no_repack=no_repack, threads=threads,
        )  # fmt: skip
        devices = DeviceOptions(tuple(gpu or ()), devices_file, tuple(rpc or ()), timeout, ram)
        planned = plan_from(model, devices, request, runnable="run")
    doc = plan_document(planned)
    for warning in doc["warnings"]:
        output.warn(warning["text"])
    for reason in doc["reasons"]:
        if reason["code"] in TENSOR_PARALLEL_REASONS:
            output.message(reason["text"])

    stream = not json_output
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
    run_doc = run_document(result)
    if stream:
        output.stream_text("\n")
    if run_doc["recovery"]:
        output.warn(run_doc["recovery"]["message"])
    if json_output:
        output.emit_json(run_doc)
    else:
        print_run(run_doc)
    return 0


def _prompt(prompt: str | None, prompt_file: str | None) -> str:
    from ..api import DEFAULT_PROMPT

    if prompt is not None and prompt_file is not None:
        raise CLIError("--prompt and --prompt-file both give the prompt", "use one of them")
    if prompt_file is None:
        if prompt is not None and not prompt.strip():
            raise CLIError("--prompt is empty", "give some text to continue")
        return DEFAULT_PROMPT if prompt is None else prompt
    path = Path(prompt_file)
    if path.is_dir():
        raise CLIError(f"--prompt-file {prompt_file} is a directory", "give a text file")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_PROMPT_BYTES + 1)
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


def print_run(doc: dict[str, Any]) -> None:
    t = doc["timings"]
    p = doc["predicted"]

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    def error(value: float | None) -> str:
        return "-" if value is None else f"{value:+.0f}%"

    output.print_table(
        f"timings (split mode {doc['split_mode']}); predicted {p['basis']}",
        ["load", "prompt tokens", "prompt t/s", "predicted", "error", "generated", "gen t/s", "predicted", "error", "first token"],
        [(f"{t['load_ms']:.0f} ms" + (f" (uploads predicted {p['load_s'] * 1000:.0f} ms)" if p.get("load_s") else ""), str(t["prompt_tokens"]), num(t["prompt_tps"], ".1f"), num(p["prompt_tps"], ".1f"),
          error(p["prompt_error_pct"]), str(t["gen_tokens"]), num(t["gen_tps"], ".1f"), num(p["gen_tps"], ".1f"),
          error(p["gen_error_pct"]), f"{num(t['ttft_ms'], '.0f')} ms")],
        right=("load", "prompt tokens", "prompt t/s", "predicted", "error", "generated", "gen t/s", "first token"),
    )  # fmt: skip
    fb = output.format_bytes
    rows = []
    grouped = []
    for d in doc["devices"]:
        diff = d["diff_bytes"]
        pct = f" ({100 * diff / d['actual_bytes']:+.1f}%)" if d["actual_bytes"] else ""
        name = d["name"]
        if d["actual_source"] == "group":
            grouped.append(name)
            name += " *"
        rows.append(
            (
                name,
                f"{fb(d['planned']['weights'])} / {fb(d['actual']['weights'])}",
                f"{fb(d['planned']['kv'])} / {fb(d['actual']['kv'])}",
                f"{fb(d['planned']['compute'])} / {fb(d['actual']['compute'])}",
                fb(d["planned_bytes"]),
                fb(d["actual_bytes"]),
                ("+" if diff >= 0 else "-") + fb(abs(diff)) + pct,
            )
        )
    output.print_table(
        "memory: planned / actual (llama.cpp's buffers)",
        ["device", "weights", "KV", "compute", "planned", "actual", "planned - actual"],
        rows,
        right=("planned", "actual", "planned - actual"),
    )
    nvml_rows = []
    for d in doc["devices"]:
        used = d.get("nvml_used_delta_bytes")
        if used:
            total = d["planned_bytes"] + d["planned_runtime_bytes"]
            nvml_rows.append(
                (d["name"], fb(total), fb(d["planned_runtime_bytes"]), fb(used), f"{100 * (total - used) / used:+.1f}%")
            )
    if nvml_rows:
        output.print_table(
            "memory: planned with the driver's context / NVML's used memory (what the run added)",
            ["device", "planned", "of it runtime", "NVML", "planned vs NVML"],
            nvml_rows,
            right=("planned", "of it runtime", "NVML", "planned vs NVML"),
        )
    host = doc["host_weights"]
    names = list(dict.fromkeys([*host["planned"], *host["actual"]]))  # llama.cpp's buffer names, the mapped file first
    if len(names) > 1:
        # the host's weights, buffer by buffer: the copies llama.cpp makes beside the mapped file
        output.message(
            "host weights by llama.cpp buffer, planned / actual: "
            + ", ".join(f"{n} {fb(host['planned'].get(n, 0))} / {fb(host['actual'].get(n, 0))}" for n in names)
        )
    if grouped:
        output.message(
            f"* {', '.join(grouped)}: llama.cpp's tensor parallelism logs the group as one Meta() figure per buffer, "
            "the largest device's share; each device shows that figure"
        )
