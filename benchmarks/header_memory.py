"""Peak memory of reading a GGUF header against the header's size (issue 35): bounded, not amplified.

    python benchmarks/header_memory.py [--sizes 16 64 247]

Writes, for each size (MB of metadata), a small valid llama model whose header also holds a big
string array (`tokenizer.ggml.merges`, short strings: the worst case for per-element objects) and
a big f32 array (`tokenizer.ggml.scores`), half the bytes each. A fresh subprocess reads it with
`read_model`; its peak RSS, less that of a subprocess that only imports gpusplit, is the reading's
cost. Target: under 2x the header's bytes plus a constant. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

MB = 1_000_000
STRING_BYTES = 16  # each merge: 8 bytes of length + 16 of text

# VmHWM is this process image's high-water mark; ru_maxrss would also count the parent's pages
# that fork copied before exec (the parent here has just written hundreds of MB).
CHILD = """
import json, sys
def peak_rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
import gpusplit.gguf.model
if sys.argv[1] != "-":
    model = gpusplit.gguf.model.read_model(sys.argv[1])
    print(json.dumps({"peak_rss_bytes": peak_rss(), "header_bytes": model.header_bytes, "n_merges": model.n_merges}))
else:
    print(json.dumps({"peak_rss_bytes": peak_rss()}))
"""


def _array_kv(key: str, element_type: int, count: int, body: bytes) -> bytes:
    from ggufpack import ARRAY, s

    return s(key) + struct.pack("<IIQ", ARRAY, element_type, count) + body


def write_header(path: Path, metadata_mb: float) -> None:
    """A valid llama header with about `metadata_mb` MB of array metadata, no tensor data."""
    from ggufpack import F32, STRING, llama_header

    total = int(metadata_mb * MB)
    n_strings = total // 2 // (8 + STRING_BYTES)
    n_floats = (total - n_strings * (8 + STRING_BYTES)) // 4
    p = llama_header()
    p.with_data = False
    merge = struct.pack("<Q", STRING_BYTES) + b"a" * (STRING_BYTES // 2 - 1) + b" " + b"b" * (STRING_BYTES // 2)
    p.kvs.append(_array_kv("tokenizer.ggml.merges", STRING, n_strings, merge * n_strings))
    p.kvs.append(_array_kv("tokenizer.ggml.scores", F32, n_floats, b"\0" * (4 * n_floats)))
    path.write_bytes(p.build())


def measure(path: str) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, path], check=True, capture_output=True, text=True).stdout
    result: dict[str, int] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[16, 64, 247], help="MB of metadata per header")
    args = parser.parse_args()
    baseline = measure("-")["peak_rss_bytes"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = Path(tmp) / f"header-{size:g}mb.gguf"
            write_header(path, size)
            result = measure(str(path))
            path.unlink()
            extra = result["peak_rss_bytes"] - baseline
            rows.append((result["header_bytes"], extra))
    print(
        f"python {sys.version.split()[0]}; {os.cpu_count()} cores, {os.uname().machine}; import-only RSS {baseline / MB:.1f} MB\n"
    )
    print("| header MB | peak extra RSS MB | ratio |\n| ---: | ---: | ---: |")
    for header_bytes, extra in rows:
        print(f"| {header_bytes / MB:.1f} | {extra / MB:.1f} | {extra / header_bytes:.2f} |")


if __name__ == "__main__":
    main()
