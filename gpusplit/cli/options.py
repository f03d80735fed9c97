"""Options that plan, run and bench share: declared once, so their help cannot drift."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

Model = Annotated[
    Optional[str],
    typer.Argument(help="GGUF file or http(s) URL (first shard of a split model). Default: the demo model.", show_default=False),
]
Gpu = Annotated[
    Optional[List[str]],
    typer.Option(
        "--gpu",
        help='Plan for hypothetical GPUs: 24GiB, "RTX 4090", 16GiB@448GB/s, 2xA100-80GB (repeatable; or GPUSPLIT_GPU, comma-separated).',
    ),
]
DevicesFile = Annotated[
    Optional[str], typer.Option("--devices-file", help="Plan for the devices in a `gpusplit devices --json` file.")
]
Rpc = Annotated[Optional[List[str]], typer.Option("--rpc", envvar="GPUSPLIT_RPC", help="RPC workers host:port[,host:port].")]
Timeout = Annotated[float, typer.Option("--timeout", min=0.1, max=600, help="Seconds to wait for each RPC worker.")]
Ctx = Annotated[
    Optional[int], typer.Option("--ctx", "-c", help="Context size in tokens (default 4096, or the model's limit if smaller).")
]
Batch = Annotated[int, typer.Option("--batch", "-b", min=1, max=1 << 20, help="Logical batch size (n_batch).")]
Ubatch = Annotated[int, typer.Option("--ubatch", "-ub", min=1, max=1 << 20, help="Physical batch size (n_ubatch).")]
Parallel = Annotated[int, typer.Option("--parallel", "-np", min=1, max=256, help="Parallel sequences (n_seq_max).")]
KvType = Annotated[Optional[str], typer.Option("--kv-type", help="KV cache type for K and V: f16, q8_0, q4_0, ...")]
KvTypeK = Annotated[Optional[str], typer.Option("--kv-type-k", help="K cache type (overrides --kv-type).")]
KvTypeV = Annotated[
    Optional[str], typer.Option("--kv-type-v", help="V cache type (overrides --kv-type; quantized needs --flash-attn).")
]
FlashAttn = Annotated[
    bool, typer.Option("--flash-attn/--no-flash-attn", "-fa", help="Flash attention (llama-cpp-python's default: off).")
]
SwaFull = Annotated[
    bool, typer.Option("--swa-full/--no-swa-full", help="Full-size cache for sliding-window layers (llama.cpp's default).")
]
Ngl = Annotated[
    Optional[int],
    typer.Option("--ngl", "-ngl", help="Layers on the GPUs, counting the output layer (-1: all). Evaluated as given."),
]
Mode = Annotated[Optional[str], typer.Option("--mode", "-sm", help="Split mode: auto (default), none, layer, row or tensor.")]
Split = Annotated[
    Optional[str], typer.Option("--split", "-ts", help="Proportions per device, e.g. 0.75,0.25. Evaluated as given.")
]
MainGpu = Annotated[
    Optional[int], typer.Option("--main-gpu", "-mg", help="Device index for single-GPU mode (default: the best GPU).")
]
NCpuMoe = Annotated[Optional[int], typer.Option("--n-cpu-moe", help="Keep the experts of the first N blocks on the CPU (MoE).")]
Spread = Annotated[bool, typer.Option("--spread", help="Use every GPU even when one would do (FavorDistributedInference).")]
Reserve = Annotated[
    Optional[str],
    typer.Option(
        "--reserve", envvar="GPUSPLIT_RESERVE", help="Margin kept free per device (default 512MiB; 0 for hypothetical devices)."
    ),
]
Ram = Annotated[Optional[str], typer.Option("--ram", help="Host memory to plan with instead of this machine's free RAM.")]
CpuBandwidth = Annotated[
    Optional[str], typer.Option("--cpu-bandwidth", help="Host memory bandwidth for speed predictions (default 60GB/s).")
]
AllowCtxOverflow = Annotated[bool, typer.Option("--allow-ctx-overflow", help="Allow --ctx above the model's trained context.")]


# The parameter names build_plan takes, in the order commands declare them.
PLAN_OPTIONS = (
    "model", "gpu", "devices_file", "rpc", "timeout", "ctx", "batch", "ubatch", "parallel", "kv_type", "kv_type_k",
    "kv_type_v", "flash_attn", "swa_full", "ngl", "mode", "split", "main_gpu", "n_cpu_moe", "spread", "reserve", "ram",
    "cpu_bandwidth", "allow_ctx_overflow",
)  # fmt: skip
