"""Header-only GGUF files with the real shapes of published models (no tensor data).

Each file holds the GGUF header, the metadata (hyperparameters from the model's published
``config.json``, a tokenizer with the real token and merge *counts* but made-up strings) and the
tensor infos with the types llama.cpp's quantizer picks for Q4_K_M. The tensor data is absent:
the file ends right after the tensor infos, so every tensor lies past the end of the file. With
``sparse=True`` the file is extended with a hole to its full size, so tools that check that the
data lies inside the file accept it (the bytes read back as zeros).

These files are for planning and for testing readers: no engine can run them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gpusplit.synthetic.tiny import (
    FTYPE_MOSTLY_F16,
    FTYPE_MOSTLY_MXFP4_MOE,
    FTYPE_MOSTLY_Q4_K_M,
    TensorPlan,
    _nbytes,
    add_infos_and_header,
    gguf_file,
    write_hparams,
)
from gpusplit.synthetic.vocab import CONTROL, USER_DEFINED, Vocab, large_bpe_vocab, spm_vocab, write_vocab

if TYPE_CHECKING:
    import gguf
    import numpy as np
    import numpy.typing as npt


@dataclass(frozen=True)
class HeaderOnlySpec:
    name: str
    display_name: str
    source: str  # where the hyperparameters come from
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_vocab: int
    n_ctx_train: int
    rope_theta: float
    rms_eps: float
    tokenizer: str  # "llama3", "qwen2", "mistral" (SentencePiece), "gemma3" (SentencePiece)
    n_merges: int = 0
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_exp: int = 0  # qwen3moe expert_feed_forward_length
    sliding_window: int = 0
    rope_scaling_linear: float = 0.0  # linear rope scaling factor (gemma3 27B: 8)
    tied: bool = False
    rope_freqs: bool = False  # Llama 3.1's rope_freqs.weight (llama3 rope scaling), f32 [head_dim/2]
    write_key_length: bool = False  # attention.key_length / value_length keys
    # deepseek2 (MLA): q/kv latent ranks, rope part of a head, nope part, value head; shared experts,
    # leading dense blocks
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    rope_dim: int = 0
    nope_dim: int = 0
    value_dim: int = 0
    n_expert_shared: int = 0
    n_dense_lead: int = 0
    # qwen3next (gated delta-net layers between full-attention ones): linear attention's heads
    full_attention_interval: int = 0
    linear_conv: int = 0
    linear_key_head: int = 0
    linear_key_heads: int = 0
    linear_value_heads: int = 0
    n_ff_shexp: int = 0
    qkv_bias: bool = False  # qwen2: attn_q/k/v carry biases
    fused: bool = False  # phi3: one attn_qkv matrix, and ffn_up holding the gate (2 x n_ff rows)

    @property
    def is_llama_70b(self) -> bool:
        """llama.cpp's LLM_TYPE_70B (it gives attn_v more bits for this model type)."""
        return self.arch == "llama" and self.n_expert == 0 and self.n_layer == 80 and self.n_head != self.n_head_kv


HEADER_ONLY_MODELS: dict[str, HeaderOnlySpec] = {
    # https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct/blob/main/config.json
    # hidden_size 4096, num_hidden_layers 32, num_attention_heads 32, num_key_value_heads 8,
    # head_dim 128, intermediate_size 14336, vocab_size 128256, rope_theta 500000,
    # max_position_embeddings 131072, rms_norm_eps 1e-5, rope_scaling llama3 (factor 8),
    # tie_word_embeddings false; tokenizer: 128,000 BPE tokens + 256 special, 280,147 merges.
    "llama-3.1-8b": HeaderOnlySpec(
        name="llama-3.1-8b",
        display_name="Meta Llama 3.1 8B Instruct",
        source="https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct/blob/main/config.json",
        arch="llama",
        n_layer=32,
        n_embd=4096,
        n_head=32,
        n_head_kv=8,
        head_dim=128,
        n_ff=14336,
        n_vocab=128256,
        n_ctx_train=131072,
        rope_theta=500000.0,
        rms_eps=1e-5,
        tokenizer="llama3",
        n_merges=280147,
        rope_freqs=True,
    ),
    # https://huggingface.co/meta-llama/Llama-3.1-70B-Instruct/blob/main/config.json
    # hidden_size 8192, num_hidden_layers 80, num_attention_heads 64, num_key_value_heads 8,
    # head_dim 128, intermediate_size 28672, vocab_size 128256, rope_theta 500000,
    # max_position_embeddings 131072, rms_norm_eps 1e-5, rope_scaling llama3 (factor 8).
    "llama-3.1-70b": HeaderOnlySpec(
        name="llama-3.1-70b",
        display_name="Meta Llama 3.1 70B Instruct",
        source="https://huggingface.co/meta-llama/Llama-3.1-70B-Instruct/blob/main/config.json",
        arch="llama",
        n_layer=80,
        n_embd=8192,
        n_head=64,
        n_head_kv=8,
        head_dim=128,
        n_ff=28672,
        n_vocab=128256,
        n_ctx_train=131072,
        rope_theta=500000.0,
        rms_eps=1e-5,
        tokenizer="llama3",
        n_merges=280147,
        rope_freqs=True,
    ),
    # https://huggingface.co/mistralai/Mixtral-8x7B-Instruct-v0.1/blob/main/config.json
    # hidden_size 4096, num_hidden_layers 32, num_attention_heads 32, num_key_value_heads 8,
    # head_dim 128 (4096/32), intermediate_size 14336 (per expert), vocab_size 32000,
    # rope_theta 1e6, max_position_embeddings 32768, rms_norm_eps 1e-5, num_local_experts 8,
    # num_experts_per_tok 2, sliding_window null; SentencePiece tokenizer (no merges).
    "mixtral-8x7b": HeaderOnlySpec(
        name="mixtral-8x7b",
        display_name="Mixtral 8x7B Instruct v0.1",
        source="https://huggingface.co/mistralai/Mixtral-8x7B-Instruct-v0.1/blob/main/config.json",
        arch="llama",
        n_layer=32,
        n_embd=4096,
        n_head=32,
        n_head_kv=8,
        head_dim=128,
        n_ff=14336,
        n_vocab=32000,
        n_ctx_train=32768,
        rope_theta=1_000_000.0,
        rms_eps=1e-5,
        tokenizer="mistral",
        n_expert=8,
        n_expert_used=2,
    ),
    # https://huggingface.co/google/gemma-3-27b-it/blob/main/config.json (text_config)
    # hidden_size 5376, num_hidden_layers 62, num_attention_heads 32, num_key_value_heads 16,
    # head_dim 128, intermediate_size 21504, rope_theta 1e6 (global layers; rope_local_base_freq
    # 10000), max_position_embeddings 131072, rms_norm_eps 1e-6, sliding_window 1024,
    # sliding_window_pattern 6, rope_scaling linear factor 8, tied embeddings.
    # vocab_size there is 262208 (with image tokens); the tokenizer and the GGUF token_embd hold
    # 262,144 tokens, which is what llama.cpp sees.
    "gemma-3-27b": HeaderOnlySpec(
        name="gemma-3-27b",
        display_name="Gemma 3 27B It",
        source="https://huggingface.co/google/gemma-3-27b-it/blob/main/config.json",
        arch="gemma3",
        n_layer=62,
        n_embd=5376,
        n_head=32,
        n_head_kv=16,
        head_dim=128,
        n_ff=21504,
        n_vocab=262144,
        n_ctx_train=131072,
        rope_theta=1_000_000.0,
        rms_eps=1e-6,
        tokenizer="gemma3",
        sliding_window=1024,
        rope_scaling_linear=8.0,
        tied=True,
        write_key_length=True,
    ),
    # https://huggingface.co/google/gemma-3-270m/blob/main/config.json
    # hidden_size 640, num_hidden_layers 18, num_attention_heads 4, num_key_value_heads 1,
    # head_dim 256, intermediate_size 2048, vocab_size 262144, rope_theta 1e6 (global layers),
    # max_position_embeddings 32768, rms_norm_eps 1e-6, sliding_window 512, tied embeddings.
    # A small model with a huge vocabulary: the logits compute buffer (~512 MiB at n_ubatch 512)
    # outweighs all of its layers, which is what splitting decisions must survive.
    "gemma-3-270m": HeaderOnlySpec(
        name="gemma-3-270m",
        display_name="Gemma 3 270M",
        source="https://huggingface.co/google/gemma-3-270m/blob/main/config.json",
        arch="gemma3",
        n_layer=18,
        n_embd=640,
        n_head=4,
        n_head_kv=1,
        head_dim=256,
        n_ff=2048,
        n_vocab=262144,
        n_ctx_train=32768,
        rope_theta=1_000_000.0,
        rms_eps=1e-6,
        tokenizer="gemma3",
        sliding_window=512,
        tied=True,
        write_key_length=True,
    ),
    # https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/blob/main/config.json
    # hidden_size 576, num_hidden_layers 30, num_attention_heads 9, num_key_value_heads 3,
    # intermediate_size 1536, vocab_size 49152, rope_theta 100000, max_position_embeddings 8192,
    # rms_norm_eps 1e-5, tie_word_embeddings true; GPT-2 style BPE, 48,900 merges, 17 specials.
    "smollm2-135m": HeaderOnlySpec(
        name="smollm2-135m",
        display_name="SmolLM2 135M Instruct",
        source="https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/blob/main/config.json",
        arch="llama",
        n_layer=30,
        n_embd=576,
        n_head=9,
        n_head_kv=3,
        head_dim=64,
        n_ff=1536,
        n_vocab=49152,
        n_ctx_train=8192,
        rope_theta=100000.0,
        rms_eps=1e-5,
        tokenizer="smollm",
        n_merges=48900,
        tied=True,
    ),
    # https://huggingface.co/HuggingFaceTB/SmolLM2-360M-Instruct/blob/main/config.json
    # hidden_size 960, num_hidden_layers 32, num_attention_heads 15, num_key_value_heads 5,
    # intermediate_size 2560, vocab_size 49152, rope_theta 100000, tie_word_embeddings true.
    "smollm2-360m": HeaderOnlySpec(
        name="smollm2-360m",
        display_name="SmolLM2 360M Instruct",
        source="https://huggingface.co/HuggingFaceTB/SmolLM2-360M-Instruct/blob/main/config.json",
        arch="llama",
        n_layer=32,
        n_embd=960,
        n_head=15,
        n_head_kv=5,
        head_dim=64,
        n_ff=2560,
        n_vocab=49152,
        n_ctx_train=8192,
        rope_theta=100000.0,
        rms_eps=1e-5,
        tokenizer="smollm",
        n_merges=48900,
        tied=True,
    ),
    # https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct/blob/main/config.json
    # hidden_size 896, num_hidden_layers 24, num_attention_heads 14, num_key_value_heads 2,
    # intermediate_size 4864, vocab_size 151936, rope_theta 1e6, max_position_embeddings 32768,
    # rms_norm_eps 1e-6, tie_word_embeddings true; q/k/v projections with biases.
    "qwen2.5-0.5b": HeaderOnlySpec(
        name="qwen2.5-0.5b",
        display_name="Qwen2.5 0.5B Instruct",
        source="https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct/blob/main/config.json",
        arch="qwen2",
        n_layer=24,
        n_embd=896,
        n_head=14,
        n_head_kv=2,
        head_dim=64,
        n_ff=4864,
        n_vocab=151936,
        n_ctx_train=32768,
        rope_theta=1_000_000.0,
        rms_eps=1e-6,
        tokenizer="qwen2",
        n_merges=151387,
        tied=True,
        qkv_bias=True,
    ),
    # https://huggingface.co/Qwen/Qwen2.5-1.5B-Instruct/blob/main/config.json
    # hidden_size 1536, num_hidden_layers 28, num_attention_heads 12, num_key_value_heads 2,
    # intermediate_size 8960, vocab_size 151936, tie_word_embeddings true.
    "qwen2.5-1.5b": HeaderOnlySpec(
        name="qwen2.5-1.5b",
        display_name="Qwen2.5 1.5B Instruct",
        source="https://huggingface.co/Qwen/Qwen2.5-1.5B-Instruct/blob/main/config.json",
        arch="qwen2",
        n_layer=28,
        n_embd=1536,
        n_head=12,
        n_head_kv=2,
        head_dim=128,
        n_ff=8960,
        n_vocab=151936,
        n_ctx_train=32768,
        rope_theta=1_000_000.0,
        rms_eps=1e-6,
        tokenizer="qwen2",
        n_merges=151387,
        tied=True,
        qkv_bias=True,
    ),
    # https://huggingface.co/meta-llama/Llama-3.2-1B-Instruct/blob/main/config.json
    # hidden_size 2048, num_hidden_layers 16, num_attention_heads 32, num_key_value_heads 8,
    # head_dim 64, intermediate_size 8192, vocab_size 128256, rope_theta 500000, rope_scaling
    # llama3 (factor 32), max_position_embeddings 131072, tie_word_embeddings true.
    "llama-3.2-1b": HeaderOnlySpec(
        name="llama-3.2-1b",
        display_name="Llama 3.2 1B Instruct",
        source="https://huggingface.co/meta-llama/Llama-3.2-1B-Instruct/blob/main/config.json",
        arch="llama",
        n_layer=16,
        n_embd=2048,
        n_head=32,
        n_head_kv=8,
        head_dim=64,
        n_ff=8192,
        n_vocab=128256,
        n_ctx_train=131072,
        rope_theta=500000.0,
        rms_eps=1e-5,
        tokenizer="llama3",
        n_merges=280147,
        rope_freqs=True,
        tied=True,
    ),
    # https://huggingface.co/google/gemma-3-1b-it/blob/main/config.json
    # hidden_size 1152, num_hidden_layers 26, num_attention_heads 4, num_key_value_heads 1,
    # head_dim 256, intermediate_size 6912, vocab_size 262144, sliding_window 512, rope_theta 1e6,
    # max_position_embeddings 32768, rms_norm_eps 1e-6, tied.
    "gemma-3-1b": HeaderOnlySpec(
        name="gemma-3-1b",
        display_name="Gemma 3 1B",
        source="https://huggingface.co/google/gemma-3-1b-it/blob/main/config.json",
        arch="gemma3",
        n_layer=26,
        n_embd=1152,
        n_head=4,
        n_head_kv=1,
        head_dim=256,
        n_ff=6912,
        n_vocab=262144,
        n_ctx_train=32768,
        rope_theta=1_000_000.0,
        rms_eps=1e-6,
        tokenizer="gemma3",
        sliding_window=512,
        tied=True,
        write_key_length=True,
    ),
    # https://huggingface.co/TinyLlama/TinyLlama-1.1B-Chat-v1.0/blob/main/config.json
    # hidden_size 2048, num_hidden_layers 22, num_attention_heads 32, num_key_value_heads 4,
    # intermediate_size 5632, vocab_size 32000, rope_theta 10000, max_position_embeddings 2048,
    # rms_norm_eps 1e-5, tie_word_embeddings false; Llama 2's SentencePiece vocabulary.
    "tinyllama-1.1b": HeaderOnlySpec(
        name="tinyllama-1.1b",
        display_name="TinyLlama 1.1B Chat v1.0",
        source="https://huggingface.co/TinyLlama/TinyLlama-1.1B-Chat-v1.0/blob/main/config.json",
        arch="llama",
        n_layer=22,
        n_embd=2048,
        n_head=32,
        n_head_kv=4,
        head_dim=64,
        n_ff=5632,
        n_vocab=32000,
        n_ctx_train=2048,
        rope_theta=10000.0,
        rms_eps=1e-5,
        tokenizer="mistral",
    ),
    # https://huggingface.co/microsoft/Phi-3-mini-4k-instruct/blob/main/config.json
    # hidden_size 3072, num_hidden_layers 32, num_attention_heads 32, num_key_value_heads 32,
    # intermediate_size 8192, vocab_size 32064, rope_theta 10000, max_position_embeddings 4096,
    # rms_norm_eps 1e-5, tie_word_embeddings false; qkv_proj and gate_up_proj fused (as in the GGUF).
    "phi-3-mini": HeaderOnlySpec(
        name="phi-3-mini",
        display_name="Phi 3 Mini 4k Instruct",
        source="https://huggingface.co/microsoft/Phi-3-mini-4k-instruct/blob/main/config.json",
        arch="phi3",
        n_layer=32,
        n_embd=3072,
        n_head=32,
        n_head_kv=32,
        head_dim=96,
        n_ff=8192,
        n_vocab=32064,
        n_ctx_train=4096,
        rope_theta=10000.0,
        rms_eps=1e-5,
        tokenizer="mistral",
        fused=True,
    ),
    # https://huggingface.co/Qwen/Qwen3-30B-A3B/blob/main/config.json
    # hidden_size 2048, num_hidden_layers 48, num_attention_heads 32, num_key_value_heads 4,
    # head_dim 128, intermediate_size 6144, moe_intermediate_size 768, num_experts 128,
    # num_experts_per_tok 8, vocab_size 151936, rope_theta 1e6, max_position_embeddings 40960,
    # rms_norm_eps 1e-6, tie_word_embeddings false, use_sliding_window false;
    # tokenizer: 151,643 BPE tokens + 26 added tokens (padded to 151,936), 151,387 merges.
    "qwen3-30b-a3b": HeaderOnlySpec(
        name="qwen3-30b-a3b",
        display_name="Qwen3 30B A3B",
        source="https://huggingface.co/Qwen/Qwen3-30B-A3B/blob/main/config.json",
        arch="qwen3moe",
        n_layer=48,
        n_embd=2048,
        n_head=32,
        n_head_kv=4,
        head_dim=128,
        n_ff=6144,
        n_vocab=151936,
        n_ctx_train=40960,
        rope_theta=1_000_000.0,
        rms_eps=1e-6,
        tokenizer="qwen2",
        n_merges=151387,
        n_expert=128,
        n_expert_used=8,
        n_ff_exp=768,
        write_key_length=True,
    ),
    # https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json
    # hidden_size 7168, num_hidden_layers 61, num_attention_heads 128, q_lora_rank 1536,
    # kv_lora_rank 512, qk_nope_head_dim 128, qk_rope_head_dim 64, v_head_dim 128,
    # intermediate_size 18432, moe_intermediate_size 2048, n_routed_experts 256, num_experts_per_tok 8,
    # n_shared_experts 1, first_k_dense_replace 3, vocab_size 129280, max_position_embeddings 163840,
    # rms_norm_eps 1e-6; written as convert_hf_to_gguf.py writes an MLA model (one KV head of
    # kv_lora_rank + rope = 576, key_length_mla 192, value_length_mla 128, k_b / v_b split).
    "deepseek-v3": HeaderOnlySpec(
        name="deepseek-v3",
        display_name="DeepSeek V3",
        source="https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/config.json",
        arch="deepseek2",
        n_layer=61,
        n_embd=7168,
        n_head=128,
        n_head_kv=1,
        head_dim=192,
        n_ff=18432,
        n_vocab=129280,
        n_ctx_train=163840,
        rope_theta=10000.0,
        rms_eps=1e-6,
        tokenizer="deepseek-v3",
        n_merges=127741,
        n_expert=256,
        n_expert_used=8,
        n_ff_exp=2048,
        q_lora_rank=1536,
        kv_lora_rank=512,
        rope_dim=64,
        nope_dim=128,
        value_dim=128,
        n_expert_shared=1,
        n_dense_lead=3,
    ),
    # https://huggingface.co/openai/gpt-oss-120b/blob/main/config.json
    # hidden_size 2880, num_hidden_layers 36, num_attention_heads 64, num_key_value_heads 8,
    # head_dim 64, intermediate_size 2880, num_local_experts 128, experts_per_token 4,
    # sliding_window 128 (every other layer), vocab_size 201088, max_position_embeddings 131072,
    # rope_theta 150000; experts MXFP4 as published, the other matrices Q8_0.
    "gpt-oss-120b": HeaderOnlySpec(
        name="gpt-oss-120b",
        display_name="gpt-oss 120b",
        source="https://huggingface.co/openai/gpt-oss-120b/blob/main/config.json",
        arch="gpt-oss",
        n_layer=36,
        n_embd=2880,
        n_head=64,
        n_head_kv=8,
        head_dim=64,
        n_ff=2880,
        n_vocab=201088,
        n_ctx_train=131072,
        rope_theta=150000.0,
        rms_eps=1e-5,
        tokenizer="o200k",
        n_merges=446189,
        n_expert=128,
        n_expert_used=4,
        n_ff_exp=2880,
        sliding_window=128,
        write_key_length=True,
    ),
    # https://huggingface.co/Qwen/Qwen3-Next-80B-A3B-Instruct/blob/main/config.json
    # hidden_size 2048, num_hidden_layers 48, num_attention_heads 16, num_key_value_heads 2,
    # head_dim 256, full_attention_interval 4, linear_conv_kernel_dim 4, linear_key_head_dim 128,
    # linear_num_key_heads 16, linear_num_value_heads 32, linear_value_head_dim 128, num_experts 512,
    # num_experts_per_tok 10, moe_intermediate_size 512, shared_expert_intermediate_size 512,
    # vocab_size 151936, max_position_embeddings 262144, rope_theta 1e7.
    "qwen3-next-80b-a3b": HeaderOnlySpec(
        name="qwen3-next-80b-a3b",
        display_name="Qwen3 Next 80B A3B",
        source="https://huggingface.co/Qwen/Qwen3-Next-80B-A3B-Instruct/blob/main/config.json",
        arch="qwen3next",
        n_layer=48,
        n_embd=2048,
        n_head=16,
        n_head_kv=2,
        head_dim=256,
        n_ff=5120,
        n_vocab=151936,
        n_ctx_train=262144,
        rope_theta=10_000_000.0,
        rms_eps=1e-6,
        tokenizer="qwen2",
        n_merges=151387,
        n_expert=512,
        n_expert_used=10,
        n_ff_exp=512,
        n_ff_shexp=512,
        write_key_length=True,
        full_attention_interval=4,
        linear_conv=4,
        linear_key_head=128,
        linear_key_heads=16,
        linear_value_heads=32,
    ),
    # https://huggingface.co/meta-llama/Llama-4-Scout-17B-16E-Instruct/blob/main/config.json
    # text_config: hidden_size 5120, num_hidden_layers 48, num_attention_heads 40,
    # num_key_value_heads 8, head_dim 128, num_local_experts 16, num_experts_per_tok 1,
    # intermediate_size 8192 (each expert and the shared one), intermediate_size_mlp 16384,
    # interleave_moe_layer_step 1, attention_chunk_size 8192 on three layers of four,
    # vocab_size 202048, rope_theta 500000.
    "llama-4-scout": HeaderOnlySpec(
        name="llama-4-scout",
        display_name="Llama 4 Scout 17B 16E",
        source="https://huggingface.co/meta-llama/Llama-4-Scout-17B-16E-Instruct/blob/main/config.json",
        arch="llama4",
        n_layer=48,
        n_embd=5120,
        n_head=40,
        n_head_kv=8,
        head_dim=128,
        n_ff=16384,
        n_vocab=202048,
        n_ctx_train=10485760,
        rope_theta=500000.0,
        rms_eps=1e-5,
        tokenizer="o200k-llama4",
        n_merges=439802,
        n_expert=16,
        n_expert_used=1,
        n_ff_exp=8192,
        n_ff_shexp=8192,
        sliding_window=8192,
    ),
}


# --------------------------------------------------------------------------------------------
# tensors and Q4_K_M types
# --------------------------------------------------------------------------------------------


def _shapes(spec: HeaderOnlySpec) -> list[tuple[str, tuple[int, ...]]]:
    """(name, numpy-order shape) of every tensor, in the order convert_hf_to_gguf.py writes them."""
    E, hd = spec.n_embd, spec.head_dim
    q_dim, kv_dim = spec.n_head * hd, spec.n_head_kv * hd
    out: list[tuple[str, tuple[int, ...]]] = []
    if spec.rope_freqs:
        out.append(("rope_freqs.weight", (hd // 2,)))
    out.append(("token_embd.weight", (spec.n_vocab, E)))
    for i in range(spec.n_layer):
        b = f"blk.{i}."
        out.append((b + "attn_norm.weight", (E,)))
        if spec.arch == "deepseek2":
            out.extend(_deepseek2_block(spec, i))
            continue
        if spec.arch == "gpt-oss":
            out.extend(_gpt_oss_block(spec, i))
            continue
        if spec.arch == "qwen3next":
            out.extend(_qwen3next_block(spec, i))
            continue
        if spec.arch == "llama4":
            out.extend(_llama4_block(spec, i))
            continue
        if spec.fused:
            out.append((b + "attn_qkv.weight", (q_dim + 2 * kv_dim, E)))
            out.append((b + "attn_output.weight", (E, q_dim)))
            out.append((b + "ffn_norm.weight", (E,)))
            out.append((b + "ffn_down.weight", (E, spec.n_ff)))
            out.append((b + "ffn_up.weight", (2 * spec.n_ff, E)))
            continue
        out.append((b + "attn_q.weight", (q_dim, E)))
        out.append((b + "attn_k.weight", (kv_dim, E)))
        out.append((b + "attn_v.weight", (kv_dim, E)))
        if spec.qkv_bias:
            out += [(b + "attn_q.bias", (q_dim,)), (b + "attn_k.bias", (kv_dim,)), (b + "attn_v.bias", (kv_dim,))]
        out.append((b + "attn_output.weight", (E, q_dim)))
        if spec.arch in ("gemma3", "qwen3moe"):
            out.append((b + "attn_q_norm.weight", (hd,)))
            out.append((b + "attn_k_norm.weight", (hd,)))
        if spec.arch == "gemma3":
            out.append((b + "post_attention_norm.weight", (E,)))
        out.append((b + "ffn_norm.weight", (E,)))
        if spec.n_expert:
            X = spec.n_expert
            ff = spec.n_ff_exp or spec.n_ff
            out.append((b + "ffn_gate_inp.weight", (X, E)))
            out.append((b + "ffn_gate_exps.weight", (X, ff, E)))
            out.append((b + "ffn_up_exps.weight", (X, ff, E)))
            out.append((b + "ffn_down_exps.weight", (X, E, ff)))
        else:
            out.append((b + "ffn_gate.weight", (spec.n_ff, E)))
            out.append((b + "ffn_up.weight", (spec.n_ff, E)))
            out.append((b + "ffn_down.weight", (E, spec.n_ff)))
        if spec.arch == "gemma3":
            out.append((b + "post_ffw_norm.weight", (E,)))
    out.append(("output_norm.weight", (E,)))
    if not spec.tied:
        out.append(("output.weight", (spec.n_vocab, E)))
    return out


def _deepseek2_block(spec: HeaderOnlySpec, i: int) -> list[tuple[str, tuple[int, ...]]]:
    """An MLA block as src/models/deepseek2.cpp loads it (numpy order), after attn_norm."""
    E, H, b = spec.n_embd, spec.n_head, f"blk.{i}."
    out = [
        (b + "attn_q_a_norm.weight", (spec.q_lora_rank,)),
        (b + "attn_kv_a_norm.weight", (spec.kv_lora_rank,)),
        (b + "attn_q_a.weight", (spec.q_lora_rank, E)),
        (b + "attn_q_b.weight", (H * (spec.nope_dim + spec.rope_dim), spec.q_lora_rank)),
        (b + "attn_kv_a_mqa.weight", (spec.kv_lora_rank + spec.rope_dim, E)),
        (b + "attn_k_b.weight", (H, spec.kv_lora_rank, spec.nope_dim)),
        (b + "attn_v_b.weight", (H, spec.value_dim, spec.kv_lora_rank)),
        (b + "attn_output.weight", (E, H * spec.value_dim)),
        (b + "ffn_norm.weight", (E,)),
    ]
    if i < spec.n_dense_lead:
        return out + [
            (b + "ffn_gate.weight", (spec.n_ff, E)),
            (b + "ffn_up.weight", (spec.n_ff, E)),
            (b + "ffn_down.weight", (E, spec.n_ff)),
        ]
    X, ff, shared = spec.n_expert, spec.n_ff_exp, spec.n_ff_exp * spec.n_expert_shared
    return out + [
        (b + "ffn_gate_inp.weight", (X, E)),
        (b + "exp_probs_b.bias", (X,)),
        (b + "ffn_gate_exps.weight", (X, ff, E)),
        (b + "ffn_up_exps.weight", (X, ff, E)),
        (b + "ffn_down_exps.weight", (X, E, ff)),
        (b + "ffn_gate_shexp.weight", (shared, E)),
        (b + "ffn_up_shexp.weight", (shared, E)),
        (b + "ffn_down_shexp.weight", (E, shared)),
    ]


def _gpt_oss_block(spec: HeaderOnlySpec, i: int) -> list[tuple[str, tuple[int, ...]]]:
    """A gpt-oss block as src/models/openai-moe.cpp loads it (numpy order), after attn_norm."""
    E, hd, b = spec.n_embd, spec.head_dim, f"blk.{i}."
    q, kv, X, ff = spec.n_head * hd, spec.n_head_kv * hd, spec.n_expert, spec.n_ff_exp
    return [
        (b + "post_attention_norm.weight", (E,)),
        (b + "attn_q.weight", (q, E)),
        (b + "attn_q.bias", (q,)),
        (b + "attn_k.weight", (kv, E)),
        (b + "attn_k.bias", (kv,)),
        (b + "attn_v.weight", (kv, E)),
        (b + "attn_v.bias", (kv,)),
        (b + "attn_output.weight", (E, q)),
        (b + "attn_output.bias", (E,)),
        (b + "attn_sinks.weight", (spec.n_head,)),
        (b + "ffn_gate_inp.weight", (X, E)),
        (b + "ffn_gate_inp.bias", (X,)),
        (b + "ffn_gate_exps.weight", (X, ff, E)),
        (b + "ffn_gate_exps.bias", (X, ff)),
        (b + "ffn_up_exps.weight", (X, ff, E)),
        (b + "ffn_up_exps.bias", (X, ff)),
        (b + "ffn_down_exps.weight", (X, E, ff)),
        (b + "ffn_down_exps.bias", (X, E)),
    ]


def _shared_experts(spec: HeaderOnlySpec, b: str) -> list[tuple[str, tuple[int, ...]]]:
    E, X, ff, sh = spec.n_embd, spec.n_expert, spec.n_ff_exp, spec.n_ff_shexp
    return [
        (b + "ffn_gate_inp.weight", (X, E)),
        (b + "ffn_gate_exps.weight", (X, ff, E)),
        (b + "ffn_up_exps.weight", (X, ff, E)),
        (b + "ffn_down_exps.weight", (X, E, ff)),
        (b + "ffn_gate_shexp.weight", (sh, E)),
        (b + "ffn_up_shexp.weight", (sh, E)),
        (b + "ffn_down_shexp.weight", (E, sh)),
    ]


def _qwen3next_block(spec: HeaderOnlySpec, i: int) -> list[tuple[str, tuple[int, ...]]]:
    """A Qwen3-Next block as src/models/qwen3next.cpp loads it (numpy order), after attn_norm:
    full attention (gated Q) every full_attention_interval-th layer, gated delta-net otherwise."""
    E, hd, b = spec.n_embd, spec.head_dim, f"blk.{i}."
    out: list[tuple[str, tuple[int, ...]]] = [(b + "post_attention_norm.weight", (E,))]
    if (i + 1) % spec.full_attention_interval == 0:
        q, kv = spec.n_head * hd, spec.n_head_kv * hd
        out += [
            (b + "attn_q.weight", (2 * q, E)),
            (b + "attn_k.weight", (kv, E)),
            (b + "attn_v.weight", (kv, E)),
            (b + "attn_output.weight", (E, q)),
            (b + "attn_q_norm.weight", (hd,)),
            (b + "attn_k_norm.weight", (hd,)),
        ]
    else:
        key_dim = spec.linear_key_head * spec.linear_key_heads
        value_dim = spec.linear_key_head * spec.linear_value_heads
        out += [
            (b + "ssm_in.weight", (2 * key_dim + 2 * value_dim, E)),
            (b + "ssm_conv1d.weight", (2 * key_dim + value_dim, spec.linear_conv)),
            (b + "ssm_dt.bias", (spec.linear_value_heads,)),
            (b + "ssm_a", (spec.linear_value_heads,)),
            (b + "ssm_ba.weight", (2 * spec.linear_value_heads, E)),
            (b + "ssm_norm.weight", (spec.linear_key_head,)),
            (b + "ssm_out.weight", (E, value_dim)),
        ]
    return out + [(b + "ffn_gate_inp_shexp.weight", (E,)), *_shared_experts(spec, b)]


def _llama4_block(spec: HeaderOnlySpec, i: int) -> list[tuple[str, tuple[int, ...]]]:
    """A Llama 4 block (every block MoE with a shared expert, interleave step 1), after attn_norm."""
    E, hd, b = spec.n_embd, spec.head_dim, f"blk.{i}."
    q, kv = spec.n_head * hd, spec.n_head_kv * hd
    return [
        (b + "attn_q.weight", (q, E)),
        (b + "attn_k.weight", (kv, E)),
        (b + "attn_v.weight", (kv, E)),
        (b + "attn_output.weight", (E, q)),
        (b + "ffn_norm.weight", (E,)),
        *_shared_experts(spec, b),
    ]


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    # llama-quant.cpp, llama_tensor_get_type_impl
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}


def q4_k_m_types(spec: HeaderOnlySpec, tensors: list[tuple[str, tuple[int, ...]]]) -> list[str]:
    """The ggml type llama.cpp's quantizer (llama-quant.cpp) gives each tensor for Q4_K_M.

    Mirrors tensor_allows_quantization, tensor_get_category and llama_tensor_get_type_impl for
    the categories these models have: 1-D tensors, norms and ffn_gate_inp are not quantized
    (F32); output (and token_embd when the embeddings are tied) Q6_K; attn_v Q6_K where
    use_more_bits(i, n_attn_v) (else Q4_K, or Q5_K for LLM_TYPE_70B), Q8_0 for 8-expert models;
    attn_k Q8_0 for 8-expert models; attn_output Q5_K for 8-expert models; ffn_down (dense or
    experts) Q6_K where use_more_bits(layer, n_layer); everything else Q4_K. A row length that is not
    a multiple of 256 falls back as llama.cpp does (Q4_K->Q5_0, Q5_K->Q5_1, Q6_K->Q8_0).
    """
    if spec.arch == "gpt-oss":
        # As published (ggml-org's MXFP4 file): experts MXFP4, other matrices Q8_0, the rest F32.
        return [
            "F32"
            if len(shape) < 2 or not name.endswith("weight") or "ffn_gate_inp" in name
            else "MXFP4"
            if "_exps" in name
            else "Q8_0"
            for name, shape in tensors
        ]
    n_attn_v = sum(1 for name, _ in tensors if "attn_v.weight" in name)
    i_attn_v = 0
    i_ffn_down = 0
    out: list[str] = []
    for name, shape in tensors:
        quantizable = (
            len(shape) >= 2
            and name.endswith("weight")
            and "_norm.weight" not in name
            and "ffn_gate_inp.weight" not in name
            and "ssm_conv1d" not in name  # llama-quant.cpp never quantizes it
        )
        if not quantizable:
            out.append("F32")
            continue
        t = "Q4_K"
        if name == "output.weight" or (spec.tied and name == "token_embd.weight"):
            t = "Q6_K"
        elif name == "token_embd.weight":
            t = "Q4_K"
        elif "attn_v.weight" in name:
            if _use_more_bits(i_attn_v, n_attn_v):
                t = "Q6_K"
            if spec.is_llama_70b and t == "Q4_K":
                t = "Q5_K"
            if spec.n_expert == 8:
                t = "Q8_0"
            i_attn_v += 1
        elif "attn_k.weight" in name:
            if spec.n_expert == 8:
                t = "Q8_0"
        elif "attn_output.weight" in name:
            if spec.n_expert == 8:
                t = "Q5_K"
        elif "ffn_down" in name:
            i_layer = int(name.split(".")[1]) if spec.n_expert > 1 else i_ffn_down
            if _use_more_bits(i_layer, spec.n_layer):
                t = "Q6_K"
            i_ffn_down += 1
        if shape[-1] % 256 and t in _FALLBACK:
            t = _FALLBACK[t]
        out.append(t)
    return out


def header_only_tensor_plan(name_or_spec: str | HeaderOnlySpec, f16: bool = False) -> list[TensorPlan]:
    """Name, shape (numpy order), Q4_K_M type and kind of every tensor of a header-only model; with
    `f16` the matrices are F16 instead (a source for llama.cpp's quantizer, as a converted model is)."""
    spec = _resolve(name_or_spec)
    shapes = _shapes(spec)
    types = q4_k_m_types(spec, shapes)
    if f16:
        types = ["F32" if t == "F32" else "F16" for t in types]
    return [TensorPlan(n, s, t, "norm" if len(s) == 1 else "weight") for (n, s), t in zip(shapes, types)]


def header_only_data_size(name_or_spec: str | HeaderOnlySpec, alignment: int = 32) -> int:
    """Bytes of tensor data the full model holds (each tensor padded to the alignment)."""
    return sum(-(-_nbytes(t.shape, t.ggml_type) // alignment) * alignment for t in header_only_tensor_plan(name_or_spec))


# --------------------------------------------------------------------------------------------
# tokenizers
# --------------------------------------------------------------------------------------------


def _llama3_specials() -> list[tuple[str, int]]:
    named = {
        0: "<|begin_of_text|>",
        1: "<|end_of_text|>",
        4: "<|finetune_right_pad_id|>",
        6: "<|start_header_id|>",
        7: "<|end_header_id|>",
        8: "<|eom_id|>",
        9: "<|eot_id|>",
        10: "<|python_tag|>",
    }
    out = []
    reserved = 0
    for i in range(256):
        if i in named:
            out.append((named[i], CONTROL))
        else:
            out.append((f"<|reserved_special_token_{reserved}|>", CONTROL))
            reserved += 1
    return out


_QWEN_SPECIALS = [
    ("<|endoftext|>", CONTROL),
    ("<|im_start|>", CONTROL),
    ("<|im_end|>", CONTROL),
    ("<|object_ref_start|>", CONTROL),
    ("<|object_ref_end|>", CONTROL),
    ("<|box_start|>", CONTROL),
    ("<|box_end|>", CONTROL),
    ("<|quad_start|>", CONTROL),
    ("<|quad_end|>", CONTROL),
    ("<|vision_start|>", CONTROL),
    ("<|vision_end|>", CONTROL),
    ("<|vision_pad|>", CONTROL),
    ("<|image_pad|>", CONTROL),
    ("<|video_pad|>", CONTROL),
    ("<tool_call>", USER_DEFINED),
    ("</tool_call>", USER_DEFINED),
    ("<|fim_prefix|>", USER_DEFINED),
    ("<|fim_middle|>", USER_DEFINED),
    ("<|fim_suffix|>", USER_DEFINED),
    ("<|fim_pad|>", USER_DEFINED),
    ("<|repo_name|>", USER_DEFINED),
    ("<|file_sep|>", USER_DEFINED),
    ("<tool_response>", USER_DEFINED),
    ("</tool_response>", USER_DEFINED),
    ("<think>", USER_DEFINED),
    ("</think>", USER_DEFINED),
]


def header_only_vocab(spec: HeaderOnlySpec) -> Vocab:
    if spec.tokenizer == "llama3":
        return large_bpe_vocab(
            spec.n_vocab,
            spec.n_merges,
            pre="llama-bpe",
            n_normal=128000,
            specials=_llama3_specials(),
            special_ids={"bos": 128000, "eos": 128009},
            add_bos=True,
        )
    if spec.tokenizer == "qwen2":
        return large_bpe_vocab(
            spec.n_vocab,
            spec.n_merges,
            pre="qwen2",
            n_normal=151643,
            specials=_QWEN_SPECIALS,
            special_ids={"bos": 151643, "eos": 151645, "pad": 151643},
            add_bos=False,
        )
    if spec.tokenizer == "deepseek-v3":
        return large_bpe_vocab(
            spec.n_vocab,
            spec.n_merges,
            pre="deepseek-v3",
            n_normal=128000,
            specials=[("<｜begin▁of▁sentence｜>", CONTROL), ("<｜end▁of▁sentence｜>", CONTROL)],
            special_ids={"bos": 128000, "eos": 128001},
            add_bos=True,
        )
    if spec.tokenizer == "o200k":
        return large_bpe_vocab(
            spec.n_vocab,
            spec.n_merges,
            pre="gpt-4o",
            n_normal=199998,
            specials=[("<|startoftext|>", CONTROL), ("<|endoftext|>", CONTROL), ("<|return|>", CONTROL)],
            special_ids={"bos": 199998, "eos": 200000},
            add_bos=False,
        )
    if spec.tokenizer == "o200k-llama4":
        return large_bpe_vocab(
            spec.n_vocab,
            spec.n_merges,
            pre="llama4",
            n_normal=200000,
            specials=[("<|begin_of_text|>", CONTROL), ("<|end_of_text|>", CONTROL), ("<|eot|>", CONTROL)],
            special_ids={"bos": 200000, "eos": 200002},
            add_bos=True,
        )
    if spec.tokenizer == "smollm":
        # SmolLM2's 17 special tokens (<|endoftext|>, <|im_start|>, <|im_end|>, ...), here after the pieces
        specials = [("<|endoftext|>", CONTROL), ("<|im_start|>", CONTROL), ("<|im_end|>", CONTROL)]
        specials += [(f"<special_{i}>", CONTROL) for i in range(14)]
        n_normal = spec.n_vocab - len(specials)
        return large_bpe_vocab(
            spec.n_vocab,
            spec.n_merges,
            pre="smollm",
            n_normal=n_normal,
            specials=specials,
            special_ids={"bos": n_normal + 1, "eos": n_normal + 2},
            add_bos=False,
        )
    if spec.tokenizer == "mistral":
        return spm_vocab(spec.n_vocab, style="llama")
    if spec.tokenizer == "gemma3":
        return spm_vocab(spec.n_vocab, style="gemma")
    raise ValueError(f"unknown tokenizer {spec.tokenizer!r}")


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def _resolve(name_or_spec: str | HeaderOnlySpec) -> HeaderOnlySpec:
    if isinstance(name_or_spec, HeaderOnlySpec):
        return name_or_spec
    try:
        return HEADER_ONLY_MODELS[name_or_spec]
    except KeyError:
        raise KeyError(f"unknown header-only model {name_or_spec!r}; known: {', '.join(HEADER_ONLY_MODELS)}") from None


def _add_hparams(w: gguf.GGUFWriter, spec: HeaderOnlySpec) -> None:
    a = spec.arch
    if a == "deepseek2":
        for key, value in (
            ("context_length", spec.n_ctx_train), ("embedding_length", spec.n_embd), ("block_count", spec.n_layer),
            ("feed_forward_length", spec.n_ff), ("attention.head_count", spec.n_head), ("attention.head_count_kv", 1),
            ("attention.key_length", spec.kv_lora_rank + spec.rope_dim), ("attention.value_length", spec.kv_lora_rank),
            ("attention.key_length_mla", spec.nope_dim + spec.rope_dim), ("attention.value_length_mla", spec.value_dim),
            ("attention.q_lora_rank", spec.q_lora_rank), ("attention.kv_lora_rank", spec.kv_lora_rank),
            ("rope.dimension_count", spec.rope_dim), ("leading_dense_block_count", spec.n_dense_lead),
            ("expert_feed_forward_length", spec.n_ff_exp), ("expert_count", spec.n_expert),
            ("expert_used_count", spec.n_expert_used), ("expert_shared_count", spec.n_expert_shared),
            ("expert_gating_func", 2),  # sigmoid
        ):  # fmt: skip
            w.add_uint32(f"{a}.{key}", value)
        w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", spec.rms_eps)
        w.add_float32(f"{a}.rope.freq_base", spec.rope_theta)
        w.add_float32(f"{a}.expert_weights_scale", 2.5)
        w.add_bool(f"{a}.expert_weights_norm", True)
        return
    if a == "gpt-oss":
        w.add_uint32(f"{a}.rope.dimension_count", spec.head_dim)
    if a == "qwen3next":
        # convert_hf_to_gguf.py's mapping of the linear-attention fields
        w.add_uint32(f"{a}.ssm.conv_kernel", spec.linear_conv)
        w.add_uint32(f"{a}.ssm.state_size", spec.linear_key_head)
        w.add_uint32(f"{a}.ssm.group_count", spec.linear_key_heads)
        w.add_uint32(f"{a}.ssm.time_step_rank", spec.linear_value_heads)
        w.add_uint32(f"{a}.ssm.inner_size", spec.linear_key_head * spec.linear_value_heads)
        w.add_uint32(f"{a}.full_attention_interval", spec.full_attention_interval)
        w.add_uint32(f"{a}.expert_shared_feed_forward_length", spec.n_ff_shexp)
    if a == "llama4":
        w.add_uint32(f"{a}.interleave_moe_layer_step", 1)
    write_hparams(
        w,
        spec.arch,
        n_ctx_train=spec.n_ctx_train,
        n_embd=spec.n_embd,
        n_layer=spec.n_layer,
        n_ff=spec.n_ff,
        n_head=spec.n_head,
        n_head_kv=spec.n_head_kv,
        head_dim=spec.head_dim,
        n_vocab=spec.n_vocab,
        rms_eps=spec.rms_eps,
        rope_theta=spec.rope_theta,
        key_length=spec.write_key_length,
        rope_scaling_linear=spec.rope_scaling_linear,
        n_expert=spec.n_expert,
        n_expert_used=spec.n_expert_used,
        n_ff_exp=spec.n_ff_exp,
        sliding_window=spec.sliding_window,
    )


def header_only_full_size(name_or_spec: str | HeaderOnlySpec, header_size: int, alignment: int = 32) -> int:
    """The size of the complete file, given the bytes up to the end of the tensor infos."""
    data_start = -(-header_size // alignment) * alignment
    return data_start + header_only_data_size(name_or_spec, alignment)


def write_header_only(path: str | os.PathLike[str], name: str | HeaderOnlySpec, sparse: bool = False) -> Path:
    """Write the header-only GGUF file of `name` (a HEADER_ONLY_MODELS key) to `path`.

    The file ends right after the tensor infos (the tensor data would lie past its end). With
    `sparse` it is extended by a hole (``os.truncate``) to the size the complete model has.
    Deterministic; written to a temporary file and renamed into place. Returns the path.
    """
    # numpy and gguf (90 ms) only when used: gpusplit.api imports this package at start-up
    import gguf

    spec = _resolve(name)
    path = Path(path)
    plan = header_only_tensor_plan(spec)
    vocab = header_only_vocab(spec)
    assert len(vocab) == spec.n_vocab

    with gguf_file(path, spec.arch) as (w, tmp):
        w.add_name(spec.display_name)
        w.add_description(
            "synthetic header-only GGUF written by gpusplit: real shapes and Q4_K_M types, made-up token strings, no tensor data"
        )
        w.add_file_type(FTYPE_MOSTLY_MXFP4_MOE if spec.arch == "gpt-oss" else FTYPE_MOSTLY_Q4_K_M)
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        w.add_custom_alignment(gguf.GGUF_DEFAULT_ALIGNMENT)
        w.add_string("general.source.url", spec.source)
        _add_hparams(w, spec)
        write_vocab(w, vocab)
        add_infos_and_header(w, plan)
        w.close()  # no tensor data: the file ends after the tensor infos
        if sparse:
            header_size = tmp.stat().st_size
            os.truncate(tmp, header_only_full_size(spec, header_size, gguf.GGUF_DEFAULT_ALIGNMENT))
    return path


# --------------------------------------------------------------------------------------------
# full-size models with random weights (for GPU benchmarks: real shapes, real types, real bytes)
# --------------------------------------------------------------------------------------------

# Where each block keeps its f16 scales, and the value they get, so that random bytes decode to
# weights of about +-0.02 (a trained model's order) and never to inf or NaN: (offset, value)
# pairs per type. The quants themselves stay random. MXFP4 keeps an E8M0 exponent byte instead.
_BLOCK_SCALES: dict[str, tuple[tuple[int, float], ...]] = {
    "Q4_0": ((0, 2.5e-3),),  # d * (q - 8), q in 0..15
    "Q4_1": ((0, 1.2e-3), (2, -0.01)),  # d * q + m
    "Q5_0": ((0, 1.2e-3),),  # d * (q - 16)
    "Q5_1": ((0, 6e-4), (2, -0.01)),
    "Q8_0": ((0, 1.5e-4),),  # d * q, q int8
    "Q4_K": ((0, 2e-5), (2, 2e-5)),  # d * sc * q - dmin * m, sc and m 6-bit, q 4-bit
    "Q5_K": ((0, 1e-5), (2, 1e-5)),
    "Q6_K": ((208, 5e-6),),  # d * sc * (q - 32), sc int8
}
_MXFP4_EXPONENT = 119  # 2**(119 - 127) * 6 (the largest fp4 value) = 0.023


def _random_blocks(ggml_type: str, n_blocks: int, rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """`n_blocks` valid blocks of `ggml_type` as one flat uint8 array."""
    # numpy and gguf (90 ms) only when used: gpusplit.api imports this package at start-up
    import gguf
    import numpy as np

    _, block_bytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[ggml_type]]
    blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    if ggml_type == "MXFP4":
        blocks[:, 0] = _MXFP4_EXPONENT
    elif ggml_type in _BLOCK_SCALES:
        for offset, value in _BLOCK_SCALES[ggml_type]:
            blocks[:, offset : offset + 2] = np.frombuffer(np.float16(value).tobytes(), dtype=np.uint8)
    else:
        raise ValueError(f"no random blocks for {ggml_type}")
    return blocks.reshape(-1)


def write_random_weights(path: str | os.PathLike[str], name: str | HeaderOnlySpec, seed: int = 0, f16: bool = False) -> Path:
    """Write the *complete* model `name` (a HEADER_ONLY_MODELS key or a spec) with random weights.

    Same header as :func:`write_header_only`, then real tensor data: norms are ones, float matrices
    random normal (x0.02), quantized matrices valid random blocks of their Q4_K_M type (scales
    fixed so weights stay small and finite). llama.cpp loads and runs it at the published model's
    size and speed; the text it writes is noise. Each tensor is a random pattern of 1 MiB repeated,
    so writing the 4.9 GB Llama-3.1-8B takes seconds, not minutes. Deterministic. With `f16` every
    matrix is F16: a source for llama.cpp's quantizer, which then gives each tensor the type it gives
    the published file of any quantization (`synthetic.real_shaped`).
    """
    # numpy and gguf (90 ms) only when used: gpusplit.api imports this package at start-up
    import gguf
    import numpy as np

    spec = _resolve(name)
    path = Path(path)
    plan = header_only_tensor_plan(spec, f16=f16)
    vocab = header_only_vocab(spec)
    rng = np.random.default_rng(seed)
    pattern_bytes = 1 << 20
    with gguf_file(path, spec.arch) as (w, _):
        w.add_name(spec.display_name)
        kind = "F16" if f16 else "Q4_K_M"
        w.add_description(f"synthetic model written by gpusplit: real shapes and {kind} types, random weights (seed {seed})")
        w.add_file_type(FTYPE_MOSTLY_F16 if f16 else FTYPE_MOSTLY_MXFP4_MOE if spec.arch == "gpt-oss" else FTYPE_MOSTLY_Q4_K_M)
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        w.add_custom_alignment(gguf.GGUF_DEFAULT_ALIGNMENT)
        w.add_string("general.source.url", spec.source)
        _add_hparams(w, spec)
        write_vocab(w, vocab)
        add_infos_and_header(w, plan)
        patterns: dict[str, npt.NDArray[np.uint8]] = {}
        for t in plan:
            nbytes = _nbytes(t.shape, t.ggml_type)
            if t.kind == "norm":
                # norms (and rope factors) of one, biases of zero
                fill = np.zeros if t.name.endswith(".bias") else np.ones
                w.write_tensor_data(fill(t.shape, dtype=np.float32))
                continue
            if t.ggml_type not in patterns:
                if t.ggml_type in ("F32", "F16"):
                    dtype = np.float32 if t.ggml_type == "F32" else np.float16
                    values = (rng.standard_normal(pattern_bytes // 4, dtype=np.float32) * np.float32(0.02)).astype(dtype)
                    patterns[t.ggml_type] = values.view(np.uint8)
                else:
                    _, block_bytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[t.ggml_type]]
                    patterns[t.ggml_type] = _random_blocks(t.ggml_type, pattern_bytes // block_bytes, rng)
            pattern = patterns[t.ggml_type]
            # Rolled by whole blocks (the pattern holds whole blocks), so every block stays valid and
            # no two tensors are the same bytes.
            unit = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[t.ggml_type]][1]
            start = int(rng.integers(0, pattern.size // unit)) * unit
            w.write_tensor_data(np.resize(np.roll(pattern, -start), nbytes))
    return path
