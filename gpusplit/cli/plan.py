"""`gpusplit plan MODEL`: what each device will hold, which split to use, and the flags for it."""

from __future__ import annotations

import math
from typing import List, Optional

import typer

from . import output
from .errors import EXIT_DOES_NOT_FIT, CLIError
from .models import resolve_model

DEFAULT_CTX = 4096


def _size(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    from ..devices.hypothetical import DeviceSpecError, parse_size

    if text.strip() in ("0", "0B"):
        return 0
    try:
        return parse_size(text, option)
    except DeviceSpecError as exc:
        raise CLIError(str(exc), "use a size like 512MiB or 2GiB") from None


def _rate(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    from ..devices.hypothetical import DeviceSpecError, parse_rate

    try:
        return parse_rate(text)
    except DeviceSpecError as exc:
        raise CLIError(f"{option}: {exc}", "use a rate like 60GB/s") from None


def parse_split(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(x) for x in text.replace("/", ",").split(",") if x.strip())
    except ValueError:
        raise CLIError(f"--split {text!r} is not a list of numbers", "for example --split 0.75,0.25") from None
    if not values or any(math.isnan(v) or math.isinf(v) or v < 0 for v in values):
        raise CLIError(f"--split {text!r} must be non-negative numbers", "for example --split 0.75,0.25")
    if not any(values):
        raise CLIError("--split is all zeros", "give each device a share, for example --split 0.75,0.25")
    return values


KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


def _kv_type(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    if value.lower() not in KV_TYPES:
        raise CLIError(f"{option} {value!r} is not a KV cache type", f"use one of {', '.join(KV_TYPES)}")
    return value.lower()


def build_plan(
    model: Optional[str],
    gpu: Optional[List[str]],
    devices_file: Optional[str],
    rpc: Optional[List[str]],
    timeout: float,
    ctx: Optional[int],
    batch: int,
    ubatch: int,
    parallel: int,
    kv_type: Optional[str],
    kv_type_k: Optional[str],
    kv_type_v: Optional[str],
    flash_attn: bool,
    swa_full: bool,
    ngl: Optional[int],
    mode: Optional[str],
    split: Optional[str],
    main_gpu: Optional[int],
    n_cpu_moe: Optional[int],
    spread: bool,
    reserve: Optional[str],
    ram: Optional[str],
    cpu_bandwidth: Optional[str],
    allow_ctx_overflow: bool,
):
    """Read the model, find the devices, plan: shared by plan, run and bench."""
    from ..devices.inventory import detect, host_device
    from ..gguf.model import read_model
    from ..memory import Settings
    from ..planner import Request, make_plan
    from ..roofline import DEFAULT_CPU_BANDWIDTH

    if mode is not None and mode not in ("auto", "none", "layer", "row", "tensor"):
        raise CLIError(f"--mode {mode!r} is not a split mode", "use auto, none, layer, row or tensor")
    path = resolve_model(model)
    info = read_model(path)
    if gpu and devices_file:
        raise CLIError("--gpu and --devices-file both describe the devices", "give one of them")
    host = host_device()
    if gpu:
        from ..devices.hypothetical import hypothetical_devices

        devices = hypothetical_devices(list(gpu))
        inventory_rpc: list[str] = []
    elif devices_file:
        from ..devices.hypothetical import load_devices_file

        devices, file_host = load_devices_file(devices_file)
        devices = [d.with_(index=i) for i, d in enumerate(devices)]
        host = file_host or host
        inventory_rpc = []
    else:
        from ..devices.rpc import parse_endpoints

        inventory = detect(parse_endpoints(rpc or []), rpc_timeout=timeout)
        devices = inventory.devices
        host = inventory.host
        inventory_rpc = [d.endpoint for d in devices if d.endpoint]
    ram_bytes = _size(ram, "--ram")
    if ram_bytes:
        host = host.with_(total_bytes=ram_bytes, free_bytes=ram_bytes)

    limit = info.context_length or DEFAULT_CTX
    n_ctx = ctx if ctx is not None else min(DEFAULT_CTX, limit)
    if n_ctx <= 0:
        raise CLIError(f"--ctx {n_ctx} must be positive", f"the model was trained for {limit} tokens")
    if info.context_length and n_ctx > info.context_length and not allow_ctx_overflow:
        raise CLIError(
            f"--ctx {n_ctx} is above the model's context length {info.context_length}",
            "lower --ctx or add --allow-ctx-overflow",
        )
    type_k = _kv_type(kv_type_k, "--kv-type-k") or _kv_type(kv_type, "--kv-type") or "f16"
    type_v = _kv_type(kv_type_v, "--kv-type-v") or _kv_type(kv_type, "--kv-type") or "f16"
    if type_v not in ("f16", "f32", "bf16") and not flash_attn:
        raise CLIError(f"a quantized V cache ({type_v}) needs flash attention", "add --flash-attn")
    if n_cpu_moe is not None and (n_cpu_moe < 0 or n_cpu_moe > info.n_layer):
        raise CLIError(f"--n-cpu-moe {n_cpu_moe} is out of range", f"use 0 to {info.n_layer}")
    if ngl is not None and ngl < -1:
        raise CLIError(f"--ngl {ngl} is negative", f"use -1 for all or 0 to {info.n_layer + 1}")
    split_values = parse_split(split)
    if split_values is not None and len(split_values) > len(devices):
        raise CLIError(f"--split has {len(split_values)} entries but there are {len(devices)} devices", "one share per device")
    if main_gpu is not None and not 0 <= main_gpu < max(len(devices), 1):
        raise CLIError(f"--main-gpu {main_gpu} is out of range", f"there are {len(devices)} devices (0 to {len(devices) - 1})")
    settings = Settings(
        n_ctx=n_ctx,
        n_batch=batch,
        n_ubatch=ubatch,
        n_parallel=parallel,
        type_k=type_k,
        type_v=type_v,
        flash_attn=flash_attn,
        swa_full=swa_full,
    )
    request = Request(
        settings=settings,
        mode=None if mode in (None, "auto") else mode,
        split=split_values,
        n_gpu_layers=ngl,
        main_gpu=main_gpu,
        n_cpu_moe=n_cpu_moe,
        spread=spread,
        reserve=_size(reserve, "--reserve"),
        cpu_bandwidth=_rate(cpu_bandwidth, "--cpu-bandwidth") or DEFAULT_CPU_BANDWIDTH,
    )
    return make_plan(info, devices, host, request), inventory_rpc


def plan(
    model: Optional[str] = typer.Argument(None, help="GGUF file (first shard of a split model). Default: the demo model.", show_default=False),
    gpu: Optional[List[str]] = typer.Option(None, "--gpu", envvar="GPUSPLIT_GPU", help='Plan for hypothetical GPUs: 24GiB, "RTX 4090", 16GiB@448GB/s, 2xA100-80GB (repeatable).'),
    devices_file: Optional[str] = typer.Option(None, "--devices-file", help="Plan for the devices in a `gpusplit devices --json` file."),
    rpc: Optional[List[str]] = typer.Option(None, "--rpc", envvar="GPUSPLIT_RPC", help="RPC workers host:port[,host:port]."),
    timeout: float = typer.Option(3.0, "--timeout", min=0.1, max=600, help="Seconds to wait for each RPC worker."),
    ctx: Optional[int] = typer.Option(None, "--ctx", "-c", help="Context size in tokens (default 4096, or the model's limit if smaller)."),
    batch: int = typer.Option(512, "--batch", "-b", min=1, max=1 << 20, help="Logical batch size (n_batch)."),
    ubatch: int = typer.Option(512, "--ubatch", "-ub", min=1, max=1 << 20, help="Physical batch size (n_ubatch)."),
    parallel: int = typer.Option(1, "--parallel", "-np", min=1, max=256, help="Parallel sequences (n_seq_max)."),
    kv_type: Optional[str] = typer.Option(None, "--kv-type", help="KV cache type for K and V: f16, q8_0, q4_0, ..."),
    kv_type_k: Optional[str] = typer.Option(None, "--kv-type-k", help="K cache type (overrides --kv-type)."),
    kv_type_v: Optional[str] = typer.Option(None, "--kv-type-v", help="V cache type (overrides --kv-type; quantized needs --flash-attn)."),
    flash_attn: bool = typer.Option(False, "--flash-attn/--no-flash-attn", "-fa", help="Flash attention (llama-cpp-python's default: off)."),
    swa_full: bool = typer.Option(True, "--swa-full/--no-swa-full", help="Full-size cache for sliding-window layers (llama.cpp's default)."),
    ngl: Optional[int] = typer.Option(None, "--ngl", "-ngl", help="Layers on the GPUs, counting the output layer (-1: all). Evaluated as given."),
    mode: Optional[str] = typer.Option(None, "--mode", "-sm", help="Split mode: auto (default), none, layer, row or tensor."),
    split: Optional[str] = typer.Option(None, "--split", "-ts", help="Proportions per device, e.g. 0.75,0.25. Evaluated as given."),
    main_gpu: Optional[int] = typer.Option(None, "--main-gpu", "-mg", help="Device index for single-GPU mode (default: the best GPU)."),
    n_cpu_moe: Optional[int] = typer.Option(None, "--n-cpu-moe", help="Keep the experts of the first N blocks on the CPU (MoE)."),
    spread: bool = typer.Option(False, "--spread", help="Use every GPU even when one would do (FavorDistributedInference)."),
    reserve: Optional[str] = typer.Option(None, "--reserve", envvar="GPUSPLIT_RESERVE", help="Margin kept free per device (default 512MiB; 0 for hypothetical devices)."),
    ram: Optional[str] = typer.Option(None, "--ram", help="Host memory to plan with instead of this machine's free RAM."),
    cpu_bandwidth: Optional[str] = typer.Option(None, "--cpu-bandwidth", help="Host memory bandwidth for speed predictions (default 60GB/s)."),
    allow_ctx_overflow: bool = typer.Option(False, "--allow-ctx-overflow", help="Allow --ctx above the model's trained context."),
    measure: bool = typer.Option(False, "--measure", help="Take compute buffers from a llama.cpp dry run (needs the engine and real devices)."),
    check: bool = typer.Option(False, "--check", help="Exit 3 when the model does not fit wholly on the GPUs."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON document (schema gpusplit.plan/1)."),
) -> int:
    """Plan how to split a model over the devices: memory per device, strategy, context, flags."""
    result, inventory_rpc = build_plan(
        model, gpu, devices_file, rpc, timeout, ctx, batch, ubatch, parallel, kv_type, kv_type_k, kv_type_v,
        flash_attn, swa_full, ngl, mode, split, main_gpu, n_cpu_moe, spread, reserve, ram, cpu_bandwidth, allow_ctx_overflow,
    )  # fmt: skip
    if measure:
        if gpu or devices_file:
            raise CLIError("--measure needs the real devices", "drop --gpu / --devices-file, or plan without --measure")
        from ..measure import measure_compute

        measure_compute(result)
    from ..report import plan_document

    doc = plan_document(result, measured=measure)
    if json_output:
        output.emit_json(doc)
    else:
        _print_plan(doc)
    if check and not (doc["fits"] and doc["all_on_gpu"]):
        if not json_output:
            output.message("--check: the model does not fit wholly on the GPUs")
        return EXIT_DOES_NOT_FIT
    return 0


def _print_plan(doc: dict) -> None:
    fb = output.format_bytes
    rows = []
    for d in [*doc["devices"], doc["host"]]:
        head = d["headroom_bytes"]
        rows.append(
            (
                d["name"] if d["index"] is None else f"{d['index']}: {d['name']}",
                d["layers"],
                fb(d["weights_bytes"]),
                fb(d["kv_bytes"]),
                fb(d["compute_bytes"] + d["output_bytes"]),
                fb(d["planned_bytes"]),
                fb(d["free_bytes"]),
                ("" if head >= 0 else "-") + fb(abs(head)),
            )
        )
    model = doc["model"]
    s = doc["settings"]
    title = (
        f"{output.sanitize(model['name'])}: {output.format_count(model['params'])} params, {fb(model['total_bytes'])}; "
        f"ctx {s['n_ctx']}, batch {s['n_batch']}/{s['n_ubatch']}, KV {s['type_k']}/{s['type_v']}, "
        f"flash attention {'on' if s['flash_attn'] else 'off'}"
    )
    output.print_table(
        title,
        ["device", "layers", "weights", "KV", "compute", "total", "free", "headroom"],
        rows,
        right=("weights", "KV", "compute", "total", "free", "headroom"),
    )
    pred = doc["predicted"]
    speed = "unknown (a device's bandwidth is unknown)"
    if pred["tg_tokens_per_s"]:
        speed = f"{pred['tg_tokens_per_s']:.1f} tokens/s generation"
        if pred["pp_tokens_per_s"]:
            speed += f", prompt up to {pred['pp_tokens_per_s']:.0f} tokens/s"
        speed += " (roofline estimate)"
    split = ",".join(f"{x:g}" for x in doc["tensor_split"]) or "-"
    fields = [
        ("strategy", f"{doc['strategy']} (llama.cpp split mode {doc['split_mode']}, n_gpu_layers {doc['n_gpu_layers']}, split {split}"
         + (f", main GPU {doc['main_gpu']}" if doc["split_mode"] == "none" else "") + ")"),
        ("fits", _fits_text(doc)),
        ("best context", f"{doc['best_ctx']:,} tokens"),
        ("fit score", f"{doc['score']:.2f}"),
        ("predicted", speed),
        ("compute", doc["compute_source"]),
    ]
    for reason in doc["reasons"]:
        fields.append(("why", reason))
    output.print_fields("plan", fields)
    output.print_fields(
        "run it",
        [
            ("llama-server", "llama-server " + " ".join(_quote(a) for a in doc["llama_args"])),
            ("python", "llama_cpp.Llama(" + ", ".join(f"{k}={v!r}" for k, v in doc["llama_cpp_python"].items()) + ")"),
        ],
    )
    if doc["alternatives"]:
        output.print_table(
            "alternatives",
            ["strategy", "mode", "ngl", "fits", "predicted t/s"],
            (
                (a["strategy"], a["split_mode"], str(a["n_gpu_layers"]), "yes" if a["fits"] else "no",
                 f"{a['predicted_tg_tps']:.1f}" if a["predicted_tg_tps"] else "-")
                for a in doc["alternatives"]
            ),
        )  # fmt: skip


def _fits_text(doc: dict) -> str:
    if not doc["fits"]:
        return "NO"
    if doc["all_on_gpu"]:
        return "yes, wholly on the GPUs"
    return "yes, on the CPU" if doc["strategy"] == "cpu-only" else "yes, with part of the model on the CPU"


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " \t'\"$") else arg

