"""`gpusplit run MODEL`: load with the planned split, generate, and show what really happened."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from . import output
from .errors import EXIT_RUNTIME, CLIError
from .options import (
    PLAN_OPTIONS,
    AllowCtxOverflow,
    Batch,
    CpuBandwidth,
    Ctx,
    DevicesFile,
    FlashAttn,
    Gpu,
    KvType,
    KvTypeK,
    KvTypeV,
    MainGpu,
    Mode,
    Model,
    NCpuMoe,
    Ngl,
    Parallel,
    Ram,
    Reserve,
    Rpc,
    Split,
    Spread,
    SwaFull,
    Timeout,
    Ubatch,
)  # fmt: skip

DEFAULT_PROMPT = "Once upon a time"
MAX_PROMPT_BYTES = 1024 * 1024
RUN_SCHEMA = "gpusplit.run/1"


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
    spread: Spread = False,
    reserve: Reserve = None,
    ram: Ram = None,
    cpu_bandwidth: CpuBandwidth = None,
    allow_ctx_overflow: AllowCtxOverflow = False,
    plan_file: Annotated[
        Optional[str], typer.Option("--plan", help="Run the plan saved by `gpusplit plan --json` instead of planning.")
    ] = None,
    prompt: Annotated[Optional[str], typer.Option("--prompt", "-p", help=f"Prompt text (default {DEFAULT_PROMPT!r}).")] = None,
    prompt_file: Annotated[
        Optional[str], typer.Option("--prompt-file", help="Read the prompt from a file (at most 1 MiB).")
    ] = None,
    n_predict: Annotated[int, typer.Option("--n-predict", "-n", min=1, max=1 << 20, help="Tokens to generate.")] = 64,
    temp: Annotated[
        float, typer.Option("--temp", min=0.0, max=100.0, help="Temperature; 0 (the default) is greedy and reproducible.")
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", min=0, max=2**32 - 1, help="Sampling seed (with --temp > 0).")] = 0,
    threads: Annotated[
        Optional[int], typer.Option("--threads", "-t", min=1, max=1024, help="CPU threads (default: all cores).")
    ] = None,
    run_timeout: Annotated[
        Optional[float], typer.Option("--run-timeout", min=1, help="Stop the engine after this many seconds.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show llama.cpp's log on stderr.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON document (schema gpusplit.run/1) at the end.")
    ] = False,
) -> int:
    """Load the model with the planned split, generate, then show timings and planned vs actual memory."""
    from ..engine import REINSTALL_HINT, EngineError, engine_available
    from ..engine.params import EngineParams

    text = _prompt(prompt, prompt_file)
    if model:
        from .models import require_local

        require_local(model, "run")
    if plan_file:
        doc = _load_plan(plan_file, model)
    else:
        from ..report import plan_document
        from .planning import build_plan

        options = {name: value for name, value in locals().items() if name in PLAN_OPTIONS}
        result, _ = build_plan(**options)
        doc = plan_document(result)
    _check_runnable(doc)
    if not engine_available():
        raise EngineError("the llama.cpp engine (llama-cpp-python) is not installed", REINSTALL_HINT)
    params_doc = dict(doc["engine_params"])
    params_doc["seed"] = seed
    params_doc["n_threads"] = threads or os.cpu_count() or 1
    params = EngineParams.from_dict(params_doc)
    for reason in doc["reasons"]:
        if "tensor parallelism" in reason or "row split" in reason:
            output.message(reason)

    from ..runner import generate

    stream = not json_output
    progress = _Progress() if sys.stderr.isatty() and not verbose else None
    first_token = [True]

    def on_token(piece: str) -> None:
        if progress is not None:
            progress.close()
        if stream:
            if first_token[0]:
                first_token[0] = False
            sys.stdout.write(output.sanitize_stream(piece))
            sys.stdout.flush()

    try:
        outcome = generate(
            params,
            text,
            n_predict,
            temp,
            rpc_names=rpc_names(doc),
            nvidia_devices={
                d["name"]: d["pci_bus_id"] for d in doc["devices"] if d.get("pci_bus_id") and d.get("backend") == "CUDA"
            },
            on_token=on_token if stream else None,
            on_progress=progress.update if progress is not None else None,
            on_log=(lambda line: sys.stderr.write(line + "\n")) if verbose else None,
            timeout=run_timeout,
        )
    finally:
        if progress is not None:
            progress.close()
    if stream:
        sys.stdout.write("\n")
    run_doc = run_document(doc, outcome)
    if json_output:
        output.emit_json(run_doc)
    else:
        print_run(run_doc)
    return 0


def _prompt(prompt: str | None, prompt_file: str | None) -> str:
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


def _load_plan(path: str, model: str | None) -> dict[str, Any]:
    file = Path(path)
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CLIError(f"--plan {path}: no such file", "save one with: gpusplit plan --json MODEL > plan.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CLIError(f"--plan {path}: not a readable JSON plan ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != "gpusplit.plan/1" or "engine_params" not in doc:
        raise CLIError(f"--plan {path}: not a gpusplit.plan/1 document", "save one with: gpusplit plan --json MODEL > plan.json")
    if model and os.path.abspath(model) != os.path.abspath(doc["engine_params"]["model_path"]):
        raise CLIError(f"the plan is for {doc['engine_params']['model_path']}, not {model}", "drop MODEL or plan again")
    from ..devices.rpc import probe

    for endpoint in doc["engine_params"].get("rpc") or []:
        probe(endpoint)  # a dead worker must fail here, not abort llama.cpp
    return doc


def _check_runnable(doc: dict[str, Any]) -> None:
    model = doc["model"]
    if not model["complete"]:
        raise CLIError(
            f"{output.sanitize(model['path'])} holds only a header (its tensor data is missing), so it cannot run",
            "plan it with gpusplit plan; run the complete file",
        )
    if not doc["fits"]:
        raise CLIError(
            "the plan does not fit these devices",
            "see `gpusplit plan` for the figures; lower --ctx, use --kv-type q8_0, or add devices",
            EXIT_RUNTIME,
        )


def rpc_names(doc: dict[str, Any]) -> dict[str, str]:
    from ..engine.logparse import rpc_buffer_map

    return rpc_buffer_map([(d["name"], d.get("endpoint")) for d in doc["devices"]])


def run_document(plan_doc: dict[str, Any], outcome: Any) -> dict[str, Any]:
    """The gpusplit.run/1 document: the plan, the text, timings, planned vs actual per device."""
    rows = []
    devices = plan_doc["devices"]
    if plan_doc["split_mode"] == "tensor":
        # llama.cpp reports its tensor-parallel "Meta()" device as one figure (the largest share).
        used = [d for d in devices if d["planned_bytes"]]
        if used:
            meta = {k: max(d[k] for d in used) for k in ("weights_bytes", "kv_bytes", "compute_bytes", "output_bytes")}
            meta.update(name="Meta()", index=None, planned_bytes=sum(meta.values()))
            devices = [meta]
    for d in [*devices, plan_doc["host"]]:
        actual = outcome.actual.get(d["name"], {})
        actual_total = sum(actual.values())
        if not d["planned_bytes"] and not actual_total:
            continue
        rows.append(
            {
                "name": d["name"],
                "index": d["index"],
                "planned": {k: d[f"{k}_bytes"] for k in ("weights", "kv", "compute", "output")},
                "actual": {k: actual.get(k, 0) for k in ("weights", "kv", "compute", "output")},
                "planned_bytes": d["planned_bytes"],
                "actual_bytes": actual_total,
                "diff_bytes": d["planned_bytes"] - actual_total,
                "nvml_used_delta_bytes": outcome.nvml_used_delta.get(d["name"]),
            }
        )
    return {
        "schema": RUN_SCHEMA,
        "plan": plan_doc,
        "split_mode": plan_doc["split_mode"],
        "text": outcome.text,
        "timings": outcome.timings.as_dict(),
        "devices": rows,
    }


def print_run(doc: dict[str, Any]) -> None:
    t = doc["timings"]

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    output.print_table(
        f"timings (split mode {doc['split_mode']})",
        ["load", "prompt tokens", "prompt t/s", "generated", "gen t/s", "first token"],
        [(f"{t['load_ms']:.0f} ms", str(t["prompt_tokens"]), num(t["prompt_tps"], ".1f"), str(t["gen_tokens"]),
          num(t["gen_tps"], ".1f"), f"{num(t['ttft_ms'], '.0f')} ms")],
        right=("load", "prompt tokens", "prompt t/s", "generated", "gen t/s", "first token"),
    )  # fmt: skip
    fb = output.format_bytes
    rows = []
    for d in doc["devices"]:
        diff = d["diff_bytes"]
        pct = f" ({100 * diff / d['actual_bytes']:+.1f}%)" if d["actual_bytes"] else ""
        rows.append(
            (
                d["name"],
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


class _Progress:
    """A load progress bar on stderr (terminals only)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn

        self._bar = Progress(
            TextColumn("loading"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            console=output.stderr_console(),
            transient=True,
        )
        self._task = self._bar.add_task("load", total=1.0)
        self._bar.start()
        self._open = True

    def update(self, value: float) -> None:
        if self._open:
            self._bar.update(self._task, completed=value)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._bar.stop()
