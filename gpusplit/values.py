"""Option values, checked the same way whether they come from the command line or a script:
sizes ("512MiB"), rates ("40GB/s"), split proportions, split modes, KV cache types, durations.
A bad value raises InputError with one line naming the option and a fix."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .errors import InputError

# llama.cpp's split modes and their llama_split_mode ids; a request may also say "auto"
SPLIT_MODES = {"none": 0, "layer": 1, "row": 2, "tensor": 3}
REQUEST_MODES = ("auto", *SPLIT_MODES)
KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


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
    if mode is not None and mode not in REQUEST_MODES:
        raise InputError(f"--mode {mode!r} is not a split mode", "use auto, none, layer, row or tensor")
    return mode


def check_kv_type(value: str | None, option: str = "--kv-type") -> str | None:
    if value is None:
        return None
    if value.lower() not in KV_TYPES:
        raise InputError(f"{option} {value!r} is not a KV cache type", f"use one of {', '.join(KV_TYPES)}")
    return value.lower()


def parse_duration(text: str | float | None, option: str = "--budget") -> float | None:
    """'120', '120s', '2m', '1.5h' -> seconds."""
    import re

    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*", text.lower())
    if not match:
        raise InputError(f"{option} {text!r} is not a duration", "e.g. 120s, 5m or 1h")
    return float(match[1]) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}.get(match[2] or "s", 1)
