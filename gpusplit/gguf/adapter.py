"""Companion files loaded beside a model: LoRA adapters (`--lora`) and projectors (`--mmproj`).

llama.cpp 0.3.36 (src/llama-adapter.cpp) loads each `<base>.lora_a` / `<base>.lora_b` pair into the
buffer type of the base tensor (the CPU's plain buffer where the base is repacked), so an adapter's
bytes live wherever the layers it adapts live. A multimodal projector (tools/mtmd/clip.cpp) is
read whole into one buffer of the first GPU device llama.cpp lists (the CPU when there is none).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from .errors import GGUFError
from .reader import DEFAULT_LIMITS, Limits, read_gguf


@dataclass(frozen=True)
class AdapterInfo:
    path: str
    architecture: str
    alpha: float | None
    targets: tuple[tuple[str, int], ...]  # (base tensor name, bytes of its lora_a and lora_b)

    @property
    def n_bytes(self) -> int:
        return sum(nbytes for _, nbytes in self.targets)


def read_adapter(
    path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS, on_fetch: Callable[[int], None] | None = None
) -> AdapterInfo:
    """Read a LoRA adapter's header; raises GGUFError when the file is not one."""
    f = read_gguf(path, limits, on_fetch)
    kind, adapter = f.metadata.get("general.type"), f.metadata.get("adapter.type")
    if kind != "adapter" or adapter != "lora":
        raise GGUFError(
            f.path,
            f.key_offsets.get("general.type"),
            "general.type",
            f"is {kind!r} with adapter.type {adapter!r}, not a LoRA adapter ('adapter', 'lora')",
            "give {p.lora} a LoRA adapter GGUF (convert_lora_to_gguf.py writes them)",
            parameter="lora",
        )
    arch = f.metadata.get("general.architecture")
    alpha = f.metadata.get("adapter.lora.alpha")
    pairs: dict[str, int] = {}
    for t in f.tensors:
        for suffix in (".lora_a", ".lora_b"):
            if t.name.endswith(suffix):
                base = t.name[: -len(suffix)]
                pairs[base] = pairs.get(base, 0) + t.n_bytes
    if not pairs:
        raise GGUFError(f.path, None, "tensors", "has no .lora_a / .lora_b tensors", "is this a LoRA adapter?", parameter="lora")
    return AdapterInfo(
        path=f.path,
        architecture=arch if isinstance(arch, str) else "",
        alpha=float(alpha) if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) else None,
        targets=tuple(pairs.items()),
    )


@dataclass(frozen=True)
class ProjectorInfo:
    path: str
    projector_type: str  # clip.projector_type: mlp, gemma3, qwen2.5vl_merger, ...
    n_bytes: int  # its tensors, as clip.cpp loads them (no mmap)


def read_projector(
    path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS, on_fetch: Callable[[int], None] | None = None
) -> ProjectorInfo:
    """Read a multimodal projector's header (`--mmproj`); raises GGUFError when the file is not one."""
    f = read_gguf(path, limits, on_fetch)
    if f.metadata.get("general.architecture") != "clip":
        raise GGUFError(
            f.path,
            f.key_offsets.get("general.architecture"),
            "general.architecture",
            f"is {f.metadata.get('general.architecture')!r}, not a projector ('clip')",
            "give {p.mmproj} the mmproj-*.gguf file published beside the model",
            parameter="mmproj",
        )
    kind = f.metadata.get("clip.projector_type")
    return ProjectorInfo(f.path, kind if isinstance(kind, str) else "unknown", sum(t.n_bytes for t in f.tensors))
