"""Where a command's MODEL argument points: a path, a URL, or the built-in demo model."""

from __future__ import annotations

import sys

from . import output
from .errors import CLIError


def resolve_model(model: str | None) -> str:
    """The location to read; with no MODEL, the demo model (generated on first use) and a note."""
    if model:
        return model
    from ..synthetic import demo_model_path

    path = demo_model_path()
    output.message(f"no MODEL given: using the built-in demo model {path}")
    return str(path)


def read_model_reporting(location: str):
    """read_model, with a progress line on stderr while a remote header downloads."""
    from ..gguf.model import read_model
    from ..gguf.remote import is_url

    if not is_url(location):
        return read_model(location)
    fetched = [0]
    interactive = sys.stderr.isatty()

    def on_fetch(total: int) -> None:
        fetched[0] = total
        if interactive:
            sys.stderr.write(f"\rgpusplit: fetched {output.format_bytes(total)} of the header")
            sys.stderr.flush()

    info = read_model(location, on_fetch=on_fetch)
    if interactive:
        sys.stderr.write("\n")
    output.message(f"read the remote header: {output.format_bytes(fetched[0])} fetched ({fetched[0]:,} bytes)")
    return info


def require_local(location: str, command: str) -> None:
    from ..gguf.remote import is_url

    if is_url(location):
        raise CLIError(f"{command} needs a local model file, not a URL", "download it first; plan and inspect read URLs")
