"""Time from start to the error when a server drips its answer (issue 35): a deadline, not a timeout.

    python benchmarks/slow_server.py [--deadlines 2 5] [--interval 0.2] [--repeat 3]

A local server (tests/dripserver.py, 127.0.0.1) sends one byte every `--interval` seconds: of a
GGUF header's body, of its status line and headers, of an Ollama manifest and of a Hugging Face
listing. For each, and each deadline (GPUSPLIT_HTTP_DEADLINE), `gpusplit inspect` runs as a fresh
process (what a user waits for, interpreter start included) and the wall time to its exit is taken,
with its exit code and whether its one stderr line names the deadline. A single wait never times out
here (GPUSPLIT_HTTP_TIMEOUT is left at 30 s), so without the deadline each case would run for hours.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


# (label, whether the status line and headers drip too, the path served, its body's kind)
CASES = [
    ("GGUF header, body dripped", False, "/x.gguf", "gguf"),
    ("GGUF header, status and headers dripped", True, "/x.gguf", "gguf"),
    ("Ollama manifest", False, "/v2/library/tiny/manifests/latest", "manifest"),
    ("Hugging Face listing", False, "/api/models/acme/Tiny-GGUF", "listing"),
]


def _bodies(tmp: Path) -> dict[str, bytes]:
    from gpusplit.synthetic import write_tiny_model

    model = write_tiny_model(tmp / "tiny.gguf", "dense-q8_0")
    layer = {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:" + "0" * 64, "size": 1}
    return {
        "gguf": Path(model).read_bytes(),
        "manifest": json.dumps({"schemaVersion": 2, "layers": [layer]}).encode(),
        "listing": json.dumps({"id": "acme/Tiny-GGUF", "siblings": [{"rfilename": "Tiny-Q8_0.gguf"}]}).encode(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deadlines", type=float, nargs="+", default=[2.0, 5.0], help="seconds (GPUSPLIT_HTTP_DEADLINE)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between two bytes the server sends")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (the median is shown)")
    args = parser.parse_args()

    from dripserver import DripServer

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        bodies = _bodies(tmp)
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; python {platform.python_version()}")
        print(f"one byte every {args.interval:g} s; GPUSPLIT_HTTP_TIMEOUT 30 s; {args.repeat} runs each (median)\n")
        print("| answer | deadline | time to the error | over the deadline | exit | names the deadline |")
        print("| --- | ---: | ---: | ---: | ---: | --- |")
        for label, drip_head, path, kind in CASES:
            for deadline in args.deadlines:
                times, codes, named = [], set(), True
                for _ in range(args.repeat):
                    with DripServer(args.interval, drip_head=drip_head) as server:
                        server.add(path, bodies[kind])
                        target = {
                            "gguf": server.url + path,
                            "manifest": f"ollama://{server.netloc}/tiny",
                            "listing": "hf://acme/Tiny-GGUF:Q8_0",
                        }[kind]
                        env = {**os.environ, "GPUSPLIT_HTTP_DEADLINE": f"{deadline:g}", "HF_ENDPOINT": server.url,
                               "HF_HOME": str(tmp / "hf"), "GPUSPLIT_CACHE_DIR": str(tmp / "cache")}  # fmt: skip
                        env.pop("GPUSPLIT_HTTP_TIMEOUT", None)
                        started = time.perf_counter()
                        done = subprocess.run(
                            [sys.executable, "-m", "gpusplit", "inspect", target], env=env, capture_output=True, text=True,
                            timeout=deadline + 120,
                        )  # fmt: skip
                        times.append(time.perf_counter() - started)
                    codes.add(done.returncode)
                    lines = done.stderr.strip().splitlines()
                    named &= len(lines) == 1 and f"{deadline:g} s deadline" in lines[0]
                median = statistics.median(times)
                shown_codes = ",".join(map(str, sorted(codes)))
                print(
                    f"| {label} | {deadline:g} s | {median:.2f} s | {median - deadline:+.2f} s | {shown_codes} | "
                    f"{'yes' if named else 'NO'} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
