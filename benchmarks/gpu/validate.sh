#!/usr/bin/env bash
# On a GPU machine (no network), in one run of at most ~9 minutes: install the carried engine,
# then check devices, plan, run and bench on the real GPU and write the results under OUTDIR.
#   benchmarks/gpu/validate.sh OUTDIR
# Needs scratch/gpu/ from benchmarks/gpu/prepare.sh carried along (device tool: carry scratch/gpu).
set -uo pipefail
out="${1:?usage: validate.sh OUTDIR}"
mkdir -p "$out"
cd "$(dirname "$0")/../.."
log() { echo "[$(date +%T)] $*" | tee -a "$out/steps.log" >&2; }
step() { local name=$1; shift; log "$name: $*"; "$@" > "$out/$name.out" 2> "$out/$name.err"; local rc=$?; log "$name: exit $rc"; return 0; }

log "setup"
python3 -m venv --system-site-packages /tmp/gpusplit-venv && . /tmp/gpusplit-venv/bin/activate
pip install -q --no-index --find-links scratch/gpu/wheels typer rich gguf nvidia-ml-py >> "$out/setup.log" 2>&1
site=$(python -c 'import site; print(site.getsitepackages()[0])')
tar xJf scratch/gpu/llama_cpp_cuda.tar.xz -C "$site"
pip install -q --no-index --no-deps --no-build-isolation -e . >> "$out/setup.log" 2>&1 || export PYTHONPATH="$PWD:${PYTHONPATH:-}"
# cuBLAS and cudart come from the image's Python packages (PyTorch's CUDA 13 wheels).
export LD_LIBRARY_PATH="$(python - <<'PY'
import glob, os, site
dirs = set()
for sp in site.getsitepackages():
    for pattern in ("nvidia/*/lib", "nvidia/cu13/lib", "nvidia/*/*/lib"):
        dirs.update(d for d in glob.glob(os.path.join(sp, pattern)) if glob.glob(os.path.join(d, "libcu*.so*")))
print(":".join(sorted(dirs)))
PY
):${LD_LIBRARY_PATH:-}"
export GGML_NO_BACKTRACE=1 NO_COLOR=1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
python -c 'import llama_cpp; print(llama_cpp.__version__, llama_cpp.llama_supports_gpu_offload(), llama_cpp.llama_supports_rpc())' > "$out/engine.txt" 2>&1

step devices python -m gpusplit devices --json
step devices_table python -m gpusplit devices

log "models"
python - <<'PY' >> "$out/setup.log" 2>&1
from dataclasses import replace
from gpusplit.synthetic import TINY_MODELS, write_tiny_model
# Llama-3-8B shapes (32 layers, 4096 wide, 32/8 heads, 14336 FFN), a tiny vocabulary, random f16.
spec = replace(TINY_MODELS["dense-f16"], name="llama-3-8b-shape", n_layer=32, n_embd=4096, n_head=32, n_head_kv=8,
               n_ff=14336, n_ctx_train=131072, rope_theta=500000.0)
write_tiny_model("/tmp/llama8b-f16.gguf", spec)
PY
model=/tmp/llama8b-f16.gguf

for ctx in 4096 32768; do
  step "plan_$ctx" python -m gpusplit plan "$model" --ctx "$ctx" --json
  step "run_$ctx" python -m gpusplit run "$model" --ctx "$ctx" -n 64 --json
done
step plan_measure python -m gpusplit plan "$model" --ctx 4096 --measure --json
step run_partial python -m gpusplit run "$model" --ctx 4096 --ngl 16 -n 64 --json

log "worker"
python -m gpusplit worker --port 50052 --device CPU > "$out/worker.log" 2>&1 &
worker=$!
sleep 3
step run_split python -m gpusplit run "$model" --rpc 127.0.0.1:50052 --mode layer --split 0.7,0.3 --ctx 4096 -n 32 --json
step bench_split python -m gpusplit bench "$model" --rpc 127.0.0.1:50052 --mode layer --split 0.9,0.1 --split 0.7,0.3 \
  --ngl 33 --ngl 16 -p 512 -n 64 -r 2 -o json --output "$out/bench_split.jsonl"
kill "$worker" 2>/dev/null

step bench_gpu python -m gpusplit bench "$model" -p 512 -n 128 -r 3 -o json --output "$out/bench_gpu.jsonl"

log "copy bandwidth"
python - > "$out/copy_bandwidth.txt" 2>&1 <<'PY'
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
python benchmarks/gpu/summarize.py "$out" > "$out/summary.md" 2>> "$out/steps.log"
log "done"
