"""Documents read back: a saved plan (`gpusplit.plan/1`) as a Plan again, a devices file
(`gpusplit.devices/1`) as an Inventory. Everything here is untrusted input."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..base.errors import InputError
from ..devices.device import Device
from ..devices.hypothetical import DeviceSpecError
from ..devices.inventory import Inventory, host_device
from ..devices.rpc import parse_endpoints
from ..devices.speed import GroupSpeed
from ..engine.detect import detect_devices
from ..planning.planner import Plan
from ..planning.prepare import plan
from ..sources import read_model


def load_plan_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A `gpusplit.plan/1` document saved by `gpusplit plan --json`."""
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


def plan_from_document(doc: dict[str, Any], devices: Inventory | None = None) -> Plan:
    """A saved `gpusplit.plan/1` document as a Plan again: its model read, its configuration (split
    mode and proportions, offloaded layers, context, batches, caches, adapters, draft, projector,
    --no-repack) evaluated as given on `devices` (default: the devices here now, the plan's RPC
    workers included), so that free memory, the fit and the prediction are today's. The devices must
    be the ones the plan names, in the same order."""
    params = doc["engine_params"]
    model = read_model(params["model_path"])
    saved = doc["model"]
    if model.total_bytes != saved["total_bytes"] or model.n_layer != saved["n_layer"]:
        raise InputError(
            f"the plan was made for another file than {params['model_path']} ({saved['total_bytes']:,} bytes of weights, "
            f"this one {model.total_bytes:,})",
            "plan it again: gpusplit plan --json MODEL > plan.json",
        )
    inventory = devices if devices is not None else detect_devices(rpc=parse_endpoints(list(params.get("rpc") or [])))
    wanted = [(d["name"], d.get("endpoint")) for d in doc["devices"]]
    found = [(d.name, d.endpoint) for d in inventory.devices]
    if wanted != found:
        names = ", ".join(name for name, _ in wanted) or "the CPU alone"
        here = ", ".join(name for name, _ in found) or "the CPU alone"
        raise InputError(f"the plan is for {names}; the devices here are {here}", "plan again on these devices")
    reserves = {d.get("reserve_bytes") for d in doc["devices"]}
    draft = doc.get("draft") or {}
    args = list(doc.get("llama_args") or [])
    projector = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--mmproj", "--mmproj-url")), "")
    return plan(
        model,
        inventory,
        ctx=params["n_ctx"],
        batch=params["n_batch"],
        ubatch=params["n_ubatch"],
        parallel=params["n_seq_max"],
        kv_type_k=params["type_k"],
        kv_type_v=params["type_v"],
        flash_attn=params["flash_attn"],
        swa_full=params["swa_full"],
        ngl=params["n_gpu_layers"],
        mode=params["split_mode"],
        split=tuple(params["tensor_split"]) or None,
        main_gpu=params["main_gpu"],
        n_cpu_moe=params["n_cpu_moe"],
        reserve=reserves.pop() if len(reserves) == 1 and None not in reserves else None,
        allow_ctx_overflow=True,
        lora=tuple(params.get("lora") or ()),
        draft=draft.get("path"),
        ngl_draft=draft.get("n_gpu_layers", -1),
        mmproj=projector,
        no_repack=not params.get("use_extra_bufts", True),
    )


def load_devices_file(path: str) -> tuple[list[Device], Device | None, GroupSpeed | None, dict[str, Any] | None]:
    """The devices, host row, tensor-parallel group speed and engine report of a `gpusplit devices
    --json` document (measured speeds travel with it, and what its llama.cpp's CPU backend copies)."""
    file = Path(path)
    if file.is_dir():
        raise DeviceSpecError(f"--devices-file {path}: is a directory, not a JSON file")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeviceSpecError(f"--devices-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DeviceSpecError(f"--devices-file {path}: cannot read: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeviceSpecError(f"--devices-file {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith("gpusplit.devices/"):
        raise DeviceSpecError(f"--devices-file {path}: not a `gpusplit devices --json` document (no schema gpusplit.devices/1)")
    devices = [_device_from(path, i, d) for i, d in enumerate(doc.get("devices") or [])]
    host = _device_from(path, "host", doc["host"]) if isinstance(doc.get("host"), dict) else None
    group = None
    if isinstance(doc.get("tensor_group"), dict):
        try:
            group = GroupSpeed(**doc["tensor_group"])
        except TypeError as exc:
            raise DeviceSpecError(f"--devices-file {path}: tensor_group: {exc}") from None
    engine = doc.get("engine") if isinstance(doc.get("engine"), dict) else None  # checked where it is used (api)
    return [d for d in devices if d.index is not None], host, group, engine


def _device_from(path: str, where: int | str, raw: Any) -> Device:
    if not isinstance(raw, dict):
        raise DeviceSpecError(f"--devices-file {path}: devices[{where}] is not an object")
    for key in ("name", "total_bytes", "free_bytes"):
        if key not in raw:
            raise DeviceSpecError(f"--devices-file {path}: devices[{where}] has no {key!r}")
    for key in ("total_bytes", "free_bytes"):
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DeviceSpecError(f"--devices-file {path}: devices[{where}].{key} must be a non-negative integer")
    try:
        device = Device.from_dict({"description": "", "backend": "hypothetical", "type": "gpu", **raw})
    except TypeError as exc:
        raise DeviceSpecError(f"--devices-file {path}: devices[{where}]: {exc}") from None
    return device.with_(source="file")


def read_devices_file(path: str | os.PathLike[str]) -> Inventory:
    """A saved `gpusplit devices --json` document as the devices to plan for (measured speeds travel
    with it, and what its llama.cpp's CPU backend copies)."""
    found, file_host, group, file_engine = load_devices_file(os.fspath(path))
    inventory = Inventory(
        devices=[d.with_(index=i) for i, d in enumerate(found)],
        host=file_host or host_device(),
        engine=file_engine,
        engine_from_file=True,
    )
    inventory.group_speed = group
    return inventory
