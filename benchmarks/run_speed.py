"""`gpusplit run` against a bare llama_cpp.Llama loop with the same parameters (issue 5's target:
>= 97 % of the bare loop's tokens/s for prompt and generation, on the CPU and over two workers).

    python benchmarks/run_speed.py [--repeat 5] [--model dense-large-f16] [-n 128]

Runs alternate (gpusplit, bare, gpusplit, ...) so that machine noise hits both alike; tokens/s
come from llama.cpp's own counters (llama_perf_context) in both.
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

sys.path.insert(0, str(Path(__file__).parent))
from accuracy import start_workers

BARE = r"""
import json, sys
params = json.loads(sys.argv[1]); prompt = sys.argv[2]; n = int(sys.argv[3])
from gpusplit.engine.registry import add_rpc_server
for e in params.pop("rpc"):
    add_rpc_server(e)
import llama_cpp
kwargs = dict(params, verbose=False)
llm = llama_cpp.Llama(**kwargs)
llm.create_completion(prompt, max_tokens=n, temperature=0.0)
p = llama_cpp.llama_perf_context(llm._ctx.ctx)
print(json.dumps({"prompt_tps": p.n_p_eval / p.t_p_eval_ms * 1000, "gen_tps": p.n_eval / p.t_eval_ms * 1000}))
"""

PROMPT = "The history of the world is a long story of " * 8


def gpusplit_run(model: str, args: list[str], n: int) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpusplit",
            "run",
            model,
            "--json",
            "-n",
            str(n),
            "-p",
            PROMPT,
            "--threads",
            str(os.cpu_count()),
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def bare_run(doc: dict, n: int) -> dict:
    kwargs = dict(doc["plan"]["llama_cpp_python"])
    kwargs["rpc"] = doc["plan"]["engine_params"]["rpc"]
    kwargs["n_threads"] = kwargs["n_threads_batch"] = os.cpu_count()
    out = subprocess.run(
        [sys.executable, "-c", BARE, json.dumps(kwargs), PROMPT, str(n)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--model", default="dense-large-f16")
    parser.add_argument("-n", type=int, default=128)
    args = parser.parse_args()
    from gpusplit.synthetic import write_tiny_model

    procs, endpoints = start_workers(2)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            model = str(write_tiny_model(Path(tmp) / f"{args.model}.gguf", args.model))
            setups = {
                "CPU": [],
                "two workers, layer split": [
                    "--rpc",
                    ",".join(endpoints),
                    "--mode",
                    "layer",
                    "--split",
                    "0.5,0.5",
                    "--ngl",
                    "-1",
                ],
            }
            print(f"model {args.model}, -n {args.n}, {os.cpu_count()} threads, {args.repeat} interleaved runs each\n")
            print("| setup | measure | gpusplit run (median t/s) | bare Llama (median t/s) | ratio | target |")
            print("| --- | --- | --- | --- | --- | --- |")
            for label, extra in setups.items():
                ours: dict[str, list[float]] = {"prompt_tps": [], "gen_tps": []}
                bare: dict[str, list[float]] = {"prompt_tps": [], "gen_tps": []}
                for _ in range(args.repeat):
                    doc = gpusplit_run(model, extra, args.n)
                    ours["prompt_tps"].append(doc["timings"]["prompt_tps"])
                    ours["gen_tps"].append(doc["timings"]["gen_tps"])
                    b = bare_run(doc, args.n)
                    bare["prompt_tps"].append(b["prompt_tps"])
                    bare["gen_tps"].append(b["gen_tps"])
                for key, name in (("prompt_tps", "prompt"), ("gen_tps", "generation")):
                    a, b = statistics.median(ours[key]), statistics.median(bare[key])
                    print(f"| {label} | {name} | {a:.1f} | {b:.1f} | {a / b:.3f} | >= 0.97 |")
    finally:
        for p in procs:
            p.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
