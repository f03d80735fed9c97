"""The devices to plan for: what llama.cpp would use here (its device registry through the engine
when it is installed, NVML, RPC workers), hypothetical cards (--gpu), or a saved devices file;
each carrying its cached measured speed. The engine is imported only when detection needs it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .devices.cpu import default_threads
from .devices.inventory import Inventory, attach_speeds, detect, host_device
from .devices.speed import speed_folder
from .errors import InputError
from .values import parse_size


def detect_devices(
    *,
    rpc: Sequence[str] | None = None,
    gpus: Sequence[str] | None = None,
    devices_file: str | os.PathLike[str] | None = None,
    timeout: float = 3.0,
    ram: int | str | None = None,
    threads: int | None = None,
) -> Inventory:
    """The devices to plan for, in llama.cpp's order, and the host.

    By default what llama.cpp would use here (its device registry when the engine is installed,
    NVML, and the `rpc` workers as "host:port"); `gpus` plans for hypothetical cards instead
    ("24GiB", "RTX 4090", "16GiB@448GB/s", "2xA100-80GB"), `devices_file` for a saved
    `gpusplit devices --json` document. `ram` replaces the host's free memory. Devices measured by
    `probe_devices` carry their speed (the CPU's at `threads`, default all cores).
    """
    from .devices.rpc import parse_endpoints

    if gpus and devices_file:
        raise InputError("--gpu and --devices-file both describe the devices", "give one of them")
    if gpus:
        from .devices.device import pick_best_gpu
        from .devices.hypothetical import hypothetical_devices

        found = hypothetical_devices(list(gpus))
        best = pick_best_gpu(found)
        found = [d.with_(best=True) if d is best else d for d in found]
        inventory = Inventory(devices=found, host=host_device(), notes=["hypothetical devices from --gpu"])
    elif devices_file:
        from .devices.hypothetical import load_devices_file

        found, file_host, group, file_engine = load_devices_file(os.fspath(devices_file))
        inventory = Inventory(
            devices=[d.with_(index=i) for i, d in enumerate(found)],
            host=file_host or host_device(),
            engine=file_engine,
            engine_from_file=True,
        )
        inventory.group_speed = group
    else:
        registry = engine = None
        from .engine import engine_available

        if engine_available():
            from .engine.inventory import engine_summary, registry_devices

            registry, cpu = registry_devices()
            engine = engine_summary(registry, cpu)
        inventory = detect(parse_endpoints(list(rpc or [])), rpc_timeout=timeout, registry=registry, engine=engine)
        from .engine import engine_build_id

        inventory = attach_speeds(inventory, threads or default_threads(), engine_build_id(), speed_folder())
    ram_bytes = parse_size(ram, "--ram")
    if ram_bytes == 0:
        raise InputError("--ram 0 leaves the host no memory", "give the host's RAM, for example --ram 64GiB")
    if ram_bytes:
        inventory.host = inventory.host.with_(total_bytes=ram_bytes, free_bytes=ram_bytes)
    return inventory
