"""What a user asks of a plan, as one frozen object: built once (by the CLI from its options, or by
a script), carried unchanged into `plan`, `run`, `bench`, `tune` and the probe, copied with one
field changed by tune's moves and bench's matrix, and saved whole in a plan document so that a
saved plan plans again to the same thing.

Field names are llama.cpp's (llama-cpp-python's `Llama()` takes most of them); errors name them as
parameters, and the CLI shows its flags instead (cli/errors.py). Ranges are declared on the types:
msgspec checks them when a saved plan is read, `check_fields` when a script builds one.

    import gpusplit

    request = gpusplit.Request(n_ctx=8192, type_k="q8_0", type_v="q8_0", flash_attn=True)
    plan = gpusplit.plan("model.gguf", gpusplit.detect_devices(gpus=["24GiB"]), request)
    faster = request.with_(n_ubatch=1024)
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Annotated, Any, Literal

from msgspec import Meta

from ..base.checked import INT32_MAX, check_fields
from ..base.errors import InputError
from ..base.units import MAX_RATE, MAX_SIZE
from ..engine.params import LLAMA_MAX_DEVICES, MAX_SEQ

MAX_SEQUENCES = MAX_SEQ  # LLAMA_MAX_SEQ: llama.cpp refuses more parallel sequences
MAX_ADAPTERS = 64
MAX_THREADS = 1024
MAX_PATH = 4096  # PATH_MAX: longer is no file name
MAX_SHARE = 1e9  # a proportion: any positive number, bounded so that sums stay finite

KvType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]
SplitMode = Literal["none", "layer", "row", "tensor"]
KV_TYPES: tuple[KvType, ...] = typing.get_args(KvType)
SPLIT_MODES: tuple[SplitMode, ...] = typing.get_args(SplitMode)
Count = Annotated[int, Meta(ge=1, le=INT32_MAX)]
Layers = Annotated[int, Meta(ge=-1, le=INT32_MAX)]  # -1: all
FilePath = Annotated[str, Meta(min_length=1, max_length=MAX_PATH)]
Share = Annotated[float, Meta(ge=0, le=MAX_SHARE)]
Size = Annotated[int, Meta(ge=0, le=MAX_SIZE)]


@dataclass(frozen=True)
class Request:
    """A plan's settings: the load (llama.cpp's context and caches), the split (evaluated as given
    where given, chosen where not), the memory kept free, companion files and the CPU."""

    # the load: the context (None: 4096, or the model's trained context if smaller), the batches,
    # parallel sequences, the K and V cache types (None: f16), flash attention, sliding-window caches
    n_ctx: Count | None = None
    n_batch: Count = 512
    n_ubatch: Count = 512
    n_parallel: Annotated[int, Meta(ge=1, le=MAX_SEQUENCES)] = 1
    # users decoding together (a server's busy slots): at least that many slots, candidates ranked by
    # all users' generation together, and replicas (one server per device) weighed against one
    users: Annotated[int, Meta(ge=1, le=MAX_SEQUENCES)] | None = None
    type_k: KvType | None = None
    type_v: KvType | None = None
    flash_attn: bool = False
    swa_full: bool = True
    # the split: None chooses; a value is evaluated exactly as given
    split_mode: SplitMode | None = None
    tensor_split: Annotated[tuple[Share, ...], Meta(min_length=1, max_length=LLAMA_MAX_DEVICES)] | None = None
    n_gpu_layers: Layers | None = None  # counting the output layer; -1: all
    main_gpu: Annotated[int, Meta(ge=0, lt=LLAMA_MAX_DEVICES)] | None = None
    n_cpu_moe: Annotated[int, Meta(ge=0, le=INT32_MAX)] | None = None  # experts of the first N blocks on the CPU
    spread: bool = False  # every GPU gets at least one layer
    # memory kept free: one size for every device, or one per device (None: 512 MiB on real
    # devices, nothing on hypothetical ones)
    reserve: Annotated[tuple[Size, ...], Meta(min_length=1, max_length=LLAMA_MAX_DEVICES)] | None = None
    cpu_bandwidth: Annotated[float, Meta(gt=0, le=MAX_RATE)] | None = None  # bytes/s, for a CPU not probed
    allow_ctx_overflow: bool = False  # n_ctx above the model's trained context
    # companion files: LoRA adapters, a speculative-decoding draft model and its offloaded layers,
    # a multimodal projector (None: the one the model's source loads with it; "": none)
    lora: Annotated[tuple[FilePath, ...], Meta(max_length=MAX_ADAPTERS)] = ()
    draft: FilePath | None = None
    n_gpu_layers_draft: Layers = -1
    mmproj: Annotated[str, Meta(max_length=MAX_PATH)] | None = None
    # the CPU: llama.cpp's --no-repack (no AMX / CPU_REPACK copies of the host's weights), threads
    # (None: every core)
    no_repack: bool = False
    n_threads: Annotated[int, Meta(ge=1, le=MAX_THREADS)] | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("type_k", "type_v"):
            value = getattr(self, name)
            if value is not None and value not in KV_TYPES:
                raise _not_a_kv_type(value, name)
        if self.split_mode is not None:
            split_mode(self.split_mode)
        if self.tensor_split is not None and not any(self.tensor_split):
            raise InputError(
                "{p.tensor_split} is all zeros", "give each device a share, for example 0.75,0.25", parameter="tensor_split"
            )
        if self.n_ubatch > self.n_batch:
            raise InputError(
                "{p.n_ubatch} {ubatch} is above {p.n_batch} {batch}",
                "a physical batch is at most the logical one",
                parameter="n_ubatch",
                ubatch=self.n_ubatch,
                batch=self.n_batch,
            )

    def with_(self, **changes: Any) -> Request:
        """A copy with some fields changed (checked like a new one)."""
        return replace(self, **changes)

    @property
    def kv_types(self) -> tuple[str, str]:
        """The K and V cache types llama.cpp will use (f16 where not given)."""
        return self.type_k or "f16", self.type_v or "f16"

    def reserves(self, n_devices: int) -> tuple[int, ...] | None:
        """The bytes kept free on each of `n_devices` devices (None: the planner's defaults)."""
        if self.reserve is None:
            return None
        if len(self.reserve) == 1:
            return self.reserve * n_devices
        if len(self.reserve) != n_devices:
            raise InputError(
                "{p.reserve} has {given} sizes but there are {n} devices",
                "give one size for every device, or one per device",
                parameter="reserve",
                given=len(self.reserve),
                n=n_devices,
            )
        return self.reserve

    def as_dict(self) -> dict[str, Any]:
        """The request as JSON values (a plan document's `request`)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


DEFAULT = Request()


def split_shares(text: str | Sequence[float]) -> tuple[float, ...]:
    """'0.75,0.25' (or '3/1'), or a sequence of numbers, as a tensor_split."""
    if isinstance(text, str):
        try:
            values = tuple(float(x) for x in text.replace("/", ",").split(",") if x.strip())
        except ValueError:
            raise InputError(
                "{p.tensor_split} {value!r} is not a list of numbers",
                "for example 0.75,0.25",
                parameter="tensor_split",
                value=text,
            ) from None
    else:
        values = tuple(float(x) for x in text)
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise InputError(
            "{p.tensor_split} {value!r} must be non-negative numbers",
            "for example 0.75,0.25",
            parameter="tensor_split",
            value=text if isinstance(text, str) else ",".join(f"{v:g}" for v in values),
        )
    return values


def kv_type(text: str, parameter: str = "type_k") -> KvType:
    """A KV cache type as llama.cpp names it (case as given is accepted)."""
    for known in KV_TYPES:
        if text.lower() == known:
            return known
    raise _not_a_kv_type(text, parameter)


def _not_a_kv_type(value: str, parameter: str) -> InputError:
    return InputError(
        "{p} {value!r} is not a KV cache type", "use one of {choices}", parameter=parameter, value=value,
        choices=", ".join(KV_TYPES),
    )  # fmt: skip


def split_mode(text: str | None) -> SplitMode | None:
    """llama.cpp's split mode by name; None (the planner chooses) for None or "auto"."""
    if text is None or text == "auto":
        return None
    for known in SPLIT_MODES:
        if text == known:
            return known
    raise InputError(
        "{p.split_mode} {value!r} is not a split mode",
        "use none, layer, row or tensor (or leave it out to choose)",
        parameter="split_mode",
        value=text,
    )
