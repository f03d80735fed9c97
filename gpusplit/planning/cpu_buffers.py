"""Where llama.cpp 0.3.36 keeps a weight the CPU computes with: pure functions, no I/O.

Besides the mapped file, ggml's CPU backend offers "extra" buffer types, tried in its order
(ggml-cpu.cpp `ggml_backend_cpu_get_extra_buffer_types`): `AMX` (a build for a CPU with
AMX-INT8 and AVX512-VNNI), `CPU_KLEIDIAI` (ARM builds with KleidiAI), then `CPU_REPACK`. llama.cpp
puts each weight in the first of them whose `supports_op` accepts the op the weight is used with
(llama-model-loader.cpp `select_weight_buft`) and copies it there at load, in the type's own
layout; the file stays mapped beside it (`CPU_Mapped`), so the host holds both. llama-server's
`--no-repack` (`use_extra_bufts = false`) turns every extra buffer type off.

Checked against llama.cpp's own buffers on an Intel Xeon with AMX (tests/test_cpu_buffers.py, with
the figures recorded on that host) and on AMD EPYC hosts with CPU_REPACK alone (tests/test_repack.py).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..devices.cpu import AMX, MAPPED, REPACK

if TYPE_CHECKING:
    from ..gguf.reader import TensorInfo

MODELLED = frozenset({AMX, REPACK})  # KleidiAI's rules are not modelled: its weights are counted as mapped
TENSOR_ALIGNMENT = 32  # ggml-impl.h: each tensor of a buffer starts on this boundary

# CPU_REPACK (ggml-cpu/repack.cpp, ggml_repack_get_optimal_repack_type): the types the build's
# compile-time features repack, each with the multiple of rows (ne[1]) it needs. AVX2 builds
# repack Q4_0, Q4_K, IQ4_NL and MXFP4 in 8-row groups, AVX512 builds Q2_K too; ARM builds with
# the dot-product extension (with or without i8mm: the same types, the same row multiples).
REPACK_RULES: dict[str, dict[str, int]] = {
    "none": {},
    "avx2": {"Q4_0": 8, "Q4_K": 8, "IQ4_NL": 8, "MXFP4": 8},
    "avx512": {"Q4_0": 8, "Q4_K": 8, "IQ4_NL": 8, "MXFP4": 8, "Q2_K": 8},
    "arm-dotprod": {"Q4_0": 4, "Q4_K": 8, "Q5_K": 8, "Q6_K": 8, "IQ4_NL": 4, "MXFP4": 4, "Q8_0": 4, "Q1_0": 4},
}
REPACKED_TYPES = {level: frozenset(rules) for level, rules in REPACK_RULES.items()}


# AMX (ggml-cpu/amx/amx.cpp, extra_buffer_type::supports_op): a 2-D MUL_MAT whose output rows are
# a multiple of 32 (TILE_N * 2) and whose row length is a multiple of the type's alignment below.
# Quantized weights are packed for the tile kernels (amx/mmq.cpp, get_row_size): Q8_0 keeps an
# int32 compensation per block, Q4_K/Q5_K 4 bytes of unpacked scales, IQ4_XS 2; F16 is copied as is.
AMX_ALIGNMENT = {"Q4_0": 32, "Q4_1": 32, "Q8_0": 32, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256, "IQ4_XS": 256, "F16": 16}
AMX_EXTRA_PER_BLOCK = {"Q8_0": 4, "Q4_K": 4, "Q5_K": 4, "IQ4_XS": 2}
AMX_ROWS = 32

# Weights llama.cpp uses with an op other than MUL_MAT / MUL_MAT_ID (src/llama-arch.cpp,
# LLM_TENSOR_INFOS): no extra buffer type takes them. Block tensors are named with `blk.%d.`.
_NOT_MATMUL = frozenset(
    {
        "token_embd", "position_embd", "token_types", "per_layer_token_embd", "d2t", "markov_w1",
        "selector_predecessor", "selector_successor", "masked_embd_centroids", "masked_embd_ordering",
        "rope_freqs", "rope_factors_long", "rope_factors_short", "conv1d", "hrm.z_l_init", "output_hc_base",
        "blk.%d.attn_compressor_ape", "dec.blk.%d.attn_rel_b", "enc.blk.%d.attn_rel_b", "dec.blk.%d.cross_attn_rel_b",
        "blk.%d.indexer_compressor_ape", "blk.%d.ffn_gate_tid2eid", "blk.%d.nextn.embed_tokens",
        "blk.%d.ple_conv1d", "blk.%d.ssm_conv1d", "blk.%d.shortconv.conv", "blk.%d.attn_sinks", "blk.%d.ffn.act",
        "blk.%d.ssm_a", "blk.%d.ssm_d", "blk.%d.time_mix_first", "posnet.%d.conv1", "posnet.%d.conv2", "convnext.%d.dw",
        "blk.%d.hc_attn_base", "blk.%d.hc_ffn_base", "blk.%d.time_mix_lerp_w", "blk.%d.time_mix_lerp_k",
        "blk.%d.time_mix_lerp_v", "blk.%d.time_mix_lerp_r", "blk.%d.time_mix_lerp_g", "blk.%d.time_mix_lerp_fused",
        "blk.%d.time_mix_decay", "blk.%d.time_mix_w0", "blk.%d.time_mix_a0", "blk.%d.time_mix_v0",
        "blk.%d.exp_probs_b", "blk.%d.exp_probs_b_vl", "blk.%d.time_mix_lerp_x", "blk.%d.channel_mix_lerp_k",
        "blk.%d.channel_mix_lerp_r", "blk.%d.time_mix_k_k", "blk.%d.time_mix_k_a", "blk.%d.time_mix_r_k",
        "blk.%d.ssm_conv1d_q", "blk.%d.ssm_conv1d_k", "blk.%d.ssm_conv1d_v", "blk.%d.layer_output_scale",
        "blk.%d.altup_correct_scale", "convnext.%d.gamma",
    }
)  # fmt: skip
_BLOCK_INDEX = re.compile(r"(^|\.)(blk|posnet|convnext)\.\d+\.")


MUL_MAT = "mul_mat"
MUL_MAT_ID = "mul_mat_id"
OTHER = "other"


def weight_op(t: TensorInfo) -> str:
    """The op llama.cpp uses a weight with, as far as the extra buffer types care."""
    if len(t.shape) < 2 or t.name.endswith(".bias"):
        return OTHER  # norms, scales and biases (ADD, MUL)
    base = _BLOCK_INDEX.sub(lambda m: f"{m[1]}{m[2]}.%d.", t.name).removesuffix(".weight")
    if base in _NOT_MATMUL or base.endswith("_norm"):
        return OTHER
    return MUL_MAT_ID if "_exps" in t.name or "_chexps" in t.name else MUL_MAT


def n_dims(t: TensorInfo) -> int:
    """ggml_n_dims: trailing dimensions of size 1 do not count."""
    dims = len(t.shape)
    while dims > 1 and t.shape[dims - 1] == 1:
        dims -= 1
    return dims


def _pad(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def amx_bytes(t: TensorInfo, op: str | None = None) -> int:
    """The AMX buffer's copy of a weight (0 where the AMX buffer type refuses it)."""
    name = t.ggml_type.name
    if name not in AMX_ALIGNMENT or (op or weight_op(t)) != MUL_MAT:
        return 0
    if t.shape[0] % AMX_ALIGNMENT[name] or t.shape[1] % AMX_ROWS:
        return 0
    if name == "F16":
        return _pad(t.n_bytes, TENSOR_ALIGNMENT)
    blocks = t.shape[0] // t.ggml_type.block_size
    # amx/mmq.cpp sizes the packed tensor from ne[0] and ne[1] alone (a 3-D batched matrix's other
    # slices are not counted: reproduced, not corrected)
    return _pad(t.shape[1] * blocks * (t.ggml_type.type_size + AMX_EXTRA_PER_BLOCK.get(name, 0)), TENSOR_ALIGNMENT)


def repack_bytes(t: TensorInfo, level: str, op: str | None = None) -> int:
    """The CPU_REPACK buffer's copy of a weight: a 2-D MUL_MAT matrix or a 3-D MUL_MAT_ID expert
    stack of a type this build repacks, with the row multiple its kernels need (0 otherwise)."""
    rows = REPACK_RULES.get(level, {}).get(t.ggml_type.name)
    op = op or weight_op(t)
    dims = n_dims(t)
    if not rows or t.shape[1] % rows or (op, dims) not in ((MUL_MAT, 2), (MUL_MAT_ID, 3)):
        return 0
    return _pad(t.n_bytes, TENSOR_ALIGNMENT)


def host_copy(t: TensorInfo, extra_buffers: tuple[str, ...], repack_level: str, op: str | None = None) -> tuple[str, int]:
    """(buffer type, bytes) of the copy llama.cpp makes of a host weight: the first of the
    backend's extra buffer types that takes it, or (CPU_Mapped, 0) where the mapped file serves."""
    op = op or weight_op(t)
    for buffer in extra_buffers:
        if buffer == AMX:
            size = amx_bytes(t, op)
        elif buffer == REPACK:
            size = repack_bytes(t, repack_level, op)
        else:
            size = 0  # not modelled (KleidiAI)
        if size:
            return buffer, size
    return MAPPED, 0
