"""Documents read back: a saved plan (`gpusplit.plan`) as a Plan again, a devices file
(`gpusplit.devices`) as an Inventory. Everything here is untrusted input."""

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
from ..planning.request import Request
from ..sources import read_model

PLAN_SCHEMAS = ("gpusplit.plan/1", "gpusplit.plan/2")
SAVE_PLAN_HINT = "save one with {p.save_plan}"


def load_plan_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A plan document saved by `gpusplit plan --json` (or `gpusplit.document(plan)`)."""
    file = Path(path)
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("{p.saved_plan} {path}: no such file", SAVE_PLAN_HINT, parameter="saved_plan", path=str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            "{p.saved_plan} {path}: not a readable JSON plan ({why})", parameter="saved_plan", path=str(path), why=str(exc)
        ) from None
    if not isinstance(doc, dict) or doc.get("schema") not in PLAN_SCHEMAS or "engine_params" not in doc:
        raise InputError(
            "{p.saved_plan} {path}: not a gpusplit.plan document", SAVE_PLAN_HINT, parameter="saved_plan", path=str(path)
        )
    return doc


def saved_request(doc: dict[str, Any]) -> Request:
    """The request a saved plan was made from: a plan/2 document's own; a plan/1 document's rebuilt
    from its engine parameters (such documents did not keep the request: their reserves, spread,
    threads and CPU bandwidth are the defaults)."""
    if "request" in doc:
        fields = dict(doc["request"])
        for name in ("tensor_split", "reserve", "lora"):
            if isinstance(fields.get(name), list):
                fields[name] = tuple(fields[name])
        return Request(**fields)
    params = doc["engine_params"]
    reserves = {d.get("reserve_bytes") for d in doc["devices"]}
    draft = doc.get("draft") or {}
    args = list(doc.get("llama_args") or [])
    projector = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--mmproj", "--mmproj-url")), "")
    reserve = reserves.pop() if len(reserves) == 1 and None not in reserves else None
    return Request(
        n_ctx=params["n_ctx"],
        n_batch=params["n_batch"],
        n_ubatch=params["n_ubatch"],
        n_parallel=params["n_seq_max"],
        type_k=params["type_k"],
        type_v=params["type_v"],
        flash_attn=params["flash_attn"],
        swa_full=params["swa_full"],
        n_gpu_layers=params["n_gpu_layers"],
        split_mode=params["split_mode"],
        tensor_split=tuple(params["tensor_split"]) or None,
        main_gpu=params["main_gpu"],
        n_cpu_moe=params["n_cpu_moe"],
        reserve=None if reserve is None else (reserve,),
        allow_ctx_overflow=True,
        lora=tuple(params.get("lora") or ()),
        draft=draft.get("path"),
        n_gpu_layers_draft=draft.get("n_gpu_layers", -1),
        mmproj=projector,
        no_repack=not params.get("use_extra_bufts", True),
    )


def is_hypothetical_doc(doc: dict[str, Any]) -> bool:
    """A plan for cards named with --gpu (a saved inventory may hold real devices)."""
    return any(d.get("kind") in ("size", "catalog") for d in doc["devices"])


def plan_from_document(doc: dict[str, Any], devices: Inventory | None = None, changes: dict[str, Any] | None = None) -> Plan:
    """A saved plan document as a Plan again: its model read, its request planned again (with
    `changes`, fields of the request to change) on `devices` (default: the devices here now, the
    plan's RPC workers included), so that free memory, the fit and the prediction are today's. The
    devices must be the ones the plan names, in the same order."""
    params = doc["engine_params"]
    if devices is None and is_hypothetical_doc(doc):
        raise InputError(
            "this plan is for hypothetical devices ({p.gpus})", "plan against the real devices to run", parameter="saved_plan"
        )
    model = read_model(params["model_path"])
    saved = doc["model"]
    if model.total_bytes != saved["total_bytes"] or model.n_layer != saved["n_layer"]:
        raise InputError(
            "the plan was made for another file than {path} ({saved:,} bytes of weights, this one {found:,})",
            "plan it again",
            parameter="saved_plan",
            path=params["model_path"],
            saved=saved["total_bytes"],
            found=model.total_bytes,
        )
    inventory = devices if devices is not None else detect_devices(rpc=parse_endpoints(list(params.get("rpc") or [])))
    wanted = [(d["name"], d.get("endpoint")) for d in doc["devices"]]
    found = [(d.name, d.endpoint) for d in inventory.devices]
    if wanted != found:
        names = ", ".join(name for name, _ in wanted) or "the CPU alone"
        here = ", ".join(name for name, _ in found) or "the CPU alone"
        raise InputError(
            "the plan is for {names}; the devices here are {here}", "plan again on these devices", parameter="saved_plan",
            names=names, here=here,
        )  # fmt: skip
    request = saved_request(doc)
    return plan(model, inventory, request.with_(**changes) if changes else request)


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
