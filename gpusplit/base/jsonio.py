"""One way to read a JSON document: bounded in bytes, decoded straight into its type (msgspec), and
every bad value one InputError naming the file, the field's path and what it must be.

    doc = decode_file(path, PlanDoc, parameter="saved_plan")

NaN and Infinity (which Python's json writes and JSON does not allow), a number too large for its
field, the wrong type, a missing or unknown field, and nesting too deep for any field are all named
the same way: `--plan plan.json: devices[0].free_bytes: must be an integer, not a string`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from .errors import InputError
from .files import MAX_DOCUMENT_BYTES, read_bounded

T = TypeVar("T")
MAX_DEPTH = 64  # gpusplit's documents nest a few levels; anything deeper is not one of them

_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_NAMES = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false", "null": "null",
          "array": "an array", "object": "an object"}  # fmt: skip


class NonFinite:
    """A NaN or an Infinity where Python's parser found one (JSON has neither)."""

    def __init__(self, token: str) -> None:
        self.token = token


def _type_words(name: str) -> str:
    return _NAMES.get(name, name)


def problem(message: str) -> tuple[str, str]:
    """msgspec's ValidationError message as (the field's path, what it must be), in words."""
    match = _AT.match(message.strip())
    what, path = (match["what"], match["path"] or "") if match else (message, "")
    field = path.lstrip(".")
    if m := re.fullmatch(r"Object missing required field `(\w+)`", what):
        return _join(field, m[1]), "is missing"
    if m := re.fullmatch(r"Object contains unknown field `(.+)`", what):
        return _join(field, m[1]), "is not a field this document has"
    if m := re.fullmatch(r"Expected `(\w+)`, got `NonFinite`", what):
        return field, "must be a finite number (JSON has no NaN or Infinity)"
    if m := re.fullmatch(r"Expected `([\w | ]+)`, got `(\w+)`", what):
        wanted = " or ".join(_type_words(t.strip()) for t in m[1].split("|"))
        return field, f"must be {wanted}, not {_type_words(m[2])}"
    if m := re.fullmatch(r"Expected `(\w+)` (>=|>|<=|<) (\S+)", what):
        words = {">=": "at least", ">": "above", "<=": "at most", "<": "below"}[m[2]]
        return field, f"must be {_type_words(m[1])}, {words} {_short(m[3])}"
    if m := re.fullmatch(r"Expected `(\w+)` of length (>=|<=) (\d+)", what):
        words = {">=": "at least", "<=": "at most"}[m[2]]
        return field, f"must be {_type_words(m[1])} of {words} {m[3]} entries" if m[
            1
        ] != "str" else f"must be {words} {m[3]} characters"
    if m := re.fullmatch(r"Invalid enum value (.+)", what):
        return field, f"{m[1]} is not one of the values it takes"
    if what == "Number out of range":
        return field, "is too large a number"
    return field, what.rstrip(".")


def _named(model: Any, message: str) -> tuple[str, str]:
    """problem(), with the values an enum field takes named."""
    field, what = problem(message)
    if what.endswith("is not one of the values it takes"):
        values = allowed(model, field)
        if values:
            shown = ", ".join(map(str, values[:12])) + (f" (or {len(values) - 12} more)" if len(values) > 12 else "")
            what = what.removesuffix("the values it takes") + shown
    return field, what


def _short(number: str) -> str:
    try:
        value = float(number)
    except ValueError:
        return number
    return f"{value:g}" if not value.is_integer() or abs(value) >= 1e18 else f"{int(value):,}"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def allowed(model: Any, field: str) -> list[Any] | None:
    """The values a field of `model` takes, where its schema lists them (an enum), by its path."""
    try:
        schema = msgspec.json.schema(model)
    except (TypeError, ValueError):
        return None
    node: Any = schema
    for part in re.findall(r"[^.\[\]]+|\[\d+\]|\[\.\.\.\]", field):
        node = _deref(schema, node)
        node = _pick(schema, node)
        if part.startswith("["):
            node = node.get("items") if part != "[...]" else node.get("additionalProperties")
        else:
            node = (node.get("properties") or {}).get(part)
        if not isinstance(node, dict):
            return None
    node = _pick(schema, _deref(schema, node))
    values = node.get("enum")
    return list(values) if isinstance(values, list) else None


def _deref(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return schema["$defs"][ref.rsplit("/", 1)[1]] if isinstance(ref, str) else node


def _pick(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Of an anyOf (a value or null), the arm that is not null."""
    arms = [_deref(schema, a) for a in node.get("anyOf", []) if a.get("type") != "null"]
    return arms[0] if len(arms) == 1 else node


def _invalid(where: str, parameter: str, field: str, what: str) -> InputError:
    if field:
        return InputError("{p} {where}: {field}: {what}", parameter=parameter, where=where, field=field, what=what)
    return InputError("{p} {where}: {what}", parameter=parameter, where=where, what=what)


def decode(data: bytes, model: type[T], where: str, parameter: str) -> T:
    """`data` (JSON) as a `model`, or InputError naming `where` (the file), the field and the fix."""
    try:
        return msgspec.json.decode(data, type=model)
    except msgspec.ValidationError as exc:
        raise _invalid(where, parameter, *_named(model, str(exc))) from None
    except RecursionError:
        raise _invalid(where, parameter, deep_path(data) or "", f"is nested more than {MAX_DEPTH} levels deep") from None
    except msgspec.DecodeError:
        pass
    # Not JSON to msgspec: NaN or Infinity (Python's parser takes them, to name the field), or no JSON
    try:
        loose = json.loads(data, parse_constant=NonFinite)
    except RecursionError:
        raise _invalid(where, parameter, deep_path(data) or "", f"is nested more than {MAX_DEPTH} levels deep") from None
    except UnicodeDecodeError:
        raise _invalid(where, parameter, "", "is not UTF-8 text") from None
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        reason = getattr(exc, "msg", str(exc))
        raise _invalid(where, parameter, "", f"is not JSON ({reason}" + (f" at line {line})" if line else ")")) from None
    try:
        msgspec.convert(loose, type=model)
    except msgspec.ValidationError as exc:
        raise _invalid(where, parameter, *_named(model, str(exc))) from None
    except RecursionError:
        raise _invalid(where, parameter, deep_path(data) or "", f"is nested more than {MAX_DEPTH} levels deep") from None
    # only where a field takes any value (a raw record): its NaN is still not JSON
    raise _invalid(where, parameter, "", "holds NaN or Infinity, which JSON does not allow")


_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"\s*:?|[\[\]{},]')


def deep_path(data: bytes, limit: int = MAX_DEPTH) -> str | None:
    """Where `data` first nests deeper than `limit` (a path like devices[0].speed.probe), or None.
    A scan of its brackets and keys, not a parse: it finds the place a parser gives up."""
    frames: list[list[Any]] = []  # per open container: ["obj", its current key] or ["arr", its index]
    for match in _TOKEN.finditer(data):
        token = match.group()
        if token in (b"{", b"["):
            if len(frames) >= limit:
                return _render(frames)
            frames.append(["obj", None] if token == b"{" else ["arr", 0])
        elif token in (b"}", b"]"):
            if frames:
                frames.pop()
        elif token == b",":
            if frames and frames[-1][0] == "arr":
                frames[-1][1] += 1
        elif token.endswith(b":") and frames and frames[-1][0] == "obj":
            try:
                frames[-1][1] = json.loads(token[:-1].rstrip())
            except ValueError:
                frames[-1][1] = "?"
    return None


def _render(frames: list[list[Any]]) -> str:
    """The field a deep nesting starts in: the path up to where containers only nest in
    containers (a run of first entries), which is the field's value."""
    out = ""
    for i, (kind, at) in enumerate(frames):
        if i == 8:
            return out + "..."
        if kind == "arr" and at == 0 and all(k == "arr" and a == 0 for k, a in frames[i : i + 2]) and i + 1 < len(frames):
            break
        if kind == "arr":
            out += f"[{at}]"
        elif at is not None:
            out += f".{at}" if out else str(at)
    return out


def decode_file(path: str | os.PathLike[str], model: type[T], parameter: str, limit: int = MAX_DOCUMENT_BYTES) -> T:
    """A file holding one JSON document, as a `model` (see decode)."""
    return decode(read_bounded(path, parameter, limit), model, os.fspath(path), parameter)


_FIRST_SCHEMA = re.compile(rb'^\s*\{\s*"schema"\s*:\s*"((?:[^"\\]|\\.){1,200})"')


def head(data: bytes, field: str = "schema") -> Any:
    """One top-level field of a JSON object, decoded without the rest (None where it is not there or
    the data is no JSON object): what picks the type the rest is decoded with. A document whose
    rest is not JSON (a NaN in it, nesting too deep) still says what it is when its schema comes
    first, as gpusplit writes it: the decoder then names what is wrong with the rest."""
    try:
        top = msgspec.json.decode(data, type=dict[str, msgspec.Raw])
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        first = _FIRST_SCHEMA.match(data) if field == "schema" else None
        try:
            return json.loads(b'"' + first[1] + b'"') if first else None
        except ValueError:
            return None
    raw = top.get(field)
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None


Migrate = Callable[[dict[str, Any]], dict[str, Any]]
