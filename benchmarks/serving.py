"""Serving several users (issue 38): N sequences decoded together, predicted against measured, and
the planner's choice between one server and replicas against which was faster.

    python benchmarks/serving.py [--out docs/serving.md] [--quick] [--batched-bench PATH]

For two real-shaped models (random weights, llama.cpp's own quantizer), on the CPU (2 threads) and
layer-split over two loopback `gpusplit worker`s (one thread each): `gpusplit bench --parallel N`
for N = 1, 2, 4, 8 (each sequence after DEPTH tokens of its own prompt, TG tokens each), its
measured generation (all sequences together, each one's share) against the prediction the bench
row carries. Then, over the workers, one server split over both against two replicas (separate
`gpusplit bench` processes, one per worker, started together, N/2 sequences each), and what
`gpusplit plan --users N` chose. With --batched-bench (llama.cpp's llama-batched-bench built from
the vendored source), its S_TG on the CPU at the same N. Every device is probed first. The doc is
rewritten as each part ends, so a crash keeps what was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

MODELS = ("smollm2-135m-Q4_1", "qwen2.5-0.5b-Q4_K_M")
COUNTS = (1, 2, 4, 8)
DEPTH, TG = 128, 32
REPETITIONS = 3
PORTS = (50601, 50602)
TARGET_PCT = 20.0


def gpusplit_json(args: list[str], timeout: float = 1800) -> tuple[Any, str]:
    done = subprocess.run([sys.executable, "-m", "gpusplit", *args], capture_output=True, text=True, timeout=timeout)
    try:
        return json.loads(done.stdout), done.stderr
    except json.JSONDecodeError:
        return None, done.stderr


def bench_args(path: Path, counts: tuple[int, ...], setup: list[str]) -> list[str]:
    args = ["bench", str(path), "-p", "0", "-n", str(TG), "-d", str(DEPTH), "-r", str(REPETITIONS), "--json", *setup]
    for n in counts:
        args += ["-np", str(n)]
    return args


def rows_of(records: Any) -> dict[int, dict[str, Any]]:
    out = {}
    for r in records or []:
        if r.get("status") == "ok":
            out[int(r.get("parallel", 1))] = r
    return out


def error_pct(predicted: float | None, measured: float | None) -> float | None:
    return 100 * (predicted - measured) / measured if predicted and measured else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/serving.md")
    parser.add_argument("--quick", action="store_true", help="one model, N = 1 and 2")
    parser.add_argument("--batched-bench", help="llama.cpp's llama-batched-bench, built from the vendored source")
    args = parser.parse_args()
    from busy import cpu_facts, write_atomic
    from prediction import start_worker

    from gpusplit.documents.provenance import commit
    from gpusplit.jobs.runner import quantize
    from gpusplit.synthetic.real_shaped import write_real_shaped

    counts = (1, 2) if args.quick else COUNTS
    names = MODELS[:1] if args.quick else MODELS
    folder = ROOT / "scratch" / "prediction" / "real"
    folder.mkdir(parents=True, exist_ok=True)

    paths = {n: write_real_shaped(folder, n, lambda s, d, f: quantize(s, d, f, timeout=3600)) for n in names}
    head = {"commit": commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": cpu_facts(),
            "command": shlex.join(["python", "benchmarks/serving.py", *sys.argv[1:]])}  # fmt: skip
    results: dict[str, Any] = {"head": head, "parallel": [], "replicas": [], "batched": []}
    out = Path(args.out)
    workers = [start_worker(1, port) for port in PORTS]
    a, b = workers[0][1], workers[1][1]
    try:
        started = time.monotonic()
        gpusplit_json(["devices", "--probe", "--rpc", f"{a},{b}", "--json"])
        results["probe_s"] = round(time.monotonic() - started, 1)
        setups = {"CPU, 2 threads": ["-t", "2"], "layer 0.5/0.5 over A, B": ["--rpc", f"{a},{b}", "-sm", "layer", "-ts", "0.5,0.5", "-ngl", "-1", "-t", "1"]}  # fmt: skip
        for name, path in paths.items():
            for setup, extra in setups.items():
                records, err = gpusplit_json(bench_args(path, counts, extra))
                for n, r in sorted(rows_of(records).items()):
                    results["parallel"].append({
                        "model": name, "setup": setup, "n": n, "measured": r["mean_ts"], "interval": r.get("interval_ts"),
                        "predicted": r.get("predicted_ts"), "contended": bool((r.get("contention") or {}).get("contended")),
                    })  # fmt: skip
                if not records:
                    print(f"{name} {setup}: bench failed: {err[-300:]}", file=sys.stderr)
                write_atomic(out, render(results))
            for n in counts[1:]:
                results["replicas"].append(replicas(name, path, n, a, b))
                write_atomic(out, render(results))
            if args.batched_bench:
                results["batched"] += batched_bench(args.batched_bench, name, path, counts)
                write_atomic(out, render(results))
    finally:
        for proc, _ in workers:
            proc.terminate()
            proc.wait(timeout=10)
    results["whole_s"] = round(time.monotonic() - started, 1)
    write_atomic(out, render(results))
    print(out.read_text())
    return 0


def replicas(name: str, path: Path, n: int, a: str, b: str) -> dict[str, Any]:
    """N users over the two workers: one server split over both (its bench row from the parallel
    part is measured again here, beside nothing), and two replicas, one per worker, N/2 each,
    measured at the same time as separate processes; and the planner's choice."""
    one, _ = gpusplit_json(
        bench_args(path, (n,), ["--rpc", f"{a},{b}", "-sm", "layer", "-ts", "0.5,0.5", "-ngl", "-1", "-t", "1"])
    )
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gpusplit",
                *bench_args(path, (n // 2,), ["--rpc", w, "-sm", "none", "-ngl", "-1", "-t", "1"]),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for w in (a, b)
    ]
    halves = [json.loads(p.communicate(timeout=1800)[0] or "null") for p in procs]
    together = [rows_of(h).get(n // 2, {}).get("mean_ts") for h in halves]
    ctx = n * 256 * ((DEPTH + TG + 255) // 256)
    # the one server as measured: the layer split over both (the planner's own pick here would be the
    # CPU alone, over workers that compute on its cores)
    plan, _ = gpusplit_json(
        ["plan", str(path), "--rpc", f"{a},{b}", "-sm", "layer", "-ts", "0.5,0.5", "--users", str(n), "-c", str(ctx), "--json"]
    )
    serving = (plan or {}).get("serving") or {}
    one_row = rows_of(one).get(n, {})
    return {
        "model": name,
        "n": n,
        "one_measured": one_row.get("mean_ts"),
        "one_predicted": (serving.get("server") or {}).get("tokens_per_s"),
        "one_devices": (serving.get("server") or {}).get("devices"),
        "replicas_measured": sum(together) if all(together) else None,
        "replicas_predicted": serving.get("replicas_tokens_per_s"),
        "planner": serving.get("winner"),
    }


def batched_bench(binary: str, name: str, path: Path, counts: tuple[int, ...]) -> list[dict[str, Any]]:
    """llama.cpp's own llama-batched-bench on the CPU: S_TG (all sequences' generation) at each N."""
    ctx = max(counts) * 256 * ((DEPTH + TG + 255) // 256)
    cmd = [binary, "-m", str(path), "-c", str(ctx), "-b", "512", "-ub", "512", "-npp", str(DEPTH), "-ntg", str(TG),
           "-npl", ",".join(map(str, counts)), "-t", "2", "-fa", "off", "--output-format", "jsonl"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    out = []
    for line in (done.stdout + "\n" + done.stderr).splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "speed_tg" in row:  # its jsonl: S_TG is speed_tg (tools/batched-bench)
            out.append({"model": name, "n": row.get("pl"), "s_tg": row.get("speed_tg"), "command": shlex.join(cmd)})
    return out


def _num(value: Any, digits: int = 1) -> str:
    return f"{value:,.{digits}f}" if isinstance(value, (int, float)) else "-"


def render(results: dict[str, Any]) -> str:
    from busy import written_by

    head = results["head"]
    lines = [
        "# Serving several users: N sequences decoded together, predicted and measured",
        "",
        f"{written_by(head)}. Two loopback `gpusplit worker`s (A and B, one thread "
        f"each); every device probed first ({_num(results.get('probe_s'))} s). Models: real shapes and published "
        "quantizations, random weights (llama.cpp's own quantizer).",
        "",
        "## Summary",
        "",
    ]
    rows = results["parallel"]
    within = [r for r in rows if (e := error_pct(r["predicted"], r["measured"])) is not None and abs(e) <= TARGET_PCT]
    lines.append(f"- generation of N sequences together (and so each one's share) within {TARGET_PCT:g} % of the "
                 f"measurement: {len(within)} of {len(rows)} rows")  # fmt: skip
    picks = [r for r in results["replicas"] if r["one_measured"] and r["replicas_measured"]]
    right = [r for r in picks if (r["planner"] == "replicas") == (r["replicas_measured"] > r["one_measured"])]
    lines.append(f"- the planner's choice between one server and two replicas the faster measured: {len(right)} of {len(picks)}")
    lines += [
        "",
        f"## `gpusplit bench --parallel N` (each sequence after {DEPTH} tokens of its own prompt, {TG} tokens each, "
        f"{REPETITIONS} repetitions)",
        "",
        "| model | setup | N | measured together t/s | each | predicted together | each | error | busy |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        e = error_pct(r["predicted"], r["measured"])
        lines.append(
            f"| {r['model']} | {r['setup']} | {r['n']} | {_num(r['measured'])} | {_num(r['measured'] / r['n'])} | "
            f"{_num(r['predicted'])} | {_num(r['predicted'] / r['n'] if r['predicted'] else None)} | "
            f"{'-' if e is None else f'{e:+.1f} %'} | {'yes' if r['contended'] else ''} |"
        )
    lines += [
        "",
        "## One server over both workers, or two replicas (one per worker, N/2 sequences each, run together)",
        "",
        "| model | N | one server measured | predicted | replicas measured | predicted | planner chose | faster measured |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results["replicas"]:
        faster = "-" if not (r["one_measured"] and r["replicas_measured"]) else (
            "replicas" if r["replicas_measured"] > r["one_measured"] else "one-server")  # fmt: skip
        lines.append(
            f"| {r['model']} | {r['n']} | {_num(r['one_measured'])} | {_num(r['one_predicted'])} | "
            f"{_num(r['replicas_measured'])} | {_num(r['replicas_predicted'])} | {r['planner'] or '-'} | {faster} |"
        )
    if results["batched"]:
        lines += ["", "## llama.cpp's llama-batched-bench on the CPU (S_TG: all sequences' generation)", "",
                  "| model | N | S_TG t/s | gpusplit bench --parallel N (CPU, 2 threads) |", "| --- | ---: | ---: | ---: |"]  # fmt: skip
        ours = {(r["model"], r["n"]): r["measured"] for r in rows if r["setup"].startswith("CPU")}
        for r in results["batched"]:
            lines.append(f"| {r['model']} | {r['n']} | {_num(r['s_tg'])} | {_num(ours.get((r['model'], r['n'])))} |")
        lines += ["", f"`{results['batched'][0]['command']}`"]
    if results.get("whole_s"):
        lines += ["", f"Whole run: {results['whole_s'] / 60:.1f} minutes."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
