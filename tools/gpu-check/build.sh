#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Builds aplq-gpu-check without Meson, with plain nvcc, from the repository root: sm_80 and sm_90
# code plus compute_90 PTX, the CUDA runtime linked statically so that the binary needs only the
# driver on the GPU machine (which has no Debian packages), and libstdc++/libgcc linked statically
# too, so that only glibc (>= 2.34) is needed there. Build here, carry the binary there.
#
#   tools/gpu-check/build.sh [OUTPUT]      (default build-gpu/aplq-gpu-check)
#   NVCC=/path/to/nvcc overrides the compiler.
set -eu
out=${1:-build-gpu/aplq-gpu-check}
nvcc=${NVCC:-}
if [ -z "$nvcc" ]; then
  if command -v nvcc >/dev/null 2>&1; then nvcc=nvcc; else nvcc=/usr/local/cuda/bin/nvcc; fi
fi
if [ ! -f include/aplq/cuda/gemv.cuh ] || [ ! -f tools/gpu-check/gpu_check.cu ]; then
  echo "build.sh: error: run from the aplq repository root" >&2
  exit 2
fi
cuda_root=$(dirname "$(dirname "$(command -v "$nvcc")")")
mkdir -p "$(dirname "$out")"
set -x
"$nvcc" -std=c++17 -O3 \
  -gencode arch=compute_80,code=sm_80 \
  -gencode arch=compute_90,code=sm_90 \
  -gencode arch=compute_90,code=compute_90 \
  -I include -I tests/cuda -I "$cuda_root/include/cccl" \
  -Xcompiler -Wall,-Wextra \
  -cudart static -Xcompiler -static-libstdc++,-static-libgcc \
  -o "$out" tools/gpu-check/gpu_check.cu \
  -ldl -lpthread -lrt
