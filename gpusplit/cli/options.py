"""Options that plan, run and bench share (declared once, so their help cannot drift), and the
one path from those options to a Plan through the library."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, List, Optional, overload

import typer

from ..base.errors import InputError
from . import output
from .lazy import lazy_module

if TYPE_CHECKING:
    from .. import api, sources
    from ..api import Request
    from ..devices.inventory import Inventory
    from ..gguf.model import ModelInfo
    from ..planning.planner import Plan
else:
    api, sources = lazy_module("gpusplit.api"), lazy_module("gpusplit.sources")


def finite(value: float | None) -> float | None:
    """A float option's check that typer's range leaves out: NaN passes every comparison, and an
    infinite time limit is no limit."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


Model = Annotated[
    Optional[str],
    typer.Argument(
        metavar="MODEL",
        help="GGUF file or http(s) URL (first shard of a split model). Default: the demo model.",
        show_default=False,
    ),
]
Gpu = Annotated[
    Optional[List[str]],
    typer.Option(
        "--gpu",
        metavar="CARD",
        help='Plan for GPUs you do not have: 24GiB, "RTX 4090", 16GiB@448GB/s, 2xA100-80GB (repeatable; or GPUSPLIT_GPU, comma-separated).',
    ),
]
DevicesFile = Annotated[
    Optional[str],
    typer.Option("--devices-file", metavar="FILE", help="Plan for the devices in a `gpusplit devices --json` file."),
]
Rpc = Annotated[
    Optional[List[str]],
    typer.Option("--rpc", metavar="HOST:PORT", envvar="GPUSPLIT_RPC", help="RPC workers host:port[,host:port]."),
]
Timeout = Annotated[
    float,
    typer.Option("--timeout", metavar="SECONDS", min=0.1, max=600, callback=finite, help="Seconds to wait for each RPC worker."),
]
Ctx = Annotated[
    Optional[int],
    typer.Option("--ctx", "-c", metavar="TOKENS", help="Context size in tokens (default 4096, or the model's limit if smaller)."),
]
Batch = Annotated[int, typer.Option("--batch", "-b", metavar="N", min=1, max=1 << 20, help="Logical batch size (n_batch).")]
Ubatch = Annotated[int, typer.Option("--ubatch", "-ub", metavar="N", min=1, max=1 << 20, help="Physical batch size (n_ubatch).")]
Parallel = Annotated[int, typer.Option("--parallel", "-np", metavar="N", min=1, max=256, help="Parallel sequences (n_seq_max).")]
Users = Annotated[
    Optional[int],
    typer.Option(
        "--users",
        metavar="N",
        min=1,
        max=256,
        help="Plan a server for N users decoding together: N slots, candidates ranked by all users' generation, "
        "and replicas (one llama-server per device that holds the model) weighed against one server.",
    ),
]
KvType = Annotated[
    Optional[str], typer.Option("--kv-type", metavar="TYPE", help="KV cache type for K and V: f16, q8_0, q4_0, ...")
]
KvTypeK = Annotated[Optional[str], typer.Option("--kv-type-k", metavar="TYPE", help="K cache type (overrides --kv-type).")]
KvTypeV = Annotated[
    Optional[str],
    typer.Option("--kv-type-v", metavar="TYPE", help="V cache type (overrides --kv-type; quantized needs --flash-attn)."),
]
FlashAttn = Annotated[
    bool, typer.Option("--flash-attn/--no-flash-attn", "-fa", help="Flash attention (default off, as in llama-cpp-python).")
]
SwaFull = Annotated[
    bool, typer.Option("--swa-full/--no-swa-full", help="Full-size cache for sliding-window layers (llama.cpp's default).")
]
Ngl = Annotated[
    Optional[int],
    typer.Option(
        "--ngl", "-ngl", metavar="N", help="Layers on the GPUs, counting the output layer (-1: all). Evaluated as given."
    ),
]
Mode = Annotated[
    Optional[str], typer.Option("--mode", "-sm", metavar="MODE", help="Split mode: auto (default), none, layer, row or tensor.")
]
Split = Annotated[
    Optional[str],
    typer.Option("--split", "-ts", metavar="SHARES", help="Proportions per device, e.g. 0.75,0.25. Evaluated as given."),
]
MainGpu = Annotated[
    Optional[int],
    typer.Option("--main-gpu", "-mg", metavar="INDEX", help="Device index for single-GPU mode (default: the best GPU)."),
]
NCpuMoe = Annotated[
    Optional[int], typer.Option("--n-cpu-moe", metavar="N", help="Keep the experts of the first N blocks on the CPU (MoE).")
]
Spread = Annotated[
    bool, typer.Option("--spread", help="Give every GPU at least one layer, even when one GPU would hold the model.")
]
Reserve = Annotated[
    Optional[str],
    typer.Option(
        "--reserve", metavar="SIZE", envvar="GPUSPLIT_RESERVE", help="Memory kept free per device (default 512MiB; 0 for --gpu)."
    ),
]
Ram = Annotated[
    Optional[str], typer.Option("--ram", metavar="SIZE", help="Host memory to plan with instead of this machine's free RAM.")
]
CpuBandwidth = Annotated[
    Optional[str],
    typer.Option("--cpu-bandwidth", metavar="RATE", help="Host memory bandwidth for speed predictions (default 60GB/s)."),
]
Threads = Annotated[
    Optional[int],
    typer.Option(
        "--threads",
        "-t",
        metavar="N",
        min=1,
        max=1024,
        help="CPU threads (default: $GPUSPLIT_THREADS, else every CPU this process may run on).",
    ),
]
Lora = Annotated[
    Optional[list[str]],
    typer.Option(
        "--lora",
        metavar="FILE",
        help="A LoRA adapter loaded with the model, its bytes where the layers it adapts go (repeatable).",
    ),
]
Draft = Annotated[
    Optional[str],
    typer.Option("--draft", "-md", metavar="FILE", help="A draft model for speculative decoding, planned beside the model."),
]
NglDraft = Annotated[
    int, typer.Option("--ngl-draft", "-ngld", metavar="N", help="The draft model's layers to offload (-1: all).")
]
Mmproj = Annotated[
    Optional[str],
    typer.Option("--mmproj", metavar="FILE", help="A multimodal projector (mmproj-*.gguf), planned on the first GPU."),
]
NoRepack = Annotated[
    bool,
    typer.Option(
        "--no-repack",
        "-nr",
        help="Keep the host's weights in the mapped file only: no AMX / CPU_REPACK copies (llama.cpp's --no-repack).",
    ),
]
AllowCtxOverflow = Annotated[bool, typer.Option("--allow-ctx-overflow", help="Allow --ctx above the model's trained context.")]


def resolve_model(model: str | None) -> str:
    """The location to read; with no MODEL, the demo model (generated on first use) and a note."""
    if model:
        return model
    path = api.demo_model_path()
    output.message(f"no MODEL given: using the built-in demo model {path}")
    return path


def read_model(location: str) -> ModelInfo:
    """The library's read_model, with a progress line on stderr while a remote header downloads."""
    if not api.is_remote(location):
        return api.read_model(location)
    fetched = [0]

    def on_fetch(total: int) -> None:
        fetched[0] = total
        output.fetch_progress(total)

    info = api.read_model(location, on_fetch=on_fetch, on_note=output.message)
    output.end_progress_line()
    output.message(f"read the remote header: {output.format_bytes(fetched[0])} fetched ({fetched[0]:,} bytes)")
    return info


@overload
def local_model(location: str, command: str) -> str: ...
@overload
def local_model(location: None, command: str) -> None: ...
def local_model(location: str | None, command: str) -> str | None:
    """The model `run`/`bench` load: a local file as given; a hf:// or ollama:// name downloaded
    first (Hugging Face's own progress bar and cache; Ollama blobs into gpusplit's cache)."""
    if location is None:
        return None
    source = sources.source_of(location)
    if source.kind == "url":
        raise InputError(f"{command} needs a local model file, not a URL", "download it first; plan and inspect read URLs")
    if not source.remote:
        return location
    output.message(f"{command}: downloading {location} (resumable; cached)")
    path = api.download_model(location, on_progress=output.download_progress)
    output.end_progress_line()
    output.message(f"{command}: {location} is {path}")
    return path


@dataclass(frozen=True)
class DeviceOptions:
    """The options that say which devices to plan for (GPUSPLIT_GPU, comma-separated since card
    names hold spaces, stands in for --gpu)."""

    gpu: tuple[str, ...] = ()
    devices_file: str | None = None
    rpc: tuple[str, ...] = ()
    timeout: float = 3.0
    ram: str | None = None

    def detect(self, threads: int | None = None) -> Inventory:
        gpu = list(self.gpu)
        if not gpu and not self.devices_file and os.environ.get("GPUSPLIT_GPU"):
            gpu = [g.strip() for g in os.environ["GPUSPLIT_GPU"].split(",") if g.strip()]
        return api.detect_devices(
            rpc=list(self.rpc), gpus=gpu, devices_file=self.devices_file, timeout=self.timeout, ram=self.ram, threads=threads
        )


def request_from(
    *,
    ctx: int | None = None,
    batch: int = 512,
    ubatch: int = 512,
    parallel: int = 1,
    users: int | None = None,
    kv_type: str | None = None,
    kv_type_k: str | None = None,
    kv_type_v: str | None = None,
    flash_attn: bool = False,
    swa_full: bool = True,
    ngl: int | None = None,
    mode: str | None = None,
    split: str | None = None,
    main_gpu: int | None = None,
    n_cpu_moe: int | None = None,
    spread: bool = False,
    reserve: str | None = None,
    cpu_bandwidth: str | None = None,
    allow_ctx_overflow: bool = False,
    lora: Sequence[str] | None = None,
    draft: str | None = None,
    ngl_draft: int = -1,
    mmproj: str | None = None,
    no_repack: bool = False,
    threads: int | None = None,
) -> Request:
    """The command line's options as the library's one Request: the text of sizes, rates, shares
    and types parsed here (a bad value names its flag), everything else checked by the Request."""
    both = api.kv_type(kv_type, "kv_type") if kv_type is not None else None
    return api.Request(
        n_ctx=ctx,
        n_batch=batch,
        n_ubatch=ubatch,
        n_parallel=parallel,
        users=users,
        type_k=api.kv_type(kv_type_k, "type_k") if kv_type_k is not None else both,
        type_v=api.kv_type(kv_type_v, "type_v") if kv_type_v is not None else both,
        flash_attn=flash_attn,
        swa_full=swa_full,
        split_mode=api.split_mode(mode),
        tensor_split=None if split is None else api.split_shares(split),
        n_gpu_layers=ngl,
        main_gpu=main_gpu,
        n_cpu_moe=n_cpu_moe,
        spread=spread,
        reserve=None if reserve is None else api.parse_sizes(reserve, "reserve"),
        cpu_bandwidth=None if cpu_bandwidth is None else api.parse_rate(cpu_bandwidth, "cpu_bandwidth"),
        allow_ctx_overflow=allow_ctx_overflow,
        lora=tuple(lora or ()),
        draft=draft,
        n_gpu_layers_draft=ngl_draft,
        mmproj=mmproj,
        no_repack=no_repack,
        n_threads=threads,
    )


def plan_from(
    model: str | None, devices: DeviceOptions, request: Request, *, measure: bool = False, runnable: str | None = None
) -> Plan:
    """The model, the devices and the request -> gpusplit.plan(). `runnable` names a command that
    must load the weights: an incomplete file stops here."""
    info = read_model(resolve_model(model))
    if runnable:
        api.require_complete(info, runnable)
    return api.plan(info, devices.detect(request.n_threads), request, measure=measure)
