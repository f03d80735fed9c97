"""The one place that writes: human tables to stdout, one JSON document to stdout, and warnings,
progress and errors to stderr. Every string from a model file passes through `sanitize` first.

rich is imported only when a table is printed, so `--json` and errors stay cheap.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:
    from rich.console import Console

# ANSI/VT escape sequences (CSI, OSC, and two-byte ESC forms) are removed whole, then every
# remaining control or format character (C0, DEL, C1, bidi overrides) becomes '?'.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def sanitize(text: str, max_chars: int = 200) -> str:
    """Make untrusted text safe for a terminal: no escapes, no controls, bounded length."""
    text = _CONTROLS.sub("?", _ESCAPES.sub("", text))
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text


_STREAM_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def sanitize_stream(text: str) -> str:
    """Generated text for a terminal: escapes and controls removed, newlines and tabs kept."""
    return _STREAM_CONTROLS.sub("", _ESCAPES.sub("", text))


def _sanitize_doc(value: Any) -> Any:
    if isinstance(value, str):
        return sanitize(value, max_chars=4096)
    if isinstance(value, dict):
        return {sanitize(str(k), 4096): _sanitize_doc(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitize_doc(v) for v in value]
    return value


def emit_json(doc: Any) -> None:
    """Print exactly one JSON document to stdout."""
    sys.stdout.write(json.dumps(_sanitize_doc(doc), indent=2, ensure_ascii=False, allow_nan=False))
    sys.stdout.write("\n")
    sys.stdout.flush()


def emit_jsonl(record: Any) -> None:
    """Print one JSON line to stdout and flush it, so a stream survives an interruption."""
    sys.stdout.write(json.dumps(_sanitize_doc(record), ensure_ascii=False, allow_nan=False) + "\n")
    sys.stdout.flush()


def _make_console(stream: Any) -> Console:
    from rich.console import Console

    interactive = hasattr(stream, "isatty") and stream.isatty()
    return Console(
        file=stream,
        highlight=False,
        no_color=bool(os.environ.get("NO_COLOR")) or None,
        # Piped output keeps whole table rows rather than rich's 80-column default.
        width=None if interactive else 200,
        emoji=False,
    )


def stdout_console() -> Console:
    return _make_console(sys.stdout)


def stderr_console() -> Console:
    return _make_console(sys.stderr)


def message(text: str) -> None:
    """A note for the person at the terminal (stderr, plain)."""
    sys.stderr.write(f"gpusplit: {text}\n")
    sys.stderr.flush()


def warn(text: str) -> None:
    sys.stderr.write(f"gpusplit: warning: {text}\n")
    sys.stderr.flush()


def error(text: str) -> None:
    sys.stderr.write(f"gpusplit: error: {text}\n")
    sys.stderr.flush()


def format_bytes(n: int | float | None) -> str:
    """Bytes in binary units, as llama.cpp and nvidia-smi show them."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_count(n: int) -> str:
    """Parameter counts the way model cards say them: 8.03 B, 135 M."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def print_fields(title: str, fields: Iterable[tuple[str, str]], max_chars: int = 2000) -> None:
    """A two-column 'name  value' table to stdout."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_header=False, box=None, title_justify="left", pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in fields:
        table.add_row(Text(name), Text(sanitize(value, max_chars)))
    stdout_console().print(table)


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[str] = ()) -> None:
    """A table to stdout; cells are plain text (never rich markup)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left")
    for row in rows:
        table.add_row(*(Text(sanitize(cell)) for cell in row))
    stdout_console().print(table)
