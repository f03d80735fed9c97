"""The memory model against llama.cpp's rules, with figures worked out by hand."""

from __future__ import annotations

import pytest
from ggufpack import ARRAY, I32, STRING, U32, kv, llama_header

from gpusplit.gguf import read_model
from gpusplit.planning.memory import Placement, Settings, assign_layers, kv_cells, layer_kv_bytes, plan_memory, split_points


def _model(tmp_path, name="m", **kwargs):
    p = llama_header(**kwargs)
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(p.build())
    return read_model(path)


def test_layer_assignment_follows_the_facts_note(tmp_path):
    # 4 layers, tensor_split [0.6, 0.4], all offloaded: layers 0-2 on dev 0, layer 3 + output on dev 1.
    model = _model(tmp_path, n_layer=4)
    layers = assign_layers(model, Placement("layer", -1, (0.6, 0.4)), 2, [0.6, 0.4])
    assert layers == [0, 0, 0, 1, 1]


def test_partial_offload_counts_the_output_layer_first(tmp_path):
    model = _model(tmp_path, n_layer=4)
    # ngl 2 of 5 offloadable layers: i_gpu_start = 3 -> block 3 and the output layer on the GPU.
    assert assign_layers(model, Placement("layer", 2, (1.0,)), 1, [1.0]) == [None, None, None, 0, 0]
    assert assign_layers(model, Placement("layer", 0, (1.0,)), 1, [1.0]) == [None] * 5
    assert assign_layers(model, Placement("layer", 99, (1.0,)), 1, [1.0]) == [0] * 5


def test_split_points_are_float32_cumulative():
    points = split_points([0.1, 0.2, 0.7])
    assert points[-1] == 1.0
    assert points[0] == pytest.approx(0.1, rel=1e-6) and points[1] == pytest.approx(0.3, rel=1e-6)


def test_kv_bytes_by_hand(tmp_path):
    model = _model(tmp_path, n_layer=2, n_embd=64, n_head=4, n_head_kv=2)
    # head dim 16, 2 KV heads -> 32 values per cell for K and for V; n_ctx 300 pads to 512.
    settings = Settings(n_ctx=300)
    assert kv_cells(model, settings) == (512, 512)
    assert layer_kv_bytes(model, settings, 0) == 2 * (32 * 2 * 512)
    # q8_0: 34 bytes per 32 values; two sequences of pad(512 / 2, 256) = 256 cells.
    q8 = Settings(n_ctx=512, n_parallel=2, type_k="q8_0", type_v="q8_0", flash_attn=True)
    assert kv_cells(model, q8) == (512, 512)
    assert layer_kv_bytes(model, q8, 1) == 2 * (34 * 512)


def test_per_layer_kv_heads_and_transposed_v_padding(tmp_path):
    p = llama_header(n_layer=2, n_embd=64, n_head=4, n_head_kv=2)
    p.kvs = [e for e in p.kvs if b"head_count_kv" not in e]
    p.kvs.append(kv("llama.attention.head_count_kv", ARRAY, (I32, [2, 1])))
    path = tmp_path / "kv.gguf"
    path.write_bytes(p.build())
    model = read_model(path)
    s = Settings(n_ctx=256)
    # Layer 1 has one KV head: K = 16 values per cell; V without flash attention is padded to the
    # widest layer (32 values), with flash attention it is 16.
    assert layer_kv_bytes(model, s, 1) == 16 * 2 * 256 + 32 * 2 * 256
    assert layer_kv_bytes(model, Settings(n_ctx=256, flash_attn=True), 1) == 16 * 2 * 256 * 2


def test_sliding_window_cache_only_without_swa_full(tmp_path):
    p = llama_header(n_layer=6)
    p.kvs = [e for e in p.kvs if b"general.architecture" not in e and not e[8:].startswith(b"llama.")]
    p.kvs.insert(0, kv("general.architecture", STRING, "gemma3"))
    for key, value in (("block_count", 6), ("embedding_length", 64), ("attention.head_count", 4),
                       ("attention.head_count_kv", 2), ("attention.sliding_window", 100)):  # fmt: skip
        p.kvs.append(kv(f"gemma3.{key}", U32, value))
    path = tmp_path / "g.gguf"
    path.write_bytes(p.build())
    model = read_model(path)
    assert kv_cells(model, Settings(n_ctx=8192)) == (8192, 8192)  # swa_full is llama.cpp's default
    # pad(min(8192, 100 + 512), 256) = 768 cells for sliding-window layers.
    assert kv_cells(model, Settings(n_ctx=8192, swa_full=False)) == (8192, 768)
    small = Settings(n_ctx=8192, swa_full=False)
    assert layer_kv_bytes(model, small, 0) == 2 * 32 * 2 * 768  # layer 0 slides
    assert layer_kv_bytes(model, small, 5) == 2 * 32 * 2 * 8192  # layer 5 is global


def test_weights_add_up_and_tied_embeddings_are_duplicated(tmp_path):
    model = _model(tmp_path, n_layer=4)
    plan = plan_memory(model, ["A", "B"], ["RPC", "RPC"], [1, 1], Settings(n_ctx=256), Placement("layer", -1, (0.6, 0.4)))
    total = sum(d.weights_bytes for d in plan.devices) + plan.host.weights_bytes
    assert total == model.total_bytes
    assert plan.devices[0].weights_bytes == sum(model.blocks[i].n_bytes for i in range(3))
    assert plan.devices[1].weights_bytes == model.blocks[3].n_bytes + model.output.n_bytes
    assert plan.host.weights_bytes == model.input.n_bytes
    # Without output.weight the output layer's device gets a copy of token_embd.
    p = llama_header(n_layer=4)
    p.tensors = [t for t in p.tensors if t[0] != "output.weight"]
    path = tmp_path / "tied.gguf"
    path.write_bytes(p.build())
    tied = read_model(path)
    plan = plan_memory(tied, ["A", "B"], ["RPC", "RPC"], [1, 1], Settings(n_ctx=256), Placement("layer", -1, (0.6, 0.4)))
    assert plan.devices[1].weights_bytes == tied.blocks[3].n_bytes + tied.output.n_bytes + tied.input.n_bytes


def test_cuda_pads_quantized_rows(tmp_path):
    model = _model(tmp_path, n_layer=1, n_embd=64)
    cpu = plan_memory(model, ["A"], ["RPC"], [1], Settings(n_ctx=256), Placement("none", -1, ()))
    cuda = plan_memory(model, ["A"], ["CUDA"], [1], Settings(n_ctx=256), Placement("none", -1, ()))
    # blk.0.ffn_up is Q8_0 with rows of 64 values: CUDA pads it by (512 - 64) values once.
    assert cuda.devices[0].weights_bytes - cpu.devices[0].weights_bytes == (512 - 64) // 32 * 34


def test_kv_stays_on_the_host_without_kv_offload(tmp_path):
    model = _model(tmp_path, n_layer=2)
    plan = plan_memory(model, ["A"], ["RPC"], [1], Settings(n_ctx=256, offload_kqv=False), Placement("none", -1, ()))
    assert plan.devices[0].kv_bytes == 0
    assert plan.host.kv_bytes == sum(layer_kv_bytes(model, Settings(n_ctx=256), il) for il in range(2))


def test_pipeline_parallelism_only_for_full_multi_device_layer_splits(tmp_path):
    model = _model(tmp_path, n_layer=4)
    s = Settings(n_ctx=256)
    assert plan_memory(model, ["A", "B"], ["RPC"] * 2, [1, 1], s, Placement("layer", -1, (0.5, 0.5))).pipeline_parallel
    assert not plan_memory(model, ["A", "B"], ["RPC"] * 2, [1, 1], s, Placement("layer", 3, (0.5, 0.5))).pipeline_parallel
    assert not plan_memory(model, ["A", "B"], ["RPC"] * 2, [1, 1], s, Placement("none", -1, ())).pipeline_parallel


def test_cuda_devices_also_hold_the_driver_context_and_cublas(header_only_model, tiny_model):
    """Measured on an H200: NVML's used memory exceeded llama.cpp's buffers by 692 MiB without
    flash attention and 598 MiB with it (no cuBLAS call); the runtime counts in the total but not
    in the buffers a run compares with llama.cpp's log. Only CUDA devices (and size-only GPUs,
    taken for CUDA) that hold something get it; RPC workers' contexts are on their own machines."""
    from gpusplit.planning.memory import CUBLAS_BYTES, CUDA_BLOCK_KERNELS_BYTES, CUDA_CONTEXT_BYTES

    quantized = read_model(header_only_model("llama-3.1-8b"))
    split = Placement("layer", -1, (0.5, 0.5))
    plan = plan_memory(quantized, ["CUDA0", "RPC0"], ["CUDA", "RPC"], [2**40] * 2, Settings(n_ctx=4096), split)
    cuda, rpc = plan.devices
    assert cuda.runtime_bytes == CUDA_CONTEXT_BYTES + CUDA_BLOCK_KERNELS_BYTES + CUBLAS_BYTES == 692 * 2**20
    assert rpc.runtime_bytes == 0
    assert cuda.planned_bytes == cuda.buffer_bytes + cuda.runtime_bytes and plan.host.runtime_bytes == 0
    fa = plan_memory(quantized, ["CUDA0"], ["CUDA"], [2**40], Settings(n_ctx=4096, flash_attn=True), Placement("none", -1, ()))
    assert fa.devices[0].runtime_bytes == 598 * 2**20
    # float weights go through cuBLAS even with flash attention
    f16 = read_model(tiny_model("dense-f16"))
    fa16 = plan_memory(f16, ["CUDA0"], ["CUDA"], [2**40], Settings(n_ctx=256, flash_attn=True), Placement("none", -1, ()))
    assert fa16.devices[0].runtime_bytes == 692 * 2**20
    # no block offloaded: the GPU runs the CPU's prompt batches with a bare context (524 MiB)
    none = plan_memory(quantized, ["CUDA0"], ["CUDA"], [2**40], Settings(n_ctx=4096), Placement("none", 0, ()))
    assert none.devices[0].runtime_bytes == 524 * 2**20
    # a device that holds nothing opens no context
    idle = plan_memory(
        quantized, ["CUDA0", "CUDA1"], ["CUDA", "CUDA"], [2**40] * 2, Settings(n_ctx=4096), Placement("none", -1, (), 0)
    )
    assert [d.runtime_bytes for d in idle.devices] == [692 * 2**20, 0]


def test_a_gpu_runs_the_prompt_batches_of_the_cpu_blocks(header_only_model):
    """Partial offload with a CUDA device: llama.cpp's scheduler sends ops on host weights of 32
    tokens or more to the GPU, so the CPU's compute buffer holds only its inputs. Measured on an
    H200 (Llama-3.1-8B Q4_K_M, ctx 4096, 16 of 33 layers offloaded): CPU 29,370,614 bytes, CUDA0
    318,767,104. Over RPC (no offload_op) the CPU computes its own blocks."""
    model = read_model(header_only_model("llama-3.1-8b"))
    partial = Placement("none", 16, ())
    cuda = plan_memory(model, ["CUDA0"], ["CUDA"], [2**40], Settings(n_ctx=4096), partial)
    assert cuda.host.compute_bytes == pytest.approx(29_370_614, rel=0.01)
    assert cuda.devices[0].compute_bytes == pytest.approx(318_767_104, rel=0.01)
    full = plan_memory(model, ["CUDA0"], ["CUDA"], [2**40], Settings(n_ctx=4096), Placement("none", 33, ()))
    assert full.host.compute_bytes == cuda.host.compute_bytes  # the CPU keeps the same inputs
    rpc = plan_memory(model, ["RPC0"], ["RPC"], [2**40], Settings(n_ctx=4096), partial)
    assert rpc.host.compute_bytes > 10 * cuda.host.compute_bytes  # it runs its blocks itself
    # No block offloaded: the GPU still runs the prompt batches, the output matrix uploaded whole
    # next to the logits (llama.cpp's log: 702,000,660 bytes)
    none = plan_memory(model, ["CUDA0"], ["CUDA"], [2**40], Settings(n_ctx=4096), Placement("none", 0, ()))
    assert none.devices[0].compute_bytes == pytest.approx(702_000_660, rel=0.001)
    assert none.host.compute_bytes == cuda.host.compute_bytes
    # a batch below 32 tokens stays on the CPU
    small = plan_memory(model, ["CUDA0"], ["CUDA"], [2**40], Settings(n_ctx=4096, n_ubatch=16, n_batch=16), partial)
    assert small.host.compute_bytes > cuda.host.compute_bytes / 10
