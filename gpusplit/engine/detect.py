"""The devices to plan for: what llama.cpp would use here (its device registry through the engine
when it is installed, NVML, RPC workers), hypothetical cards (--gpu), or a saved devices file;
each carrying its cached measured speed. The engine is imported only when detection needs it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..base.errors import InputError
from ..base.reasons import Reason
from ..base.units import parse_size
from ..devices.cpu import default_threads
from ..devices.device import pick_best_gpu
from ..devices.hypothetical import hypothetical_devices
from ..devices.inventory import Inventory, attach_speeds, detect, host_device
from ..devices.rpc import parse_endpoints
from ..devices.speed import speed_folder
from . import engine_available, engine_build_id
from .inventory import engine_summary, registry_devices


def detect_devices(
    *,
    rpc: Sequence[str] | None = None,
    gpus: Sequence[str] | None = None,
    timeout: float = 3.0,
    ram: int | str | None = None,
    threads: int | None = None,
) -> Inventory:
    """The devices to plan for, in llama.cpp's order, and the host.

    By default what llama.cpp would use here (its device registry when the engine is installed,
    NVML, and the `rpc` workers as "host:port"); `gpus` plans for hypothetical cards instead
    ("24GiB", "RTX 4090", "16GiB@448GB/s", "2xA100-80GB"). `ram` replaces the host's free memory. Devices measured by
    `probe_devices` carry their speed (the CPU's at `threads`, default all cores).
    """
    if gpus:
        found = hypothetical_devices(list(gpus))
        best = pick_best_gpu(found)
        found = [d.with_(best=True) if d is best else d for d in found]
        inventory = Inventory(
            devices=found, host=host_device(), notes=[Reason("hypothetical-devices", "hypothetical devices from --gpu")]
        )
    else:
        registry = engine = None
        if engine_available():
            registry, cpu = registry_devices()
            engine = engine_summary(registry, cpu)
        inventory = detect(parse_endpoints(list(rpc or [])), rpc_timeout=timeout, registry=registry, engine=engine)
        inventory = attach_speeds(inventory, threads or default_threads(), engine_build_id(), speed_folder())
    return with_ram(inventory, ram)


def with_ram(inventory: Inventory, ram: int | str | None) -> Inventory:
    """The inventory with `ram` as the host's memory (planning for another machine's RAM)."""
    ram_bytes = parse_size(ram, "ram")
    if ram_bytes == 0:
        raise InputError("{p.ram} 0 leaves the host no memory", "give the host's RAM, for example 64GiB", parameter="ram")
    if ram_bytes:
        inventory.host = inventory.host.with_(total_bytes=ram_bytes, free_bytes=ram_bytes)
    return inventory
