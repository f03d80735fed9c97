"""Predicted speed from bytes, bandwidths and links: a roofline estimate, not a measurement.

Generating one token reads every weight that token touches (all dense weights, the used share of
the experts) and the KV cache once, on the device that holds them, at that device's memory
bandwidth; devices work one after another in a layer split, and each hop between devices moves
one activation row over the link. Prompt processing reads the weights once per ubatch, which
bounds its speed from above (compute throughput, not modelled, bounds it too).
"""

from __future__ import annotations

from dataclasses import dataclass

from .gguf.model import ModelInfo
from .memory import MemoryPlan, Settings, layer_kv_bytes

DEFAULT_CPU_BANDWIDTH = 60e9  # bytes/s: typical dual-channel DDR5 desktop; --cpu-bandwidth overrides
DEFAULT_LINK = 25e9  # bytes/s: PCIe 4.0 x16 in practice, when a device's link is unknown
NETWORK_LINK = 1.25e9  # bytes/s: 10 GbE, for RPC workers
HOP_LATENCY_S = 20e-6  # fixed cost of one device-to-device hop (launch + sync)
NETWORK_LATENCY_S = 200e-6


@dataclass(frozen=True)
class Prediction:
    tg_tokens_per_s: float | None  # generation
    pp_tokens_per_s: float | None  # prompt processing, memory-bound upper limit
    bytes_per_token: int
    seconds_per_token: float | None
    limited_by: str  # the device whose reads take longest
    assumptions: tuple[str, ...]


def _read_fraction(model: ModelInfo) -> float:
    """Share of expert weights one token reads."""
    return model.n_expert_used / model.n_expert if model.n_expert else 1.0


def predict(
    model: ModelInfo,
    memory: MemoryPlan,
    settings: Settings,
    bandwidths: list[float | None],
    links: list[float | None],
    endpoints: list[str | None],
    cpu_bandwidth: float = DEFAULT_CPU_BANDWIDTH,
) -> Prediction:
    """Tokens/s for this placement where every device holding weights has a known bandwidth."""
    expert_share = _read_fraction(model)
    assumptions: list[str] = []
    per_device_bytes: dict[int | None, float] = {}
    layer_device = memory.layer_device
    for il, dev in enumerate(layer_device):
        group = model.output if il == model.n_layer else model.blocks[il]
        nbytes = 0.0
        for t in group.tensors:
            nbytes += t.n_bytes * (expert_share if "_exps" in t.name else 1.0)
        if il < model.n_layer:
            # Half-full cache on average over a generation: K and V read once per token.
            nbytes += layer_kv_bytes(model, settings, il) * 0.5 / settings.n_parallel
        per_device_bytes[dev] = per_device_bytes.get(dev, 0.0) + nbytes
    if model.input.n_bytes:
        # get_rows reads one embedding row: negligible; the CPU still runs the input layer.
        per_device_bytes.setdefault(None, 0.0)

    if memory.split_shares:
        return _predict_parallel(model, memory, settings, per_device_bytes, bandwidths, links, endpoints, cpu_bandwidth)
    seconds = 0.0
    slowest, slowest_s = "", -1.0
    for dev, nbytes in per_device_bytes.items():
        if dev is None:
            bw = cpu_bandwidth
            if nbytes > 0:
                assumptions.append(f"CPU memory bandwidth assumed {cpu_bandwidth / 1e9:.0f} GB/s (--cpu-bandwidth)")
        else:
            bw = bandwidths[dev] if dev < len(bandwidths) else None
        if bw is None or bw <= 0:
            return Prediction(
                None, None, int(sum(per_device_bytes.values())), None, "", ("a device's memory bandwidth is unknown",)
            )
        t = nbytes / bw
        seconds += t
        if t > slowest_s:
            slowest, slowest_s = ("CPU" if dev is None else f"device {dev}"), t
    # Hops: CPU -> first device, between consecutive different devices, last device -> CPU.
    sequence = [None] + list(layer_device) + [None]
    hops = 0.0
    for a, b in zip(sequence, sequence[1:]):
        if a == b:
            continue
        remote = next((endpoints[d] for d in (a, b) if d is not None and d < len(endpoints) and endpoints[d]), None)
        link = None
        for d in (a, b):
            if d is not None and d < len(links) and links[d]:
                link = links[d] if link is None else min(link, links[d])
        if remote:
            link, latency = NETWORK_LINK, NETWORK_LATENCY_S
        else:
            link, latency = link or DEFAULT_LINK, HOP_LATENCY_S
        hops += model.n_embd * 4 / link + latency
    seconds += hops
    ubatch = min(settings.n_ubatch, settings.n_ctx_total)
    weight_seconds = seconds - hops
    pp = ubatch / (weight_seconds + hops * ubatch) if weight_seconds > 0 else None
    assumptions.append("roofline estimate: memory bandwidth only")
    return Prediction(
        tg_tokens_per_s=1.0 / seconds if seconds > 0 else None,
        pp_tokens_per_s=pp,
        bytes_per_token=int(sum(per_device_bytes.values())),
        seconds_per_token=seconds,
        limited_by=slowest,
        assumptions=tuple(dict.fromkeys(assumptions)),
    )


def _predict_parallel(
    model: ModelInfo,
    memory: MemoryPlan,
    settings: Settings,
    per_device_bytes: dict[int | None, float],
    bandwidths: list[float | None],
    links: list[float | None],
    endpoints: list[str | None],
    cpu_bandwidth: float,
) -> Prediction:
    """Row/tensor parallelism: every device reads its share of each layer at the same time, then
    the partial results are combined (two all-reduces of one activation row per layer)."""
    offloaded = sum(b for d, b in per_device_bytes.items() if d is not None)
    slowest, seconds = "", 0.0
    for dev, share in memory.split_shares.items():
        bw = bandwidths[dev] if dev < len(bandwidths) else None
        if not bw:
            return Prediction(None, None, int(offloaded), None, "", ("a device's memory bandwidth is unknown",))
        t = offloaded * share / bw
        if t > seconds:
            slowest, seconds = f"device {dev}", t
    cpu_bytes = per_device_bytes.get(None, 0.0)
    seconds += cpu_bytes / cpu_bandwidth
    used = list(memory.split_shares)
    remote = any(endpoints[d] for d in used if d < len(endpoints))
    link = min((links[d] or DEFAULT_LINK) for d in used) if not remote else NETWORK_LINK
    latency = NETWORK_LATENCY_S if remote else HOP_LATENCY_S
    sync = model.n_layer * 2 * (model.n_embd * 4 / link + latency)
    seconds += sync
    ubatch = min(settings.n_ubatch, settings.n_ctx_total)
    weight_seconds = seconds - sync
    return Prediction(
        tg_tokens_per_s=1.0 / seconds,
        pp_tokens_per_s=ubatch / (weight_seconds + sync * ubatch) if weight_seconds > 0 else None,
        bytes_per_token=int(offloaded + cpu_bytes),
        seconds_per_token=seconds,
        limited_by=slowest,
        assumptions=("roofline estimate: memory bandwidth and two all-reduces per layer",),
    )
