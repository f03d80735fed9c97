"""Peak memory of reading a GGUF header against the header's size (issue 35): bounded, not amplified.

    python benchmarks/header_memory.py [--sizes 16 64 247] [--shapes big small]

Writes, for each size (MB of metadata) and shape, a small valid llama model whose header also
holds, for `big`, a big string array (`tokenizer.ggml.merges`, short strings) and a big f32 array
(`tokenizer.ggml.scores`), half the bytes each; for `small`, thousands of u32 arrays of 4,096
elements under keys of their own (small enough that a reader keeps each: what once cost 36 bytes
of Python objects per 4-byte element). A fresh subprocess reads it with
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


SMALL_ARRAY = 4096


def write_small_arrays(path: Path, metadata_mb: float) -> None:
    """A valid llama header with about `metadata_mb` MB in u32 arrays of SMALL_ARRAY elements."""
    from ggufpack import U32, llama_header

    body = struct.pack("<I", 7) * SMALL_ARRAY
    p = llama_header()
    p.with_data = False
    for i in range(int(metadata_mb * MB) // len(body)):
        p.kvs.append(_array_kv(f"bench.small.{i}", U32, SMALL_ARRAY, body))
    path.write_bytes(p.build())


def measure(path: str, code: str | None = None) -> dict[str, int]:
    """The child's figures; `code`: a checkout of another commit to measure instead of this one
    (-S, then its folder and site-packages by hand: an editable install's finder would win over
    PYTHONPATH)."""
    argv = [sys.executable, "-c", CHILD, path]
    if code is not None:
        paths = [code, *(p for p in sys.path if p.endswith("site-packages"))]
        argv = [sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {paths!r}\n" + CHILD, path]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    result: dict[str, int] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[16, 64, 247], help="MB of metadata per header")
    parser.add_argument("--shapes", nargs="+", choices=["big", "small"], default=["big", "small"])
    parser.add_argument("--code", help="measure the gpusplit in this checkout (another commit) instead")
    args = parser.parse_args()
    baseline = measure("-", args.code)["peak_rss_bytes"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes:
            for size in args.sizes:
                path = Path(tmp) / f"header-{shape}-{size:g}mb.gguf"
                (write_header if shape == "big" else write_small_arrays)(path, size)
                result = measure(str(path), args.code)
                path.unlink()
                extra = result["peak_rss_bytes"] - baseline
                rows.append((shape, result["header_bytes"], extra))
    print(
        f"python {sys.version.split()[0]}; {os.cpu_count()} cores, {os.uname().machine}; import-only RSS {baseline / MB:.1f} MB\n"
    )
    print("| arrays | header MB | peak extra RSS MB | ratio |\n| --- | ---: | ---: | ---: |")
    for shape, header_bytes, extra in rows:
        print(f"| {shape} | {header_bytes / MB:.1f} | {extra / MB:.1f} | {extra / header_bytes:.2f} |")


if __name__ == "__main__":
    main()
