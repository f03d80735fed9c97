"""The JSON Schemas gpusplit publishes for its documents, generated from documents/models.py (the
types the readers decode with): one description in both directions. Every object is closed
(`additionalProperties: false`): the domain types a document embeds (a Request, EngineParams, a
Device) are closed here too, since gpusplit writes no field they do not have. Tests validate real
outputs against these; docs/json.md shows them. Versioned by the `schema` field: a breaking
change bumps the number.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from .models import DOCUMENTS, BenchRecord


def _close(node: Any) -> None:
    """Every object schema that lists its properties admits no others."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _close(value)
    elif isinstance(node, list):
        for value in node:
            _close(value)


def schema_of(model: Any) -> dict[str, Any]:
    """A self-contained JSON Schema (its definitions under $defs) for one type."""
    schema = msgspec.json.schema(model)
    _close(schema)
    return schema


@cache
def schemas() -> dict[str, dict[str, Any]]:
    """Every document's schema, by its schema name."""
    return {name: schema_of(model) for name, model in DOCUMENTS.items()}


def bench_array() -> dict[str, Any]:
    """`bench -o json`: an array of bench records."""
    return schema_of(list[BenchRecord])


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """A node of `schema` with its $ref followed (one level), for reading its properties."""
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        found: dict[str, Any] = schema["$defs"][ref.removeprefix("#/$defs/")]
        return found
    return node
