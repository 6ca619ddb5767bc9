// SPDX-License-Identifier: Apache-2.0
// The CUDA umbrella header: every aplq kernel for NVIDIA GPUs (include with nvcc). The CPU
// umbrella is <aplq/matmul.hpp>; the two never include each other.
#pragma once

#include "gemm.cuh"
#include "gemv.cuh"
#include "tiled.hpp"
#include "tiled_gemm.cuh"
