"""Coverage-guided fuzzing of the document readers (atheris/libFuzzer): devices files, and the
report's inputs (plans, bench JSONL, tune trials JSONL and documents, run documents), each seeded
with small valid documents the library writes and mutated byte by byte (libFuzzer) and by structure
(a JSON value replaced, dropped or nested deep; a JSONL line dropped, doubled or cut short).

    pip install atheris
    python benchmarks/fuzz_documents.py --minutes 1 [--kind devices] [--corpus DIR] [--crashes DIR]

Each input goes through the path the CLI reads it by: --devices-file (api.detect_devices), a report
input (report.read_source), and for its kind also --plan (load_plan_document), bench --resume
(check_results_file, read_records) or tune --resume (check_trials_file, read_trials). The property:
any input is read or refused with a GpusplitError (which the CLI turns into one line), within 1 s,
under 400 MB. Anything else (another exception, a hang, memory growth) is a crash; libFuzzer writes
the input to --crashes. Without --kind, every kind runs for --minutes in a process of its own, and
the script prints each kind's executions, slowest input and peak RSS, and fails if any kind did.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

KINDS = ("devices", "plan", "bench", "tune", "run")
SLOW_SECONDS = 1.0
RSS_LIMIT_MB = 400
MAX_LEN = 65536
STATS = {"execs": 0, "slow": 0, "slowest": 0.0}


# ---------------------------------------------------------------------------------------------
# Seeds: small valid documents of each kind, written by the library


def seeds(kind: str) -> list[bytes]:
    from records import bench_record

    from gpusplit import api
    from gpusplit.documents.render import run_document, trial_document, tune_document
    from gpusplit.documents.results import trial_record
    from gpusplit.jobs.runner import Recovery, RunResult, Timings
    from gpusplit.jobs.tune import Trial, TuneResult
    from gpusplit.planning.request import Request
    from gpusplit.synthetic import write_tiny_model

    def dump(doc: Any) -> bytes:
        return json.dumps(doc, indent=2).encode()

    def lines(records: list[dict[str, Any]]) -> bytes:
        return b"".join(json.dumps(r).encode() + b"\n" for r in records)

    if kind == "bench":
        records = [bench_record("mode=auto", "pp16"), bench_record("mode=auto", "tg4"),
                   bench_record("mode=layer", "tg4", status="failed", samples_ts=[], avg_ts=None, stddev_ts=None,
                                error="llama.cpp refused the batch", log_tail=["decode: failed"])]  # fmt: skip
        return [lines(records), lines(records[:1]), dump(records), lines(records)[:-30]]
    with tempfile.TemporaryDirectory() as folder:
        model_path = Path(folder) / "tiny.gguf"
        write_tiny_model(model_path, "dense-f16")
        model = api.read_model(model_path)
    inventory = api.detect_devices(gpus=["8GiB", "RTX 4090"])
    plan = api.plan(model, inventory)
    if kind == "devices":
        return [dump(api.document(inventory)), dump(api.document(api.detect_devices(gpus=["2xA100-80GB"])))]
    if kind == "plan":
        return [dump(api.document(plan)), dump(api.document(api.plan(model, inventory, Request(n_ctx=1024, split_mode="row"))))]
    if kind == "run":
        timings = Timings(load_ms=120.0, prompt_tokens=8, prompt_tps=900.0, gen_tokens=16, gen_tps=80.0, ttft_ms=9.0)
        result = RunResult(plan, "Hello there", timings, {"CPU": {"weights": 1 << 20, "kv": 1 << 16, "compute": 1 << 18}},
                           recovery=Recovery("SIGSEGV", ("CPU_REPACK",)), host_weights={"CPU_Mapped": 1 << 20})  # fmt: skip
        return [dump(run_document(result))]
    trials = [
        Trial(Request(), strategy="planner", predicted_tg=90.0, measured_tg=85.0, score=85.0, seconds=3.0, samples=[85.0]),
        Trial(Request(n_ubatch=256, n_batch=256), measured_tg=80.0, score=80.0, samples=[80.0]),
        Trial(Request(flash_attn=True), fits=False, status="skipped"),
        Trial(Request(), measured_tg=86.0, score=86.0, samples=[86.0], round=1),
    ]
    tuned = TuneResult(trials=trials[:3], best=trials[0], plan=plan, measured=True, stopped="done", elapsed_s=9.5,
                        runner_up=trials[1].key, margin_pct=6.2, spread_pct=1.5, chosen="fastest")  # fmt: skip
    unmarked = {k: v for k, v in trial_document(trials[1]).items() if k != "request"} | {"config": {"ubatch": 256}}
    return [
        lines([trial_record(t) for t in trials]),
        lines([unmarked, trial_record(trials[0])]),
        dump(tune_document(tuned, "tg", 120.0)),
    ]


# ---------------------------------------------------------------------------------------------
# Structure mutations: a JSON value or a JSONL line changed as a hostile or careless hand would

HOSTILE_VALUES: list[Any] = [
    None, True, False, 0, -1, 2**31, 2**63, 2**64 + 1, -(2**63) - 1, 1e308, -1e308, 5e-324, 0.5, "", "x" * 5000,
    "\u202e\u0000\ud7ff", "../../etc/passwd", [], {}, [None], {"schema": "gpusplit.plan/2"}, "gpusplit.bench/1",
    "gpusplit.trial/1", "gpusplit.devices/1", "gpusplit.run/1", "gpusplit.tune/1",
]  # fmt: skip


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _nodes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _nodes(item, (*path, index))
    return out


def _deep(rng: random.Random) -> Any:
    value: Any = rng.choice([1, "x", None])
    for _ in range(rng.choice([10, 70, 300, 3000])):
        value = [value] if rng.random() < 0.5 else {"a": value}
    return value


def _mutate_value(doc: Any, rng: random.Random) -> Any:
    path = rng.choice(_nodes(doc))
    if not path:
        return rng.choice(HOSTILE_VALUES + [_deep(rng)])
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    op = rng.randrange(6)
    if op == 0 and isinstance(parent, dict):
        del parent[last]
    elif op == 1 and isinstance(parent, dict):
        parent[rng.choice(["extra", "schema", "devices", "trials", "plan", f"{last}_"])] = rng.choice(HOSTILE_VALUES)
    elif op == 2 and isinstance(parent, list):
        parent.insert(last, parent[last])
    elif op == 3:
        parent[last] = _deep(rng)
    elif op == 4:
        parent[last] = float(rng.choice(["nan", "inf", "-inf"]))  # Python's json writes them; JSON has none
    else:
        parent[last] = rng.choice(HOSTILE_VALUES)
    return doc


def structure_mutate(data: bytes, rng: random.Random) -> bytes | None:
    """One structural change of a JSON document or one line of JSONL, or None where `data` is not
    JSON any more (then libFuzzer's byte mutations go on alone)."""
    rows = data.split(b"\n")
    if rng.random() < 0.3 and len(rows) > 1:
        at = rng.randrange(len(rows))
        op = rng.randrange(5)
        if op == 0:
            del rows[at]
        elif op == 1:
            rows.insert(at, rows[at])
        elif op == 2:
            rows[at] = rows[at][: rng.randrange(len(rows[at]) + 1)]  # cut short, as a kill does
        elif op == 3:
            rows.insert(at, rng.choice([b"", b"   ", b"{", b"}", b"[]", b"null", b"\xff\xfe", b"{" * 2000]))
        else:
            rows[at], rows[-1] = rows[-1], rows[at]
        return b"\n".join(rows)
    index: int | None = None
    try:
        target = json.loads(data)
    except (ValueError, RecursionError):
        candidates = [i for i, row in enumerate(rows) if row.strip()]
        if not candidates:
            return None
        index = rng.choice(candidates)
        try:
            target = json.loads(rows[index])
        except (ValueError, RecursionError):
            return None
    try:
        text = json.dumps(_mutate_value(target, rng), indent=rng.choice([None, 1]) if index is None else None).encode()
    except (ValueError, RecursionError, UnicodeEncodeError):
        return None
    if index is None:
        return text
    rows[index] = text
    return b"\n".join(rows)


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    import atheris

    rng = random.Random(seed)
    if rng.random() < 0.5:
        mutated = structure_mutate(data, rng)
        if mutated is not None and len(mutated) <= max_size:
            return mutated
    return atheris.Mutate(data, max_size)


# ---------------------------------------------------------------------------------------------
# The readers


def make_target(kind: str, scratch: Path, deadline: float = float("inf")) -> Any:
    from gpusplit import api
    from gpusplit.base.errors import GpusplitError
    from gpusplit.cli.errors import describe
    from gpusplit.documents import results
    from gpusplit.documents.report import read_source

    path = scratch / f"input.{'jsonl' if kind in ('bench', 'tune') else 'json'}"
    warnings: list[str] = []

    def resume_bench() -> None:
        results.check_results_file(path, "resume_file")
        results.read_records(path)

    def resume_tune() -> None:
        results.check_trials_file(path, "resume_file")
        results.read_trials(path)

    # each reader on its own: one that refuses the input must not hide another's crash
    by_kind: dict[str, Callable[[], object]] = {
        "devices": lambda: api.detect_devices(devices_file=path),
        "plan": lambda: api.load_plan_document(path),
        "bench": resume_bench,
        "tune": resume_tune,
    }
    readers: list[Callable[[], object]] = [lambda: read_source(path, warnings.append)]
    if kind in by_kind:
        readers.append(by_kind[kind])

    def target(data: bytes) -> None:
        path.write_bytes(data)
        warnings.clear()
        started = time.monotonic()
        for read in readers:
            try:
                read()
            except GpusplitError as exc:
                line, code = describe(exc)  # the CLI's one line: rendering it must not fail either
                if not line or code not in (1, 2):
                    raise RuntimeError(f"{type(exc).__name__} renders as {line!r}, exit {code}") from exc
        elapsed = time.monotonic() - started
        STATS["execs"] += 1
        STATS["slowest"] = max(STATS["slowest"], elapsed)
        if elapsed > SLOW_SECONDS:
            STATS["slow"] += 1
            raise RuntimeError(f"hang: {elapsed:.2f} s on a {len(data)}-byte {kind} input")
        if time.monotonic() > deadline:
            report(kind)  # libFuzzer's own end (-max_total_time) runs no Python at exit
            sys.stderr.flush()
            os._exit(0)

    return target


def report(kind: str) -> None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"fuzz_documents {kind}: {STATS['execs']} executions, {STATS['slow']} hangs > {SLOW_SECONDS:g} s, "
        f"slowest {STATS['slowest'] * 1000:.1f} ms, peak RSS {peak:.0f} MiB",
        file=sys.stderr,
        flush=True,
    )


def fuzz(kind: str, args: argparse.Namespace) -> int:
    import atexit

    import atheris

    with atheris.instrument_imports(include=["gpusplit"]):
        import gpusplit.base.journal
        import gpusplit.base.jsonio
        import gpusplit.devices
        import gpusplit.documents.read
        import gpusplit.documents.report
        import gpusplit.documents.results  # noqa: F401

    corpus = Path(args.corpus) / kind if args.corpus else Path(tempfile.mkdtemp(prefix=f"documents-{kind}-"))
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds(kind)):
        (corpus / f"seed-{i:03d}").write_bytes(seed[:MAX_LEN])
    crashes = Path(args.crashes)
    crashes.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"documents-{kind}-input-"))
    atexit.register(report, kind)  # a crash: the figures so far, beside libFuzzer's report
    seconds = max(1, int(args.minutes * 60))
    libfuzzer_args = [
        sys.argv[0],
        str(corpus),
        f"-max_total_time={seconds + 30}",  # the target ends the run at `seconds`, with its figures
        "-timeout=5",
        f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-max_len={MAX_LEN}",
        f"-artifact_prefix={crashes}{os.sep}{kind}-",
        "-print_final_stats=1",
    ]
    target = make_target(kind, scratch, time.monotonic() + seconds)
    atheris.Setup(libfuzzer_args, target, custom_mutator=custom_mutator)
    atheris.Fuzz()
    return 0


def every_kind(args: argparse.Namespace) -> int:
    """Each kind in a process of its own (libFuzzer runs one target per process); one line each."""
    failed = []
    for kind in KINDS:
        command = [sys.executable, __file__, "--kind", kind, "--minutes", str(args.minutes), "--crashes", args.crashes]
        if args.corpus:
            command += ["--corpus", args.corpus]
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=args.minutes * 60 + 300)  # fmt: skip
        tail = done.stdout.strip().splitlines()
        summary = next((line for line in reversed(tail) if line.startswith("fuzz_documents ")), f"{kind}: no summary")
        print(summary if done.returncode == 0 else f"FAILED (exit {done.returncode}) {summary}", file=sys.stderr, flush=True)
        if done.returncode != 0:
            failed.append(kind)
            start = next((i for i, line in enumerate(tail) if "Uncaught Python exception" in line or "ERROR:" in line), -40)
            print("\n".join(tail[start:][:60]), file=sys.stderr, flush=True)
    print(f"fuzz_documents: {len(KINDS) - len(failed)} of {len(KINDS)} kinds clean", file=sys.stderr)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=1.0, help="per kind")
    parser.add_argument("--kind", choices=KINDS, default=None, help="one kind (default: each in turn)")
    parser.add_argument("--corpus", default=None, help="corpus folder, one subfolder a kind (kept between runs)")
    parser.add_argument("--crashes", default=str(ROOT / "scratch" / "fuzz-crashes"))
    args = parser.parse_args()
    return fuzz(args.kind, args) if args.kind else every_kind(args)


if __name__ == "__main__":
    sys.exit(main())
