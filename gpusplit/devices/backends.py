"""llama.cpp's backends and the properties gpusplit's rules depend on, in one table (read from
ggml's backends as vendored in llama-cpp-python 0.3.36). A GPU given only by its size or a catalog
name (--gpu 24GiB, --gpu "RTX 4090") is "hypothetical" and taken for the usual case, CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

# ggml-cuda's offload_op (and the others that copy it): an op of at least this many tokens on
# host-resident weights runs on the GPU, the weights copied over for it
OP_OFFLOAD_MIN_BATCH = 32


@dataclass(frozen=True)
class Backend:
    name: str
    gpu: bool = True  # a discrete accelerator gpusplit probes as a GPU
    # its host buffer type comes before the CPU's extra buffer types (AMX, CPU_REPACK) in llama.cpp's
    # CPU buffer list: with mmap the host weights it claims stay in the mapped file, nothing copied
    host_buffer: bool = True
    op_offload: bool = True  # takes over big batches' matmuls on host-resident weights (offload_op)
    runtime_measured: bool = False  # what the driver holds outside llama.cpp's buffers is known (memory.py)


BACKENDS = {
    b.name: b
    for b in (
        Backend("CUDA", runtime_measured=True),
        Backend("ROCm"),  # ggml's HIP backend registers under this name
        Backend("MUSA"),
        Backend("Vulkan"),
        Backend("SYCL"),
        Backend("CANN"),
        Backend("Metal", host_buffer=False, op_offload=False),  # unified memory: no host buffer, no offload_op
        Backend("hypothetical", gpu=False, runtime_measured=True),
        Backend("RPC", gpu=False, host_buffer=False, op_offload=False),
        Backend("CPU", gpu=False, host_buffer=False, op_offload=False),
    )
}
UNKNOWN = Backend("unknown", gpu=False, host_buffer=False, op_offload=False)


def backend(name: str) -> Backend:
    """The properties of a backend by its ggml name (an unknown one has none of them)."""
    return BACKENDS.get(name, UNKNOWN)
