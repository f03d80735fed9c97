"""Searches the planner and the engine both run (a leaf: no gpusplit imports)."""

from __future__ import annotations

from collections.abc import Callable


def largest_fitting(fits: Callable[[int], bool], low: int, high: int) -> int | None:
    """The largest value in [low, high] for which fits(value) holds (fits is monotone)."""
    if not fits(low):
        return None
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low
