"""Devices you do not have: `--gpu 24GiB`, `--gpu "RTX 4090"`, `--gpu 16GiB@448GB/s`, `--gpu 2xA100-80GB`,
and `--devices-file` (the document `gpusplit devices --json` prints)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from ..errors import InputError
from .device import Device
from .speed import GroupSpeed

_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE_RE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[kmgt]i?b|b)\s*$", re.IGNORECASE)
_RATE_RE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[kmgt]i?b)\s*/\s*s\s*$", re.IGNORECASE)
_COUNT_RE = re.compile(r"^\s*(?P<count>\d+)\s*[x×]\s*(?P<rest>\S.*)$", re.IGNORECASE)
MAX_HYPOTHETICAL = 64


class DeviceSpecError(InputError, ValueError):
    """A --gpu or --devices-file value that cannot be understood; the message says how to fix it."""


def parse_size(text: str, what: str = "size") -> int:
    """'24GiB' -> 25769803776. GB is 10^9 and GiB 2^30, exactly as written."""
    match = _SIZE_RE.match(text)
    if not match:
        raise DeviceSpecError(f"{what} {text!r} is not a size like 24GiB, 8GB or 512MiB")
    value = float(match["num"]) * _UNITS[match["unit"].lower()]
    if not math.isfinite(value) or value <= 0:
        raise DeviceSpecError(f"{what} {text!r} must be greater than zero")
    if value > 2**50:
        raise DeviceSpecError(f"{what} {text!r} is implausibly large")
    return int(value)


def parse_rate(text: str) -> float:
    """'448GB/s' -> 448e9 bytes per second."""
    match = _RATE_RE.match(text)
    if not match:
        raise DeviceSpecError(f"bandwidth {text!r} is not a rate like 448GB/s or 3.35TB/s")
    value = float(match["num"]) * _UNITS[match["unit"].lower()]
    if value <= 0:
        raise DeviceSpecError(f"bandwidth {text!r} must be greater than zero")
    return value


def parse_gpu_spec(spec: str) -> list[Device]:
    """One --gpu value -> one or more hypothetical devices (not yet numbered)."""
    text = spec.strip()
    if not text:
        raise DeviceSpecError('--gpu needs a value: a size (24GiB), a card name ("RTX 4090") or SIZE@RATE')
    count = 1
    match = _COUNT_RE.match(text)
    if match and not _SIZE_RE.match(text):
        count = int(match["count"])
        text = match["rest"].strip()
        if not 1 <= count <= MAX_HYPOTHETICAL:
            raise DeviceSpecError(f"--gpu {spec!r}: count {count} must be 1 to {MAX_HYPOTHETICAL}")
    size_part, _, rate_part = text.partition("@")
    if _SIZE_RE.match(size_part):
        total = parse_size(size_part, "--gpu size")
        bandwidth = parse_rate(rate_part) if rate_part else None
        label = size_part.strip() + (f" @ {rate_part.strip()}" if rate_part else "")
        device = Device(
            name="",
            description=f"hypothetical {label}",
            backend="hypothetical",
            type="gpu",
            total_bytes=total,
            free_bytes=total,
            source="size",
            bandwidth_bytes_per_s=bandwidth,
            bandwidth_source="catalog" if bandwidth else "assumed",
        )
    else:
        from .catalog import lookup

        entry = lookup(size_part.strip())  # raises UnknownCardError with close matches
        bandwidth = parse_rate(rate_part) if rate_part else entry.bandwidth_bytes_per_s
        device = Device(
            name="",
            description=entry.name,
            backend=entry.backend,
            type="gpu",
            total_bytes=entry.memory_bytes,
            free_bytes=entry.memory_bytes,
            source="catalog",
            bandwidth_bytes_per_s=bandwidth,
            bandwidth_source="catalog",
            link_bytes_per_s=entry.link_bytes_per_s,
            notes=(f"catalog: {entry.source}",),
        )
    return [device] * count


def hypothetical_devices(specs: list[str]) -> list[Device]:
    """All --gpu values, numbered GPU0, GPU1, ... in the order given (llama.cpp's order)."""
    devices = [d for spec in specs for d in parse_gpu_spec(spec)]
    if len(devices) > MAX_HYPOTHETICAL:
        raise DeviceSpecError(f"{len(devices)} hypothetical GPUs is more than {MAX_HYPOTHETICAL}")
    return [d.with_(name=f"GPU{i}", index=i) for i, d in enumerate(devices)]


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
