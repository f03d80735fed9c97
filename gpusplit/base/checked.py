"""Ranges declared once, on the type: a field annotated `Annotated[int, Meta(ge=1, le=256)]` is
checked by msgspec when a document is decoded into its class, and by `check_fields` when a script
builds one (msgspec checks only what it decodes). One description, both doors.

    @dataclass(frozen=True)
    class Request:
        n_parallel: Annotated[int, Meta(ge=1, le=256)] = 1

        def __post_init__(self) -> None:
            check_fields(self)
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields
from functools import cache
from typing import Annotated, Any, Union

from msgspec import Meta

from .errors import InputError
from .units import MAX_RATE, MAX_SIZE

INT32_MAX = 2**31 - 1  # llama.cpp's int32 parameters (n_gpu_layers, n_ctx, ...)
# Floats decoded from a document must be finite and bounded: a bound of its own on every float field.
FINITE = 1e300

# The ranges documents and requests share, by what a value is.
Bytes = Annotated[int, Meta(ge=0, le=MAX_SIZE)]  # memory or file bytes: at most a PiB
SignedBytes = Annotated[int, Meta(ge=-MAX_SIZE, le=MAX_SIZE)]  # headroom, a difference
Count = Annotated[int, Meta(ge=0, le=INT32_MAX)]  # layers, tokens, threads, entries
Int32 = Annotated[int, Meta(ge=-INT32_MAX - 1, le=INT32_MAX)]  # an int32 llama.cpp takes
Index = Annotated[int, Meta(ge=0, le=INT32_MAX)]
Seconds = Annotated[float, Meta(ge=0, le=1e9)]
Rate = Annotated[float, Meta(gt=0, le=MAX_RATE)]  # bytes per second, above zero
FlopRate = Annotated[float, Meta(gt=0, le=1e18)]  # FLOP/s, above zero
Speed = Annotated[float, Meta(ge=0, le=1e12)]  # tokens per second
Finite = Annotated[float, Meta(ge=-FINITE, le=FINITE)]  # any finite number
Positive = Annotated[float, Meta(gt=0, le=FINITE)]
NonNegative = Annotated[float, Meta(ge=0, le=FINITE)]


def _metas(annotation: Any) -> tuple[tuple[Meta, ...], Any]:
    """(the Meta constraints of an annotation, the type under them) for X, Annotated[X, Meta...] and
    Optional[Annotated[X, Meta...]] (None passes: it is the field's 'not given')."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        arms = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = arms[0] if len(arms) == 1 else annotation
    if typing.get_origin(annotation) is Annotated:
        base, *extras = typing.get_args(annotation)
        return tuple(m for m in extras if isinstance(m, Meta)), base
    return (), annotation


@cache
def _checks(cls: type) -> tuple[tuple[str, tuple[Meta, ...], tuple[Meta, ...]], ...]:
    """Per field: (name, its own constraints, its items' constraints for a tuple of them)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in fields(cls):
        metas, base = _metas(hints[f.name])
        item_metas: tuple[Meta, ...] = ()
        if typing.get_origin(base) is tuple:
            args = typing.get_args(base)
            if len(args) == 2 and args[1] is Ellipsis:
                item_metas, _ = _metas(args[0])
        if metas or item_metas:
            out.append((f.name, metas, item_metas))
    return tuple(out)


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else f"{value:,}" if abs(value) >= 10_000 else str(value)


def problem(value: Any, meta: Meta) -> str | None:
    """What is wrong with `value` under one Meta (None: nothing); NaN fails every bound."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        bounds = (
            (meta.ge, lambda v, b: v >= b, "at least"),
            (meta.gt, lambda v, b: v > b, "greater than"),
            (meta.le, lambda v, b: v <= b, "at most"),
            (meta.lt, lambda v, b: v < b, "less than"),
        )
        for bound, holds, words in bounds:
            if bound is not None and not holds(value, bound):
                return f"must be {words} {_number(bound)}"
    if isinstance(value, (str, tuple, list)):
        if meta.min_length is not None and len(value) < meta.min_length:
            return f"must have at least {meta.min_length} entr{'y' if meta.min_length == 1 else 'ies'}"
        if meta.max_length is not None and len(value) > meta.max_length:
            return f"must have at most {meta.max_length} entries"
    return None


def check_fields(obj: object) -> None:
    """Raise InputError (naming the field as a parameter) where a field breaks its declared range."""
    # (a class is hashable; mypy reads type[object].__hash__ as unbound and says not)
    for name, metas, item_metas in _checks(type(obj)):  # type: ignore[arg-type]
        value = getattr(obj, name)
        if value is None:
            continue
        for meta in metas:
            wrong = problem(value, meta)
            if wrong:
                raise InputError("{p} {value} {wrong}", parameter=name, value=_shown(value), wrong=wrong)
        for item in value if item_metas else ():
            for meta in item_metas:
                wrong = problem(item, meta)
                if wrong:
                    raise InputError("{p} {value}: each entry {wrong}", parameter=name, value=_shown(value), wrong=wrong)


def _shown(value: Any, limit: int = 80) -> str:
    """A value as an error line shows it: numbers plainly, sequences joined, long text cut."""
    if isinstance(value, (tuple, list)):
        text = ",".join(_shown(v, limit) for v in value)
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
