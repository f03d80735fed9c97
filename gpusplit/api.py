"""The library face of gpusplit: what the CLI itself calls, and what scripts import.

    import gpusplit

    model = gpusplit.read_model("model.gguf")
    devices = gpusplit.detect_devices(rpc=["127.0.0.1:50052", "127.0.0.1:50053"])
    plan = gpusplit.plan(model, devices, ctx=4096)
    print(plan.to_dict()["llama_args"])
    result = gpusplit.run(plan, prompt="Once upon a time", n_predict=32)
    print(result.text, result.timings.gen_tps)
    for row in gpusplit.bench("model.gguf", rpc=["127.0.0.1:50052"], modes=["layer", "tensor"]):
        print(row["config_key"], row["test"], row["avg_ts"])

Every failure is a `gpusplit.GpusplitError` with a one-line `message`, a `hint` and the CLI's
`exit_code` (2 for wrong input, 1 for a failure while working). Nothing here prints.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import GpusplitError, InputError

if TYPE_CHECKING:
    from .devices.device import Device
    from .devices.inventory import Inventory
    from .gguf.adapter import AdapterInfo
    from .gguf.model import ModelInfo
    from .planner import Plan
    from .runner import RunResult

DEFAULT_CTX = 4096
DEFAULT_PROMPT = "Once upon a time"
SPLIT_MODES = ("auto", "none", "layer", "row", "tensor")
KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


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
    from .gguf.model import read_model as read
    from .hub import is_model_name, resolve

    location = os.fspath(location)
    if not is_model_name(location):
        return read(location, on_fetch=on_fetch)
    remote = resolve(location)  # hf:// and ollama:// names: a listing or manifest, then the header by ranges
    if on_note is not None:
        shards = f" ({len(remote.files)} shards)" if len(remote.files) > 1 else ""
        on_note(f"{location} is {remote.files[0] if remote.files else remote.digest}{shards}")
        if remote.source == "hf" and remote.projectors:
            on_note(f"the repo also holds projector(s) {', '.join(remote.projectors)}: plan one with --mmproj once downloaded")
        for note in remote.notes:
            on_note(note)
    return replace(read(remote.local or remote.url, on_fetch=on_fetch), path=location)


def is_remote(location: str) -> bool:
    """An http(s) URL or a hf:// / ollama:// name (read by range requests, not from disk)."""
    from .gguf.remote import is_url
    from .hub import is_model_name

    return is_url(location) or is_model_name(location)


def model_projector(name: str) -> str | None:
    """The projector an ollama:// model's manifest carries (Ollama loads it with the model): its
    blob URL, for `plan(mmproj=...)`; None for anything else."""
    from .hub import resolve

    return resolve(name).projector_url if name.startswith("ollama://") else None


def download_model(name: str, on_progress: Callable[[int, int], None] | None = None) -> str:
    """A hf:// or ollama:// model on disk (huggingface_hub's cache, or gpusplit's for Ollama):
    the local path of its first file, for `run` and `bench`."""
    from .hub import download, resolve

    return download(resolve(name), on_progress)


def read_adapter(location: str | os.PathLike[str]) -> AdapterInfo:
    """Read a LoRA adapter's header (`--lora`): the base tensors it adapts and their bytes."""
    from .gguf.adapter import read_adapter as read

    return read(os.fspath(location))


def demo_model_path() -> str:
    """The built-in demo model (a small real model, generated into the cache on first use)."""
    from .synthetic import demo_model_path as path

    return str(path())


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
    """The devices to plan for, in llama.cpp's order, and the host.

    By default what llama.cpp would use here (its device registry when the engine is installed,
    NVML, and the `rpc` workers as "host:port"); `gpus` plans for hypothetical cards instead
    ("24GiB", "RTX 4090", "16GiB@448GB/s", "2xA100-80GB"), `devices_file` for a saved
    `gpusplit devices --json` document. `ram` replaces the host's free memory. Devices measured by
    `probe_devices` carry their speed (the CPU's at `threads`, default all cores).
    """
    from .devices.inventory import Inventory, detect, host_device
    from .devices.rpc import parse_endpoints

    if gpus and devices_file:
        raise InputError("--gpu and --devices-file both describe the devices", "give one of them")
    if gpus:
        from .devices.device import pick_best_gpu
        from .devices.hypothetical import hypothetical_devices

        found = hypothetical_devices(list(gpus))
        best = pick_best_gpu(found)
        found = [d.with_(best=True) if d is best else d for d in found]
        inventory = Inventory(devices=found, host=host_device(), notes=["hypothetical devices from --gpu"])
    elif devices_file:
        from .devices.hypothetical import load_devices_file

        found, file_host, group, file_engine = load_devices_file(os.fspath(devices_file))
        inventory = Inventory(
            devices=[d.with_(index=i) for i, d in enumerate(found)],
            host=file_host or host_device(),
            engine=file_engine,
            engine_from_file=True,
        )
        inventory.group_speed = group
    else:
        registry = engine = None
        from .engine import engine_available

        if engine_available():
            from .engine.registry import engine_summary, registry_devices

            registry, cpu = registry_devices()
            engine = engine_summary(registry, cpu)
        inventory = detect(parse_endpoints(list(rpc or [])), rpc_timeout=timeout, registry=registry, engine=engine)
        from .engine import engine_build_id

        inventory = attach_speeds(inventory, threads or default_threads(), engine_build_id(), speed_folder())
    ram_bytes = parse_size(ram, "--ram")
    if ram_bytes == 0:
        raise InputError("--ram 0 leaves the host no memory", "give the host's RAM, for example --ram 64GiB")
    if ram_bytes:
        inventory.host = inventory.host.with_(total_bytes=ram_bytes, free_bytes=ram_bytes)
    return inventory


def default_threads() -> int:
    """The CPU threads runs use unless told: every core."""
    return os.cpu_count() or 1


def speed_folder() -> Path:
    """Where device measurements are cached (under the user cache folder)."""
    from .synthetic import cache_dir

    return cache_dir() / "speeds"


def attach_speeds(inventory: Inventory, threads: int, build: str, folder: Path) -> Inventory:
    """The inventory with each device's (and the host's) cached measurement, where there is one;
    a measured device's bandwidth is then the measured figure."""
    from .devices import speed as speeds

    def with_speed(device: Device) -> Device:
        found = speeds.load(folder, speeds.identity_of(device, threads, build))
        if not isinstance(found, speeds.DeviceSpeed):
            return device
        return device.with_(speed=found, bandwidth_bytes_per_s=found.bandwidth["float"], bandwidth_source="measured")

    inventory.host = with_speed(inventory.host)
    inventory.devices = [with_speed(d) for d in inventory.devices]
    members = [d.speed.identity for d in inventory.devices if d.speed is not None]
    if len(members) >= 2 and len(members) == len(inventory.devices):
        group = speeds.load(folder, speeds.group_identity(members))
        inventory.group_speed = group if isinstance(group, speeds.GroupSpeed) else None
    return inventory


def probe_devices(
    *,
    rpc: Sequence[str] | None = None,
    timeout: float = 3.0,
    threads: int | None = None,
    on_step: Callable[[int, int, str], None] | None = None,
    no_repack: bool = False,
) -> Inventory:
    """Measure what llama.cpp achieves on every device here (the CPU at `threads`, each GPU, each
    `rpc` worker), cache the figures, and return the inventory carrying them. Plans made later
    predict speed from these figures. Needs the engine; tens of seconds. A probe model that fails
    leaves its weight class unmeasured (said in the figures) rather than failing the probe; a crash
    with the CPU's extra buffer types on is measured again without them (`no_repack`: from the start)."""
    from .devices.inventory import detect
    from .devices.rpc import parse_endpoints
    from .engine import engine_build_id
    from .engine.registry import engine_summary, registry_devices
    from .probe import run_probe, step_count

    require_engine()
    registry, cpu = registry_devices()
    inventory = detect(
        parse_endpoints(list(rpc or [])), rpc_timeout=timeout, registry=registry, engine=engine_summary(registry, cpu)
    )
    total = step_count(inventory, no_repack)
    done = [0]

    def step(text: str, measured: bool) -> None:
        if on_step is not None:
            on_step(done[0], total, text)
        done[0] += measured

    return run_probe(inventory, threads or default_threads(), engine_build_id(), speed_folder(), step, no_repack)


def is_hypothetical(devices: Sequence[Device]) -> bool:
    return any(d.source in ("size", "catalog", "file") for d in devices)


# ---------------------------------------------------------------------------------------------
# Option values: strings from the command line or values from a script, checked the same way


def parse_size(value: int | str | None, option: str) -> int | None:
    """'512MiB', '2GiB', '0' or a byte count."""
    if value is None or isinstance(value, int):
        if isinstance(value, int) and value < 0:
            raise InputError(f"{option} {value} is negative", "use a size like 512MiB or 2GiB")
        return value
    from .devices.hypothetical import DeviceSpecError
    from .devices.hypothetical import parse_size as parse

    if value.strip() in ("0", "0B"):
        return 0
    try:
        return parse(value, option)
    except DeviceSpecError as exc:
        raise InputError(exc.message, "use a size like 512MiB or 2GiB") from None


def parse_rate(value: float | str | None, option: str) -> float | None:
    """'60GB/s' or bytes per second."""
    if value is None or isinstance(value, (int, float)):
        return None if value is None else float(value)
    from .devices.hypothetical import DeviceSpecError
    from .devices.hypothetical import parse_rate as parse

    try:
        return parse(value)
    except DeviceSpecError as exc:
        raise InputError(f"{option}: {exc.message}", "use a rate like 60GB/s") from None


def parse_split(value: str | Sequence[float] | None) -> tuple[float, ...] | None:
    """'0.75,0.25' (or '3/1') or a sequence of proportions per device."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            values = tuple(float(x) for x in value.replace("/", ",").split(",") if x.strip())
        except ValueError:
            raise InputError(f"--split {value!r} is not a list of numbers", "for example --split 0.75,0.25") from None
    else:
        values = tuple(float(x) for x in value)
    if not values or any(math.isnan(v) or math.isinf(v) or v < 0 for v in values):
        raise InputError(f"--split {value!r} must be non-negative numbers", "for example --split 0.75,0.25")
    if not any(values):
        raise InputError("--split is all zeros", "give each device a share, for example --split 0.75,0.25")
    return values


def check_mode(mode: str | None) -> str | None:
    if mode is not None and mode not in SPLIT_MODES:
        raise InputError(f"--mode {mode!r} is not a split mode", "use auto, none, layer, row or tensor")
    return mode


def check_kv_type(value: str | None, option: str = "--kv-type") -> str | None:
    if value is None:
        return None
    if value.lower() not in KV_TYPES:
        raise InputError(f"{option} {value!r} is not a KV cache type", f"use one of {', '.join(KV_TYPES)}")
    return value.lower()


# ---------------------------------------------------------------------------------------------
# Planning


def plan(
    model: ModelInfo | str | os.PathLike[str],
    devices: Inventory | None = None,
    *,
    ctx: int | None = None,
    batch: int = 512,
    ubatch: int = 512,
    parallel: int = 1,
    kv_type: str | None = None,
    kv_type_k: str | None = None,
    kv_type_v: str | None = None,
    flash_attn: bool = False,
    swa_full: bool = True,
    ngl: int | None = None,
    mode: str | None = None,
    split: str | Sequence[float] | None = None,
    main_gpu: int | None = None,
    n_cpu_moe: int | None = None,
    spread: bool = False,
    reserve: int | str | None = None,
    cpu_bandwidth: float | str | None = None,
    allow_ctx_overflow: bool = False,
    measure: bool = False,
    threads: int | None = None,
    lora: Sequence[str | os.PathLike[str]] = (),
    draft: ModelInfo | str | os.PathLike[str] | None = None,
    ngl_draft: int = -1,
    mmproj: str | os.PathLike[str] | None = None,
    no_repack: bool = False,
) -> Plan:
    """How to split `model` over `devices` (default: `detect_devices()`): bytes per device, the
    strategy, the best context, a fit score and llama.cpp's parameters. `plan.to_dict()` is the
    `gpusplit.plan/1` document.

    Settings mirror llama.cpp's (ctx, batch, ubatch, parallel, kv_type, flash_attn, ...); a
    `split`, `ngl` or `n_cpu_moe` is evaluated as given. With `measure`, compute buffers, the
    fit, the best context and the score come from llama.cpp's dry run on the real devices.
    Predicted speeds use each device's measured figures (`probe_devices`) where there are some;
    `threads` picks the CPU's (when `devices` is not given). `lora` adapters are loaded with the
    model: their bytes go where the layers they adapt go. A `draft` model (speculative decoding,
    llama-server's -md) is placed as llama-server places it, `ngl_draft` of its layers offloaded,
    and counted in the fit; so is a multimodal projector (`mmproj`), on the first GPU. The host's
    weights include the copies llama.cpp's CPU backend makes (AMX, CPU_REPACK); `no_repack` plans
    the load without them (llama.cpp's --no-repack: the engine turns its extra buffer types off).
    """
    from .memory import Settings
    from .planner import Request, make_plan
    from .predict import DEFAULT_CPU_BANDWIDTH

    check_mode(mode)
    info = model if not isinstance(model, (str, os.PathLike)) else read_model(model)
    inventory = devices if devices is not None else detect_devices(threads=threads)
    found = inventory.devices
    if measure and is_hypothetical(found):
        raise InputError("--measure needs the real devices", "drop --gpu / --devices-file, or plan without --measure")
    if measure:
        require_complete(info, "be measured")  # llama.cpp checks that the tensor data is there
    limit = info.context_length or DEFAULT_CTX
    n_ctx = ctx if ctx is not None else min(DEFAULT_CTX, limit)
    if n_ctx <= 0:
        raise InputError(f"--ctx {n_ctx} must be positive", f"the model was trained for {limit} tokens")
    if info.context_length and n_ctx > info.context_length and not allow_ctx_overflow:
        raise InputError(
            f"--ctx {n_ctx} is above the model's context length {info.context_length}", "lower --ctx or add --allow-ctx-overflow"
        )
    type_k = check_kv_type(kv_type_k, "--kv-type-k") or check_kv_type(kv_type) or "f16"
    type_v = check_kv_type(kv_type_v, "--kv-type-v") or check_kv_type(kv_type) or "f16"
    if n_cpu_moe is not None and (n_cpu_moe < 0 or n_cpu_moe > info.n_layer):
        raise InputError(f"--n-cpu-moe {n_cpu_moe} is out of range", f"use 0 to {info.n_layer}")
    if ngl is not None and ngl < -1:
        raise InputError(f"--ngl {ngl} is negative", f"use -1 for all or 0 to {info.n_layer + 1}")
    split_values = parse_split(split)
    if split_values is not None and len(split_values) > len(found):
        raise InputError(f"--split has {len(split_values)} entries but there are {len(found)} devices", "one share per device")
    if main_gpu is not None and not 0 <= main_gpu < max(len(found), 1):
        raise InputError(f"--main-gpu {main_gpu} is out of range", f"there are {len(found)} devices (0 to {len(found) - 1})")
    cpu = cpu_backend(inventory)
    settings = Settings(
        n_ctx=n_ctx,
        n_batch=batch,
        n_ubatch=ubatch,
        n_parallel=parallel,
        type_k=type_k,
        type_v=type_v,
        flash_attn=flash_attn,
        swa_full=swa_full,
        cpu_repack=cpu["repack"],
        cpu_extra_buffers=tuple(cpu["extra_buffers"]),
        extra_buffers=not no_repack,
    )
    request = Request(
        settings=settings,
        mode=None if mode in (None, "auto") else mode,
        split=split_values,
        n_gpu_layers=ngl,
        main_gpu=main_gpu,
        n_cpu_moe=n_cpu_moe,
        spread=spread,
        reserve=parse_size(reserve, "--reserve"),
        cpu_bandwidth=parse_rate(cpu_bandwidth, "--cpu-bandwidth") or DEFAULT_CPU_BANDWIDTH,
        tensor_group=inventory.group_speed,
        adapters=tuple(read_adapter(path) for path in lora),
        draft=_draft_request(draft, ngl_draft),
        projector=None if mmproj is None else _read_projector(mmproj),
    )
    result = make_plan(info, list(found), inventory.host, request)
    note = host_copies_note(result.best.memory.host, cpu, no_repack)
    if note:
        result.reasons.append(note)
    if measure:
        require_engine()
        from .runner import measure as measure_plan

        result = measure_plan(result)
    return result


def cpu_backend(inventory: Inventory) -> dict[str, Any]:
    """What llama.cpp's CPU backend does with the host's weights: the engine's report where the
    inventory has one (detected here, or a devices file's), else what a native build for this CPU
    would do ({"extra_buffers", "repack", "source"})."""
    from .cpu_buffers import EXTRA_BUFFERS, REPACK_RULES

    engine = inventory.engine or {}
    if inventory.engine_from_file and "cpu_repack" in engine and "cpu_extra_buffers" not in engine:
        # a devices file written before the extra buffer types were reported: CPU_REPACK alone
        engine = {**engine, "cpu_extra_buffers": [] if engine["cpu_repack"] == "none" else ["CPU_REPACK"]}
    if "cpu_extra_buffers" in engine:
        extra, repack = engine["cpu_extra_buffers"], engine.get("cpu_repack") or "none"
        wrong = not isinstance(extra, list) or any(b not in EXTRA_BUFFERS for b in extra) or repack not in REPACK_RULES
        if inventory.engine_from_file and wrong:
            # a devices file (untrusted input) that says something else; a live engine may list types
            # this code does not model (they are said, not counted)
            raise InputError(
                f"the devices' engine.cpu_extra_buffers may list only {', '.join(EXTRA_BUFFERS)} and engine.cpu_repack "
                f"be one of {', '.join(REPACK_RULES)}",
                "write the file with `gpusplit devices --json`",
            )
        return {"extra_buffers": extra, "repack": repack, "source": "file" if inventory.engine_from_file else "engine"}
    from .devices.cpu import native_cpu_backend

    return native_cpu_backend()


def host_copies_note(host: Any, cpu: dict[str, Any], no_repack: bool) -> str | None:
    """The plan's reason line for the weights llama.cpp copies beside the mapped file (or would, but
    for --no-repack), saying where the rules came from."""
    from .cpu_buffers import HOST_COPIES_NOTE, MODELLED
    from .units import format_bytes

    copies = [(host.amx_bytes, "AMX"), (host.repack_bytes, f"CPU_REPACK ({cpu['repack']} rules)")]
    parts = [f"{format_bytes(n)} in {name}" for n, name in copies if n]
    where = {
        "engine": "llama.cpp reported by this engine",
        "file": "as the devices file's engine reported them",
    }.get(cpu.get("source", ""), "assumed: a native build for this CPU")
    offered = ", ".join(cpu["extra_buffers"]) or "none"
    unmodelled = [b for b in cpu["extra_buffers"] if b not in MODELLED]
    tail = f"; what {', '.join(unmodelled)} would take is not modelled" if unmodelled else ""
    if no_repack:
        if not cpu["extra_buffers"]:
            return None
        return f"--no-repack: the host keeps its weights in the mapped file only (extra buffer types {offered} off{tail})"
    if not parts:
        return None
    return (
        f"{HOST_COPIES_NOTE}{' and '.join(parts)} beside the mapped file: llama.cpp copies the weights it computes "
        f"with into its extra buffer types ({offered}; {where}){tail}; --no-repack keeps only the mapped file"
    )


def _read_projector(location: str | os.PathLike[str]) -> Any:
    from .gguf.adapter import read_projector

    return read_projector(os.fspath(location))


def _draft_request(draft: ModelInfo | str | os.PathLike[str] | None, ngl_draft: int) -> Any:
    from .planner import DraftRequest

    if draft is None:
        return None
    if ngl_draft < -1:
        raise InputError(f"--ngl-draft {ngl_draft} is negative", "use -1 for all, or a count of layers")
    return DraftRequest(draft if not isinstance(draft, (str, os.PathLike)) else read_model(draft), ngl_draft)


# ---------------------------------------------------------------------------------------------
# Tuning


def parse_duration(text: str | float | None, option: str = "--budget") -> float | None:
    """'120', '120s', '2m', '1.5h' -> seconds."""
    import re

    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*", text.lower())
    if not match:
        raise InputError(f"{option} {text!r} is not a duration", "e.g. 120s, 5m or 1h")
    return float(match[1]) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}.get(match[2] or "s", 1)


def tune(
    model: ModelInfo | str | os.PathLike[str],
    devices: Inventory | None = None,
    *,
    objective: str = "tg",
    budget: float | str = 120.0,
    trials_file: str | os.PathLike[str] | None = None,
    resume: bool = False,
    on_trial: Callable[[Any], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    **settings: Any,
) -> Any:
    """The fastest configuration that fits, found by measurement within `budget` seconds
    (`objective`: tg, pp or mixed); returns a `tune.TuneResult` whose `.plan` is the winner.

    Seeded by `plan(model, devices, **settings)`; never runs a configuration that does not fit.
    Each trial is appended to `trials_file` (JSONL) as it ends; with `resume` the trials already
    there are not run again. Hypothetical devices are ranked by prediction only (the result says so).
    """
    import json
    from pathlib import Path

    from .tune import read_trials
    from .tune import tune as search

    info = model if not isinstance(model, (str, os.PathLike)) else read_model(model)
    inventory = devices if devices is not None else detect_devices()
    seconds = parse_duration(budget) or 0.0
    path = Path(trials_file) if trials_file is not None else None
    previous = read_trials(path) if path is not None and resume else []

    def record(trial: Any) -> None:
        if path is not None:
            with path.open("a") as out:
                out.write(json.dumps(trial.to_dict()) + "\n")
        if on_trial is not None:
            on_trial(trial)

    return search(info, inventory, settings, objective=objective, budget_s=seconds, previous=previous, on_trial=record,
                  should_stop=should_stop)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Running


def require_engine() -> None:
    from .engine import REINSTALL_HINT, EngineError, engine_available

    if not engine_available():
        raise EngineError("the llama.cpp engine (llama-cpp-python) is not installed", REINSTALL_HINT)


def require_complete(model: ModelInfo | dict[str, Any], command: str) -> None:
    """A file whose tensor data is missing cannot load: say so before the engine does. `model` is
    a ModelInfo or the `model` of a plan document."""
    if not isinstance(model, dict):
        model = {
            "path": model.path,
            "complete": model.complete,
            "missing_bytes": model.missing_bytes,
            "total_bytes": model.total_bytes,
        }
    model_doc = model
    if model_doc.get("complete", True):
        return
    from .units import format_bytes

    missing = model_doc.get("missing_bytes") or 0
    if missing >= model_doc.get("total_bytes", 0):
        what, hint = (
            "holds only a header (its tensor data is missing)",
            "use the complete file; plan and inspect read headers alone",
        )
    else:
        what = f"is truncated: {format_bytes(missing)} of its tensor data is missing"
        hint = "download it again (resume the download), then run it; plan and inspect read the header alone"
    raise InputError(f"{model_doc['path']} {what}, so it cannot {command}", hint)


def load_plan_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A `gpusplit.plan/1` document saved by `gpusplit plan --json`."""
    import json
    from pathlib import Path

    file = Path(path)
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"--plan {path}: no such file", "save one with: gpusplit plan --json MODEL > plan.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"--plan {path}: not a readable JSON plan ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != "gpusplit.plan/1" or "engine_params" not in doc:
        raise InputError(
            f"--plan {path}: not a gpusplit.plan/1 document", "save one with: gpusplit plan --json MODEL > plan.json"
        )
    return doc


def run(
    plan: Plan | dict[str, Any],
    *,
    prompt: str = DEFAULT_PROMPT,
    n_predict: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
    threads: int | None = None,
    timeout: float | None = None,
    on_token: Callable[[str], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
    on_log: Callable[[str], None] | None = None,
) -> RunResult:
    """Load the planned model with the plan's split in an engine child process and generate.

    `plan` is a Plan or a saved `gpusplit.plan/1` document. `on_token` receives text as it is
    generated, `on_progress` the load progress (0-1), `on_log` llama.cpp's log lines.
    `result.to_dict()` is the `gpusplit.run/1` document.
    """
    from .params import EngineParams
    from .runner import generate

    doc = plan if isinstance(plan, dict) else plan.to_dict()
    if not prompt or not prompt.strip():
        raise InputError("the prompt is empty", "give some text to continue")
    require_complete(doc["model"], "run")
    if not doc["fits"]:
        raise GpusplitError(
            "the plan does not fit these devices",
            "see `gpusplit plan` for the figures; lower --ctx, use --kv-type q8_0, or add devices",
        )
    if is_hypothetical_doc(doc):
        raise InputError("this plan is for hypothetical devices (--gpu)", "plan against the real devices to run")
    require_engine()
    from .devices.rpc import probe

    for endpoint in doc["engine_params"].get("rpc") or []:
        probe(endpoint)  # a dead worker must fail here, not abort llama.cpp
    params = EngineParams.from_dict(doc["engine_params"]).with_(seed=seed, n_threads=threads or default_threads())
    return generate(doc, params, prompt, n_predict, temperature, on_token, on_progress, on_log, timeout)


def is_hypothetical_doc(doc: dict[str, Any]) -> bool:
    """A plan for cards named with --gpu (a saved inventory may hold real devices)."""
    return any(d.get("kind") in ("size", "catalog") for d in doc["devices"])


# ---------------------------------------------------------------------------------------------
# Benchmarks


def bench(
    model: str | os.PathLike[str],
    *,
    rpc: Sequence[str] | None = None,
    timeout: float = 3.0,
    modes: Sequence[str] = ("auto",),
    splits: Sequence[str] = ("auto",),
    ngls: Sequence[int | None] = (None,),
    ctxs: Sequence[int | None] = (None,),
    kv_types: Sequence[str] = ("f16",),
    flash_attn: Sequence[bool] = (False,),
    n_prompt: Sequence[int] = (512,),
    n_gen: Sequence[int] = (128,),
    depths: Sequence[int] = (0,),
    repetitions: int = 5,
    threads: int | None = None,
    config_timeout: float = 1800.0,
    skip: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
    on_config: Callable[[int, int, str], None] | None = None,
    plan_doc: dict[str, Any] | None = None,
    no_repack: bool = False,
) -> Iterator[dict[str, Any]]:
    """llama-bench's tests (pp: a prompt batch, tg: token by token) over the matrix of modes,
    splits, n_gpu_layers, contexts, KV types and flash attention: one `gpusplit.bench/1` record
    per (configuration, test), yielded as each configuration finishes. A configuration that fails
    (a refused plan, llama.cpp aborting, a dead worker) yields failed records and the matrix goes
    on. `skip` holds (config_key, test) pairs already done; `on_config(k, total, key)` announces
    each configuration before it runs. With `plan_doc` (a `gpusplit.plan/1` document, e.g. what
    `tune --output` writes) that one configuration is run exactly as planned, not planned again.
    `no_repack` runs every configuration with llama.cpp's --no-repack. A configuration whose load
    crashes with the CPU's extra buffer types on (llama.cpp's AMX bug) is measured again without
    them, its records marked with the `recovery`.
    """
    from . import __version__
    from .bench_matrix import matrix, tests_for
    from .devices.rpc import parse_endpoints
    from .documents import bench_model

    for m in modes:
        check_mode(m)
    for s in splits:
        if s != "auto":
            parse_split(s)
    kvs = [check_kv_type(k) or "f16" for k in kv_types]
    for c in ctxs:
        if c is not None and c <= 0:
            raise InputError(f"--ctx {c} must be positive", "for example --ctx 4096")
    tests = tests_for(list(n_prompt), list(n_gen), list(depths))
    if not tests:
        raise InputError("no tests: -p and -n are all 0", "use -p 512 and/or -n 128")
    if any(d < 0 for d in depths):
        raise InputError("--depth must not be negative", "for example -d 0 -d 1024")
    endpoints = parse_endpoints(list(rpc or []))
    info = read_model(model)
    require_complete(info, "be benchmarked")
    require_engine()
    configs = matrix(list(modes), list(splits), list(ngls), list(ctxs), kvs, list(flash_attn))
    inventory = detect_devices(rpc=endpoints, timeout=timeout, threads=threads)
    common = {
        "model": bench_model(info),
        "version": __version__,
        "inventory": [d.as_dict() for d in inventory.devices],
        "repetitions": repetitions,
    }
    needed = max(t.n + t.depth for t in tests)
    if plan_doc is not None:
        from .documents import plan_without_repack

        plan_doc = plan_without_repack(plan_doc) if no_repack else plan_doc
        configs = [_plan_doc_config(plan_doc)]
    carried: dict[str, Any] | None = None
    for k, config in enumerate(configs, 1):
        pending = [t for t in tests if (config.key(), t.name) not in skip]
        if not pending:
            continue
        if on_config is not None:
            on_config(k, len(configs), config.key())
        if plan_doc is not None:
            records = _bench_plan_doc(plan_doc, config, pending, needed, repetitions, threads, config_timeout, common)
        else:
            records = _bench_config(
                info, endpoints, timeout, config, pending, needed, repetitions, threads, config_timeout, common,
                no_repack or carried is not None,
            )  # fmt: skip
        for record in records:
            if carried is not None and record["recovery"] is None and record["no_repack"]:
                record["recovery"] = carried  # run with --no-repack because an earlier configuration crashed
            yield record
        # Once llama.cpp crashed with the extra buffer types on, the later configurations go without
        # them: the bug is in its kernels, which they would meet too (one crash, one warning).
        carried = carried or next((r["recovery"] for r in records if r["recovery"]), None)


def _plan_doc_config(doc: dict[str, Any]) -> Any:
    """A saved plan's engine parameters as a bench configuration (the key its records carry)."""
    from .bench_matrix import Config

    p = doc["engine_params"]
    split = ",".join(f"{x:g}" for x in p["tensor_split"]) or "auto"
    return Config(p["split_mode"], split, p["n_gpu_layers"], p["n_ctx"], p["type_k"], p["flash_attn"])


def _bench_plan_doc(
    doc: dict[str, Any],
    config: Any,
    tests: list[Any],
    needed: int,
    repetitions: int,
    threads: int | None,
    config_timeout: float,
    common: dict[str, Any],
) -> list[dict[str, Any]]:
    """A saved plan as one bench configuration: its engine parameters as they are, not planned again."""
    from .documents import bench_record

    n_ctx = doc["engine_params"]["n_ctx"]
    if needed > n_ctx:
        error = f"the plan's context ({n_ctx}) is shorter than the tests need ({needed}); lower -p/-n/-d or plan with --ctx"
        return [bench_record(config=config, test=t, samples=None, error=error, plan=doc, **common) for t in tests]
    return _bench_planned(doc, config, tests, repetitions, threads, config_timeout, common)


def _bench_config(
    info: ModelInfo,
    endpoints: list[str],
    timeout: float,
    config: Any,
    tests: list[Any],
    needed: int,
    repetitions: int,
    threads: int | None,
    config_timeout: float,
    common: dict[str, Any],
    no_repack: bool = False,
) -> list[dict[str, Any]]:
    """One configuration, planned then run in its own engine child; a failure becomes failed records."""
    from .documents import bench_record

    try:
        # Devices again for each configuration: live free memory, and a worker that died since
        # is refused here rather than aborting llama.cpp.
        planned = plan(
            info,
            detect_devices(rpc=endpoints, timeout=timeout, threads=threads),
            ctx=config.ctx or max(256, -(-needed // 256) * 256),
            kv_type=config.kv,
            flash_attn=config.fa,
            ngl=config.ngl,
            mode=None if config.mode == "auto" else config.mode,
            split=None if config.split == "auto" else config.split,
            allow_ctx_overflow=True,
            no_repack=no_repack,
        )
        doc = planned.to_dict()
    except GpusplitError as exc:
        return [bench_record(config=config, test=t, samples=None, error=f"plan: {exc.message}", **common) for t in tests]
    if not doc["fits"]:
        return [
            bench_record(config=config, test=t, samples=None, error="the plan does not fit these devices", plan=doc, **common)
            for t in tests
        ]
    return _bench_planned(doc, config, tests, repetitions, threads, config_timeout, common)


def _bench_planned(
    doc: dict[str, Any],
    config: Any,
    tests: list[Any],
    repetitions: int,
    threads: int | None,
    config_timeout: float,
    common: dict[str, Any],
) -> list[dict[str, Any]]:
    """A plan document's configuration run in its own engine child; a failure becomes failed records."""
    from .documents import bench_record
    from .engine.child import EngineCrash
    from .params import EngineParams
    from .runner import bench_config

    params = EngineParams.from_dict(doc["engine_params"]).with_(n_threads=threads or default_threads())
    try:
        outcome = bench_config(doc, params, [t.as_dict() for t in tests], repetitions, timeout=config_timeout)
    except EngineCrash as exc:
        return [
            bench_record(config=config, test=t, samples=None, error=exc.message, log_tail=exc.log_tail, plan=doc, **common)
            for t in tests
        ]
    except GpusplitError as exc:
        return [bench_record(config=config, test=t, samples=None, error=exc.message, plan=doc, **common) for t in tests]
    recovery = None
    if outcome.recovery is not None:
        from .documents import plan_without_repack

        doc = plan_without_repack(doc, outcome.recovery.message)  # the row ran with --no-repack: its plan says so
        recovery = outcome.recovery.to_dict()
    return [
        bench_record(
            config=config,
            test=t,
            samples=outcome.samples.get(t.name),
            plan=doc,
            actual=outcome.actual,
            build=outcome.build,
            recovery=recovery,
            **common,
        )
        for t in tests
    ]


# ---------------------------------------------------------------------------------------------
# Workers


def serve_worker(
    host: str = "127.0.0.1",
    port: int = 50052,
    *,
    devices: Sequence[str] = (),
    threads: int | None = None,
    allow_remote: bool = False,
    on_warning: Callable[[str], None] | None = None,
    on_started: Callable[[str], None] | None = None,
) -> None:
    """Serve this machine's devices (by ggml name; default every GPU, else the CPU) over llama.cpp's
    RPC protocol until SIGINT/SIGTERM. The protocol has no authentication: a non-loopback `host`
    needs `allow_remote`. `on_started` receives a line describing what is served."""
    from .devices.rpc import is_loopback
    from .engine import REINSTALL_RPC_HINT, EngineError
    from .engine.registry import supports_rpc
    from .engine.worker import WorkerPlan, check_port, choose_devices, serve
    from .units import format_bytes

    if not is_loopback(host) and not allow_remote:
        raise InputError(
            f"--host {host} is not a loopback address and the RPC protocol has no authentication",
            "add --allow-remote on a trusted network, or keep the default 127.0.0.1",
        )
    require_engine()
    if not supports_rpc():
        raise EngineError("the installed llama-cpp-python was built without RPC", REINSTALL_RPC_HINT)
    if not is_loopback(host) and on_warning is not None:
        on_warning(f"serving on {host}: anyone who can reach port {port} can use these devices (no authentication)")
    chosen = choose_devices(list(devices))
    check_port(host, port)
    worker = WorkerPlan(f"{host}:{port}", chosen, threads or default_threads())
    listing = ", ".join(f"{d.name} ({d.description}, {format_bytes(d.free_bytes)} free)" for d in chosen)

    def started() -> None:
        if on_started is not None:
            on_started(f"worker serving {listing} on {worker.endpoint} with {worker.threads} threads; Ctrl-C stops it")

    if serve(worker, on_started=started) != 0:
        raise EngineError(f"the RPC server on {worker.endpoint} stopped unexpectedly")
