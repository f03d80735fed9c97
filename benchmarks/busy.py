"""A busy machine (issue 36): how far identical runs spread, whether the regression gate tells that
noise from a real slowdown, whether other work started during a measurement is noticed, and how
long the probe takes.

    python benchmarks/busy.py [--out docs/busy.md] [--quick] [--only SECTION] [--hog-seconds 3] [--hogs 1]

Sections (`--only` runs one and keeps the others' figures from the last run):
- noise: ten identical `gpusplit bench` runs of SmolLM2-135M Q4_1 (its real shapes and quantization,
  random weights: gpusplit.synthetic.real_shaped) on the CPU at all its threads, tg128 and pp512, 5
  repetitions each, a few seconds apart: each run's mean and 95 % interval, and how far the ten
  means spread.
- gates: the gate as the README's CI job runs it, five benches appended to each side's file:
  twenty `bench --compare A B --fail-slower 10` where A and B are disjoint halves of those ten runs
  (must never fire; every other split of them judged too, at 5, 10 and 15 %), then rounds of five
  full-thread runs interleaved with five at half the threads, gated against them (must always fire).
- hog: a CPU hog (`python -c "while True: pass"`, --hogs processes, one by default) started 2 s
  into a bench, a CPU probe (`devices --probe`) and a short tune, stopped after --hog-seconds; each
  three times: was it noticed (a record's or trial's `contention` marked contended, or the probe's
  notes probe-contended / probe-remeasured)?
- probe: `devices --probe` of the CPU alone, and of the CPU with two loopback `gpusplit worker`s of
  one thread each, timed (wall clock) three times each (target: <= 60 s with both workers).

--quick: the demo model and tiny tests (-n 16 -p 64), each hog and probe case once: it proves the
script runs, not the targets. Figures go to scratch/busy/results.json (scratch/busy/quick/ with
--quick) as each section ends, and the doc is rewritten then, so a crash keeps what was measured.
Every gpusplit runs with GPUSPLIT_CACHE_DIR in that folder: the hogged probes never replace this
machine's own cached probe figures. Every command runs under a timeout and in its own process
group, killed with its engine children when it overruns; hogs and workers are stopped in `finally`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

SECTIONS = ("noise", "gates", "hog", "probe")
GATE_PCT = 10.0  # --fail-slower: the README's CI example; the doc's gates section says why
SWEEP_PCTS = (5.0, 10.0, 15.0)
RUNS_PER_SIDE = 5  # benches appended to each side's file, as the README's CI job does
EXIT_SLOWER = 4
GATES = 20
HOG_DELAY_S = 2.0
# The bench's load and its prompt warm-up take about 4 s here, idle: a hog during them slows only
# what is not timed (and the warm-up absorbs it: 15x slower beside a hog), so the bench's hog starts
# once its timed repetitions run.
BENCH_HOG_DELAY_S = 6.0
PROBE_TARGET_S = 60.0
NOTICED_CODES = ("probe-contended", "probe-remeasured")
HOG_CODE = "while True: pass"
REAL_MODEL = "smollm2-135m-Q4_1"
NOT_FOUND = "not found"
REFUSED = "refused: exit 1, every device disturbed"  # the probe kept no figures and said so


@dataclass
class Sizes:
    """What one run of the script measures: the full run's sizes, or --quick's."""

    quick: bool
    noise_runs: int = 10
    gap_s: float = 3.0  # between identical runs
    tg: int = 128
    pp: int = 512
    reps: int = 5
    half_rounds: int = 2  # each: RUNS_PER_SIDE full-thread runs interleaved with as many at half
    hog_tries: int = 3
    hog_bench: tuple[str, ...] = ()  # the hogged bench's tests (default: the noise runs')
    tune_budget_s: int = 30
    probe_runs: int = 3
    untimed_probe: bool = True
    bench_timeout_s: float = 900.0
    probe_timeout_s: float = 900.0

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        if not quick:
            return cls(quick=False)
        # the demo model runs a test of 5 repetitions in a fraction of a second: the hogged bench
        # repeats bigger tests so that it outlasts the hog's start and stop
        return cls(quick=True, gap_s=1.0, tg=16, pp=64, half_rounds=1, hog_tries=1, hog_bench=("-n", "128", "-p", "512", "-r", "30"),
                   tune_budget_s=10, probe_runs=1, untimed_probe=False, bench_timeout_s=300.0, probe_timeout_s=600.0)  # fmt: skip


@dataclass
class Context:
    sizes: Sizes
    scratch: Path
    model: Path
    model_label: str
    threads: int  # all the CPUs
    hog_seconds: float
    hogs: int
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def half_threads(self) -> int:
        return max(1, self.threads // 2)

    def bench_tests(self) -> list[str]:
        return ["-n", str(self.sizes.tg), "-p", str(self.sizes.pp), "-r", str(self.sizes.reps)]


# ---------------------------------------------------------------------------------------------
# figures from fixed numbers (tests/test_busy_benchmark.py)


def spread(values: list[float]) -> dict[str, float] | None:
    """How far repeated means spread: slowest, fastest, max/min - 1 and the coefficient of
    variation, in percent (None for fewer than two)."""
    if len(values) < 2:
        return None
    low, high, mean = min(values), max(values), statistics.fmean(values)
    return {
        "n": len(values),
        "low": low,
        "high": high,
        "spread_pct": 100 * (high / low - 1) if low > 0 else math.inf,
        "cv_pct": 100 * statistics.stdev(values) / mean if mean else math.inf,
    }


def gate_splits(n: int, per_side: int = RUNS_PER_SIDE, count: int = GATES) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """`count` ordered splits (A, B) of n runs into two disjoint sides of `per_side` runs each, drawn
    with a fixed seed so that every rerun judges the same splits; all of them when there are fewer."""
    every = all_splits(n, per_side)
    return every if len(every) <= count else random.Random(36).sample(every, count)


def all_splits(n: int, per_side: int = RUNS_PER_SIDE) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every ordered pair of disjoint sides of `per_side` runs out of n."""
    return [(a, b) for a in itertools.combinations(range(n), per_side)
            for b in itertools.combinations([i for i in range(n) if i not in a], per_side)]  # fmt: skip


def sweep(files: list[Path], pcts: tuple[float, ...] = SWEEP_PCTS, per_side: int = RUNS_PER_SIDE) -> dict[str, Any]:
    """Every split of the identical runs judged in-process (gpusplit.documents.results, what the CLI
    calls): at each PCT, the share of splits whose gate fires. Twenty gates out of these runs
    overlap; this says how often a gate would fire over all of them."""
    from gpusplit.documents import results

    runs = [results.read_records(f) for f in files]
    splits = all_splits(len(runs), per_side)
    fired = dict.fromkeys(pcts, 0)
    for a, b in splits:
        rows = list(results.compare([r for i in a for r in runs[i]], [r for i in b for r in runs[i]]))
        for pct in pcts:
            fired[pct] += bool(results.regressions(rows, pct))
    return {"splits": len(splits), "fired": [{"pct": pct, "fired": fired[pct]} for pct in pcts]}


def joined(files: list[Path], out: Path) -> Path:
    """One side's file: its runs' records appended one after another, as benches append (a line a
    killed bench left cut short dropped: gpusplit forgives one only at the end of a file)."""
    parts = []
    for f in files:
        data = f.read_bytes()
        parts.append(data if data.endswith(b"\n") or not data else data[: data.rfind(b"\n") + 1])
    out.write_bytes(b"".join(parts))
    return out


@dataclass
class Seen:
    """What a command's output says of other work: whether it carries contention at all (`present`),
    whether any of it was contended or a note says so, the most CPUs others kept busy, the codes."""

    present: bool = False
    noticed: bool = False
    others_cpus: float | None = None
    codes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"present": self.present, "noticed": self.noticed, "others_cpus": self.others_cpus, "codes": self.codes}


def _walk(value: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    if depth > 40:  # our own output, but bounded all the same
        return
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from _walk(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, depth + 1)


def seen_in(documents: list[Any]) -> Seen:
    """Every `contention` object and note code in `documents` (records, a tune or devices document)."""
    seen = Seen()
    for d in (d for doc in documents for d in _walk(doc)):
        if "contention" in d:
            seen.present = True
            c = d["contention"]
            if isinstance(c, dict):
                seen.noticed |= c.get("contended") is True
                if isinstance(c.get("others_cpus"), (int, float)):
                    seen.others_cpus = max(seen.others_cpus or 0.0, float(c["others_cpus"]))
        code = d.get("code")
        if isinstance(code, str) and code in NOTICED_CODES and code not in seen.codes:
            seen.codes.append(code)
            seen.noticed = True
    return seen


def run_figures(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per test of a bench run: its mean (the record's mean_ts, else the samples' mean), 95 %
    interval, outliers and contention, NOT_FOUND where the record has no such field."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("status") != "ok" or not r.get("samples_ts"):
            out[str(r.get("test"))] = {"error": str(r.get("error"))[:120]}
            continue
        mean = r.get("mean_ts")
        seen = seen_in([r])
        out[str(r["test"])] = {
            "mean": float(mean) if isinstance(mean, (int, float)) else statistics.fmean(r["samples_ts"]),
            "mean_from": "mean_ts" if isinstance(mean, (int, float)) else "samples_ts",
            "samples": r["samples_ts"],
            "interval": r.get("interval_ts", NOT_FOUND),
            "outliers": len(r["outliers_ts"]) if isinstance(r.get("outliers_ts"), list) else NOT_FOUND,
            "contended": seen.noticed if seen.present else NOT_FOUND,
            "others_cpus": seen.others_cpus,
        }
    return out


# ---------------------------------------------------------------------------------------------
# running gpusplit, hogs and workers


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


@dataclass
class Ran:
    rc: int | None  # None: stopped at its timeout
    seconds: float
    stdout: Path
    log: Path
    hog: tuple[float, float] | None = None  # the hog's start and stop, seconds after the command's start

    def tail(self, n: int = 3) -> str:
        try:
            lines = self.log.read_text(errors="replace")[-4000:].strip().splitlines()
        except OSError:
            return ""
        return " / ".join(lines[-n:])[:300]

    def as_dict(self) -> dict[str, Any]:
        return {"rc": self.rc, "seconds": round(self.seconds, 2), "log": rel(self.log),
                "hog": None if self.hog is None else [round(x, 2) for x in self.hog],
                "tail": None if self.rc == 0 else self.tail()}  # fmt: skip


def start_hogs(n: int) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", HOG_CODE], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(n)
    ]


def stop(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        if p.poll() is None:
            p.kill()
    for p in processes:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _stop_group(proc: subprocess.Popen) -> None:
    """The command and its engine children (its own process group, started with it)."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _waited(proc: subprocess.Popen, seconds: float) -> bool:
    """Whether the command ended within `seconds`."""
    try:
        proc.wait(timeout=max(seconds, 0.0))
        return True
    except subprocess.TimeoutExpired:
        return False


def run_gpusplit(args: list[str], stem: Path, timeout: float, hog: tuple[float, float, int] | None = None) -> Ran:
    """`python -m gpusplit ARGS`, stdout to STEM.out and stderr to STEM.log, within `timeout`
    seconds; `hog` (delay, seconds, processes): hogs started `delay` into it and stopped after `seconds`."""
    out, log = stem.with_suffix(".out"), stem.with_suffix(".log")
    hogs: list[subprocess.Popen] = []
    hog_span = None
    with out.open("wb") as stdout, log.open("wb") as stderr:
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "gpusplit", *args], stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=stderr, start_new_session=True, cwd=ROOT)  # fmt: skip
        try:
            if hog is not None and not _waited(proc, hog[0]):
                hogs = start_hogs(hog[2])
                hog_start = time.monotonic() - started
                _waited(proc, hog[1])
                stop(hogs)
                hog_span = (hog_start, time.monotonic() - started)
            rc: int | None = proc.wait(timeout=max(timeout - (time.monotonic() - started), 1.0))
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            stop(hogs)
            if proc.poll() is None:
                _stop_group(proc)
        return Ran(rc, time.monotonic() - started, out, log, hog_span)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(errors="replace"))
    except (OSError, json.JSONDecodeError):
        return None


def bench(
    ctx: Context, name: str, threads: int, tests: list[str] | None = None, hog: tuple[float, float, int] | None = None
) -> tuple[Ran, Path]:
    """One `gpusplit bench` of the context's model on the CPU at `threads`, its records in NAME.jsonl."""
    results = ctx.scratch / f"{name}.jsonl"
    results.unlink(missing_ok=True)  # --output appends
    args = ["bench", str(ctx.model), "-t", str(threads), *(tests or ctx.bench_tests()), "--output", str(results)]
    return run_gpusplit(args, ctx.scratch / name, ctx.sizes.bench_timeout_s, hog), results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# the sections


def noise(ctx: Context) -> dict[str, Any]:
    """Ten identical bench runs: each run's figures per test, and how far their means spread."""
    runs = []
    for i in range(ctx.sizes.noise_runs):
        if i:
            time.sleep(ctx.sizes.gap_s)
        ran, results = bench(ctx, f"noise-{i + 1:02d}", ctx.threads)
        runs.append({"run": i + 1, "file": rel(results), **ran.as_dict(), "tests": run_figures(read_jsonl(results))})
        print(f"  noise run {i + 1}: {ran.seconds:.0f} s, exit {ran.rc}", file=sys.stderr, flush=True)
    tests = list(dict.fromkeys(t for r in runs for t in r["tests"]))
    summary = {t: spread([r["tests"][t]["mean"] for r in runs if "mean" in r["tests"].get(t, {})]) for t in tests}
    return {"threads": ctx.threads, "tests": ctx.bench_tests(), "gap_s": ctx.sizes.gap_s, "runs": runs, "spread": summary}


def compare(ctx: Context, a: Path, b: Path, name: str) -> dict[str, Any]:
    """`bench --compare a --compare b --fail-slower GATE_PCT -o json`: its exit and rows."""
    ran = run_gpusplit(["bench", "--compare", str(a), "--compare", str(b), "--fail-slower", f"{GATE_PCT:g}", "-o", "json"],
                   ctx.scratch / name, 120.0)  # fmt: skip
    doc = read_json(ran.stdout)
    rows = doc.get("rows", []) if isinstance(doc, dict) else []
    return {
        "a": rel(a), "b": rel(b), **ran.as_dict(), "fired": ran.rc == EXIT_SLOWER,
        "rows": [{k: r.get(k) for k in ("test", "change_pct", "change_low_pct", "change_high_pct", "verdict", "a_runs_aside",
                                        "b_runs_aside")} for r in rows],
    }  # fmt: skip


def gates(ctx: Context) -> dict[str, Any]:
    """The gate over disjoint halves of the identical runs (never to fire), and half the threads
    against full (always to fire), RUNS_PER_SIDE runs a side."""
    measured = ctx.results.get("noise")
    if not measured:
        raise SystemExit("busy.py: the gates compare the noise section's runs: run it first (--only noise)")
    files = [ROOT / r["file"] for r in measured["runs"] if r["rc"] == 0 and (ROOT / r["file"]).is_file()]
    per_side = min(RUNS_PER_SIDE, len(files) // 2)  # fewer where noise runs failed: said in the doc
    identical = []
    for k, (a, b) in enumerate(gate_splits(len(files), per_side)):
        name = f"gate-{k + 1:02d}"
        side_a = joined([files[i] for i in a], ctx.scratch / f"{name}-a.jsonl")
        side_b = joined([files[i] for i in b], ctx.scratch / f"{name}-b.jsonl")
        identical.append({"a_runs": [i + 1 for i in a], "b_runs": [i + 1 for i in b], **compare(ctx, side_a, side_b, name)})
    print(f"  identical gates fired: {sum(g['fired'] for g in identical)} of {len(identical)}", file=sys.stderr, flush=True)
    # Full and half runs interleaved: the machine drifts over minutes, and the gate is to see the
    # threads, not the drift since the noise runs.
    half = []
    for k in range(ctx.sizes.half_rounds):
        full_files, half_files, ran = [], [], []
        for i in range(RUNS_PER_SIDE):
            for threads, kind, out in ((ctx.threads, "full", full_files), (ctx.half_threads, "half", half_files)):
                time.sleep(ctx.sizes.gap_s)
                run, path = bench(ctx, f"{kind}-{k + 1}-{i + 1}", threads)
                ran.append(run.rc)
                out.append(path)
        name = f"gate-half-{k + 1}"
        side_a = joined([f for f in full_files if f.is_file()], ctx.scratch / f"{name}-a.jsonl")
        side_b = joined([f for f in half_files if f.is_file()], ctx.scratch / f"{name}-b.jsonl")
        gate = compare(ctx, side_a, side_b, name)
        half.append({"bench_exits": ran, **gate})
        print(f"  half-thread gate {k + 1}: exit {gate['rc']}", file=sys.stderr, flush=True)
    return {"pct": GATE_PCT, "per_side": per_side, "identical": identical, "sweep": sweep(files, per_side=per_side),
            "noise_runs": len(files), "half_per_side": RUNS_PER_SIDE,
            "threads": ctx.threads, "half_threads": ctx.half_threads, "half": half}  # fmt: skip


def _probe_args(rpc: list[str] | None = None) -> list[str]:
    return ["devices", "--probe", "--json", *(["--rpc", ",".join(rpc)] if rpc else [])]


def _probe_codes_known() -> bool:
    """Whether this build's reason codes hold the probe's notes of other work at all."""
    from gpusplit.base.reasons import CODES

    return any(code in CODES for code in NOTICED_CODES)


def probe_refused(ran: Ran) -> bool:
    """The probe stopped (exit 1) because other work disturbed every device it measured: no JSON
    then, only its error line, whose hint names the variable that would keep such figures (the
    variable's name, an interface, rather than the message's wording)."""
    from gpusplit.base.contention import ENV

    if ran.rc != 1:
        return False
    try:
        lines = ran.log.read_text(errors="replace")[-4000:].strip().splitlines()
    except OSError:
        return False
    return bool(lines) and ENV in lines[-1]  # the error line is the last


def hog(ctx: Context) -> dict[str, Any]:
    """A hog started HOG_DELAY_S into a CPU probe and a short tune, BENCH_HOG_DELAY_S into a bench: noticed?"""
    spec = (HOG_DELAY_S, ctx.hog_seconds, ctx.hogs)
    bench_spec = (BENCH_HOG_DELAY_S, ctx.hog_seconds, ctx.hogs)
    probe_known = _probe_codes_known()
    rows = []
    for i in range(ctx.sizes.hog_tries):
        for kind in ("bench", "probe", "tune"):
            name = f"hog-{kind}-{i + 1}"
            if kind == "bench":
                ran, results = bench(ctx, name, ctx.threads, list(ctx.sizes.hog_bench) or None, bench_spec)
                seen = seen_in(read_jsonl(results))
            elif kind == "probe":
                ran = run_gpusplit(_probe_args(), ctx.scratch / name, ctx.sizes.probe_timeout_s, spec)
                seen = seen_in([read_json(ran.stdout)])
                seen.present |= probe_known
                if probe_refused(ran):
                    seen.noticed = True
                    seen.codes.append(REFUSED)
            else:
                trials = ctx.scratch / f"{name}-trials.jsonl"
                trials.unlink(missing_ok=True)  # --trials appends
                args = ["tune", str(ctx.model), "--budget", f"{ctx.sizes.tune_budget_s}s", "--json", "--trials", str(trials)]
                ran = run_gpusplit(args, ctx.scratch / name, ctx.sizes.tune_budget_s + 300.0, spec)
                seen = seen_in([read_json(ran.stdout), *read_jsonl(trials)])
            # the hog stopped before the command ended: it ran inside it for its whole time
            inside = ran.hog is not None and ran.rc is not None and ran.hog[1] < ran.seconds
            rows.append({"kind": kind, "try": i + 1, **ran.as_dict(), "inside": inside, **seen.as_dict()})
            print(f"  hog in {kind} {i + 1}: noticed {seen.noticed} (present {seen.present}), {ran.seconds:.0f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
    return {
        "delay_s": HOG_DELAY_S,
        "bench_delay_s": BENCH_HOG_DELAY_S,
        "seconds": ctx.hog_seconds,
        "hogs": ctx.hogs,
        "rows": rows,
    }


def probe_time(ctx: Context) -> dict[str, Any]:
    """`devices --probe` timed: the CPU alone, then the CPU and two one-thread loopback workers."""
    from prediction import start_worker

    from gpusplit.jobs.probe import probe_models

    probe_models()  # written once into this run's cache folder: the timed probes measure, not write
    cpu = []
    for i in range(ctx.sizes.probe_runs):
        ran = run_gpusplit(_probe_args(), ctx.scratch / f"probe-cpu-{i + 1}", ctx.sizes.probe_timeout_s)
        cpu.append(ran.as_dict())
        print(f"  probe of the CPU {i + 1}: {ran.seconds:.0f} s, exit {ran.rc}", file=sys.stderr, flush=True)
    workers: list[subprocess.Popen] = []
    both = []
    try:
        endpoints = []
        for _ in range(2):
            proc, endpoint = start_worker(1, free_port())
            workers.append(proc)
            endpoints.append(endpoint)
        if ctx.sizes.untimed_probe:  # the first over these workers, untimed
            run_gpusplit(_probe_args(endpoints), ctx.scratch / "probe-workers-untimed", ctx.sizes.probe_timeout_s)
        for i in range(ctx.sizes.probe_runs):
            ran = run_gpusplit(_probe_args(endpoints), ctx.scratch / f"probe-workers-{i + 1}", ctx.sizes.probe_timeout_s)
            both.append(ran.as_dict())
            print(f"  probe of the CPU and two workers {i + 1}: {ran.seconds:.0f} s, exit {ran.rc}", file=sys.stderr, flush=True)
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    return {"cpu": cpu, "workers": both, "untimed_first": ctx.sizes.untimed_probe, "target_s": PROBE_TARGET_S}


RUNNERS: dict[str, Callable[[Context], dict[str, Any]]] = {"noise": noise, "gates": gates, "hog": hog, "probe": probe_time}


# ---------------------------------------------------------------------------------------------
# the doc


def cpu_facts() -> dict[str, Any]:
    """The CPU's model name, cores and whether it has AMX (int8), from /proc/cpuinfo."""
    name, amx = None, False
    try:
        with open("/proc/cpuinfo", "rb") as f:  # a kernel file: one bounded read
            text = f.read(1 << 20).decode("ascii", "replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name is None:
            name = value.strip()
        if key.strip() == "flags":
            amx |= "amx_int8" in value.split()
    return {"cpu": name or "unknown CPU", "cores": os.cpu_count(), "amx_int8": amx}


def _num(x: Any, digits: int = 1) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def _interval(value: Any) -> str:
    if value == NOT_FOUND:
        return NOT_FOUND
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"{value[0]:.1f} .. {value[1]:.1f}"
    return "none (one repetition)" if value is None else "-"


def _rc(rc: int | None) -> str:
    return "timed out" if rc is None else str(rc)


def _flag(value: Any) -> str:
    return NOT_FOUND if value == NOT_FOUND else "yes" if value is True else "no" if value is False else "-"


def _provenance(section: dict[str, Any], head: dict[str, Any]) -> list[str]:
    """A section measured by an earlier invocation than the doc's says so."""
    if all(section.get(k) == head.get(k) for k in ("command", "commit", "date")):
        return []
    return [f"Measured on {section.get('date')} by `{section.get('command')}` at commit {section.get('commit')}.", ""]


def render_noise(s: dict[str, Any]) -> tuple[list[str], str]:
    tests = list(s["spread"])
    lines = [
        f"`gpusplit bench MODEL -t {s['threads']} {' '.join(s['tests'])}` run {len(s['runs'])} times, "
        f"{s['gap_s']:g} s apart. Each run's mean t/s and 95 % interval (from the record's `mean_ts` and "
        "`interval_ts`; a mean marked * is the samples' own, the record having no `mean_ts`), its outliers set "
        "aside and whether its contention was marked contended (with the CPUs other processes kept busy).",
        "",
        "| run | " + " | ".join(f"{t} mean | {t} interval | {t} outliers | {t} contended" for t in tests) + " | exit |",
        "| ---: | " + " | ".join("---: | ---: | ---: | ---" for _ in tests) + " | ---: |",
    ]
    for r in s["runs"]:
        cells = []
        for t in tests:
            f = r["tests"].get(t, {})
            if "mean" not in f:
                cells.append(f"failed: {f.get('error', 'no record')} | - | - | -")
                continue
            star = "" if f["mean_from"] == "mean_ts" else "*"
            busy = "" if f.get("others_cpus") is None else f" ({f['others_cpus']:.2f})"
            cells.append(f"{f['mean']:.1f}{star} | {_interval(f['interval'])} | {f['outliers']} | {_flag(f['contended'])}{busy}")
        lines.append(f"| {r['run']} | " + " | ".join(cells) + f" | {_rc(r['rc'])} |")
    lines += [
        "",
        "| test | slowest .. fastest mean | fastest / slowest - 1 | coefficient of variation |",
        "| --- | ---: | ---: | ---: |",
    ]
    verdicts = []
    for t, sp in s["spread"].items():
        if sp is None:
            lines.append(f"| {t} | - | - | - |")
            continue
        lines.append(f"| {t} | {sp['low']:.1f} .. {sp['high']:.1f} | {sp['spread_pct']:.1f} % | {sp['cv_pct']:.1f} % |")
        verdicts.append(f"{t} {sp['spread_pct']:.1f} % (CV {sp['cv_pct']:.1f} %)")
    return lines, f"spread of {len(s['runs'])} identical runs (no target): " + ("; ".join(verdicts) or "none measured")


def _changes(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no rows compared"
    return "; ".join(
        f"{r['test']} {_num(r['change_pct'])} % ({_num(r['change_low_pct'])} .. {_num(r['change_high_pct'])})" for r in rows
    )


def render_gates(s: dict[str, Any]) -> tuple[list[str], str]:
    ident, half, per_side = s["identical"], s["half"], s["per_side"]
    fired = sum(g["fired"] for g in ident)
    half_fired = sum(g["fired"] for g in half)
    lines = [
        f"`gpusplit bench --compare A --compare B --fail-slower {s['pct']:g}` exits {EXIT_SLOWER} when a row of B is slower than "
        f"A's by more than {s['pct']:g} % even at the optimistic end of the change's 95 % interval. Each side is a file of "
        f"{per_side} benches appended one after another, as the README's CI job writes it: the interval is over the runs' "
        "means (bench-compare/4), because one run's repetitions agree within a few percent while runs minutes apart "
        "differ by tens (section 1), and a gate judged on one run a side fires on that drift alone.",
        "",
        f"**Identical runs: {fired} of {len(ident)} gates fired** (target 0). A and B: disjoint sets of {per_side} of the "
        f"{s.get('noise_runs', 10)} runs of section 1 that ran, drawn with a fixed seed; the gates share runs, so the next "
        "table judges every split.",
        "",
        "| A runs -> B runs | exit | fired | change % (interval) per test |",
        "| --- | ---: | --- | --- |",
    ]
    for g in ident:
        a, b = (",".join(map(str, g[side])) for side in ("a_runs", "b_runs"))
        lines.append(f"| {a} -> {b} | {_rc(g['rc'])} | {'yes' if g['fired'] else 'no'} | {_changes(g['rows'])} |")
    sw = s.get("sweep")
    if sw:
        lines += [
            "",
            f"Every ordered split of those runs into two sides of {per_side} ({sw['splits']}), judged by the same code "
            "in-process: how many would fire at each `--fail-slower`.",
            "",
            "| --fail-slower | splits that fire |",
            "| ---: | ---: |",
            *(
                f"| {f['pct']:g} % | {f['fired']} of {sw['splits']} ({100 * f['fired'] / sw['splits']:.1f} %) |"
                for f in sw["fired"]
            ),
        ]
    lines += [
        "",
        f"**Half the threads ({s['half_threads']} of {s['threads']}): {half_fired} of {len(half)} gates fired** (target: "
        f"all). Each round: {s.get('half_per_side', per_side)} full-thread benches interleaved with as many at half the threads, the half "
        "runs gated against the full ones.",
        "",
        "| round | bench exits | gate exit | fired | change % (interval) per test |",
        "| ---: | --- | ---: | --- | --- |",
    ]
    for k, g in enumerate(half):
        exits = ",".join(_rc(rc) for rc in g["bench_exits"])
        lines.append(f"| {k + 1} | {exits} | {_rc(g['rc'])} | {'yes' if g['fired'] else 'no'} | {_changes(g['rows'])} |")
    if s["half_threads"] == s["threads"]:
        lines += ["", "This machine has one CPU: half the threads is all of them, and the second check says nothing."]
    met = fired == 0 and bool(ident) and half_fired == len(half) and bool(half)
    return lines, (
        f"gates {'met' if met else 'NOT met'}: {fired} of {len(ident)} identical-run gates fired (target 0), "
        f"{half_fired} of {len(half)} half-thread gates fired (target all), {per_side} runs a side"
    )


def render_hog(s: dict[str, Any]) -> tuple[list[str], str]:
    rows = s["rows"]
    what = "one process" if s["hogs"] == 1 else f"{s['hogs']} processes"
    lines = [
        f'A CPU hog (`python -c "{HOG_CODE}"`, {what}) started {s["delay_s"]:g} s into the probe and the tune, '
        f"{s.get('bench_delay_s', s['delay_s']):g} s into the bench (once its timed repetitions run: a hog during its "
        f"load and warm-up slows nothing it times), and stopped {s['seconds']:g} s later. *Noticed*: a bench record's or tune trial's `contention` marked contended, or "
        f"the probe's notes {' / '.join(NOTICED_CODES)}, or the probe refusing its figures (exit 1, its error "
        "naming GPUSPLIT_CONTENTION). *Inside*: the command was still running when the hog "
        f"stopped. *others CPUs*: the most CPUs other processes kept busy in any one contention figure. "
        f"`{NOT_FOUND}`: the output carries no contention figure (for the probe: this build has neither note code).",
        "",
        "| command | try | seconds | hog from .. to (s) | inside | noticed | others CPUs | note codes | exit |",
        "| --- | ---: | ---: | --- | --- | --- | ---: | --- | ---: |",
    ]
    for r in rows:
        span = "-" if r["hog"] is None else f"{r['hog'][0]:.1f} .. {r['hog'][1]:.1f}"
        said = ("yes" if r["noticed"] else "no") if r["present"] else NOT_FOUND
        lines.append(
            f"| {r['kind']} | {r['try']} | {r['seconds']:.1f} | {span} | {'yes' if r['inside'] else 'no'} | {said} "
            f"| {_num(r['others_cpus'], 2)} | {', '.join(r['codes']) or '-'} | {_rc(r['rc'])} |"
        )
    noticed = sum(bool(r["noticed"]) for r in rows)
    verdict = f"hog {'met' if rows and noticed == len(rows) else 'NOT met'}: noticed in {noticed} of {len(rows)} commands"
    outside = sum(not r["inside"] for r in rows)
    if outside:
        verdict += f"; {outside} ended before the hog stopped, or timed out"
    missing = sorted({r["kind"] for r in rows if not r["present"]})
    if missing:
        verdict += f" (no contention figure found in: {', '.join(missing)})"
    return lines, verdict


def render_probe(s: dict[str, Any]) -> tuple[list[str], str]:
    lines = [
        "`gpusplit devices --probe --json` (the CPU alone) and `... --rpc A,B` (the CPU and two loopback `gpusplit worker`s, "
        "one thread each, started for this), wall clock; the probe models written beforehand"
        + (", and one untimed probe over the workers first." if s["untimed_first"] else "."),
        "",
        "| probe | run | seconds | exit |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, key in (("the CPU", "cpu"), ("the CPU and two workers", "workers")):
        for k, r in enumerate(s[key]):
            lines.append(f"| {label} | {k + 1} | {r['seconds']:.1f} | {_rc(r['rc'])} |")
    ok = [r["seconds"] for r in s["workers"] if r["rc"] == 0]
    met = bool(ok) and len(ok) == len(s["workers"]) and max(ok) <= s["target_s"]
    return lines, (
        f"probe time {'met' if met else 'NOT met'}: the CPU and two workers took "
        + (f"{min(ok):.0f} .. {max(ok):.0f} s" if ok else "- (no run succeeded)")
        + f" (target <= {s['target_s']:g} s)"
    )


RENDERERS = {"noise": ("1. Noise: identical runs", render_noise), "gates": ("2. The regression gate", render_gates),
             "hog": ("3. Other work noticed", render_hog), "probe": ("4. The probe's time", render_probe)}  # fmt: skip


def written_by(head: dict[str, Any]) -> str:
    """A doc's provenance: the command, the commit, the machine (cpu_facts) and the date."""
    machine = head["machine"]
    return (
        f"Written by `{head['command']}` at commit {head['commit']} on {machine['cpu']}, {machine['cores']} cores, "
        f"amx_int8 {'yes' if machine['amx_int8'] else 'no'}, on {head['date']}"
    )


def render(results: dict[str, Any]) -> str:
    head = results["head"]
    lines = [
        "# A busy machine: noise, the regression gate, other work noticed, the probe's time",
        "",
        f"{written_by(head)} (model: {head['model']}).",
    ]
    if head.get("quick"):
        lines += [
            "",
            "*--quick: the demo model and tiny tests, each case once: these figures show the script runs, not the targets.*",
        ]
    body, verdicts = [], []
    for name in SECTIONS:
        section = results.get(name)
        if section is None:
            continue
        title, renderer = RENDERERS[name]
        table, verdict = renderer(section)
        verdicts.append(verdict)
        body += ["", f"## {title}", "", *_provenance(section, head), *table]
    lines += ["", "## Verdicts", "", *(f"- {v}" for v in verdicts), *body]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------


def prepare_model(quick: bool, folder: Path) -> tuple[Path, str]:
    if quick:
        from gpusplit.api import demo_model_path

        return Path(demo_model_path()), "the demo model (dense f16, 7 MB)"
    from gpusplit.jobs.runner import quantize
    from gpusplit.synthetic.real_shaped import REAL_SHAPED, write_real_shaped

    path = write_real_shaped(folder, REAL_MODEL, lambda s, d, f: quantize(s, d, f, timeout=3600))
    return path, f"{REAL_SHAPED[REAL_MODEL].label} (real shapes, random weights)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/busy.md")
    parser.add_argument("--quick", action="store_true", help="the demo model, tiny tests, each case once (a smoke run)")
    parser.add_argument("--only", choices=SECTIONS, help="run this section only, keeping the others' last figures")
    parser.add_argument("--hog-seconds", type=float, default=3.0, help="how long each hog runs (default 3)")
    parser.add_argument("--hogs", type=int, default=1, help="hog processes at once (default 1)")
    args = parser.parse_args()
    if args.hog_seconds <= 0 or args.hogs < 1:
        parser.error("--hog-seconds must be above 0 and --hogs at least 1")

    scratch = ROOT / "scratch" / "busy" / ("quick" if args.quick else "")
    scratch.mkdir(parents=True, exist_ok=True)
    # set before gpusplit is imported here: the demo model, probe models and probe figures go there
    os.environ["GPUSPLIT_CACHE_DIR"] = str(scratch / "cache")
    from gpusplit.documents.provenance import commit

    store = scratch / "results.json"
    earlier = read_json(store) if args.only else None
    results: dict[str, Any] = earlier if isinstance(earlier, dict) else {}
    model, label = prepare_model(args.quick, ROOT / "scratch" / "busy" / "models")
    head = {
        "command": shlex.join(["python", "benchmarks/busy.py", *sys.argv[1:]]),
        "commit": commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": cpu_facts(),
        "model": label,
        "quick": args.quick,
    }
    results["head"] = head
    ctx = Context(Sizes.of(args.quick), scratch, model, label, os.cpu_count() or 1, args.hog_seconds, args.hogs, results)
    out = Path(args.out)
    for name in [args.only] if args.only else SECTIONS:
        print(f"busy.py: {name}", file=sys.stderr, flush=True)
        started = time.monotonic()
        section = RUNNERS[name](ctx)
        results[name] = {**section, **{k: head[k] for k in ("command", "commit", "date")},
                         "section_s": round(time.monotonic() - started, 1)}  # fmt: skip
        write_atomic(store, json.dumps(results, indent=1))
        write_atomic(out, render(results))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
