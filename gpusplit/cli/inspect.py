"""`gpusplit inspect MODEL`: what a GGUF header says, without reading the weights."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from . import output
from .lazy import lazy_module
from .options import Model, read_model, resolve_model

if TYPE_CHECKING:
    from ..documents import render
else:
    render = lazy_module("gpusplit.documents.render")


def inspect(
    model: Model = None,
    json_output: bool = typer.Option(False, "--json", help="Print one JSON document (schema gpusplit.inspect/1)."),
    tensors: bool = typer.Option(False, "--tensors", help="Also list every tensor (name, shape, type, bytes)."),
) -> int:
    """Describe a model from its GGUF header: hyperparameters and bytes per layer."""
    info = read_model(resolve_model(model))
    doc = render.inspect_document(info, tensors=tensors)
    if json_output:
        output.emit_json(doc)
        return 0
    _print_human(info, doc["model"], tensors)
    return 0


def _uniform(values: list[int]) -> str:
    return str(values[0]) if len(set(values)) == 1 else f"{min(values)}-{max(values)} (per layer)"


def _type_mix(types: dict[str, int]) -> str:
    total = sum(types.values()) or 1
    return ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in types.items())


def _print_human(info, doc: dict, tensors: bool) -> None:
    fb = output.format_bytes
    status = "complete" if info.complete else f"header only / truncated: {fb(info.missing_bytes)} of tensor data missing"
    fields = [
        ("name", info.name),
        ("architecture", info.architecture),
        ("file type", info.file_type or "-"),
        ("parameters", f"{output.format_count(info.n_params)} ({info.n_params:,})"),
        ("weights", f"{fb(info.total_bytes)} ({info.total_bytes:,} bytes)"),
        ("file", f"GGUF v{info.gguf_version}, {info.n_shards} shard(s), header {fb(info.header_bytes)}, {status}"),
        ("layers", str(info.n_layer)),
        ("embedding", str(info.n_embd)),
        ("heads", _uniform(doc["n_head"])),
        ("KV heads", _uniform(doc["n_head_kv"])),
        ("head dim (k/v)", f"{info.head_dim_k}/{info.head_dim_v}"),
        ("feed-forward", _uniform(doc["n_ff"])),
        ("context length", str(info.context_length) if info.context_length else "-"),
        ("vocabulary", f"{info.n_vocab:,} tokens" + (f", {info.n_merges:,} merges" if info.n_merges else "")),
    ]
    if info.n_expert:
        fields.append(("experts", f"{info.n_expert} ({info.n_expert_used} used per token)"))
    if info.sliding_window:
        fields.append(("sliding window", f"{info.sliding_window} tokens on {len(doc['swa_layers'])} of {info.n_layer} layers"))
    if info.chat_template_chars is not None:
        fields.append(("chat template", f"{info.chat_template_chars:,} characters (not rendered)"))
    output.print_fields(info.path, fields)
    rows = [
        (layer["name"], str(layer["tensors"]), fb(layer["bytes"]), f"{layer['bytes']:,}", _type_mix(layer["types"]))
        for layer in doc["layers"]
    ]
    output.print_table(None, ["layer", "tensors", "size", "bytes", "types"], rows, right=("tensors", "size", "bytes"))
    if tensors:
        output.print_table(
            None,
            ["tensor", "shape", "type", "bytes"],
            ((t["name"], "x".join(map(str, t["shape"])), t["type"], f"{t['bytes']:,}") for t in doc["tensors"]),
            right=("bytes",),
        )
