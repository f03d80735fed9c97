"""`gpusplit plan MODEL`: what each device will hold, which split to use, and the flags for it."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Annotated

import msgspec
import typer

from . import output
from .errors import EXIT_DOES_NOT_FIT
from .lazy import lazy_module
from .options import (
    AllowCtxOverflow,
    Batch,
    CpuBandwidth,
    Ctx,
    DeviceOptions,
    DevicesFile,
    Draft,
    FlashAttn,
    Gpu,
    KvType,
    KvTypeK,
    KvTypeV,
    Lora,
    MainGpu,
    Mmproj,
    Mode,
    Model,
    NCpuMoe,
    Ngl,
    NglDraft,
    NoRepack,
    Parallel,
    Ram,
    Reserve,
    Rpc,
    Split,
    Spread,
    SwaFull,
    Threads,
    Timeout,
    Ubatch,
    Users,
    plan_from,
    request_from,
)  # fmt: skip

if TYPE_CHECKING:
    from ..documents import models, render
    from ..documents.models import DraftDoc, PlanDoc, PlanHost, Predicted, ServerDoc, ServingDoc, WorkerCommand
else:
    models, render = lazy_module("gpusplit.documents.models"), lazy_module("gpusplit.documents.render")


def plan(
    model: Model = None,
    gpu: Gpu = None,
    devices_file: DevicesFile = None,
    rpc: Rpc = None,
    timeout: Timeout = 3.0,
    ctx: Ctx = None,
    batch: Batch = 512,
    ubatch: Ubatch = 512,
    parallel: Parallel = 1,
    users: Users = None,
    kv_type: KvType = None,
    kv_type_k: KvTypeK = None,
    kv_type_v: KvTypeV = None,
    flash_attn: FlashAttn = False,
    swa_full: SwaFull = True,
    ngl: Ngl = None,
    mode: Mode = None,
    split: Split = None,
    main_gpu: MainGpu = None,
    n_cpu_moe: NCpuMoe = None,
    lora: Lora = None,
    draft: Draft = None,
    ngl_draft: NglDraft = -1,
    mmproj: Mmproj = None,
    spread: Spread = False,
    reserve: Reserve = None,
    ram: Ram = None,
    cpu_bandwidth: CpuBandwidth = None,
    allow_ctx_overflow: AllowCtxOverflow = False,
    no_repack: NoRepack = False,
    threads: Threads = None,
    measure: Annotated[
        bool,
        typer.Option("--measure", help="Size compute buffers, fit and best context with llama.cpp's dry run (needs the engine)."),
    ] = False,
    check: Annotated[bool, typer.Option("--check", help="Exit 3 unless the model fits wholly on the GPUs.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document (schema gpusplit.plan/2).")] = False,
) -> int:
    """Plan how to split a model over the devices: memory per device, strategy, context, flags."""
    request = request_from(
        ctx=ctx, batch=batch, ubatch=ubatch, parallel=parallel, users=users, kv_type=kv_type, kv_type_k=kv_type_k, kv_type_v=kv_type_v,
        flash_attn=flash_attn, swa_full=swa_full, ngl=ngl, mode=mode, split=split, main_gpu=main_gpu, n_cpu_moe=n_cpu_moe,
        spread=spread, reserve=reserve, cpu_bandwidth=cpu_bandwidth, allow_ctx_overflow=allow_ctx_overflow, lora=lora,
        draft=draft, ngl_draft=ngl_draft, mmproj=mmproj, no_repack=no_repack, threads=threads,
    )  # fmt: skip
    devices = DeviceOptions(tuple(gpu or ()), devices_file, tuple(rpc or ()), timeout, ram)
    doc = render.plan_document(plan_from(model, devices, request, measure=measure))
    typed = msgspec.convert(doc, models.PlanDoc)  # what is printed is what --json says, read by its type
    for warning in typed.warnings:
        output.warn(warning.text)
    if json_output:
        output.emit_json(doc)
    else:
        print_plan(typed)
    if check and not (typed.fits and typed.all_on_gpu):
        if not json_output:
            output.message(f"--check: the model does not fit wholly on the GPUs ({_fits_text(typed)})")
        return EXIT_DOES_NOT_FIT
    return 0


def print_plan(doc: PlanDoc) -> None:
    """The plan for people: memory per device, the draft model's, the choice and why, the commands."""
    _print_memory(doc)
    if doc.draft is not None:
        _print_draft(doc.draft)
    _print_choice(doc)
    # Whole lines, never wrapped by a table, so that they can be copied and pasted.
    if doc.workers:
        _print_workers(doc, doc.workers)
    _print_launch(doc)
    if doc.serving is not None:
        _print_serving(doc.serving)
    if doc.alternatives:
        output.print_table(
            "alternatives",
            ["strategy", "mode", "ngl", "fits", "predicted t/s"],
            (
                (a.strategy, a.split_mode, str(a.n_gpu_layers), "yes" if a.fits else "no",
                 f"{a.predicted_tg_tps:.1f}" if a.predicted_tg_tps else "-")
                for a in doc.alternatives
            ),
        )  # fmt: skip


def _print_memory(doc: PlanDoc) -> None:
    fb = output.format_bytes
    everywhere: list[PlanHost] = [*doc.devices, doc.host]
    rows: list[tuple[str, ...]] = [
        (
            d.name if d.index is None else f"{d.index}: {d.name}",
            d.layers,
            fb(d.weights_bytes),
            fb(d.kv_bytes),
            fb(d.compute_bytes + d.output_bytes),
            fb(d.runtime_bytes),
            fb(d.planned_bytes),
            fb(d.free_bytes),
            ("" if d.headroom_bytes >= 0 else "-") + fb(abs(d.headroom_bytes)),
        )
        for d in everywhere
    ]
    model, s = doc.model, doc.settings
    title = (
        f"{model.name}: {output.format_count(model.params)} params, {fb(model.total_bytes)}; "
        f"ctx {s.n_ctx}, batch {s.n_batch}/{s.n_ubatch}, KV {s.type_k}/{s.type_v}, "
        f"flash attention {'on' if s.flash_attn else 'off'}"
    )
    headers = ["device", "layers", "weights", "KV", "compute", "runtime", "total", "free", "headroom"]
    if not any(d.runtime_bytes for d in doc.devices):
        # The driver's context and cuBLAS (CUDA devices): a column only where some device has them.
        rows = [row[:5] + row[6:] for row in rows]
        headers.remove("runtime")
    output.print_table(title, headers, rows, right=tuple(headers[2:]))
    shown = (d for d in everywhere if d.planned_bytes or d.index is not None)
    output.print_bars("memory", ((d.name, d.memory_parts(), d.free_bytes) for d in shown))


def _print_draft(draft: DraftDoc) -> None:
    fb = output.format_bytes
    output.print_table(
        f"draft model {draft.name} (n_gpu_layers {draft.n_gpu_layers}), beside the model",
        ["device", "weights", "KV", "compute", "total"],
        [
            (r.name, fb(r.weights_bytes), fb(r.kv_bytes), fb(r.compute_bytes), fb(r.planned_bytes))
            for r in [*draft.devices, draft.host]
            if r.planned_bytes
        ],
        right=("weights", "KV", "compute", "total"),
    )


def _print_choice(doc: PlanDoc) -> None:
    """The strategy, fit, context, score and predicted speed, with the reasons for them."""
    split = ",".join(f"{x:g}" for x in doc.tensor_split) or "-"
    measured = doc.compute_source == "measured"
    source = " (llama.cpp's dry run)" if measured else " (estimate)"
    strategy = f"{doc.strategy} (llama.cpp split mode {doc.split_mode}, n_gpu_layers {doc.n_gpu_layers}, split {split}"
    strategy += (f", main GPU {doc.main_gpu}" if doc.split_mode == "none" else "") + ")"
    fields = [
        ("strategy", strategy),
        ("fits", _fits_text(doc) + source),
        ("best context", f"{doc.best_ctx:,} tokens" + source),
        ("fit score", f"{doc.score:.2f}" + source),
        ("predicted", predicted_text(doc.predicted, doc.settings.n_ubatch)),
        ("compute", "measured by llama.cpp's dry run" if measured else "estimated (--measure runs llama.cpp's dry run)"),
    ]
    fields += [("why", reason.text) for reason in doc.reasons]
    if doc.predicted.basis != "measured":
        fields += [("speed from", note.text) for note in doc.predicted.assumptions]
    output.print_fields("plan", fields)


def _print_workers(doc: PlanDoc, workers: list[WorkerCommand]) -> None:
    output.line("start the RPC workers, each on its machine (gpusplit's, or llama.cpp's own):")
    for worker in workers:
        output.line("  " + shlex.join(worker.gpusplit) + "    # or: " + shlex.join(worker.llama_cpp))
    by_name = {d.name: d.endpoint for d in doc.devices}
    for name, sent in (doc.predicted.load or {}).items():
        cached = f", {sent.cached_seconds:.1f} s again from its cache" if sent.cached_seconds is not None else ""
        output.line(
            f"  at load {name} ({by_name.get(name)}) receives {output.format_bytes(sent.bytes)}: "
            f"{sent.seconds:.1f} s over its link{cached} ({doc.predicted.basis})"
        )


def _print_launch(doc: PlanDoc) -> None:
    """llama-server's line, and llama-cpp-python's (after the download it needs first, if any)."""
    output.line("run it with llama-server:")
    output.line("  " + shlex.join(["llama-server", *doc.llama_args]))
    output.line(
        "or from Python (llama-cpp-python), which loads a file on disk, so the download comes first:"
        if doc.python_downloads
        else "or from Python (llama-cpp-python):"
    )
    for part in doc.python_downloads:
        output.line(f"  import urllib.request; urllib.request.urlretrieve({part.url!r}, {part.path!r})")
    kwargs = doc.llama_cpp_python
    call = "llama_cpp.Llama.from_pretrained(" if kwargs.repo_id is not None else "llama_cpp.Llama("
    given = ((name, getattr(kwargs, name)) for name in kwargs.__struct_fields__)
    output.line("  " + call + ", ".join(f"{name}={value!r}" for name, value in given if value is not None) + ")")


def _print_serving(serving: ServingDoc) -> None:
    """N users: what they get from the plan's server, and from replicas; which wins; the commands."""

    def speeds(server: ServerDoc) -> str:
        if not server.tokens_per_s:
            return "speed unknown"
        first = f", first token in {server.first_token_s:.2f} s" if server.first_token_s else ""
        return (
            f"{server.tokens_per_s:,.1f} tokens/s together, {server.per_user_tokens_per_s or 0:,.1f} each ({server.users} "
            f"of {server.slots} slots){first}"
        )

    output.line(
        f"serving {serving.users} users (each at {serving.depth:,} tokens of context; a newcomer's prompt {serving.prompt_tokens} tokens):"
    )
    output.line(f"  one server on {', '.join(serving.server.devices)}: {speeds(serving.server)}")
    if not serving.replicas:
        output.line("  replicas: fewer than two devices hold the model alone")
        return
    together = serving.replicas_tokens_per_s
    output.line(f"  {len(serving.replicas)} replicas, users dealt round robin: {together or 0:,.1f} tokens/s together")
    for replica in serving.replicas:
        output.line(f"    {', '.join(replica.devices)}: {speeds(replica)}")
    better = "replicas" if serving.winner == "replicas" else "one server"
    output.line(f"  {better} serve them faster" + (f", by {serving.ratio:.2f}x" if serving.ratio else ""))
    output.line("  the replicas' servers (a balancer in front, round robin):")
    for replica in serving.replicas:
        output.line("    " + shlex.join(["llama-server", *replica.command]))


def predicted_text(pred: Predicted, n_ubatch: int) -> str:
    """'123.4 tokens/s generation (98.7-148.1), prompt 2,345 tokens/s (...); from measured devices'."""
    if not pred.tg_tokens_per_s:
        return "unknown"

    def span(pair: list[float] | None, fmt: str) -> str:
        return "" if pair is None else f" ({format(pair[0], fmt)}-{format(pair[1], fmt)})"

    text = f"{pred.tg_tokens_per_s:.1f} tokens/s generation{span(pred.tg_range, '.1f')}"
    if pred.pp_tokens_per_s:
        text += f", prompt {pred.pp_tokens_per_s:,.0f} tokens/s{span(pred.pp_range, ',.0f')} in batches of {n_ubatch}"
    basis = {"measured": "from measured devices", "catalog": "from catalog figures", "assumed": "partly assumed"}[pred.basis]
    return f"{text}; {basis}"


def _fits_text(doc: PlanDoc) -> str:
    if not doc.fits:
        return "does not fit these devices"
    if doc.all_on_gpu:
        return "yes, wholly on the GPUs"
    if doc.strategy == "cpu-only":
        return "yes, on the CPU"
    if doc.n_cpu_moe and doc.model.n_expert:
        n = doc.n_cpu_moe
        blocks = "block 0" if n == 1 else f"blocks 0-{n - 1}"
        return f"yes, with the experts of {blocks} on the CPU (--n-cpu-moe {n}); not wholly on the GPUs"
    return "yes, with part of the model on the CPU; not wholly on the GPUs"
