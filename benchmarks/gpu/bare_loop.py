"""Generation speed of a bare llama-cpp-python loop, with the same Llama() arguments a gpusplit plan
gives, so that `gpusplit run`'s figure can be checked against what the library alone achieves.

    python benchmarks/gpu/bare_loop.py PLAN.json [-n 128] [--prompt TEXT] [--reps 3]

PLAN.json is `gpusplit plan --json` (or a `run --json` document, whose "plan" is used). Prints one
JSON document: tokens per second by llama.cpp's own counters (t_eval, as `run` reports) and by the
wall clock around the Python loop, the median of --reps runs after one warm-up, on one loaded model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("plan")
    parser.add_argument("-n", type=int, default=128)
    parser.add_argument("--prompt", default="Once upon a time")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="n_threads (gpusplit run uses all cores)")
    args = parser.parse_args()

    import llama_cpp

    with open(args.plan) as f:
        doc = json.load(f)
    plan = doc.get("plan", doc)
    kwargs = dict(plan["llama_cpp_python"])
    if args.threads:
        kwargs["n_threads"] = kwargs["n_threads_batch"] = args.threads
    llm = llama_cpp.Llama(**kwargs, verbose=False)
    prompt = llm.tokenize(args.prompt.encode(), add_bos=True)
    counter_tps, wall_tps, generated = [], [], []
    try:
        for rep in range(args.reps + 1):
            llm.reset()
            llama_cpp.llama_perf_context_reset(llm.ctx)
            tokens = 0
            first = None
            for _ in llm.generate(prompt, temp=0.0, reset=True):
                tokens += 1
                if first is None:
                    first = time.perf_counter()  # the prompt is done; time the generation only
                if tokens == args.n:
                    break
            elapsed = time.perf_counter() - first
            perf = llama_cpp.llama_perf_context(llm.ctx)
            if rep == 0:
                continue  # warm-up
            generated.append(tokens)
            # n - 1 decodes happen after the first token is sampled
            wall_tps.append((tokens - 1) / elapsed)
            counter_tps.append(perf.n_eval / (perf.t_eval_ms / 1000) if perf.t_eval_ms > 0 else None)
    finally:
        llm.close()
    counted = [v for v in counter_tps if v]
    json.dump(
        {
            "llama_cpp_python": llama_cpp.__version__,
            "args": {k: v for k, v in kwargs.items() if k != "model_path"},
            "tokens": generated,
            "gen_tps_counter": round(statistics.median(counted), 2) if counted else None,
            "gen_tps_wall": round(statistics.median(wall_tps), 2),
            "samples_counter": [round(v, 2) for v in counted],
            "samples_wall": [round(v, 2) for v in wall_tps],
        },
        sys.stdout,
        indent=1,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
