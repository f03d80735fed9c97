"""`gpusplit worker`: serve this machine's devices to other machines over llama.cpp's RPC."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from . import output
from .lazy import lazy_module

if TYPE_CHECKING:
    from .. import api
else:
    api = lazy_module("gpusplit.api")


def worker(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Non-loopback needs --allow-remote."),
    port: int = typer.Option(50052, "--port", min=1, max=65535, help="TCP port to listen on."),
    device: Optional[List[str]] = typer.Option(
        None, "--device", "-d", help="Local device(s) to serve, by ggml name (CPU, CUDA0, ...). Default: every GPU, else the CPU."
    ),
    threads: int = typer.Option(
        0,
        "--threads",
        "-t",
        min=0,
        help="CPU threads for computation (0: $GPUSPLIT_THREADS, else every CPU this process may run on).",
    ),
    allow_remote: bool = typer.Option(
        False, "--allow-remote", help="Allow a non-loopback --host. The RPC protocol has no authentication or encryption."
    ),
    cache: bool = typer.Option(
        False,
        "--cache",
        "-c",
        help="Keep received weights on disk (llama.cpp's cache folder, as ggml-rpc-server -c): a second load reads them here, not over the link.",
    ),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="The folder for --cache (implies it)."),
) -> int:
    """Serve this machine's devices to other gpusplit / llama.cpp clients over RPC (until Ctrl-C)."""
    names = [n for value in (device or []) for n in value.split(",") if n.strip()]
    api.serve_worker(
        host,
        port,
        devices=names,
        threads=threads or None,
        allow_remote=allow_remote,
        cache=cache_dir if cache_dir is not None else cache,
        on_warning=output.warn,
        on_started=output.message,
    )
    output.message("worker stopped")
    return 0
