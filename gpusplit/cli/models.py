"""Where a command's MODEL argument points: a path, or the built-in demo model."""

from __future__ import annotations

from . import output


def resolve_model(model: str | None) -> str:
    """The path to read; with no MODEL, the demo model (generated on first use) and a note."""
    if model:
        return model
    from ..synthetic import demo_model_path

    path = demo_model_path()
    output.message(f"no MODEL given: using the built-in demo model {path}")
    return str(path)
