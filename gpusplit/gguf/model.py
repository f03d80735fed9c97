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
from typing import TypedDict

from .errors import GGUFError
from .reader import DEFAULT_LIMITS, ArrayInfo, GGUFFile, Limits, MetadataValue, TensorInfo, read_gguf
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
    kv_layers: tuple[bool, ...] = ()  # per layer: holds an attention KV cache (empty: every layer with KV heads)
    recurrent_layers: tuple[bool, ...] = ()  # per layer: holds a recurrent state (empty: none)
    n_embd_r: int = 0  # recurrent state R (conv / token shift) per sequence per layer, f32 elements
    n_embd_s: int = 0  # recurrent state S (SSM / WKV) per sequence per layer, f32 elements
    kv_lora_rank: int = 0  # MLA: the compressed latent's width
    is_mla: bool = False  # MLA: one K-only cache of the latent (kv_lora_rank + rope dims)
    memory_rules: str = "attention"  # attention | mla | recurrent | hybrid | approximate
    n_nextn: int = 0  # trailing NextN (multi-token prediction) blocks: llama.cpp skips them unless asked
    source_url: str | None = None  # a model read by its hub or registry name: the URL of its first file

    def has_kv(self, il: int) -> bool:
        return self.kv_layers[il] if self.kv_layers else self.n_head_kv[il] > 0

    def is_recurrent(self, il: int) -> bool:
        return bool(self.recurrent_layers) and self.recurrent_layers[il]

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

    def fail(self, key: str, reason: str, hint: str = "") -> GGUFError:
        return GGUFError(self.f.path, self.f.key_offsets.get(key), key, reason, hint)

    def integer(self, suffix: str, default: int | None = None, *, required: bool = False) -> int | None:
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
            if value.count != n_layer:
                raise self.fail(key, f"has {value.count} entries, expected one per layer ({n_layer})")
            if value.element_type in ("string", "array"):
                raise self.fail(key, "entries must be non-negative integers")
            # a per-layer array is small: only the reader's budget for all the arrays read leaves it unread
            raise self.fail(key, "not read: the arrays before it in the header hold too many elements in all")
        scalar = self.integer(suffix, default)
        return None if scalar is None else (scalar,) * n_layer


def describe(f: GGUFFile) -> ModelInfo:
    arch = f.metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise GGUFError(f.path, f.key_offsets.get("general.architecture"), "general.architecture", "missing or not a string")
    keys = _Keys(f, arch)
    n_layer = keys.integer("block_count", required=True)
    assert n_layer is not None
    if not 1 <= n_layer <= MAX_BLOCK_COUNT:
        raise keys.fail(f"{arch}.block_count", f"{n_layer} blocks (1 to {MAX_BLOCK_COUNT} allowed)")
    n_embd = keys.integer("embedding_length", required=True)
    assert n_embd is not None
    if n_embd == 0:
        raise keys.fail(f"{arch}.embedding_length", "is 0")

    n_head = keys.per_layer("attention.head_count", n_layer, None)
    if n_head is None and arch in PURE_RECURRENT:
        n_head = (0,) * n_layer  # Mamba and RWKV files may carry no attention heads at all
    if n_head is None:
        raise GGUFError(f.path, None, f"{arch}.attention.head_count", "missing")
    if not any(n_head) and arch not in PURE_RECURRENT:
        raise keys.fail(f"{arch}.attention.head_count", "is 0")
    n_head_kv = keys.per_layer("attention.head_count_kv", n_layer, None) or n_head
    for il, (h, kv) in enumerate(zip(n_head, n_head_kv)):
        if kv > h:
            raise keys.fail(f"{arch}.attention.head_count_kv", f"layer {il} has {kv} KV heads but only {h} heads")
    first_heads = next((h for h in n_head if h), 1)
    head_dim_k = keys.integer("attention.key_length", n_embd // first_heads)
    head_dim_v = keys.integer("attention.value_length", n_embd // first_heads)
    n_ff = keys.per_layer("feed_forward_length", n_layer, 0)

    n_expert = keys.integer("expert_count", 0) or 0
    n_expert_used = keys.integer("expert_used_count", 0) or 0
    if n_expert_used > n_expert:
        raise keys.fail(f"{arch}.expert_used_count", f"{n_expert_used} used experts but only {n_expert} experts")

    sliding_window = keys.integer("attention.sliding_window", 0) or 0
    swa_layers = _swa_layers(f, keys, arch, n_layer, sliding_window)

    state = _memory_kinds(f, keys, arch, n_layer, n_embd, n_head, n_head_kv, n_ff or (0,) * n_layer, head_dim_k or 0)
    groups = _group_tensors(f, n_layer)
    n_vocab = _vocab_size(f, keys, groups[0])
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
        context_length=keys.integer("context_length"),
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
        **state,
    )


# Which memory llama.cpp 0.3.36 gives each architecture (src/models/<arch>.cpp, llama-hparams.cpp).
PURE_RECURRENT = frozenset({"mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7"})
# Hybrids whose recurrent layers are the ones without KV heads.
HYBRID_BY_KV_HEADS = frozenset({"jamba", "plamo2", "granitehybrid", "lfm2", "lfm2moe", "kimi-linear", "kimi-k3", "bailingmoe3"})
HYBRID_BY_INTERVAL = {"qwen3next": 4, "qwen35": 4, "qwen35moe": 4, "minimax-01": 8}  # default full_attention_interval
MLA_ARCHITECTURES = frozenset({"deepseek2", "mistral4", "kimi-linear", "kimi-k3", "bailingmoe3"})
# Plain attention caches whose sizing docs/accuracy.md checks (or that llama.cpp builds the same way).
ATTENTION_ARCHITECTURES = frozenset(
    [
        "llama",
        "llama4",  # chunked attention: sized like a sliding window (llama_kv_cache_iswa)
        "gpt-oss",  # sliding window on every other layer; attention sinks are weights, not cache
        "qwen2",
        "qwen2moe",
        "qwen3",
        "qwen3moe",
        "gemma",
        "gemma2",
        "gemma3",
        "mistral3",
        "phi3",
        "granite",
        "granitemoe",
        "command-r",
        "cohere2",
        "olmo",
        "starcoder2",
        "internlm2",
        "exaone",
        "smollm3",
        "glm4",
        "glm4moe",
    ]
)


class _MemoryKinds(TypedDict):
    """ModelInfo's fields that say which memory each layer holds (see _memory_kinds)."""

    kv_layers: tuple[bool, ...]
    recurrent_layers: tuple[bool, ...]
    n_embd_r: int
    n_embd_s: int
    kv_lora_rank: int
    is_mla: bool
    memory_rules: str
    n_nextn: int


def _memory_kinds(
    f: GGUFFile,
    keys: _Keys,
    arch: str,
    n_layer: int,
    n_embd: int,
    n_head: tuple[int, ...],
    n_head_kv: tuple[int, ...],
    n_ff: tuple[int, ...],
    head_dim_k: int,
) -> _MemoryKinds:
    """Which layers hold attention KV, which hold recurrent state, and its width; MLA."""
    # NextN (multi-token prediction) blocks are loaded but get no cache in the main context.
    nextn = keys.integer("nextn_predict_layers", 0) or 0
    main = tuple(il < n_layer - nextn for il in range(n_layer))
    kv, recurrent, rules = _layer_caches(f, keys, arch, main, n_head_kv, n_ff)
    n_embd_r, n_embd_s = _recurrent_state_widths(keys, arch, n_embd, n_head, head_dim_k) if any(recurrent) else (0, 0)
    kv_lora_rank = keys.integer("attention.kv_lora_rank", 0) or 0
    is_mla = bool(keys.integer("attention.key_length_mla", 0) and keys.integer("attention.value_length_mla", 0))
    if arch in MLA_ARCHITECTURES and rules != "hybrid":
        # Without the _mla keys (older deepseek2 files) llama.cpp stores plain, decompressed K and V.
        rules = "mla" if is_mla else "attention"
    elif is_mla and rules != "hybrid":
        rules = "approximate"  # e.g. DSA models: an MLA cache plus an indexer cache not modelled here
    return {
        "kv_layers": kv,
        "recurrent_layers": recurrent if any(recurrent) else (),
        "n_embd_r": n_embd_r,
        "n_embd_s": n_embd_s,
        "kv_lora_rank": kv_lora_rank,
        "is_mla": is_mla,
        "memory_rules": rules,
        "n_nextn": nextn if 0 < nextn < n_layer else 0,
    }


def _layer_caches(
    f: GGUFFile, keys: _Keys, arch: str, main: tuple[bool, ...], n_head_kv: tuple[int, ...], n_ff: tuple[int, ...]
) -> tuple[tuple[bool, ...], tuple[bool, ...], str]:
    """(layers with an attention KV cache, layers with a recurrent state, the memory rules) of the
    `main` layers (those not NextN), by architecture."""
    n_layer = len(main)
    kv = tuple(m and h > 0 for m, h in zip(main, n_head_kv))
    recurrent = (False,) * n_layer
    rules = "attention" if arch in ATTENTION_ARCHITECTURES else "approximate"
    if arch in PURE_RECURRENT:
        recurrent, kv, rules = main, (False,) * n_layer, "recurrent"
    elif arch in HYBRID_BY_KV_HEADS:
        recurrent, rules = tuple(m and h == 0 for m, h in zip(main, n_head_kv)), "hybrid"
    elif arch == "falcon-h1":
        recurrent, kv, rules = main, main, "hybrid"
    elif arch in ("nemotron_h", "nemotron_h_moe"):
        recurrent = tuple(m and h == 0 and ff == 0 for m, h, ff in zip(main, n_head_kv, n_ff))
        kv = tuple(m and h > 0 and ff == 0 for m, h, ff in zip(main, n_head_kv, n_ff))
        rules = "hybrid"
    elif arch in HYBRID_BY_INTERVAL:
        flags = f.metadata.get(f"{arch}.attention.recurrent_layers")
        if isinstance(flags, tuple) and len(flags) == n_layer:
            recurrent = tuple(m and bool(v) for m, v in zip(main, flags))
        else:
            interval = keys.integer("full_attention_interval", HYBRID_BY_INTERVAL[arch]) or HYBRID_BY_INTERVAL[arch]
            recurrent = tuple(m and (il + 1) % interval != 0 for il, m in enumerate(main))
        kv = tuple(m and not r for m, r in zip(main, recurrent))
        rules = "hybrid"
    return kv, recurrent, rules


def _recurrent_state_widths(keys: _Keys, arch: str, n_embd: int, n_head: tuple[int, ...], head_dim_k: int) -> tuple[int, int]:
    """(n_embd_r, n_embd_s): a recurrent layer's state R (conv / token shift) and S (SSM / WKV),
    f32 elements per sequence, as llama_hparams::n_embd_r() and n_embd_s() give them."""
    first_heads = next((h for h in n_head if h), 0)
    d_conv = keys.integer("ssm.conv_kernel", 0) or 0
    d_inner = keys.integer("ssm.inner_size", 0) or 0
    d_state = keys.integer("ssm.state_size", 0) or 0
    n_group = keys.integer("ssm.group_count", 0) or 0
    wkv = keys.integer("wkv.head_size", 0) or 0
    l_cache = keys.integer("shortconv.l_cache", 0) or 0
    kda = keys.integer("kda.head_dim", 0) or 0
    # first match wins, as in llama.cpp
    if wkv:
        return (keys.integer("token_shift_count", 2) or 0) * n_embd, n_embd * wkv
    if l_cache:
        return n_embd * (l_cache - 1), 0
    if kda:
        return 3 * max(d_conv - 1, 0) * first_heads * kda, kda * kda * first_heads
    n_embd_r = max(d_conv - 1, 0) * (d_inner + 2 * n_group * d_state)
    n_embd_s = head_dim_k * head_dim_k * first_heads if arch == "minimax-01" else d_state * d_inner
    return n_embd_r, n_embd_s


def _str_or_none(value: MetadataValue | None) -> str | None:
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


def _vocab_size(f: GGUFFile, keys: _Keys, input_group: TensorGroup) -> int:
    """The tokens' count, else `<arch>.vocab_size`, else token_embd's rows; 0 where none says."""
    key = "tokenizer.ggml.tokens"
    tokens = f.metadata.get(key)
    if isinstance(tokens, (tuple, ArrayInfo)):
        if not len(tokens):
            raise keys.fail(key, "is empty", "a model's vocabulary needs at least one token")
        return len(tokens)
    explicit = keys.integer("vocab_size")
    if explicit is not None:
        if explicit == 0:
            raise keys.fail(f"{keys.arch}.vocab_size", "is 0", "a model's vocabulary needs at least one token")
        return explicit
    for t in input_group.tensors:
        if t.name == "token_embd.weight" and len(t.shape) >= 2:
            return t.shape[1]
    return 0
