"""`gpusplit devices`: every device llama.cpp would use, in its order, with live memory."""

from __future__ import annotations

from typing import List, Optional

import typer

from . import output
from .options import Timeout


def devices(
    rpc: Optional[List[str]] = typer.Option(
        None, "--rpc", envvar="GPUSPLIT_RPC", help="RPC workers host:port[,host:port] (repeatable); their live memory is shown."
    ),
    gpu: Optional[List[str]] = typer.Option(
        None, "--gpu", help='Show GPUs you do not have instead: 24GiB, "RTX 4090", 16GiB@448GB/s, 2xA100-80GB (repeatable).'
    ),
    timeout: Timeout = 3.0,
    catalog: bool = typer.Option(False, "--catalog", help="List the built-in GPU catalog that --gpu NAME draws on."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON document (schema gpusplit.devices/1)."),
) -> int:
    """List the devices llama.cpp would use (RPC workers, GPUs, then the CPU host row)."""
    if catalog:
        return _print_catalog(json_output)
    from .. import api

    inventory = api.detect_devices(rpc=rpc, gpus=gpu, timeout=timeout)
    if json_output:
        output.emit_json(inventory.to_dict())
        return 0
    _print_inventory(inventory)
    return 0


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
                output.format_rate(d.bandwidth_bytes_per_s),
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
        from ..documents import catalog_document

        output.emit_json(catalog_document(CATALOG))
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
            for e in CATALOG
        ),
        right=("memory", "bandwidth"),
    )
    return 0
