#!/usr/bin/env bash
# Prepare, on the CPU build machine, everything benchmarks/gpu/validate.sh needs on a GPU machine
# that reaches no network. Writes scratch/gpu/ (ignored by git; carry it with the device tool):
#   scratch/gpu/llama_cpp_cuda.tar.xz  llama_cpp with libraries built for CUDA sm_90 + RPC, one copy each
#   scratch/gpu/wheels/                pure-Python wheels of gpusplit's dependencies
# Takes about 42 minutes on 2 cores (nearly all of it the CUDA build; see ../shared/notes/llama-cpp-facts.md).
#   GPUSPLIT_GPU_OUT=DIR  writes there instead of scratch/gpu (tests use it with --dry-run)
#   --dry-run             prints the paths and the CMake arguments, builds nothing
set -euo pipefail
cd "$(dirname "$0")/../.."
# Absolute: pip builds in a temporary directory, where a relative path handed to CMake points nowhere.
out=$(realpath -m "${GPUSPLIT_GPU_OUT:-scratch/gpu}")
cublas="$out/build/cublas"
cuda_root=$(dirname "$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")")
if [[ "${1:-}" == --dry-run ]]; then
  echo "out=$out"
  echo "CUDAToolkit_ROOT=$cuda_root"
  echo "CMAKE_ARGS=-DCUDA_cublas_LIBRARY=$cublas/lib/libcublas.so -DCUDA_cublasLt_LIBRARY=$cublas/lib/libcublasLt.so"
  exit 0
fi
mkdir -p "$out/wheels" "$out/build"

# 1. Only what the GPU image lacks or holds in a version gpusplit cannot use (it has numpy, rich,
# nvidia-ml-py, psutil, pyyaml, tqdm, requests, shellingham, jinja2): gguf, typer in pyproject's
# range, and llama-cpp-python's diskcache (seen missing on the image: `import llama_cpp` failed).
# Pure-Python wheels, so they install on the image's Python 3.12. Carrying numpy too would take
# 16 of the device's 64 MiB.
pip download --no-deps --only-binary :all: --dest "$out/wheels" "typer>=0.28,<0.29" "gguf>=0.17,<0.20" annotated-doc diskcache >/dev/null

# 2. cuBLAS headers and libraries (the build machine has nvcc and cudart but no cuBLAS).
if [[ ! -d "$cublas" ]]; then
  pip download --no-deps nvidia-cublas -d "$out/build/dl" >/dev/null
  mkdir -p "$cublas" && (cd "$cublas" && unzip -q -o ../dl/nvidia_cublas*.whl)
fi
inc=$(find "$cublas" -path '*include' -type d | head -1)
lib=$(find "$cublas" -name 'libcublas.so.*' -printf '%h\n' | head -1)
for so in "$lib"/libcublas*.so.*; do ln -sf "$(basename "$so")" "${so%%.so.*}.so"; done

# 3. The CUDA + RPC build of llama-cpp-python 0.3.36, CPU part portable (GGML_NATIVE=OFF); kept, so
# that a second run only packs.
if ! compgen -G "$out/build/wheel/llama_cpp_python-*.whl" > /dev/null; then
CPATH="$inc:${CPATH:-}" LIBRARY_PATH="$lib:${LIBRARY_PATH:-}" LD_LIBRARY_PATH="$lib:${LD_LIBRARY_PATH:-}" \
CUDAToolkit_ROOT="$cuda_root" \
CMAKE_ARGS="-DGGML_CUDA=ON -DGGML_RPC=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_NO_VMM=ON -DGGML_NATIVE=OFF -DCUDA_cublas_LIBRARY=$lib/libcublas.so -DCUDA_cublasLt_LIBRARY=$lib/libcublasLt.so" \
CMAKE_BUILD_PARALLEL_LEVEL=2 pip wheel --no-deps --no-cache-dir "llama-cpp-python==0.3.36" -w "$out/build/wheel"
fi

# 4. One copy of each library, the .so names llama_cpp loads kept as links, packed small.
rm -rf "$out/build/pkg" && mkdir -p "$out/build/pkg"
(cd "$out/build/pkg" && unzip -q ../wheel/llama_cpp_python-*.whl 'llama_cpp/*')
(cd "$out/build/pkg/llama_cpp/lib" && for f in *.so.*.*; do base=${f%%.so.*}; ln -sf "$f" "$base.so"; ln -sf "$f" "$base.so.0"; done)
# ggml-cpu needs OpenMP's runtime; the GPU image's may be missing or another version.
gomp=$(ldconfig -p | awk '/libgomp.so.1 /{print $NF; exit}')
[[ -n "$gomp" ]] && cp -L "$gomp" "$out/build/pkg/llama_cpp/lib/"
tar cJf "$out/llama_cpp_cuda.tar.xz" -C "$out/build/pkg" llama_cpp
du -sh "$out/llama_cpp_cuda.tar.xz" "$out/wheels"
