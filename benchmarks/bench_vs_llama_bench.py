"""`gpusplit bench` against llama.cpp's own llama-bench, same model, threads and batch sizes,
interleaved (issue 6's target: gpusplit's tokens/s >= 95 % of llama-bench's on the CPU).

llama-bench is built from the llama.cpp sources vendored in the llama-cpp-python 0.3.36 sdist,
in a scratch folder that is not committed:

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/sdist
    tar xzf /tmp/sdist/llama_cpp_python-0.3.36.tar.gz -C /tmp/sdist
    cmake -S /tmp/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp -B /tmp/lb/build -DCMAKE_BUILD_TYPE=Release \
        -DLLAMA_CURL=OFF -DGGML_RPC=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF
    cmake --build /tmp/lb/build --target llama-bench -j2

    python benchmarks/bench_vs_llama_bench.py --llama-bench /tmp/lb/build/bin/llama-bench [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def llama_bench(binary: str, model: str, threads: int, reps: int) -> dict[str, float]:
    out = subprocess.run(
        [binary, "-m", model, "-p", "512", "-n", "128", "-r", str(reps), "-t", str(threads), "-b", "512", "-ub", "512",
         "-ngl", "0", "-fa", "0", "-ctk", "f16", "-ctv", "f16", "-o", "json"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    rows = json.loads(out)
    return {("pp512" if r["n_prompt"] else "tg128"): r["avg_ts"] for r in rows}


def gpusplit_bench(model: str, threads: int, reps: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "gpusplit", "bench", model, "-p", "512", "-n", "128", "-r", str(reps), "--threads", str(threads),
         "--ngl", "0", "-o", "json"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return {r["test"]: r["avg_ts"] for r in json.loads(out)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-bench", required=True)
    parser.add_argument("--model", default="dense-large-f16")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of each tool")
    parser.add_argument("-r", type=int, default=5, help="repetitions inside each run")
    args = parser.parse_args()
    from gpusplit.synthetic import write_tiny_model

    threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        model = str(write_tiny_model(Path(tmp) / f"{args.model}.gguf", args.model))
        ours: dict[str, list[float]] = {"pp512": [], "tg128": []}
        theirs: dict[str, list[float]] = {"pp512": [], "tg128": []}
        for _ in range(args.rounds):
            for key, value in gpusplit_bench(model, threads, args.r).items():
                ours[key].append(value)
            for key, value in llama_bench(args.llama_bench, model, threads, args.r).items():
                theirs[key].append(value)
    print(f"model {args.model}, CPU, {threads} threads, n_batch = n_ubatch = 512, flash attention off, f16 KV; "
          f"{args.rounds} interleaved rounds of -r {args.r}\n")  # fmt: skip
    print("| test | gpusplit bench (median t/s) | llama-bench (median t/s) | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    for test in ("pp512", "tg128"):
        a, b = statistics.median(ours[test]), statistics.median(theirs[test])
        print(f"| {test} | {a:.1f} | {b:.1f} | {a / b:.3f} | >= 0.95 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
