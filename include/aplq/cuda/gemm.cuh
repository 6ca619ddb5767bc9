// SPDX-License-Identifier: Apache-2.0
// GEMM for any batch and GEMV on the GPU-tuned layout (tiled.hpp): Y [n][rows] = X [n][cols] W^T,
// f32, f16 (aplq::half) or bf16 (aplq::bfloat16) activations, f32 accumulation and f32 output.
//
// - gemv_tiled (1 <= n <= 8, tiled layout): a block of 8 warps owns one tile of 32 rows; lane i
//   computes row i, so a warp's 16-byte loads cover 512 consecutive bytes and its scale loads 32
//   consecutive values. The warps split the row's units and add their sums in a fixed order.
// - gemm_tiles (any n, sequential or tiled layout): a block computes 64 rows x 32 activation rows
//   in steps of 32 columns. Each step dequantizes the 64 x 32 weights to shared memory (a step
//   never straddles a scale group: groups are multiples of 32), stages the 32 x 32 activations
//   there, and each thread FMAs a 4 x 4 block of outputs.
// Sums are kept shallow for f32: per unit (gemv) or per 32-column step (gemm) a fresh partial sum,
// folded into a middle sum that is folded into the total every 16 units or 32 steps.
#pragma once

#include "gemv.cuh"
#include "tiled.hpp"

namespace aplq {
namespace cuda {
namespace detail {

// Where a kernel reads W: the bytes holding codes j0 .. j0 + 15 of row r in sequential order
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

template <class F>
struct tiled_source {
  tiled_view<F> w;
  // Units hold at least 16 codes and start at multiples of 16: codes j0 .. j0 + 15 share one.
  __device__ APLQ_FORCE_INLINE const std::uint8_t* bytes(index_t r, index_t j0) const noexcept {
    return w.codes + w.byte_of(r, j0);
  }
  __device__ APLQ_FORCE_INLINE float a(index_t r, index_t g) const noexcept {
    return F::affine_a(load_scale(w.scales + w.scale_index(r, g)));
  }
  __device__ APLQ_FORCE_INLINE float c(index_t r, index_t g) const noexcept {
    return F::affine_c(F::zero_point ? load_scale(w.zeros + w.scale_index(r, g)) : 0.0f);
  }
};

// ---- GEMV on the tiled layout ----

// Not yet measured on a GPU: 8 warps of a tile, two 16-byte loads in flight each.
inline constexpr int tiled_warps = 8;
// Units a warp sums into its middle sum before folding it into the total.
inline constexpr index_t tiled_fold_units = 16;

template <class F, class X>
__global__ void __launch_bounds__(tiled_warps* warp_size)
    gemv_tiled(tiled_view<F> w, const X* __restrict__ x, int n, float* __restrict__ y) {
  using scale_type = typename F::scale_type;
  constexpr index_t U = tiled_view<F>::unit_codes;
  constexpr int codes_per_word = 32 / F::bits;
  __shared__ float partial[tiled_warps][gemv_max_n][tile_rows];

  const int warp = static_cast<int>(threadIdx.x) / warp_size;
  const int lane = static_cast<int>(threadIdx.x) % warp_size;
  const index_t tile = blockIdx.x;
  const index_t cols = w.cols, units = w.units(), groups = w.groups();
  const uint4* codes = reinterpret_cast<const uint4*>(w.codes) + tile * units * tile_rows + lane;
  const scale_type* scales = w.scales + tile * groups * tile_rows + lane;
  const scale_type* zeros = F::zero_point ? w.zeros + tile * groups * tile_rows + lane : nullptr;

  float total[gemv_max_n], middle[gemv_max_n];
#pragma unroll
  for (int i = 0; i < gemv_max_n; ++i)
    total[i] = middle[i] = 0.0f;

  // Adds unit u (loaded as v) of this lane's row to middle, a 32-bit word at a time. A word's
  // codes share one group (groups are multiples of 32 codes, a word holds at most 32).
  index_t cached = -1; // the group whose affine form is in a, c
  float a = 0.0f, c = 0.0f;
  auto add_unit = [&](uint4 v, index_t u) {
    float part[gemv_max_n];
#pragma unroll
    for (int i = 0; i < gemv_max_n; ++i)
      part[i] = 0.0f;
#pragma unroll 1
    for (int k = 0; k < 4; ++k) {
      const unsigned word = v.x;
      v = make_uint4(v.y, v.z, v.w, 0u); // the next word moves to x: no indexed registers
      const index_t jw = u * U + k * codes_per_word; // the word's first column
      if (jw >= cols)
        break;
      index_t g = 0;
      if constexpr (F::group != whole_row)
        g = jw / F::group;
      if (g != cached) {
        cached = g;
        a = F::affine_a(load_scale(scales + g * tile_rows));
        c = F::affine_c(F::zero_point ? load_scale(zeros + g * tile_rows) : 0.0f);
      }
      const bool full = jw + codes_per_word <= cols;
      const X* xw = x + jw;
#pragma unroll
      for (int t = 0; t < codes_per_word; ++t) {
        if (full || jw + t < cols) {
          const unsigned code = (word >> (t * F::bits)) & F::code_max;
          const float wv = a * (static_cast<float>(code) - c);
#pragma unroll
          for (int i = 0; i < gemv_max_n; ++i)
            if (i < n)
              part[i] = fmaf(wv, load_scale(xw + i * cols + t), part[i]);
        }
      }
    }
#pragma unroll
    for (int i = 0; i < gemv_max_n; ++i)
      middle[i] += part[i];
  };
  auto fold = [&] {
#pragma unroll
    for (int i = 0; i < gemv_max_n; ++i) {
      total[i] += middle[i];
      middle[i] = 0.0f;
    }
  };

  // Two loads in flight per warp; units u and u + tiled_warps.
  index_t done = 0;
  index_t u = warp;
  for (; u + tiled_warps < units; u += 2 * tiled_warps) {
    const uint4 v0 = __ldg(codes + u * tile_rows);
    const uint4 v1 = __ldg(codes + (u + tiled_warps) * tile_rows);
    add_unit(v0, u);
    add_unit(v1, u + tiled_warps);
    if ((done += 2) % tiled_fold_units == 0)
      fold();
  }
  if (u < units)
    add_unit(__ldg(codes + u * tile_rows), u);
  fold();

#pragma unroll
  for (int i = 0; i < gemv_max_n; ++i)
    partial[warp][i][lane] = total[i];
  __syncthreads();
  if (warp == 0) {
    const index_t r = tile * tile_rows + lane;
    if (r < w.rows)
      for (int i = 0; i < n; ++i) {
        float sum = partial[0][i][lane];
#pragma unroll
        for (int k = 1; k < tiled_warps; ++k)
          sum += partial[k][i][lane];
        y[i * w.rows + r] = sum;
      }
  }
}

// ---- GEMM, any batch ----

// Block and step sizes are a first choice, not yet measured on a GPU.
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

// y [n][rows] = x [n][cols] W^T on `stream`, for 1 <= n <= 8, W in the tiled layout. Pointers,
// statuses and errors as for the sequential gemv; the codes must be 16-byte aligned
// (invalid_argument otherwise).
template <class F, class X>
status gemv(const tiled_view<F>& w, const X* x, index_t n, float* y, cudaStream_t stream = 0,
            cudaError_t* error = nullptr) noexcept {
  static_assert(detail::is_activation_type<X>,
                "aplq::cuda::gemv: activations are float, aplq::half or aplq::bfloat16");
  if (error != nullptr)
    *error = cudaSuccess;
  if (status s = w.validate(); s != status::ok)
    return s;
  if (n < 1 || n > gemv_max_n)
    return status::invalid_shape;
  if (x == nullptr || y == nullptr)
    return status::null_pointer;
  if (w.tiles() > 0x7fffffff)
    return status::invalid_shape;
  detail::gemv_tiled<F, X>
      <<<static_cast<unsigned>(w.tiles()), detail::tiled_warps * detail::warp_size, 0, stream>>>(
          w, x, static_cast<int>(n), y);
  return detail::launched(error);
}

// y [n][rows] = x [n][cols] W^T for any n >= 1, W in the tiled layout: the GEMV kernel for
// n <= 8, the GEMM kernel above that.
template <class F, class X>
status gemm(const tiled_view<F>& w, const X* x, index_t n, float* y, cudaStream_t stream = 0,
            cudaError_t* error = nullptr) noexcept {
  static_assert(detail::is_activation_type<X>,
                "aplq::cuda::gemm: activations are float, aplq::half or aplq::bfloat16");
  if (n >= 1 && n <= gemv_max_n)
    return gemv(w, x, n, y, stream, error);
  if (error != nullptr)
    *error = cudaSuccess;
  return detail::launch_gemm<F>(w, detail::tiled_source<F>{w}, x, n, y, stream, error);
}

// The same for the sequential layout (other layouts are unsupported_format): the sequential GEMV
// kernel for n <= 8, the GEMM kernel above that.
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
