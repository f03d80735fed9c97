"""Bytes fetched and wall time to plan a model by name (issue 16): a Llama-3.1-70B-shaped header
(Q4_K_M, 42.5 GB when whole) behind a local fake Hugging Face Hub and a local fake Ollama registry
(tests/fakehub.py), each redirecting file contents to a second server, as the real ones do.

    python benchmarks/remote_names.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from fakehub import FakeHub, FakeOllama

    import gpusplit
    from gpusplit.synthetic import write_header_only

    with tempfile.TemporaryDirectory() as tmp:
        path = write_header_only(Path(tmp) / "Meta-Llama-3.1-70B-Instruct-Q4_K_M.gguf", "llama-3.1-70b", sparse=True)
        hub, ollama = FakeHub(), FakeOllama()
        try:
            hub.add_repo("bartowski/Meta-Llama-3.1-70B-Instruct-GGUF", {path.name: path})
            ollama.add_model("library/llama3.1:70b", path)
            os.environ["HF_ENDPOINT"] = hub.url
            os.environ["HF_HOME"] = str(Path(tmp) / "hf")
            names = {
                "file": str(path),
                "plain URL": hub.cdn.url + "/cdn/bartowski/Meta-Llama-3.1-70B-Instruct-GGUF/" + path.name,
                "hf://": "hf://bartowski/Meta-Llama-3.1-70B-Instruct-GGUF:Q4_K_M",
                "ollama://": f"ollama://{ollama.netloc}/llama3.1:70b",
            }
            print(f"model: {path.name}, {path.stat().st_size / 1e9:.1f} GB whole; loopback servers; {args.repeat} runs each\n")
            print("| source | bytes fetched | requests | wall time (median) |")
            print("| --- | ---: | ---: | ---: |")
            for label, name in names.items():
                times = []
                for _ in range(args.repeat):
                    for server in (hub, hub.cdn, ollama, ollama.cdn):
                        server.seen.clear()
                    started = time.perf_counter()
                    model = gpusplit.read_model(name)
                    times.append(time.perf_counter() - started)
                fetched = sum(s.bytes_sent for s in hub.cdn.seen + ollama.cdn.seen)
                requests = sum(len(s.seen) for s in (hub, hub.cdn, ollama, ollama.cdn))
                assert model.n_layer == 80
                shown = "- (local)" if label == "file" else f"{fetched:,}"
                print(f"| {label} | {shown} | {requests} | {statistics.median(times) * 1000:.0f} ms |")
        finally:
            hub.close()
            ollama.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
