"""`gpusplit worker`: serve this machine's devices to other machines over llama.cpp's RPC."""

from __future__ import annotations

import os
from typing import List, Optional

import typer

from . import output
from .errors import CLIError


def worker(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Non-loopback needs --allow-remote."),
    port: int = typer.Option(50052, "--port", min=1, max=65535, help="TCP port to listen on."),
    device: Optional[List[str]] = typer.Option(
        None, "--device", "-d", help="Local device(s) to serve, by ggml name (CPU, CUDA0, ...). Default: every GPU, else the CPU."
    ),
    threads: int = typer.Option(0, "--threads", "-t", min=0, help="CPU threads for computation (0: all cores)."),
    allow_remote: bool = typer.Option(
        False, "--allow-remote", help="Allow a non-loopback --host. The RPC protocol has no authentication or encryption."
    ),
) -> int:
    """Serve this machine's devices to other gpusplit / llama.cpp clients over RPC (until Ctrl-C)."""
    from ..engine import EngineError
    from ..engine.registry import supports_rpc
    from ..engine.worker import WorkerPlan, check_port, choose_devices, is_loopback, serve

    if not is_loopback(host) and not allow_remote:
        raise CLIError(
            f"--host {host} is not a loopback address and the RPC protocol has no authentication",
            "add --allow-remote on a trusted network, or keep the default 127.0.0.1",
        )
    if not supports_rpc():
        from ..engine import REINSTALL_RPC_HINT

        raise EngineError("the installed llama-cpp-python was built without RPC", REINSTALL_RPC_HINT)
    if not is_loopback(host):
        output.warn(f"serving on {host}: anyone who can reach port {port} can use these devices (no authentication)")
    names = [n for value in (device or []) for n in value.split(",") if n.strip()]
    devices = choose_devices(names)
    check_port(host, port)
    plan = WorkerPlan(f"{host}:{port}", devices, threads or os.cpu_count() or 1)
    listing = ", ".join(
        f"{output.sanitize(d.name)} ({output.sanitize(d.description)}, {output.format_bytes(d.free_bytes)} free)" for d in devices
    )

    def started() -> None:
        output.message(f"worker serving {listing} on {plan.endpoint} with {plan.threads} threads; Ctrl-C stops it")

    code = serve(plan, on_started=started)
    if code == 0:
        output.message("worker stopped")
    else:
        raise EngineError(f"the RPC server on {plan.endpoint} stopped unexpectedly")
    return code
