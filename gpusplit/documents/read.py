"""Documents read back, each parsed once, here, into its type (documents/models.py): a saved plan
(`gpusplit.plan`) as a Plan again, a devices file (`gpusplit.devices`) as an Inventory, and the
documents a report draws. Everything here is untrusted input: a bad value is one InputError naming
the file, the field's path and what it must be (base/jsonio.py). A document of an older version
is migrated to the current one first (its reasons were bare text, its engine parameters said
use_extra_bufts, a plan did not keep its request, a measured figure did not carry its noise).
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import Any, TypeVar

import msgspec

from ..base.errors import InputError
from ..base.jsonio import decode, head, read_bounded
from ..base.reasons import Reason
from ..devices.inventory import EngineInfo, Inventory, host_device
from ..devices.rpc import parse_endpoints
from ..engine.detect import detect_devices
from ..planning.planner import Plan
from ..planning.prepare import plan
from ..planning.refusals import require_device_count
from ..planning.request import Request
from ..sources import read_model
from .models import DevicesDoc, PlanDoc, RunDoc, TuneDoc
from .render import noise_fields

T = TypeVar("T")
BOM = b"\xef\xbb\xbf"  # UTF-8's byte-order mark, which some editors put first when they save JSON
SAVE_PLAN_HINT = "save one with {p.save_plan}"
PLAN_SCHEMAS = ("gpusplit.plan/1", "gpusplit.plan/2")


def without_bom(data: bytes) -> bytes:
    """A file's bytes without a UTF-8 byte-order mark (a document saved by an editor that adds
    one is still the document)."""
    return data[len(BOM) :] if data.startswith(BOM) else data


# ---------------------------------------------------------------------------------------------
# Migrations: an older document as the current version (never raising: what they cannot make
# sense of is left as it is, for the decoder to name)


def _reasons(items: Any) -> Any:
    """Reasons that were bare text, as {code, text} (their code unknown)."""
    if not isinstance(items, list):
        return items
    return [{"code": "unknown", "text": r} if isinstance(r, str) else r for r in items]


def _engine_params(params: Any) -> Any:
    if not isinstance(params, dict):
        return params
    out = {k: v for k, v in params.items() if k not in ("use_extra_bufts", "extra")}
    if "use_extra_bufts" in params and isinstance(params["use_extra_bufts"], bool):
        out["no_repack"] = not params["use_extra_bufts"]
    return out


def _object(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """doc[key] where it is an object, else an empty one (an old document, before it is checked)."""
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _array(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key)
    return value if isinstance(value, list) else []


def legacy_request(doc: dict[str, Any]) -> dict[str, Any]:
    """The request a plan/1 document was made from, rebuilt from its engine parameters (such
    documents did not keep it: their spread, threads and CPU bandwidth are the defaults)."""
    params = _object(doc, "engine_params")
    devices = _array(doc, "devices")
    reserves = {d.get("reserve_bytes") for d in devices if isinstance(d, dict)}
    draft = _object(doc, "draft")
    args = _array(doc, "llama_args")
    projector = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--mmproj", "--mmproj-url")), "")
    reserve = reserves.pop() if len(reserves) == 1 else None
    request: dict[str, Any] = {
        "n_ctx": params.get("n_ctx"),
        "n_batch": params.get("n_batch", 512),
        "n_ubatch": params.get("n_ubatch", 512),
        "n_parallel": params.get("n_seq_max", 1),
        "type_k": params.get("type_k"),
        "type_v": params.get("type_v"),
        "flash_attn": params.get("flash_attn", False),
        "swa_full": params.get("swa_full", True),
        "n_gpu_layers": params.get("n_gpu_layers"),
        "split_mode": params.get("split_mode"),
        "tensor_split": params.get("tensor_split") or None,
        "main_gpu": params.get("main_gpu"),
        "n_cpu_moe": params.get("n_cpu_moe"),
        "reserve": None if reserve is None else [reserve],
        "allow_ctx_overflow": True,
        "lora": params.get("lora") or [],
        "draft": draft.get("path"),
        "n_gpu_layers_draft": draft.get("n_gpu_layers", -1),
        "mmproj": projector,
        "no_repack": params.get("use_extra_bufts") is False,
    }
    return request


def migrate_plan(doc: dict[str, Any]) -> dict[str, Any]:
    """A plan/1 document as plan/2."""
    out = dict(doc, schema="gpusplit.plan/2")
    out["reasons"], out["warnings"] = _reasons(doc.get("reasons")), _reasons(doc.get("warnings"))
    if isinstance(doc.get("predicted"), dict):
        out["predicted"] = dict(doc["predicted"], assumptions=_reasons(doc["predicted"].get("assumptions")))
    if isinstance(doc.get("alternatives"), list):
        out["alternatives"] = [
            dict(a, reasons=_reasons(a.get("reasons"))) if isinstance(a, dict) else a for a in doc["alternatives"]
        ]
    out["engine_params"] = _engine_params(doc.get("engine_params"))
    out.setdefault("request", legacy_request(doc))
    out.setdefault("python_downloads", [])  # plan/1 printed a URL as model_path
    return out


def migrate_run(doc: dict[str, Any]) -> dict[str, Any]:
    """A run/1 or run/2 document as run/3: its generation's noise and contention unknown (it did not
    time each token, nor watch other work)."""
    out = dict(doc, schema="gpusplit.run/3")
    if isinstance(doc.get("plan"), dict):
        out["plan"] = migrate_plan(doc["plan"])
    if isinstance(doc.get("predicted"), dict) and doc["predicted"].get("parts") == {}:
        out["predicted"] = dict(doc["predicted"], parts=None)
    if isinstance(doc.get("timings"), dict):
        out["timings"] = {"gen_interval_tps": None, "gen_outliers": 0, **doc["timings"]}
    out.setdefault("contention", None)
    return out


def migrate_devices(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(doc, schema="gpusplit.devices/2", notes=_reasons(doc.get("notes")))


def _speeds(value: Any) -> list[float] | None:
    """A list of finite, non-negative numbers as it is; None for anything else (the decoder names it)."""
    if not isinstance(value, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in value
    ):
        return None
    return [float(v) for v in value]


def migrate_bench(record: dict[str, Any]) -> dict[str, Any]:
    """A bench/1 or bench/2 record as bench/3: the mean, interval and outliers computed from its
    samples as bench computes them now; contention unknown (it was not watched)."""
    out = dict(record, schema="gpusplit.bench/3", engine_params=_engine_params(record.get("engine_params")))
    samples = _speeds(record.get("samples_ts")) if record.get("status") == "ok" else None
    return {**out, **noise_fields(samples), "contention": None}


_TRIAL_CONFIG = {"mode": "split_mode", "split": "tensor_split", "ngl": "n_gpu_layers", "n_cpu_moe": "n_cpu_moe",
                 "ubatch": "n_ubatch", "flash_attn": "flash_attn", "threads": "n_threads", "no_repack": "no_repack"}  # fmt: skip


def migrate_trial(record: dict[str, Any], base: Request | None = None) -> dict[str, Any]:
    """A trial/1 line (or an unmarked one, from before the mark) or a trial/2 one as trial/3: a
    trial/1's tune Config's fields on `base` (the tune's request, which such files did not keep);
    the intervals and contention of its measurement unknown."""
    out: dict[str, Any] = {"measured_tg_interval": None, "measured_pp_interval": None, "contention": None}  # noise not kept then
    out.update((k, v) for k, v in record.items() if k != "config")
    out["schema"] = "gpusplit.trial/3"
    request = (base or Request()).as_dict()
    config = _object(record, "config")
    for old, new in _TRIAL_CONFIG.items():
        if old in config:
            request[new] = None if (old == "mode" and config[old] == "auto") else config[old]
    if "ubatch" in config and isinstance(config["ubatch"], int) and isinstance(request.get("n_batch"), int):
        request["n_batch"] = max(request["n_batch"], config["ubatch"])
    out.setdefault("request", request)
    return out


def migrate_tune(doc: dict[str, Any]) -> dict[str, Any]:
    """A tune/1 or tune/2 document as tune/3 (its trials as trial/3's, unmarked)."""
    out = dict(doc, schema="gpusplit.tune/3", notes=_reasons(doc.get("notes")))
    if isinstance(doc.get("plan"), dict):
        out["plan"] = migrate_plan(doc["plan"])
    for name in ("trials", "best"):
        value = doc.get(name)
        if isinstance(value, list):
            out[name] = [migrate_trial(t) if isinstance(t, dict) else t for t in value]
        elif isinstance(value, dict):
            out[name] = migrate_trial(value)
    if isinstance(out.get("trials"), list):
        out["trials"] = [{k: v for k, v in t.items() if k != "schema"} if isinstance(t, dict) else t for t in out["trials"]]
    if isinstance(out.get("best"), dict):
        out["best"] = {k: v for k, v in out["best"].items() if k != "schema"}
    return out


# the documents a reader takes, by schema: the type it becomes, and the migration of each older version
MIGRATIONS: dict[str, Any] = {
    "gpusplit.plan/1": migrate_plan,
    "gpusplit.run/1": migrate_run,
    "gpusplit.run/2": migrate_run,
    "gpusplit.devices/1": migrate_devices,
    "gpusplit.bench/1": migrate_bench,
    "gpusplit.bench/2": migrate_bench,
    "gpusplit.tune/1": migrate_tune,
    "gpusplit.tune/2": migrate_tune,
    "gpusplit.trial/1": migrate_trial,
    "gpusplit.trial/2": migrate_trial,
}


def decode_document(
    data: bytes, model: type[T], where: str, parameter: str, schemas: tuple[str, ...], base: Request | None = None
) -> T:
    """One document of `model`'s kind (its schema one of `schemas`, the older ones migrated; `base`:
    the request a trial/1 line's configuration applies to)."""
    data = without_bom(data)
    schema = head(data)
    if schema is None:
        try:
            msgspec.json.decode(data)
        except (msgspec.DecodeError, RecursionError):
            return decode(data, model, where, parameter)  # not JSON: the decoder says where
    if schema not in schemas:
        wanted = " or ".join(schemas)
        raise InputError("{p} {where}: not a {wanted} document (its schema is {found})", parameter=parameter, where=where,
                         wanted=wanted, found=repr(schema) if schema is not None else "missing")  # fmt: skip
    migrate = MIGRATIONS.get(schema)
    if migrate is None:
        return decode(data, model, where, parameter)
    try:
        loose = msgspec.json.decode(data)
        if isinstance(loose, dict):
            loose = migrate_trial(loose, base) if migrate is migrate_trial else migrate(loose)
        data = msgspec.json.encode(loose)
    except (msgspec.DecodeError, msgspec.EncodeError, RecursionError, TypeError, ValueError, AttributeError):
        pass  # the decoder names what is wrong
    return decode(data, model, where, parameter)


# ---------------------------------------------------------------------------------------------
# Saved plans


def load_plan_document(path: str | os.PathLike[str]) -> PlanDoc:
    """A plan document saved by `gpusplit plan --json` (or `gpusplit.document(plan)`), checked."""
    try:
        data = read_bounded(path, "saved_plan")
    except InputError as exc:
        raise InputError(exc.template, SAVE_PLAN_HINT, parameter="saved_plan", **exc.values) from None
    return decode_document(data, PlanDoc, os.fspath(path), "saved_plan", PLAN_SCHEMAS)


def plan_document_of(doc: PlanDoc | dict[str, Any], where: str = "the plan") -> PlanDoc:
    """A saved plan as its type: a dict (a script's, or read elsewhere) checked as a file is."""
    if isinstance(doc, PlanDoc):
        return doc
    try:
        data = msgspec.json.encode(doc)
    except (msgspec.EncodeError, TypeError, ValueError, OverflowError) as exc:
        raise InputError("{p} {where}: not a JSON document ({why})", parameter="saved_plan", where=where, why=str(exc)) from None
    return decode_document(data, PlanDoc, where, "saved_plan", PLAN_SCHEMAS)


def is_hypothetical_doc(doc: PlanDoc) -> bool:
    """A plan for cards named with --gpu (a saved inventory may hold real devices)."""
    return any(d.kind in ("size", "catalog") for d in doc.devices)


def plan_from_document(
    doc: PlanDoc | dict[str, Any], devices: Inventory | None = None, changes: dict[str, Any] | None = None
) -> Plan:
    """A saved plan document as a Plan again: its model read, its request planned again (with
    `changes`, fields of the request to change) on `devices` (default: the devices here now, the
    plan's RPC workers included), so that free memory, the fit and the prediction are today's. The
    devices must be the ones the plan names, in the same order."""
    saved = plan_document_of(doc)
    if devices is None and is_hypothetical_doc(saved):
        raise InputError(
            "this plan is for hypothetical devices ({p.gpus})", "plan against the real devices to run", parameter="saved_plan"
        )
    model_path = saved.engine_params.model_path
    model = read_model(model_path)
    if model.total_bytes != saved.model.total_bytes or model.n_layer != saved.model.n_layer:
        raise InputError(
            "the plan was made for another file than {path} ({saved:,} bytes of weights, this one {found:,})",
            "plan it again",
            parameter="saved_plan",
            path=model_path,
            saved=saved.model.total_bytes,
            found=model.total_bytes,
        )
    inventory = devices if devices is not None else detect_devices(rpc=parse_endpoints(list(saved.engine_params.rpc)))
    wanted = [(d.name, d.endpoint) for d in saved.devices]
    found = [(d.name, d.endpoint) for d in inventory.devices]
    if wanted != found:
        names = ", ".join(name for name, _ in wanted) or "the CPU alone"
        here = ", ".join(name for name, _ in found) or "the CPU alone"
        raise InputError(
            "the plan is for {names}; the devices here are {here}", "plan again on these devices", parameter="saved_plan",
            names=names, here=here,
        )  # fmt: skip
    request = saved.request.with_(**changes) if changes else saved.request
    return plan(model, inventory, request)


# ---------------------------------------------------------------------------------------------
# Devices files


DEVICES_SCHEMAS = ("gpusplit.devices/1", "gpusplit.devices/2")


def read_devices_doc(data: bytes, where: str) -> DevicesDoc:
    """A devices document, checked: its types, and every device's free memory within its total."""
    doc = decode_document(data, DevicesDoc, where, "devices_file", DEVICES_SCHEMAS)
    hosts = [("host", doc.host)] if doc.host is not None else []
    for field, device in [*((f"devices[{i}]", d) for i, d in enumerate(doc.devices)), *hosts]:
        if device.free_bytes > device.total_bytes:
            raise InputError(
                "{p} {where}: {field}.free_bytes {free:,} is more than its total_bytes {total:,}",
                "write the file with `gpusplit devices --json`",
                parameter="devices_file", where=where, field=field, free=device.free_bytes, total=device.total_bytes,
            )  # fmt: skip
    return doc


def load_devices_file(path: str | os.PathLike[str]) -> DevicesDoc:
    """A saved `gpusplit devices --json` document, checked."""
    return read_devices_doc(read_bounded(path, "devices_file"), os.fspath(path))


class _Listed(msgspec.Struct):
    index: Any = None


class _DeviceList(msgspec.Struct):
    devices: list[_Listed] = []


def count_listed_devices(data: bytes) -> int | None:
    """How many devices a devices document lists for llama.cpp (those with an index), read without
    checking the rest (fast even for a file of 100,000 entries); None where it is not that shape."""
    try:
        listed = msgspec.json.decode(data, type=_DeviceList)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None  # the full check names what is wrong
    return sum(1 for d in listed.devices if d.index is not None)


def read_devices_file(path: str | os.PathLike[str]) -> Inventory:
    """A saved `gpusplit devices --json` document as the devices to plan for (measured speeds travel
    with it, and what its llama.cpp's CPU backend copies); more devices than llama.cpp takes are
    refused before the document is checked or anything planned."""
    where = os.fspath(path)
    data = without_bom(read_bounded(path, "devices_file"))
    require_device_count(count_listed_devices(data) or 0, where, "devices_file")
    doc = read_devices_doc(data, where)
    engine = None
    if doc.engine is not None:
        e = doc.engine
        engine = EngineInfo(
            installed=e.installed,
            rpc=e.rpc,
            backends=None if e.backends is None else tuple(e.backends),
            cpu_repack=e.cpu_repack,
            cpu_extra_buffers=None if e.cpu_extra_buffers is None else tuple(e.cpu_extra_buffers),
            cpu_features=None if e.cpu_features is None else tuple(e.cpu_features),
        )
    devices = [d for d in doc.devices if d.index is not None]
    inventory = Inventory(
        devices=[replace(d, index=i, source="file") for i, d in enumerate(devices)],
        host=replace(doc.host, source="file") if doc.host is not None else host_device(),
        engine=engine,
        engine_from_file=True,
        notes=[Reason(n.code, n.text, n.values or {}) for n in doc.notes],
    )
    inventory.group_speed = doc.tensor_group
    return inventory


# ---------------------------------------------------------------------------------------------
# Any document of gpusplit's, by its schema (what a report reads)


KINDS: dict[str, tuple[type[Any], tuple[str, ...]]] = {
    "plan": (PlanDoc, PLAN_SCHEMAS),
    "run": (RunDoc, ("gpusplit.run/1", "gpusplit.run/2", "gpusplit.run/3")),
    "devices": (DevicesDoc, DEVICES_SCHEMAS),
    "tune": (TuneDoc, ("gpusplit.tune/1", "gpusplit.tune/2", "gpusplit.tune/3")),
}


def read_any(data: bytes, kind: str, where: str, parameter: str) -> dict[str, Any]:
    """A plan, run, devices or tune document, checked, as plain JSON values (what a report draws)."""
    model, schemas = KINDS[kind]
    doc = read_devices_doc(data, where) if kind == "devices" else decode_document(data, model, where, parameter, schemas)
    return to_json(doc)


def to_json(doc: Any) -> dict[str, Any]:
    """A checked document as plain JSON values again (lists, not tuples: as a file holds it)."""
    out = msgspec.json.decode(msgspec.json.encode(doc))
    assert isinstance(out, dict)
    return out
