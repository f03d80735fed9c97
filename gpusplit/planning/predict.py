"""Predicted speed of a placement, from what each device was measured to do (`devices --probe`).

The model, for one token of generation, with the model's layers placed on devices d:

    seconds = O_host + sum over the other devices used (O_d - O_host)      fixed cost per decode
            + sum over devices (C_d x layers_d + sum over weight classes bytes_d,c / BW_d,c)
            + transfers between devices (activations, logits) over their links
            + for tensor parallelism: the group's measured synchronisation per layer

where O is a device's cost of one decode with the model wholly on it (graph, dispatch, for an RPC
worker the round trips), C its cost per layer, and BW its rate of reading each weight class from
memory (or from cache when the device's weights fit there). Prompt processing is the same with a
batch of n tokens: fixed and per-layer costs per batch, and FLOPs over the device's measured
FLOP/s. The same equations, inverted, fit a device's figures to its probe timings (`fit_speed`),
so what is measured and what is predicted cannot drift apart.

Where a device was not probed, its figures are a catalog bandwidth with typical overheads
(`catalog`) or a guess (`assumed`); the prediction says which, and gives a range.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, NamedTuple, TypedDict

from ..base.reasons import Reason
from ..devices.backends import OP_OFFLOAD_MIN_BATCH, backend
from ..devices.rpc import serves_this_cpu
from ..devices.speed import COPIED, WEIGHT_CLASSES, DeviceSpeed, GroupSpeed, rate_of, weight_class
from .memory import CTX_PAD, MemoryPlan, Settings, layer_kv_bytes, pad

if TYPE_CHECKING:
    from ..devices.device import Device
    from ..gguf.model import ModelInfo

DEFAULT_CPU_BANDWIDTH = 60e9  # bytes/s: an unprobed CPU (typical dual-channel DDR5); --cpu-bandwidth overrides
DEFAULT_PCIE = 25e9  # bytes/s: PCIe 4.0 x16 in practice, when a device's link is unknown
DEFAULT_NETWORK = 1.25e9  # bytes/s: 10 GbE, for an RPC worker whose link was not measured
LOCAL_HOP_S = 10e-6  # one CPU <-> GPU copy's fixed cost
RPC_HASH_THRESHOLD = 10 * 1024 * 1024  # ggml-rpc.cpp: weights over this go by hash first (the worker's cache)
# A worker reading a cached tensor (ggml-rpc-server -c): the file from its page cache or disk, then
# copied into the buffer; benchmarks/links.py measures cached loads against it.
CACHE_READ_BYTES_PER_S = 1.5e9
# How far a prediction may be off, by basis (the benchmark's targets for measured devices).
UNCERTAINTY = {"measured": (0.2, 0.3), "catalog": (0.5, 0.6), "assumed": (0.7, 0.8)}
RowKind = Literal["float", "quant"]  # a matrix row's kind, for its fixed cost (DeviceSpeed.row_overhead_s)


class TokenParts(TypedDict, total=False):
    """Where a token's predicted seconds go: "fixed", "links", "sync", and per device (its name) its
    "layers", "rows", "weights", "output" and "kv" (see token_parts). Empty where not predicted."""

    fixed: float
    links: float
    sync: float
    devices: dict[str, dict[str, float]]


@dataclass(frozen=True)
class Prediction:
    tg_tokens_per_s: float | None  # generation
    pp_tokens_per_s: float | None  # prompt processing, one batch of n_ubatch tokens
    bytes_per_token: int
    seconds_per_token: float | None
    limited_by: str  # the device that takes longest
    assumptions: tuple[Reason, ...]
    basis: str = "assumed"  # measured (every device used was probed) | catalog | assumed
    tg_range: tuple[float, float] | None = None
    pp_range: tuple[float, float] | None = None
    # A prompt batch of n tokens takes batch_fixed_s + n * batch_token_s (prompt_tokens_per_s).
    batch_fixed_s: float = 0.0
    batch_token_s: float = 0.0
    # A greedy sample of a generated token over the vocabulary on the host (what `run` adds to each
    # token; llama-bench's tg has none): tg_tokens_per_s is decoding alone.
    sample_s: float = 0.0
    # Where a token's predicted seconds go: what to look at when it misses.
    parts: TokenParts = field(default_factory=TokenParts)
    # Loading: the bytes llama.cpp sends each RPC worker (the weights it holds; its KV cache and
    # compute buffers are allocated there, not sent) and the seconds that takes over its link.
    load: dict[str, tuple[int, float]] = field(default_factory=dict)
    # The same seconds when the worker keeps a weight cache (`gpusplit worker --cache`,
    # `ggml-rpc-server -c`) that already holds these weights: its large tensors read from its disk.
    load_cached: dict[str, float] = field(default_factory=dict)

    @property
    def load_s(self) -> float:
        """Seconds the workers' uploads take (one after another, as llama.cpp sends them)."""
        return sum(seconds for _, seconds in self.load.values())


@dataclass
class Work:
    """What one device does for a token: layers, weight bytes read and FLOPs, by weight class (a
    class of copied weights, "legacy+copy", apart: see devices/speed.py). Missing classes are 0."""

    blocks: int = 0
    bytes: dict[str, float] = field(default_factory=dict)
    flops: dict[str, float] = field(default_factory=dict)
    expert_flops: dict[str, float] = field(default_factory=dict)  # of flops
    weight_bytes: float = 0.0  # all weights held (for the cache test)
    # The output layer's matrices, which a prompt batch multiplies for its last token only (llama.cpp
    # computes the logits of the tokens that ask for them): read once per batch, not in `flops`.
    once_bytes: dict[str, float] = field(default_factory=dict)
    # Matrix rows a token multiplies (each a dot product with a fixed cost of its own, which narrow
    # rows feel: the probe's `rows` models measure it; docs/prediction.md shows what it adds), and
    # the output layer's, which a prompt batch multiplies once.
    rows: dict[RowKind, float] = field(default_factory=dict)
    once_rows: dict[RowKind, float] = field(default_factory=dict)

    def add(self, kind: str, cls: str, amount: float) -> None:
        """Add to one of the per-class figures (bytes, flops, expert_flops, once_bytes)."""
        table = getattr(self, kind)
        table[cls] = table.get(cls, 0.0) + amount

    # Attention in a prompt batch, summed over this device's layers (a share of them in row/tensor
    # modes): heads, and heads x head width (for the FLOPs of QK^T and softmax(QK^T)V).
    heads: float = 0.0
    head_width: float = 0.0

    @property
    def read_bytes(self) -> float:
        return sum(self.bytes.values())

    @property
    def total_flops(self) -> float:
        return sum(self.flops.values())


# ---------------------------------------------------------------------------------------------
# Device figures: measured, or derived from a catalog bandwidth, or assumed


# What `devices --probe` measured on an NVIDIA H200 (141 GB at 4.8 TB/s; CUDA 13, llama.cpp of
# llama-cpp-python 0.3.36 built for sm_90; docs/gpu-validation.md): the figures a GPU that was not
# probed is given, its own bandwidth permitting. Before this, a catalog H200 was predicted at 462
# tokens/s on Llama-3.1-8B Q4_K_M where it ran at 238, and 24,400 prompt tokens/s where it ran 8,000.
GPU_MEASURED = DeviceSpeed(
    token_overhead_s=84e-6,
    layer_overhead_s=22.3e-6,
    # Q6_K was not timed apart on the H200: the other k-quants' figures stand in for it.
    bandwidth={"float": 3179e9, "q8": 2062e9, "q6k": 1278e9, "kquant": 1278e9, "legacy": 1536e9},
    cache_bandwidth=3179e9,
    cache_bytes=0,
    batch_overhead_s=2.23e-3,
    batch_layer_overhead_s=0.066e-3,
    flops={"float": 205.3e12, "q8": 123.3e12, "q6k": 118.2e12, "kquant": 118.2e12, "legacy": 105.7e12},
    source="measured",
)


def prompt_tokens_per_s(
    batch_fixed_s: float, batch_token_s: float, tg_tokens_per_s: float | None, n_tokens: int, ubatch: int = 512
) -> float | None:
    """Prompt tokens/s for one batch of n_tokens: one decode step (a generated token's time, every
    weight read once) and each further token at a batch's cost per token, the fixed cost fitted
    for a batch of `ubatch` tokens spread over them (it grows with the batch: measured here, a
    1-token batch takes a decode step, not that fixed cost). Measured on AMD EPYC at 1 to 512
    tokens (8 models, CPU): within 30 % at 4, 16, 64 and 512 tokens in 27 of 32 cases (20 with the
    fixed cost whole in every batch), median |error| 12 % (24 %). Without a generation figure:
    the fixed cost and n_tokens times a token's."""
    if tg_tokens_per_s and n_tokens > 0:
        seconds = 1 / tg_tokens_per_s + (n_tokens - 1) * (batch_token_s + batch_fixed_s / max(ubatch, 1))
    else:
        seconds = batch_fixed_s + n_tokens * batch_token_s
    return n_tokens / seconds if seconds > 0 and n_tokens > 0 else None


def parallel_tokens_per_s(prediction: Prediction, n_seq: int) -> float | None:
    """Generation of `n_seq` sequences decoded together (llama-server's busy slots,
    llama-batched-bench's S_TG): all of their tokens per second. A step holds one token of each. It
    costs one sequence's token (its fixed costs, the weights read once, its KV cache), each other
    sequence's KV cache read, and compute beyond what hides under the weights' read: the step's
    tokens at a prompt batch's cost per token (batch_token_s), less the weights' read time, where
    that is more. The prediction at the sequences' depth (Plan.prediction_at) carries their KV."""
    if not prediction.tg_tokens_per_s:
        return None
    if n_seq <= 1:
        return prediction.tg_tokens_per_s
    devices = (prediction.parts.get("devices") or {}).values()
    kv_s = sum(part.get("kv", 0.0) for part in devices)
    weights_s = sum(part.get("weights", 0.0) + part.get("output", 0.0) for part in devices)
    compute_s = max(n_seq * prediction.batch_token_s - weights_s, 0.0)
    step_s = 1 / prediction.tg_tokens_per_s + (n_seq - 1) * kv_s + compute_s
    return n_seq / step_s


def assumed_speed(device: Device, cpu_bandwidth: float = DEFAULT_CPU_BANDWIDTH) -> DeviceSpeed:
    """Figures for a device that was not probed: its catalog (or NVML) bandwidth with a GPU's
    typical overheads, or, for a CPU or an unmeasured RPC worker, a CPU's."""
    bandwidth = device.bandwidth_bytes_per_s
    if device.backend == "CPU" or device.type == "cpu" or (device.endpoint and not bandwidth):
        bw = cpu_bandwidth
        return DeviceSpeed(
            token_overhead_s=50e-6,
            layer_overhead_s=40e-6,
            bandwidth={"float": bw, **{c: 0.8 * bw for c in WEIGHT_CLASSES if c != "float"}},
            cache_bandwidth=2 * bw,
            cache_bytes=0,
            batch_overhead_s=1e-3,
            batch_layer_overhead_s=0.5e-3,
            flops=dict.fromkeys(WEIGHT_CLASSES, 200e9),
            source="assumed",
        )
    if not bandwidth:
        return replace(assumed_speed(device.with_(backend="CPU"), cpu_bandwidth), source="assumed")
    bw = 0.8 * bandwidth  # llama.cpp reaches ~80 % of a GPU's spec bandwidth
    g = GPU_MEASURED
    return DeviceSpeed(
        token_overhead_s=g.token_overhead_s,
        layer_overhead_s=g.layer_overhead_s,
        # A card slower than the H200 is bound by its memory; a faster one no faster than the
        # H200's kernels read each weight class (the dequantizing kernels bind there, not memory).
        bandwidth={c: min(bw, rate_of(g.bandwidth, c)) for c in WEIGHT_CLASSES},
        cache_bandwidth=bw,
        cache_bytes=0,
        batch_overhead_s=g.batch_overhead_s,
        batch_layer_overhead_s=g.batch_layer_overhead_s,
        # dense matmuls run ~150 FLOP per byte of weights read, up to what the H200 reached
        flops={c: min(150 * bw, rate_of(g.flops, c)) for c in WEIGHT_CLASSES},
        source="catalog" if device.bandwidth_source in ("catalog", "measured") else "assumed",
    )


def speed_of(device: Device, cpu_bandwidth: float = DEFAULT_CPU_BANDWIDTH) -> DeviceSpeed:
    return device.speed if device.speed is not None else assumed_speed(device, cpu_bandwidth)


# ---------------------------------------------------------------------------------------------
# The equations


def _read_seconds(speed: DeviceSpeed, work: Work, cached_bytes: float | None = None) -> float:
    """Seconds to read a token's weights: from cache when all the weights competing for it
    (`cached_bytes`, by default this device's) fit there, else from memory."""
    cached_bytes = work.weight_bytes if cached_bytes is None else cached_bytes
    if work.weight_bytes and cached_bytes <= speed.cache_bytes:
        return work.read_bytes / speed.cache_bandwidth
    return sum(b / rate_of(speed.bandwidth, c) for c, b in work.bytes.items() if b)


def token_seconds(speed: DeviceSpeed, work: Work, kv_bytes: float = 0.0, cached_bytes: float | None = None) -> float:
    """A device's own share of one token: its layers, its matrices' rows, and the weights (and KV
    cache) it reads."""
    return sum(token_parts(speed, work, kv_bytes, cached_bytes).values())


def token_parts(speed: DeviceSpeed, work: Work, kv_bytes: float = 0.0, cached_bytes: float | None = None) -> dict[str, float]:
    """token_seconds by part: its layers' fixed costs, its rows', the weights it reads (the output
    layer's apart) and its KV cache."""
    reads = _read_seconds(speed, work, cached_bytes)
    output_share = sum(work.once_bytes.values()) / work.read_bytes if work.read_bytes else 0.0
    return {
        "layers": speed.layer_overhead_s * work.blocks,
        "rows": row_seconds(speed, work.rows),
        "weights": reads * (1 - output_share),
        "output": reads * output_share,
        "kv": kv_bytes / speed.bandwidth["float"],
    }


def batch_seconds(speed: DeviceSpeed, work: Work, n_tokens: int, depth: int = 0) -> float:
    """A device's own share of one prompt batch of n_tokens after `depth` tokens of context."""
    fixed, per_token = batch_terms(speed, work, n_tokens, depth)
    return fixed + n_tokens * per_token


def attention_scores(n_tokens: int, depth: int) -> int:
    """Scores per head a prompt batch computes: each token against every used KV cell, padded to
    256, masked or not (llama.cpp without flash attention)."""
    return n_tokens * pad(depth + n_tokens, CTX_PAD)


def attention_seconds(speed: DeviceSpeed, work: Work, n_tokens: int, depth: int) -> float:
    """A prompt batch's attention: its FLOPs at the float rate, plus a cost per score (scaling,
    masking, softmax, and the attention matmuls' per-row overheads). On a 2-core EPYC a score cost
    2.2-3.0 ns besides its FLOPs (head widths 32-128), which the FLOPs alone left out: a 12-layer,
    16-head model's prompt ran 34 % slower than predicted."""
    scores = attention_scores(n_tokens, depth)
    return scores * (4 * work.head_width / speed.flops["float"] + work.heads * speed.attention_score_s)


def _expert_factor(speed: DeviceSpeed, cls: str) -> float:
    return speed.expert_batch_factor if cls.removesuffix(COPIED) == "float" else speed.expert_batch_factor_quant


def once_seconds(speed: DeviceSpeed, work: Work) -> float:
    """A prompt batch's output matmul: one token's logits, so one read of the output weights."""
    return sum(b / rate_of(speed.bandwidth, c) for c, b in work.once_bytes.items() if b) + row_seconds(speed, work.once_rows)


def row_seconds(speed: DeviceSpeed, rows: dict[RowKind, float]) -> float:
    """What a token's matrix rows cost besides their bytes: each a dot product with a fixed cost, a
    quantized one more than a float one (its input is quantized, its blocks unpacked)."""
    costs = speed.row_overhead_s
    return sum(n * costs.get(kind, costs.get("float", 0.0)) for kind, n in rows.items() if n)


def batch_terms(speed: DeviceSpeed, work: Work, n_tokens: int, depth: int = 0) -> tuple[float, float]:
    """(fixed seconds, seconds per token) of a device's share of a prompt batch."""
    per_token = sum(f / rate_of(speed.flops, c) for c, f in work.flops.items() if f)
    per_token += sum((_expert_factor(speed, c) - 1) * f / rate_of(speed.flops, c) for c, f in work.expert_flops.items() if f)
    per_token += attention_seconds(speed, work, n_tokens, depth) / max(n_tokens, 1)
    return speed.batch_layer_overhead_s * work.blocks + once_seconds(speed, work), per_token


# ---------------------------------------------------------------------------------------------
# Fitting a device's figures to its probe timings (the equations above, inverted)


@dataclass(frozen=True)
class ProbePoint:
    """One probe model's timings with the model wholly on the device."""

    name: str
    work: Work
    token_s: float  # seconds per generated token
    batch_s: float  # seconds per prompt batch
    batch_tokens: int
    depth: int = 0  # context before the prompt batch


def _solve(rows: list[list[float]], values: list[float]) -> list[float]:
    """Least squares with every unknown kept >= 0 (a negative overhead or rate means nothing)."""
    import numpy as np  # heavy (~100 ms): only a probe's fit needs it, not every plan (tests/test_layers.py)

    active = list(range(len(rows[0])))
    while True:
        a = np.array([[r[i] for i in active] for r in rows], dtype=float)
        solution, *_ = np.linalg.lstsq(a, np.array(values, dtype=float), rcond=None)
        negative = [active[j] for j, v in enumerate(solution) if v < 0]
        if not negative or len(active) == 1:
            out = [0.0] * len(rows[0])
            for j, i in enumerate(active):
                out[i] = max(float(solution[j]), 0.0)
            return out
        active = [i for i in active if i not in negative]


def fit_speed(
    points: dict[str, ProbePoint],
    cache_bytes: int,
    small: tuple[str, ...],
    large: dict[str, str],
    moe: str | None = None,
    moe_deep: str | None = None,
    moe_quant: tuple[str, str] | None = None,
    deep: tuple[str, str] | None = None,
    rows: dict[RowKind, str] | None = None,
) -> DeviceSpeed:
    """Figures from probe timings: `small` models (few bytes, different layer counts) give the
    fixed costs and the cache rate; each `large` model (class -> probe name) the memory rate and
    FLOP/s of its weight class; a `moe` model (and a deeper `moe_deep` one, whose difference leaves
    the fixed costs out) how much slower f16 expert matmuls run in a batch, and the `moe_quant`
    pair (the same two quantized) how much slower quantized ones do; the `deep` pair (a model's prompt
    batch, and the same after a long context) what attention costs per score; the `rows` models (row
    kind -> a model of many narrow rows: a large vocabulary over a narrow width, f16 and quantized)
    what a matrix row costs besides its bytes."""
    f16 = points[large["float"]]
    # classes in `large`'s order, each from its probe model (one with others' weights too after those)
    measured = {cls: name for cls, name in large.items() if name in points and points[name].work.bytes.get(cls)}
    token = _fit_generation(points, cache_bytes, small, f16, measured, rows)
    cache_rate = 1.0 / token.inv_cache if token.inv_cache > 0 else 4 * token.bandwidth["float"]
    measured_rates = DeviceSpeed(
        0, 0, {"float": token.rate_float, **token.bandwidth}, 0, 0, 0, 0, {}, row_overhead_s=token.per_row
    )
    batch = _fit_batch(points, small, f16, measured_rates, deep)
    flops = _fit_class_flops(points, measured, batch, measured_rates)
    # A class whose probe model failed is read at the nearest measured class's rates (rate_of), and said so.
    unmeasured = [cls for cls in large if cls not in measured]
    fitted = DeviceSpeed(
        unmeasured=unmeasured,
        token_overhead_s=token.overhead,
        layer_overhead_s=token.per_layer,
        row_overhead_s=token.per_row,
        bandwidth=token.bandwidth,
        cache_bandwidth=cache_rate,
        cache_bytes=cache_bytes,
        batch_overhead_s=batch.overhead,
        batch_layer_overhead_s=batch.per_layer,
        flops=flops,
        attention_score_s=batch.score_s,
    )
    # both against the dense figures alone (fitted still has factors of 1 here)
    float_factor = _fit_expert_factor(points, fitted, flops, moe, moe_deep)
    quant_factor = _fit_expert_factor(points, fitted, flops, *(moe_quant or (None, None)))
    if float_factor is not None:
        fitted = replace(fitted, expert_batch_factor=float_factor, expert_batch_factor_quant=float_factor)
    if quant_factor is not None:
        fitted = replace(fitted, expert_batch_factor_quant=quant_factor)
    return fitted


@dataclass(frozen=True)
class _TokenFit:
    """Generation's figures as fitted: fixed costs, 1 / the cache rate, the rates of the float and
    the measured classes, and what a row costs (by row kind)."""

    overhead: float
    per_layer: float
    inv_cache: float
    rate_float: float
    bandwidth: dict[str, float]
    per_row: dict[RowKind, float]


def _fit_generation(
    points: dict[str, ProbePoint],
    cache_bytes: int,
    small: tuple[str, ...],
    f16: ProbePoint,
    measured: dict[str, str],
    rows: dict[RowKind, str] | None,
) -> _TokenFit:
    """Generation: token_s = O + C * layers + R * rows + bytes / rate (the cache rate for small models
    when they fit the cache; otherwise each class's rate), refined in a few passes: the rows models
    give R (a float row's, a quantized row's) once the rates are known, and the rates need R."""
    rate_float = f16.work.read_bytes / f16.token_s
    per_row: dict[RowKind, float] = {}
    bandwidth: dict[str, float] = {}
    for _ in range(4):
        overhead, per_layer, inv_cache = _fit_token_fixed_costs(points, cache_bytes, small, rate_float, per_row)
        rest = f16.token_s - overhead - per_layer * f16.work.blocks - _probe_row_seconds(f16.work, per_row)
        rate_float = f16.work.read_bytes / max(rest, 1e-9)
        bandwidth = _fit_class_bandwidth(points, measured, overhead, per_layer, rate_float, per_row)
        _fit_row_costs(points, rows or {}, overhead, per_layer, rate_float, bandwidth, per_row)
    return _TokenFit(overhead, per_layer, inv_cache, rate_float, bandwidth, per_row)


def _probe_row_seconds(work: Work, per_row: dict[RowKind, float]) -> float:
    """What a probe model's rows cost a token at the row costs fitted so far."""
    return sum(n * per_row.get(kind, per_row.get("float", 0.0)) for kind, n in work.rows.items())


def _fit_token_fixed_costs(
    points: dict[str, ProbePoint], cache_bytes: int, small: tuple[str, ...], rate_float: float, per_row: dict[RowKind, float]
) -> tuple[float, float, float]:
    """(fixed cost, cost per layer, 1 / cache rate) of a token, from the small models."""
    equations, values = [], []
    for name in small:
        p = points[name]
        cached = p.work.weight_bytes <= cache_bytes
        equations.append([1.0, p.work.blocks, p.work.read_bytes if cached else 0.0])
        values.append(p.token_s - _probe_row_seconds(p.work, per_row) - (0.0 if cached else p.work.read_bytes / rate_float))
    overhead, per_layer, inv_cache = _solve(equations, values)
    return overhead, per_layer, inv_cache


def _fit_class_bandwidth(
    points: dict[str, ProbePoint],
    measured: dict[str, str],
    overhead: float,
    per_layer: float,
    rate_float: float,
    per_row: dict[RowKind, float],
) -> dict[str, float]:
    """Each measured class's memory rate, from its probe model's token (the classes fitted before
    it, and the float rate, taking their share of its bytes)."""
    bandwidth: dict[str, float] = {}
    for cls, name in measured.items():
        p = points[name]
        seconds = p.token_s - overhead - per_layer * p.work.blocks - _probe_row_seconds(p.work, per_row)
        bandwidth[cls] = p.work.bytes[cls] / max(seconds - _other_classes(p.work, cls, bandwidth, rate_float), 1e-9)
    return bandwidth


def _fit_row_costs(
    points: dict[str, ProbePoint],
    rows: dict[RowKind, str],
    overhead: float,
    per_layer: float,
    rate_float: float,
    bandwidth: dict[str, float],
    per_row: dict[RowKind, float],
) -> None:
    """A row's cost by kind (into `per_row`), from the rows models: what their token takes beyond
    the fixed costs and their bytes, over their rows."""
    for kind, name in rows.items():
        if name in points and points[name].work.rows.get(kind):
            r = points[name]
            reads = sum(b / rate_of({"float": rate_float, **bandwidth}, c) for c, b in r.work.bytes.items() if b)
            left = r.token_s - overhead - per_layer * r.work.blocks - reads
            per_row[kind] = max(left / r.work.rows[kind], 0.0)


@dataclass(frozen=True)
class _BatchFit:
    """Prompt batches' figures as fitted: fixed costs, the float FLOP/s, an attention score's cost."""

    overhead: float
    per_layer: float
    rate_flops: float
    score_s: float


def _batch_less_output(p: ProbePoint, measured_rates: DeviceSpeed) -> float:
    """The probe batch's time less its output matmul (one token's, read once)."""
    return p.batch_s - once_seconds(measured_rates, p.work)


def _probe_attention(p: ProbePoint, rate_flops: float, score_s: float) -> float:
    """A probe batch's attention at the float FLOP/s and score cost fitted so far."""
    partial = DeviceSpeed(0, 0, {}, 0, 0, 0, 0, {"float": rate_flops}, attention_score_s=score_s)
    return attention_seconds(partial, p.work, p.batch_tokens, p.depth)


def _fit_batch(
    points: dict[str, ProbePoint],
    small: tuple[str, ...],
    f16: ProbePoint,
    measured_rates: DeviceSpeed,
    deep: tuple[str, str] | None,
) -> _BatchFit:
    """Prompt batches: batch_s = O + C * layers + n * flops / rate + attention (its FLOPs at the float
    rate and a cost per score, from the `deep` pair: what a longer context adds to the same batch)."""
    rate_flops = f16.batch_tokens * f16.work.total_flops / _batch_less_output(f16, measured_rates)
    score_s = 0.0
    for _ in range(3):
        overhead, per_layer = _fit_batch_fixed_costs(points, small, measured_rates, rate_flops, score_s)
        rest = (
            _batch_less_output(f16, measured_rates)
            - overhead
            - per_layer * f16.work.blocks
            - _probe_attention(f16, rate_flops, score_s)
        )
        rate_flops = f16.batch_tokens * f16.work.total_flops / max(rest, 1e-9)
        if deep and deep[0] in points and deep[1] in points:
            score_s = _fit_score_cost(points[deep[0]], points[deep[1]], measured_rates, rate_flops, score_s)
    return _BatchFit(overhead, per_layer, rate_flops, score_s)


def _fit_batch_fixed_costs(
    points: dict[str, ProbePoint], small: tuple[str, ...], measured_rates: DeviceSpeed, rate_flops: float, score_s: float
) -> tuple[float, float]:
    """(fixed cost, cost per layer) of a prompt batch, from the small models."""
    equations, values = [], []
    for name in small:
        p = points[name]
        equations.append([1.0, p.work.blocks])
        values.append(
            _batch_less_output(p, measured_rates)
            - p.batch_tokens * p.work.total_flops / rate_flops
            - _probe_attention(p, rate_flops, score_s)
        )
    overhead, per_layer = _solve(equations, values)
    return overhead, per_layer


def _fit_score_cost(b: ProbePoint, d: ProbePoint, measured_rates: DeviceSpeed, rate_flops: float, score_s: float) -> float:
    """An attention score's cost besides its FLOPs: what the deeper batch `d` adds to the same batch
    `b` at depth 0, over the scores it adds (`score_s`, the cost so far, where it adds none)."""
    more = attention_scores(d.batch_tokens, d.depth) - attention_scores(b.batch_tokens, b.depth)
    if more > 0 and b.work.heads:
        flops_s = 4 * b.work.head_width * more / rate_flops
        score_s = max(
            (_batch_less_output(d, measured_rates) - _batch_less_output(b, measured_rates) - flops_s) / (b.work.heads * more),
            0.0,
        )
    return score_s


def _fit_class_flops(
    points: dict[str, ProbePoint], measured: dict[str, str], batch: _BatchFit, measured_rates: DeviceSpeed
) -> dict[str, float]:
    """Each measured class's FLOP/s, from its probe model's batch (the classes fitted before it, and
    the float rate, taking their share of its FLOPs)."""
    flops: dict[str, float] = {}
    for cls, name in measured.items():
        p = points[name]
        seconds = (
            _batch_less_output(p, measured_rates)
            - batch.overhead
            - batch.per_layer * p.work.blocks
            - _probe_attention(p, batch.rate_flops, batch.score_s)
        )
        known = {"float": batch.rate_flops, **flops}
        others = sum(f / rate_of(known, c) for c, f in p.work.flops.items() if f and c != cls)
        flops[cls] = p.batch_tokens * p.work.flops.get(cls, 0.0) / max(seconds - p.batch_tokens * others, 1e-9)
    return flops


def _probe_expert_seconds(q: ProbePoint, flops: dict[str, float]) -> float:
    """A probe batch's expert matmuls at the dense FLOP/s."""
    return q.batch_tokens * sum(f / rate_of(flops, c) for c, f in q.work.expert_flops.items() if f)


def _fit_expert_factor(
    points: dict[str, ProbePoint], fitted: DeviceSpeed, flops: dict[str, float], small_moe: str | None, deep_moe: str | None
) -> float | None:
    """How many times slower than dense ones a MoE probe's expert matmuls ran (None: not measured)."""
    if small_moe is None or small_moe not in points:
        return None
    p = points[small_moe]
    deep = points.get(deep_moe) if deep_moe else None
    if deep is not None and deep.work.blocks > p.work.blocks:
        # What the extra MoE layers of the deeper model add to a batch, against what the dense
        # figures say they add: fixed costs drop out. (On this CPU the 2-layer model alone
        # said 1.8, and an 8-layer one ran its prompt 51 % slower than that predicted.)
        extra = deep.batch_s - p.batch_s
        dense = batch_seconds(fitted, deep.work, deep.batch_tokens) - batch_seconds(fitted, p.work, p.batch_tokens)
        experts = _probe_expert_seconds(deep, flops) - _probe_expert_seconds(p, flops)
    else:
        extra = p.batch_s
        dense = fitted.batch_overhead_s + batch_seconds(fitted, p.work, p.batch_tokens)
        experts = _probe_expert_seconds(p, flops)
    return min(max(1 + (extra - dense) / experts, 0.5), 8.0) if experts > 0 else None


def _other_classes(work: Work, cls: str, known: dict[str, float], rate_float: float) -> float:
    """Seconds a probe spends on weights outside its class (norms, embeddings: mostly float)."""
    rates = {"float": rate_float, **known}
    return sum(nbytes / rate_of(rates, other) for other, nbytes in work.bytes.items() if other != cls and nbytes)


# ---------------------------------------------------------------------------------------------
# What each device does for a placement


def _expert_share(model: ModelInfo) -> float:
    return model.n_expert_used / model.n_expert if model.n_expert else 1.0


def placement_work(model: ModelInfo, memory: MemoryPlan, n_cpu_moe: int = 0) -> dict[int | None, Work]:
    """Per device index (None: the host CPU) what a token reads and computes. Expert weights count
    at the share of experts a token uses; row/tensor modes cut each layer in the devices' shares."""
    works: dict[int | None, Work] = {}
    share_of = memory.split_shares
    expert_share = _expert_share(model)
    for il, dev in enumerate(memory.layer_device):
        group = model.output if il == model.n_layer else model.blocks[il]
        # Where this layer runs, and in what shares (its experts on the host under n_cpu_moe).
        layer_targets = {None: 1.0} if dev is None else (share_of or {dev: 1.0})
        holders: set[int | None] = set()
        tensors = list(group.tensors)
        if il == model.n_layer and not any(t.name == "output.weight" for t in tensors):
            # Tied embeddings: the output matmul reads token_embd, wherever the output layer runs
            # (a published Gemma-3-270M reads its 170 MiB of Q8_0 embeddings there for every token,
            # more than its 18 layers together).
            tensors += [t for t in model.input.tensors if t.name == "token_embd.weight"]
        for t in tensors:
            expert = "_exps" in t.name
            used = expert_share if expert else 1.0
            targets = {None: 1.0} if il < n_cpu_moe and expert else layer_targets
            matrix = len(t.shape) >= 2
            for target, share in targets.items():
                # the host's copies (CPU_REPACK, AMX) run other kernels than its mapped weights
                cls = weight_class(t.ggml_type.name, copied=target is None and t.name in memory.host_copied)
                w = works.setdefault(target, Work())
                w.add("bytes", cls, t.n_bytes * used * share)
                w.weight_bytes += t.n_bytes * share
                rows = t.n_elements / t.shape[0] * used * share if matrix else 0.0
                kind: RowKind = "quant" if t.ggml_type.is_quantized else "float"
                w.add("rows", kind, rows)
                if matrix and il == model.n_layer:
                    w.add("once_bytes", cls, t.n_bytes * share)
                    w.add("once_rows", kind, rows)
                elif matrix:
                    w.add("flops", cls, 2 * t.n_elements * used * share)
                    if expert:
                        w.add("expert_flops", cls, 2 * t.n_elements * used * share)
                holders.add(target)
        if il < model.n_layer:
            for target in holders:
                works[target].blocks += 1
            heads = model.n_head[il]
            for target, share in layer_targets.items():
                w = works.setdefault(target, Work())
                w.heads += heads * share
                w.head_width += heads * model.head_dim_k * share
    works.setdefault(None, Work())
    return works


# ---------------------------------------------------------------------------------------------
# Predicting


def predict(
    model: ModelInfo,
    memory: MemoryPlan,
    settings: Settings,
    devices: list[Device],
    host: Device,
    n_cpu_moe: int = 0,
    group: GroupSpeed | None = None,
    cpu_bandwidth: float = DEFAULT_CPU_BANDWIDTH,
    depth: int = 0,
) -> Prediction:
    """Tokens per second of generation and of one prompt batch for this placement."""
    works = placement_work(model, memory, n_cpu_moe)
    speeds = _speeds(devices, host, cpu_bandwidth)
    used = [i for i, w in works.items() if i is not None and (w.blocks or w.read_bytes)]
    host_speed = speeds[None]
    kv = _kv_per_device(model, memory, settings, depth)
    n_batch = min(settings.n_ubatch, settings.n_ctx_total)

    fixed, fixed_batch = _fixed_costs(speeds, used)
    parts = _device_parts(devices, host, works, speeds, used, kv)
    per_device = {i: sum(p.values()) for i, p in parts.items()}
    batch = _device_batch_terms(devices, works, speeds, used, n_batch, depth)
    hops, hops_batch = _transfers(model, memory, devices, speeds, n_cpu_moe, n_batch)
    if memory.split_shares:
        totals = _tensor_parallel_totals(model, group, speeds, per_device, batch, n_batch)
    else:
        totals = _Totals(sum(per_device.values()), sum(f for f, _ in batch.values()), sum(t for _, t in batch.values()))
    seconds = fixed + totals.compute + hops + totals.sync
    batch_fixed = totals.batch_fixed + (fixed_batch + totals.sync_batch)
    batch_token = totals.batch_token + hops_batch / n_batch

    basis, assumptions = _basis_and_assumptions(devices, host, works, speeds, used, memory, group, cpu_bandwidth)
    limited = max(per_device, key=lambda i: per_device[i])
    tg = 1.0 / seconds if seconds > 0 else None
    pp = prompt_tokens_per_s(batch_fixed, batch_token, tg, n_batch, n_batch)
    u_tg, u_pp = UNCERTAINTY[basis]
    load, load_cached = _load(model, memory, devices, speeds)
    return Prediction(
        tg_tokens_per_s=tg,
        pp_tokens_per_s=pp,
        bytes_per_token=int(sum(w.read_bytes for w in works.values()) + sum(kv.values())),
        seconds_per_token=seconds,
        limited_by="CPU" if limited is None else devices[limited].name,
        assumptions=tuple(dict.fromkeys(assumptions)),
        basis=basis,
        tg_range=None if tg is None else (tg * (1 - u_tg), tg * (1 + u_tg)),
        pp_range=None if pp is None else (pp * (1 - u_pp), pp * (1 + u_pp)),
        batch_fixed_s=batch_fixed,
        batch_token_s=batch_token,
        sample_s=host_speed.sample_fixed_s + model.n_vocab * host_speed.sample_per_vocab_s,
        load=load,
        load_cached=load_cached,
        parts={
            "fixed": fixed,
            "links": hops,
            "sync": totals.sync,
            "devices": {("CPU" if i is None else devices[i].name): p for i, p in parts.items() if sum(p.values())},
        },
    )


def _speeds(devices: list[Device], host: Device, cpu_bandwidth: float) -> dict[int | None, DeviceSpeed]:
    """Each device's figures by index, the host's under None."""
    speeds: dict[int | None, DeviceSpeed] = {None: speed_of(host, cpu_bandwidth)}
    for i, d in enumerate(devices):
        speeds[i] = speed_of(d, cpu_bandwidth)
    return speeds


def _fixed_costs(speeds: dict[int | None, DeviceSpeed], used: list[int]) -> tuple[float, float]:
    """Fixed costs of a token and of a prompt batch: the host's, plus what each other device used
    adds to a decode."""
    host_speed = speeds[None]
    fixed = host_speed.token_overhead_s + sum(max(speeds[i].token_overhead_s - host_speed.token_overhead_s, 0.0) for i in used)
    fixed_batch = host_speed.batch_overhead_s + sum(
        max(speeds[i].batch_overhead_s - host_speed.batch_overhead_s, 0.0) for i in used
    )
    return fixed, fixed_batch


def _device_parts(
    devices: list[Device],
    host: Device,
    works: dict[int | None, Work],
    speeds: dict[int | None, DeviceSpeed],
    used: list[int],
    kv: dict[int | None, float],
) -> dict[int | None, dict[str, float]]:
    """Each device's own share of a token, by part (token_parts)."""
    # The host and RPC workers serving its CPU share its last-level cache: a token streams
    # through all their weights, which evict each other even where each device's share would fit.
    # (An 82 MB Q4_K_M model, 7 of 12 layers on the CPU and 20 and 15 MB on two loopback workers:
    # with the workers' shares read from the 32 MiB cache, 254 tokens/s were predicted and 164-181
    # measured; a Q4_0 model split over the two, 28 MB each, went from +19 % to -2 %.)
    sharing = [i for i in works if i is None or (i in used and serves_this_cpu(devices[i], host))]
    shared_bytes = sum(works[i].weight_bytes for i in sharing)
    return {i: token_parts(speeds[i], works[i], kv.get(i, 0.0), shared_bytes if i in sharing else None) for i in works}


def _device_batch_terms(
    devices: list[Device],
    works: dict[int | None, Work],
    speeds: dict[int | None, DeviceSpeed],
    used: list[int],
    n_batch: int,
    depth: int,
) -> dict[int | None, tuple[float, float]]:
    """Each device's (fixed seconds, seconds per token) of a prompt batch (batch_terms), the host's
    matmuls on the GPU that llama.cpp offloads them to."""
    batch = {i: batch_terms(speeds[i], works[i], n_batch, depth) for i in works}
    offload = _op_offload_device(devices, used, n_batch)
    if offload is not None and works[None].total_flops:
        # llama.cpp runs a big batch's matmuls on weights left in host memory on the GPU instead,
        # uploading those weights over its link for each batch (ggml_backend_sched, offload_op).
        host_work = works[None]
        upload = host_work.weight_bytes / _link(speeds[offload], devices[offload])
        matmuls = replace(host_work, heads=0.0, head_width=0.0)
        _, per_token = batch_terms(speeds[offload], matmuls, n_batch)
        # Attention reads the KV cache, not weights: it stays on the CPU with the cache.
        per_token += attention_seconds(speeds[None], host_work, n_batch, depth) / n_batch
        batch[None] = (upload + speeds[offload].batch_layer_overhead_s * host_work.blocks, per_token)
    return batch


class _Totals(NamedTuple):
    """The devices' work for a token and a prompt batch put together, and tensor parallelism's
    synchronisation (none without it)."""

    compute: float
    batch_fixed: float
    batch_token: float
    sync: float = 0.0
    sync_batch: float = 0.0


def _tensor_parallel_totals(
    model: ModelInfo,
    group: GroupSpeed | None,
    speeds: dict[int | None, DeviceSpeed],
    per_device: dict[int | None, float],
    batch: dict[int | None, tuple[float, float]],
    n_batch: int,
) -> _Totals:
    """Tensor parallelism: the devices work on each layer at the same time, then synchronise."""
    shared = [i for i in per_device if i is not None]
    compute = max((per_device[i] for i in shared), default=0.0) + per_device[None]
    slowest = max(shared, key=lambda i: batch[i][0] + n_batch * batch[i][1]) if shared else None
    batch_fixed = (batch[slowest][0] if slowest is not None else 0.0) + batch[None][0]
    batch_token = (batch[slowest][1] if slowest is not None else 0.0) + batch[None][1]
    sync, sync_batch = _sync(model, group, [speeds[i] for i in shared], n_batch)
    return _Totals(compute, batch_fixed, batch_token, sync, sync_batch)


def _basis_and_assumptions(
    devices: list[Device],
    host: Device,
    works: dict[int | None, Work],
    speeds: dict[int | None, DeviceSpeed],
    used: list[int],
    memory: MemoryPlan,
    group: GroupSpeed | None,
    cpu_bandwidth: float,
) -> tuple[str, list[Reason]]:
    """What the prediction rests on (measured, catalog or assumed figures), and the assumptions
    it makes."""
    host_speed = speeds[None]
    # The host counts when it holds weights, or when it is all there is.
    sources = [speeds[i].source for i in used] + ([host_speed.source] if works[None].read_bytes or not used else [])
    basis = "measured" if all(s == "measured" for s in sources) else ("catalog" if "assumed" not in sources else "assumed")
    assumptions = _assumptions(devices, host, speeds, [None, *used], cpu_bandwidth)
    if memory.split_shares and group is None:
        assumptions.append(
            Reason(
                "sync-unmeasured", "tensor parallelism's synchronisation was not measured for this group (a probe measures it)"
            )
        )
        basis = basis if basis != "measured" else "catalog"
    return basis, assumptions


def _load(
    model: ModelInfo, memory: MemoryPlan, devices: list[Device], speeds: dict[int | None, DeviceSpeed]
) -> tuple[dict[str, tuple[int, float]], dict[str, float]]:
    """Per RPC worker, the bytes a load sends it and the seconds that takes: its fixed part, the
    bytes over its link, for each tensor over 10 MiB a round trip (llama.cpp offers it by hash
    first) and what such a byte costs besides (hashed here, and by a caching worker, which writes it
    to disk), and, on the worker holding the output, what the vocabulary adds; and the seconds when
    the worker's cache holds those tensors (hashed here, read from its disk instead of the link)."""
    output = memory.layer_device[-1] if memory.layer_device else None
    load, cached = {}, {}
    for m in memory.devices:
        if m.index is None or not devices[m.index].endpoint or not m.weights_bytes or m.index not in speeds:
            continue
        speed = speeds[m.index]
        rate = _link(speed, devices[m.index])
        seconds = speed.load_fixed_s + (model.n_vocab * speed.load_per_vocab_s if m.index == output else 0.0)
        name = devices[m.index].name
        big = _hashed_tensors(model, memory, m.index)  # None: rows split over devices (row, tensor)
        if big is None:
            load[name] = (m.weights_bytes, seconds + m.weights_bytes / rate)
            continue
        seconds += big[0] * (speed.rtt_s or 0.0)
        hashed_bytes = m.weights_bytes * big[1]
        sent = seconds + (m.weights_bytes - hashed_bytes) / rate
        load[name] = (m.weights_bytes, sent + hashed_bytes * (speed.load_hashed_s_per_byte or 1.0 / rate))
        cached[name] = sent + hashed_bytes * (speed.load_cached_s_per_byte or 1.0 / CACHE_READ_BYTES_PER_S)
    return load, cached


def _hashed_tensors(model: ModelInfo, memory: MemoryPlan, index: int) -> tuple[int, float] | None:
    """How many of the weights a device holds go by hash (ggml-rpc.cpp: over HASH_THRESHOLD), and
    their share of its bytes; None where tensors are split over devices by rows."""
    if memory.split_shares:
        return None
    held = [il for il, dev in enumerate(memory.layer_device[:-1]) if dev == index]
    count, hashed, total = offered_by_hash(model, held, bool(memory.layer_device) and memory.layer_device[-1] == index)
    return count, (hashed / total if total else 0.0)


def offered_by_hash(model: ModelInfo, layers: list[int], output: bool) -> tuple[int, int, int]:
    """Of the weights a worker holding these layers (and the output) is sent at load: how many
    tensors llama.cpp offers by hash first (over HASH_THRESHOLD), their bytes, and all the bytes."""
    tensors = [t for il in layers for t in model.blocks[il].tensors]
    if output:
        tensors += model.output.tensors
        if not any(t.name == "output.weight" for t in model.output.tensors):
            # tied embeddings: token_embd loaded again as the output matrix (SmolLM2's 18 MB)
            tensors += [t for t in model.input.tensors if t.name == "token_embd.weight"]
    big = [t.n_bytes for t in tensors if t.n_bytes > RPC_HASH_THRESHOLD]
    return len(big), sum(big), sum(t.n_bytes for t in tensors)


def _op_offload_device(devices: list[Device], used: list[int], n_batch: int) -> int | None:
    """The GPU llama.cpp runs a prompt batch's host matmuls on (offload_op), if any."""
    if n_batch < OP_OFFLOAD_MIN_BATCH:
        return None
    for i in used:
        if not devices[i].endpoint and backend(devices[i].backend).op_offload:
            return i
    return None


def _kv_per_device(model: ModelInfo, memory: MemoryPlan, settings: Settings, depth: int) -> dict[int | None, float]:
    """KV cache bytes a token reads per device: llama.cpp attends over the used cells, padded to 256."""
    cells = min(settings.n_ctx_seq, pad(depth + 1, CTX_PAD))
    scale = cells / max(settings.n_ctx_seq, 1) / settings.n_parallel
    out: dict[int | None, float] = {}
    for il in range(model.n_layer):
        dev = memory.layer_device[il]
        nbytes = layer_kv_bytes(model, settings, il) * scale
        if dev is None or not settings.offload_kqv:
            out[None] = out.get(None, 0.0) + nbytes
        elif memory.split_shares:
            for i, share in memory.split_shares.items():
                out[i] = out.get(i, 0.0) + nbytes * share
        else:
            out[dev] = out.get(dev, 0.0) + nbytes
    return out


def _link(speed: DeviceSpeed, device: Device | None, back: bool = False) -> float:
    """Bytes per second to the device (`back`: from it, where that was measured apart)."""
    if back and speed.download_bytes_per_s:
        return speed.download_bytes_per_s
    if speed.link_bytes_per_s:
        # measured by the probe: an RPC worker's upload, or for a local GPU the rate weights reach
        # it from mapped host memory (about 5.8 GB/s on a PCIe 5.0 x16 H200, whose link says 63)
        return speed.link_bytes_per_s
    if device is not None and device.endpoint:
        return DEFAULT_NETWORK
    if device is not None and device.link_bytes_per_s:
        return device.link_bytes_per_s
    return DEFAULT_PCIE


def _transfers(
    model: ModelInfo,
    memory: MemoryPlan,
    devices: list[Device],
    speeds: dict[int | None, DeviceSpeed],
    n_cpu_moe: int,
    n_batch: int,
) -> tuple[float, float]:
    """Seconds moving activations between devices, and the logits back to the host, per token and
    per batch. An RPC worker's round trips are in its fixed cost (measured with the model on it);
    what is left is bytes over its link."""
    activation = model.n_embd * 4
    logits = model.n_vocab * 4
    order: list[int | None] = [None]
    for il, dev in enumerate(memory.layer_device):
        if il < n_cpu_moe and dev is not None and model.n_expert:
            order += [dev, None, dev]  # this block's experts run on the CPU
        else:
            order.append(dev)
    token = batch = 0.0
    for a, b in zip(order, order[1:]):
        if a == b or memory.split_shares:
            continue
        token += _hop(a, b, activation, devices, speeds)
        batch += _hop(a, b, activation * n_batch, devices, speeds)
    last = memory.layer_device[-1]
    if last is not None and not memory.split_shares:
        token += _hop(last, None, logits, devices, speeds, latency=False)
        batch += _hop(last, None, logits, devices, speeds, latency=False)
    return token, batch


def _hop(
    a: int | None,
    b: int | None,
    nbytes: float,
    devices: list[Device],
    speeds: dict[int | None, DeviceSpeed],
    latency: bool = True,
) -> float:
    seconds = 0.0
    remote = False
    for side in (a, b):
        if side is None:
            continue
        device = devices[side]
        if device.endpoint:
            remote = True
            seconds += nbytes / _link(speeds[side], device, back=side == a)
    if not remote:
        side = a if a is not None else b
        seconds = (LOCAL_HOP_S if latency else 0.0) + nbytes / _link(speeds[side], devices[side] if side is not None else None)
    return seconds


def sync_data_seconds(model: ModelInfo, members: list[DeviceSpeed], n_tokens: int) -> float:
    """Per layer, the bytes tensor parallelism moves: two all-reduces of the activations, each
    gathering every member's partial result and sending the sum back (through the client for RPC
    workers), over the slowest member's link."""
    rates = [s.link_bytes_per_s for s in members if s.link_bytes_per_s]
    rate = min(rates) if rates else DEFAULT_PCIE
    return 2 * 2 * len(members) * n_tokens * model.n_embd * 4 / rate


def _sync(model: ModelInfo, group: GroupSpeed | None, members: list[DeviceSpeed], n_batch: int = 512) -> tuple[float, float]:
    """Tensor parallelism's all-reduces per token and per batch: the group's measured fixed cost per
    layer (or two round trips per member) and the bytes over the links."""
    if group is not None:
        fixed, fixed_batch = group.layer_sync_s, group.batch_layer_sync_s
    else:
        fixed = fixed_batch = 2 * sum((s.rtt_s or LOCAL_HOP_S) for s in members)
    token = model.n_layer * (fixed + sync_data_seconds(model, members, 1))
    batch = model.n_layer * (fixed_batch + sync_data_seconds(model, members, n_batch))
    return token, batch


def _assumptions(
    devices: list[Device], host: Device, speeds: dict[int | None, DeviceSpeed], involved: list[int | None], cpu_bandwidth: float
) -> list[Reason]:
    notes = []
    for i in involved:
        s = speeds[i]
        name = "the CPU" if i is None else devices[i].name
        if s.source == "assumed":
            if i is None or devices[i].backend == "CPU" or devices[i].endpoint:
                bw = s.bandwidth["float"] / 1e9
                notes.append(
                    Reason(
                        "speed-assumed", f"{name} not measured: {bw:.0f} GB/s and typical overheads assumed (a probe measures it)"
                    )
                )
            else:
                notes.append(Reason("speed-assumed", f"{name} has no known bandwidth: figures assumed"))
        elif s.source == "catalog":
            notes.append(
                Reason(
                    "speed-catalog",
                    f"{name}: catalog bandwidth x 0.8, capped at and with the overheads of an H200 as measured (not this device)",
                )
            )
    if not notes:
        notes.append(Reason("speed-measured", "every device used was measured (gpusplit devices --probe)"))
    return notes
