"""How to launch a plan: its llama.cpp parameters (engine/params.py's EngineParams), llama-server's
flags, and the commands that start its RPC workers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..devices.rpc import is_loopback, parse_endpoint
from ..engine.params import EngineParams
from ..sources import projector_flags

if TYPE_CHECKING:
    from .planner import Candidate, DraftRequest, Plan


def engine_params(plan: Plan, candidate: Candidate | None = None, n_ctx: int | None = None) -> EngineParams:
    """The llama.cpp parameters of a candidate of the plan (the best one by default)."""
    c = candidate or plan.best
    model = plan.model
    p = c.placement
    ngl = model.n_layer + 1 if p.n_gpu_layers < 0 else p.n_gpu_layers
    # An explicit split makes the load reproducible (llama.cpp's default follows free memory).
    split = tuple(p.tensor_split) if c.llama_mode != "none" else ()
    rpc = tuple(dict.fromkeys(d.endpoint for d in plan.devices if d.endpoint))
    settings = c.settings
    return EngineParams(
        model_path=model.path,
        model_url=model.source_url,
        rpc=rpc,
        n_gpu_layers=ngl if plan.devices else 0,
        split_mode=c.llama_mode,
        main_gpu=p.main_gpu,
        tensor_split=split,
        n_ctx=n_ctx or settings.n_ctx,
        n_batch=settings.n_batch,
        n_ubatch=settings.n_ubatch,
        n_seq_max=settings.n_parallel,
        type_k=settings.type_k,
        type_v=settings.type_v,
        flash_attn=settings.flash_attn,
        swa_full=settings.swa_full,
        offload_kqv=settings.offload_kqv,
        n_cpu_moe=p.n_cpu_moe,
        lora=tuple(a.path for a in plan.inputs.adapters),
        no_repack=settings.no_repack,
        n_threads=plan.request.n_threads,
    )


def draft_layers(draft: DraftRequest) -> int:
    """The draft model's -ngld: its offloaded layers, the output layer counted (-1: all)."""
    return draft.model.n_layer + 1 if draft.n_gpu_layers < 0 else draft.n_gpu_layers


def llama_server_args(plan: Plan) -> list[str]:
    """llama-server's flags for the plan's best candidate: the load's own (engine_params), then the
    multimodal projector and the speculative-decoding draft model it counted."""
    args = engine_params(plan).cli_flags()
    if plan.inputs.projector is not None:
        args += projector_flags(plan.inputs.projector.path)
    if plan.draft is not None and plan.inputs.draft is not None:
        args += ["-md", plan.inputs.draft.model.path, "-ngld", str(draft_layers(plan.inputs.draft))]
    return args


def worker_commands(plan: Plan) -> list[dict[str, Any]]:
    """How to start each RPC worker the plan uses, on its own machine: gpusplit's worker and
    llama.cpp's own server (`ggml-rpc-server`, `rpc-server` in older builds), bound to the address
    the plan reaches it at. Neither has authentication: a non-loopback address is for a trusted
    network (gpusplit asks for --allow-remote). Remote ones keep a weight cache (--cache, -c)."""
    commands = []
    for endpoint in engine_params(plan).rpc:
        host, port = parse_endpoint(endpoint)
        # Across machines, the weight cache: a second load reads the weights from the worker's disk.
        local = is_loopback(host)
        commands.append({
            "endpoint": endpoint,
            "gpusplit": ["gpusplit", "worker", "--host", host, "--port", str(port), *([] if local else ["--allow-remote", "--cache"])],
            "llama_cpp": ["ggml-rpc-server", "-H", host, "-p", str(port), *([] if local else ["-c"])],
        })  # fmt: skip
    return commands
