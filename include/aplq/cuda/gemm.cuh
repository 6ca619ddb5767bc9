// SPDX-License-Identifier: Apache-2.0
// GEMM for any batch and GEMV on the GPU-tuned layout (tiled.hpp): Y [n][rows] = X [n][cols] W^T,
// f32, f16 (aplq::half) or bf16 (aplq::bfloat16) activations, f32 accumulation and f32 output.
//
// - gemv_tiled (1 <= n <= 4 a launch, tiled layout): a block of 16 warps owns one tile of 32
//   rows; lane i computes row i, so a warp's 16-byte loads cover 512 consecutive bytes, its
//   scale loads 32 consecutive values, and its activation loads are one address for all lanes.
//   Codes become f32 by a byte permute under the exponent of 2^23 and a subtraction (two with a
//   zero point or 1-bit codes); the scale is applied once per unit (or group, when smaller). The
//   warps take contiguous runs of the tile's units, keep several units in flight, and add their
//   sums in a fixed order.
// - gemm_tiles (any n, sequential or tiled layout): a block computes 64 rows x 32 activation rows
//   in steps of 32 columns. Each step dequantizes the 64 x 32 weights to shared memory (a step
//   never straddles a scale group: groups are multiples of 32), stages the 32 x 32 activations
//   there, and each thread FMAs a 4 x 4 block of outputs.
// Sums are kept shallow for f32: per unit or group (gemv) or per 32-column step (gemm) a fresh
// partial sum, folded into a middle sum that is folded into the total every 16 units or 32 steps.
#pragma once

#include "gemv.cuh"
#include "tiled.hpp"

namespace aplq {
namespace cuda {

// The most activation rows gemm runs the tiled layout's GEMV kernel for (a launch per 4 rows);
// above, the GEMM kernel.
inline constexpr index_t tiled_gemv_max_n = 16;

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

// Warps per block; a block owns one tile of 32 rows and its warps split the tile's units into
// contiguous runs.
inline constexpr int tiled_warps = 16;
// Activation rows per launch of the tiled GEMV kernel (N = 1, 2 or 4). On an H100 two launches of
// 4 rows were as fast as one of 8 (q4, 8192 x 28672: 2 x 156 us against 318 us; q8: 2 x 211
// against 510), which needed twice the registers and half the warps.
inline constexpr index_t tiled_rows_per_launch = 4;
// Blocks per SM the register budget is cut for: two of 16 warps (64 registers) up to 2 rows of
// 4- and 8-bit codes; 1- and 2-bit units (128 and 64 codes) need more registers.
template <class F, int N>
inline constexpr int tiled_min_blocks = N <= 2 && F::bits >= 4 ? 2 : 1;
// Units a warp sums into its middle sum before folding it into the total.
inline constexpr index_t tiled_fold_units = 16;

// How gemv_tiled walks a unit of F: 32-bit words of cpw codes, cut into segments of `seg` codes
// that share one scale (a unit, or a group when groups are smaller than units), and how many
// units each lane keeps in flight.
template <class F>
struct tiled_unit {
  static constexpr int cpw = 32 / F::bits;
  static constexpr index_t codes = tiled_view<F>::unit_codes;
  static constexpr index_t seg = (F::group == whole_row || F::group >= codes) ? codes : F::group;
  static constexpr int segments = static_cast<int>(codes / seg);
  static constexpr int seg_words = static_cast<int>(seg / cpw);
  static constexpr int ahead = codes <= 32 ? 4 : 2;
  static_assert(seg_words >= 1 && segments * seg_words == 4, "a unit is four words");
};

// Four activations x[j .. j + 3] as f32. Vec: one aligned load (j is a multiple of 4 and the row
// starts on a multiple of 4 elements). Guard: columns at and past `cols` read as 0.
template <bool Vec, bool Guard, class X>
__device__ APLQ_FORCE_INLINE void load_x4(const X* row, index_t j, index_t cols,
                                          float (&v)[4]) noexcept {
  if constexpr (Vec) {
    if (Guard && j >= cols) { // Vec rows hold whole fours: all four are in or out
      v[0] = v[1] = v[2] = v[3] = 0.0f;
    } else if constexpr (std::is_same<X, float>::value) {
      const float4 t = __ldg(reinterpret_cast<const float4*>(row + j));
      v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
    } else {
      const uint2 t = __ldg(reinterpret_cast<const uint2*>(row + j));
      const unsigned words[2] = {t.x, t.y};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        X h;
        h.bits = static_cast<unsigned short>(words[e / 2] >> (16 * (e % 2)));
        v[e] = widen(h);
      }
    }
  } else {
#pragma unroll
    for (int e = 0; e < 4; ++e)
      v[e] = (!Guard || j + e < cols) ? load_scale(row + j + e) : 0.0f;
  }
}

// The codes of word w as f32 values 2^23 + u, in code order: byte k of (w >> (s * Bits)) & mask
// holds code per_byte * k + s, and a byte permute sets it under the exponent of 2^23 (exact).
template <class F>
__device__ APLQ_FORCE_INLINE void decode_word(unsigned w, float (&f)[tiled_unit<F>::cpw]) noexcept {
  constexpr unsigned mask = F::code_max * 0x01010101u;
#pragma unroll
  for (int s = 0; s < F::per_byte; ++s) {
    const unsigned m = F::bits == 8 ? w : (w >> (s * F::bits)) & mask;
#pragma unroll
    for (int k = 0; k < 4; ++k)
      f[F::per_byte * k + s] = __uint_as_float(__byte_perm(m, 0x4b000000u, 0x7540u | k));
  }
}

// u - c from f = 2^23 + u: one exact subtraction when c is an integer (symmetric 2-, 4- and 8-bit
// formats), else u first (exact) and then c (exact for c = 0.5, one rounding for a zero point).
template <class F>
__device__ APLQ_FORCE_INLINE float centred(float f, float c) noexcept {
  if constexpr (!F::zero_point && F::bits > 1)
    return f - (8388608.0f + static_cast<float>(1 << (F::bits - 1)));
  else
    return (f - 8388608.0f) - c;
}

// gemv_tiled: y [n][rows] = x [n][cols] W^T for n <= N activation rows, W tiled. A block of
// tiled_warps warps owns one tile; lane i computes row 32 * tile + i, so a warp's 16-byte loads
// of a unit cover 512 consecutive bytes, its scale loads 32 consecutive values, and its
// activation loads are the same address in every lane (one broadcast). Each lane keeps `ahead`
// units in flight. A segment's codes are decoded to u - c in f32 and FMAed into a fresh partial
// sum per activation row; the segment's scale joins with one FMA into the middle sum, folded into
// the total every tiled_fold_units units; the warps' totals are added in a fixed order. Rows of
// the batch past n repeat row n - 1 and are not stored. Vec: activation rows start on multiples
// of 4 elements (4-wide loads).
template <class F, class X, int N, bool Vec>
__global__ void __launch_bounds__(tiled_warps* warp_size, tiled_min_blocks<F, N>)
    gemv_tiled(tiled_view<F> w, const X* __restrict__ x, int n, float* __restrict__ y) {
  using unit = tiled_unit<F>;
  using scale_type = typename F::scale_type;
  constexpr index_t U = unit::codes;
  constexpr int P = unit::ahead;
  constexpr int W = tiled_warps;
  __shared__ float partial[W][N][tile_rows];

  const int warp = static_cast<int>(threadIdx.x) / warp_size;
  const int lane = static_cast<int>(threadIdx.x) % warp_size;
  const index_t tile = blockIdx.x;
  const index_t cols = w.cols, units = w.units(), groups = w.groups();
  const index_t per_warp = (units + W - 1) / W;
  const index_t begin = min(units, warp * per_warp);
  const index_t end = min(units, begin + per_warp);
  // Units wholly inside the row, then the row's last unit if the row's end cuts it and it is
  // this warp's.
  const index_t cut = cols / U;
  const index_t full_end = max(begin, min(end, cut));
  const bool has_cut = cols % U != 0 && begin <= cut && cut < end;
  const uint4* codes = reinterpret_cast<const uint4*>(w.codes) + tile * units * tile_rows + lane;
  const scale_type* scales = w.scales + tile * groups * tile_rows + lane;
  const scale_type* zeros = F::zero_point ? w.zeros + tile * groups * tile_rows + lane : nullptr;
  const X* xrow[N];
#pragma unroll
  for (int i = 0; i < N; ++i)
    xrow[i] = x + static_cast<index_t>(i < n ? i : n - 1) * cols;

  struct staged {
    uint4 v;
    scale_type a[unit::segments];
    scale_type z[unit::segments];
  };
  auto fetch = [&](index_t u, staged& s) {
    s.v = __ldg(codes + u * tile_rows);
#pragma unroll
    for (int q = 0; q < unit::segments; ++q) {
      index_t g = 0;
      if constexpr (F::group != whole_row) // segments past the row's end (x reads 0 there)
        g = min((u * U + q * unit::seg) / F::group, groups - 1); // take its last group's scale
      s.a[q] = load_raw(scales + g * tile_rows);
      if constexpr (F::zero_point)
        s.z[q] = load_raw(zeros + g * tile_rows);
    }
  };

  float total[N], middle[N];
#pragma unroll
  for (int i = 0; i < N; ++i)
    total[i] = middle[i] = 0.0f;

  auto add_unit = [&](const staged& s, index_t u, auto guard) {
    constexpr bool Guard = decltype(guard)::value;
    const unsigned words[4] = {s.v.x, s.v.y, s.v.z, s.v.w};
#pragma unroll
    for (int q = 0; q < unit::segments; ++q) {
      const float a = F::affine_a(widen(s.a[q]));
      const float c = F::affine_c(F::zero_point ? widen(s.z[q]) : 0.0f);
      float part[N];
#pragma unroll
      for (int i = 0; i < N; ++i)
        part[i] = 0.0f;
#pragma unroll
      for (int k = 0; k < unit::seg_words; ++k) {
        const int word = q * unit::seg_words + k;
        float d[unit::cpw];
        decode_word<F>(words[word], d);
#pragma unroll
        for (int t = 0; t < unit::cpw; ++t)
          d[t] = centred<F>(d[t], c);
        const index_t j = u * U + word * unit::cpw;
#pragma unroll
        for (int t = 0; t < unit::cpw; t += 4) {
#pragma unroll
          for (int i = 0; i < N; ++i) {
            float xv[4];
            load_x4<Vec, Guard>(xrow[i], j + t, cols, xv);
#pragma unroll
            for (int e = 0; e < 4; ++e)
              part[i] = fmaf(d[t + e], xv[e], part[i]);
          }
        }
      }
#pragma unroll
      for (int i = 0; i < N; ++i)
        middle[i] = fmaf(a, part[i], middle[i]);
    }
  };
  auto fold = [&] {
#pragma unroll
    for (int i = 0; i < N; ++i) {
      total[i] += middle[i];
      middle[i] = 0.0f;
    }
  };

  staged ring[P];
#pragma unroll
  for (int p = 0; p < P; ++p)
    if (begin + p < full_end)
      fetch(begin + p, ring[p]);
  index_t done = 0;
  for (index_t u0 = begin; u0 < full_end; u0 += P) {
#pragma unroll
    for (int p = 0; p < P; ++p) {
      const index_t u = u0 + p;
      if (u < full_end) {
        const staged s = ring[p];
        if (u + P < full_end)
          fetch(u + P, ring[p]);
        add_unit(s, u, std::false_type{});
        if (++done == tiled_fold_units) {
          fold();
          done = 0;
        }
      }
    }
  }
  if (has_cut) {
    staged s;
    fetch(cut, s);
    add_unit(s, cut, std::true_type{});
  }
  fold();

#pragma unroll
  for (int i = 0; i < N; ++i)
    partial[warp][i][lane] = total[i];
  __syncthreads();
  for (int o = static_cast<int>(threadIdx.x); o < N * tile_rows; o += W * warp_size) {
    const int i = o / tile_rows, l = o % tile_rows;
    const index_t r = tile * tile_rows + l;
    if (i < n && r < w.rows) {
      float sum = partial[0][i][l];
#pragma unroll
      for (int k = 1; k < W; ++k)
        sum += partial[k][i][l];
      y[i * w.rows + r] = sum;
    }
  }
}

// Launches gemv_tiled for n <= tiled_rows_per_launch rows with the smallest N >= n of 1, 2, 4 when
// activation rows start on multiples of 4 elements; else gemv_tiled<1, scalar loads> once per row.
template <class F, class X, int N, bool Vec>
void launch_gemv_tiled_n(const tiled_view<F>& w, const X* x, int n, float* y, cudaStream_t stream) {
  gemv_tiled<F, X, N, Vec>
      <<<static_cast<unsigned>(w.tiles()), tiled_warps * warp_size, 0, stream>>>(w, x, n, y);
}
template <class F, class X>
void launch_gemv_tiled(const tiled_view<F>& w, const X* x, int n, bool vec, float* y,
                       cudaStream_t stream) {
  if (!vec) {
    for (int i = 0; i < n; ++i)
      launch_gemv_tiled_n<F, X, 1, false>(w, x + i * w.cols, 1, y + i * w.rows, stream);
  } else if (n <= 1) {
    launch_gemv_tiled_n<F, X, 1, true>(w, x, n, y, stream);
  } else if (n <= 2) {
    launch_gemv_tiled_n<F, X, 2, true>(w, x, n, y, stream);
  } else {
    launch_gemv_tiled_n<F, X, 4, true>(w, x, n, y, stream);
  }
}

// Checks a tiled GEMV launch of 1 <= n <= max_n rows and launches it.
template <class F, class X>
status tiled_gemv(const tiled_view<F>& w, const X* x, index_t n, index_t max_n, float* y,
                  cudaStream_t stream, cudaError_t* error) noexcept {
  if (status s = w.validate(); s != status::ok)
    return s;
  if (n < 1 || n > max_n)
    return status::invalid_shape;
  if (x == nullptr || y == nullptr)
    return status::null_pointer;
  if (w.tiles() > 0x7fffffff)
    return status::invalid_shape;
  // 4-wide activation loads when every row starts on a multiple of 4 elements; a launch per
  // tiled_rows_per_launch rows.
  const bool vec = w.cols % 4 == 0 && reinterpret_cast<std::uintptr_t>(x) % (4 * sizeof(X)) == 0;
  for (index_t i0 = 0; i0 < n; i0 += tiled_rows_per_launch) {
    const index_t part = n - i0 < tiled_rows_per_launch ? n - i0 : tiled_rows_per_launch;
    launch_gemv_tiled(w, x + i0 * w.cols, static_cast<int>(part), vec, y + i0 * w.rows, stream);
  }
  return launched(error);
}

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
  return detail::tiled_gemv(w, x, n, gemv_max_n, y, stream, error);
}

// y [n][rows] = x [n][cols] W^T for any n >= 1, W in the tiled layout: the GEMV kernel for
// n <= tiled_gemv_max_n, the GEMM kernel above that.
template <class F, class X>
status gemm(const tiled_view<F>& w, const X* x, index_t n, float* y, cudaStream_t stream = 0,
            cudaError_t* error = nullptr) noexcept {
  static_assert(detail::is_activation_type<X>,
                "aplq::cuda::gemm: activations are float, aplq::half or aplq::bfloat16");
  if (error != nullptr)
    *error = cudaSuccess;
  if (n >= 1 && n <= tiled_gemv_max_n)
    return detail::tiled_gemv(w, x, n, tiled_gemv_max_n, y, stream, error);
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
