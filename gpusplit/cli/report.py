"""`gpusplit report`: one self-contained HTML page from bench, tune, plan, run and devices outputs."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, List

import typer

from ..base.version import __version__
from . import output
from .lazy import lazy_module

if TYPE_CHECKING:
    from .. import api
else:
    api = lazy_module("gpusplit.api")


def report(
    files: Annotated[
        List[Path],
        typer.Argument(
            help="bench JSONL (-o) or --json, tune --trials JSONL or --json, plan/run/devices --json files, in any mix.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the HTML page; a page report wrote there before is replaced, any other file refused.",
        ),
    ] = Path("report.html"),
) -> int:
    """Draw results as one HTML page that opens offline: charts with their numbers in tables."""
    generated_by = f"gpusplit {__version__}: " + shlex.join(["gpusplit", "report", *map(str, files), "-o", str(out)])
    size = api.write_report(files, out, on_warning=output.warn, generated_by=generated_by)
    output.message(f"report written to {out} ({size // 1024} KiB)")
    return 0
