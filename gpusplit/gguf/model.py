"""ModelInfo: what a GGUF header says about a model, in the terms memory planning needs.

Tensors are grouped the way llama.cpp places them: the input layer (`token_embd`, which always
stays on the CPU), one group per block `blk.N`, and the output layer (`output`, `output_norm`),
which `n_gpu_layers` offloads first.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import GGUFError
from .reader import DEFAULT_LIMITS, ArrayInfo, GGUFFile, Limits, TensorInfo, read_gguf
from .types import FILE_TYPES

MAX_BLOCK_COUNT = 512

_BLOCK_RE = re.compile(r"^blk\.(\d+)\.")
_INPUT_PREFIXES = ("token_embd", "token_types", "position_embd", "token_embd_norm")
_OUTPUT_PREFIXES = ("output", "output_norm", "cls")

# Sliding-window layer pattern per architecture, from llama.cpp 0.3.36's src/models/*.cpp
# (`load_swa_pattern(ml, n_pattern, dense_first)`): layer il is SWA when
# il % n < n - 1 (or il % n != 0 with dense_first). `<arch>.attention.sliding_window_pattern`
# in the file overrides it.
SWA_PATTERNS: dict[str, tuple[int, bool]] = {
    "gemma2": (2, False),
    "gemma3": (6, False),
    "gemma3n": (5, False),
    "gemma-embedding": (6, False),
    "cohere2": (4, False),
    "cohere2moe": (4, True),
    "exaone4": (4, False),
    "exaone-moe": (4, False),
    "olmo2": (4, False),
    "llama4": (4, False),
    "gpt-oss": (2, False),
    "afmoe": (4, False),
    "smallthinker": (4, True),
    "plamo3": (8, False),
    "modern-bert": (3, True),
}


@dataclass(frozen=True)
class TensorGroup:
    """Tensors that llama.cpp places together: the input layer, one block, or the output layer."""

    name: str  # "input", "blk.N", "output", "other"
    index: int | None  # N for blocks
    tensors: tuple[TensorInfo, ...]

    @property
    def n_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def n_elements(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def type_mix(self) -> dict[str, int]:
        """Bytes per ggml type, largest first."""
        mix: Counter[str] = Counter()
        for t in self.tensors:
            mix[t.ggml_type.name] += t.n_bytes
        return dict(mix.most_common())


@dataclass(frozen=True)
class ModelInfo:
    path: str
    architecture: str
    name: str
    file_type: str | None
    n_layer: int
    n_embd: int
    n_head: tuple[int, ...]  # per layer
    n_head_kv: tuple[int, ...]  # per layer (0 for recurrent layers)
    head_dim_k: int
    head_dim_v: int
    n_ff: tuple[int, ...]  # per layer
    context_length: int | None
    n_vocab: int
    n_merges: int
    n_expert: int
    n_expert_used: int
    sliding_window: int
    swa_layers: tuple[bool, ...]  # per layer: uses the sliding window
    tokenizer_model: str | None
    chat_template_chars: int | None
    input: TensorGroup
    blocks: tuple[TensorGroup, ...]
    output: TensorGroup
    other: TensorGroup
    gguf_version: int
    n_shards: int
    header_bytes: int
    file_bytes: int
    missing_bytes: int

    @property
    def n_params(self) -> int:
        return sum(g.n_elements for g in self.groups)

    @property
    def total_bytes(self) -> int:
        return sum(g.n_bytes for g in self.groups)

    @property
    def groups(self) -> tuple[TensorGroup, ...]:
        return (self.input, *self.blocks, self.output, self.other)

    @property
    def complete(self) -> bool:
        return self.missing_bytes == 0


def read_model(
    path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS, on_fetch: Callable[[int], None] | None = None
) -> ModelInfo:
    """Read a GGUF model's header (all shards, local or http(s)) and describe it; raises GGUFError."""
    return describe(read_gguf(path, limits, on_fetch))


class _Keys:
    """Typed access to `<arch>.*` hyperparameters that names the key in every error."""

    def __init__(self, f: GGUFFile, arch: str) -> None:
        self.f = f
        self.arch = arch

    def fail(self, key: str, reason: str) -> GGUFError:
        return GGUFError(self.f.path, self.f.key_offsets.get(key), key, reason)

    def int(self, suffix: str, default: int | None = None, *, required: bool = False) -> int | None:
        key = f"{self.arch}.{suffix}"
        value = self.f.metadata.get(key)
        if value is None:
            if required:
                raise GGUFError(self.f.path, None, key, "missing")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, not {self.f.value_types[key]}")
        if value < 0:
            raise self.fail(key, f"is negative ({value})")
        return value

    def per_layer(self, suffix: str, n_layer: int, default: int | None) -> tuple[int, ...] | None:
        """A hyperparameter that is a scalar or a per-layer array."""
        key = f"{self.arch}.{suffix}"
        value = self.f.metadata.get(key)
        if isinstance(value, tuple):
            if len(value) != n_layer:
                raise self.fail(key, f"has {len(value)} entries, expected one per layer ({n_layer})")
            if any(isinstance(v, (float, str, bool)) or v < 0 for v in value):
                raise self.fail(key, "entries must be non-negative integers")
            return tuple(int(v) for v in value)
        if isinstance(value, ArrayInfo):
            raise self.fail(key, f"has {value.count} entries, expected one per layer ({n_layer})")
        scalar = self.int(suffix, default)
        return None if scalar is None else (scalar,) * n_layer


def describe(f: GGUFFile) -> ModelInfo:
    arch = f.metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise GGUFError(f.path, f.key_offsets.get("general.architecture"), "general.architecture", "missing or not a string")
    keys = _Keys(f, arch)
    n_layer = keys.int("block_count", required=True)
    assert n_layer is not None
    if not 1 <= n_layer <= MAX_BLOCK_COUNT:
        raise keys.fail(f"{arch}.block_count", f"{n_layer} blocks (1 to {MAX_BLOCK_COUNT} allowed)")
    n_embd = keys.int("embedding_length", required=True)
    assert n_embd is not None
    if n_embd == 0:
        raise keys.fail(f"{arch}.embedding_length", "is 0")

    n_head = keys.per_layer("attention.head_count", n_layer, None)
    if n_head is None:
        raise GGUFError(f.path, None, f"{arch}.attention.head_count", "missing")
    if not any(n_head):
        raise keys.fail(f"{arch}.attention.head_count", "is 0")
    n_head_kv = keys.per_layer("attention.head_count_kv", n_layer, None) or n_head
    for il, (h, kv) in enumerate(zip(n_head, n_head_kv)):
        if kv > h:
            raise keys.fail(f"{arch}.attention.head_count_kv", f"layer {il} has {kv} KV heads but only {h} heads")
    first_heads = next(h for h in n_head if h)
    head_dim_k = keys.int("attention.key_length", n_embd // first_heads)
    head_dim_v = keys.int("attention.value_length", n_embd // first_heads)
    n_ff = keys.per_layer("feed_forward_length", n_layer, 0)

    n_expert = keys.int("expert_count", 0) or 0
    n_expert_used = keys.int("expert_used_count", 0) or 0
    if n_expert_used > n_expert:
        raise keys.fail(f"{arch}.expert_used_count", f"{n_expert_used} used experts but only {n_expert} experts")

    sliding_window = keys.int("attention.sliding_window", 0) or 0
    swa_layers = _swa_layers(f, keys, arch, n_layer, sliding_window)

    groups = _group_tensors(f, n_layer)
    n_vocab = _vocab_size(f, arch, groups[0])
    merges = f.metadata.get("tokenizer.ggml.merges")
    template = f.metadata.get("tokenizer.chat_template")
    file_type = f.metadata.get("general.file_type")
    name = f.metadata.get("general.name")
    return ModelInfo(
        path=f.path,
        architecture=arch,
        name=name if isinstance(name, str) else os.path.basename(f.path),
        file_type=FILE_TYPES.get(file_type, f"unknown ({file_type})") if isinstance(file_type, int) else None,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim_k=head_dim_k or 0,
        head_dim_v=head_dim_v or 0,
        n_ff=n_ff or (0,) * n_layer,
        context_length=keys.int("context_length"),
        n_vocab=n_vocab,
        n_merges=len(merges) if isinstance(merges, (tuple, ArrayInfo)) else 0,
        n_expert=n_expert,
        n_expert_used=n_expert_used,
        sliding_window=sliding_window,
        swa_layers=swa_layers,
        tokenizer_model=_str_or_none(f.metadata.get("tokenizer.ggml.model")),
        chat_template_chars=len(template) if isinstance(template, str) else None,
        input=groups[0],
        blocks=groups[1],
        output=groups[2],
        other=groups[3],
        gguf_version=f.version,
        n_shards=len(f.shards),
        header_bytes=f.header_bytes,
        file_bytes=sum(s.file_size for s in f.shards),
        missing_bytes=f.missing_bytes,
    )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _swa_layers(f: GGUFFile, keys: _Keys, arch: str, n_layer: int, sliding_window: int) -> tuple[bool, ...]:
    if not sliding_window:
        return (False,) * n_layer
    key = f"{arch}.attention.sliding_window_pattern"
    value = f.metadata.get(key)
    if isinstance(value, tuple):
        if len(value) != n_layer:
            raise keys.fail(key, f"has {len(value)} entries, expected one per layer ({n_layer})")
        return tuple(bool(v) for v in value)
    n_pattern, dense_first = SWA_PATTERNS.get(arch, (0, False))
    if isinstance(value, int) and not isinstance(value, bool):
        n_pattern = value
    elif arch not in SWA_PATTERNS:
        # A window without a known pattern: llama.cpp's default period 0 means every layer.
        n_pattern = 0
    if dense_first:
        return tuple(n_pattern == 0 or il % n_pattern != 0 for il in range(n_layer))
    return tuple(n_pattern == 0 or il % n_pattern < n_pattern - 1 for il in range(n_layer))


def _group_tensors(f: GGUFFile, n_layer: int) -> tuple[TensorGroup, tuple[TensorGroup, ...], TensorGroup, TensorGroup]:
    inputs: list[TensorInfo] = []
    outputs: list[TensorInfo] = []
    others: list[TensorInfo] = []
    blocks: list[list[TensorInfo]] = [[] for _ in range(n_layer)]
    for t in f.tensors:
        m = _BLOCK_RE.match(t.name)
        if m:
            il = int(m.group(1))
            if il >= n_layer:
                raise GGUFError(
                    f.path,
                    None,
                    f"tensor {t.name!r}",
                    f"block {il} does not exist: {f.metadata['general.architecture']}.block_count is {n_layer}",
                )
            blocks[il].append(t)
            continue
        stem = t.name.split(".", 1)[0]
        if stem in _INPUT_PREFIXES:
            inputs.append(t)
        elif stem in _OUTPUT_PREFIXES:
            outputs.append(t)
        else:
            others.append(t)
    return (
        TensorGroup("input", None, tuple(inputs)),
        tuple(TensorGroup(f"blk.{il}", il, tuple(ts)) for il, ts in enumerate(blocks)),
        TensorGroup("output", None, tuple(outputs)),
        TensorGroup("other", None, tuple(others)),
    )


def _vocab_size(f: GGUFFile, arch: str, input_group: TensorGroup) -> int:
    tokens = f.metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, (tuple, ArrayInfo)):
        return len(tokens)
    explicit = f.metadata.get(f"{arch}.vocab_size")
    if isinstance(explicit, int) and not isinstance(explicit, bool):
        return explicit
    for t in input_group.tensors:
        if t.name == "token_embd.weight" and len(t.shape) >= 2:
            return t.shape[1]
    return 0
