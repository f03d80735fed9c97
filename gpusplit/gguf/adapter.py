"""LoRA adapters (`--lora FILE`): which base tensors they adapt and how many bytes each pair adds.

llama.cpp 0.3.36 (src/llama-adapter.cpp) loads each `<base>.lora_a` / `<base>.lora_b` pair into the
buffer type of the base tensor (the CPU's plain buffer where the base is repacked), so an adapter's
bytes live wherever the layers it adapts live.
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
            "give --lora a LoRA adapter GGUF (convert_lora_to_gguf.py writes them)",
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
        raise GGUFError(f.path, None, "tensors", "has no .lora_a / .lora_b tensors", "is this a LoRA adapter?")
    return AdapterInfo(
        path=f.path,
        architecture=arch if isinstance(arch, str) else "",
        alpha=float(alpha) if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) else None,
        targets=tuple(pairs.items()),
    )
