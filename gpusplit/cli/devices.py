"""`gpusplit devices`: every device llama.cpp would use, in its order, with live memory."""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

import typer

from . import output
from .errors import CLIError
from .lazy import lazy_module
from .options import NoRepack, Threads, Timeout

if TYPE_CHECKING:
    from .. import api
    from ..devices import catalog
    from ..documents import render
else:
    api, catalog = lazy_module("gpusplit.api"), lazy_module("gpusplit.devices.catalog")
    render = lazy_module("gpusplit.documents.render")


def devices(
    rpc: Optional[List[str]] = typer.Option(
        None, "--rpc", envvar="GPUSPLIT_RPC", help="RPC workers host:port[,host:port] (repeatable); their live memory is shown."
    ),
    gpu: Optional[List[str]] = typer.Option(
        None, "--gpu", help='Show GPUs you do not have instead: 24GiB, "RTX 4090", 16GiB@448GB/s, 2xA100-80GB (repeatable).'
    ),
    timeout: Timeout = 3.0,
    probe: bool = typer.Option(
        False,
        "--probe",
        help="Measure what llama.cpp achieves on each device (tens of seconds); plan, run and bench then use it.",
    ),
    threads: Threads = None,
    no_repack: NoRepack = False,
    catalog: bool = typer.Option(False, "--catalog", help="List the built-in GPU catalog that --gpu NAME draws on."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON document (schema gpusplit.devices/2)."),
) -> int:
    """List the devices llama.cpp would use (RPC workers, GPUs, then the CPU host row)."""
    if catalog:
        return _print_catalog(json_output)
    if probe:
        if gpu:
            raise CLIError("--probe measures real devices, not --gpu ones", "drop --gpu")
        with output.StepProgress("probing") as progress:
            request = api.Request(n_threads=threads, no_repack=no_repack)
            inventory = api.probe_devices(rpc=rpc, timeout=timeout, request=request, on_step=progress.step)
    else:
        inventory = api.detect_devices(rpc=rpc, gpus=gpu, timeout=timeout, threads=threads)
    if json_output:
        output.emit_json(render.devices_document(inventory))
        return 0
    _print_inventory(inventory)
    return 0


def _bandwidth(device) -> str:
    if device.speed is not None:
        return output.format_rate(device.speed.bandwidth["float"]) + " (measured)"
    if device.bandwidth_bytes_per_s:
        return output.format_rate(device.bandwidth_bytes_per_s) + (" (spec)" if device.bandwidth_source == "catalog" else "")
    return "-"


# The weight types each class is named by in the table (devices/speed.py's WEIGHT_CLASSES).
TYPE_NAMES = {"float": "F16", "q8": "Q8_0", "q6k": "Q6_K", "q5k": "Q5_K", "kquant": "Q4_K", "legacy": "Q4_0",
              "q4_1": "Q4_1", "q5_0": "Q5_0", "iq4": "IQ4_XS"}  # fmt: skip


def _speed_row(device) -> tuple[str, ...]:
    s = device.speed
    link = "-"
    if s.rtt_s:
        link = f"{s.rtt_s * 1e6:.0f} us, " + output.format_rate(s.link_bytes_per_s)
        if s.download_bytes_per_s:
            link += " up, " + output.format_rate(s.download_bytes_per_s) + " back"
    threads = f" ({s.threads} threads)" if s.threads else ""
    threads += ", --no-repack" if s.no_repack else ""
    rows = s.row_overhead_s or {}
    return (
        device.name + threads,
        f"{s.token_overhead_s * 1e3:.3f} ms",
        f"{s.layer_overhead_s * 1e6:.0f} us",
        " / ".join(f"{rows[k] * 1e9:.1f}" for k in ("float", "quant") if k in rows) + " ns" if rows else "-",
        f"{s.flops['float'] / 1e9:.0f} GFLOP/s",
        link,
        s.measured_at,
    )


def _read_row(device) -> tuple[str, ...]:
    """A device's read rate (GB/s) per weight type: its copies' apart where the CPU makes them
    (CPU_REPACK, AMX), and a type whose probe model failed marked."""
    s = device.speed

    def cell(cls: str) -> str:
        if cls not in s.bandwidth:
            return "-"
        text = f"{s.bandwidth[cls] / 1e9:.0f}"
        copied = s.copied_bandwidth(cls)
        if copied:
            text += f" ({copied / 1e9:.0f} copied)"
        return text

    return (device.name, *(cell(cls) for cls in TYPE_NAMES))


def _link(device) -> str:
    info = device.nvml
    if info is not None and info.pcie_gen:
        text = f"PCIe {info.pcie_gen} x{info.pcie_width}"
        if info.pcie_gen_max and (info.pcie_gen_max, info.pcie_width_max) != (info.pcie_gen, info.pcie_width):
            text += f" (max {info.pcie_gen_max} x{info.pcie_width_max})"
        if info.nvlink_links_up:
            text += f", NVLink x{info.nvlink_links_up}"
        return text
    if device.endpoint:
        return "network"
    return output.format_rate(device.link_bytes_per_s)


def _print_inventory(inventory) -> None:
    fb = output.format_bytes
    rows = []
    for d in inventory.devices:
        rows.append(
            (
                f"{d.index}{' *' if d.best else ''}",
                str(d.nvml.index) if d.nvml else "-",
                d.name,
                d.description,
                d.backend,
                fb(d.total_bytes),
                fb(d.free_bytes),
                _bandwidth(d),
                _link(d),
            )
        )
    h = inventory.host
    rows.append(("host", "-", h.name, h.description, h.backend, fb(h.total_bytes), fb(h.free_bytes), _bandwidth(h), "-"))
    output.print_table(
        "devices in llama.cpp's order (* = best GPU: most free memory, then bandwidth)",
        ["#", "NVML", "name", "description", "backend", "total", "free", "bandwidth", "link"],
        rows,
        right=("total", "free", "bandwidth"),
    )
    measured = [d for d in [*inventory.devices, inventory.host] if d.speed is not None]
    if measured:
        output.print_table(
            "measured by gpusplit devices --probe (what llama.cpp achieves)",
            ["device", "per token", "per layer", "per row (f16 / quantized)", "prompt f16", "link", "measured"],
            [_speed_row(d) for d in measured],
            right=("per token", "per layer", "per row (f16 / quantized)", "prompt f16"),
        )
        output.print_table(
            "weights read per second (GB/s; copied: the CPU's CPU_REPACK / AMX copies; - : not measured)",
            ["device", *TYPE_NAMES.values()],
            [_read_row(d) for d in measured],
            right=tuple(TYPE_NAMES.values()),
        )
    engine = inventory.engine
    if engine is not None and engine.installed and engine.cpu_extra_buffers is not None:
        extra = ", ".join(engine.cpu_extra_buffers) or "none"
        wide = [
            f for f in engine.cpu_features or () if f.startswith(("AVX512", "AMX", "DOTPROD", "MATMUL_INT8", "SVE", "KLEIDIAI"))
        ]
        output.message(
            f"CPU backend: extra buffer types {extra} (weights it computes with are copied there beside the mapped file; "
            f"CPU_REPACK rules: {engine.cpu_repack or 'none'})" + (f"; built for {', '.join(wide)}" if wide else "")
        )
    if inventory.group_speed is not None:
        g = inventory.group_speed
        output.message(
            f"tensor parallelism over these devices: {g.layer_sync_s * 1e3:.2f} ms of synchronisation per layer per token"
        )
    for note in inventory.notes:
        output.message(note.text)
    if inventory.nvml is not None and not inventory.nvml.available and inventory.nvml.reason:
        output.message(f"NVML: {inventory.nvml.reason}")


def _print_catalog(json_output: bool) -> int:
    if json_output:
        output.emit_json(render.catalog_document(catalog.CATALOG))
        return 0
    output.print_table(
        "built-in GPU catalog (use with --gpu NAME)",
        ["name", "vendor", "backend", "memory", "bandwidth", "link", "aliases"],
        (
            (
                e.name,
                e.vendor,
                e.backend,
                output.format_bytes(e.memory_bytes),
                output.format_rate(e.bandwidth_bytes_per_s),
                e.interconnect,
                ", ".join(e.aliases[:3]),
            )
            for e in catalog.CATALOG
        ),
        right=("memory", "bandwidth"),
    )
    return 0
