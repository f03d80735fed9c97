"""What llama.cpp's log says it allocated, per device and component (model, KV, compute, output).

Lines look like `load_tensors:   CPU_Mapped model buffer size =     0.25 MiB`,
`llama_kv_cache: RPC0[127.0.0.1:50052] KV buffer size = 0.31 MiB`,
`sched_reserve:       CUDA0 compute buffer size =    88.02 MiB`,
`llama_context:        CPU  output buffer size =     0.49 MiB`.
llama.cpp prints two decimals of MiB, so each figure is exact to +-0.005 MiB.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..devices.cpu import EXTRA_BUFFERS

MIB = 1024 * 1024
_LINE = re.compile(
    r"(?P<phase>load_tensors|llama_kv_cache|llama_kv_cache_iswa|sched_reserve|llama_context|llama_memory_recurrent"
    r"|llama_adapter_lora_init_impl):\s+"
    r"(?P<buffer>.+?)\s+(?P<kind>model|KV|compute|output|RS|LoRA)\s+buffer size =\s*(?P<mib>[\d.]+) MiB"
)
_LOAD_START = "llama_model_loader: loaded meta data"  # the first line of each model load
_RPC_BUFFER = re.compile(r"^RPC(?P<dev>\d+)\[(?P<endpoint>[^\]]+)\]$")


@dataclass
class BufferReport:
    """Bytes per device name per component, as llama.cpp logged them."""

    by_device: dict[str, dict[str, int]] = field(default_factory=dict)
    host_weights: dict[str, int] = field(default_factory=dict)  # the host's weights by buffer: CPU_Mapped, AMX, ...

    def add(self, device: str, component: str, nbytes: int) -> None:
        slot = self.by_device.setdefault(device, {})
        slot[component] = slot.get(component, 0) + nbytes

    def total(self, device: str) -> int:
        return sum(self.by_device.get(device, {}).values())


def rpc_buffer_map(devices: list[tuple[str, str | None]]) -> dict[str, str]:
    """(device name, endpoint) pairs in llama.cpp's order -> {'host:port#k': name}, k counting
    the devices of one worker (its buffers are named RPC<k>[host:port])."""
    names: dict[str, str] = {}
    per_endpoint: dict[str, int] = {}
    for name, endpoint in devices:
        if endpoint:
            k = per_endpoint.get(endpoint, 0)
            names[f"{endpoint}#{k}"] = name
            per_endpoint[endpoint] = k + 1
    return names


def buffer_device(buffer: str, rpc_devices: dict[str, str] | None = None) -> str:
    """Map a buffer name to the device that holds it: CPU_Mapped/CPU_REPACK/AMX -> CPU,
    RPC0[host:port] -> that worker's device name (RPCn in the model's order)."""
    buffer = buffer.strip()
    match = _RPC_BUFFER.match(buffer)
    if match:
        key = f"{match['endpoint']}#{match['dev']}"
        if rpc_devices and key in rpc_devices:
            return rpc_devices[key]
        return f"RPC[{match['endpoint']}]#{match['dev']}"
    if buffer.startswith("CPU") or buffer == "AMX":
        return "CPU"  # the mapped file and the CPU backend's copies (CPU_REPACK, CPU_KLEIDIAI, AMX)
    # CUDA0_Split, CUDA_Host -> the device (pinned host memory is host RAM)
    if buffer.endswith("_Host"):
        return "CPU"
    return buffer.split("_")[0]


def extra_weight_buffers(lines: list[str]) -> tuple[str, ...]:
    """The CPU backend's extra buffer types (AMX, CPU_REPACK, CPU_KLEIDIAI) that llama.cpp put
    weights in at its last model load, as its log says, in the order logged."""
    starts = [i for i, line in enumerate(lines) if _LOAD_START in line]
    found: list[str] = []
    for line in lines[starts[-1] if starts else 0 :]:
        match = _LINE.search(line)
        if match and match["kind"] == "model" and float(match["mib"]) > 0:
            buffer = match["buffer"].strip()
            if buffer in EXTRA_BUFFERS and buffer not in found:
                found.append(buffer)
    return tuple(found)


def parse_buffers(lines: list[str], rpc_devices: dict[str, str] | None = None) -> BufferReport:
    report = BufferReport()
    for line in lines:
        match = _LINE.search(line)
        if not match:
            continue
        kinds = {"model": "weights", "LoRA": "weights", "KV": "kv", "RS": "kv", "compute": "compute", "output": "output"}
        component = kinds[match["kind"]]
        device = buffer_device(match["buffer"], rpc_devices)
        nbytes = round(float(match["mib"]) * MIB)
        report.add(device, component, nbytes)
        if device == "CPU" and match["kind"] == "model":
            buffer = match["buffer"].strip()
            report.host_weights[buffer] = report.host_weights.get(buffer, 0) + nbytes
    return report


# llama.cpp's tensor parallelism wraps the devices in one "Meta()" device and logs one figure per
# buffer for the whole group: the largest device's share (ggml-backend-meta.cpp takes the max).
TENSOR_GROUP = "Meta()"


def spread_group(by_device: Mapping[str, Mapping[str, int]], group: list[str]) -> dict[str, dict[str, int]]:
    """Give each device of a tensor-parallel group the group's `Meta()` figure (a bound, and exact
    for equal shares), in place of the Meta() entry."""
    meta = by_device.get(TENSOR_GROUP)
    out = {name: dict(parts) for name, parts in by_device.items()}
    if meta is None or not group:
        return out
    del out[TENSOR_GROUP]
    out.update({name: dict(meta) for name in group})
    return out
