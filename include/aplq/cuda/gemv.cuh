// SPDX-License-Identifier: Apache-2.0
// Small-batch GEMV on NVIDIA GPUs for every format of the sequential layout: Y [n][rows] =
// X [n][cols] W^T for 1 <= n <= 8 activation rows, f32, f16 (aplq::half) or bf16
// (aplq::bfloat16) activations, f32 accumulation and f32 output. Decoding
// at batch 1-8 is memory bound, so each warp streams one packed row with 16-byte loads, expands
// the codes to w = a * (u - c) in registers and FMAs them into up to eight accumulators at once,
// so the row is read once for all activation rows. Host launchers take a stream and return a
// status; CUDA errors keep their cudaError_t.
#pragma once

#include <cstdint>
#include <type_traits>

#include <cub/warp/warp_reduce.cuh>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../format.hpp"
#include "../status.hpp"
#include "../view.hpp"
#include "../visit.hpp"

namespace aplq {
namespace cuda {

// The most activation rows one call of gemv multiplies.
inline constexpr index_t gemv_max_n = 8;

namespace detail {

// Warps per block; one warp per output row.
inline constexpr int gemv_warps = 4;
inline constexpr int warp_size = 32;
// Bytes of one vector load of the packed row.
inline constexpr int vector_bytes = 16;

// The raw bits of a scale, zero point or activation, and their exact widening to f32 (like
// aplq::half_to_float and bfloat16_to_float); kernels that keep loads in flight widen later.
__device__ APLQ_FORCE_INLINE float widen(float v) noexcept { return v; }
__device__ APLQ_FORCE_INLINE float widen(half v) noexcept {
  return __half2float(__ushort_as_half(v.bits));
}
__device__ APLQ_FORCE_INLINE float widen(bfloat16 v) noexcept {
  return __uint_as_float(static_cast<unsigned>(v.bits) << 16);
}
template <class S>
__device__ APLQ_FORCE_INLINE S load_raw(const S* p) noexcept {
  if constexpr (std::is_same<S, float>::value) {
    return __ldg(p);
  } else {
    S v;
    v.bits = __ldg(reinterpret_cast<const unsigned short*>(p));
    return v;
  }
}
template <class S>
__device__ APLQ_FORCE_INLINE float load_scale(const S* p) noexcept {
  return widen(load_raw(p));
}

// The activation types the kernels take: loaded with load_scale, widened exactly to f32.
template <class X>
inline constexpr bool is_activation_type =
    std::is_same<X, float>::value || std::is_same<X, half>::value ||
    std::is_same<X, bfloat16>::value;

// The state of one lane of the warp that computes output row r.
template <class F, class X>
struct gemv_lane {
  using scale_type = typename F::scale_type;
  const scale_type* scales; // this row's [groups]
  const scale_type* zeros;  // this row's [groups] (zero-point formats)
  const X* x;               // [n][cols]
  index_t cols;
  int n;
  index_t group = -1; // the group whose affine form is cached in a, c
  float a = 0.0f;
  float c = 0.0f;

  // Adds byte `b` (the row's byte index) with value `v` to part[0..n).
  __device__ APLQ_FORCE_INLINE void add_byte(index_t b, unsigned v, float (&part)[gemv_max_n]) {
    const index_t j0 = b * F::per_byte; // its first code; a byte never straddles two groups
    index_t g = 0;
    if constexpr (F::group != whole_row)
      g = j0 / F::group;
    if (g != group) {
      group = g;
      a = F::affine_a(load_scale(scales + g));
      c = F::affine_c(F::zero_point ? load_scale(zeros + g) : 0.0f);
    }
    const index_t left = cols - j0; // codes of the row from j0 on (the last byte may pad)
#pragma unroll
    for (int t = 0; t < F::per_byte; ++t) {
      if (t < left) {
        const unsigned u = (v >> (t * F::bits)) & F::code_max;
        const float w = a * (static_cast<float>(u) - c);
#pragma unroll
        for (int i = 0; i < gemv_max_n; ++i)
          if (i < n)
            part[i] = fmaf(w, load_scale(x + i * cols + j0 + t), part[i]);
      }
    }
  }
};

// One warp per row r: the row's bytes are split into an unaligned head (< 16 bytes), 16-byte
// chunks and a tail (< 16 bytes). Lanes take chunks round robin; each chunk (and each head or
// tail byte) is summed on its own before joining the lane's accumulator, which keeps the f32
// summation depth near 16 * per_byte + chunks / 32 (the test's error bound spells it out).
template <class F, class X>
__global__ void __launch_bounds__(gemv_warps* warp_size)
    gemv_sequential(const std::uint8_t* __restrict__ codes,
                    const typename F::scale_type* __restrict__ scales,
                    const typename F::scale_type* __restrict__ zeros, index_t rows, index_t cols,
                    const X* __restrict__ x, int n, float* __restrict__ y) {
  using reduce = cub::WarpReduce<float>;
  __shared__ typename reduce::TempStorage temp[gemv_warps];
  const int warp = static_cast<int>(threadIdx.x) / warp_size;
  const int lane = static_cast<int>(threadIdx.x) % warp_size;
  const index_t r = static_cast<index_t>(blockIdx.x) * gemv_warps + warp;
  if (r >= rows) // whole warps leave together: the reduction below needs every lane
    return;

  const index_t rb = F::row_bytes(cols);
  const index_t groups = F::groups(cols);
  const std::uint8_t* row = codes + r * rb; // [rb] bytes
  gemv_lane<F, X> st{scales + r * groups, F::zero_point ? zeros + r * groups : nullptr, x, cols, n};

  float acc[gemv_max_n];
#pragma unroll
  for (int i = 0; i < gemv_max_n; ++i)
    acc[i] = 0.0f;
  auto add_part = [&](const float(&part)[gemv_max_n]) {
#pragma unroll
    for (int i = 0; i < gemv_max_n; ++i)
      acc[i] += part[i];
  };

  const auto address = reinterpret_cast<std::uintptr_t>(row);
  const index_t misalign = static_cast<index_t>(address % vector_bytes);
  const index_t head =
      misalign == 0 ? 0 : (rb < vector_bytes - misalign ? rb : vector_bytes - misalign);
  const index_t chunks = (rb - head) / vector_bytes;
  const index_t tail_begin = head + chunks * vector_bytes;

  // Head and tail: at most 15 bytes each, one byte per lane.
  for (index_t b = lane; b < head; b += warp_size) {
    float part[gemv_max_n] = {};
    st.add_byte(b, row[b], part);
    add_part(part);
  }
  const uint4* body = reinterpret_cast<const uint4*>(row + head); // [chunks] 16-byte vectors
  for (index_t k = lane; k < chunks; k += warp_size) {
    const uint4 v = __ldg(body + k);
    const unsigned words[4] = {v.x, v.y, v.z, v.w};
    const index_t b0 = head + k * vector_bytes;
    float part[gemv_max_n] = {};
#pragma unroll
    for (int q = 0; q < 4; ++q)
#pragma unroll 1
      for (int s = 0; s < 4; ++s)
        st.add_byte(b0 + 4 * q + s, (words[q] >> (8 * s)) & 0xffu, part);
    add_part(part);
  }
  for (index_t b = tail_begin + lane; b < rb; b += warp_size) {
    float part[gemv_max_n] = {};
    st.add_byte(b, row[b], part);
    add_part(part);
  }

#pragma unroll
  for (int i = 0; i < gemv_max_n; ++i) {
    if (i < n) {
      const float sum = reduce(temp[warp]).Sum(acc[i]);
      __syncwarp();
      if (lane == 0)
        y[i * rows + r] = sum;
    }
  }
}

// The launch grid for `rows` rows: 0 when it would not fit.
inline unsigned gemv_blocks(index_t rows) noexcept {
  const index_t blocks = (rows + gemv_warps - 1) / gemv_warps;
  return blocks > 0x7fffffff ? 0u : static_cast<unsigned>(blocks);
}

// Calls fn(qmatrix_view<F>) with the typed view of the sequential format `w` describes;
// other layouts and unknown formats are unsupported_format. The entry points for run-time
// formats go through here, so each instantiates its kernels once per sequential format.
template <class Fn>
status visit_sequential(const any_qmatrix_view& w, Fn&& fn) noexcept {
  if (w.format.layout != layout_kind::sequential)
    return status::unsupported_format;
  return visit_format(w.format, [&](auto fmt) -> status {
    using F = decltype(fmt);
    using scale_type = typename F::scale_type;
    if constexpr (!std::is_same<typename F::layout_type, layout::sequential>::value) {
      return status::unsupported_format;
    } else {
      return fn(qmatrix_view<F>{static_cast<const std::uint8_t*>(w.codes),
                                static_cast<const scale_type*>(w.scales),
                                static_cast<const scale_type*>(w.zeros), w.rows, w.cols});
    }
  });
}

inline status launched(cudaError_t* error) noexcept {
  const cudaError_t e = cudaGetLastError();
  if (error != nullptr)
    *error = e;
  return e == cudaSuccess ? status::ok : status::device_error;
}

} // namespace detail

// y [n][rows] = x [n][cols] W^T on `stream`, for 1 <= n <= 8, x of float, aplq::half or
// aplq::bfloat16 (bit-compatible with CUDA's __half and __nv_bfloat16), y in float. The view's
// arrays, x and y are device pointers; y is written in full, nothing else is. Returns invalid_shape
// (bad size, n outside 1..8), null_pointer, unsupported_format (a layout other than sequential) or
// device_error, with the cudaError_t of the failed launch stored through `error` when given
// (cudaSuccess otherwise). The launch is asynchronous: errors raised while the kernel runs show
// at the next synchronizing call, as with any CUDA kernel.
template <class F, class X>
status gemv(const qmatrix_view<F>& w, const X* x, index_t n, float* y, cudaStream_t stream = 0,
            cudaError_t* error = nullptr) noexcept {
  static_assert(detail::is_activation_type<X>,
                "aplq::cuda::gemv: activations are float, aplq::half or aplq::bfloat16");
  if (error != nullptr)
    *error = cudaSuccess;
  if constexpr (!std::is_same<typename F::layout_type, layout::sequential>::value) {
    return status::unsupported_format;
  } else {
    if (status s = w.validate(); s != status::ok)
      return s;
    if (n < 1 || n > gemv_max_n)
      return status::invalid_shape;
    if (x == nullptr || y == nullptr)
      return status::null_pointer;
    const unsigned blocks = detail::gemv_blocks(w.rows);
    if (blocks == 0)
      return status::invalid_shape;
    detail::gemv_sequential<F, X><<<blocks, detail::gemv_warps * detail::warp_size, 0, stream>>>(
        w.codes, w.scales, w.zeros, w.rows, w.cols, x, static_cast<int>(n), y);
    return detail::launched(error);
  }
}

// The same for a format described at run time; layouts other than sequential are
// unsupported_format. A template only so that the kernels of every format are instantiated in
// the translation units that call it, not in every one that includes this header.
template <class View, class X,
          std::enable_if_t<std::is_same<View, any_qmatrix_view>::value, int> = 0>
status gemv(const View& w, const X* x, index_t n, float* y, cudaStream_t stream = 0,
            cudaError_t* error = nullptr) noexcept {
  if (error != nullptr)
    *error = cudaSuccess;
  return detail::visit_sequential(w,
                                  [&](const auto& q) { return gemv(q, x, n, y, stream, error); });
}

} // namespace cuda
} // namespace aplq
