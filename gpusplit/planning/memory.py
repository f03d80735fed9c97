"""Bytes per device for a model, a placement and context settings: pure functions, no I/O.

Weights and KV cache follow llama.cpp 0.3.36 exactly (src/llama-model.cpp `load_tensors`,
src/llama-kv-cache.cpp, src/llama-context.cpp). Compute buffers are an estimate that follows how
llama.cpp reserves them (the worst-case prompt batch of n_ubatch tokens against the full KV
cache, the attention mask, the scheduler's input copies with pipeline parallelism); its per-token
coefficients were calibrated against llama.cpp's own dry run on the fixture models
(benchmarks/accuracy.py) and `plan --measure` replaces them with a real dry run.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from ..base.reasons import Reason
from ..devices.backends import OP_OFFLOAD_MIN_BATCH
from ..devices.backends import backend as backend_of
from ..devices.cpu import AMX, REPACK
from ..gguf.types import type_by_name
from .cpu_buffers import MUL_MAT, host_copy

if TYPE_CHECKING:
    from ..gguf.adapter import AdapterInfo
    from ..gguf.model import ModelInfo
    from ..gguf.reader import TensorInfo
    from .request import SplitMode

MIB = 1024 * 1024
CTX_PAD = 256  # llama.cpp pads n_ctx (and n_ctx_seq) to a multiple of 256
PIPELINE_COPIES = 4  # GGML_SCHED_MAX_COPIES: input copies kept with pipeline parallelism
CUDA_ROW_PADDING = 512  # MATRIX_ROW_PADDING: CUDA pads quantized rows to this many elements

# Gemma scales the token embeddings by sqrt(n_embd) on the host before the first block.
SCALED_EMBEDDINGS = frozenset({"gemma", "gemma2", "gemma3", "gemma3n", "gemma-embedding"})
# Post-attention and post-FFN norms: three residual-width tensors freed under the logits (traced on
# gemma3; llama and qwen3 leave none).
POST_NORM = frozenset({"gemma2", "gemma3", "gemma3n"})
# KV cache types whose cache gets Hadamard rotation matrices among its graph inputs
# (llama-kv-cache.cpp:321-337: the quantized types llama.cpp rotates before storing).
ROTATED_KV = frozenset({"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl"})


# What a CUDA device holds beyond llama.cpp's buffers while it runs a model: the driver's context
# with the kernels it loads, more when it runs transformer blocks (attention kernels), and cuBLAS's
# handle and workspace once cuBLAS runs a matmul (attention without flash attention, float
# weights). Measured on an H200 (driver 580, CUDA 13, llama.cpp of llama-cpp-python 0.3.36 built
# for sm_90) as NVML's used memory minus llama.cpp's buffers: 692 MiB in every run with blocks and
# without flash attention (ctx 4096 and 32768, full and partial offload, a layer split with an RPC
# worker), 598 MiB with it, 524 MiB running only a CPU model's prompt batches (no block offloaded).
# A size-only --gpu is taken for CUDA, as elsewhere.
CUDA_CONTEXT_BYTES = 524 * 2**20
CUDA_BLOCK_KERNELS_BYTES = 74 * 2**20
CUBLAS_BYTES = 94 * 2**20
FLOAT_TYPES = frozenset({"F32", "F16", "BF16"})


def runtime_bytes(backend: str, settings: Settings, float_weights: bool, blocks: bool = True) -> int:
    """Memory a device of `backend` uses outside llama.cpp's buffers (0 where not measured)."""
    if not backend_of(backend).runtime_measured:
        return 0
    if not blocks:
        return CUDA_CONTEXT_BYTES
    cublas = float_weights or not settings.flash_attn
    return CUDA_CONTEXT_BYTES + CUDA_BLOCK_KERNELS_BYTES + (CUBLAS_BYTES if cublas else 0)


@dataclass(frozen=True)
class Settings:
    """Context settings, with llama-cpp-python's `Llama()` defaults where the user says nothing."""

    n_ctx: int = 4096
    n_batch: int = 512
    n_ubatch: int = 512
    n_parallel: int = 1  # sequences (n_seq_max)
    type_k: str = "f16"
    type_v: str = "f16"
    flash_attn: bool = False
    swa_full: bool = True  # llama.cpp's default: sliding-window layers keep a full-size cache
    offload_kqv: bool = True
    cpu_repack: str = "avx2"  # which cpu_buffers.REPACK_RULES the llama.cpp build's CPU_REPACK follows
    # The CPU backend's extra buffer types, in its order (AMX before CPU_REPACK), and llama.cpp's
    # --no-repack, which turns them off (use_extra_bufts = false).
    cpu_extra_buffers: tuple[str, ...] = (REPACK,)
    no_repack: bool = False

    @property
    def n_ctx_padded(self) -> int:
        return pad(self.n_ctx, CTX_PAD)

    @property
    def n_ctx_seq(self) -> int:
        """Cells per sequence stream (kv_unified is off): pad(n_ctx / n_seq, 256)."""
        return pad(self.n_ctx_padded // self.n_parallel, CTX_PAD)

    @property
    def n_ctx_total(self) -> int:
        return self.n_ctx_seq * self.n_parallel


@dataclass(frozen=True)
class Placement:
    split_mode: SplitMode = "layer"
    n_gpu_layers: int = -1  # counts the output layer; -1 (or anything above n_layer) = all
    tensor_split: tuple[float, ...] = ()  # empty: llama.cpp's default, by free memory
    main_gpu: int = 0
    n_cpu_moe: int = 0  # expert tensors of the first N blocks stay on the CPU (-ot / --n-cpu-moe)


@dataclass
class DeviceMemory:
    """What one device (or the host) holds."""

    name: str
    index: int | None  # position in llama.cpp's device list; None for the host
    layers: list[int] = field(default_factory=list)  # block indices; n_layer stands for the output layer
    weights_bytes: int = 0
    kv_bytes: int = 0
    compute_bytes: int = 0
    output_bytes: int = 0  # logits buffer (host)
    repack_bytes: int = 0  # of weights_bytes: the CPU_REPACK copy of weights the CPU computes with (host)
    amx_bytes: int = 0  # of weights_bytes: the AMX copy (host, on a CPU and build with AMX)
    mapped_bytes: int = 0  # of weights_bytes: the CPU_Mapped buffer (host, with mmap)
    mapped_no_repack_bytes: int = 0  # the CPU_Mapped buffer had nothing been copied (--no-repack; host)
    lora_bytes: int = 0  # of weights_bytes: LoRA adapters' pairs for the layers held here
    projector_bytes: int = 0  # of weights_bytes: a multimodal projector's weights (--mmproj)
    runtime_bytes: int = 0  # outside llama.cpp's buffers: the driver's context, cuBLAS (CUDA devices)

    @property
    def model_weights_bytes(self) -> int:
        """The weights held here, each tensor once: without the CPU's copies (AMX, CPU_REPACK)."""
        return self.weights_bytes - self.repack_bytes - self.amx_bytes - self.mapped_bytes + self.mapped_no_repack_bytes

    @property
    def buffer_bytes(self) -> int:
        """What llama.cpp's own buffers hold (what its log and a run's actual figures show)."""
        return self.weights_bytes + self.kv_bytes + self.compute_bytes + self.output_bytes

    @property
    def planned_bytes(self) -> int:
        return self.buffer_bytes + self.runtime_bytes


@dataclass
class MemoryPlan:
    devices: list[DeviceMemory]
    host: DeviceMemory
    layer_device: list[int | None]  # per block, then the output layer: device index or None (CPU)
    kv_cells: int  # KV cells per layer (all streams) of the full-attention layers
    kv_cells_swa: int
    pipeline_parallel: bool
    split_shares: dict[int, float] = field(default_factory=dict)  # row/tensor modes: device -> share
    notes: list[Reason] = field(default_factory=list)
    host_layer_weights_bytes: int = 0  # weights of blocks or the output layer left on the CPU (offload, --n-cpu-moe)
    host_copied: frozenset[str] = frozenset()  # host weights copied into AMX / CPU_REPACK (they run other kernels)
    compute_rule: str = "estimate"  # how the compute buffers were sized: inventory | bound | estimate

    @property
    def all_on_gpu(self) -> bool:
        """Every block and the output layer on a device, with none of their weights left on the CPU."""
        return all(d is not None for d in self.layer_device) and self.host_layer_weights_bytes == 0


def pad(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def f32(value: float) -> float:
    """Round to IEEE single precision, as llama.cpp's float arithmetic does."""
    (single,) = struct.unpack("<f", struct.pack("<f", value))
    return float(single)


# ---------------------------------------------------------------------------------------------
# Layer placement


def offloaded_layers(model: ModelInfo, n_gpu_layers: int) -> tuple[int, int]:
    """(i_gpu_start, act_gpu_layers) as llama.cpp computes them; n_gpu_layers < 0 means all."""
    n_layer = model.n_layer
    ngl = n_layer + 1 if n_gpu_layers < 0 else n_gpu_layers
    return max(n_layer + 1 - ngl, 0), min(ngl, n_layer + 1)


def split_points(split: Sequence[float]) -> list[float]:
    """Cumulative, normalised split points in float32, exactly as load_tensors builds them."""
    points = []
    total = f32(0.0)
    for value in split:
        total = f32(total + f32(value))
        points.append(total)
    if not total:
        return [f32((i + 1) / len(points)) for i in range(len(points))]  # all zeros: an even split
    return [f32(p / total) for p in points]


def assign_layers(model: ModelInfo, placement: Placement, n_devices: int, split: Sequence[float]) -> list[int | None]:
    """Device index per block and for the output layer (last), None = CPU.

    `split` is the effective tensor split over the n_devices of llama.cpp's device list; with
    split_mode none every offloaded layer goes to main_gpu; with row/tensor modes layers are
    spread over all devices and the index returned is main_gpu (see weights_on_device).
    """
    i_start, act = offloaded_layers(model, placement.n_gpu_layers)
    out: list[int | None] = []
    if n_devices == 0:
        return [None] * (model.n_layer + 1)
    points = split_points(split) if placement.split_mode == "layer" else []
    for il in range(model.n_layer + 1):
        if il < i_start or il - i_start >= act:
            out.append(None)
        elif placement.split_mode != "layer":
            out.append(placement.main_gpu)
        else:
            position = f32(f32(float(il - i_start)) / f32(float(act)))
            out.append(min(bisect_right(points, position), n_devices - 1))
    return out


# ---------------------------------------------------------------------------------------------
# Weights


def tensor_bytes_on(t: TensorInfo, backend: str) -> int:
    """Bytes a tensor takes in a device buffer (CUDA pads quantized rows, others store it as is)."""
    size = t.n_bytes
    if backend in ("CUDA", "ROCm") and t.ggml_type.is_quantized and t.shape[0] % CUDA_ROW_PADDING:
        size += t.ggml_type.row_bytes(CUDA_ROW_PADDING - t.shape[0] % CUDA_ROW_PADDING)
    return size


def _is_expert(t: TensorInfo) -> bool:
    return "_exps" in t.name


def adapted_layer(model: ModelInfo, base: str) -> int | None:
    """The layer (block index, or n_layer for the output layer) whose tensor a LoRA pair adapts;
    None for the input layer, which stays on the CPU."""
    if base.startswith("blk."):
        index = base.split(".")[1]
        return int(index) if index.isdigit() and int(index) < model.n_layer else None
    if any(t.name == base for t in model.output.tensors) or base == "output.weight":
        return model.n_layer
    return None


def mapped_span_bytes(tensors: Sequence[TensorInfo]) -> int:
    """The CPU_Mapped buffer: per file, from the first to the end of the last of these tensors
    (llama-model-loader's get_mapping_range), so it also spans whatever lies between them, e.g.
    offloaded experts between --n-cpu-moe's, or repacked weights inside the range."""
    spans: dict[int, tuple[int, int]] = {}
    for t in tensors:
        low, high = spans.get(t.shard, (t.offset, t.offset + t.n_bytes))
        spans[t.shard] = (min(low, t.offset), max(high, t.offset + t.n_bytes))
    return sum(high - low for low, high in spans.values())


# ---------------------------------------------------------------------------------------------
# KV cache


def kv_cells(model: ModelInfo, settings: Settings) -> tuple[int, int]:
    """(cells of a full-attention layer, cells of a sliding-window layer), all streams together."""
    base = settings.n_ctx_seq
    if settings.swa_full or not model.sliding_window:
        swa = base
    else:
        swa = min(base, pad(model.sliding_window + settings.n_ubatch, CTX_PAD))
    return base * settings.n_parallel, swa * settings.n_parallel


def layer_kv_bytes(model: ModelInfo, settings: Settings, il: int) -> int:
    """K and V cache bytes of layer il (row_size(type, n_embd_gqa) x cells x streams), plus its
    recurrent state where it has one."""
    state = layer_state_bytes(model, settings, il)
    if not model.has_kv(il):
        return state  # a recurrent (or MLP-only, or NextN) layer: no attention cache
    kv_heads = model.n_head_kv[il]
    base, swa = kv_cells(model, settings)
    cells = swa if model.swa_layers[il] else base
    type_k, type_v = type_by_name(settings.type_k), type_by_name(settings.type_v)
    k_bytes = type_k.row_bytes(model.head_dim_k * kv_heads) * cells
    if model.is_mla:
        # llama-kv-cache.cpp: has_v = !is_mla. K holds the latent (kv_lora_rank + rope dims, which the
        # converter writes as key_length with one KV head); V is a view of it, with or without flash attention.
        return k_bytes + state
    # Without flash attention V is stored transposed and padded to the widest layer.
    n_embd_v = model.head_dim_v * (kv_heads if settings.flash_attn else max(model.n_head_kv))
    return k_bytes + type_v.row_bytes(n_embd_v) * cells + state


def layer_state_bytes(model: ModelInfo, settings: Settings, il: int) -> int:
    """Recurrent state of layer il (llama-memory-recurrent.cpp): R and S, always f32, one cell per
    sequence (llama.cpp's default keeps no rollback snapshots)."""
    if not model.is_recurrent(il):
        return 0
    return 4 * (model.n_embd_r + model.n_embd_s) * max(1, settings.n_parallel)


# ---------------------------------------------------------------------------------------------
# Compute buffers


@dataclass(frozen=True)
class _Shape:
    tokens: int  # worst-case ubatch
    cells: int
    cells_swa: int
    n_masks: int
    e: int
    hhd: int
    hkv: int
    f_eff: int
    n_head: int
    n_vocab: int
    n_expert_used: int = 1
    hkv_v: int = 0  # V's width per token (its heads' value width: V's write indices without flash attention)
    layer_ffn: tuple[tuple[int, bool], ...] = ()  # per block: its widest FFN activation, and whether it routes (_layer_ffn)


def _shape(model: ModelInfo, settings: Settings) -> _Shape:
    # A worst-case ubatch spreads over every sequence's stream (llama-context.cpp reserves with
    # n_seqs = n_seq_max, the cache not unified): each attends to its own stream's cells, so masks
    # and scores span one stream's cells, not all of them (measured with -np 4: 2.9x over before)
    base, swa = kv_cells(model, settings)
    streams = max(settings.n_parallel, 1)
    base, swa = base // streams, swa // streams
    f_eff = max(model.n_ff) if model.n_ff else 0
    if model.n_expert:
        expert_ff = _expert_ff(model)
        f_eff = expert_ff * max(model.n_expert_used, 1)
    return _Shape(
        tokens=min(settings.n_ubatch, settings.n_ctx_total),
        cells=base,
        cells_swa=swa,
        n_masks=2 if any(model.swa_layers) and not all(model.swa_layers) else 1,
        e=model.n_embd,
        hhd=max(model.n_head) * model.head_dim_k,
        hkv=max(model.n_head_kv) * model.head_dim_k,
        f_eff=f_eff,
        n_head=max(model.n_head),
        n_vocab=model.n_vocab,
        n_expert_used=max(model.n_expert_used, 1),
        hkv_v=max(model.n_head_kv) * (model.head_dim_v or model.head_dim_k),
        layer_ffn=tuple(_layer_ffn(model, il) for il in range(model.n_layer)),
    )


def _layer_ffn(model: ModelInfo, il: int) -> tuple[int, bool]:
    """Block il's widest FFN activation: its used experts' together, a shared expert's, or its
    dense FFN's (a MoE model's dense layers are often wider than its experts: Llama-4 Maverick's
    16,384 against 8,192); and whether it routes tokens to experts."""
    widths = []
    routed = False
    if il < len(model.blocks):
        for t in model.blocks[il].tensors:
            if len(t.shape) < 2:
                continue
            if "ffn_up_exps" in t.name or "ffn_gate_exps" in t.name:
                widths.append(t.shape[1] * max(model.n_expert_used, 1))
                routed = True
            elif "ffn_up" in t.name or "ffn_gate" in t.name:  # a dense FFN or a shared expert
                widths.append(t.shape[1])
    if widths:
        return max(widths), routed
    return (model.n_ff[il] if il < len(model.n_ff) else 0), routed


def _expert_ff(model: ModelInfo) -> int:
    for block in model.blocks:
        for t in block.tensors:
            if "ffn_up_exps" in t.name or "ffn_gate_exps" in t.name:
                return t.shape[1]
    return max(model.n_ff) if model.n_ff else 0


def _mask_bytes(s: _Shape, settings: Settings) -> int:
    width = 2 if settings.flash_attn else 4
    cells = s.cells + (s.cells_swa if s.n_masks == 2 else 0)
    return cells * s.tokens * width


def _layers_compute(s: _Shape, settings: Settings) -> int:
    """One device running transformer blocks for a ubatch (peak of the allocator, per token)."""
    if settings.flash_attn:
        rest = 3.3 * s.e + 3.2 * s.f_eff
        attention = 0
    else:
        rest = 2.5 * s.e + 1.25 * s.hhd + 6 * s.hkv
        attention = s.n_head * max(s.cells, s.cells_swa) * s.tokens * 4  # KQ, soft-maxed in place
    return int(attention + _mask_bytes(s, settings) + rest * s.tokens * 4)


def _output_compute(s: _Shape) -> int:
    """The output layer: final norm and the logits of every token of the ubatch."""
    return (s.e + s.n_vocab) * s.tokens * 4


def _one_mask(s: _Shape, settings: Settings) -> int:
    return s.cells * s.tokens * (2 if settings.flash_attn else 4)


def _device_masks(model: ModelInfo, s: _Shape, settings: Settings, layers: Sequence[int]) -> int:
    """The attention masks a device holding these blocks builds: the global one if any of them is
    a full-attention layer, the sliding-window one if any slides (measured on gemma3 layer splits)."""
    if s.n_masks == 1:
        return _mask_bytes(s, settings)
    width = 2 if settings.flash_attn else 4
    full = any(not model.swa_layers[il] for il in layers)
    swa = any(model.swa_layers[il] for il in layers)
    return (s.cells * full + s.cells_swa * swa) * s.tokens * width


def _copy_bytes(s: _Shape, settings: Settings) -> int:
    """What each extra pipeline copy holds: one attention mask and the activations a device
    receives (measured: models with a second, sliding-window mask do not copy it whole)."""
    per_token = s.e + (s.hkv if settings.flash_attn else 2 * s.hkv)
    return s.cells * s.tokens * (2 if settings.flash_attn else 4) + per_token * s.tokens * 4


# ---------------------------------------------------------------------------------------------
# The compute inventory (attention models): llama.cpp's compute buffer, tensor by tensor. Its
# worst case is one ubatch of t tokens with every logit output and the whole cache in view
# (llama-context.cpp:629,670-674). The graph's inputs sit on the CPU and each device gets a copy of
# those its blocks read; with pipeline parallelism each copy exists PIPELINE_COPIES times, flagged
# as outputs, never freed (ggml-backend.cpp:1376-1439, 1571-1593), at the bottom of the buffer;
# above them the allocator's peak is the largest set of activations alive at once. Traced byte by
# byte (an eval callback recording every tensor's offset, the top one ending at llama.cpp's buffer
# size) on the CPU and RPC workers: dense, tied, MoE, qwen3 and gemma3 models, f16 and quantized
# KV, layer splits, partial offload and single devices, every one exact or one activation above.


def _rotation_bytes(model: ModelInfo, settings: Settings) -> int:
    """A cache's Hadamard matrices (f32): K's of the largest power of two from 64 dividing the head
    width, V's of 64 (llama-kv-cache.cpp:1447-1486)."""
    head = model.head_dim_k
    if head <= 0 or head % 64:
        return 0  # (a head width of 0, from a malformed header, must not loop below)
    n = 64
    while head % (2 * n) == 0:
        n *= 2
    return 4 * n * n * (settings.type_k in ROTATED_KV) + 4 * 64 * 64 * (settings.type_v in ROTATED_KV)


def _cache_inputs(model: ModelInfo, s: _Shape, settings: Settings, cells: int) -> int:
    """One KV cache's graph inputs: the K and V write indices (int64; without flash attention V is
    stored transposed, an index per element), its mask (f32, f16 with flash attention) and its
    rotation matrices."""
    t = s.tokens
    v_idxs = 8 * t if settings.flash_attn else 8 * t * s.hkv_v
    mask = cells * t * (2 if settings.flash_attn else 4)
    return 8 * t + v_idxs + mask + _rotation_bytes(model, settings)


def _caches_read(model: ModelInfo, blocks: Sequence[int]) -> list[bool]:
    """The caches these blocks read (False: the full-attention one, True: the sliding-window one)."""
    if not blocks:
        return []
    if not any(model.swa_layers):
        return [False]
    return sorted({bool(model.swa_layers[il]) for il in blocks})


def _cells_of(s: _Shape, sliding: bool) -> int:
    return s.cells_swa if sliding else s.cells


def _copy_inputs(model: ModelInfo, s: _Shape, settings: Settings, blocks: Sequence[int]) -> int:
    """One copy of what a device running these blocks reads from the graph's inputs: the
    activations, the positions, each cache's inputs, and the output ids with the last block."""
    t = s.tokens
    last = model.n_layer - 1 in blocks
    caches = sum(_cache_inputs(model, s, settings, _cells_of(s, c)) for c in _caches_read(model, blocks))
    return 4 * t * (s.e + 1 + last) + caches


def _activations_peak(model: ModelInfo, s: _Shape, settings: Settings, blocks: Sequence[int], reuse_input: bool) -> int:
    """The most activations alive at once in a block: attention's (the residual, the norm, Q and
    its rope, the KQ scores soft-maxed in place; `reuse_input`: the first block writes over its
    input, which an output-flagged pipeline copy forbids) or the FFN's (the residual, the
    attention output's hole, gate, up and the GLU, which does not run in place; a MoE router's
    small tensors pin one more)."""
    t = s.tokens
    if settings.flash_attn:
        attention = 0
    else:
        cells = max(_cells_of(s, c) for c in _caches_read(model, blocks))
        attention = (2 * s.e + 2 * s.hhd) * t * 4 + s.n_head * cells * t * 4 - (s.e * t * 4 if reuse_input else 0)
    ffn = max(
        (s.e + max(s.e, s.hhd) + _ffn_slots(s, width, routed) + (s.e if routed else 0)) * t * 4
        for width, routed in (s.layer_ffn[il] for il in blocks)
    )
    return max(attention, ffn)


def _ffn_slots(s: _Shape, width: int, routed: bool) -> int:
    """An FFN's own activations at their peak, floats per token: gate, up and the GLU together;
    routed, also the experts' outputs (n_embd each, weighted in place) beside the GLU that feeds
    them, then beside the sum they add into. Those are the larger where n_embd is over twice an
    expert's width (Qwen3-30B-A3B: 8 x 2,048 against 8 x 768; traced on a generated 512-wide model
    with 4 of 8 experts of 64 used: llama.cpp's buffer 29 % above three GLU widths)."""
    if not routed:
        return 3 * width
    outputs = s.e * s.n_expert_used
    return max(3 * width, width + outputs, outputs + s.e)


def _logits(model: ModelInfo, s: _Shape) -> int:
    """The output layer's peak: the final norm and every token's logits (over gemma's post-norms'
    three freed residual-width tensors)."""
    post = 3 * s.e * s.tokens * 4 if model.architecture in POST_NORM else 0
    return post + (s.e + s.n_vocab) * s.tokens * 4


def _inventory_device(
    model: ModelInfo, s: _Shape, settings: Settings, blocks: Sequence[int], holds_output: bool, copies: int
) -> int:
    """A device's compute buffer by the inventory (its blocks, and the output layer where it holds it)."""
    if not blocks:
        return _output_alone(s, copies)
    inputs = _copy_inputs(model, s, settings, blocks)
    reuse = copies == 1 or len(blocks) == 1
    compute = copies * inputs + _activations_peak(model, s, settings, blocks, reuse)
    if holds_output:
        compute = max(compute, (copies * inputs if copies > 1 else 0) + _logits(model, s))
    return compute


def _output_alone(s: _Shape, copies: int) -> int:
    """A device holding the output layer and no block: its input activations (one per pipeline
    copy) and the logits."""
    return _output_compute(s) + (copies * s.e * s.tokens * 4 if copies > 1 else 0)


def _inventory_host(
    model: ModelInfo, s: _Shape, settings: Settings, host_blocks: Sequence[int], output: bool, copies: int
) -> int:
    """The CPU's compute buffer by the inventory: the graph's inputs (tokens, the embeddings
    buffer llama.cpp allocates though a token batch never reads it, positions, output ids, every
    cache's inputs) and its own blocks' activations, or without blocks a copy of the inputs per
    pipeline copy and the embeddings it looks up."""
    t = s.tokens
    graph = 4 * t * (1 + s.e + 1 + 1) + sum(
        _cache_inputs(model, s, settings, _cells_of(s, c)) for c in _caches_read(model, range(model.n_layer))
    )
    if host_blocks:
        compute = graph + _activations_peak(model, s, settings, host_blocks, False)
        if output:
            compute = max(compute, 4 * t * (1 + s.e) + _logits(model, s))
        return compute
    compute = copies * graph + s.e * t * 4
    return compute + (_output_compute(s) if output else 0)


# ---------------------------------------------------------------------------------------------
# Mamba-2 blocks (models/mamba-base.cpp, build_mamba2_layer): not inventoried but bounded. Their
# graph crosses devices in places the attention inventory does not (a split copies views of the
# input projection between devices) and its allocator peaks fall among freed SSM tensors; traced
# here (CPU, single worker, layer splits): the bound below was 1.7-2.2x llama.cpp's buffer, never
# under it.
BOUNDED = frozenset({"mamba2"})


def _bounded(model: ModelInfo) -> bool:
    """Whether the Mamba-2 bound sizes the model's compute buffers: every block recurrent, each a
    Mamba-2 one."""
    return model.architecture in BOUNDED and all(model.is_recurrent(il) for il in range(model.n_layer))


@dataclass(frozen=True)
class _SSMWidths:
    """A Mamba-2 block's widths, from its tensors: the input projection (z, xBC and dt), the
    convolution's kernel and channels, the SSM's inner width and heads."""

    projection: int
    d_conv: int
    conv_dim: int
    d_inner: int
    heads: int


def _ssm_widths(model: ModelInfo) -> _SSMWidths:
    """The widest of every block's Mamba-2 widths (a block lacking a tensor counts zero for it)."""
    widths = {"ssm_in": 0, "d_conv": 0, "conv_dim": 0, "ssm_out": 0, "ssm_a": 0}
    for block in model.blocks:
        for t in block.tensors:
            if t.name.endswith("ssm_in.weight") and len(t.shape) >= 2:
                widths["ssm_in"] = max(widths["ssm_in"], t.shape[1])
            elif t.name.endswith("ssm_conv1d.weight") and len(t.shape) >= 2:
                widths["d_conv"] = max(widths["d_conv"], t.shape[0])
                widths["conv_dim"] = max(widths["conv_dim"], t.shape[1])
            elif t.name.endswith("ssm_out.weight") and t.shape:
                widths["ssm_out"] = max(widths["ssm_out"], t.shape[0])
            elif t.name.endswith("ssm_a") and t.shape:
                widths["ssm_a"] = max(widths["ssm_a"], max(t.shape))
    return _SSMWidths(widths["ssm_in"], widths["d_conv"], widths["conv_dim"], widths["ssm_out"], widths["ssm_a"])


def _ssm_block_bound(model: ModelInfo, s: _Shape, settings: Settings, w: _SSMWidths) -> int:
    """Every tensor one Mamba-2 block creates, none reused but where ggml runs in place (the
    convolution's bias and SiLU): the norm and its weight, the input projection, the convolution's
    input (its state's d_conv - 1 columns before the batch) and output, dt, the scan's output and
    final states, x * D and its sum, z and the gate, the grouped norm and its weight, the output
    projection, the residual; and the states gathered for each sequence."""
    t, seqs = s.tokens, max(settings.n_parallel, 1)
    per_token = 4 * s.e + w.projection + w.conv_dim + 2 * w.heads + 7 * w.d_inner
    conv_input = max(w.d_conv - 1, 0) * w.conv_dim * seqs + t * w.conv_dim
    states = (model.n_embd_r + 2 * model.n_embd_s) * seqs
    return 4 * (per_token * t + conv_input + states)


def _ssm_copy_inputs(s: _Shape, spread: bool, last: bool, w: _SSMWidths) -> int:
    """One copy of what a device running Mamba-2 blocks receives: the activations, the state-copy
    index (one int, aligned), the output ids with the last block; over several devices also a view
    of the input projection and a contiguous copy of z (llama.cpp's scheduler moved both across in
    the traced splits)."""
    per_token = s.e + last + (w.projection + w.d_inner if spread else 0)
    return 4 * s.tokens * per_token + 32


def _ssm_device(
    model: ModelInfo, s: _Shape, w: _SSMWidths, bound: int, blocks: Sequence[int], holds_output: bool, copies: int, spread: bool
) -> int:
    """A device's compute buffer by the Mamba-2 bound (`bound`: _ssm_block_bound's)."""
    if not blocks:
        return _output_alone(s, copies)
    inputs = _ssm_copy_inputs(s, spread, model.n_layer - 1 in blocks, w)
    return copies * inputs + max(bound, _logits(model, s) if holds_output else 0)


def _ssm_host(model: ModelInfo, s: _Shape, bound: int, host_blocks: Sequence[int], output: bool, copies: int) -> int:
    """The CPU's compute buffer for a Mamba-2 model: the graph's inputs (tokens, the unused
    embeddings input, the state-copy index, output ids; traced equal) with its blocks' bound, or
    without blocks a copy of the inputs per pipeline copy and the embeddings it looks up."""
    t = s.tokens
    graph = 4 * t * (1 + s.e + 1) + 32
    if host_blocks:
        return graph + max(bound, _logits(model, s) if output else 0)
    return copies * graph + s.e * t * 4 + (_output_compute(s) if output else 0)


def _ssm_compute(
    model: ModelInfo,
    s: _Shape,
    settings: Settings,
    devices: list[DeviceMemory],
    host: DeviceMemory,
    layer_device: Sequence[int | None],
    blocks_on: dict[int, list[int]],
    offload_to: int | None,
    copies: int,
) -> None:
    """Every compute buffer of a Mamba-2 load by the bound: the devices', the host's, and room for
    one more block on a GPU that runs the batches of the CPU's blocks (see _host_side_compute)."""
    w = _ssm_widths(model)
    bound = _ssm_block_bound(model, s, settings, w)
    out_dev = layer_device[model.n_layer]
    spread = len({d for d in layer_device if d is not None}) > 1 or any(d is None for d in layer_device)
    for i, dev_mem in enumerate(devices):
        if dev_mem.layers:
            dev_mem.compute_bytes = _ssm_device(model, s, w, bound, blocks_on[i], out_dev == i, copies, spread)
    host_blocks = [il for il in host.layers if il < model.n_layer]
    host.compute_bytes = _ssm_host(model, s, bound, host_blocks, out_dev is None, copies)
    if host_blocks and offload_to is not None:
        devices[offload_to].compute_bytes += bound


# Graphs whose activations the inventory does not describe: gemma3n keeps four residual streams
# (AltUp) and per-layer inputs that cross devices (models/gemma3n.cpp:111-126).
UNINVENTORIED = frozenset({"gemma3n"})


def _inventoried(model: ModelInfo) -> bool:
    """Whether the inventory covers the model: attention models (MLA's latent cache, recurrent
    layers and UNINVENTORIED graphs were not traced; their estimate stays the fitted one)."""
    return (
        model.architecture not in UNINVENTORIED
        and not model.is_mla
        and not any(model.is_recurrent(il) for il in range(model.n_layer))
    )


def _host_inputs(s: _Shape, settings: Settings) -> int:
    """The CPU's share when it runs no block: token embeddings and the graph inputs."""
    per_token = 2 * s.e + 5 + (0 if settings.flash_attn else 2 * s.hkv)
    return _mask_bytes(s, settings) + per_token * s.tokens * 4


# ---------------------------------------------------------------------------------------------
# The whole plan


def effective_split(placement: Placement, free_bytes: Sequence[int]) -> list[float]:
    """The split llama.cpp will use: the given one, or (all zero) proportional to free memory."""
    split = list(placement.tensor_split) + [0.0] * (len(free_bytes) - len(placement.tensor_split))
    split = split[: len(free_bytes)]
    if not any(split):
        split = [float(b) for b in free_bytes]
    if not any(split):
        split = [1.0] * len(free_bytes)  # no device has any room: an even split, for a plan that will not fit
    return split


def plan_memory(
    model: ModelInfo,
    device_names: Sequence[str],
    device_backends: Sequence[str],
    free_bytes: Sequence[int],
    settings: Settings,
    placement: Placement,
    adapters: Sequence[AdapterInfo] = (),
    projector: tuple[int | None, int] | None = None,
) -> MemoryPlan:
    """Bytes per device and for the host for one load (with these LoRA adapters, and a projector
    of `projector[1]` bytes on device `projector[0]`, None for the host)."""
    n = len(device_names)
    active = _active_devices(placement, n)
    split = effective_split(placement, free_bytes) if n else []
    layer_device = assign_layers(model, placement, n, split)
    devices = [DeviceMemory(device_names[i], i) for i in range(n)]
    host = DeviceMemory("CPU", None)
    share = _shares(split, active) if placement.split_mode in ("row", "tensor") else {}

    host_weights = _place_weights(model, settings, placement, layer_device, share, devices, host, device_backends)
    _add_adapters(model, adapters, layer_device, devices, host)
    if projector is not None:
        _add_projector(projector, devices, host)
    device_kv, host.kv_bytes = kv_by_device(model, settings, layer_device, share, n)
    for dev_mem, nbytes in zip(devices, device_kv):
        dev_mem.kv_bytes = nbytes

    # Logits buffer on the host: n_vocab floats per sequence.
    host.output_bytes = model.n_vocab * 4 * settings.n_parallel

    # Compute buffers: each device's, then the host's (a GPU may run the batches of its blocks).
    s = _shape(model, settings)
    pipeline = _pipeline_parallel(placement, layer_device, settings)
    copies = PIPELINE_COPIES if pipeline else 1
    blocks_on = {i: [il for il in devices[i].layers if il < model.n_layer] for i in range(n)}
    out_dev = layer_device[model.n_layer]
    rule = "inventory" if _inventoried(model) and not share else "bound" if _bounded(model) and not share else "estimate"
    offload_to = _offload_target(s, active, device_backends)
    if rule == "bound":
        _ssm_compute(model, s, settings, devices, host, layer_device, blocks_on, offload_to, copies)
    else:
        for i, dev_mem in enumerate(devices):
            if not dev_mem.layers:
                continue
            if rule == "inventory":
                dev_mem.compute_bytes = _inventory_device(model, s, settings, blocks_on[i], out_dev == i, copies)
            else:
                dev_mem.compute_bytes = _device_compute(
                    model, s, settings, blocks_on[i], out_dev == i, bool(share), pipeline, copies
                )
        _host_side_compute(model, s, settings, devices, host, offload_to, out_dev, blocks_on, copies, rule == "inventory")
    _add_runtime(model, settings, devices, device_backends, blocks_on)

    notes = [_compute_sizing(model, rule, devices, host)]
    if pipeline:
        notes.append(
            Reason("pipeline-parallel", f"pipeline parallelism: llama.cpp keeps {PIPELINE_COPIES} copies of each device's inputs")
        )
    return MemoryPlan(
        devices=devices,
        host=host,
        layer_device=layer_device,
        kv_cells=s.cells,
        kv_cells_swa=s.cells_swa,
        pipeline_parallel=pipeline,
        split_shares=share,
        notes=notes,
        host_layer_weights_bytes=host_weights.layer_bytes,
        host_copied=frozenset(host_weights.copied_names),
        compute_rule=rule,
    )


def _compute_sizing(model: ModelInfo, rule: str, devices: list[DeviceMemory], host: DeviceMemory) -> Reason:
    """How the compute buffers were sized, and so what the headroom keeps for them: nothing beyond
    llama.cpp's figure (the inventory), a bound's excess, or an estimate's uncertainty."""
    planned = sum(d.compute_bytes for d in [*devices, host])
    if rule == "inventory":
        text = (
            "compute buffers: llama.cpp's allocation tensor by tensor (traced equal on the CPU and RPC workers, "
            "or above by one activation); nothing more is kept for them"
        )
    elif rule == "bound":
        text = (
            f"compute buffers: an upper bound for {model.architecture} blocks (every tensor a block creates, none "
            f"reused), {planned / MIB:.1f} MiB in all: llama.cpp allocated 37-58 % of the bound on the traced loads, "
            "so the rest is headroom kept for it"
        )
    else:
        text = (
            "compute buffers: a fit made on other graphs (this one was not traced), which can be under llama.cpp's "
            "figure: plan --measure asks llama.cpp itself"
        )
    return Reason("compute-sizing", text, {"rule": rule, "compute_bytes": planned})


def _active_devices(placement: Placement, n_devices: int) -> list[int]:
    """The devices a load spreads over: main_gpu alone with split mode none, else all of them."""
    if placement.split_mode == "none":
        return [placement.main_gpu] if n_devices else []
    return list(range(n_devices))


@dataclass
class _HostWeights:
    """The host's weights as a load places them: what stays in the mapped file, what llama.cpp
    copies into an extra buffer type, and the bytes of blocks (or the output layer) left there."""

    mapped: list[TensorInfo]
    copied: list[TensorInfo] = field(default_factory=list)
    copied_names: set[str] = field(default_factory=set)
    layer_bytes: int = 0


def _place_weights(
    model: ModelInfo,
    settings: Settings,
    placement: Placement,
    layer_device: Sequence[int | None],
    share: dict[int, float],
    devices: list[DeviceMemory],
    host: DeviceMemory,
    device_backends: Sequence[str],
) -> _HostWeights:
    """Weights: input layer on the CPU, each block and the output layer where assigned; each
    device's layers listed, and the host's mapped buffer and copies counted."""
    held = _HostWeights(mapped=[*model.input.tensors, *model.other.tensors])  # stay in the mapped file
    extra = host_extra_buffers(settings, device_backends)
    first_nextn = model.n_layer - model.n_nextn
    for il in range(model.n_layer + 1):
        group = model.output if il == model.n_layer else model.blocks[il]
        dev = layer_device[il]
        # NextN blocks are skipped at load ("model has unused tensor ... ignoring") unless MTP is asked for.
        for t in () if first_nextn <= il < model.n_layer else group.tensors:
            if dev is None or (il < placement.n_cpu_moe and _is_expert(t)):
                _hold_on_host(held, host, t, extra, settings.cpu_repack)
            elif share:
                _spread_tensor(t, devices, share, device_backends)
            else:
                devices[dev].weights_bytes += tensor_bytes_on(t, device_backends[dev])
        if il == model.n_layer and not any(t.name == "output.weight" for t in group.tensors):
            _place_tied_output(model, dev, share, devices, host, held, extra, settings.cpu_repack, device_backends)
        _list_layer(il, dev, share, devices, host)

    host.mapped_bytes = mapped_span_bytes(held.mapped)
    host.mapped_no_repack_bytes = mapped_span_bytes(held.mapped + held.copied)
    host.weights_bytes = host.mapped_bytes + host.repack_bytes + host.amx_bytes
    return held


def _hold_on_host(held: _HostWeights, host: DeviceMemory, t: TensorInfo, extra: tuple[str, ...], level: str) -> None:
    """A block's weight left on the CPU: copied into an extra buffer type, or read from the mapped file."""
    held.layer_bytes += t.n_bytes
    if _copy_on_host(host, t, extra, level):
        held.copied.append(t)
        held.copied_names.add(t.name)
    else:
        held.mapped.append(t)


def _place_tied_output(
    model: ModelInfo,
    dev: int | None,
    share: dict[int, float],
    devices: list[DeviceMemory],
    host: DeviceMemory,
    held: _HostWeights,
    extra: tuple[str, ...],
    level: str,
    device_backends: Sequence[str],
) -> None:
    """Tied embeddings: llama.cpp loads token_embd a second time on the output layer's device
    (on the CPU only its AMX or repacked copy is new: the mapped one is the input layer's)."""
    for t in model.input.tensors:
        if t.name != "token_embd.weight":
            continue
        if dev is None:
            if _copy_on_host(host, t, extra, level, op=MUL_MAT):
                held.copied_names.add(t.name)  # the output's copy; the input reads the mapped rows
        else:
            for i in share or [dev]:
                devices[i].weights_bytes += tensor_bytes_on(t, device_backends[i])


def _list_layer(il: int, dev: int | None, share: dict[int, float], devices: list[DeviceMemory], host: DeviceMemory) -> None:
    """Record layer il with the devices that hold it (all of them in row/tensor modes) or the host."""
    if dev is None:
        host.layers.append(il)
        return
    for i in share or [dev]:
        if il not in devices[i].layers:
            devices[i].layers.append(il)


def _add_adapters(
    model: ModelInfo,
    adapters: Sequence[AdapterInfo],
    layer_device: Sequence[int | None],
    devices: list[DeviceMemory],
    host: DeviceMemory,
) -> None:
    """LoRA adapters' pairs, each with the layer it adapts (the input layer's on the host)."""
    for adapter in adapters:
        for base, nbytes in adapter.targets:
            il = adapted_layer(model, base)
            dev = None if il is None else layer_device[il]
            holder = host if dev is None else devices[dev]
            holder.lora_bytes += nbytes
            holder.weights_bytes += nbytes


def _add_projector(projector: tuple[int | None, int], devices: list[DeviceMemory], host: DeviceMemory) -> None:
    """A multimodal projector's weights, on its device (None: the host)."""
    index, nbytes = projector
    holder = host if index is None else devices[index]
    holder.projector_bytes += nbytes
    holder.weights_bytes += nbytes


def _pipeline_parallel(placement: Placement, layer_device: Sequence[int | None], settings: Settings) -> bool:
    """Whether llama.cpp runs the load with pipeline parallelism: a layer split over several
    devices with every layer, and the KV cache, offloaded and no experts on the CPU."""
    return (
        placement.split_mode == "layer"
        and len({d for d in layer_device if d is not None}) > 1
        and all(d is not None for d in layer_device)
        and settings.offload_kqv
        and placement.n_cpu_moe == 0
    )


def _device_compute(
    model: ModelInfo,
    s: _Shape,
    settings: Settings,
    blocks: Sequence[int],
    holds_output: bool,
    split_rows: bool,
    pipeline: bool,
    copies: int,
) -> int:
    """The compute buffer of a device holding these blocks (and the output layer, or with
    `split_rows` a share of every layer)."""
    if blocks:
        # A model with sliding-window and global layers has two masks; a device builds (and with
        # pipeline parallelism copies) only those its own layers use.
        masks = _device_masks(model, s, settings, blocks if not split_rows else range(model.n_layer))
        compute = _layers_compute(s, settings) - _mask_bytes(s, settings) + masks - s.e * s.tokens * 4
        if holds_output or split_rows:
            compute = max(compute, _output_compute(s))
        return compute + (copies - 1) * (_copy_bytes(s, settings) - _one_mask(s, settings) + masks)
    if holds_output:
        compute = _output_compute(s)
        if pipeline:
            compute += copies * s.e * s.tokens * 4  # its input activations, one per pipeline copy
        return compute
    return 0


def _host_side_compute(
    model: ModelInfo,
    s: _Shape,
    settings: Settings,
    devices: list[DeviceMemory],
    host: DeviceMemory,
    offload_to: int | None,
    out_dev: int | None,
    blocks_on: dict[int, list[int]],
    copies: int,
    inventory: bool = False,
) -> None:
    """The host's compute buffer, and what a GPU's grows by when it runs the batches of the
    CPU's blocks (`inventory`: by the compute inventory where the GPU does not)."""
    # llama.cpp's scheduler moves an op whose weights sit in host memory to the first GPU that
    # asks for it (offload_op: CUDA and the others with a host buffer type ask from 32 tokens on),
    # so the worst-case batch of the CPU's blocks runs there: measured on an H200 with 17 of 32
    # Llama-8B blocks on the CPU, the CPU kept only its inputs (as with every block offloaded) and
    # the GPU's buffer grew by the K and V of one ubatch.
    host_blocks = any(il < model.n_layer for il in host.layers)
    if host_blocks and offload_to is not None:
        gpu = devices[offload_to]
        borrowed = _borrowed_compute(model, s, settings, out_dev)
        # with blocks of its own, the GPU's buffer grew by one ubatch's K and V besides (measured)
        gpu.compute_bytes = max(gpu.compute_bytes, borrowed) + (2 * s.hkv * s.tokens * 4 if blocks_on[offload_to] else 0)
        host.compute_bytes = _host_inputs(s, settings)
    elif inventory:
        blocks = [il for il in host.layers if il < model.n_layer]
        host.compute_bytes = _inventory_host(model, s, settings, blocks, out_dev is None, copies)
    elif host_blocks:
        host.compute_bytes = _layers_compute(s, settings)
        if out_dev is None:
            host.compute_bytes = max(host.compute_bytes, _output_compute(s) + _mask_bytes(s, settings))
    elif out_dev is None and devices:
        host.compute_bytes = _host_inputs(s, settings) + _output_compute(s)
    else:
        host.compute_bytes = _feeding_host_compute(model, s, settings, copies)


def _offload_target(s: _Shape, active: Sequence[int], device_backends: Sequence[str]) -> int | None:
    """The GPU that runs the worst-case batch of blocks left on the CPU (llama.cpp's offload_op:
    the first with a host buffer type, from OP_OFFLOAD_MIN_BATCH tokens); None where none does."""
    if s.tokens < OP_OFFLOAD_MIN_BATCH:
        return None
    return next((i for i in active if backend_of(device_backends[i]).host_buffer), None)


def _borrowed_compute(model: ModelInfo, s: _Shape, settings: Settings, out_dev: int | None) -> int:
    """What a GPU's compute buffer needs to run the batches of the CPU's blocks (and, with the
    output layer on the CPU, its matmul)."""
    borrowed = _layers_compute(s, settings) - s.e * s.tokens * 4  # as a device's own blocks
    if out_dev is None:
        # The output matrix is uploaded whole into the GPU's buffer next to the logits
        # (measured with no layer offloaded: 701,997,056 planned, 702,000,660 in llama.cpp's log).
        output_weights = sum(t.n_bytes for t in model.output.tensors if len(t.shape) >= 2) or sum(
            t.n_bytes for t in model.input.tensors if t.name == "token_embd.weight"
        )
        borrowed = max(borrowed, output_weights + _output_compute(s))
    return borrowed


def _feeding_host_compute(model: ModelInfo, s: _Shape, settings: Settings, copies: int) -> int:
    """The host feeds every device: with pipeline parallelism it keeps each copy of all masks."""
    per_copy = _mask_bytes(s, settings) + (s.e + (s.hkv if settings.flash_attn else 2 * s.hkv)) * s.tokens * 4
    compute = _host_inputs(s, settings) + (copies - 1) * per_copy
    if model.architecture in SCALED_EMBEDDINGS and not settings.flash_attn:
        # Measured on gemma3 layer splits: the embeddings scaled by sqrt(n_embd) get their own
        # tensor per copy without flash attention (with it the allocator reuses a dead one).
        compute += copies * s.e * s.tokens * 4
    return compute


def _add_runtime(
    model: ModelInfo,
    settings: Settings,
    devices: list[DeviceMemory],
    device_backends: Sequence[str],
    blocks_on: dict[int, list[int]],
) -> None:
    """Each device in use: what its runtime holds outside llama.cpp's buffers."""
    for i, dev_mem in enumerate(devices):
        if dev_mem.buffer_bytes:
            float_weights = _holds_float_matrices(model, dev_mem.layers)
            dev_mem.runtime_bytes = runtime_bytes(device_backends[i], settings, float_weights, bool(blocks_on[i]))


def _holds_float_matrices(model: ModelInfo, layers: Sequence[int]) -> bool:
    """Whether any of these layers (n_layer: the output layer) has a float matrix (cuBLAS runs it)."""
    return any(
        t.ggml_type.name in FLOAT_TYPES and len(t.shape) >= 2
        for il in layers
        for t in (model.output if il == model.n_layer else model.blocks[il]).tensors
    )


def host_extra_buffers(settings: Settings, device_backends: Sequence[str]) -> tuple[str, ...]:
    """The CPU's extra buffer types that can take the host's weights in this load: none with
    --no-repack, none behind a GPU's host buffer (it comes first and, with mmap, hands them back to
    the mapped file), else the backend's own, in its order."""
    if settings.no_repack or any(backend_of(b).host_buffer for b in device_backends):
        return ()
    return settings.cpu_extra_buffers


def _copy_on_host(host: DeviceMemory, t: TensorInfo, extra: tuple[str, ...], level: str, op: str | None = None) -> int:
    """Count the copy llama.cpp makes of a host weight in an extra buffer; its bytes (0: mapped only)."""
    buffer, size = host_copy(t, extra, level, op)
    if buffer == AMX:
        host.amx_bytes += size
    elif buffer == REPACK:
        host.repack_bytes += size
    return size


def kv_by_device(
    model: ModelInfo, settings: Settings, layer_device: Sequence[int | None], share: dict[int, float], n_devices: int
) -> tuple[list[int], int]:
    """KV cache bytes per device and on the host: each layer's cache lives with the layer (on the
    CPU when KV offload is off); row/tensor modes cut every layer's cache in the devices' shares."""
    devices = [0] * n_devices
    host = 0
    for il in range(model.n_layer):
        nbytes = layer_kv_bytes(model, settings, il)
        dev = layer_device[il]
        if dev is None or not settings.offload_kqv:
            host += nbytes
        elif share:
            for i, fraction in share.items():
                devices[i] += int(nbytes * fraction)
        else:
            devices[dev] += nbytes
    return devices, host


def _shares(split: Sequence[float], active: Sequence[int]) -> dict[int, float]:
    total = sum(split[i] for i in active) or 1.0
    return {i: split[i] / total for i in active if split[i] > 0}


def _spread_tensor(t: TensorInfo, devices: list[DeviceMemory], share: dict[int, float], backends: Sequence[str]) -> None:
    """Row/tensor parallelism: matrices are cut by rows in proportion; vectors are replicated."""
    if len(t.shape) < 2:
        for i in share:
            devices[i].weights_bytes += t.n_bytes
        return
    rows = t.n_bytes // t.shape[1] if len(t.shape) == 2 else 0
    for i, fraction in share.items():
        if rows:
            devices[i].weights_bytes += rows * round(t.shape[1] * fraction)
        else:
            devices[i].weights_bytes += int(t.n_bytes * fraction)
