"""`gpusplit devices`: every device llama.cpp would use, in its order, with live memory."""

from __future__ import annotations

from typing import List, Optional

import typer

from . import output


def devices(
    rpc: Optional[List[str]] = typer.Option(
        None, "--rpc", envvar="GPUSPLIT_RPC", help="RPC workers host:port[,host:port] (repeatable); their live memory is shown."
    ),
    gpu: Optional[List[str]] = typer.Option(
        None, "--gpu", help='Show hypothetical GPUs instead: 24GiB, "RTX 4090", 16GiB@448GB/s, 2xA100-80GB (repeatable).'
    ),
    timeout: float = typer.Option(3.0, "--timeout", min=0.1, max=600, help="Seconds to wait for each RPC worker."),
    catalog: bool = typer.Option(False, "--catalog", help="List the built-in GPU catalog that --gpu NAME draws on."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON document (schema gpusplit.devices/1)."),
) -> int:
    """List the devices llama.cpp would use (RPC workers, GPUs, then the CPU host row)."""
    if catalog:
        return _print_catalog(json_output)
    from ..devices.inventory import Inventory, detect, host_device
    from ..devices.rpc import parse_endpoints

    endpoints = parse_endpoints(rpc or [])
    if gpu:
        from ..devices.device import pick_best_gpu
        from ..devices.hypothetical import hypothetical_devices

        found = hypothetical_devices(list(gpu))
        best = pick_best_gpu(found)
        found = [d.with_(best=True) if d is best else d for d in found]
        inventory = Inventory(devices=found, host=host_device(), notes=["hypothetical devices from --gpu"])
    else:
        inventory = detect(endpoints, rpc_timeout=timeout)
    if json_output:
        output.emit_json(inventory.as_dict())
        return 0
    _print_inventory(inventory)
    return 0


def _rate(value: float | None) -> str:
    if not value:
        return "-"
    return f"{value / 1e12:.2f} TB/s" if value >= 1e12 else f"{value / 1e9:.0f} GB/s"


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
    return _rate(device.link_bytes_per_s)


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
                _rate(d.bandwidth_bytes_per_s),
                _link(d),
            )
        )
    h = inventory.host
    rows.append(("host", "-", h.name, h.description, h.backend, fb(h.total_bytes), fb(h.free_bytes), "-", "-"))
    output.print_table(
        "devices in llama.cpp's order (* = best GPU: most free memory, then bandwidth)",
        ["#", "NVML", "name", "description", "backend", "total", "free", "bandwidth", "link"],
        rows,
        right=("total", "free", "bandwidth"),
    )
    for note in inventory.notes:
        output.message(note)
    if inventory.nvml is not None and not inventory.nvml.available and inventory.nvml.reason:
        output.message(f"NVML: {inventory.nvml.reason}")


def _print_catalog(json_output: bool) -> int:
    from ..devices.catalog import CATALOG

    if json_output:
        output.emit_json({"schema": "gpusplit.catalog/1", "cards": [e.as_dict() for e in CATALOG]})
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
                _rate(e.bandwidth_bytes_per_s),
                e.interconnect,
                ", ".join(e.aliases[:3]),
            )
            for e in CATALOG
        ),
        right=("memory", "bandwidth"),
    )
    return 0
