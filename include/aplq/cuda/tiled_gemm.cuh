// SPDX-License-Identifier: Apache-2.0
// GEMV and GEMM on the GPU-tuned layout (tiled.hpp) with the tensor cores: Y [n][rows] =
// X [n][cols] W^T for any n, f32, f16 (aplq::half) or bf16 (aplq::bfloat16) activations, f32
// accumulation and f32 output. Needs sm_80 or newer (mma.sync.m16n8k16).
//
// Products are exact and sums are f32:
// - codes become u - c exactly in 16-bit floats (symmetric formats: c = 2^(Bits-1), or 0.5 for 1
//   bit) or u (zero-point formats), with a shift, a mask and one packed subtraction per two codes;
// - f16 activations go to the tensor cores as they are, with f16 codes; bf16 ones likewise with
//   bf16 codes; an f32 activation is split into three bf16 parts whose sum is exactly the f32
//   value (8 + 8 + 8 significant bits), each a column of its own, by a small kernel before the
//   main one (into a buffer from the stream's memory pool; f16 and bf16 rows that are odd in
//   length or off 4-byte boundaries are copied there too);
// - the tensor cores multiply 16-bit values exactly and add in f32 (Hopper and Ampere truncate
//   where f32 arithmetic rounds, which the tests' bound allows for);
// - per segment (a scale group, at most 128 columns) the sums start at zero; the segment's scale
//   joins with one f32 FMA per output; zero-point formats subtract z * sum(x) over the segment,
//   the sum taken by one more mma with all-ones weights.
//
// A block of warps owns one tile of 32 rows; its warps take contiguous runs of the tile's units,
// keep several in flight, and add their sums in a fixed order, so results do not depend on the
// launch. A warp's mma covers 16 rows x 8 columns of the batch (activation rows, or parts of
// them) x 16 codes; a launch takes up to 8 * NT columns (NT = 1 or 2), more rows take more
// launches. Each lane keeps two units of codes and two 16-column blocks of activations in flight.
#pragma once

#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "gemv.cuh"
#include "tiled.hpp"

namespace aplq {
namespace cuda {
namespace detail {

// Columns of the mma's B operand (activation rows, or their bf16 parts) a launch takes: 8 per
// n-tile, NT = 1 or 2 n-tiles.
inline constexpr int mma_max_ntiles = 2;
// Columns each activation row takes: an f32 row is three bf16 parts, f16 and bf16 rows one.
template <class X>
inline constexpr int mma_parts = std::is_same<X, float>::value ? 3 : 1;
// Activation rows one launch with NT n-tiles takes.
template <class X>
constexpr index_t mma_rows_per_launch(int ntiles) noexcept {
  return 8 * ntiles / mma_parts<X>;
}
// Warps per block, and the blocks per SM the registers are cut for: two blocks of 16 warps (64
// registers) with one n-tile, one with two. On an H100 (q4 group 128, 8192 x 28672, batch 1, f32
// activations) two blocks of 16 warps took 67 us, one block 88 us (no spills), four blocks of 8
// warps 84 us.
inline constexpr int mma_warps = 16;
template <int NT>
inline constexpr int mma_min_blocks = NT == 1 ? 2 : 1;
// Columns a segment's sums run over before its scale joins: a group, at most 128 (so a whole-row
// scale joins every 128 columns).
template <class F>
inline constexpr index_t mma_segment = (F::group == whole_row || F::group > 128) ? 128 : F::group;

// The 16-bit type of the tensor-core operands: f16 for f16 activations, else bf16.
template <class X>
using mma_operand = std::conditional_t<std::is_same<X, half>::value, half, bfloat16>;

// D = A B + D for one m16n8k16 tile, A 16 x 16 (4 registers of two 16-bit values), B 16 x 8 (2
// registers), D 16 x 8 f32 (4 registers), in the fragment order of the PTX ISA.
template <class T>
__device__ APLQ_FORCE_INLINE void mma_16816(float (&d)[4], const unsigned (&a)[4],
                                            const unsigned (&b)[2]) noexcept {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same<T, half>::value) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
#else
  (void)d, (void)a, (void)b;
  __trap(); // the host launchers never run this kernel below sm_80
#endif
}

// Two 16-bit values t: lo in the low half, hi in the high half.
template <class T>
__device__ APLQ_FORCE_INLINE unsigned pack_pair(float lo, float hi) noexcept {
  if constexpr (std::is_same<T, half>::value) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&h);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&h);
  }
}
template <class T>
__device__ APLQ_FORCE_INLINE unsigned sub_pair(unsigned v, float c) noexcept {
  if constexpr (std::is_same<T, half>::value) {
    const __half2 r = __hsub2(*reinterpret_cast<const __half2*>(&v), __float2half2_rn(c));
    return *reinterpret_cast<const unsigned*>(&r);
  } else {
    const __nv_bfloat162 r =
        __hsub2(*reinterpret_cast<const __nv_bfloat162*>(&v), __float2bfloat162_rn(c));
    return *reinterpret_cast<const unsigned*>(&r);
  }
}

// Pair s of a lane's word (tiled.hpp: codes at bits Bits * s and 16 + Bits * s) as two values
// u - c of type T, exactly: symmetric formats subtract c, zero-point formats keep u.
template <class F, class T>
__device__ APLQ_FORCE_INLINE unsigned decode_pair(unsigned word, int s) noexcept {
  constexpr bool f16 = std::is_same<T, half>::value;
  constexpr float c = F::zero_point ? 0.0f : F::affine_c(0.0f);
  if constexpr (F::bits == 1 && !F::zero_point) {
    // +-0.5: the sign bit set where the code is 0.
    constexpr unsigned half_pair = f16 ? 0x38003800u : 0x3f003f00u;
    return (~(word << (15 - s)) & 0x80008000u) | half_pair;
  } else if constexpr (F::bits == 8 && !f16) {
    // bf16 holds 8 significant bits, too few for 2^7 + u: through f32 2^23 + u.
    const float lo = __uint_as_float(__byte_perm(word, 0x4b000000u, 0x7540u | s));
    const float hi = __uint_as_float(__byte_perm(word, 0x4b000000u, 0x7540u | (s + 2)));
    return pack_pair<T>(lo - (8388608.0f + c), hi - (8388608.0f + c));
  } else if constexpr (F::bits == 8) {
    // f16 1024 + u: the byte under the exponent of 2^10.
    const unsigned v = __byte_perm(word, 0x64u, 0x4040u | s | ((s + 2) << 8));
    return sub_pair<T>(v, 1024.0f + c);
  } else {
    // 2^10 + u (f16) or 2^7 + u (bf16), u < 16: the code under the exponent.
    constexpr unsigned magic = f16 ? 0x64006400u : 0x43004300u;
    constexpr float base = f16 ? 1024.0f : 128.0f;
    const unsigned v = ((word >> (F::bits * s)) & (F::code_max * 0x00010001u)) | magic;
    return sub_pair<T>(v, base + c);
  }
}

// An f32 activation as three bf16 parts whose sum is exactly the value: each part is what is
// left, truncated to 8 significant bits (the high half of its f32 bits), so the three hold the
// 24 significant bits of the f32 value.
__device__ APLQ_FORCE_INLINE void split_parts(float v, unsigned short (&part)[3]) noexcept {
  const float p0 = __uint_as_float(__float_as_uint(v) & 0xffff0000u);
  const float r = v - p0; // exact: p0 is v truncated
  const float p1 = __uint_as_float(__float_as_uint(r) & 0xffff0000u);
  const float p2 = r - p1; // exact, and at most 8 significant bits
  part[0] = static_cast<unsigned short>(__float_as_uint(p0) >> 16);
  part[1] = static_cast<unsigned short>(__float_as_uint(p1) >> 16);
  part[2] = static_cast<unsigned short>(__float_as_uint(p2) >> 16);
}

// parts [3 n][ld] = the bf16 parts of x [n][cols], row 3 i + p part p of row i; columns cols ..
// ld - 1 are zero. A template (X = float) so that the header can be included by several
// translation units.
template <class X>
__global__ void split_activations(const X* __restrict__ x, index_t n, index_t cols, index_t ld,
                                  unsigned short* __restrict__ parts) {
  const index_t count = n * ld;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < count;
       e += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const index_t i = e / ld, k = e % ld;
    unsigned short part[3] = {0, 0, 0};
    if (k < cols)
      split_parts(__ldg(x + i * cols + k), part);
#pragma unroll
    for (int p = 0; p < 3; ++p)
      parts[(3 * i + p) * ld + k] = part[p];
  }
}

// gemm_mma: y [n][rows] = x [n][cols] W^T for the n <= mma_rows_per_launch<X>(NT) activation
// rows of one launch, W tiled. The B operand's columns are rows of xs (16-bit values, ld apart):
// the activation rows themselves (f16, bf16), or their parts (f32: row 3 i + p, part p of row
// i). xs and ld are even, so a pair of values is one 4-byte load. Block: mma_warps warps
// on tile blockIdx.x; lane 4 g + t.
template <class F, class X, int NT>
__global__ void __launch_bounds__(mma_warps* warp_size, mma_min_blocks<NT>)
    gemm_mma(tiled_view<F> w, const unsigned short* __restrict__ xs, index_t ld, int n,
             float* __restrict__ y) {
  using T = mma_operand<X>;
  using scale_type = typename F::scale_type;
  constexpr int W = mma_warps;
  constexpr int parts = mma_parts<X>;
  constexpr index_t U = tiled_view<F>::unit_codes;
  constexpr int KB = static_cast<int>(U / 16); // 16-column blocks of a unit
  constexpr int pairs_per_word = 16 / F::bits;
  constexpr index_t seg = mma_segment<F>;
  constexpr int P = 2; // units in flight
  constexpr int D = 2; // 16-column blocks of activations in flight
  __shared__ float sums[8 * NT][tile_rows];

  const int warp = static_cast<int>(threadIdx.x) / warp_size;
  const int lane = static_cast<int>(threadIdx.x) % warp_size;
  const int g = lane / 4, t = lane % 4;
  // Column and unit indices of a row fit an int (tiled_gemm checks cols).
  const index_t tile = blockIdx.x;
  const int cols = static_cast<int>(w.cols), units = static_cast<int>(w.units());
  const int groups = static_cast<int>(w.groups());
  const int per_warp = (units + W - 1) / W;
  const int begin = min(units, warp * per_warp);
  const int end = min(units, begin + per_warp);
  const uint4* codes = reinterpret_cast<const uint4*>(w.codes) + tile * units * tile_rows + lane;
  // This lane's rows of the tile in the accumulators: g, g + 8, g + 16, g + 24 (2 mt + h).
  const scale_type* scales = w.scales + tile * groups * tile_rows + g;
  const scale_type* zeros = F::zero_point ? w.zeros + tile * groups * tile_rows + g : nullptr;
  // This lane's B column of n-tile nt, 8 nt + g, from its pair of column 2 t: a row of xs, or
  // none past the batch (zeros: row 0 read and masked off, so that loads need no branch).
  const unsigned* column[NT];
  unsigned keep[NT];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const bool valid = 8 * nt + g < parts * n;
    keep[nt] = valid ? ~0u : 0u;
    column[nt] = reinterpret_cast<const unsigned*>(xs + (valid ? 8 * nt + g : 0) * ld) + t;
  }
  unsigned xring[D][NT][2]; // the B operands of the next D column blocks
  // The B operands of the 16 columns from k0 (pairs k0 + 2 t and k0 + 2 t + 8 of each column),
  // pairs past the row's end as zeros.
  auto fetch_x_guarded = [&](int k0, unsigned(&b)[NT][2]) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        b[nt][h] = 0u;
        if (k0 + 2 * t + 8 * h < cols)
          b[nt][h] = __ldg(column[nt] + (k0 + 8 * h) / 2) & keep[nt];
      }
  };

  float acc[2][NT][4] = {}; // the open segment's sums
  float zsum[NT][4] = {};   // zero-point formats: its sums of the activations
  float total[2][NT][4] = {};
  // The open segment's scales (and zero points) for rows g + 8 q, the next segment's, and where
  // the next segment starts.
  scale_type a_now[4] = {}, z_now[4] = {}, a_next[4] = {}, z_next[4] = {};
  int next_start = 0;

  auto load_scales = [&](int k, scale_type(&a)[4], scale_type(&z)[4]) {
    int grp = 0;
    if constexpr (F::group != whole_row) // past the row's end (x reads 0): its last group
      grp = min(k / static_cast<int>(F::group), groups - 1);
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      a[q] = load_raw(scales + grp * tile_rows + 8 * q);
      if constexpr (F::zero_point)
        z[q] = load_raw(zeros + grp * tile_rows + 8 * q);
    }
  };
  // Folds the open segment into the totals and opens the next one.
  auto close_segment = [&] {
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int q = 2 * mt + e / 2;
        const float a = F::affine_a(widen(a_now[q]));
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          float v = acc[mt][nt][e];
          if constexpr (F::zero_point)
            v = fmaf(-widen(z_now[q]), zsum[nt][e % 2], v);
          total[mt][nt][e] = fmaf(a, v, total[mt][nt][e]);
          acc[mt][nt][e] = 0.0f;
        }
      }
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        zsum[nt][e] = 0.0f;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      a_now[q] = a_next[q];
      z_now[q] = z_next[q];
    }
    next_start += static_cast<int>(seg);
    load_scales(next_start, a_next, z_next);
  };

  // Unit u (codes v); `first` is the index of its first column block among this warp's, modulo
  // D. Segments end inside units at fixed blocks (seg <= U: units hold whole segments) or at the
  // ends of some units (seg > U).
  auto add_unit = [&](const uint4& v, int u, auto first) {
    const unsigned words[4] = {v.x, v.y, v.z, v.w};
    // Whether every activation this unit prefetches lies inside the row (one test a unit), and
    // where they start: pair (u U + 16 D) / 2 of each column.
    const int k_ahead = u * static_cast<int>(U) + 16 * D;
    const bool inside = k_ahead + static_cast<int>(U) <= cols;
    const unsigned* ahead[NT];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
      ahead[nt] = column[nt] + k_ahead / 2;
#pragma unroll
    for (int kb = 0; kb < KB; ++kb) {
      constexpr int slot0 = decltype(first)::value;
      unsigned(&ring)[NT][2] = xring[(slot0 + kb) % D];
      unsigned b[NT][2];
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
        b[nt][0] = ring[nt][0], b[nt][1] = ring[nt][1];
      if (inside) {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int h = 0; h < 2; ++h)
            ring[nt][h] = __ldg(ahead[nt] + 8 * kb + 4 * h) & keep[nt];
      } else {
        fetch_x_guarded(k_ahead + 16 * kb, ring);
      }
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        unsigned a[4];
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int p = (2 * kb + mt) * 4 + r;
          a[r] = decode_pair<F, T>(words[p / pairs_per_word], p % pairs_per_word);
        }
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
          mma_16816<T>(acc[mt][nt], a, b[nt]);
      }
      if constexpr (F::zero_point) {
        constexpr unsigned one = std::is_same<T, half>::value ? 0x3c003c00u : 0x3f803f80u;
        const unsigned ones[4] = {one, one, one, one};
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
          mma_16816<T>(zsum[nt], ones, b[nt]);
      }
      if constexpr (seg <= U) {
        if ((kb + 1) % (seg / 16) == 0) // known once the loop is unrolled
          close_segment();
      } else if (kb == KB - 1 && (u + 1) * static_cast<int>(U) % static_cast<int>(seg) == 0) {
        close_segment();
      }
    }
  };

  // The first segment's scales and the next one's; the first units and column blocks in flight.
  if (begin < end) {
    const int k = begin * static_cast<int>(U);
    next_start = k / static_cast<int>(seg) * static_cast<int>(seg) + static_cast<int>(seg);
    load_scales(k, a_now, z_now);
    load_scales(next_start, a_next, z_next);
  }
  uint4 ring[P];
#pragma unroll
  for (int p = 0; p < P; ++p)
    if (begin + p < end)
      ring[p] = __ldg(codes + static_cast<index_t>(begin + p) * tile_rows);
#pragma unroll
  for (int d = 0; d < D; ++d)
    fetch_x_guarded(begin * static_cast<int>(U) + 16 * d, xring[d]);
  auto step = [&](int u, uint4& slot, auto first) {
    const uint4 v = slot;
    if (u + P < end)
      slot = __ldg(codes + static_cast<index_t>(u + P) * tile_rows);
    add_unit(v, u, first);
  };
  static_assert(P == 2 && D == 2, "the loop below takes units two at a time");
  for (int u0 = begin; u0 < end; u0 += P) {
    step(u0, ring[0], std::integral_constant<int, 0>{});
    if (u0 + 1 < end)
      step(u0 + 1, ring[1], std::integral_constant<int, KB % D>{});
  }
  // A run that ends inside a segment (seg > U): that segment.
  if (begin < end && end * static_cast<int>(U) % static_cast<int>(seg) != 0)
    close_segment();

  // The warps' totals, added in warp order; then an activation row's parts, in order.
  for (int k = 0; k < W; ++k) {
    if (warp == k) {
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            float& s = sums[8 * nt + 2 * t + e % 2][16 * mt + 8 * (e / 2) + g];
            s = k == 0 ? total[mt][nt][e] : s + total[mt][nt][e];
          }
    }
    __syncthreads();
  }
  for (int o = static_cast<int>(threadIdx.x); o < n * tile_rows; o += W * warp_size) {
    const int i = o / tile_rows, l = o % tile_rows;
    const index_t r = tile * tile_rows + l;
    if (r < w.rows) {
      float s = sums[parts * i][l];
#pragma unroll
      for (int part = 1; part < parts; ++part)
        s += sums[parts * i + part][l];
      y[i * w.rows + r] = s;
    }
  }
}

// Launches gemm_mma for n <= mma_rows_per_launch<X>(mma_max_ntiles) rows with the fewest
// n-tiles that hold them.
template <class F, class X>
void launch_gemm_mma(const tiled_view<F>& w, const unsigned short* xs, index_t ld, int n, float* y,
                     cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>(w.tiles());
  if (n <= mma_rows_per_launch<X>(1))
    gemm_mma<F, X, 1><<<blocks, mma_warps * warp_size, 0, stream>>>(w, xs, ld, n, y);
  else
    gemm_mma<F, X, 2><<<blocks, mma_warps * warp_size, 0, stream>>>(w, xs, ld, n, y);
}

// Checks a tiled launch of 1 <= n <= max_n activation rows (max_n <= 0: any n) and runs it:
// f32 activations are split into bf16 parts first (and misaligned 16-bit ones copied), then a
// launch per mma_rows_per_launch<X>(mma_max_ntiles) rows.
template <class F, class X>
status tiled_gemm(const tiled_view<F>& w, const X* x, index_t n, index_t max_n, float* y,
                  cudaStream_t stream, cudaError_t* error) noexcept {
  if (error != nullptr)
    *error = cudaSuccess;
  if (status s = w.validate(); s != status::ok)
    return s;
  if (n < 1 || (max_n > 0 && n > max_n))
    return status::invalid_shape;
  if (x == nullptr || y == nullptr)
    return status::null_pointer;
  if (w.tiles() > 0x7fffffff || w.cols > 0x7fff0000) // the kernel's column indices are ints
    return status::invalid_shape;
  auto failed = [&](cudaError_t e) {
    if (error != nullptr)
      *error = e;
    return e == cudaErrorMemoryAllocation ? status::out_of_memory : status::device_error;
  };
  int device = 0, major = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e == cudaSuccess)
    e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  if (e != cudaSuccess)
    return failed(e);
  if (major < 8) // no mma.m16n8k16 with bf16 before Ampere
    return status::unsupported_format;

  // The kernel reads activations as 16-bit values in rows of even length (ld) on 4-byte
  // boundaries: f16 and bf16 rows as they are when they line up so, else a copy; f32 rows as
  // their bf16 parts. Copies come from the stream's memory pool.
  const unsigned short* xs = reinterpret_cast<const unsigned short*>(x);
  index_t ld = w.cols;
  unsigned short* copy = nullptr;
  constexpr bool f32 = std::is_same<X, float>::value;
  if (f32 || w.cols % 2 != 0 || reinterpret_cast<std::uintptr_t>(x) % 4 != 0) {
    ld = (w.cols + 1) / 2 * 2;
    const auto bytes = static_cast<std::size_t>(mma_parts<X> * n * ld) * sizeof(unsigned short);
    e = cudaMallocAsync(reinterpret_cast<void**>(&copy), bytes, stream);
    if (e != cudaSuccess)
      return failed(e);
    if constexpr (f32) {
      const index_t count = n * ld, blocks = (count + 255) / 256;
      split_activations<X>
          <<<static_cast<unsigned>(blocks < 4096 ? blocks : 4096), 256, 0, stream>>>(x, n, w.cols,
                                                                                     ld, copy);
      e = cudaGetLastError();
    } else {
      e = cudaMemsetAsync(copy, 0, bytes, stream); // the padding column
      if (e == cudaSuccess)
        e = cudaMemcpy2DAsync(copy, ld * sizeof(X), x, w.cols * sizeof(X), w.cols * sizeof(X), n,
                              cudaMemcpyDeviceToDevice, stream);
    }
    if (e != cudaSuccess) {
      cudaFreeAsync(copy, stream);
      return failed(e);
    }
    xs = copy;
  }
  constexpr index_t step = mma_rows_per_launch<X>(mma_max_ntiles);
  status s = status::ok;
  for (index_t i0 = 0; s == status::ok && i0 < n; i0 += step) {
    const int part = static_cast<int>(n - i0 < step ? n - i0 : step);
    launch_gemm_mma<F, X>(w, xs + i0 * mma_parts<X> * ld, ld, part, y + i0 * w.rows, stream);
    s = launched(error);
  }
  if (copy != nullptr) {
    e = cudaFreeAsync(copy, stream);
    if (e != cudaSuccess && s == status::ok)
      return failed(e);
  }
  return s;
}

} // namespace detail

// y [n][rows] = x [n][cols] W^T on `stream`, for 1 <= n <= 8, W in the tiled layout, on the
// tensor cores (sm_80 or newer: unsupported_format below). Pointers, statuses and errors as for
// the sequential gemv; the codes must be 16-byte aligned (invalid_argument otherwise).
template <class F, class X>
status gemv(const tiled_view<F>& w, const X* x, index_t n, float* y, cudaStream_t stream = 0,
            cudaError_t* error = nullptr) noexcept {
  static_assert(detail::is_activation_type<X>,
                "aplq::cuda::gemv: activations are float, aplq::half or aplq::bfloat16");
  return detail::tiled_gemm(w, x, n, gemv_max_n, y, stream, error);
}

// y [n][rows] = x [n][cols] W^T for any n >= 1, W in the tiled layout: the same kernel, a launch
// per 5 f32 (16 f16 or bf16) activation rows, f32 ones split into bf16 parts first.
template <class F, class X>
status gemm(const tiled_view<F>& w, const X* x, index_t n, float* y, cudaStream_t stream = 0,
            cudaError_t* error = nullptr) noexcept {
  static_assert(detail::is_activation_type<X>,
                "aplq::cuda::gemm: activations are float, aplq::half or aplq::bfloat16");
  return detail::tiled_gemm(w, x, n, 0, y, stream, error);
}

} // namespace cuda
} // namespace aplq
