"""The only writer: tables, text and JSON to stdout, notes, warnings, progress and errors to stderr.

Every string that reaches either stream passes through here and is made safe for a terminal:
escape sequences (CSI, OSC, DCS, ...) are removed whole, and C0 controls (but newline and tab
where text keeps its lines), DEL, C1 controls and bidi overrides are removed or replaced. Model
files, RPC workers and llama.cpp's log are untrusted; so, for simplicity, is everything else.
NO_COLOR (and a pipe) means no escape codes of our own either. rich is imported only when a
table is printed, so `--json` and errors stay cheap.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..base.text import sanitize, sanitize_text
from ..base.units import format_bytes, format_count, format_rate

# rich is imported where a table, bar or progress is drawn: this module is on `gpusplit --help`'s
# path (errors are printed through it), which imports typer and nothing heavier.
if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

__all__ = ["format_bytes", "format_count", "format_rate", "sanitize", "sanitize_text"]  # re-exported for the command modules


def _sanitize_doc(value: Any) -> Any:
    if isinstance(value, str):
        return sanitize_text(value)
    if isinstance(value, dict):
        return {sanitize_text(str(k)): _sanitize_doc(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitize_doc(v) for v in value]
    return value


def _write(stream: Any, text: str) -> None:
    stream.write(text)
    stream.flush()


# ---------------------------------------------------------------------------------------------
# stdout


def emit_json(doc: Any) -> None:
    """Exactly one JSON document to stdout."""
    _write(sys.stdout, json.dumps(_sanitize_doc(doc), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def emit_jsonl(record: Any) -> None:
    """One JSON line to stdout, flushed, so a stream survives an interruption."""
    _write(sys.stdout, json.dumps(_sanitize_doc(record), ensure_ascii=False, allow_nan=False) + "\n")


def stream_text(text: str) -> None:
    """Generated text as it arrives: lines and tabs kept, escapes and controls removed."""
    _write(sys.stdout, sanitize_text(text))


def line(text: str = "") -> None:
    """One plain line of our own to stdout (a version, a command line)."""
    _write(sys.stdout, sanitize(text, max_chars=100_000) + "\n")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[str] = ()) -> None:
    """A GitHub/llama-bench markdown table to stdout; cells are sanitized and '|' escaped."""

    def cell(value: Any) -> str:
        return sanitize("" if value is None else str(value), max_chars=500).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("| " + " | ".join("---:" if h in right else "---" for h in header) + " |")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    _write(sys.stdout, "\n".join(lines) + "\n")


def csv_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """RFC 4180 CSV to stdout; text cells are sanitized (numbers and empty cells stay as they are)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([sanitize(h, 500) for h in header])
    for row in rows:
        writer.writerow(["" if c is None else sanitize(c, 2000) if isinstance(c, str) else c for c in row])
    _write(sys.stdout, buf.getvalue())


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


def print_fields(title: str, fields: Iterable[tuple[str, str]], max_chars: int = 2000) -> None:
    """A two-column 'name  value' table to stdout."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(sanitize(title, 500)), show_header=False, box=None, title_justify="left", pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in fields:
        table.add_row(Text(sanitize(name)), Text(sanitize(value, max_chars)))
    _make_console(sys.stdout).print(table)


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[str] = ()) -> None:
    """A table to stdout; cells are plain sanitized text (never rich markup)."""
    from rich.table import Table
    from rich.text import Text

    # Text, never str: rich would read "[link=...]" in a model's name as markup.
    table = Table(title=None if title is None else Text(sanitize(title, 500)), title_justify="left")
    for col in columns:
        table.add_column(Text(sanitize(col)), justify="right" if col in right else "left")
    for row in rows:
        table.add_row(*(Text(sanitize(cell)) for cell in row))
    _make_console(sys.stdout).print(table)


# Memory bars: each part its own character (readable without colour) and colour.
BAR_PARTS = (("weights", "█", "blue"), ("KV", "▓", "dark_orange"), ("compute", "▒", "green"), ("runtime", "░", "magenta"))


def bar_cells(parts: Sequence[int], capacity: int, width: int) -> list[int]:
    """Cells of a `width`-cell bar per part, scaled to `capacity` (or to the parts' total where they
    exceed it); a part that is not nothing gets a cell at least, and rounding never overfills."""
    scale = max(capacity, sum(parts), 1)
    cells, edge, total = [], 0, 0
    for value in parts:
        total += value
        end = min(width, round(total / scale * width))
        end = max(end, edge + 1) if value > 0 and edge < width else end
        cells.append(max(end - edge, 0))
        edge = max(edge, end)
    return cells


def print_bars(title: str, rows: Iterable[tuple[str, dict[str, int], int]], width: int = 40) -> None:
    """Per device, its planned memory by part against its free memory: one bar each, after a legend."""
    from rich.text import Text

    rows = list(rows)
    label_width = max((len(sanitize(label)) for label, _, _ in rows), default=0)
    console = _make_console(sys.stdout)
    legend = Text(sanitize(title) + " (")
    for i, (name, char, style) in enumerate(BAR_PARTS):
        legend.append(("" if i == 0 else " ") + char, style=style)
        legend.append(" " + name)
    legend.append(" · free)")
    console.print(legend)
    for label, parts, capacity in rows:
        values = [int(parts.get(name, 0)) for name, _, _ in BAR_PARTS]
        line = Text("  " + sanitize(label).ljust(label_width) + " ")
        cells = bar_cells(values, capacity, width)
        for (_, char, style), n in zip(BAR_PARTS, cells):
            line.append(char * n, style=style)
        line.append("·" * max(width - sum(cells), 0), style="dim")
        used = sum(values)
        over = used > capacity
        line.append(" " + format_bytes(used) + " of " + format_bytes(capacity) + " free", style="bold red" if over else None)
        if over:
            line.append(" - does not fit", style="bold red")
        console.print(line)


# ---------------------------------------------------------------------------------------------
# stderr


def message(text: str) -> None:
    """A note for the person at the terminal."""
    _write(sys.stderr, f"gpusplit: {sanitize(text, max_chars=4000)}\n")


def warn(text: str) -> None:
    _write(sys.stderr, f"gpusplit: warning: {sanitize(text, max_chars=4000)}\n")


def error(text: str) -> None:
    _write(sys.stderr, f"gpusplit: error: {sanitize(text, max_chars=4000)}\n")


def log_line(text: str) -> None:
    """One line of llama.cpp's log (run --verbose)."""
    _write(sys.stderr, sanitize(text, max_chars=4000) + "\n")


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def fetch_progress(total: int) -> None:
    """Bytes of a remote header fetched so far, on one terminal line (terminals only)."""
    if sys.stderr.isatty():
        _write(sys.stderr, f"\rgpusplit: fetched {format_bytes(total)} of the header")


def download_progress(done: int, total: int) -> None:
    """Bytes of a download so far, on one terminal line (terminals only)."""
    if sys.stderr.isatty():
        of = f" of {format_bytes(total)}" if total else ""
        _write(sys.stderr, f"\rgpusplit: downloaded {format_bytes(done)}{of}")


def end_progress_line() -> None:
    if sys.stderr.isatty():
        _write(sys.stderr, "\n")


class LoadProgress:
    """A load progress bar on stderr (terminals only), closed at the first token."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn

        self._bar = Progress(
            TextColumn("loading"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            console=_make_console(sys.stderr),
            transient=True,
        )
        self._task = self._bar.add_task("load", total=1.0)
        self._bar.start()
        self._open = True

    def update(self, value: float) -> None:
        if self._open:
            self._bar.update(self._task, completed=value)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._bar.stop()


class StepProgress:
    """A progress bar on stderr for a job of counted steps (a line per step when not a terminal)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> StepProgress:
        if sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn(sanitize(self.title)),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=_make_console(sys.stderr),
                transient=True,
            )
            self._task = self._bar.add_task("", total=None)
            self._bar.start()
        return self

    def step(self, done: int, total: int, text: str) -> None:
        if self._bar is not None:
            assert self._task is not None
            self._bar.update(self._task, completed=done, total=total, description=sanitize(text))
        else:
            message(f"{self.title} [{done}/{total}] {text}")

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
