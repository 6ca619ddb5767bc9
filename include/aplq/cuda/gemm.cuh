// SPDX-License-Identifier: Apache-2.0
// GEMM for any batch on the sequential layout: Y [n][rows] = X [n][cols] W^T, f32, f16
// (aplq::half) or bf16 (aplq::bfloat16) activations, f32 accumulation and f32 output. (The tiled
// layout has its own kernel, tiled_gemm.cuh.)
//
// gemm_tiles: a block computes 64 rows x 32 activation rows in steps of 32 columns. Each step
// dequantizes the 64 x 32 weights to shared memory (a step never straddles a scale group: groups
// are multiples of 32), stages the 32 x 32 activations there, and each thread FMAs a 4 x 4 block
// of outputs. Sums are kept shallow for f32: per 32-column step a fresh partial sum, folded into a
// middle sum that is folded into the total every 32 steps.
#pragma once

#include "gemv.cuh"

namespace aplq {
namespace cuda {

namespace detail {

// Where the GEMM kernel reads W: the bytes holding codes j0 .. j0 + 15 of row r in sequential order
// (2 * Bits bytes; j0 is a multiple of 16, so they start a byte) and the affine form (a, c) of
// row r, group g.
template <class F>
struct sequential_source {
  qmatrix_view<F> w;
  __device__ APLQ_FORCE_INLINE const std::uint8_t* bytes(index_t r, index_t j0) const noexcept {
    return w.codes + r * w.row_bytes() + j0 / F::per_byte;
  }
  __device__ APLQ_FORCE_INLINE float a(index_t r, index_t g) const noexcept {
    return F::affine_a(load_scale(w.scales + r * w.groups() + g));
  }
  __device__ APLQ_FORCE_INLINE float c(index_t r, index_t g) const noexcept {
    return F::affine_c(F::zero_point ? load_scale(w.zeros + r * w.groups() + g) : 0.0f);
  }
};

// ---- GEMM, any batch ----

// Block and step sizes are a first choice, untuned: on an H100 this kernel reaches about 13
// TFLOP/s of f32 FMA (8192 x 28672 x 64), far from the tensor cores.
inline constexpr int gemm_bm = 64;       // weight rows per block
inline constexpr int gemm_bn = 32;       // activation rows per block
inline constexpr int gemm_bk = 32;       // columns per step: inside one scale group
inline constexpr int gemm_threads = 128; // 16 x 8 threads of 4 x 4 outputs
inline constexpr index_t gemm_fold_steps = 32;

template <class F, class X, class Source>
__global__ void __launch_bounds__(gemm_threads)
    gemm_tiles(Source src, index_t rows, index_t cols, const X* __restrict__ x, index_t n,
               float* __restrict__ y) {
  __shared__ __align__(16) float ws[gemm_bk][gemm_bm];
  __shared__ __align__(16) float xs[gemm_bk][gemm_bn];
  const int tid = static_cast<int>(threadIdx.x);
  const index_t r0 = static_cast<index_t>(blockIdx.x) * gemm_bm;
  const index_t i0 = static_cast<index_t>(blockIdx.y) * gemm_bn;
  const int ty = tid / 8, tx = tid % 8; // outputs: rows 4 ty.., activation rows 4 tx..
  // Loading: weight row r0 + wr, codes 16 wh .. 16 wh + 15 of the step; activation row i0 + xi,
  // columns xk, xk + 4, ...
  const int wr = tid % gemm_bm, wh = tid / gemm_bm;
  const int xi = tid % gemm_bn, xk = tid / gemm_bn;
  const index_t r = r0 + wr, i = i0 + xi;

  float total[4][4] = {}, middle[4][4] = {};
  index_t steps = 0;
  for (index_t k0 = 0; k0 < cols; k0 += gemm_bk) {
    if (r < rows) {
      index_t g = 0;
      if constexpr (F::group != whole_row)
        g = k0 / F::group;
      const float a = src.a(r, g), c = src.c(r, g);
      const index_t j0 = k0 + 16 * wh;
      const std::uint8_t* b = src.bytes(r, j0);
#pragma unroll
      for (int q = 0; q < 16 / F::per_byte; ++q) {
        // Bytes past the end of the row are not read (in the sequential layout they belong to
        // the next row, or to no one).
        const unsigned byte = j0 + q * F::per_byte < cols ? __ldg(b + q) : 0u;
#pragma unroll
        for (int t = 0; t < F::per_byte; ++t) {
          const index_t j = j0 + q * F::per_byte + t;
          const unsigned u = (byte >> (t * F::bits)) & F::code_max;
          ws[16 * wh + q * F::per_byte + t][wr] = j < cols ? a * (static_cast<float>(u) - c) : 0.0f;
        }
      }
    } else {
#pragma unroll
      for (int q = 0; q < 16; ++q)
        ws[16 * wh + q][wr] = 0.0f;
    }
#pragma unroll
    for (int s = 0; s < gemm_bk / 4; ++s) {
      const index_t j = k0 + xk + 4 * s;
      xs[xk + 4 * s][xi] = (i < n && j < cols) ? load_scale(x + i * cols + j) : 0.0f;
    }
    __syncthreads();

    float part[4][4] = {};
#pragma unroll
    for (int k = 0; k < gemm_bk; ++k) {
      const float4 wv = *reinterpret_cast<const float4*>(&ws[k][4 * ty]);
      const float4 xv = *reinterpret_cast<const float4*>(&xs[k][4 * tx]);
      const float wa[4] = {wv.x, wv.y, wv.z, wv.w};
      const float xa[4] = {xv.x, xv.y, xv.z, xv.w};
#pragma unroll
      for (int p = 0; p < 4; ++p)
#pragma unroll
        for (int q = 0; q < 4; ++q)
          part[p][q] = fmaf(wa[p], xa[q], part[p][q]);
    }
    const bool fold = ++steps % gemm_fold_steps == 0;
#pragma unroll
    for (int p = 0; p < 4; ++p)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        middle[p][q] += part[p][q];
        if (fold) {
          total[p][q] += middle[p][q];
          middle[p][q] = 0.0f;
        }
      }
    __syncthreads();
  }

#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const index_t oi = i0 + 4 * tx + q;
    if (oi < n)
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        const index_t orow = r0 + 4 * ty + p;
        if (orow < rows)
          y[oi * rows + orow] = total[p][q] + middle[p][q];
      }
  }
}

// Activation rows one GEMM launch takes: its grid's y dimension holds at most 65535 blocks.
inline constexpr index_t gemm_launch_rows = index_t{65535} * gemm_bn;

// Checks the arguments of a GEMM launch (W's view, then n and the pointers) and launches it.
template <class F, class X, class View, class Source>
status launch_gemm(const View& w, const Source& src, const X* x, index_t n, float* y,
                   cudaStream_t stream, cudaError_t* error) noexcept {
  if (status s = w.validate(); s != status::ok)
    return s;
  if (n < 1)
    return status::invalid_shape;
  if (x == nullptr || y == nullptr)
    return status::null_pointer;
  const index_t rows = w.rows, cols = w.cols;
  const index_t row_blocks = (rows + gemm_bm - 1) / gemm_bm;
  if (row_blocks > 0x7fffffff)
    return status::invalid_shape;
  // More activation rows than one grid holds: one launch per gemm_launch_rows of them.
  for (index_t i0 = 0; i0 < n; i0 += gemm_launch_rows) {
    const index_t part = n - i0 < gemm_launch_rows ? n - i0 : gemm_launch_rows;
    const dim3 grid(static_cast<unsigned>(row_blocks),
                    static_cast<unsigned>((part + gemm_bn - 1) / gemm_bn), 1);
    gemm_tiles<F, X, Source>
        <<<grid, gemm_threads, 0, stream>>>(src, rows, cols, x + i0 * cols, part, y + i0 * rows);
    if (status s = launched(error); s != status::ok)
      return s;
  }
  return status::ok;
}

} // namespace detail

// y [n][rows] = x [n][cols] W^T for any n >= 1, W in the sequential layout (other layouts are
// unsupported_format): the sequential GEMV kernel for n <= 8, the GEMM kernel above that.
template <class F, class X>
status gemm(const qmatrix_view<F>& w, const X* x, index_t n, float* y, cudaStream_t stream = 0,
            cudaError_t* error = nullptr) noexcept {
  static_assert(detail::is_activation_type<X>,
                "aplq::cuda::gemm: activations are float, aplq::half or aplq::bfloat16");
  if (n >= 1 && n <= gemv_max_n)
    return gemv(w, x, n, y, stream, error);
  if (error != nullptr)
    *error = cudaSuccess;
  if constexpr (!std::is_same<typename F::layout_type, layout::sequential>::value)
    return status::unsupported_format;
  else
    return detail::launch_gemm<F>(w, detail::sequential_source<F>{w}, x, n, y, stream, error);
}

// The same for a format described at run time (sequential layout only), as gemv.
template <class View, class X,
          std::enable_if_t<std::is_same<View, any_qmatrix_view>::value, int> = 0>
status gemm(const View& w, const X* x, index_t n, float* y, cudaStream_t stream = 0,
            cudaError_t* error = nullptr) noexcept {
  if (error != nullptr)
    *error = cudaSuccess;
  return detail::visit_sequential(w,
                                  [&](const auto& q) { return gemm(q, x, n, y, stream, error); });
}

} // namespace cuda
} // namespace aplq
