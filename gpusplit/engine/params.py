"""The exact llama.cpp parameters of one load, as plain data: the same object drives the dry run,
the real run and the flags printed for llama-server, so they cannot drift apart. What the engine
takes; the planner builds it (planning/launch.py) and knows nothing of how it is run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Annotated, Any, Literal

from msgspec import Meta

from ..base.checked import INT32_MAX, Count
from ..gguf.types import type_by_name
from ..sources import model_flags, python_model_kwargs

LLAMA_MAX_DEVICES = 16
# llama.cpp's split modes and their llama_split_mode ids
SPLIT_MODES = {"none": 0, "layer": 1, "row": 2, "tensor": 3}
MAX_SEQ = 256  # LLAMA_MAX_SEQ

Positive32 = Annotated[int, Meta(ge=1, le=INT32_MAX)]


@dataclass(frozen=True)
class EngineParams:
    model_path: str  # a path, URL or hub name as the user gave it (sources.py says how each loads)
    model_url: str | None = None  # a registry name's file URL (llama-server's -mu)
    rpc: tuple[str, ...] = ()
    n_gpu_layers: Count = 0
    split_mode: Literal["none", "layer", "row", "tensor"] = "layer"
    main_gpu: Annotated[int, Meta(ge=0, lt=LLAMA_MAX_DEVICES)] = 0
    tensor_split: Annotated[tuple[Annotated[float, Meta(ge=0, le=1e9)], ...], Meta(max_length=LLAMA_MAX_DEVICES)] = ()
    n_ctx: Positive32 = 4096
    n_batch: Positive32 = 512
    n_ubatch: Positive32 = 512
    n_seq_max: Annotated[int, Meta(ge=1, le=MAX_SEQ)] = 1
    type_k: str = "f16"
    type_v: str = "f16"
    flash_attn: bool = False
    swa_full: bool = True
    offload_kqv: bool = True
    use_mmap: bool = True
    n_threads: Annotated[int, Meta(ge=1, le=1024)] | None = None
    n_cpu_moe: Count = 0  # expert tensors of the first N blocks stay on the CPU (tensor buffer overrides)
    seed: Annotated[int, Meta(ge=0, le=2**32 - 1)] = 0
    lora: tuple[str, ...] = ()  # LoRA adapters, applied at scale 1
    # llama-server's --no-repack: the CPU backend copies no host weights into AMX / CPU_REPACK buffers
    # (llama.cpp's use_extra_bufts = false; Llama() has no argument for it: the engine sets it)
    no_repack: bool = False

    def with_(self, **changes: Any) -> EngineParams:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["rpc"] = list(self.rpc)
        doc["tensor_split"] = list(self.tensor_split)
        doc["lora"] = list(self.lora)
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> EngineParams:
        data = dict(doc)
        data["rpc"] = tuple(data.get("rpc") or ())
        data["tensor_split"] = tuple(data.get("tensor_split") or ())
        data["lora"] = tuple(data.get("lora") or ())
        return cls(**data)

    def llama_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `llama_cpp.Llama(...)` (what `plan` prints for Python users)."""
        kwargs: dict[str, Any] = {
            **python_model_kwargs(self.model_path, self.model_url),
            "n_gpu_layers": self.n_gpu_layers,
            "split_mode": SPLIT_MODES[self.split_mode],
            "main_gpu": self.main_gpu,
            "n_ctx": self.n_ctx,
            "n_batch": self.n_batch,
            "n_ubatch": self.n_ubatch,
            "flash_attn": self.flash_attn,
            "swa_full": self.swa_full,
            "offload_kqv": self.offload_kqv,
            "use_mmap": self.use_mmap,
            "seed": self.seed,
        }
        if self.tensor_split:
            kwargs["tensor_split"] = list(self.tensor_split)
        if self.type_k != "f16":
            kwargs["type_k"] = ggml_type_id(self.type_k)
        if self.type_v != "f16":
            kwargs["type_v"] = ggml_type_id(self.type_v)
        if self.n_threads:
            kwargs["n_threads"] = self.n_threads
            kwargs["n_threads_batch"] = self.n_threads
        if self.lora:
            kwargs["lora_path"] = self.lora[0]  # Llama() takes one adapter
        return kwargs

    def cli_flags(self) -> list[str]:
        """llama-server / llama-cli flags for the same load."""
        flags = [*model_flags(self.model_path, self.model_url), "-ngl", str(self.n_gpu_layers), "-sm", self.split_mode]
        if self.split_mode in ("none", "row"):
            flags += ["-mg", str(self.main_gpu)]
        if self.tensor_split:
            flags += ["-ts", ",".join(_short(x) for x in self.tensor_split)]
        flags += ["-c", str(self.n_ctx), "-b", str(self.n_batch), "-ub", str(self.n_ubatch)]
        if self.n_seq_max > 1:
            flags += ["-np", str(self.n_seq_max)]
        flags += ["-ctk", self.type_k, "-ctv", self.type_v, "-fa", "on" if self.flash_attn else "off"]
        if self.swa_full:
            flags += ["--swa-full"]
        if self.n_cpu_moe:
            flags += ["--n-cpu-moe", str(self.n_cpu_moe)]
        if self.n_threads:
            flags += ["-t", str(self.n_threads)]
        if self.rpc:
            flags += ["--rpc", ",".join(self.rpc)]
        for path in self.lora:
            flags += ["--lora", path]
        if self.no_repack:
            flags += ["--no-repack"]
        return flags


def _short(value: float) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return text or "0"


def ggml_type_id(name: str) -> int:
    return type_by_name(name).id
