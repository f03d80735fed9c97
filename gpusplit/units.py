"""Sizes, counts and rates written for people: one formatter each, shared by text and tables."""

from __future__ import annotations


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
