"""Planning values, checked the same way whether they come from the command line or a script:
split proportions, split modes, KV cache types. A bad value raises InputError with one line naming
the parameter and a fix. (Sizes, rates and durations: base/units.py.)"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..base.errors import InputError
from ..engine.params import SPLIT_MODES

# llama.cpp's split modes; a request may also say "auto"
REQUEST_MODES = ("auto", *SPLIT_MODES)
KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


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
