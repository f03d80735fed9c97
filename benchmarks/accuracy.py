"""Planned vs actual memory per device, measured with llama.cpp itself (issue 4's accuracy table).

    python benchmarks/accuracy.py [--out docs/accuracy.md] [--quick]

For each small real fixture (dense, tied, MoE, gemma3; f16 and q8_0), context 512 and 4096, KV
f16 (flash attention off) and q8_0 (flash attention on) -- and, at context 1024 with an f16 KV
cache, the fixtures quantized by llama.cpp's own quantizer (Q4_K_M, Q5_K_M, Q6_K, Q4_0, Q4_1,
IQ4_XS, IQ4_NL, MXFP4_MOE), a deepseek2 MLA model and a Mamba-2 model -- the model is planned over two loopback
`gpusplit worker` devices (layer split 0.6/0.4, partial offload, single device) and over the CPU
alone, then loaded by llama.cpp with exactly the plan's parameters; llama.cpp's log gives the
actual model, KV and compute buffers per device. The compute column is compared twice: the
planner's estimate and `plan --measure` (llama.cpp's dry run).

Targets: weights and KV equal to llama.cpp's figures (to its 0.01 MiB print); compute within
10 %; total per device within 2 % or 4 MiB, whichever is larger.
"""

from __future__ import annotations

import argparse
import itertools
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

MIB = 1024 * 1024
PRINT_TOLERANCE = int(0.005 * MIB) + 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_workers(n: int) -> tuple[list[subprocess.Popen], list[str]]:
    from gpusplit.devices.rpc import RPCError, probe

    procs, endpoints = [], []
    for _ in range(n):
        port = free_port()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "gpusplit", "worker", "--port", str(port), "--threads", "1"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        endpoints.append(f"127.0.0.1:{port}")
    for endpoint in endpoints:
        deadline = time.monotonic() + 20
        while True:
            try:
                probe(endpoint, 1.0)
                break
            except RPCError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    return procs, endpoints


# name -> (source fixture, llama_ftype) for llama.cpp's quantizer
QUANTIZED = {
    "dense-Q4_K_M": ("dense-f16", 15),
    "dense-Q5_K_M": ("dense-f16", 17),
    "dense-Q6_K": ("dense-f16", 18),
    "dense-Q4_0": ("dense-f16", 2),
    "dense-Q4_1": ("dense-f16", 3),
    "dense-IQ4_XS": ("dense-f16", 30),
    "dense-IQ4_NL": ("dense-f16", 25),
    "tied-Q4_0": ("tied-f16", 2),
    "moe-Q4_K_M": ("moe-f16", 15),
    "moe-MXFP4_MOE": ("moe-f16", 38),
    "gemma3-Q4_K_M": ("gemma3-f16", 15),
}


def fixture(folder: Path, name: str) -> Path:
    """A generated model, quantized by llama.cpp's own quantizer where the name says a type."""
    from gpusplit.jobs.runner import quantize
    from gpusplit.synthetic import TINY_MODELS, write_tiny_model
    from gpusplit.synthetic.tiny import MAMBA2_TINY, MLA_TINY

    path = folder / f"{name}.gguf"
    if path.exists():
        return path
    if name in QUANTIZED:
        source, ftype = QUANTIZED[name]
        quantize(str(fixture(folder, source)), str(path), ftype, threads=1)
        return path
    spec = {"deepseek2-mla": MLA_TINY, "mamba2": MAMBA2_TINY}.get(name, name)
    if name.startswith("gemma3-v"):  # Gemma 3's own vocabulary sizes: the output layer dominates a device
        vocab = int(name.split("-")[1][1:])
        spec = replace(TINY_MODELS["gemma3-f16"], name=name, n_vocab=vocab)
    return write_tiny_model(path, spec)


def draft_rows(folder: Path, inventory) -> list[dict]:
    """A draft model beside the main one: planned as llama-server places it (the main model's split
    mode and proportions, its own -ngld), checked by loading the draft with those parameters."""
    import gpusplit
    from gpusplit.documents.render import host_weight_buffers
    from gpusplit.engine.child import run_task
    from gpusplit.engine.logparse import parse_buffers
    from gpusplit.jobs.runner import rpc_buffer_names
    from gpusplit.planning.launch import engine_params

    rows = []
    draft_path = fixture(folder, "moe-Q4_K_M")
    draft = gpusplit.read_model(draft_path)
    for label, placement, ngld in (
        ("layer 0.6/0.4", {"split_mode": "layer", "tensor_split": (0.6, 0.4), "n_gpu_layers": -1}, -1),
        ("single", {"split_mode": "none", "main_gpu": 1, "n_gpu_layers": -1}, -1),
        ("layer 0.6/0.4, ngld 2", {"split_mode": "layer", "tensor_split": (0.6, 0.4), "n_gpu_layers": -1}, 2),
    ):
        request = gpusplit.Request(n_ctx=1024, draft=str(draft_path), n_gpu_layers_draft=ngld, **placement)
        plan = gpusplit.plan(fixture(folder, "dense-f16"), inventory, request)
        params = engine_params(plan).with_(model_path=str(draft_path), n_gpu_layers=draft.n_layer + 1 if ngld < 0 else ngld)
        _, log = run_task("load", {"params": params.as_dict()}, timeout=300)
        actual = parse_buffers(log, rpc_buffer_names(plan)).by_device
        for mem in plan.draft.devices + [plan.draft.host]:
            real = actual.get(mem.name, {})
            if not mem.planned_bytes and not real:
                continue
            rows.append(
                {
                    "model": "moe-Q4_K_M as draft", "ctx": 1024, "kv": "f16", "fa": False, "placement": label,
                    "device": mem.name, "weights": (mem.weights_bytes, real.get("weights", 0)),
                    "kv_bytes": (mem.kv_bytes, real.get("kv", 0)), "compute_est": (mem.compute_bytes, real.get("compute", 0)),
                    "compute_meas": (mem.compute_bytes, real.get("compute", 0)), "output": (mem.output_bytes, real.get("output", 0)),
                    "repack": mem.repack_bytes,
                    "buffers": len(host_weight_buffers(mem)) if mem.index is None else 1,
                }
            )  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/accuracy.md")
    parser.add_argument("--quick", action="store_true", help="one model and context, for a smoke run")
    args = parser.parse_args()

    import gpusplit
    from gpusplit.devices.inventory import Inventory
    from gpusplit.documents.render import host_weight_buffers
    from gpusplit.engine.child import run_task
    from gpusplit.engine.logparse import parse_buffers
    from gpusplit.jobs.runner import rpc_buffer_names
    from gpusplit.planning.launch import engine_params
    from gpusplit.synthetic import write_tiny_lora

    models = ["dense-f16", "dense-q8_0", "tied-f16", "tied-q8_0", "moe-f16", "moe-q8_0", "gemma3-f16", "gemma3-q8_0"]
    contexts = [512, 4096]
    kvs = [("f16", False), ("q8_0", True)]
    # The types people download, made by llama.cpp's own quantizer, and caches unlike plain attention:
    # one context and KV type each (weights are what the type changes).
    extra = [*QUANTIZED, "deepseek2-mla", "mamba2", "gemma3-v32768-f16", "gemma3-v262144-f16", "dense-Q4_K_M+lora"]
    if args.quick:
        models, contexts, kvs, extra = ["dense-f16"], [512], [("f16", False)], ["dense-Q4_K_M"]
    procs, endpoints = start_workers(2)
    rows = []
    try:
        inventory = gpusplit.detect_devices(rpc=endpoints)
        cpu_only = Inventory(devices=[], host=inventory.host, engine=inventory.engine)
        with tempfile.TemporaryDirectory() as tmp:
            grid = [*itertools.product(models, contexts, kvs), *((name, 1024, ("f16", False)) for name in extra)]
            for name, n_ctx, (kv, fa) in grid:
                path = fixture(Path(tmp), name.removesuffix("+lora"))
                model = gpusplit.read_model(path)
                settings = gpusplit.Request(n_ctx=n_ctx, type_k=kv, type_v=kv, flash_attn=fa, allow_ctx_overflow=True)
                if name.endswith("+lora"):
                    # A LoRA adapter (attn_q, attn_v, ffn_down of every block) on the quantized model.
                    settings = settings.with_(lora=(str(write_tiny_lora(Path(tmp) / "dense-lora.gguf", "dense-f16")),))
                placements = {
                    "cpu": (cpu_only, {"n_gpu_layers": 0}),
                    "layer 0.6/0.4": (inventory, {"split_mode": "layer", "tensor_split": (0.6, 0.4), "n_gpu_layers": -1}),
                    "partial": (
                        inventory,
                        {"split_mode": "layer", "tensor_split": (0.6, 0.4), "n_gpu_layers": model.n_layer // 2},
                    ),
                    "single": (inventory, {"split_mode": "none", "main_gpu": 0, "n_gpu_layers": -1}),
                }
                if name.startswith("gemma3"):
                    # Sliding-window models under pipeline parallelism: where the global layer and the
                    # output layer fall decides which masks and copies a device holds.
                    placements["layer 0.5/0.5"] = (
                        inventory,
                        {"split_mode": "layer", "tensor_split": (0.5, 0.5), "n_gpu_layers": -1},
                    )
                    placements["layer 0.85/0.15"] = (
                        inventory,
                        {"split_mode": "layer", "tensor_split": (0.85, 0.15), "n_gpu_layers": -1},
                    )
                for label, (devices, placement) in placements.items():
                    plan = gpusplit.plan(model, devices, settings.with_(**placement))
                    params = engine_params(plan)
                    _, log = run_task("load", {"params": params.as_dict()}, timeout=300)
                    actual = parse_buffers(log, rpc_buffer_names(plan)).by_device
                    estimated = {m.name: m.compute_bytes for m in plan.best.memory.devices + [plan.best.memory.host]}
                    plan = gpusplit.plan(model, devices, settings.with_(**placement), measure=True)
                    for mem in plan.best.memory.devices + [plan.best.memory.host]:
                        real = actual.get(mem.name, {})
                        if not mem.planned_bytes and not real:
                            continue
                        rows.append(
                            {
                                "model": name,
                                "ctx": n_ctx,
                                "kv": kv,
                                "fa": fa,
                                "placement": label,
                                "device": mem.name,
                                "weights": (mem.weights_bytes, real.get("weights", 0)),
                                "kv_bytes": (mem.kv_bytes, real.get("kv", 0)),
                                "compute_est": (estimated[mem.name], real.get("compute", 0)),
                                "compute_meas": (mem.compute_bytes, real.get("compute", 0)),
                                "output": (mem.output_bytes, real.get("output", 0)),
                                "repack": mem.repack_bytes,
                                "buffers": len(host_weight_buffers(mem)) if mem.index is None else 1,
                            }
                        )
                print(f"{name} ctx {n_ctx} kv {kv}: done", file=sys.stderr, flush=True)
            copies = host_copy_rows(Path(tmp))
            rows += draft_rows(Path(tmp), inventory)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
    write_report(rows, Path(args.out), copies)
    return 0


# The CPU backends a plan can be made for: (label, extra buffer types in llama.cpp's order, CPU_REPACK rules)
CPU_LEVELS = (
    ("AVX2", ("CPU_REPACK",), "avx2"),
    ("AVX512", ("CPU_REPACK",), "avx512"),
    ("AVX512 + AMX", ("AMX", "CPU_REPACK"), "avx512"),
    ("ARM dot product", ("CPU_REPACK",), "arm-dotprod"),
    ("--no-repack", (), "none"),
)
AMX_MEASURED = Path(__file__).resolve().parent.parent / "tests" / "data" / "amx-measured.json"


def host_copy_rows(folder: Path) -> list[dict]:
    """Per quantized fixture, the CPU alone at ctx 512: the host's weights by llama.cpp buffer as
    planned for each CPU backend, against llama.cpp's buffers on this machine (loaded here, with its
    extra buffer types on and off) and on an Intel Xeon with AMX (recorded: tests/data/amx-measured.json)."""
    import json

    from gpusplit.documents.render import host_weight_buffers
    from gpusplit.engine.child import run_task
    from gpusplit.engine.logparse import parse_buffers
    from gpusplit.engine.params import EngineParams
    from gpusplit.engine.registry import cpu_backend_info
    from gpusplit.gguf import read_model
    from gpusplit.planning.memory import Placement, Settings, plan_memory

    here = cpu_backend_info()
    recorded = json.loads(AMX_MEASURED.read_text())["models"]
    out = []
    for name in ["dense-f16", *QUANTIZED]:
        path = fixture(folder, name)
        model = read_model(path)
        planned = {}
        for label, extra, level in CPU_LEVELS:
            settings = Settings(n_ctx=512, cpu_repack=level, cpu_extra_buffers=extra, no_repack=not extra)
            planned[label] = host_weight_buffers(plan_memory(model, [], [], [], settings, Placement(n_gpu_layers=0)).host)
        measured = {}
        for on in (True, False):
            params = EngineParams(model_path=str(path), n_ctx=512, no_repack=not on)
            _, log = run_task("load", {"params": params.as_dict()}, timeout=120)
            measured[on] = parse_buffers(log).host_weights
        here_settings = Settings(n_ctx=512, cpu_repack=here.repack, cpu_extra_buffers=tuple(here.extra_buffers))
        out.append(
            {
                "model": name,
                "planned": planned,
                "here": host_weight_buffers(plan_memory(model, [], [], [], here_settings, Placement(n_gpu_layers=0)).host),
                "here_actual": measured[True],
                "here_off_actual": measured[False],
                "amx_actual": {k: round(v * MIB) for k, v in recorded[name]["extra_bufts_on"]["buffers"].items()}
                if name in recorded and path.stat().st_size == recorded[name]["file_bytes"]
                else None,
            }
        )
    return out


def _same(planned: dict[str, int], actual: dict[str, int] | None) -> bool | None:
    """Each buffer equal to llama.cpp's print (0.01 MiB); None where there is no figure."""
    if actual is None:
        return None
    actual = {k: v for k, v in actual.items() if v}
    return set(planned) == set(actual) and all(abs(planned[k] - actual[k]) <= PRINT_TOLERANCE for k in planned)


def _pct(planned: int, actual: int) -> float:
    return 0.0 if planned == actual else (100.0 * (planned - actual) / actual if actual else float("inf"))


def _ok_total(planned: int, actual: int) -> bool:
    return abs(planned - actual) <= max(0.02 * actual, 4 * MIB)


def write_report(rows: list[dict], out: Path, copies: list[dict]) -> None:
    def mib(x: int) -> str:
        return f"{x / MIB:.2f}"

    from gpusplit.devices.inventory import host_device
    from gpusplit.documents.provenance import commit as checkout_commit

    commit = checkout_commit()  # "+changes" when the tree differs from it
    lines = [
        "# Planned vs actual memory (llama.cpp 0.3.36, CPU and two loopback RPC workers)",
        "",
        f"Generated by `python benchmarks/accuracy.py` at commit {commit} on {host_device().description}. MiB; *est* is the planner's compute estimate, "
        "*dry* is `plan --measure` (llama.cpp's no_alloc dry run); *actual* is what llama.cpp allocated "
        "when loading with the plan's exact parameters. Totals are weights + KV + compute (+ the host's "
        "output buffer), planned with the estimate.",
        "",
        "| model | ctx | KV | placement | device | weights plan/actual | KV plan/actual | compute est/dry/actual | est err | total plan/actual | total ok |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    weights_exact = kv_exact = compute_ok = totals_ok = 0
    under: list[tuple[float, dict]] = []  # compute estimates under llama.cpp's by more than 2 % (issue 37)
    worst_compute = (0.0, None)
    worst_total = (0.0, None)
    for r in rows:
        (pw, aw), (pk, ak), (pc, ac), (mc, _), (po, ao) = (
            r["weights"],
            r["kv_bytes"],
            r["compute_est"],
            r["compute_meas"],
            r["output"],
        )
        # A host that copies weights prints a buffer for each (CPU_Mapped, CPU_REPACK, AMX), each rounded.
        weights_exact += abs(pw - aw) <= PRINT_TOLERANCE * r.get("buffers", 1)
        # Sliding-window models print two KV lines (two caches), each rounded.
        kv_exact += abs(pk - ak) <= 2 * PRINT_TOLERANCE
        err = _pct(pc, ac)
        compute_ok += abs(err) <= 10
        if err < -2:
            under.append((err, r))
        planned_total, actual_total = pw + pk + pc + po, aw + ak + ac + ao
        total_ok = _ok_total(planned_total, actual_total)
        totals_ok += total_ok
        if abs(err) > abs(worst_compute[0]):
            worst_compute = (err, r)
        terr = _pct(planned_total, actual_total)
        if abs(terr) > abs(worst_total[0]):
            worst_total = (terr, r)
        lines.append(
            f"| {r['model']} | {r['ctx']} | {r['kv']} | {r['placement']} | {r['device']} | {mib(pw)}/{mib(aw)} | {mib(pk)}/{mib(ak)} "
            f"| {mib(pc)}/{mib(mc)}/{mib(ac)} | {err:+.1f}% | {mib(planned_total)}/{mib(actual_total)} | {'yes' if total_ok else 'NO'} |"
        )
    n = len(rows)
    worst_under = min(under, key=lambda u: u[0]) if under else None
    summary = [
        "",
        "## Summary",
        "",
        f"- rows (device x configuration): {n}",
        f"- weights equal to llama.cpp's figure: {weights_exact}/{n}",
        f"- KV equal to llama.cpp's figure: {kv_exact}/{n}",
        f"- compute estimate within 10 %: {compute_ok}/{n}; worst {worst_compute[0]:+.1f}% ({_where(worst_compute[1])})",
        f"- compute estimate under llama.cpp's by more than 2 %: {len(under)}/{n}"
        + (f"; worst {worst_under[0]:+.1f}% ({_where(worst_under[1])})" if worst_under else ""),
        f"- total within 2 % or 4 MiB: {totals_ok}/{n}; worst {worst_total[0]:+.1f}% ({_where(worst_total[1])})",
        "- the dry-run (`--measure`) column is llama.cpp's own reservation; with several devices and "
        "pipeline parallelism the real load can differ from it by a few MiB.",
        "- quantized fixtures (`dense-Q4_K_M` ... `moe-MXFP4_MOE`) were made by llama.cpp's own quantizer. "
        "On the CPU, llama.cpp copies the matrices it multiplies into its extra buffer types where their kernels "
        "take them (x86: Q4_0 / Q4_K / IQ4_NL / MXFP4, and Q2_K with AVX512F, into CPU_REPACK; on a Xeon with AMX "
        "first Q4_0 / Q4_1 / Q8_0 / Q4_K / Q5_K / Q6_K / IQ4_XS and f16 into AMX) while the file stays mapped from "
        "its first to its last plain tensor; the CPU's weights are the sum of the buffers, each printed to 0.01 MiB "
        "(see the next section).",
        "- `deepseek2-mla` keeps one K-only cache of the latent (kv_lora_rank + rope dims), no V; "
        "`mamba2` keeps a recurrent state (R and S, f32, one cell per sequence) and no KV. Both exact. "
        "MLA's compute buffers are the fitted attention estimate (over by up to 14 % on a host holding "
        "only the inputs); Mamba-2's are an upper bound, every tensor a block creates with none reused "
        "(its own allocator's peaks fall among freed SSM tensors, and a split copies views of the input "
        "projection across devices): 1.7-2.7x llama.cpp's on the devices running blocks, the inputs of a "
        "host feeding devices exact. The plan says which (`compute-sizing`). These are the rows whose "
        "compute is far above and whose totals miss.",
        "- companion files: `dense-Q4_K_M+lora` loads a LoRA adapter (attn_q, attn_v, ffn_down of every "
        "block): llama.cpp puts each lora_a/lora_b pair in the buffer of the tensor it adapts (plain CPU "
        "where that tensor is repacked; src/llama-adapter.cpp), so its bytes follow the layers. `moe-Q4_K_M "
        "as draft` rows are a draft model beside dense-f16: llama-server loads it with the main model's "
        "context, batch, split mode and proportions, its own -ngld and f16 caches "
        "(common_base_params_to_speculative in common/speculative.cpp); the rows load the draft with exactly "
        "those parameters. A projector (`--mmproj`) is read whole into one buffer of the first GPU llama.cpp "
        "lists, the CPU when there is none (tools/mtmd/clip.cpp, clip_init); its compute buffer, reserved "
        "by a warm-up on the largest image, is not planned. No projector can be generated here, so it has no row.",
    ]
    section = _copies_section(copies)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines[:4] + summary[1:] + section + [""] + lines[4:]) + "\n")
    print("\n".join(summary + section))


def _copies_section(copies: list[dict]) -> list[str]:
    """The host's weight copies per CPU backend, planned against llama.cpp here and on an AMX Xeon."""
    from gpusplit.engine.registry import cpu_backend_info

    def cell(buffers: dict[str, int]) -> str:
        return " + ".join(f"{k.replace('CPU_', '')} {v / MIB:.2f}" for k, v in buffers.items()) or "-"

    here = cpu_backend_info()
    here_ok = sum(bool(_same(c["here"], c["here_actual"])) for c in copies)
    off_ok = sum(bool(_same(c["planned"]["--no-repack"], c["here_off_actual"])) for c in copies)
    amx = [c for c in copies if c["amx_actual"] is not None]
    amx_ok = sum(bool(_same(c["planned"]["AVX512 + AMX"], c["amx_actual"])) for c in amx)
    lines = [
        "",
        "## The host's weight copies per CPU",
        "",
        "The CPU alone, ctx 512: the host's weights by llama.cpp buffer (MiB; Mapped = the mapped file, REPACK = "
        "CPU_REPACK, AMX), as `plan` places them for each CPU backend, and what llama.cpp allocated: loaded here "
        f"(this build: extra buffer types {', '.join(here.extra_buffers) or 'none'}, CPU_REPACK rules {here.repack}; "
        "with them and with --no-repack) and on an Intel Xeon with AMX (recorded in `tests/data/amx-measured.json` for "
        "these very files: llama.cpp's log there, 2 threads, llama-cpp-python 0.3.36 built natively).",
        "",
        f"- this machine: {here_ok}/{len(copies)} models equal buffer by buffer with extra buffer types on, "
        f"{off_ok}/{len(copies)} with --no-repack",
        f"- the AMX Xeon: {amx_ok}/{len(amx)} models equal buffer by buffer",
        "",
        "| model | "
        + " | ".join(label for label, _, _ in CPU_LEVELS)
        + " | llama.cpp here | llama.cpp here, --no-repack | llama.cpp on the AMX Xeon |",
        "| --- " * (len(CPU_LEVELS) + 4) + "|",
    ]
    for c in copies:
        amx_cell = (
            "-"
            if c["amx_actual"] is None
            else cell(c["amx_actual"]) + (" (equal)" if _same(c["planned"]["AVX512 + AMX"], c["amx_actual"]) else " (DIFFERS)")
        )
        lines.append(
            f"| {c['model']} | "
            + " | ".join(cell(c["planned"][label]) for label, _, _ in CPU_LEVELS)
            + f" | {cell(c['here_actual'])}{' (equal)' if _same(c['here'], c['here_actual']) else ' (DIFFERS)'}"
            + f" | {cell(c['here_off_actual'])} | {amx_cell} |"
        )
    return lines


def _where(r: dict | None) -> str:
    if r is None:
        return "-"
    return f"{r['model']}, ctx {r['ctx']}, KV {r['kv']}, {r['placement']}, {r['device']}"


if __name__ == "__main__":
    sys.exit(main())
