"""Planning shared by plan, run and bench: options in, a Plan out (or one clear error)."""

from __future__ import annotations

import math
import os
from typing import List, Optional

from .errors import CLIError
from .models import read_model_reporting, resolve_model

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
    *,
    model: Optional[str] = None,
    gpu: Optional[List[str]] = None,
    devices_file: Optional[str] = None,
    rpc: Optional[List[str]] = None,
    timeout: float = 3.0,
    ctx: Optional[int] = None,
    batch: int = 512,
    ubatch: int = 512,
    parallel: int = 1,
    kv_type: Optional[str] = None,
    kv_type_k: Optional[str] = None,
    kv_type_v: Optional[str] = None,
    flash_attn: bool = False,
    swa_full: bool = True,
    ngl: Optional[int] = None,
    mode: Optional[str] = None,
    split: Optional[str] = None,
    main_gpu: Optional[int] = None,
    n_cpu_moe: Optional[int] = None,
    spread: bool = False,
    reserve: Optional[str] = None,
    ram: Optional[str] = None,
    cpu_bandwidth: Optional[str] = None,
    allow_ctx_overflow: bool = False,
):
    """Read the model, find the devices, plan: shared by plan, run and bench."""
    from ..devices.inventory import detect, host_device
    from ..memory import Settings
    from ..planner import Request, make_plan
    from ..roofline import DEFAULT_CPU_BANDWIDTH

    if mode is not None and mode not in ("auto", "none", "layer", "row", "tensor"):
        raise CLIError(f"--mode {mode!r} is not a split mode", "use auto, none, layer, row or tensor")
    path = resolve_model(model)
    info = read_model_reporting(path)
    if not gpu and not devices_file and os.environ.get("GPUSPLIT_GPU"):
        # Comma-separated, since card names contain spaces: GPUSPLIT_GPU="RTX 4090,8GiB".
        gpu = [g.strip() for g in os.environ["GPUSPLIT_GPU"].split(",") if g.strip()]
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
    if ram_bytes == 0:
        raise CLIError("--ram 0 leaves the host no memory", "give the host's RAM, for example --ram 64GiB")
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
