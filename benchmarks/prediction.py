"""Predicted vs measured speed (issue 13): does the predictor, fed by `devices --probe`, say how
fast llama.cpp really runs, and does the planner's first choice really run fastest?

    python benchmarks/prediction.py [--out docs/prediction.md] [--quick] [--reuse]

On this machine: two loopback `gpusplit worker`s of unequal speed (1 and 2 threads) and the CPU at
1 and 2 threads are probed; then generated models (the demo model, a 262 MB f16 dense model, a
MoE model) and the dense model quantized by llama.cpp's own quantizer (Q4_K_M, Q4_0, Q6_K) run
llama-bench's tg128 and pp512 (`gpusplit.bench`: one repetition after a warm-up in each of three
passes over the table, the median counting) on the CPU, on each worker alone, layer-split over both at two ratios, tensor-split, and partly offloaded;
and models with the real shapes and published quantizations of SmolLM2, Qwen2.5, Llama-3.2, Gemma-3,
Qwen3-30B-A3B (4 of its layers), TinyLlama and Phi-3-mini (gpusplit.synthetic.real_shaped: random
weights, llama.cpp's quantizer) on the CPU at 1 and 2 threads and layer-split over both workers. Each row's
prediction is the one `bench` itself records from the plan. Then, per model, every candidate the
planner ranks over the two workers is run, to check that its first choice is the fastest.

Targets: |error| <= 20 % for tg and <= 30 % for pp in at least 90 % of rows; for each model the
first-ranked candidate is the fastest measured or within 5 % of it. `--reuse` keeps the
measurements of an earlier run (scratch/prediction/*.jsonl) and only predicts again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRATCH = ROOT / "scratch" / "prediction"
TG, PP = 128, 512
PASSES = 3  # each row's repetitions: one per pass over the whole table
CLIENT_THREADS = 1  # the client's threads in every setup over the workers


def start_worker(threads: int, port: int) -> tuple[subprocess.Popen, str]:
    from gpusplit.devices.rpc import RPCError, probe

    proc = subprocess.Popen(
        [sys.executable, "-m", "gpusplit", "worker", "--port", str(port), "--threads", str(threads)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            probe(endpoint, 1.0)
            return proc, endpoint
        except RPCError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# The setups real-shaped models run in (the CPU, and a layer split over the two workers): each is
# tens of seconds a pass for the bigger ones.
REAL_SETUPS = ("CPU, 2 threads", "CPU, 1 thread", "layer 0.5/0.5 over A, B", "layer 0.3/0.7 over A, B")
REAL_LABEL = " (real shapes)"
# Real-shaped models whose planner ranking is checked too (every candidate timed three times)
RANKED_REAL = ("smollm2-135m-Q4_1", "qwen2.5-0.5b-Q4_K_M", "gemma-3-270m-Q4_K_M")


def real_models(folder: Path, quick: bool) -> dict[str, Path]:
    """Every real-shaped model, written once into `folder` (quick: the two of the issue that asked for them)."""
    from gpusplit.jobs.runner import quantize
    from gpusplit.synthetic.real_shaped import REAL_SHAPED, write_real_shaped

    names = ["smollm2-135m-Q4_1", "gemma-3-270m-Q4_K_M"] if quick else list(REAL_SHAPED)
    return {
        REAL_SHAPED[n].label + REAL_LABEL: write_real_shaped(folder, n, lambda s, d, f: quantize(s, d, f, timeout=3600))
        for n in names
    }


def models(folder: Path, quick: bool) -> dict[str, Path]:
    """The models of the table: generated, and quantized by llama.cpp's own quantizer."""
    from gpusplit.api import demo_model_path
    from gpusplit.jobs.runner import quantize
    from gpusplit.synthetic import TINY_MODELS, write_tiny_model

    out = {"demo (dense f16, 7 MB)": Path(demo_model_path())}
    # Width 1024, 12 layers: neither the probe's shapes (1536 and 256 wide) nor a cache-sized model.
    dense_spec = replace(
        TINY_MODELS["dense-large-f16"], name="dense-1024-f16", n_layer=12, n_embd=1024, n_head=16, n_head_kv=4, n_ff=2816
    )
    dense = folder / "dense-1024-f16.gguf"
    if not dense.exists():
        write_tiny_model(dense, dense_spec)
    out["dense f16 (262 MB)"] = dense
    if quick:
        return out
    moe_spec = replace(TINY_MODELS["dense-large-f16"], name="moe-large-f16", n_layer=8, n_ff=1024, n_expert=8, n_expert_used=2)
    moe = folder / "moe-large-f16.gguf"
    if not moe.exists():
        write_tiny_model(moe, moe_spec)
    out["MoE f16 (8 experts, 2 used)"] = moe
    for label, ftype in (("Q4_K_M", 15), ("Q4_0", 2), ("Q6_K", 18)):
        path = folder / f"dense-1024-{label}.gguf"
        if not path.exists():
            quantize(str(dense), str(path), ftype)
        out[f"dense {label}"] = path
    path = folder / "moe-large-Q4_K_M.gguf"
    if not path.exists():
        quantize(str(moe), str(path), 15)
    out["MoE Q4_K_M"] = path
    return out


def setups(a: str, b: str, n_layer: int) -> dict[str, dict]:
    # Over the workers the client runs 1 thread: on 2 cores a client spinning 2 OpenMP threads beside
    # a worker spinning 2 measures the OS scheduler's time slices (7-10 ms a token), not llama.cpp.
    rpc = {"threads": CLIENT_THREADS}
    return {
        "CPU, 2 threads": {"threads": 2},
        "CPU, 1 thread": {"threads": 1},
        # ngl -1: every layer where the setup says, even where the planner would choose the CPU.
        "worker A (1 thread)": {**rpc, "rpc": [a], "modes": ["none"], "ngls": [-1]},
        "worker B (2 threads)": {**rpc, "rpc": [b], "modes": ["none"], "ngls": [-1]},
        "layer 0.5/0.5 over A, B": {**rpc, "rpc": [a, b], "modes": ["layer"], "splits": ["0.5,0.5"], "ngls": [-1]},
        "layer 0.3/0.7 over A, B": {**rpc, "rpc": [a, b], "modes": ["layer"], "splits": ["0.3,0.7"], "ngls": [-1]},
        "tensor over A, B": {**rpc, "rpc": [a, b], "modes": ["tensor"], "ngls": [-1]},
        "partial: half the layers on A, B": {
            **rpc,
            "rpc": [a, b],
            "modes": ["layer"],
            "splits": ["0.5,0.5"],
            "ngls": [n_layer // 2],
        },
    }


def measure_rows(paths: dict[str, Path], a: str, b: str, store: Path) -> list[dict]:
    """Every row, in PASSES passes over the whole table (one repetition each, after a warm-up): this
    machine's speed drifts by up to a third over minutes (the same CPU row read 300 and 425 t/s a
    quarter of an hour apart), and a row timed three times in a row would measure one moment."""
    import gpusplit

    lines = []
    with store.open("a") as out:
        for n in range(PASSES):
            for label, path in paths.items():
                model = gpusplit.read_model(path)
                for setup, kw in setups(a, b, model.n_layer).items():
                    if label.endswith(REAL_LABEL) and setup not in REAL_SETUPS:
                        continue
                    started = time.monotonic()
                    records = bench_records(gpusplit, path, kw)
                    for r in records:
                        line = {"pass": n, "model": label, "path": str(path), "setup": setup, "kw": kw, "test": r["test"],
                                "status": r["status"], "samples": r["samples_ts"], "error": r["error"]}  # fmt: skip
                        lines.append(line)
                        out.write(json.dumps(line) + "\n")
                        out.flush()
                    print(f"  pass {n + 1}: {label} / {setup}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return aggregate(lines)


def bench_records(gpusplit, path: Path, kw: dict) -> list[dict]:
    """`gpusplit.bench` of one setup (kw: rpc, threads, and one mode, split and ngl) as records."""
    matrix = gpusplit.Matrix(
        modes=tuple(kw.get("modes") or ["auto"]), splits=tuple(kw.get("splits") or ["auto"]), ngls=tuple(kw.get("ngls") or [None])
    )
    rows = gpusplit.bench(str(path), gpusplit.Request(n_threads=kw.get("threads")), matrix=matrix,
                          tests=gpusplit.Tests((PP,), (TG,)), rpc=tuple(kw.get("rpc") or ()), repetitions=1)  # fmt: skip
    return [gpusplit.document(r) for r in rows]


def aggregate(lines: list[dict]) -> list[dict]:
    """One row per model, setup and test: the median over its passes (a failed pass is left out; a
    row fails only when every pass did)."""
    rows: dict[tuple, dict] = {}
    for line in lines:
        key = (line["model"], line["setup"], line["test"])
        row = rows.setdefault(
            key, {k: line[k] for k in ("model", "path", "setup", "kw", "test")} | {"samples": [], "error": None}
        )
        if line["status"] == "ok":
            row["samples"] += line["samples"] or []
        else:
            row["error"] = line["error"]
    for row in rows.values():
        row["status"] = "ok" if row["samples"] else "failed"
        row["measured"] = statistics.median(row["samples"]) if row["samples"] else None
        # how far the passes were apart: (slowest - fastest) / median
        row["spread"] = (max(row["samples"]) - min(row["samples"])) / row["measured"] if len(row["samples"]) > 1 else None
    return list(rows.values())


def predict_row(row: dict) -> float | None:
    """What the plan `bench` makes for this configuration predicts, with today's code and probes (its
    generation's parts go into the row)."""
    import gpusplit

    kw = row["kw"]
    inventory = gpusplit.detect_devices(rpc=kw.get("rpc"), threads=kw.get("threads"))
    mode = (kw.get("modes") or ["auto"])[0]
    split = (kw.get("splits") or ["auto"])[0]
    request = gpusplit.Request(
        n_ctx=max(256, -(-max(TG, PP) // 256) * 256), split_mode=None if mode == "auto" else mode,
        tensor_split=None if split == "auto" else gpusplit.api.split_shares(split), n_gpu_layers=(kw.get("ngls") or [None])[0],
        allow_ctx_overflow=True, n_threads=kw.get("threads"),
    )  # fmt: skip
    plan = gpusplit.plan(row["path"], inventory, request)
    p = plan.best.prediction
    row["parts"] = gpusplit.document(plan)["predicted"]["parts"]
    return p.tg_tokens_per_s if row["test"].startswith("tg") else p.pp_tokens_per_s


RUN_PROMPT = "The history of the world is a long story of " * 4  # tokens: as the real-shaped vocabulary splits it
RUN_TOKENS = 128


def run_rows(paths: dict[str, Path], store: Path) -> list[dict]:
    """`gpusplit run` on each real-shaped model, the CPU at 2 threads: what it measures (its prompt
    and its 128 generated tokens, greedy sampling included) against what its plan predicts, the
    median of PASSES runs taken in turn."""
    import gpusplit

    inventory = gpusplit.detect_devices(threads=2)
    real = {label: path for label, path in paths.items() if label.endswith(REAL_LABEL)}
    samples: dict[str, list[dict]] = {label: [] for label in real}
    for _ in range(PASSES):
        for label, path in real.items():
            plan = gpusplit.plan(str(path), inventory, gpusplit.Request(n_ctx=1024, n_threads=2))
            doc = gpusplit.document(gpusplit.run(plan, prompt=RUN_PROMPT, n_predict=RUN_TOKENS))
            samples[label].append(
                {"gen": doc["timings"]["gen_tps"], "prompt": doc["timings"]["prompt_tps"], "tokens": doc["timings"]["prompt_tokens"],
                 "gen_predicted": doc["predicted"]["gen_tps"], "prompt_predicted": doc["predicted"]["prompt_tps"]}
            )  # fmt: skip
    out = []
    for label, runs in samples.items():
        row = {"model": label}
        for key in ("gen", "prompt", "gen_predicted", "prompt_predicted", "tokens"):
            row[key] = statistics.median(r[key] for r in runs)
        out.append(row)
    store.write_text(json.dumps(out))
    return out


def ranking(paths: dict[str, Path], a: str, b: str, store: Path) -> list[dict]:
    """Per model: every candidate the planner ranks over the two workers, run as planned; each
    candidate's tg128 the median of PASSES runs, the candidates taken in turn in each pass (measured
    one after the other, the CPU alone and worker B, 4-7 % apart on the same cores, swapped places
    with the machine's drift)."""
    import gpusplit
    from gpusplit.jobs.runner import bench_config
    from gpusplit.planning.launch import engine_params

    out = []
    inventory = gpusplit.detect_devices(rpc=[a, b], threads=2)
    tests = [{"name": "tg", "kind": "tg", "n": TG, "depth": 0}]
    for label, path in paths.items():
        if label.endswith(REAL_LABEL) and not any(path.name.startswith(n) for n in RANKED_REAL):
            continue
        plan = gpusplit.plan(str(path), inventory, gpusplit.Request(n_ctx=512))
        ranked = [(rank, c) for rank, c in enumerate([plan.best, *plan.alternatives]) if c.fits]
        samples: dict[int, list[float]] = {rank: [] for rank, _ in ranked}
        for _ in range(PASSES):
            for rank, c in ranked:
                # The CPU alone at 2 threads; over the workers the client at CLIENT_THREADS, as in the rows.
                params = engine_params(plan, c).with_(n_threads=2 if c.strategy == "cpu-only" else CLIENT_THREADS)
                samples[rank] += bench_config(plan, params, tests, 1, timeout=900).samples["tg"]
        measured = []
        for rank, c in ranked:
            what = f"{c.strategy} ({c.llama_mode}" + (
                f", {','.join(f'{x:g}' for x in c.placement.tensor_split)}" if c.placement.tensor_split else ""
            )
            what += f", main {c.placement.main_gpu})" if c.llama_mode == "none" else ")"
            tg = statistics.median(samples[rank])
            measured.append({"rank": rank, "candidate": what, "predicted": c.prediction.tg_tokens_per_s, "measured": tg})
        best = max(m["measured"] for m in measured)
        first = measured[0]
        out.append({"model": label, "candidates": measured, "first_is_fastest": first["measured"] >= 0.95 * best})
    with store.open("w") as f:
        json.dump(out, f)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/prediction.md")
    parser.add_argument("--quick", action="store_true", help="two models, for a smoke run")
    parser.add_argument("--reuse", action="store_true", help="predict again over the last run's measurements")
    parser.add_argument("--ports", type=int, nargs=2, default=[50171, 50172], help="the two workers' ports")
    args = parser.parse_args()

    import gpusplit

    SCRATCH.mkdir(parents=True, exist_ok=True)
    measured_store, ranking_store = SCRATCH / "measured.jsonl", SCRATCH / "ranking.json"
    # Fixed ports: a worker's measurement is filed under its endpoint, and --reuse finds it again.
    worker_a, a = start_worker(1, args.ports[0])
    worker_b, b = start_worker(2, args.ports[1])
    started = time.monotonic()
    # The models first (writing and quantizing them is minutes of work): the probe's figures then
    # meet the table's measurements as soon after as can be.
    folder = SCRATCH / "models"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {**models(folder, args.quick), **real_models(SCRATCH / "real", args.quick)}
    try:
        if not args.reuse:
            # The CPU at 1 thread and both workers (the client at 1 thread, as in the rows), then the CPU at 2.
            t0 = time.monotonic()
            gpusplit.probe_devices(rpc=[a, b], request=gpusplit.Request(n_threads=CLIENT_THREADS))
            t1 = time.monotonic()
            gpusplit.probe_devices(request=gpusplit.Request(n_threads=2))
            probe_seconds = (t1 - t0, time.monotonic() - t1)
            print(
                f"probed: CPU at 1 thread and two workers {probe_seconds[0]:.0f} s; CPU at 2 threads {probe_seconds[1]:.0f} s",
                file=sys.stderr,
            )
            (SCRATCH / "probe.json").write_text(json.dumps(probe_seconds))
        if args.reuse and measured_store.exists():
            rows = aggregate([json.loads(line) for line in measured_store.read_text().splitlines() if line.strip()])
        else:
            measured_store.unlink(missing_ok=True)
            rows = measure_rows(paths, a, b, measured_store)
        for row in rows:
            row["predicted"] = predict_row(row) if row["status"] == "ok" else None
        if args.reuse and ranking_store.exists():
            ranks = json.loads(ranking_store.read_text())
        else:
            ranks = ranking(paths, a, b, ranking_store)
        runs_store = SCRATCH / "runs.json"
        runs = json.loads(runs_store.read_text()) if args.reuse and runs_store.exists() else run_rows(paths, runs_store)
    finally:
        for proc in (worker_a, worker_b):
            proc.terminate()
            proc.wait(timeout=10)
    probe_file = SCRATCH / "probe.json"
    probe_seconds = json.loads(probe_file.read_text()) if probe_file.exists() else None
    run_file = SCRATCH / "run.json"  # how long the measuring run took, kept for --reuse
    if not args.reuse:
        run_file.write_text(json.dumps(time.monotonic() - started))
    seconds = json.loads(run_file.read_text()) if run_file.exists() else None
    write_report(Path(args.out), rows, ranks, seconds, probe_seconds, args.reuse, runs)
    return 0


def spread_line(rows: list[dict]) -> str:
    spreads = sorted(r["spread"] for r in rows if r.get("spread") is not None)
    if not spreads:
        return ""
    wide = sum(x > 0.2 for x in spreads)
    return (
        f"- passes apart (slowest - fastest, of the median): median {100 * statistics.median(spreads):.0f} %, "
        f"largest {100 * spreads[-1]:.0f} %; {wide} of {len(spreads)} rows more than 20 %"
    )


def _group_summary(rows: list[dict], title: str) -> list[str]:
    tg = [r for r in rows if r["test"].startswith("tg")]
    pp = [r for r in rows if r["test"].startswith("pp")]
    if not rows:
        return []
    tg_in = sum(abs(r["err"]) <= 20 for r in tg)
    pp_in = sum(abs(r["err"]) <= 30 for r in pp)
    return [
        f"**{title}**: {100 * (tg_in + pp_in) / len(rows):.0f} % of rows within their target "
        f"(generation {tg_in} of {len(tg)} within 20 %, prompt {pp_in} of {len(pp)} within 30 %); "
        f"median |error| tg {statistics.median(abs(r['err']) for r in tg):.1f} %, pp {statistics.median(abs(r['err']) for r in pp):.1f} %"
        if tg and pp
        else f"**{title}**: {len(rows)} rows",
        "",
    ]


def _run_summary(runs: list[dict]) -> list[str]:
    """`gpusplit run`'s own timings against its prediction (generation within 20 %)."""
    if not runs:
        return []
    from gpusplit.documents.render import error_pct

    lines = [
        f"## `gpusplit run` against its prediction (real-shaped models, the CPU at 2 threads, a {runs[0]['tokens']:.0f}-token "
        f"prompt and {RUN_TOKENS} generated tokens, greedy; median of {PASSES} runs)",
        "",
        "| model | generation t/s predicted / measured | error | prompt t/s predicted / measured | error |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    within = 0
    for r in runs:
        gen, prompt = error_pct(r["gen_predicted"], r["gen"]), error_pct(r["prompt_predicted"], r["prompt"])
        within += gen is not None and abs(gen) <= 20
        lines.append(
            f"| {r['model']} | {r['gen_predicted']:.1f} / {r['gen']:.1f} | {gen:+.1f} % | "
            f"{r['prompt_predicted']:.1f} / {r['prompt']:.1f} | {prompt:+.1f} % |"
        )
    return [f"`run`'s generation within 20 % of its prediction: {within} of {len(runs)} models", "", *lines, ""]


def _largest_part(parts: dict | None) -> str:
    """The predicted part a generated token spends most on (what to suspect when it misses)."""
    if not parts:
        return "-"
    flat = {f"{name} {k}": v for name, d in parts.get("devices", {}).items() for k, v in d.items()}
    flat |= {k: v for k, v in parts.items() if k != "devices"}
    total = sum(flat.values()) or 1.0
    name, value = max(flat.items(), key=lambda kv: kv[1])
    return f"{name} ({100 * value / total:.0f} %)"


def write_report(
    out: Path,
    rows: list[dict],
    ranks: list[dict],
    seconds: float | None,
    probe: list[float] | None,
    reused: bool = False,
    runs: list[dict] | None = None,
) -> None:
    from gpusplit.devices.inventory import host_device
    from gpusplit.documents.render import error_pct

    ok = [r for r in rows if r["status"] == "ok" and r["predicted"]]
    for r in ok:
        r["err"] = error_pct(r["predicted"], r["measured"])
    real = [r for r in ok if r["model"].endswith(REAL_LABEL)]
    generated = [r for r in ok if not r["model"].endswith(REAL_LABEL)]
    from gpusplit.documents.provenance import commit as checkout_commit

    commit = checkout_commit()  # "+changes" when the tree differs from it
    lines = [
        "# Predicted vs measured speed",
        "",
        f"Written by `python benchmarks/prediction.py` at commit {commit} on {host_device().description} (x86_64, no GPU,",
        "32 MiB L3), llama-cpp-python 0.3.36; two loopback `gpusplit worker`s: A with 1 thread, B with 2.",
        "Every device was measured first with `gpusplit devices --probe`; each prediction is the one",
        "`gpusplit bench` records from its plan. tg128 and pp512, each the median of three passes over the",
        "whole table (one repetition per pass, after a warm-up: this machine's speed drifts over minutes);",
        "over the workers the client runs 1 thread (see below). Real-shaped models: the shapes, vocabularies,",
        "tied or untied outputs and per-tensor types of published files (random weights, quantized by",
        "llama.cpp's own quantizer), run on the CPU and layer-split over both workers.",
        "",
        "## Summary",
        "",
        *_group_summary(real, "Real-shaped models"),
        *_group_summary(generated, "Generated models"),
        spread_line(ok),
        f"- first-ranked candidate the fastest (or within 5 %): {sum(r['first_is_fastest'] for r in ranks)} of {len(ranks)} models",
        f"- `devices --probe`: the CPU at 1 thread and both workers {probe[0]:.0f} s; the CPU at 2 threads {probe[1]:.0f} s"
        if probe
        else "",
        (f"- whole run: {seconds / 60:.1f} minutes" if seconds else "")
        + ("; predicted again (`--reuse`) over its measurements" if reused else ""),
        "",
        *_run_summary(runs or []),
        "## Rows outside their target (20 % generation, 30 % prompt), with the part a generated token spends most on",
        "",
        "| model | setup | test | predicted t/s | measured t/s | error | largest predicted part |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    outside = [r for r in ok if abs(r["err"]) > (20 if r["test"].startswith("tg") else 30)]
    for r in sorted(outside, key=lambda r: -abs(r["err"])):
        lines.append(
            f"| {r['model']} | {r['setup']} | {r['test']} | {r['predicted']:.1f} | {r['measured']:.1f} | {r['err']:+.1f} % "
            f"| {_largest_part(r.get('parts'))} |"
        )
    lines += [
        "",
        "## Every row",
        "",
        "| model | setup | test | predicted t/s | measured t/s | error |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['setup']} | {r['test']} | - | FAILED: {str(r['error'])[:60]} | - |")
            continue
        err = r.get("err")
        lines.append(
            f"| {r['model']} | {r['setup']} | {r['test']} | {r['predicted']:.1f} | {r['measured']:.1f} | "
            + ("-" if err is None else f"{err:+.1f} %")
            + " |"
        )
    lines += ["", "## By setup (median error over the models)", "", "| setup | tg128 | pp512 |", "| --- | ---: | ---: |"]
    for setup in dict.fromkeys(r["setup"] for r in ok):
        med = {}
        for kind in ("tg", "pp"):
            errs = [r["err"] for r in ok if r["setup"] == setup and r["test"].startswith(kind)]
            med[kind] = f"{statistics.median(errs):+.0f} %" if errs else "-"
        lines.append(f"| {setup} | {med['tg']} | {med['pp']} |")
    lines += [
        "",
        "On this 2-core machine the client, worker A (1 thread) and worker B (2 threads) share two cores",
        "and one 32 MiB L3 cache. A client at 2 threads beside B at 2 threads measured the OS scheduler",
        "(7-10 ms time slices a token), so every setup over the workers runs the client at 1 thread, as",
        "the probe does. Weights on the host and on loopback workers count as cached only when all of them",
        "fit. The machine's speed drifts both ways over minutes (the same 12-layer decode read 520 to 766 us",
        "within a minute), which the three passes and the probe's two rounds average out as far as they can.",
    ]
    lines += ["", "## Ranking: the planner's order over workers A and B, each candidate run (median of 3, in turn)", ""]
    for m in ranks:
        lines.append(f"**{m['model']}**: first choice {'is' if m['first_is_fastest'] else 'is NOT'} the fastest (or within 5 %)")
        lines.append("")
        lines.append("| rank | candidate | predicted tg t/s | measured tg t/s |")
        lines.append("| ---: | --- | ---: | ---: |")
        for c in m["candidates"]:
            pred = "-" if c["predicted"] is None else f"{c['predicted']:.1f}"
            lines.append(f"| {c['rank'] + 1} | {c['candidate']} | {pred} | {c['measured']:.1f} |")
        lines.append("")
    gpu = ROOT / "docs" / "gpu" / "prediction-h200.md"
    if gpu.exists():  # rows from a device machine (benchmarks/gpu/validate.sh), kept on regeneration
        lines += [gpu.read_text().rstrip("\n"), ""]
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:20]))


if __name__ == "__main__":
    sys.exit(main())
