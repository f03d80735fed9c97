"""How fast a device runs llama.cpp, as `gpusplit devices --probe` measured it, and the cache of
those measurements (one JSON file per device identity under the user cache folder).

A device's speed is a handful of figures the predictor (gpusplit/predict.py) composes: a fixed
cost per token and per layer, the bytes per second at which it reads each kind of weight, the
FLOP/s at which it processes a prompt batch, and for RPC workers the link. Plain data: measuring
belongs to gpusplit/probe.py, predicting to gpusplit/predict.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypedDict

import msgspec
from msgspec import Meta, Raw, Struct
from typing_extensions import Required

from ..base.checked import Bytes, FlopRate, Rate, Seconds
from ..base.errors import InputError
from ..base.files import write_whole
from ..base.jsonio import read_bounded
from ..base.paths import cache_dir

# Weight classes the device's speed is measured for: the types llama.cpp reads at rates of their own
# (their dequantizing kernels differ), each timed by a probe model of that type. On a 2-core EPYC,
# unrepacked Q4_1 ran prompts at half Q4_0's plain rate and a quarter of its repacked one, and a
# SmolLM2 Q4_1 model read at Q4_0's (repacked) rates was predicted +240 % on prompts.
WEIGHT_CLASSES = ("float", "q8", "q6k", "q5k", "kquant", "legacy", "q4_1", "q5_0", "iq4")
_CLASS_OF = {
    **dict.fromkeys(("F32", "F16", "BF16", "F64"), "float"),
    **dict.fromkeys(("Q8_0", "Q8_1", "Q8_K"), "q8"),
    "Q6_K": "q6k",
    "Q5_K": "q5k",
    **dict.fromkeys(("Q4_0", "MXFP4", "NVFP4"), "legacy"),
    **dict.fromkeys(("Q4_1", "Q5_1"), "q4_1"),
    "Q5_0": "q5_0",
    **dict.fromkeys(("IQ4_XS", "IQ4_NL"), "iq4"),
}
# Weights the CPU's extra buffer types hold (CPU_REPACK, AMX) run other kernels: a class of their
# own on that device ("legacy+copy"), timed by the default run of a probe model whose weights are copied.
COPIED = "+copy"
# A class a device was not measured for (an older probe, a failed probe model): the nearest one that was.
FALLBACK = {"q5k": "q6k", "q4_1": "legacy", "q5_0": "legacy", "iq4": "kquant"}
# every class a rate is kept for: the plain ones and their copies in the CPU's extra buffer types
# (a Literal built at run time, which msgspec checks; to the type checker a str)
if TYPE_CHECKING:
    WeightClass = str
else:
    WeightClass = Literal[tuple([*WEIGHT_CLASSES, *(c + COPIED for c in WEIGHT_CLASSES)])]
Factor = Annotated[float, Meta(gt=0, le=1e6)]  # how many times slower
# A device's rates by class. Every class falls back to the float one (rate_of): a document's must
# give it; a class gpusplit does not know is left out when one is read.
_OTHER_CLASSES = [*WEIGHT_CLASSES[1:], *(c + COPIED for c in WEIGHT_CLASSES)]
if TYPE_CHECKING:  # looked up by computed class names: to the type checker a plain mapping
    Rates = dict[str, float]
    FlopRates = dict[str, float]
else:
    Rates = TypedDict("Rates", {"float": Required[Rate], **dict.fromkeys(_OTHER_CLASSES, Rate)}, total=False)
    FlopRates = TypedDict("FlopRates", {"float": Required[FlopRate], **dict.fromkeys(_OTHER_CLASSES, FlopRate)}, total=False)
SPEED_VERSION = 10  # bump when the meaning of a field changes: old cache files are then ignored


def weight_class(type_name: str, copied: bool = False) -> str:
    """'F16' -> 'float', 'Q8_0' -> 'q8', 'Q6_K' -> 'q6k', 'Q4_K' -> 'kquant', 'Q4_0' -> 'legacy', ...
    (other k- and i-quants: 'kquant'); with `copied`, the class of those weights in the CPU's copies."""
    cls = _CLASS_OF.get(type_name.upper(), "kquant")
    return cls + COPIED if copied else cls


def rate_of(rates: dict[str, float], cls: str) -> float:
    """A device's rate for a class: measured, else its plain (uncopied) one, else the nearest class's."""
    while cls not in rates and cls != "float":
        cls = cls.removesuffix(COPIED) if cls.endswith(COPIED) else FALLBACK.get(cls, "float")
    return rates[cls]


@dataclass(frozen=True)
class DeviceSpeed:
    """What llama.cpp achieves on one device. Times in seconds, rates per second."""

    # Generation (one token): fixed cost of a decode with the model on this device, and per layer.
    token_overhead_s: Seconds
    layer_overhead_s: Seconds
    # Bytes per second reading weights of each class (WEIGHT_CLASSES) from memory, and from the
    # cache for a model whose weights on this device fit in `cache_bytes`.
    bandwidth: Rates
    cache_bandwidth: Rate
    cache_bytes: Bytes
    # Prompt processing (one batch of n_ubatch tokens): fixed cost, per layer, FLOP/s per class.
    batch_overhead_s: Seconds
    batch_layer_overhead_s: Seconds
    flops: FlopRates
    # Expert matmuls of a MoE model in a prompt batch (llama.cpp's mul_mat_id, each expert on its
    # share of the tokens) run this many times slower per FLOP than dense ones.
    expert_batch_factor: Factor = 1.0
    # The same for quantized experts, measured apart (on a 2-core EPYC, f16 experts ran 3.5x slower
    # per FLOP than dense f16 matmuls and Q4_K_M ones 2.7x; one factor for both missed by 25-44 %).
    expert_batch_factor_quant: Factor = 1.0
    # Attention in a prompt batch: seconds per score (one head, one token, one KV cell) besides its
    # FLOPs, from a probe model's prompt after a long context against the same at depth 0.
    attention_score_s: Seconds = 0.0
    # Each matrix row a token multiplies, besides its bytes (a dot product's fixed cost: narrow rows
    # and large vocabularies feel it), for float and quantized rows ("float", "quant").
    row_overhead_s: dict[Literal["float", "quant"], Seconds] = field(default_factory=dict)
    # The host's greedy sample of a generated token (`run`, a server): a fixed part and one per
    # vocabulary entry (the sampler's candidate array); 0 where not measured.
    sample_fixed_s: Seconds = 0.0
    sample_per_vocab_s: Seconds = 0.0
    # RPC workers: round trip and transfer rate of the link to them (a load's rate: the bytes a
    # load sends, over what they took), and back from them (logits, activations; measured apart,
    # as links are not always symmetric: None where not measured, taken as the same).
    rtt_s: Seconds | None = None
    link_bytes_per_s: Rate | None = None
    download_bytes_per_s: Rate | None = None
    # What a load onto an RPC worker costs besides its bytes: allocations and graph reservation
    # (round trips over the link) and the worker's own setup; and per vocabulary entry of a model
    # whose output is there (the host's tokenizer, the worker's logits buffers: 2 us here).
    load_fixed_s: Seconds = 0.0
    load_per_vocab_s: Seconds = 0.0
    # A byte of a tensor over 10 MiB, which llama.cpp offers by hash first: on a first load (hashed
    # on the host, sent, and hashed and written to disk by a worker with a weight cache), and from
    # the worker's cache (hashed on the host, read from the worker's disk). 0: not measured (the
    # link's rate; the cache at CACHE_READ_BYTES_PER_S).
    load_hashed_s_per_byte: Seconds = 0.0
    load_cached_s_per_byte: Seconds = 0.0
    threads: Annotated[int, Meta(ge=1, le=1024)] | None = None  # the CPU threads the figures hold for
    source: Literal["measured", "catalog", "assumed"] = "measured"  # measured (devices --probe) | catalog | assumed
    identity: str = ""  # what was measured: see device_identity
    measured_at: str = ""
    probe: dict[str, Any] = field(default_factory=dict)  # the raw timings the figures were fitted to
    # Weight classes whose probe model failed: taken at the float class's rates.
    unmeasured: list[WeightClass] = field(default_factory=list)
    # Measured with llama.cpp's extra buffer types off (--no-repack), after it crashed with them on.
    no_repack: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def copied_bandwidth(self, cls: str) -> float | None:
        """The read rate of a class's weights in the CPU's copies (CPU_REPACK, AMX), where measured."""
        return self.bandwidth.get(cls + COPIED)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DeviceSpeed:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


@dataclass(frozen=True)
class GroupSpeed:
    """What tensor parallelism over a group of devices costs beyond their own work."""

    layer_sync_s: Seconds  # per layer per token (the all-reduces between the devices)
    batch_layer_sync_s: Seconds  # per layer per prompt batch
    identity: str = ""
    measured_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def device_identity(kind: str, name: str, key: str, threads: int | None, build: str) -> str:
    """What makes a measurement valid: the device (its PCI bus id, UUID or RPC endpoint and what the
    worker reports), the CPU threads, and the llama.cpp build."""
    return f"v{SPEED_VERSION}|{kind}|{name}|{key}|threads={threads or '-'}|{build}"


def identity_of(device: Any, threads: int | None, build: str, served: str = "") -> str:
    """The identity a device's measurement is filed under (`device` is a devices.device.Device;
    the host CPU row is measured at the CPU thread count that runs use; `served`: how a worker on
    this machine computes, from its note: devices.rpc.served_key)."""
    if device.type == "cpu" or (device.backend == "CPU" and not device.endpoint):
        return device_identity("cpu", device.description.split(",")[0], "host", threads, build)
    # Not the device's name: RPC0/CUDA1 are positions in this run's list (the order of --rpc, of
    # CUDA_VISIBLE_DEVICES), and a worker probed second must be found again when used alone.
    if device.endpoint:
        return device_identity("rpc", "", f"{device.endpoint}|{device.description}|{device.total_bytes}{served}", None, build)
    key = device.pci_bus_id or (device.nvml.uuid if device.nvml is not None else "") or device.description
    return device_identity(device.backend, device.description, key, None, build)


def group_identity(members: list[str]) -> str:
    return "group|" + "||".join(sorted(members))


def _path(folder: Path, identity: str) -> Path:
    return folder / f"{hashlib.sha256(identity.encode()).hexdigest()[:20]}.json"


def save(folder: Path, identity: str, record: DeviceSpeed | GroupSpeed) -> Path:
    """Write one measurement, atomically (a reader never sees half a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = _path(folder, identity)
    doc = {"identity": identity, "kind": type(record).__name__, "record": record.as_dict()}
    write_whole(path, json.dumps(doc, indent=1).encode(), "speed_cache")
    return path


def load(folder: Path, identity: str) -> DeviceSpeed | GroupSpeed | None:
    """The cached measurement for this identity, or None (missing, unreadable, not what it should be,
    or another version): a cache file is checked as any document is, and a bad one is measured again."""
    path = _path(folder, identity)
    try:
        doc = msgspec.json.decode(read_bounded(path, "speed_cache", 1 << 20), type=CacheFile)
        if doc.identity != identity:
            return None
        if doc.kind == "GroupSpeed":
            return msgspec.json.decode(doc.record, type=GroupSpeed)
        return msgspec.json.decode(doc.record, type=DeviceSpeed)
    except (InputError, msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


class CacheFile(Struct):
    """One cached measurement: what it is of, and the record (decoded by its kind)."""

    identity: str
    kind: Literal["DeviceSpeed", "GroupSpeed"]
    record: Raw


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def cpu_cache_bytes() -> int:
    """The last-level cache of this machine's CPU (what a small model's weights can stay in)."""
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    best = 0
    try:
        for index in base.glob("index*"):
            level = int((index / "level").read_text())
            size = (index / "size").read_text().strip().upper()
            scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(size[-1:], 1)
            value = int(size.rstrip("KMG")) * scale
            if level >= 2 and value > best:
                best = value
    except (OSError, ValueError):
        return 0
    return best


def speed_folder() -> Path:
    """Where device measurements are cached (under the user cache folder)."""
    return cache_dir() / "speeds"
