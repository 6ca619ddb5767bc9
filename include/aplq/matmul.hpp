// SPDX-License-Identifier: Apache-2.0
// The CPU umbrella header: formats, views, owning matrices, quantization, the scalar oracle and
// the xsimd GEMV/GEMM kernels.
#pragma once

#include "config.hpp"
#include "cpu/matmul.hpp"
#include "format.hpp"
#include "half.hpp"
#include "layout.hpp"
#include "qmatrix.hpp"
#include "quantize.hpp"
#include "ref.hpp"
#include "status.hpp"
#include "view.hpp"
#include "visit.hpp"
