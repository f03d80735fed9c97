"""`gpusplit tune MODEL`: the fastest configuration that fits, found by measurement within a budget."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from . import output
from .errors import CLIError
from .lazy import lazy_module
from .options import (
    Ctx,
    DeviceOptions,
    DevicesFile,
    FlashAttn,
    Gpu,
    KvType,
    Model,
    NoRepack,
    Ram,
    Rpc,
    Timeout,
    Users,
    finite,
    local_model,
    read_model,
    request_from,
    resolve_model,
)

if TYPE_CHECKING:
    from .. import api
    from ..base import files, journal
    from ..documents import read, render
else:
    api, journal = lazy_module("gpusplit.api"), lazy_module("gpusplit.base.journal")
    files = lazy_module("gpusplit.base.files")
    read, render = lazy_module("gpusplit.documents.read"), lazy_module("gpusplit.documents.render")


def tune(
    model: Model = None,
    gpu: Gpu = None,
    devices_file: DevicesFile = None,
    rpc: Rpc = None,
    timeout: Timeout = 3.0,
    ram: Ram = None,
    ctx: Ctx = None,
    kv_type: KvType = None,
    flash_attn: FlashAttn = False,
    budget: Annotated[str, typer.Option("--budget", metavar="TIME", help="Stop after this long, e.g. 120s, 5m.")] = "120s",
    objective: Annotated[
        str, typer.Option("--objective", metavar="tg|pp|mixed", help="Generation, prompt, or a 512-in/128-out chat turn.")
    ] = "tg",
    output_file: Annotated[
        Optional[str], typer.Option("--output", metavar="FILE", help="Write the winner as a gpusplit.plan/2 document.")
    ] = None,
    trials: Annotated[
        Optional[str], typer.Option("--trials", metavar="FILE", help="Append every trial to FILE (JSONL) as it ends.")
    ] = None,
    resume: Annotated[
        Optional[str], typer.Option("--resume", metavar="FILE", help="Go on from FILE's trials (and append to it).")
    ] = None,
    no_repack: NoRepack = False,
    users: Users = None,
    min_user_tps: Annotated[
        Optional[float],
        typer.Option(
            "--min-user-tps",
            metavar="T/S",
            min=0,
            callback=finite,
            help="With --users: the least generation each user must get; a faster configuration that gives less is not chosen.",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document (schema gpusplit.tune/3).")] = False,
) -> int:
    """Search splits, offload, batch, flash attention and threads for the fastest configuration that fits."""
    if resume and trials and Path(resume) != Path(trials):
        raise CLIError("--resume and --trials name different files", "--resume FILE appends to FILE; drop --trials")
    if output_file:
        files.check_folder(output_file, "results_file")  # before the search, not after it
        journal.check_replaceable(
            Path(output_file), lambda doc: doc.get("schema") in read.PLAN_SCHEMAS, render.PLAN_SCHEMA, "results_file"
        )
    seconds = api.parse_duration(budget, "budget")
    request = request_from(
        ctx=ctx, kv_type=kv_type, flash_attn=flash_attn, allow_ctx_overflow=ctx is not None, no_repack=no_repack, users=users
    )
    location = local_model(resolve_model(model), "tune")
    info = read_model(location)
    inventory = DeviceOptions(tuple(gpu or ()), devices_file, tuple(rpc or ()), timeout, ram).detect()

    def on_trial(t) -> None:
        measured = f"{with_interval(t.measured_tg, t.tg_interval)} t/s" if t.measured_tg else ("predicted" if t.score else "-")
        measured += " busy" if t.contended else ""
        status = f"again {t.round}" if t.round else t.status  # a finalist measured again
        output.message(f"tune: {status:7s} {t.key}: {measured}{'; ' + t.error if t.error else ''}")
        if t.recovery:
            output.warn(f"{t.key}: {t.recovery.message}; the later trials run with --no-repack")

    # Ctrl-C ends the search inside api.tune, which returns the best so far (stopped: interrupted).
    result = api.tune(
        info, inventory, request, objective=objective, budget=seconds or 0.0, trials_file=resume or trials,
        resume=bool(resume), on_trial=on_trial, min_user_tps=min_user_tps,
    )  # fmt: skip
    doc = render.tune_document(result, objective, seconds or 0.0)
    if output_file:
        files.write_whole(output_file, (json.dumps(doc["plan"], indent=1) + "\n").encode(), "results_file")
    for note in result.notes:
        output.warn(note.text)
    if json_output:
        output.emit_json(doc)
    else:
        _print(doc)
    if result.best is None:
        raise CLIError(
            "no configuration could be measured", "see the trials above; is the engine installed and do the devices answer?", 1
        )
    return 130 if result.stopped == "interrupted" else 0


def with_interval(value: float | None, interval: Sequence[float] | None) -> str:
    """'52.3 ± 4.1 %': a measured figure and its 95 % interval's half width in percent of it."""
    if not value:
        return "-"
    if not interval:
        return f"{value:.1f}"
    return f"{value:.1f} ± {100 * (interval[1] - interval[0]) / 2 / value:.1f} %"


def _print(doc: dict) -> None:
    def tps(x: float | None) -> str:
        return "-" if not x else f"{x:.1f}"

    def status(t: dict) -> str:
        return t["status"] + (" busy" if (t.get("contention") or {}).get("contended") else "")

    rows = [
        (
            t["key"], t["strategy"], tps(t["predicted_tg"]), with_interval(t["measured_tg"], t["measured_tg_interval"]),
            with_interval(t["measured_pp"], t["measured_pp_interval"]), tps(t["score"]),
            output.format_bytes(t["min_headroom_bytes"]) if t["min_headroom_bytes"] is not None else "-", status(t),
        )
        for t in doc["trials"]
    ]  # fmt: skip
    output.print_table(
        f"tune: {len(doc['trials'])} trials, objective {doc['objective']}, stopped: {doc['stopped']} after {doc['elapsed_s']:.0f} s",
        ["configuration", "strategy", "pred tg", "tg t/s", "pp t/s", "score", "headroom", "status"],
        rows,
        right=("pred tg", "tg t/s", "pp t/s", "score", "headroom"),
    )
    best = doc["best"]
    if best:
        output.line(f"best: {best['key']} ({best['strategy']}), score {best['score']:.1f}")
        if doc.get("runner_up"):
            output.line(
                f"  {doc['chosen']}: {doc['margin_pct']:+.1f} % over {doc['runner_up']} (measured again in turn; "
                f"their measurements spread {doc['spread_pct']:.1f} %)"
            )
        output.line("  " + shlex.join(["llama-server", *doc["plan"]["llama_args"]]))
