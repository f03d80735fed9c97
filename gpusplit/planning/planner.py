"""Choosing a split: strategies, even-headroom proportions, best context, fit score, ranking.

Pure functions over (ModelInfo, devices, settings): no I/O, nothing printed.

Strategies follow the seed's table (LM-Kit's distributed-inference guide) and are ranked by
predicted speed where bandwidths are known:
fits the best GPU -> one GPU; needs more -> a layer split over several GPUs, proportioned so every
device ends with the same headroom; alike GPUs on a fast link (or on request) -> row/tensor
parallelism; all GPUs together too small -> the largest n_gpu_layers that fits (partial CPU
offload), or for MoE models the experts of the first blocks on the CPU; no GPU -> CPU only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..base.errors import InputError
from ..base.reasons import Reason
from ..base.search import largest_fitting
from ..base.units import format_bytes
from ..devices.rpc import serves_this_cpu
from .memory import (
    CTX_PAD,
    MIB,
    MemoryPlan,
    Placement,
    Settings,
    assign_layers,
    effective_split,
    kv_by_device,
    offloaded_layers,
    plan_memory,
)
from .predict import DEFAULT_CPU_BANDWIDTH, Prediction, parallel_tokens_per_s, predict
from .refusals import TENSOR_UNSUPPORTED, refusals
from .request import DEFAULT, Request, SplitMode

if TYPE_CHECKING:
    from ..devices.device import Device
    from ..devices.speed import GroupSpeed
    from ..gguf.adapter import AdapterInfo, ProjectorInfo
    from ..gguf.model import ModelInfo
    from .servers import Serving

DEFAULT_RESERVE = 512 * MIB
FAST_LINK = 100e9  # bytes/s: NVLink-class links make row/tensor parallelism worth considering
UNQUANTIZED_KV = ("f16", "f32", "bf16")
STRATEGY_ORDER = ("single-gpu", "layer-split", "tensor-split", "expert-offload", "partial-offload", "cpu-only", "as-given")


class PlanError(InputError, ValueError):
    """A request that cannot be planned (bad split, main GPU out of range, ...)."""


@dataclass(frozen=True)
class DraftRequest:
    """A speculative-decoding draft model loaded beside the main one (llama-server's -md / -ngld)."""

    model: ModelInfo
    n_gpu_layers: int = -1  # -ngld: all by default


@dataclass(frozen=True)
class PlanInputs:
    """A Request resolved against the model and the devices: its settings with the defaults taken,
    its companion files read, the measured cost of tensor parallelism over these devices."""

    request: Request = DEFAULT  # what the user asked, as asked
    settings: Settings = field(default_factory=Settings)
    mode: SplitMode | None = None  # None: choose
    split: tuple[float, ...] | None = None
    n_gpu_layers: int | None = None
    main_gpu: int | None = None
    n_cpu_moe: int | None = None
    spread: bool = False  # --spread: every GPU gets at least one layer
    reserve: tuple[int, ...] | None = None  # per device; None: 512 MiB for real devices, 0 for hypothetical
    cpu_bandwidth: float = DEFAULT_CPU_BANDWIDTH  # for a CPU that was not probed
    tensor_group: GroupSpeed | None = None  # tensor parallelism's measured cost over these devices
    adapters: tuple[AdapterInfo, ...] = ()  # LoRA adapters loaded with the model (--lora)
    draft: DraftRequest | None = None  # a draft model for speculative decoding (--draft)
    projector: ProjectorInfo | None = None  # a multimodal projector (--mmproj)

    @property
    def as_given(self) -> bool:
        return self.split is not None or self.n_gpu_layers is not None or self.n_cpu_moe is not None


@dataclass
class Candidate:
    """One way to load the model: a strategy and placement, its bytes per device and whether they fit."""

    strategy: str
    placement: Placement
    memory: MemoryPlan
    fits: bool
    headroom: list[int]  # per device: usable - planned (negative: does not fit)
    host_headroom: int
    prediction: Prediction
    settings: Settings  # as evaluated (tensor parallelism may turn flash attention on)
    reasons: list[Reason] = field(default_factory=list)
    llama_mode: SplitMode = "layer"  # the split mode llama.cpp runs

    @property
    def all_on_gpu(self) -> bool:
        return self.memory.all_on_gpu

    @property
    def blocks_per_device(self) -> list[int]:
        """Repeating layers (blocks) each device holds; the output layer is not counted."""
        n_layer = len(self.memory.layer_device) - 1
        return [sum(1 for il in m.layers if il < n_layer) for m in self.memory.devices]


@dataclass
class Plan:
    """A plan: the model, the devices, the best candidate (`best`: strategy, placement, memory per
    device, fit, prediction), the other candidates ranked, the best context and the fit score.
    documents.plan_document(plan) gives the `gpusplit.plan/1` document."""

    model: ModelInfo
    devices: list[Device]
    host: Device
    settings: Settings
    best: Candidate
    alternatives: list[Candidate]
    best_ctx: int
    score: float
    reserves: list[int]
    reasons: list[Reason]
    inputs: PlanInputs = field(default_factory=PlanInputs)
    # Where the compute buffers, and so fits, headroom, best_ctx and score, come from.
    compute_source: str = "estimate"  # or "measured" (llama.cpp's dry run)
    warnings: list[Reason] = field(default_factory=list)  # for stderr: a truncated file, a --spread that cannot spread
    draft: MemoryPlan | None = None  # the draft model's bytes per device (--draft), counted in best.fits
    serving: Serving | None = None  # several users (Request.users): one server against replicas

    @property
    def request(self) -> Request:
        """What the user asked (a saved plan stores it whole, so that it plans again the same)."""
        return self.inputs.request

    def prediction_at(self, depth: int) -> Prediction:
        """The best candidate's speeds after `depth` tokens of context: a deeper context is more
        KV cache to read per token and more attention scores per prompt token (llama-bench's -d)."""
        return prediction_at(self.model, self.devices, self.host, self.inputs, self.best, depth)


def prediction_at(
    model: ModelInfo, devices: list[Device], host: Device, inputs: PlanInputs, c: Candidate, depth: int
) -> Prediction:
    """A candidate's speeds after `depth` tokens of context (its own prediction at depth 0)."""
    if depth <= 0:
        return c.prediction
    return predict(
        model, c.memory, c.settings, devices, host, c.placement.n_cpu_moe, inputs.tensor_group, inputs.cpu_bandwidth,
        depth=depth,
    )  # fmt: skip


def reserves_for(devices: list[Device], reserve: tuple[int, ...] | None) -> list[int]:
    if reserve is not None:
        return list(reserve)
    return [0 if d.source in ("size", "catalog", "file") else DEFAULT_RESERVE for d in devices]


def evaluate(
    model: ModelInfo,
    devices: list[Device],
    host: Device,
    inputs: PlanInputs,
    placement: Placement,
    strategy: str,
    settings: Settings | None = None,
) -> Candidate:
    settings = settings or inputs.settings
    reserves = reserves_for(devices, inputs.reserve)
    memory = plan_memory(
        model,
        [d.name for d in devices],
        [d.backend for d in devices],
        [max(d.free_bytes - r, 0) for d, r in zip(devices, reserves)],
        settings,
        placement,
        inputs.adapters,
        projector_place(devices, inputs.projector),
    )
    headroom, host_headroom, fits = _fit(devices, host, reserves, memory)
    used = [i for i, m in enumerate(memory.devices) if m.planned_bytes]
    prediction = predict(model, memory, settings, devices, host, placement.n_cpu_moe, inputs.tensor_group, inputs.cpu_bandwidth)
    llama_mode = placement.split_mode
    if placement.split_mode == "row" and not all(devices[i].supports_row_split for i in used or range(len(devices))):
        llama_mode = "tensor"
    return Candidate(strategy, placement, memory, fits, headroom, host_headroom, prediction, settings, llama_mode=llama_mode)


def projector_place(devices: list[Device], projector: ProjectorInfo | None) -> tuple[int | None, int] | None:
    """clip.cpp puts the projector on the first GPU llama.cpp lists (integrated if none), else the CPU."""
    if projector is None:
        return None
    for kind in ("gpu", "igpu"):
        for i, d in enumerate(devices):
            if d.type == kind:
                return i, projector.n_bytes
    return None, projector.n_bytes


def _fit(devices: list[Device], host: Device, reserves: list[int], memory: MemoryPlan) -> tuple[list[int], int, bool]:
    """(headroom per device, host headroom, fits): every device that holds something, and the host,
    keeps its reserve free."""
    headroom = [d.free_bytes - r - m.planned_bytes for d, r, m in zip(devices, reserves, memory.devices)]
    host_headroom = host.free_bytes - memory.host.planned_bytes
    fits = all(h >= 0 for h, m in zip(headroom, memory.devices) if m.planned_bytes) and host_headroom >= 0
    return headroom, host_headroom, fits


def even_headroom_split(
    model: ModelInfo,
    devices: list[Device],
    host: Device,
    inputs: PlanInputs,
    gpus: list[int],
    n_gpu_layers: int = -1,
    every_device: bool = False,
) -> tuple[float, ...]:
    """Proportions that leave every used device the same headroom after its fixed costs.

    llama.cpp's default (all-zero split) is proportional to raw free memory, which leaves the
    device with the larger compute buffer (the output layer's) short; here each device's usable
    memory is what remains after its reserve and compute buffer, and layers are water-filled.
    A device whose fixed costs leave it nothing gets no layers, unless `every_device` (--spread)
    asks for at least one block on each GPU.
    """
    reserves = reserves_for(devices, inputs.reserve)
    # First pass: compute buffers of an equal split tell each device's fixed cost.
    trial = tuple(1.0 if i in gpus else 0.0 for i in range(len(devices)))
    probe = plan_memory(
        model,
        [d.name for d in devices],
        [d.backend for d in devices],
        [d.free_bytes for d in devices],
        inputs.settings,
        Placement("layer", n_gpu_layers, trial, 0, inputs.n_cpu_moe or 0),
        inputs.adapters,
        projector_place(devices, inputs.projector),
    )
    usable = {i: devices[i].free_bytes - reserves[i] - probe.devices[i].compute_bytes for i in gpus}
    layer_bytes = sum(m.weights_bytes + m.kv_bytes for m in probe.devices)
    active = [i for i in gpus if usable[i] > 0]
    while active:
        level = (sum(usable[i] for i in active) - layer_bytes) / len(active)
        share = {i: usable[i] - level for i in active}
        negative = [i for i in active if share[i] <= 0]
        if not negative:
            break
        active = [i for i in active if i not in negative]
    if not active:
        split = trial
    else:
        total = sum(share[i] for i in active)
        split = tuple(round(share[i] / total, 4) if i in active else 0.0 for i in range(len(devices)))
    if every_device:
        split = at_least_one_block(model, split, gpus, len(devices), n_gpu_layers)
    return split


def at_least_one_block(
    model: ModelInfo, split: tuple[float, ...], gpus: list[int], n_devices: int, n_gpu_layers: int = -1
) -> tuple[float, ...]:
    """The split itself when every GPU already holds a block; else whole layer counts (which
    llama.cpp's float32 upper_bound honours exactly) closest to it with one block or more each.
    Returns the split unchanged when there are fewer offloaded blocks than GPUs."""
    placement = Placement("layer", n_gpu_layers, split)
    layer_device = assign_layers(model, placement, n_devices, effective_split(placement, [1] * n_devices))
    if all(any(d == i for d in layer_device[: model.n_layer]) for i in gpus):
        return split
    _, act = offloaded_layers(model, n_gpu_layers)
    output_offloaded = act == model.n_layer + 1
    # The last GPU's range ends with the output layer: it needs two to hold a block as well.
    minimum = {i: 2 if output_offloaded and i == gpus[-1] else 1 for i in gpus}
    if act < sum(minimum.values()):
        return split
    weights = {i: split[i] if i < len(split) else 0.0 for i in gpus}
    total = sum(weights.values()) or 1.0
    counts = {i: minimum[i] for i in gpus}
    spare = act - sum(counts.values())
    wanted = {i: max(weights[i] / total * act - minimum[i], 0.0) for i in gpus}
    wanted_total = sum(wanted.values())
    ideal = {i: (wanted[i] / wanted_total * spare if wanted_total else spare / len(gpus)) for i in gpus}
    for i in gpus:
        counts[i] += int(ideal[i])
    # Largest remainders take the layers that flooring left over.
    for i in sorted(gpus, key=lambda i: ideal[i] - int(ideal[i]), reverse=True)[: act - sum(counts.values())]:
        counts[i] += 1
    return tuple(float(counts.get(i, 0)) for i in range(n_devices))


def candidates(model: ModelInfo, devices: list[Device], host: Device, inputs: PlanInputs) -> list[Candidate]:
    gpus = [i for i, d in enumerate(devices) if d.is_gpu]
    out: list[Candidate] = []
    if inputs.as_given or (inputs.mode and len(gpus) <= 1 and inputs.main_gpu is not None):
        return [_as_given(model, devices, host, inputs, gpus)]
    if not gpus:
        c = evaluate(model, devices, host, inputs, Placement("layer", 0, (), 0), "cpu-only")
        c.reasons.append(Reason("no-gpu", "no GPU: everything runs on the CPU (n_gpu_layers 0)"))
        return [c]
    best_gpu = inputs.main_gpu if inputs.main_gpu is not None else _best(devices, gpus)
    mode = inputs.mode
    if mode in (None, "none") and not inputs.spread:
        out.append(_single_gpu(model, devices, host, inputs, gpus, best_gpu))
    if len(gpus) > 1 and mode in (None, "layer"):
        split = even_headroom_split(model, devices, host, inputs, gpus, every_device=inputs.spread)
        c = evaluate(model, devices, host, inputs, Placement("layer", -1, split, best_gpu), "layer-split")
        c.reasons.append(layer_split_reason(model, devices, c, gpus, inputs.spread))
        out.append(c)
    tensor_ok = model.architecture not in TENSOR_UNSUPPORTED
    if len(gpus) > 1 and tensor_ok and (mode in ("row", "tensor") or (mode is None and _alike_and_linked(devices, gpus))):
        split = tuple(1.0 if i in gpus else 0.0 for i in range(len(devices)))
        wanted = mode or "row"
        settings = inputs.settings
        notes: list[Reason] = []
        c = evaluate(model, devices, host, inputs, Placement(wanted, -1, split, best_gpu), "tensor-split", settings)
        if c.llama_mode == "tensor":
            # llama.cpp's tensor parallelism needs flash attention and an unquantized KV cache.
            settings = replace(settings, flash_attn=True)
            if settings.type_k not in UNQUANTIZED_KV or settings.type_v not in UNQUANTIZED_KV:
                notes.append(Reason("tensor-kv-f16", "tensor parallelism needs an unquantized KV cache: KV set to f16"))
                settings = replace(settings, type_k="f16", type_v="f16")
            c = evaluate(model, devices, host, inputs, Placement("tensor", -1, split, best_gpu), "tensor-split", settings)
            notes.insert(
                0,
                Reason(
                    "row-as-tensor",
                    "row split runs as llama.cpp's tensor parallelism (these backends have no split buffers); it turns flash attention on",
                ),
            )
        c.reasons.append(Reason("tensor-split", "every layer split across the GPUs by rows (alike GPUs on a fast link)"))
        c.reasons.extend(notes)
        out.append(c)
    if not any(c.fits for c in out):
        out.extend(_offload_candidates(model, devices, host, inputs, gpus, best_gpu))
    if mode is None or not any(c.fits for c in out):
        # A split mode asked for is what runs; the CPU alone is then only the way out when it fits nowhere.
        cpu = evaluate(model, devices, host, inputs, Placement("layer", 0, (), 0), "cpu-only")
        cpu.reasons.append(Reason("cpu-only", "everything on the CPU"))
        out.append(cpu)
    return out


def _single_gpu(
    model: ModelInfo, devices: list[Device], host: Device, inputs: PlanInputs, gpus: list[int], best_gpu: int
) -> Candidate:
    """The whole model on one GPU: the one predicted fastest among those it fits (the one with the
    most free memory when that is as fast, when speeds are not known, or when it fits none)."""
    choices = [best_gpu] if inputs.main_gpu is not None else [best_gpu, *(i for i in gpus if i != best_gpu)]
    tried = [evaluate(model, devices, host, inputs, Placement("none", -1, (), i), "single-gpu") for i in choices]
    c = tried[0]
    for other in tried[1:]:
        if other.fits and (not c.fits or (other.prediction.tg_tokens_per_s or 0) > 1.01 * (c.prediction.tg_tokens_per_s or 0)):
            c = other
    chosen = devices[c.placement.main_gpu]
    if c.placement.main_gpu == best_gpu:
        c.reasons.append(Reason("single-gpu", f"the whole model on the best GPU, {chosen.name} (no inter-GPU traffic)"))
    else:
        c.reasons.append(
            Reason("single-gpu", f"the whole model on {chosen.name}, the GPU predicted fastest for it (no inter-GPU traffic)")
        )
    return c


def _offload_candidates(
    model: ModelInfo, devices: list[Device], host: Device, inputs: PlanInputs, gpus: list[int], best_gpu: int
) -> list[Candidate]:
    out = []
    split = even_headroom_split(model, devices, host, inputs, gpus, every_device=inputs.spread) if len(gpus) > 1 else ()
    mode: SplitMode = "layer" if len(gpus) > 1 else "none"
    if model.n_expert:

        def fits_moe(n_cpu: int) -> bool:
            return evaluate(model, devices, host, inputs, Placement(mode, -1, split, best_gpu, n_cpu), "expert-offload").fits

        # Fewer blocks with CPU experts is better: find the smallest count that fits.
        n = next((k for k in _ascending(model.n_layer) if fits_moe(k)), None)
        if n is not None:
            c = evaluate(model, devices, host, inputs, Placement(mode, -1, split, best_gpu, n), "expert-offload")
            c.reasons.append(
                Reason(
                    "expert-offload",
                    f"the experts of the first {n} blocks stay on the CPU (llama.cpp --n-cpu-moe {n}); "
                    "attention and shared weights stay on the GPU",
                )
            )
            out.append(c)

    def gpus_fit(ngl: int) -> bool:
        # Monotone in ngl (the host's share shrinks as the GPUs' grows, so only the GPUs are searched).
        c = evaluate(model, devices, host, inputs, Placement(mode, ngl, split, best_gpu), "partial-offload")
        return all(h >= 0 for h, m in zip(c.headroom, c.memory.devices) if m.planned_bytes)

    ngl = largest_fitting(gpus_fit, 0, model.n_layer)
    if ngl:
        c = evaluate(model, devices, host, inputs, Placement(mode, ngl, split, best_gpu), "partial-offload")
        c.reasons.append(
            Reason(
                "partial-offload",
                f"the GPUs hold {ngl} of {model.n_layer + 1} layers (n_gpu_layers {ngl}, counting the output layer); "
                "the rest run on the CPU",
            )
        )
        out.append(c)
    return out


def layer_split_reason(model: ModelInfo, devices: list[Device], c: Candidate, gpus: list[int], spread: bool) -> Reason:
    """What the layer split really does: layers per GPU, and why a GPU got none (its values: the
    blocks each GPU holds, the one with the output layer, the GPUs left idle)."""
    blocks = c.blocks_per_device
    out_dev = c.memory.layer_device[model.n_layer]
    parts = [
        f"{devices[i].name} {blocks[i]} layer{'s' if blocks[i] != 1 else ''}" + (" + output" if out_dev == i else "")
        for i in gpus
    ]
    text = "layers split for even headroom after each GPU's compute buffer: " + ", ".join(parts)
    idle = [i for i in gpus if blocks[i] == 0]
    values = {
        "blocks": {devices[i].name: blocks[i] for i in gpus},
        "output": None if out_dev is None else devices[out_dev].name,
        "idle": [devices[i].name for i in idle],
    }
    if not idle:
        return Reason("layer-split", text, values)
    names = ", ".join(devices[i].name for i in idle)
    if spread:
        return Reason(
            "layer-split",
            text + f"; --spread cannot give {names} a layer: the model has {model.n_layer} blocks for {len(gpus)} GPUs",
            values,
        )
    heaviest = max(c.memory.devices[i].compute_bytes for i in gpus)
    layers = sum(m.weights_bytes + m.kv_bytes for m in c.memory.devices)
    return Reason(
        "layer-split",
        text + f"; {names} gets no layers: the compute buffers ({heaviest / MIB:.0f} MiB on the output layer's GPU) "
        f"outweigh the layers themselves ({layers / MIB:.0f} MiB), so even headroom leaves it idle (--spread gives it work)",
        values,
    )


def _ascending(n_layer: int) -> list[int]:
    # A coarse-to-fine scan keeps this cheap for 100+ layer models.
    coarse = list(range(0, n_layer + 1, 4))
    return sorted(set(coarse + list(range(n_layer + 1))))


def _best(devices: list[Device], gpus: list[int]) -> int:
    return max(gpus, key=lambda i: (devices[i].free_bytes, devices[i].bandwidth_bytes_per_s or 0.0, -i))


def _alike_and_linked(devices: list[Device], gpus: list[int]) -> bool:
    first = devices[gpus[0]]
    alike = all(
        devices[i].backend == first.backend and abs(devices[i].total_bytes - first.total_bytes) <= 0.05 * first.total_bytes
        for i in gpus
    )
    linked = all((devices[i].link_bytes_per_s or 0) >= FAST_LINK for i in gpus)
    return alike and linked


def _as_given(model: ModelInfo, devices: list[Device], host: Device, inputs: PlanInputs, gpus: list[int]) -> Candidate:
    mode: SplitMode = inputs.mode or ("layer" if len(gpus) != 1 else "none")
    main = inputs.main_gpu if inputs.main_gpu is not None else (_best(devices, gpus) if gpus else 0)
    split = inputs.split or ()
    ngl = -1 if inputs.n_gpu_layers is None else inputs.n_gpu_layers
    if not gpus:
        ngl = 0
    placement = Placement(mode, ngl, split, main, inputs.n_cpu_moe or 0)
    c = evaluate(model, devices, host, inputs, placement, "as-given")
    notes: list[Reason] = []
    if c.llama_mode == "tensor":
        s = inputs.settings
        if s.type_k not in UNQUANTIZED_KV or s.type_v not in UNQUANTIZED_KV:
            raise PlanError(
                "tensor parallelism needs an unquantized KV cache, not {k}/{v}",
                "use f16 for {p.type_k} and {p.type_v}",
                parameter="type_k",
                k=s.type_k,
                v=s.type_v,
            )
        if mode == "row":
            notes.append(
                Reason("row-as-tensor", "row split runs as llama.cpp's tensor parallelism (these backends have no split buffers)")
            )
        if not s.flash_attn:
            notes.append(Reason("tensor-flash-attn", "tensor parallelism needs flash attention: turned on"))
            c = evaluate(model, devices, host, inputs, placement, "as-given", replace(s, flash_attn=True))
    c.reasons.append(
        Reason("as-given", "evaluated exactly as given (a split, offloaded layers or experts asked for are never changed)")
    )
    c.reasons.extend(notes)
    return c


SIMPLER_WITHIN = 0.95  # a single GPU wins unless a split is predicted more than 5 % faster
SPLITS = ("layer-split", "tensor-split")  # what a single GPU is preferred to when about as fast


def rank(cands: list[Candidate], devices: list[Device] | tuple[Device, ...] = (), host: Device | None = None) -> list[Candidate]:
    """Fitting plans first; then the fastest predicted generation; then the seed's preference
    (one GPU, no inter-GPU traffic, unless a split is clearly faster), and over the CPU alone unless
    both were measured: the CPU moves nothing either, and a measured loopback worker predicted 4 %
    behind the measured CPU, put first, ran 11 % behind it. (With assumed figures, a GPU about as
    fast as the CPU on paper is the better bet.) And the CPU alone over workers that serve this
    machine's CPU, whatever their prediction: they compute on the cores the CPU alone would use, so
    they can only add round trips (a lead predicted for them is the prediction's error)."""

    # Speeds only compare when every fitting candidate has one (all bandwidths known).
    speeds_known = all(c.prediction.tg_tokens_per_s for c in cands if c.fits)

    def key(c: Candidate) -> tuple[bool, float, float, int]:
        speed = (c.prediction.tg_tokens_per_s or 0.0) if speeds_known else 0.0
        return (not c.fits, -round(speed, 1), -round(_gpu_share(c), 3), STRATEGY_ORDER.index(c.strategy))

    ranked = sorted(cands, key=key)

    def prefer(simpler: Candidate | None, within: float) -> None:
        """`simpler` first when predicted at least `within` of the first's speed."""
        top = ranked[0]
        speed, top_speed = (c.prediction.tg_tokens_per_s or 0.0 for c in (simpler or top, top))
        if simpler is not None and top is not simpler and top.fits and speed >= within * top_speed:
            ranked.remove(simpler)
            ranked.insert(0, simpler)

    top = ranked[0]
    single = next((c for c in ranked if c.strategy == "single-gpu" and c.fits), None)
    measured = single is not None and single.prediction.basis == top.prediction.basis == "measured"
    if top.strategy in SPLITS or not measured:
        prefer(single, SIMPLER_WITHIN)
    if devices and host is not None and _only_workers_serving_this_cpu(ranked[0], devices, host):
        prefer(next((c for c in ranked if c.strategy == "cpu-only" and c.fits), None), 0.0)
    return ranked


def users_depth(settings: Settings) -> int:
    """The context each user is taken to be at when several decode together: half their slot."""
    return settings.n_ctx_seq // 2


def users_tokens_per_s(
    model: ModelInfo, devices: list[Device], host: Device, inputs: PlanInputs, c: Candidate, users: int
) -> float | None:
    """All `users`' generation together on a candidate (one server, `users` busy slots, each at
    users_depth): parallel_tokens_per_s over its prediction at that depth."""
    return parallel_tokens_per_s(prediction_at(model, devices, host, inputs, c, users_depth(c.settings)), users)


def _rank_for_users(
    model: ModelInfo, devices: list[Device], host: Device, inputs: PlanInputs, ranked: list[Candidate], users: int
) -> list[Candidate]:
    """With several users the objective is all of their generation together: fitting candidates by
    that, ties kept in rank's order (its preferences for the simpler plan)."""
    speeds = {id(c): users_tokens_per_s(model, devices, host, inputs, c, users) for c in ranked}
    if not all(speeds[id(c)] for c in ranked if c.fits):
        return ranked  # an unknown speed compares with nothing: rank's order stands
    return sorted(ranked, key=lambda c: (not c.fits, -round(speeds[id(c)] or 0.0, 1)))


def _only_workers_serving_this_cpu(c: Candidate, devices: list[Device] | tuple[Device, ...], host: Device) -> bool:
    used = [m.index for m in c.memory.devices if m.index is not None and m.weights_bytes]
    return bool(used) and all(serves_this_cpu(devices[i], host) for i in used)


def _gpu_share(c: Candidate) -> float:
    on_gpu = sum(m.weights_bytes + m.kv_bytes for m in c.memory.devices)
    total = on_gpu + c.memory.host.model_weights_bytes + c.memory.host.kv_bytes  # the model's share, not its copies
    return on_gpu / total if total else 0.0


def best_context(
    model: ModelInfo, devices: list[Device], host: Device, inputs: PlanInputs, candidate: Candidate, limit: int
) -> int:
    """The largest n_ctx (a multiple of 256, up to `limit`) at which this placement still fits."""

    def fits(steps: int) -> bool:
        settings = replace(candidate.settings, n_ctx=steps * CTX_PAD)
        return evaluate(model, devices, host, inputs, candidate.placement, candidate.strategy, settings).fits

    steps = largest_fitting(fits, 1, max(limit // CTX_PAD, 1))
    return (steps or 0) * CTX_PAD


def fit_score(best: Candidate, ideal_tps: float | None) -> float:
    """0-1, how well the model fits (LM-Kit's GetPerformanceScore):
    the predicted generation speed over the speed of the same model held wholly by the fastest GPU
    when bandwidths are known, else the share of weights and KV cache on GPUs; x0.9 when some
    device is left under 5 % headroom; 0.1 for a CPU-only plan that fits in RAM; 0 when nothing fits."""
    if not best.fits:
        return 0.0
    if best.strategy == "cpu-only":
        return 0.1
    tps = best.prediction.tg_tokens_per_s
    score = min(tps / ideal_tps, 1.0) if tps and ideal_tps else _gpu_share(best)
    tight = any(0 <= h < 0.05 * max(m.planned_bytes, 1) for h, m in zip(best.headroom, best.memory.devices) if m.planned_bytes)
    if tight:
        score *= 0.9
    return round(max(0.0, min(score, 1.0)), 3)


def make_plan(model: ModelInfo, devices: list[Device], host: Device, inputs: PlanInputs) -> Plan:
    if inputs.draft is not None:
        return _plan_with_draft(model, devices, host, inputs)
    validate(model, devices, inputs)
    cands = rank(candidates(model, devices, host, inputs), devices, host)
    if (inputs.request.users or 1) > 1:
        cands = _rank_for_users(model, devices, host, inputs, cands, inputs.request.users or 1)
    best = cands[0]
    refused = refusals(model, best.settings, replace(best.placement, split_mode=best.llama_mode), len(devices), inputs.adapters)
    if refused:
        # llama.cpp would refuse this load: say so now, in its words, not after loading the weights.
        raise PlanError(f"llama.cpp would refuse this: {refused[0].reason}", refused[0].fix)
    limit = model.context_length or inputs.settings.n_ctx
    best_ctx = best_context(model, devices, host, inputs, best, max(limit, CTX_PAD))
    ideal = _ideal_tps(model, devices, host, inputs)
    score = fit_score(best, ideal)
    warnings: list[Reason] = []
    if model.memory_rules == "approximate":
        warnings.append(Reason(
            "memory-approximate",
            f"architecture {model.architecture!r}: gpusplit does not know how llama.cpp 0.3.36 sizes its cache "
            "(sliding, chunked, latent or recurrent memory); the KV cache is sized as plain attention on every layer "
            "with KV heads and may be off: measuring the plan (plan --measure) asks llama.cpp itself",
        ))  # fmt: skip
    elif model.memory_rules in ("recurrent", "hybrid") and best.memory.compute_rule == "estimate":
        warnings.append(Reason(
            "compute-estimated",
            f"architecture {model.architecture!r}: its recurrent state is sized by llama.cpp's rules, but compute "
            "buffers are estimated as for attention layers (llama.cpp's were up to 2.3x that estimate on a generated "
            "Mamba-2, which now has its own bound): measuring the plan (plan --measure) asks llama.cpp itself",
        ))  # fmt: skip
    if not model.complete:
        warnings.append(Reason(
            "incomplete-file",
            f"{model.path} is incomplete: {format_bytes(model.missing_bytes)} of its tensor data is missing "
            "(a truncated download, or a header-only file); this plan reads only the header, and running it will refuse the file",
            {"missing_bytes": model.missing_bytes},
        ))  # fmt: skip
    return Plan(
        model,
        devices,
        host,
        inputs.settings,
        best,
        cands[1:],
        best_ctx,
        score,
        reserves_for(devices, inputs.reserve),
        _plan_reasons(best) + _link_reasons(best, cands[1:], devices),
        inputs=inputs,
        warnings=warnings,
    )


def _draft_memory(
    draft: DraftRequest, devices: list[Device], free: list[int], settings: Settings, placement: Placement
) -> MemoryPlan:
    # llama-server's draft inherits the main model's context, batch, split mode and proportions
    # (common_base_params_to_speculative); its own -ngld, and f16 caches unless -ctkd/-ctvd say otherwise.
    own = replace(settings, type_k="f16", type_v="f16")
    spot = replace(placement, n_gpu_layers=draft.n_gpu_layers, n_cpu_moe=0)
    memory = plan_memory(draft.model, [d.name for d in devices], [d.backend for d in devices], free, own, spot)
    for dev_mem in memory.devices:
        dev_mem.runtime_bytes = 0  # one process: the main model's CUDA context and cuBLAS serve the draft
    return memory


def _plan_with_draft(model: ModelInfo, devices: list[Device], host: Device, inputs: PlanInputs) -> Plan:
    """The main model planned on what the draft leaves, then the draft placed as llama-server
    places it after the main model, both counted in the fit."""
    draft = inputs.draft
    assert draft is not None
    guess = Placement(inputs.mode if inputs.mode in ("none", "layer") else "layer", -1, inputs.split or (), inputs.main_gpu or 0)
    first = _draft_memory(draft, devices, [d.free_bytes for d in devices], inputs.settings, guess)
    left = [replace(d, free_bytes=max(d.free_bytes - m.planned_bytes, 0)) for d, m in zip(devices, first.devices)]
    host_left = replace(host, free_bytes=max(host.free_bytes - first.host.planned_bytes, 0))
    plan = make_plan(model, left, host_left, replace(inputs, draft=None))
    best = plan.best
    # With llama.cpp's default split the draft follows free memory after the main model is loaded.
    after_main = [max(d.free_bytes - m.planned_bytes, 0) for d, m in zip(devices, best.memory.devices)]
    placement = replace(best.placement, split_mode=best.llama_mode)
    memory = _draft_memory(draft, devices, after_main, best.settings, placement)
    reserves = reserves_for(devices, inputs.reserve)
    headroom = [
        d.free_bytes - r - m.planned_bytes - dm.planned_bytes
        for d, r, m, dm in zip(devices, reserves, best.memory.devices, memory.devices)
    ]
    host_headroom = host.free_bytes - best.memory.host.planned_bytes - memory.host.planned_bytes
    used = [h for h, m, dm in zip(headroom, best.memory.devices, memory.devices) if m.planned_bytes or dm.planned_bytes]
    fits = all(h >= 0 for h in used) and host_headroom >= 0
    best = replace(best, headroom=headroom, host_headroom=host_headroom, fits=fits)
    total = memory.host.planned_bytes + sum(m.planned_bytes for m in memory.devices)
    reasons = [
        *plan.reasons,
        Reason("draft-model", f"draft model {draft.model.name}: {format_bytes(total)} beside the main model, placed like it"),
    ]
    return replace(plan, devices=devices, host=host, best=best, draft=memory, inputs=inputs, reasons=reasons)


def _link_cost(c: Candidate, devices: list[Device]) -> tuple[float, list[str]]:
    """Seconds of a token spent on the links to the RPC workers a candidate uses (a round trip to
    each, measured or not, and the bytes over them), and those workers' names."""
    used = [m.index for m in c.memory.devices if m.index is not None and (m.weights_bytes or m.kv_bytes)]
    workers = [i for i in used if devices[i].endpoint]
    speeds = [devices[i].speed for i in workers]
    trips = sum((speed.rtt_s or 0.0) if speed else 0.0 for speed in speeds)
    transfers = c.prediction.parts.get("links", 0.0) if workers else 0.0
    return trips + transfers, [devices[i].name for i in workers]


def _link_reasons(best: Candidate, others: list[Candidate], devices: list[Device]) -> list[Reason]:
    """What the links to RPC workers cost: the chosen plan's share of each token, or, where the
    chosen plan uses none, what the fastest one over them would have paid."""
    tps = best.prediction.tg_tokens_per_s
    if not tps:
        return []
    cost, names = _link_cost(best, devices)
    if names:
        return [
            Reason(
                "link-cost",
                f"the links to {', '.join(names)} take {cost * 1e3:.1f} ms of each token's {1e3 / tps:.1f} ms "
                "(round trips and transfers; counted in the prediction)",
                {"workers": names, "link_s": round(cost, 9), "token_s": round(1 / tps, 9)},
            )
        ]
    linked = [(c, *_link_cost(c, devices)) for c in others if c.fits and c.prediction.tg_tokens_per_s]
    linked = [(c, cost, names) for c, cost, names in linked if names and cost > 0]
    if not linked:
        return []
    c, cost, names = max(linked, key=lambda x: x[0].prediction.tg_tokens_per_s or 0.0)
    return [
        Reason(
            "link-avoided",
            f"not over the link: {c.strategy} on {', '.join(names)} is predicted {c.prediction.tg_tokens_per_s:.1f} tokens/s, "
            f"its links taking {cost * 1e3:.1f} ms of each token (round trips and transfers), against {tps:.1f} here",
            {"workers": names, "link_s": round(cost, 9), "strategy": c.strategy, "tg_tokens_per_s": c.prediction.tg_tokens_per_s},
        )
    ]


def _plan_reasons(best: Candidate) -> list[Reason]:
    reasons = list(best.reasons)
    if not best.fits:
        reasons.append(
            Reason(
                "does-not-fit",
                "nothing fits at this context size: lower the context, quantize the KV cache (q8_0), or add devices",
            )
        )
    # A device with a CUDA runtime planned is a CUDA device (or a size-only GPU, taken for one) in use.
    if any(m.runtime_bytes for m in best.memory.devices) and not best.settings.flash_attn:
        reasons.append(
            Reason(
                "flash-attn-off",
                "flash attention is off (llama-cpp-python's default); llama.cpp's own tools turn it on for CUDA: on an "
                "H200 it generated 15 % faster and held 94 MiB less (no cuBLAS) - turn it on (--flash-attn)",
            )
        )
    return reasons


# ---------------------------------------------------------------------------------------------
# Measured plans (`plan --measure`): the same decisions, on compute buffers from llama.cpp's dry run


def without_repack(plan: Plan, why: Reason | None = None) -> Plan:
    """The same plan loaded with llama.cpp's --no-repack (the CPU backend's extra buffer types off):
    its best candidate evaluated again without the host's weight copies, the rest as it was; its
    request says no_repack; `why` joins its reasons (a crash that this avoids, say)."""
    best, inputs, reasons = plan.best, plan.inputs, list(plan.reasons)
    if not best.settings.no_repack:
        inputs = replace(
            inputs, request=replace(inputs.request, no_repack=True), settings=replace(inputs.settings, no_repack=True)
        )
        settings = replace(best.settings, no_repack=True)
        again = evaluate(plan.model, plan.devices, plan.host, inputs, best.placement, best.strategy, settings)
        again.reasons = list(best.reasons)
        best = again
        reasons = [r for r in reasons if r.code != "host-copies"]
    return replace(plan, best=best, inputs=inputs, settings=inputs.settings, reasons=reasons + ([why] if why else []))


def apply_measured_compute(plan: Plan, candidate: Candidate, compute: dict[str, int]) -> None:
    """Replace a candidate's estimated compute buffers with measured ones (device name -> bytes,
    "CPU" for the host) and redo its fit."""
    memory = candidate.memory
    for mem in memory.devices:
        mem.compute_bytes = compute.get(mem.name, 0) if mem.layers else 0
    memory.host.compute_bytes = compute.get("CPU", 0)
    candidate.headroom, candidate.host_headroom, candidate.fits = _fit(plan.devices, plan.host, plan.reserves, memory)


def context_budgets(plan: Plan, candidate: Candidate) -> tuple[list[int], list[dict[str, int]]]:
    """The contexts best_ctx searches (multiples of 256 up to the model's limit) and, at each, the
    bytes every used device and the host have left for compute buffers after weights, KV cache and
    outputs (the only part that grows with the context is the KV cache)."""
    model = plan.model
    limit = max(model.context_length or plan.inputs.settings.n_ctx, CTX_PAD)
    contexts = [steps * CTX_PAD for steps in range(1, max(limit // CTX_PAD, 1) + 1)]
    memory = candidate.memory
    used = [i for i, m in enumerate(memory.devices) if m.planned_bytes]
    budgets = []
    for n_ctx in contexts:
        settings = replace(candidate.settings, n_ctx=n_ctx)
        kv, host_kv = kv_by_device(model, settings, memory.layer_device, memory.split_shares, len(memory.devices))
        budget = {
            memory.devices[i].name: plan.devices[i].free_bytes
            - plan.reserves[i]
            - memory.devices[i].weights_bytes
            - memory.devices[i].output_bytes
            - kv[i]
            for i in used
        }
        budget["CPU"] = plan.host.free_bytes - memory.host.weights_bytes - memory.host.output_bytes - host_kv
        budgets.append(budget)
    return contexts, budgets


def finish_measured(plan: Plan, cands: list[Candidate], best_ctx: int | None) -> Plan:
    """The plan re-ranked on measured candidates, with the measured best context and the score
    and reasons that follow from them."""
    ranked = rank(cands, plan.devices, plan.host)
    best = ranked[0]
    score = fit_score(best, _ideal_tps(plan.model, plan.devices, plan.host, plan.inputs))
    return replace(
        plan,
        best=best,
        alternatives=ranked[1:],
        best_ctx=plan.best_ctx if best_ctx is None else best_ctx,
        score=score,
        reasons=_plan_reasons(best),
        compute_source="measured",
    )


def _ideal_tps(model: ModelInfo, devices: list[Device], host: Device, inputs: PlanInputs) -> float | None:
    gpus = [d for d in devices if d.is_gpu and d.bandwidth_bytes_per_s]
    if not gpus:
        return None
    fastest = max(gpus, key=lambda d: d.bandwidth_bytes_per_s or 0)
    unlimited = fastest.with_(free_bytes=2**62, total_bytes=2**62, index=0)
    c = evaluate(model, [unlimited], host.with_(free_bytes=2**62), inputs, Placement("none", -1, (), 0), "single-gpu")
    return c.prediction.tg_tokens_per_s


def validate(model: ModelInfo, devices: list[Device], inputs: PlanInputs) -> None:
    """What the planner needs of its inputs (a Request checks the same when built; inputs made by
    hand, as tests do, come here unchecked)."""
    n = len(devices)
    s = inputs.settings
    if inputs.split is not None:
        if any(x != x or x < 0 for x in inputs.split):
            raise PlanError("{p.tensor_split} entries must be non-negative numbers", parameter="tensor_split")
        if len(inputs.split) > n:
            raise PlanError(
                "{p.tensor_split} has {given} entries but there are {n} devices",
                parameter="tensor_split",
                given=len(inputs.split),
                n=n,
            )
        if not any(inputs.split):
            raise PlanError("{p.tensor_split} is all zeros", "give each device a share, e.g. 0.75,0.25", parameter="tensor_split")
    if inputs.main_gpu is not None and not 0 <= inputs.main_gpu < max(n, 1):
        raise PlanError(
            "{p.main_gpu} {value} is out of range: there are {n} devices", parameter="main_gpu", value=inputs.main_gpu, n=n
        )
    if inputs.n_gpu_layers is not None and inputs.n_gpu_layers < -1:
        raise PlanError("{p.n_gpu_layers} must be -1 (all) or a count of layers", parameter="n_gpu_layers")
    if s.n_ctx <= 0:
        raise PlanError("{p.n_ctx} must be positive", parameter="n_ctx")
    if s.n_ubatch <= 0 or s.n_batch <= 0 or s.n_ubatch > s.n_batch:
        raise PlanError("{p.n_ubatch} must be positive and at most {p.n_batch}", parameter="n_ubatch")
    if s.n_parallel < 1:
        raise PlanError("{p.n_parallel} must be at least 1", parameter="n_parallel")
