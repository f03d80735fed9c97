"""Sizes, counts, rates and durations: written for people (one formatter each, shared by text and
tables), and read from people ("24GiB", "448GB/s", "2m"), exactly as written: GB is 10^9, GiB 2^30."""

from __future__ import annotations

import math
import re

from .errors import InputError

_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE_RE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[kmgt]i?b|b)\s*$", re.IGNORECASE)
_RATE_RE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[kmgt]i?b)\s*/\s*s\s*$", re.IGNORECASE)
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*")
MAX_SIZE = 2**50  # a PiB: more memory than any device or host has
MAX_RATE = 1e15  # bytes/s: a PB/s, above any memory or link
MAX_DURATION = 7 * 24 * 3600.0


def format_bytes(n: int | float | None) -> str:
    """Bytes in binary units, as llama.cpp and nvidia-smi show them: '1.50 GiB', '512 B'."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_count(n: int) -> str:
    """Parameter counts the way model cards say them: 8.03 B, 135.00 M."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def format_rate(bytes_per_s: float | None) -> str:
    """A bandwidth: '3.35 TB/s', '448 GB/s' (decimal, as vendors quote them)."""
    if not bytes_per_s:
        return "-"
    return f"{bytes_per_s / 1e12:.2f} TB/s" if bytes_per_s >= 1e12 else f"{bytes_per_s / 1e9:.0f} GB/s"


def is_size(text: str) -> bool:
    """Whether `text` is written as a size (24GiB, 512MiB, 8GB)."""
    return bool(_SIZE_RE.match(text))


def size_from_text(text: str, parameter: str = "size") -> int:
    """'24GiB' -> 25769803776 (at least one byte, at most a PiB)."""
    match = _SIZE_RE.match(text)
    if not match:
        raise InputError("{p} {value!r} is not a size like 24GiB, 8GB or 512MiB", parameter=parameter, value=_cut(text))
    value = float(match["num"]) * _UNITS[match["unit"].lower()]
    if not math.isfinite(value) or value < 1:
        raise InputError("{p} {value!r} must be at least one byte", parameter=parameter, value=_cut(text))
    if value > MAX_SIZE:
        raise InputError("{p} {value!r} is more than a PiB", parameter=parameter, value=_cut(text))
    return int(value)


def rate_from_text(text: str, parameter: str = "bandwidth") -> float:
    """'448GB/s' -> 448e9 bytes per second."""
    match = _RATE_RE.match(text)
    if not match:
        raise InputError("{p} {value!r} is not a rate like 448GB/s or 3.35TB/s", parameter=parameter, value=_cut(text))
    value = float(match["num"]) * _UNITS[match["unit"].lower()]
    if not math.isfinite(value) or value <= 0:
        raise InputError("{p} {value!r} must be greater than zero", parameter=parameter, value=_cut(text))
    if value > MAX_RATE:
        raise InputError("{p} {value!r} is more than a PB/s", parameter=parameter, value=_cut(text))
    return value


def parse_size(value: int | str | None, parameter: str) -> int | None:
    """'512MiB', '2GiB', '0' or a byte count."""
    if value is None or isinstance(value, int):
        if isinstance(value, int) and not 0 <= value <= MAX_SIZE:
            raise InputError("{p} {value} must be 0 to a PiB", "use a size like 512MiB or 2GiB", parameter=parameter, value=value)
        return value
    if value.strip() in ("0", "0B"):
        return 0
    return size_from_text(value, parameter)


def parse_sizes(text: str, parameter: str) -> tuple[int, ...]:
    """'512MiB' or '1GiB,512MiB,0': one size, or one per device."""
    parts = [part for part in text.split(",")]
    if not parts or any(not part.strip() for part in parts):
        raise InputError(
            "{p} {value!r} is not a size or a comma-separated list of sizes",
            "for example 512MiB, or 1GiB,512MiB for two devices",
            parameter=parameter,
            value=_cut(text),
        )
    return tuple(parse_size(part, parameter) or 0 for part in parts)


def parse_rate(value: float | str | None, parameter: str) -> float | None:
    """'60GB/s' or bytes per second."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        if not (math.isfinite(value) and 0 < value <= MAX_RATE):
            raise InputError("{p} {value} must be a rate above zero", parameter=parameter, value=value)
        return float(value)
    return rate_from_text(value, parameter)


def parse_duration(text: str | float | None, parameter: str = "budget") -> float | None:
    """'120', '120s', '2m', '1.5h' -> seconds (above zero, at most a week)."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = _DURATION_RE.fullmatch(text.lower())
        if not match:
            raise InputError("{p} {value!r} is not a duration", "e.g. 120s, 5m or 1h", parameter=parameter, value=_cut(text))
        seconds = float(match[1]) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}.get(match[2] or "s", 1)
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_DURATION):
        raise InputError(
            "{p} {value} must be more than 0 s and at most a week", "e.g. 120s, 5m or 1h", parameter=parameter, value=text
        )
    return seconds


def _cut(text: str, limit: int = 80) -> str:
    """A value from the user as an error line shows it: long text cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
