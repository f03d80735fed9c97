"""Plan, run and benchmark a model from Python, with no subprocess: the library the CLI stands on.

    python examples/api.py [MODEL.gguf] [--rpc HOST:PORT ...]

Without MODEL it uses the built-in demo model. Needs the llama extra to run and bench.
"""

import argparse

import gpusplit

parser = argparse.ArgumentParser()
parser.add_argument("model", nargs="?")
parser.add_argument("--rpc", action="append", default=[])
args = parser.parse_args()

model = gpusplit.read_model(args.model or gpusplit.demo_model_path())
devices = gpusplit.detect_devices(rpc=args.rpc)
plan = gpusplit.plan(model, devices, gpusplit.Request(n_ctx=1024))  # one typed request: llama.cpp's names
doc = gpusplit.document(plan)  # the gpusplit.plan/2 document, as `gpusplit plan --json` prints it
print(f"plan: {doc['strategy']}, fits: {doc['fits']}, best context: {doc['best_ctx']} tokens")
print("llama-server", *doc["llama_args"])

try:
    result = gpusplit.run(plan, prompt="Once upon a time", n_predict=16)
except gpusplit.GpusplitError as exc:  # one line and a hint, as the CLI prints them
    raise SystemExit(f"run failed: {exc}") from None
print(f"generated {result.timings.gen_tokens} tokens at {result.timings.gen_tps:.0f} tokens/s: {result.text!r}")
for device in gpusplit.document(result)["devices"]:
    print(f"  {device['name']}: planned {device['planned_bytes']:,} bytes, llama.cpp allocated {device['actual_bytes']:,}")

# one configuration (the plan's own), llama-bench's tests: a 64-token prompt and 16 generated tokens
for row in gpusplit.bench(model.path, tests=gpusplit.Tests(n_prompt=(64,), n_gen=(16,)), rpc=args.rpc, repetitions=2):
    speed = f"{row.mean_ts:.1f} tokens/s" if row.ok else f"failed: {row.error}"
    print(f"bench {row.test.name}: {speed}")  # gpusplit.document(row) is its gpusplit.bench/3 record
