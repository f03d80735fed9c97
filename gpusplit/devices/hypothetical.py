"""Devices you do not have: `--gpu 24GiB`, `--gpu "RTX 4090"`, `--gpu 16GiB@448GB/s`, `--gpu 2xA100-80GB`,
and `--devices-file` (the document `gpusplit devices --json` prints)."""

from __future__ import annotations

import re

from ..base.errors import InputError
from ..base.units import is_size, rate_from_text, size_from_text
from .catalog import lookup
from .device import Device

_COUNT_RE = re.compile(r"^\s*(?P<count>\d+)\s*[x×]\s*(?P<rest>\S.*)$", re.IGNORECASE)
MAX_HYPOTHETICAL = 64


class DeviceSpecError(InputError, ValueError):
    """A --gpu or --devices-file value that cannot be understood; the message says how to fix it."""


def parse_gpu_spec(spec: str) -> list[Device]:
    """One --gpu value -> one or more hypothetical devices (not yet numbered)."""
    text = spec.strip()
    if not text:
        raise DeviceSpecError('{p.gpus} needs a value: a size (24GiB), a card name ("RTX 4090") or SIZE@RATE', parameter="gpus")
    count = 1
    match = _COUNT_RE.match(text)
    if match and not is_size(text):
        count = int(match["count"])
        text = match["rest"].strip()
        if not 1 <= count <= MAX_HYPOTHETICAL:
            raise DeviceSpecError(
                "{p.gpus} {spec!r}: count {count} must be 1 to {limit}",
                parameter="gpus",
                spec=spec,
                count=count,
                limit=MAX_HYPOTHETICAL,
            )
    size_part, _, rate_part = text.partition("@")
    if is_size(size_part):
        total = size_from_text(size_part, "gpus")
        bandwidth = rate_from_text(rate_part, "gpus") if rate_part else None
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
        entry = lookup(size_part.strip())  # raises UnknownCardError with close matches
        bandwidth = rate_from_text(rate_part, "gpus") if rate_part else entry.bandwidth_bytes_per_s
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
        raise DeviceSpecError(
            "{p.gpus}: {count} hypothetical GPUs is more than {limit}",
            parameter="gpus",
            count=len(devices),
            limit=MAX_HYPOTHETICAL,
        )
    return [d.with_(name=f"GPU{i}", index=i) for i, d in enumerate(devices)]
