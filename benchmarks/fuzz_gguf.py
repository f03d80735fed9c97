"""Coverage-guided fuzzing of the GGUF header reader (atheris/libFuzzer), seeded with valid
fixtures and one file per hostile class.

    pip install atheris
    python benchmarks/fuzz_gguf.py --minutes 30 [--corpus DIR] [--crashes DIR]

The property: any input gives a ModelInfo or a GGUFError, within 1 s, under 200 MB. Anything else
(another exception, a hang, memory growth) is a crash; libFuzzer writes the input to --crashes, and
each one found becomes a regression fixture in tests/fuzz_regressions/. At the end the script prints
executions, crashes, hangs (> 1 s) and the peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

SLOW_SECONDS = 1.0


def seeds() -> list[bytes]:
    from ggufpack import llama_header
    from hostile import CASES

    out = [build() for _, build, _, _ in CASES]
    out.append(llama_header(n_layer=3, n_vocab=64).build())
    header_only = llama_header()
    header_only.with_data = False
    out.append(header_only.build())
    regressions = ROOT / "tests" / "fuzz_regressions"
    if regressions.is_dir():
        out += [p.read_bytes() for p in sorted(regressions.iterdir()) if p.is_file()]
    return out


STATS = {"execs": 0, "slow": 0, "slowest": 0.0}


def target(data: bytes) -> None:
    from gpusplit.gguf import GGUFError
    from gpusplit.gguf.model import describe
    from gpusplit.gguf.reader import BytesSource, parse_source

    started = time.monotonic()
    try:
        describe(parse_source(BytesSource(data)))
    except GGUFError:
        pass
    elapsed = time.monotonic() - started
    STATS["execs"] += 1
    STATS["slowest"] = max(STATS["slowest"], elapsed)
    if elapsed > SLOW_SECONDS:
        STATS["slow"] += 1
        raise RuntimeError(f"hang: {elapsed:.2f} s on a {len(data)}-byte input")


def report() -> None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"fuzz_gguf: {STATS['execs']} executions, {STATS['slow']} hangs > {SLOW_SECONDS:g} s, "
        f"slowest {STATS['slowest'] * 1000:.1f} ms, peak RSS {peak:.0f} MiB",
        file=sys.stderr,
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--corpus", default=None, help="corpus folder (kept between runs); default: a temporary one")
    parser.add_argument("--crashes", default=str(ROOT / "scratch" / "fuzz-crashes"))
    args = parser.parse_args()
    import atexit

    import atheris

    with atheris.instrument_imports():
        import gpusplit.gguf.model
        import gpusplit.gguf.reader  # noqa: F401

    corpus = Path(args.corpus or tempfile.mkdtemp(prefix="gguf-corpus-"))
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds()):
        (corpus / f"seed-{i:03d}").write_bytes(seed)
    crashes = Path(args.crashes)
    crashes.mkdir(parents=True, exist_ok=True)
    atexit.register(report)
    libfuzzer_args = [
        sys.argv[0],
        str(corpus),
        f"-max_total_time={int(args.minutes * 60)}",
        "-timeout=5",
        "-rss_limit_mb=200",
        "-max_len=65536",
        f"-artifact_prefix={crashes}{os.sep}",
        "-print_final_stats=1",
    ]
    atheris.Setup(libfuzzer_args, target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
