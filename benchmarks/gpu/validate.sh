#!/usr/bin/env bash
# On a GPU machine (no network), in one call of the device tool: install the carried engine, then
# check devices, plan, run, bench, probe and tune on the real GPU, and write the results.
#   benchmarks/gpu/validate.sh OUTDIR
# Needs scratch/gpu/ from benchmarks/gpu/prepare.sh carried along (device tool: carry scratch/gpu).
# Every step's output lands in a work folder that is packed into OUTDIR/results.tar.gz after each
# step (the device tool brings back at most 8 files, and what is under OUTDIR when a call is cut
# off), with OUTDIR/steps.log and OUTDIR/summary.md beside it.
#   VALIDATE_BUDGET=SECONDS  skip the steps that would start after this (default 400)
#   VALIDATE_LOCAL=1         a rehearsal on a machine without a GPU: this Python, a small model
#   VALIDATE_ONLY="a b"      run only these steps (names below), after setup and the model
#   VALIDATE_REPS=N          repetitions of the probed bench (default 3)
set -uo pipefail
out=$(realpath -m "${1:?usage: validate.sh OUTDIR}")
mkdir -p "$out"
cd "$(dirname "$0")/../.."
repo=$PWD
work=$(mktemp -d /tmp/gpuval.XXXX)
budget=${VALIDATE_BUDGET:-400}
local_mode=${VALIDATE_LOCAL:-0}
started=$SECONDS
export GGML_NO_BACKTRACE=1 NO_COLOR=1 PYTHONUNBUFFERED=1
export XDG_CACHE_HOME="$work/cache"  # a fresh cache: probe figures and models from this run only

log() { echo "[$(date +%T) +$((SECONDS - started))s] $*" | tee -a "$out/steps.log" >&2; }
pack() { tar czf "$out/results.tar.gz.tmp" -C "$work" --exclude cache --exclude '*.gguf' . && mv "$out/results.tar.gz.tmp" "$out/results.tar.gz"; }
wanted() { [[ -z "${VALIDATE_ONLY:-}" || " $VALIDATE_ONLY " == *" $1 "* ]]; }
# step NAME TIMEOUT_S COMMAND...: stdout to NAME.out, stderr to NAME.err, skipped past the budget.
step() {
  local name=$1 limit=$2; shift 2
  wanted "$name" || return 0
  if (( SECONDS - started + 5 > budget )); then log "$name: skipped (budget of ${budget}s spent)"; echo "$name skipped" >> "$work/skipped.txt"; return 0; fi
  log "$name: $*"
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" > "$work/$name.out" 2> "$work/$name.err"
  local rc=$?
  echo "$name $rc $((SECONDS - t0))" >> "$work/exit_codes.txt"
  log "$name: exit $rc in $((SECONDS - t0))s"
  pack
}

log "setup"
if [[ "$local_mode" != 1 ]]; then
  # Into a folder on PYTHONPATH, not a venv: the image's python3 is itself a venv (PyTorch's), and a
  # venv made from it would not see its packages. PYTHONPATH comes first, so typer 0.28 wins.
  site=/tmp/gpusplit-site
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" scratch/gpu/wheels/*.whl >> "$work/setup.log" 2>&1
  tar xJf scratch/gpu/llama_cpp_cuda.tar.xz -C "$site"
  export PYTHONPATH="$repo:$site${PYTHONPATH:+:$PYTHONPATH}"
  # cuBLAS and cudart come from the image's Python packages (PyTorch's CUDA 13 wheels).
  export LD_LIBRARY_PATH="$site/llama_cpp/lib:$(python3 - <<'PY'
import glob, os, site
dirs = set()
for sp in site.getsitepackages():
    for pattern in ("nvidia/*/lib", "nvidia/cu13/lib", "nvidia/*/*/lib"):
        dirs.update(d for d in glob.glob(os.path.join(sp, pattern)) if glob.glob(os.path.join(d, "libcu*.so*")))
print(":".join(sorted(dirs)))
PY
):${LD_LIBRARY_PATH:-}"
fi
{
  nvidia-smi
  nvidia-smi --query-gpu=name,pci.bus_id,memory.total,memory.used,driver_version,pcie.link.gen.current,pcie.link.width.current,clocks.max.memory --format=csv
} > "$work/nvidia-smi.txt" 2>&1
python3 -c 'import llama_cpp, typer, gguf; print("llama_cpp", llama_cpp.__version__, "gpu offload", llama_cpp.llama_supports_gpu_offload(), "rpc", llama_cpp.llama_supports_rpc(), "typer", typer.__version__, "gguf", gguf.__version__ if hasattr(gguf, "__version__") else "?")' > "$work/engine.txt" 2>&1
python3 -m pip list 2>/dev/null | grep -i -E "^(typer|rich|gguf|numpy|nvidia-ml-py|psutil|torch) " >> "$work/engine.txt"
log "engine: $(head -1 "$work/engine.txt")"
pack

log "model"
model="$work/llama-3.1-8b-q4_k_m.gguf"
python3 - "$model" "$local_mode" > "$work/model.txt" 2>&1 <<'PY'
import sys, time
from dataclasses import replace
from gpusplit.synthetic.header_only import HEADER_ONLY_MODELS, write_random_weights
spec = HEADER_ONLY_MODELS["llama-3.1-8b"]
if sys.argv[2] == "1":  # the rehearsal: the same model, four layers 512 wide
    spec = replace(spec, n_layer=4, n_embd=512, n_head=4, n_head_kv=2, n_ff=1024)
t = time.perf_counter()
path = write_random_weights(sys.argv[1], spec)
print(f"{spec.display_name}, Q4_K_M types, random weights: {path.stat().st_size} bytes in {time.perf_counter() - t:.1f} s")
PY
log "model: $(cat "$work/model.txt")"
gs="python3 -m gpusplit"  # word-split on purpose: timeout runs a program, not a shell function
ngl_half=16 ngl_quarter=8; [[ "$local_mode" == 1 ]] && ngl_half=2 ngl_quarter=1

# Steps in the order of what matters most, so that the budget cuts the least important.
# 1. What llama.cpp and NVML see.
step devices 60 $gs devices --json
step devices_table 60 $gs devices
# 2. Plans, then runs of them: planned vs actual per device (llama.cpp's buffers, NVML's used memory).
for ctx in 4096 32768; do
  step "plan_$ctx" 60 $gs plan "$model" --ctx "$ctx" --json
  step "plan_${ctx}_table" 60 $gs plan "$model" --ctx "$ctx"
  step "run_$ctx" 120 $gs run "$model" --ctx "$ctx" -n 128 --json
done
# 3. Generation speed of run against a bare llama-cpp-python loop with the same Llama() arguments.
step bare_loop 120 python3 benchmarks/gpu/bare_loop.py "$work/plan_4096.out" -n 128 --reps 3 --threads "$(nproc)"
# 4. llama-bench's tests on the GPU, predicted from the catalog (no probe yet), and the
# device-to-device copy bandwidth for the roofline.
step bench_gpu 150 $gs bench "$model" -p 512 -n 128 -r 3 -o md --output "$work/bench_gpu.jsonl"
step copy_bandwidth 60 python3 - <<'PY'
import torch
x = torch.empty(4 * 2**30, dtype=torch.uint8, device="cuda"); y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
torch.cuda.synchronize(); s, e = torch.cuda.Event(True), torch.cuda.Event(True)
s.record()
for _ in range(10): y.copy_(x)
e.record(); torch.cuda.synchronize()
seconds = s.elapsed_time(e) / 1000 / 10
print(f"device-to-device copy: {2 * x.numel() / seconds / 1e9:.0f} GB/s counting bytes read and written")
PY
# 5. llama.cpp's dry run; partial offload (half the layers on the CPU).
step plan_measure 120 $gs plan "$model" --ctx 4096 --measure --json
step plan_measure_partial 120 $gs plan "$model" --ctx 4096 --ngl "$ngl_half" --measure --json
step plan_measure_cpu 120 $gs plan "$model" --ctx 4096 --ngl 0 --measure --json
step run_partial 150 $gs run "$model" --ctx 4096 --ngl "$ngl_half" -n 64 --json
step run_cpu 150 $gs run "$model" --ctx 4096 --ngl 0 -n 32 --json
# 6. A layer split between the GPU and a loopback worker serving the CPU (llama.cpp lists RPC
# devices first, so the split gives the worker its first share).
if wanted run_split || wanted bench_split; then
  $gs worker --port 50052 --device CPU > "$work/worker.log" 2>&1 &
  worker=$!
  sleep 3
fi
step run_split 150 $gs run "$model" --rpc 127.0.0.1:50052 --mode layer --split 0.2,0.8 --ctx 4096 -n 64 --json
# 7. The probe, then the same plan and bench predicted from measured figures (and half the layers
# on the CPU: the predictor's partial offload against a real GPU).
step probe 240 $gs devices --probe --json
step plan_4096_probed 60 $gs plan "$model" --ctx 4096 --json
step bench_gpu_probed 200 $gs bench "$model" -ngl 33 -ngl "$ngl_half" -ngl "$ngl_quarter" -p 512 -n 128 -r "${VALIDATE_REPS:-3}" -o md --output "$work/bench_gpu_probed.jsonl"
# 8. Flash attention (llama.cpp's own default on CUDA is "auto", llama-cpp-python's is off).
step run_fa 120 $gs run "$model" --ctx 32768 -fa -n 128 --json
# 9. The split as a benchmark matrix, then tune, briefly.
step bench_split 200 $gs bench "$model" --rpc 127.0.0.1:50052 --mode layer --split 0.1,0.9 --split 0.3,0.7 \
  -p 512 -n 64 -r 2 -o md --output "$work/bench_split.jsonl"
[[ -n "${worker:-}" ]] && kill "$worker" 2>/dev/null
step tune 120 $gs tune "$model" --ctx 4096 --budget 60s --json --trials "$work/tune_trials.jsonl"

python3 benchmarks/gpu/summarize.py "$work" > "$out/summary.md" 2>> "$out/steps.log"
pack
log "done"
