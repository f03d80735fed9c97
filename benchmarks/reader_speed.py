"""Header reader speed, memory and I/O on a Llama-3.1-70B-shaped header (issue 2's targets).

    python benchmarks/reader_speed.py [--repeat 5] [--skip-gguf-reader]

Targets: `gpusplit inspect --json` < 0.5 s wall end to end; the reader >= 50x faster than
gguf.GGUFReader; peak RSS < 100 MB; bytes read < 2x the header size; `gpusplit --help` < 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD_READER = """
def peak_rss():
    # VmHWM: this process image's high-water mark (ru_maxrss would include the parent's, fork+exec keeps it).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
import json, sys, time
from gpusplit.gguf.model import describe
from gpusplit.gguf.reader import FileSource, parse_source
t = time.perf_counter()
with FileSource(sys.argv[1]) as src:
    f = parse_source(src)
    describe(f)
    read = src.bytes_read
elapsed = time.perf_counter() - t
print(json.dumps({"seconds": elapsed, "bytes_read": read, "header_bytes": f.header_bytes,
                  "peak_rss_bytes": peak_rss()}))
"""

CHILD_GGUF_READER = """
import json, sys, time
import gguf
t = time.perf_counter()
r = gguf.GGUFReader(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - t, "tensors": len(r.tensors)}))
"""


def wall(cmd: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return times


def child(code: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", code, str(path)], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-gguf-reader", action="store_true", help="skip the slow gguf.GGUFReader comparison")
    args = parser.parse_args()

    from gpusplit.synthetic import write_header_only

    gpusplit = [sys.executable, "-m", "gpusplit"]
    with tempfile.TemporaryDirectory() as tmp:
        header_only = write_header_only(Path(tmp) / "llama-3.1-70b.gguf", "llama-3.1-70b")
        sparse = write_header_only(Path(tmp) / "llama-3.1-70b-sparse.gguf", "llama-3.1-70b", sparse=True)
        inspect_times = wall([*gpusplit, "inspect", "--json", str(header_only)], args.repeat)
        help_times = wall([*gpusplit, "--help"], args.repeat)
        plan_times = wall([*gpusplit, "plan", "--json", str(header_only), "--gpu", "RTX 4090", "--gpu", "RTX 3090"], args.repeat)
        readers = [child(CHILD_READER, header_only) for _ in range(args.repeat)]
        reader_s = statistics.median(r["seconds"] for r in readers)
        ref_s = None
        if not args.skip_gguf_reader:
            ref_s = child(CHILD_GGUF_READER, sparse)["seconds"]
        r0 = readers[0]
        rows = [
            ("gpusplit inspect --json (wall, median)", f"{statistics.median(inspect_times):.3f} s", "< 0.5 s"),
            ("gpusplit --help (wall, median)", f"{statistics.median(help_times):.3f} s", "< 0.3 s"),
            ("gpusplit plan --json, 2 GPUs (wall, median)", f"{statistics.median(plan_times):.3f} s", "< 0.5 s"),
            ("reader alone: parse + describe (median)", f"{reader_s:.3f} s", ""),
            ("gguf.GGUFReader on the same header", f"{ref_s:.2f} s" if ref_s else "skipped", ""),
            ("speed-up over gguf.GGUFReader", f"{ref_s / reader_s:.0f}x" if ref_s else "skipped", ">= 50x"),
            ("peak RSS of the reading process", f"{r0['peak_rss_bytes'] / 2**20:.1f} MiB", "< 100 MB"),
            ("header size", f"{r0['header_bytes']:,} B", ""),
            ("bytes read", f"{r0['bytes_read']:,} B ({r0['bytes_read'] / r0['header_bytes']:.2f}x header)", "< 2x"),
        ]
        print(f"Llama-3.1-70B-shaped header (128,256 tokens, 280,147 merges, 724 tensors); python {sys.version.split()[0]}")
        print(f"machine: {os.cpu_count()} cores, {os.uname().machine}\n")
        print("| measure | value | target |\n| --- | --- | --- |")
        for row in rows:
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
