// SPDX-License-Identifier: Apache-2.0
// The CPU GEMV/GEMM kernels, written once for any format and any xsimd architecture.
//
// A call prepares the activations once (permuted into the chunk lane order of the format's
// layout, zero-padded to whole chunks, and for the int8 policy quantized per chunk), then runs
// tile kernels over blocks of weight rows on the thread pool. A tile streams RT weight rows
// against NX activation rows (4 x 1 for GEMV, 2 x 4 for GEMM), so every loaded activation chunk
// serves RT rows and every expanded weight chunk NX activation rows. Each output element is
// computed by exactly one tile in a fixed order: results do not depend on the thread count. As
// the activations are copied before any output is written, y may alias x. At larger batches
// both policies switch to panel kernels (the exact policy's panel_task, the int8 policy's
// int8_panel_task, below), which expand a block of weights once per call for every activation
// row.
//
// Per group g with stored (s, z), the affine form of format.hpp gives w = a * (u - c), so
//   exact:  y += a * sum_chunks sum_lanes (u - c) * x                    (f32 FMA)
//   int8:   y += a * sum_chunks dx * sum_lanes (u - bias) * xq  -  a * (c - bias) * gsum[g]
// where xq = round(x / dx) per chunk and gsum[g] = sum over the group's chunks of dx * sum(xq)
// (the int8 panels subtract c per chunk instead: a * dx * (sum_lanes u * xq - c * sum(xq))).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "../view.hpp"
#include "arch/avx2.hpp"
#include "arch/avx512bw.hpp"
#include "arch/generic.hpp"
#include "thread_pool.hpp"

namespace aplq {

// How a kernel computes: `exact` dequantizes weights to f32 and uses FMA; `int8` quantizes the
// activations to int8 per 32-element chunk on the fly and uses integer dot products.
enum class compute : int { exact = 0, int8 = 1 };

struct options {
  int threads = 1;                 // threads to use; <= 0 means all hardware threads
  compute policy = compute::exact; // see `compute`
};

namespace cpu {
namespace detail {

// Activations of one call, in the kernels' lane order.
struct activations {
  index_t n = 0;         // activation rows
  index_t chunks = 0;    // chunks per row: ceil(cols / 32)
  index_t groups = 0;    // scale groups per row
  std::vector<float> xf; // exact: [n][chunks * 32], zero-padded
  // exact, panel path: [panels][chunks * 32][panel_width] (see panel_task), vector aligned
  std::vector<float, xsimd::aligned_allocator<float, 64>> xp;
  std::vector<std::int8_t> xq; // int8:  [n][chunks * 32], zero-padded
  std::vector<float> dx;       // int8:  [n][chunks] activation scales
  std::vector<float> gsum;     // int8:  [n][groups] sum over the group of dx * sum(xq)
  std::vector<float> qsum;     // int8:  [n][chunks] sum(xq) of each chunk (an exact integer)
};

// Everything a tile needs of W, with the group size as a run-time chunk count so that one
// kernel serves every group size of a (bits, zero point, scale type, layout).
template <class Scale>
struct weights {
  const std::uint8_t* codes;
  const Scale* scales;
  const Scale* zeros;
  index_t rows, cols, row_bytes, groups, chunks_per_group, chunks;
};

// The int8 policy's activation quantization of one chunk: d = max|v| / 127 and
// q = clamp(round-to-nearest-even(v / d), -127, 127) (all zeros when d is 0); returns d and adds
// sum(q) to `sum`. Vectorized: done once per call and per chunk, a scalar loop here cost about
// 15 us of a 4096-wide call, 5% of a 1-bit 4096x4096 GEMV.
template <class A>
inline float quantize_chunk(const float* v, std::int8_t* q, int& sum) noexcept {
  using VA = vector_arch<A>;
  using fb = xsimd::batch<float, VA>;
  using ib = xsimd::batch<std::int32_t, VA>;
  constexpr int W = static_cast<int>(fb::size);
  constexpr int V = chunk_codes / W;
  fb b[V];
  fb m(0.0f);
  for (int k = 0; k < V; ++k) {
    b[k] = fb::load_unaligned(v + k * W);
    m = xsimd::max(m, xsimd::abs(b[k]));
  }
  alignas(64) float lanes[W];
  m.store_aligned(lanes);
  float amax = 0.0f;
  for (float e : lanes)
    amax = std::max(amax, e);
  const float d = amax / 127.0f;
  if (!(d > 0.0f)) {
    std::memset(q, 0, chunk_codes);
    return d;
  }
  alignas(64) std::int32_t r[chunk_codes];
  ib total(0);
  for (int k = 0; k < V; ++k) {
    const fb t = xsimd::min(fb(127.0f), xsimd::max(fb(-127.0f), b[k] / fb(d)));
    const ib n = xsimd::nearbyint_as_int(t);
    total += n;
    n.store_aligned(r + k * W);
  }
  // Narrowed through an aligned local (and copied out once) so the compiler vectorizes it.
  alignas(32) std::int8_t narrow[chunk_codes];
  for (int l = 0; l < chunk_codes; ++l)
    narrow[l] = static_cast<std::int8_t>(r[l]);
  std::memcpy(q, narrow, chunk_codes);
  sum += compat::reduce_add(total);
  return d;
}

// Templated on the architecture too, like everything a kernel calls: the compiled dispatch
// library builds this header once per ISA, and an inline function shared between those
// translation units could be resolved to the copy built for another ISA.
template <class F, class A>
status prepare(const float* x, index_t n, index_t cols, index_t groups, index_t chunks_per_group,
               compute policy, activations& act) noexcept {
  act.n = n;
  act.chunks = (cols + chunk_codes - 1) / chunk_codes;
  act.groups = groups;
  const index_t padded = act.chunks * chunk_codes;
  try {
    if (policy == compute::exact) {
      act.xf.resize(static_cast<std::size_t>(n * padded));
    } else {
      act.xq.resize(static_cast<std::size_t>(n * padded));
      act.dx.resize(static_cast<std::size_t>(n * act.chunks));
      act.gsum.assign(static_cast<std::size_t>(n * groups), 0.0f);
      act.qsum.resize(static_cast<std::size_t>(n * act.chunks));
    }
  } catch (const std::bad_alloc&) {
    return status::out_of_memory;
  }
  constexpr bool index_order = [] {
    for (int l = 0; l < chunk_codes; ++l)
      if (lane_code<F>(l) != l)
        return false;
    return true;
  }();
  for (index_t i = 0; i < n; ++i) {
    const float* xi = x + i * cols;
    for (index_t c = 0; c < act.chunks; ++c) {
      float copy[chunk_codes];
      const float* v = copy;
      if (index_order && (c + 1) * chunk_codes <= cols) {
        v = xi + c * chunk_codes; // in place: no lanes to permute, no tail to pad
      } else {
        for (int l = 0; l < chunk_codes; ++l) {
          const index_t j = c * chunk_codes + lane_code<F>(l);
          copy[l] = j < cols ? xi[j] : 0.0f;
        }
      }
      if (policy == compute::exact) {
        std::copy(v, v + chunk_codes, act.xf.data() + i * padded + c * chunk_codes);
        continue;
      }
      std::int8_t* q = act.xq.data() + i * padded + c * chunk_codes;
      int sum = 0;
      const float d = quantize_chunk<A>(v, q, sum);
      act.dx[i * act.chunks + c] = d;
      act.qsum[i * act.chunks + c] = static_cast<float>(sum);
      act.gsum[i * groups + c / chunks_per_group] += d * static_cast<float>(sum);
    }
  }
  return status::ok;
}

// The chunk `c` of `row`: its stripe and plane, or for a sequential row its bytes (copied into
// `tail` when the row ends inside the chunk, so no load reads past the row).
template <class F, class A, class VA = vector_arch<A>>
APLQ_FORCE_INLINE auto chunk_at(const std::uint8_t* row, index_t row_bytes, index_t c,
                                std::uint8_t* tail) noexcept {
  if constexpr (is_sequential<F>) {
    constexpr index_t bytes = chunk_bytes<F>;
    const index_t begin = c * bytes;
    if (begin + bytes > row_bytes) {
      std::memset(tail, 0, chunk_codes);
      std::memcpy(tail, row + begin, static_cast<std::size_t>(row_bytes - begin));
      return load_chunk<F, VA>(tail, 0, VA{});
    }
    return load_chunk<F, VA>(row + begin, 0, VA{});
  } else {
    return load_chunk<F, VA>(row + c / F::per_byte * chunk_codes, static_cast<int>(c % F::per_byte),
                             VA{});
  }
}

template <class F, class A, class Scale>
APLQ_FORCE_INLINE void group_affine(const weights<Scale>& w, index_t r, index_t g, float& a,
                                    float& c) noexcept {
  const index_t i = r * w.groups + g;
  a = F::affine_a(load_scale<vector_arch<A>>(w.scales[i], vector_arch<A>{}));
  if constexpr (F::zero_point)
    c = F::affine_c(load_scale<vector_arch<A>>(w.zeros[i], vector_arch<A>{}));
  else
    c = F::affine_c(0.0f);
}

// A tile reads RT rows side by side: RT interleaved streams of codes and RT of scales, which
// the hardware prefetchers follow poorly. Rows are stored one after another, so the next tile's
// codes are one block of memory, and so are its scales (and zero points). While a tile reads
// chunk ch, this prefetches into L2 the part of that block ch / chunks of the way in, in address
// order (one stream), and the next tile's scales and zero points a line per chunk from the
// tile's start. Streaming 4096x4096 4-bit codes and f32 scales with no arithmetic, 2 threads,
// 4 rows side by side: 24 GB/s as they are, 31-33 GB/s with this, 37-40 GB/s for a plain
// sequential read of the same bytes.
//
// It runs once per chunk, so it is kept nearly free of branches: the last tile prefetches its
// own lines (already in cache) rather than testing for a next one, and a code prefetch may reach
// up to a chunk's bytes per row past the block (a sequential row's partial last chunk), which is
// harmless for a prefetch; its address is computed as an integer, never as a pointer. Bounds checks
// here had cost 10-12% of an in-cache GEMV (AVX512-VNNI, one thread, 1024x1024 q4_g32: 32 -> 29 us;
// q8_g32: 34-35 -> 30-31).
template <class F, int RT, class Scale>
APLQ_FORCE_INLINE void prefetch_next_tile(const weights<Scale>& w, index_t r, index_t ch) noexcept {
  constexpr index_t line = 64;
  constexpr index_t step = RT * chunk_bytes<F>; // the next tile's code bytes per chunk
  const index_t next = r + 2 * RT <= w.rows ? r + RT : r;
  const std::uintptr_t codes = reinterpret_cast<std::uintptr_t>(w.codes + next * w.row_bytes) +
                               static_cast<std::uintptr_t>(ch * step);
  if constexpr (step < line) {
    if (ch % (line / step) == 0)
      APLQ_PREFETCH_L2(reinterpret_cast<const void*>(codes));
  } else {
    for (index_t b = 0; b < step; b += line)
      APLQ_PREFETCH_L2(reinterpret_cast<const void*>(codes + static_cast<std::uintptr_t>(b)));
  }
  const index_t offset = ch * line; // scales of RT rows take at most a quarter of chunks lines
  if (offset < RT * w.groups * static_cast<index_t>(sizeof(Scale))) {
    APLQ_PREFETCH_L2(reinterpret_cast<const char*>(w.scales + next * w.groups) + offset);
    if constexpr (F::zero_point)
      APLQ_PREFETCH_L2(reinterpret_cast<const char*>(w.zeros + next * w.groups) + offset);
  }
}

// f(std::integral_constant<int, i>{}) for i = 0 .. N-1: a loop whose index is a constant
// expression in the body (a plane number, a shift).
template <int N, class Fn, int... I>
APLQ_FORCE_INLINE void static_for(Fn&& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}
template <int N, class Fn>
APLQ_FORCE_INLINE void static_for(Fn&& f) {
  static_for<N>(f, std::make_integer_sequence<int, N>{});
}

// step(ch, load) for every chunk ch in [begin, end) in order, where load(row) returns chunk ch
// of the row starting at `row` (load_chunk of the vector architecture VA). A stripe holds per_byte
// chunks: the planes of a stripe inside the range come from one load (which the compiler shares
// between them) at constant shifts, where chunk_at loads once per chunk and shifts by a run-time
// count.
template <class F, class A, class VA = vector_arch<A>, class Scale, class Step>
APLQ_FORCE_INLINE void for_each_chunk(const weights<Scale>& w, index_t begin, index_t end,
                                      std::uint8_t* tail, Step&& step) {
  index_t ch = begin;
  if constexpr (!is_sequential<F> && F::per_byte > 1) {
    if (begin % F::per_byte == 0)
      for (; ch + F::per_byte <= end; ch += F::per_byte) {
        const index_t offset = ch / F::per_byte * chunk_codes;
        static_for<F::per_byte>([&](auto p) {
          step(ch + p,
               [&](const std::uint8_t* row) { return load_chunk<F, VA>(row + offset, p, VA{}); });
        });
      }
  }
  for (; ch < end; ++ch)
    step(ch,
         [&](const std::uint8_t* row) { return chunk_at<F, A, VA>(row, w.row_bytes, ch, tail); });
}

// The chunk's products wv * x summed lane-wise: one multiply, then an FMA per vector.
template <int V, class B>
APLQ_FORCE_INLINE B chunk_products(const B (&wv)[V], const float* x) noexcept {
  B sum = wv[0] * B::load_unaligned(x);
  for (int v = 1; v < V; ++v)
    sum = xsimd::fma(wv[v], B::load_unaligned(x + v * B::size), sum);
  return sum;
}

// Chunks summed together before a block's sum joins the row's (see tile_exact).
inline constexpr index_t block_chunks = 32;

// A row's chunks in blocks of at most Block chunks of one group (Block = 0: whole groups):
// start(g) as group g begins, step(ch, load) for every chunk in order (as for_each_chunk), end()
// after every block. With OnePass, one for_each_chunk over the whole row, where a block's or a
// group's end is a test inside the pass; otherwise a loop per group and block. Both make the
// same calls in the same order, so a tile's results do not depend on which it takes. The loop
// per group breaks the code stream at every group end (every two stripes of 4-bit codes at
// group 128), which stalls it out of cache, and splits each 1-bit stripe between two groups of
// 128, whose second halves then take the per-chunk loads of a partial stripe (chunk_at).
// Block is a template parameter so that whole groups (Block = 0, the int8 tiles) compile to the
// group test alone: a run-time block size cost the int8 4-bit GEMV tile 9% more instructions.
template <bool OnePass, index_t Block, class F, class A, class VA = vector_arch<A>, class Scale,
          class Start, class Step, class End>
APLQ_FORCE_INLINE void for_each_block(const weights<Scale>& w, std::uint8_t* tail, Start&& start,
                                      Step&& step, End&& end) {
  const index_t block = Block == 0 ? w.chunks_per_group : Block;
  if constexpr (OnePass) {
    index_t g = 0;
    index_t group_end = std::min(w.chunks_per_group, w.chunks);
    index_t block_end = Block == 0 ? group_end : std::min(block, group_end);
    start(g);
    for_each_chunk<F, A, VA>(w, 0, w.chunks, tail, [&](index_t ch, auto load) {
      step(ch, load);
      if (ch + 1 == block_end && block_end < w.chunks) {
        end();
        if (Block == 0 || block_end == group_end) {
          start(++g);
          group_end = std::min(group_end + w.chunks_per_group, w.chunks);
        }
        block_end = Block == 0 ? group_end : std::min(block_end + block, group_end);
      }
    });
    end();
  } else {
    for (index_t g = 0; g < w.groups; ++g) {
      start(g);
      const index_t begin = g * w.chunks_per_group;
      const index_t stop = std::min(begin + w.chunks_per_group, w.chunks);
      for (index_t b0 = begin; b0 < stop; b0 += block) {
        for_each_chunk<F, A, VA>(w, b0, std::min(b0 + block, stop), tail, step);
        end();
      }
    }
  }
}

// A tile is RT consecutive weight rows from r times NX consecutive activation rows from n; it
// writes y[n + k][r + i]. Every expanded weight chunk serves NX activation rows and every
// activation chunk RT weight rows. Each output's arithmetic is the same whatever tile it falls
// in, so results never depend on the tiling.
template <class F, class A, int RT, int NX, class Scale>
inline void tile_exact(const weights<Scale>& w, index_t r, const activations& act, index_t n,
                       float* y) noexcept {
  using VA = exact_vector_arch<A>;
  using fb = xsimd::batch<float, VA>;
  constexpr int V = chunk_codes / static_cast<int>(fb::size);
  const index_t stride = act.chunks * chunk_codes;
  const float* xs = act.xf.data() + n * stride;
  fb acc[RT][NX];
  for (int i = 0; i < RT; ++i)
    for (int k = 0; k < NX; ++k)
      acc[i][k] = fb(0.0f);
  alignas(32) std::uint8_t tail[chunk_codes];
  if (w.chunks_per_group == 1) {
    // Group 32: every chunk is a group, and a block of one chunk sums to the chunk's own sum,
    // so the chunk's sum meets its scale straight away: the arithmetic of the loop below without
    // its per-group bookkeeping, which took a quarter of the time (AVX2, one thread, in-cache
    // q4_g32_s32 1024x1024 GEMV: 90 -> 69 us).
    const auto step = [&](index_t ch, auto load) {
      prefetch_next_tile<F, RT>(w, r, ch);
      for (int i = 0; i < RT; ++i) {
        float a, c;
        group_affine<F, A>(w, r + i, ch, a, c);
        fb wv[V];
        dequantize_chunk<F, VA>(load(w.codes + (r + i) * w.row_bytes), c, wv, VA{});
        for (int k = 0; k < NX; ++k)
          acc[i][k] =
              xsimd::fma(fb(a), chunk_products(wv, xs + k * stride + ch * chunk_codes), acc[i][k]);
      }
    };
    for_each_chunk<F, A, VA>(w, 0, w.chunks, tail, step);
  } else {
    // Larger groups: blocked summation. A chunk's products are summed on their own, chunks into
    // a block of at most block_chunks chunks of one group, blocks (scaled by the group's a) into
    // the row. Compared with one running sum per lane this keeps the f32 error of a 64k-long
    // whole-row group near that of a short one, at one extra add per chunk.
    float a[RT], c[RT];
    fb bacc[RT][NX];
    const auto start_group = [&](index_t g) {
      for (int i = 0; i < RT; ++i)
        group_affine<F, A>(w, r + i, g, a[i], c[i]);
    };
    const auto add_chunk = [&](index_t ch, auto load) {
      prefetch_next_tile<F, RT>(w, r, ch);
      for (int i = 0; i < RT; ++i) {
        fb wv[V];
        dequantize_chunk<F, VA>(load(w.codes + (r + i) * w.row_bytes), c[i], wv, VA{});
        for (int k = 0; k < NX; ++k)
          bacc[i][k] += chunk_products(wv, xs + k * stride + ch * chunk_codes);
      }
    };
    const auto end_block = [&] {
      for (int i = 0; i < RT; ++i)
        for (int k = 0; k < NX; ++k) {
          acc[i][k] = xsimd::fma(fb(a[i]), bacc[i][k], acc[i][k]);
          bacc[i][k] = fb(0.0f);
        }
    };
    for (int i = 0; i < RT; ++i)
      for (int k = 0; k < NX; ++k)
        bacc[i][k] = fb(0.0f);
    // One pass over the row for 1-, 2- and 4-bit codes (for_each_block). 4096x4096 group 128,
    // out of cache, benchmark suite, 2-vCPU Intel Xeon (Emerald Rapids), best of 2 alternating
    // runs, loop per group -> one pass, us, GEMV 2 threads: 1-bit avx512vnni 526 -> 344, avx2
    // 543 -> 442; 2-bit avx2 505 -> 461 (avx512vnni 351 -> 368); 4-bit zero point avx2 650 ->
    // 616; batch 4, 1 thread, avx512vnni: 4-bit 2127 -> 1836, 2-bit 1970 -> 1753, 1-bit 2133 ->
    // 1782. 8-bit codes keep the loop per group: a chunk is a stripe of their own, and one pass
    // gained nothing for GEMV and lost at batch 4 (avx2, 1 thread: 2333 -> 2624).
    for_each_block<F::bits != 8, block_chunks, F, A, VA>(w, tail, start_group, add_chunk,
                                                         end_block);
  }
  for (int i = 0; i < RT; ++i)
    for (int k = 0; k < NX; ++k)
      y[(n + k) * w.rows + r + i] = compat::reduce_add(acc[i][k]);
}

// The int8 policy's correction sum_g a_g * (c_g - bias) * gsum[g] for row r, one SIMD pass over
// the row's scales (and zero points) after the main loop; kept out of the per-chunk loop, where
// its scalar arithmetic cost a fifth of the time of a group-32 GEMV.
template <class F, class A, class Scale>
inline float offset_term(const weights<Scale>& w, index_t r, const float* gsum) noexcept {
  using VA = vector_arch<A>;
  using fb = xsimd::batch<float, VA>;
  constexpr index_t W = fb::size;
  const Scale* s = w.scales + r * w.groups;
  constexpr float bias = static_cast<float>(dot_bias<F>);
  if constexpr (!F::zero_point) {
    // a_g = affine_a(s_g) = m * s_g and c - bias is one constant: m * (c - bias) * sum s_g gsum_g.
    constexpr float factor = F::affine_a(1.0f) * (F::affine_c(0.0f) - bias);
    if constexpr (factor == 0.0f) {
      return 0.0f;
    } else {
      fb acc(0.0f);
      index_t g = 0;
      for (; g + W <= w.groups; g += W)
        acc = xsimd::fma(load_scales<VA>(s + g, VA{}), fb::load_unaligned(gsum + g), acc);
      float sum = compat::reduce_add(acc);
      for (; g < w.groups; ++g)
        sum += load_scale<VA>(s[g], VA{}) * gsum[g];
      return factor * sum;
    }
  } else {
    const Scale* z = w.zeros + r * w.groups;
    fb acc(0.0f);
    index_t g = 0;
    for (; g + W <= w.groups; g += W)
      acc = xsimd::fma(load_scales<VA>(s + g, VA{}) * (load_scales<VA>(z + g, VA{}) - fb(bias)),
                       fb::load_unaligned(gsum + g), acc);
    float sum = compat::reduce_add(acc);
    for (; g < w.groups; ++g)
      sum += load_scale<VA>(s[g], VA{}) * (load_scale<VA>(z[g], VA{}) - bias) * gsum[g];
    return sum;
  }
}

template <class F, class A, int RT, int NX, class Scale>
inline void tile_int8(const weights<Scale>& w, index_t r, const activations& act, index_t n,
                      float* y) noexcept {
  using VA = vector_arch<A>;
  using fb = xsimd::batch<float, VA>;
  const index_t stride = act.chunks * chunk_codes;
  const std::int8_t* xs = act.xq.data() + n * stride;
  const float* dx = act.dx.data() + n * act.chunks;
  const float* gsum = act.gsum.data() + n * act.groups;
  fb acc[RT][NX];
  for (int i = 0; i < RT; ++i)
    for (int k = 0; k < NX; ++k)
      acc[i][k] = fb(0.0f);
  alignas(32) std::uint8_t tail[chunk_codes];
  // How a GEMV of 1- or 4-bit codes takes groups larger than a chunk (below).
  constexpr bool one_pass = NX == 1 && (F::bits == 1 || F::bits == 4);
  if (w.chunks_per_group == 1) {
    // Group 32: a group is one chunk, so its scale joins the chunk's dx in one scalar product
    // and each dot needs a single FMA, with no per-group accumulators (which made the 2 x 4 GEMM
    // tile spill on AVX2). AVX2, one thread: in-cache q4_g32 GEMV 1024x1024 48 -> 33 us, GEMM
    // 4096x4096 batch 64 38 -> 27.5 ms. Larger groups keep the per-group accumulators: folding
    // the scale into every chunk made q4_g128 slower (GEMM batch 64 22 -> 26 ms).
    for_each_chunk<F, A>(w, 0, w.chunks, tail, [&](index_t ch, auto load) {
      prefetch_next_tile<F, RT>(w, r, ch);
      for (int i = 0; i < RT; ++i) {
        const float a = F::affine_a(load_scale<VA>(w.scales[(r + i) * w.groups + ch], VA{}));
        const auto codes = load(w.codes + (r + i) * w.row_bytes);
        for (int k = 0; k < NX; ++k) {
          const auto dot = dot_chunk_i8<F, VA>(codes, xs + k * stride + ch * chunk_codes, VA{});
          acc[i][k] = xsimd::fma(xsimd::to_float(dot), fb(a * dx[k * act.chunks + ch]), acc[i][k]);
        }
      }
    });
  } else {
    // Larger groups: a group's sum over its chunks of dx * (integer dot) meets the group's scale
    // a once, when the group ends (c enters through offset_term).
    float a[RT];
    fb gacc[RT][NX];
    const auto start_group = [&](index_t g) {
      for (int i = 0; i < RT; ++i) {
        a[i] = F::affine_a(load_scale<VA>(w.scales[(r + i) * w.groups + g], VA{}));
        for (int k = 0; k < NX; ++k)
          gacc[i][k] = fb(0.0f);
      }
    };
    const auto add_chunk = [&](index_t ch, auto load) {
      fb d[NX];
      for (int k = 0; k < NX; ++k)
        d[k] = fb(dx[k * act.chunks + ch]);
      prefetch_next_tile<F, RT>(w, r, ch);
      for (int i = 0; i < RT; ++i) {
        const auto codes = load(w.codes + (r + i) * w.row_bytes);
        for (int k = 0; k < NX; ++k) {
          const auto dot = dot_chunk_i8<F, VA>(codes, xs + k * stride + ch * chunk_codes, VA{});
          gacc[i][k] = xsimd::fma(xsimd::to_float(dot), d[k], gacc[i][k]);
        }
      }
    };
    const auto end_group = [&] {
      for (int i = 0; i < RT; ++i)
        for (int k = 0; k < NX; ++k)
          acc[i][k] = xsimd::fma(fb(a[i]), gacc[i][k], acc[i][k]);
    };
    // A GEMV of 1- and 4-bit codes takes one pass over the row (for_each_block), the rest a
    // loop per group. 4096x4096, out of cache, group 128, AVX512-VNNI, loop per group -> one
    // pass, us: 4-bit 1 thread 784-790 -> 622-653, 2 threads 401-406 -> 334-347 (AVX2 372-389 ->
    // 347-354); with zero points, 2 threads 396-402 -> 353-360; 1-bit 2 threads 279-283 ->
    // 207-211. In cache (256x4096, 1 thread): 4-bit 25.6-26.1 -> 26.9-28.6 us, 1-bit 34.8 ->
    // 22.8-26.0. 2- and 8-bit codes keep the loop per group: their groups of 128 are one and four
    // whole stripes, and one pass was up to a fifth slower in cache (8-bit 24.8 -> 28-30 us)
    // without a steady gain out of cache (2 threads: 2-bit 4-8% slower, 8-bit between 7% faster
    // and the same in three pairs of runs).
    for_each_block<one_pass, 0, F, A>(w, tail, start_group, add_chunk, end_group);
  }
  for (int i = 0; i < RT; ++i)
    for (int k = 0; k < NX; ++k)
      y[(n + k) * w.rows + r + i] =
          compat::reduce_add(acc[i][k]) - offset_term<F, A>(w, r + i, gsum + k * act.groups);
}

template <class F, class A, compute P, int RT, int NX, class Scale>
APLQ_FORCE_INLINE void tile(const weights<Scale>& w, index_t r, const activations& act, index_t n,
                            float* y) noexcept {
  if constexpr (P == compute::exact)
    tile_exact<F, A, RT, NX>(w, r, act, n, y);
  else
    tile_int8<F, A, RT, NX>(w, r, act, n, y);
}

// Tile shapes: a GEMV shares each activation chunk across row_tile weight rows; a GEMM shares
// each expanded weight chunk across batch_tile activation rows and each activation chunk across
// batch_row_tile weight rows. 2 x 4 beat 1 x 4 in 15 of 16 in-cache GEMM cases (q4_g32 and
// q4_g128, both policies, batch 16 and 64, AVX2 and AVX-512VL builds; 1024x1024, best of 20);
// 4 x 4 spills on AVX2 and was no better.
// The exact tiles on zmm (the AVX-512 tiers) have 32 registers: 4 x 4 holds its 16 accumulators
// with room for a row's chunk and the activations, and halves the activation loads, which come
// from L2 (4 rows of f32 activations at K = 4096 are 64 KiB). 4096x4096 exact, out of cache,
// one thread of a 2-vCPU Intel Xeon (Emerald Rapids), median of 60 calls, best of 2 alternating
// runs, 2 x 4 -> 4 x 4: batch 4 q4_g32_s32 2801 -> 1743 us, q4_g128_s32 3028 -> 2296,
// q8_g32_s32 3238 -> 2119, q2_g32_z_s32 3141 -> 2269; batch 8 q4_g32_s32 5570 -> 3503; batch 11
// q4_g32_s32 11651 -> 7135. Groups of several chunks add 16 block sums, so some spill; there
// (group 128, 1, 2, 4 and 8 bits, with and without zero points) 4 x 4 was as fast or faster
// in 3 rounds and 3 x 4 was slower. The int8 tiles (ymm) showed no difference beyond the noise.
inline constexpr int row_tile = 4;
inline constexpr int batch_tile = 4;
template <class A, compute P>
inline constexpr int batch_row_tile =
    P == compute::exact && sizeof(xsimd::batch<float, exact_vector_arch<A>>) == 64 ? 4 : 2;

// RT weight rows from r against every activation row.
template <class F, class A, compute P, int RT, class Scale>
APLQ_FORCE_INLINE void batch_rows(const weights<Scale>& w, index_t r, const activations& act,
                                  float* y) noexcept {
  index_t n = 0;
  for (; n + batch_tile <= act.n; n += batch_tile)
    tile<F, A, P, RT, batch_tile>(w, r, act, n, y);
  for (; n < act.n; ++n)
    tile<F, A, P, RT, 1>(w, r, act, n, y);
}

template <class F, class A, compute P, class Scale>
void rows(const weights<Scale>& w, index_t r0, index_t r1, const activations& act,
          float* y) noexcept {
  if (act.n == 1) {
    index_t r = r0;
    for (; r + row_tile <= r1; r += row_tile)
      tile<F, A, P, row_tile, 1>(w, r, act, 0, y);
    for (; r < r1; ++r)
      tile<F, A, P, 1, 1>(w, r, act, 0, y);
    return;
  }
  index_t r = r0;
  constexpr int rt = batch_row_tile<A, P>;
  for (; r + rt <= r1; r += rt)
    batch_rows<F, A, P, rt>(w, r, act, y);
  for (; r < r1; ++r)
    batch_rows<F, A, P, 1>(w, r, act, y);
}

// ---- The exact policy at large batch: dequantized panels and an f32 micro-kernel ----
//
// From panel_min_batch activation rows on, the exact policy stops dequantizing each chunk for
// every 4 activation rows and instead dequantizes a panel of panel_rows weight rows x
// panel_chunks chunks once, to f32 with the scale applied (w = a * (u - c)), for all activation
// rows. The activations are repacked once per call into panels of panel_width rows, column by
// column (xp [panel][column][panel_width], zero rows past n). The micro-kernel then multiplies
// a chunk of the weight panel by an activation panel as outer products: per column, one or two
// vector loads of activations, one broadcast per weight row and 12 FMAs into 12 register
// accumulators, as BLAS kernels do.
//
// Loop order (exact_panels): the columns in spans, each span through every row group of the
// task (66 to 72 rows at 4096 rows), and a row group through the span a panel_chunks block (256
// columns) at a time. The plain layouts' spans (panel_span) are as many such blocks as fit
// their activation panels in panel_span_bytes, so they stay in L2 (the whole row up to 4096
// columns at 16 activation rows, 1024 at 64, 512 at 128, one block from 256), and a row group
// reads each of its rows in runs of a span's bytes. Spans of a single block, every row group
// per 256 columns, read 128 to 256 bytes of a row before going on to the next row (a page
// further on for 8-bit codes at K = 4096), and out of cache half of the time went in stalls on
// those loads. 4096x4096 exact, out of cache, 2-vCPU Intel Xeon (Emerald Rapids), benchmark
// suite, 2 threads, best of 2 alternating runs, single-block spans -> panel_span, ms: batch 16
// q8_g32 avx2 6.56 -> 4.33, avx512vnni 4.82 -> 3.51; q8_g128 with zero point avx2 5.96 -> 4.41;
// batch 64 q8_g32 avx2 15.4 -> 13.8, avx512vnni 10.3 -> 9.6; q4_g32 avx2 batch 16 4.49 -> 4.02;
// 1- to 4-bit otherwise within this machine's noise. The sums are the same either way, bit for
// bit: blocks of block_chunks end at the same columns whatever the span.
//
// Summation: a chunk's 32 products per output are summed in registers, chunks into a block of
// block_chunks, blocks into the total (as tile_exact), so the f32 depth is 2 (w) + 32 + 32 +
// K / 1024 + 1.
// Where the panels start to win: 4096x4096 q4_g32 exact, one AVX2 thread, best of 10: batch 8
// 7.0 ms on the tiles, 9.5 on the panels (half of a 16-row panel idle); 12: 10.5 and 8.6; 16:
// 14.1 and 9.1; 64: 57 and 25.
inline constexpr index_t panel_min_batch = 12;
// 8 chunks: a 256-column block of 16 activation rows is 16 KiB.
inline constexpr index_t panel_chunks = 8;
// 256 KiB: half the L2 of AMD Zen 3.
inline constexpr index_t panel_span_bytes = 256 * 1024;
static_assert(block_chunks % panel_chunks == 0, "a block is whole column blocks");

// The micro-kernel's shape: `rows` weight rows x `vectors` f32 vectors of `arch` (panel_width
// activation rows). By default 6 x 2 vectors of the kernels' own width: 12 accumulators, 2
// activation vectors and a broadcast fill the 16 vector registers of AVX2 (and SSE).
template <class A>
struct panel_shape {
  using arch = vector_arch<A>;
  static constexpr int rows = 6, vectors = 2;
};
#if defined(__AVX512F__) && defined(__AVX512BW__)
// AVX-512: 12 x one zmm: 16 activation rows as on AVX2, so batch 16 fills a panel, and twice
// the FMA width. 4096x4096 q4_g32 exact, one thread of a 2-vCPU Intel Xeon (AVX-512, KVM),
// median of 10 calls: batch 64 27.1 -> 20.8 ms against 6 x 2 ymm, batch 16 7.0 -> 6.2 ms (6 x 2
// zmm, 32 rows a panel: 20.6 and 10.7 ms). On AMD Zen 4 a zmm FMA issues as two ymm halves.
template <>
struct panel_shape<xsimd::avx512bw> {
  using arch = xsimd::avx512bw;
  static constexpr int rows = 12, vectors = 1;
};
#if defined(__AVX512VNNI__)
template <>
struct panel_shape<avx512vnni> : panel_shape<xsimd::avx512bw> {};
#endif
#endif
template <class A>
inline constexpr int panel_rows = panel_shape<A>::rows;
template <class A>
inline constexpr int
    panel_width = static_cast<int>(xsimd::batch<float, typename panel_shape<A>::arch>::size) *
                  panel_shape<A>::vectors;

// act.xp from act.xf.
template <class A>
status prepare_panels(activations& act) noexcept {
  constexpr int NR = panel_width<A>;
  const index_t padded = act.chunks * chunk_codes;
  const index_t panels = (act.n + NR - 1) / NR;
  try {
    act.xp.resize(static_cast<std::size_t>(panels * padded * NR));
  } catch (const std::bad_alloc&) {
    return status::out_of_memory;
  }
  for (index_t p = 0; p < panels; ++p) {
    float* out = act.xp.data() + p * padded * NR;
    for (int l = 0; l < NR; ++l) {
      const index_t i = p * NR + l;
      const float* in = act.xf.data() + i * padded;
      for (index_t j = 0; j < padded; ++j)
        out[j * NR + l] = i < act.n ? in[j] : 0.0f;
    }
  }
  return status::ok;
}

// blk [MR][NR] += the products of one chunk: weights wp [MR][ldw] (the chunk's 32 columns from
// wp on), activations xp [32][NR].
template <class A>
APLQ_FORCE_INLINE void panel_chunk(const float* wp, index_t ldw, const float* xp,
                                   float* blk) noexcept {
  using fb = xsimd::batch<float, typename panel_shape<A>::arch>;
  constexpr int S = static_cast<int>(fb::size), NR = panel_width<A>, MR = panel_rows<A>;
  constexpr int V = panel_shape<A>::vectors;
  fb acc[MR][V];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < V; ++v)
      acc[i][v] = fb(0.0f);
  for (int k = 0; k < chunk_codes; ++k) {
    fb xv[V];
    for (int v = 0; v < V; ++v)
      xv[v] = fb::load_aligned(xp + k * NR + v * S);
    for (int i = 0; i < MR; ++i) {
      const fb wv(wp[i * ldw + k]);
      for (int v = 0; v < V; ++v)
        acc[i][v] = xsimd::fma(wv, xv[v], acc[i][v]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < V; ++v)
      (fb::load_aligned(blk + i * NR + v * S) + acc[i][v]).store_aligned(blk + i * NR + v * S);
}

// What exact_panels does when it cannot allocate its buffers: a row at a time, its weights a
// chunk at a time (fill, into the stack), against every activation row in turn, summed as the
// tiles do (a chunk in a register, chunks into blocks of block_chunks, blocks into the row).
// Slow, but it needs no memory, so a call that has begun writing y can finish.
template <class A, class Fill>
void exact_rows_unbuffered(index_t r0, index_t r1, index_t rows, const activations& act, float* y,
                           Fill& fill) noexcept {
  using fb = xsimd::batch<float, vector_arch<A>>;
  constexpr int S = static_cast<int>(fb::size), V = chunk_codes / S;
  const index_t padded = act.chunks * chunk_codes;
  alignas(64) float wc[chunk_codes];
  for (index_t r = r0; r < r1; ++r)
    for (index_t k = 0; k < act.n; ++k) {
      const float* xk = act.xf.data() + k * padded;
      float total = 0.0f, block = 0.0f;
      for (index_t ch = 0; ch < act.chunks; ++ch) {
        fill(r, 0, ch, ch + 1, wc);
        const float* xc = xk + ch * chunk_codes;
        fb acc = fb::load_aligned(wc) * fb::load_unaligned(xc);
        for (int v = 1; v < V; ++v)
          acc = xsimd::fma(fb::load_aligned(wc + v * S), fb::load_unaligned(xc + v * S), acc);
        block += compat::reduce_add(acc);
        if ((ch + 1) % block_chunks == 0) {
          total += block;
          block = 0.0f;
        }
      }
      y[k * rows + r] = total + block;
    }
}

// The chunks an exact_panels pass takes at a time for weights stored row after row: as many
// blocks of panel_chunks as fit their activation panels in panel_span_bytes, at least one.
template <class A>
index_t panel_span(const activations& act) noexcept {
  constexpr index_t NR = panel_width<A>;
  const index_t panels = (act.n + NR - 1) / NR;
  const index_t chunk_bytes = panels * chunk_codes * NR * static_cast<index_t>(sizeof(float));
  return std::max<index_t>(1, panel_span_bytes / (chunk_bytes * panel_chunks)) * panel_chunks;
}

// Rows [r0, r1) of a matrix of `rows` rows against every activation row, by panels, with the
// weight panels from fill(r, i, c0, c1, out): row r + i's weights w = a * (u - c) of chunks
// [c0, c1) into out, 32 per chunk, vector aligned (also the table-lookup layout's, cpu/lut.hpp).
// The columns go in spans of `span` chunks (a positive multiple of panel_chunks), each span
// through every row group. Without memory for its buffers it takes exact_rows_unbuffered.
template <class A, class Fill>
void exact_panels(index_t r0, index_t r1, index_t rows, const activations& act, float* y,
                  index_t span, Fill&& fill) noexcept {
  using fb = xsimd::batch<float, vector_arch<A>>;
  constexpr int NR = panel_width<A>;
  constexpr int panel_rows = detail::panel_rows<A>;
  constexpr index_t ldw = panel_chunks * chunk_codes;
  const index_t padded = act.chunks * chunk_codes;
  const index_t panels = (act.n + NR - 1) / NR;
  const index_t row_groups = (r1 - r0 + panel_rows - 1) / panel_rows;
  const index_t group_size = panels * panel_rows * NR; // a row group's sums [panel][row][NR]
  const index_t acc_size = row_groups * group_size;    // [group][panel][row][NR]

  // Per worker thread, reused across calls (sizes grow to the largest task seen).
  thread_local std::vector<float, xsimd::aligned_allocator<float, 64>> blk, tot;
  thread_local std::vector<float, xsimd::aligned_allocator<float, 64>> wbuf;
  try {
    blk.assign(static_cast<std::size_t>(acc_size), 0.0f);
    tot.assign(static_cast<std::size_t>(acc_size), 0.0f);
    wbuf.resize(static_cast<std::size_t>(panel_rows * ldw));
  } catch (const std::bad_alloc&) {
    exact_rows_unbuffered<A>(r0, r1, rows, act, y, fill);
    return;
  }

  for (index_t s0 = 0; s0 < act.chunks; s0 += span) {
    const index_t s1 = std::min(s0 + span, act.chunks);
    for (index_t rg = 0; rg < row_groups; ++rg) {
      const index_t r = r0 + rg * panel_rows;
      const int mr = static_cast<int>(std::min<index_t>(panel_rows, r1 - r));
      float* const group_blk = blk.data() + rg * group_size;
      float* const group_tot = tot.data() + rg * group_size;
      for (index_t c0 = s0; c0 < s1; c0 += panel_chunks) {
        const index_t c1 = std::min(c0 + panel_chunks, s1);
        // The weight panel: rows r .. r + mr, chunks c0 .. c1; rows past mr are zero.
        for (int i = 0; i < panel_rows; ++i) {
          float* out = wbuf.data() + i * ldw;
          if (i >= mr)
            std::fill(out, out + (c1 - c0) * chunk_codes, 0.0f);
          else
            fill(r, i, c0, c1, out);
        }
        for (index_t ch = c0; ch < c1; ++ch)
          for (index_t p = 0; p < panels; ++p)
            panel_chunk<A>(wbuf.data() + (ch - c0) * chunk_codes, ldw,
                           act.xp.data() + (p * padded + ch * chunk_codes) * NR,
                           group_blk + p * panel_rows * NR);
        if (c1 % block_chunks == 0 || c1 == act.chunks)
          for (index_t e = 0; e < group_size; e += fb::size) {
            (fb::load_aligned(group_tot + e) + fb::load_aligned(group_blk + e))
                .store_aligned(group_tot + e);
            fb(0.0f).store_aligned(group_blk + e);
          }
      }
    }
  }

  for (index_t rg = 0; rg < row_groups; ++rg) {
    const index_t r = r0 + rg * panel_rows;
    const int mr = static_cast<int>(std::min<index_t>(panel_rows, r1 - r));
    for (index_t p = 0; p < panels; ++p) {
      const float* t = tot.data() + rg * group_size + p * panel_rows * NR;
      for (int l = 0; l < NR && p * NR + l < act.n; ++l)
        for (int i = 0; i < mr; ++i)
          y[(p * NR + l) * rows + r + i] = t[i * NR + l];
    }
  }
}

// Rows [r0, r1) against every activation row, by panels.
template <class F, class A, class Scale>
void panel_task(const weights<Scale>& w, index_t r0, index_t r1, const activations& act,
                float* y) noexcept {
  using VA = vector_arch<A>;
  using fb = xsimd::batch<float, VA>;
  constexpr int V = chunk_codes / static_cast<int>(fb::size);
  alignas(64) std::uint8_t tail[chunk_codes];
  const auto fill = [&](index_t r, int i, index_t c0, index_t c1, float* out) {
    const std::uint8_t* row = w.codes + (r + i) * w.row_bytes;
    index_t g = -1;
    float a = 0.0f, c = 0.0f;
    for (index_t ch = c0; ch < c1; ++ch) {
      if (ch / w.chunks_per_group != g) {
        g = ch / w.chunks_per_group;
        group_affine<F, A>(w, r + i, g, a, c);
      }
      fb wv[V];
      dequantize_chunk<F, VA>(chunk_at<F, A>(row, w.row_bytes, ch, tail), c, wv, VA{});
      for (int v = 0; v < V; ++v)
        (wv[v] * fb(a)).store_aligned(out + (ch - c0) * chunk_codes + v * fb::size);
    }
  };
  exact_panels<A>(r0, r1, w.rows, act, y, panel_span<A>(act), fill);
}

// ---- The int8 policy at large batch: transposed code panels ----
//
// Where the architecture has an int8 panel kernel (int8_panel_shape<A>::rows > 0: arch/avx2.hpp,
// arch/avx512bw.hpp), the int8 policy takes it from int8_panel_shape<A>::min_batch activation
// rows on. A panel is R weight rows x int8_panel_chunks chunks: each row's codes are expanded to
// bytes once per call and transposed so that one vector holds dword j of the chunk for all R
// rows, next to the rows' affine (a, c) per chunk. The kernel then walks the activation rows a
// few at a time; each activation dword is broadcast against the R rows at once, and a chunk's R
// integer dots meet a * dx and c * sum(xq) together (the tiles convert and scale a vector of
// partial sums per row and chunk, and correct for c per row at the end, offset_term).
//
// Summation: per output, the chunks of a column block in a register, blocks into a sum of
// block_chunks chunks, those into the total: the f32 depth of the tiles.
inline constexpr index_t int8_panel_chunks = 8;
static_assert(block_chunks % int8_panel_chunks == 0, "a block is whole column blocks");

// One kernel call: for NX activation rows k and the panel's R weight rows i, acc[k][i] += sum
// over the panel's chunks ch of a[ch][i] * dx_k[ch] * (dot_ch(u_i, xq_k) - c[ch][i] *
// qsum_k[ch]), the integer dot of the codes with the quantized activations recentred by the
// group's c (panel codes and c both less int8_panel_bias).
struct int8_panel_args {
  const std::uint8_t* codes; // [chunks][8][R][4]: dword j of each row's chunk, rows side by side
  const float* a;            // [chunks][R] affine scales
  const float* c;            // [chunks][R] affine offsets
  index_t chunks;
  const std::int8_t* x; // activation row k's first chunk at x + k * x_stride (lane order)
  index_t x_stride;
  const float* dx;   // row k's chunk scales from dx + k * s_stride
  const float* qsum; // row k's chunk sums of xq (as floats), from qsum + k * s_stride
  index_t s_stride;
  float* acc; // [NX][R]
};

// Per chunk and activation row: 8 steps (one broadcast dword of activations against a vector of
// panel codes each), the integer dot, its conversion, the recentring dot - c * qsum (exact for
// the symmetric formats, whose c is a half-integer) and the scale a * dx.
template <class A, int NX, bool Signed>
inline void int8_panel_dots(const int8_panel_args& p) noexcept {
  using V = typename int8_panel_shape<A>::arch;
  using fb = xsimd::batch<float, V>;
  using ib = xsimd::batch<std::int32_t, V>;
  using reg = typename ib::register_type; // what the primitives take and return
  constexpr int R = int8_panel_shape<A>::rows;
  static_assert(R == static_cast<int>(ib::size), "a lane per weight row");
  fb acc[NX];
  for (int k = 0; k < NX; ++k)
    acc[k] = fb::load_unaligned(p.acc + R * k);
  for (index_t ch = 0; ch < p.chunks; ++ch) {
    const std::uint8_t* codes = p.codes + ch * R * chunk_codes;
    const std::int8_t* x = p.x + ch * chunk_codes;
    ib dot[NX];
    for (int k = 0; k < NX; ++k)
      dot[k] = ib(0);
    for (int j = 0; j < chunk_codes / 4; ++j) {
      const ib u = ib::load_aligned(reinterpret_cast<const std::int32_t*>(codes + 4 * R * j));
      const ib m = int8_panel_magnitude<A, Signed>(reg(u), A{});
      for (int k = 0; k < NX; ++k) {
        std::int32_t xj;
        std::memcpy(&xj, x + k * p.x_stride + 4 * j, sizeof xj);
        dot[k] = int8_panel_step<A, Signed>(reg(dot[k]), reg(u), reg(m), reg(ib(xj)), A{});
      }
    }
    const fb a = fb::load_aligned(p.a + R * ch), c = fb::load_aligned(p.c + R * ch);
    for (int k = 0; k < NX; ++k) {
      const index_t s = k * p.s_stride + ch;
      const fb v = xsimd::fnma(c, fb(p.qsum[s]),
                               xsimd::to_float(ib(int8_panel_sum<A, Signed>(reg(dot[k]), A{}))));
      acc[k] = xsimd::fma(v, a * fb(p.dx[s]), acc[k]);
    }
  }
  for (int k = 0; k < NX; ++k)
    acc[k].store_unaligned(p.acc + R * k);
}

// Rows [r0, r1) of a matrix with `rows` rows against every activation row, by int8 panels of
// whatever layout: fill(r, mr, c0, c1, codes, a, c) writes the panel of rows r .. r + mr and
// chunks c0 .. c1 (codes [c1 - c0][8][R][4] less int8_panel_bias, a and c [c1 - c0][R], c less
// the bias, lanes past mr anything finite). Returns false, having written nothing, when its
// buffers cannot be allocated.
template <class A, bool Signed, class Fill>
bool int8_panels(index_t r0, index_t r1, index_t rows, const activations& act, float* y,
                 Fill&& fill) noexcept {
  constexpr int R = int8_panel_shape<A>::rows, NX = int8_panel_shape<A>::batch;
  constexpr index_t C = int8_panel_chunks;
  const index_t n = act.n, stride = act.chunks * chunk_codes;
  const index_t acc_size = n * R; // [activation row][R]

  thread_local std::vector<float, xsimd::aligned_allocator<float, 64>> blk, tot, affine;
  thread_local std::vector<std::uint8_t, xsimd::aligned_allocator<std::uint8_t, 64>> panel;
  try {
    blk.resize(static_cast<std::size_t>(acc_size));
    tot.resize(static_cast<std::size_t>(acc_size));
    affine.resize(static_cast<std::size_t>(2 * C * R));
    panel.resize(static_cast<std::size_t>(C * R * chunk_codes));
  } catch (const std::bad_alloc&) {
    return false;
  }
  float* const a = affine.data();
  float* const c = affine.data() + C * R;

  // Row groups one after another, each streaming its R rows from the first column to the last;
  // the quantized activations (n x K bytes) stay in cache meanwhile.
  for (index_t r = r0; r < r1; r += R) {
    const int mr = static_cast<int>(std::min<index_t>(R, r1 - r));
    std::fill(blk.begin(), blk.end(), 0.0f);
    std::fill(tot.begin(), tot.end(), 0.0f);
    for (index_t c0 = 0; c0 < act.chunks; c0 += C) {
      const index_t c1 = std::min(c0 + C, act.chunks);
      fill(r, mr, c0, c1, panel.data(), a, c);
      int8_panel_args p{panel.data(),
                        a,
                        c,
                        c1 - c0,
                        act.xq.data() + c0 * chunk_codes,
                        stride,
                        act.dx.data() + c0,
                        act.qsum.data() + c0,
                        act.chunks,
                        blk.data()};
      index_t k = 0;
      const auto walk = [&](auto nx) {
        constexpr int nk = decltype(nx)::value;
        for (; k + nk <= n; k += nk) {
          int8_panel_dots<A, nk, Signed>(p);
          p.x += nk * stride;
          p.dx += nk * act.chunks;
          p.qsum += nk * act.chunks;
          p.acc += nk * R;
        }
      };
      walk(std::integral_constant<int, NX>{});
      if constexpr (NX > 4)
        walk(std::integral_constant<int, 4>{});
      walk(std::integral_constant<int, 1>{});
      if (c1 % block_chunks == 0 || c1 == act.chunks) {
        for (index_t e = 0; e < acc_size; ++e) {
          tot[e] += blk[e];
          blk[e] = 0.0f;
        }
      }
    }
    for (index_t k = 0; k < n; ++k)
      for (int i = 0; i < mr; ++i)
        y[k * rows + r + i] = tot[k * R + i];
  }
  return true;
}

// The int8 panels of the plain layouts: load_chunk's codes, transposed.
template <class F, class A, class Scale>
void int8_panel_task(const weights<Scale>& w, index_t r0, index_t r1, const activations& act,
                     float* y) noexcept {
  constexpr int R = int8_panel_shape<A>::rows, bias = int8_panel_bias<A, F>;
  alignas(32) std::uint8_t tail[chunk_codes];
  using chunk_type = decltype(chunk_at<F, A>(w.codes, w.row_bytes, 0, tail));
  const auto fill = [&](index_t r, int mr, index_t c0, index_t c1, std::uint8_t* codes, float* a,
                        float* c) {
    for (index_t ch = c0; ch < c1; ++ch) {
      prefetch_next_tile<F, R>(w, r, ch);
      // Lanes past mr repeat row mr - 1 with a = c = 0; they are never stored.
      chunk_type row_codes[R];
      for (int i = 0; i < R; ++i) {
        const index_t row = r + std::min(i, mr - 1);
        row_codes[i] = chunk_at<F, A>(w.codes + row * w.row_bytes, w.row_bytes, ch, tail);
        float ai = 0.0f, ci = 0.0f;
        if (i < mr) {
          group_affine<F, A>(w, row, ch / w.chunks_per_group, ai, ci);
          ci -= static_cast<float>(bias);
        }
        a[(ch - c0) * R + i] = ai;
        c[(ch - c0) * R + i] = ci;
      }
      int8_panel_transpose<A, bias>(row_codes, codes + (ch - c0) * R * chunk_codes, A{});
    }
  };
  if (!int8_panels<A, bias != 0>(r0, r1, w.rows, act, y, fill))
    rows<F, A, compute::int8>(w, r0, r1, act, y); // the tiles need no buffers of their own
}

// The kernel format: F with the group size erased (it travels in weights::chunks_per_group).
template <class F>
using kernel_format = aplq::format<F::bits, whole_row, F::zero_point, typename F::scale_type,
                                   typename F::layout_type>;

template <class K, class A, class Scale>
status run(const weights<Scale>& w, const float* x, index_t n, float* y,
           const options& opt) noexcept {
  // Per calling thread, reused across calls. Worker threads must see the caller's buffers, so
  // the lambda below takes them through a reference (a thread_local is never captured).
  thread_local activations buffers;
  activations& act = buffers;
  if (status s = prepare<K, A>(x, n, w.cols, w.groups, w.chunks_per_group, opt.policy, act);
      s != status::ok)
    return s;
  const bool panels = opt.policy == compute::exact && n >= panel_min_batch;
  if (panels)
    if (status s = prepare_panels<A>(act); s != status::ok)
      return s;
  using int8_shape = int8_panel_shape<A>;
  const bool int8_panels =
      int8_shape::rows > 0 && opt.policy == compute::int8 && n >= int8_shape::min_batch;
  // Rows per task: enough tasks to balance, each large enough to amortize a claim (and whole
  // row groups on the panel paths).
  index_t block = std::max<index_t>(8, w.rows / 64);
  if (panels)
    block = (block + panel_rows<A> - 1) / panel_rows<A> * panel_rows<A>;
  if constexpr (int8_shape::rows > 0)
    if (int8_panels)
      block = (block + int8_shape::rows - 1) / int8_shape::rows * int8_shape::rows;
  const index_t tasks = (w.rows + block - 1) / block;
  auto task = [&](index_t t) noexcept {
    const index_t r0 = t * block, r1 = std::min(w.rows, r0 + block);
    if constexpr (int8_shape::rows > 0)
      if (int8_panels) {
        int8_panel_task<K, A>(w, r0, r1, act, y);
        return;
      }
    if (panels)
      panel_task<K, A>(w, r0, r1, act, y);
    else if (opt.policy == compute::exact)
      rows<K, A, compute::exact>(w, r0, r1, act, y);
    else
      rows<K, A, compute::int8>(w, r0, r1, act, y);
  };
  thread_pool::global().run(opt.threads, tasks, task);
  return status::ok;
}

} // namespace detail

// Y [n][rows] = X [n][cols] W^T on architecture A.
template <class A, class F>
status gemm(const qmatrix_view<F>& w, const float* x, index_t n, float* y,
            const options& opt = {}) noexcept {
  if (status s = w.validate(); s != status::ok)
    return s;
  if (n <= 0)
    return status::invalid_shape;
  if (x == nullptr || y == nullptr)
    return status::null_pointer;
  if (opt.policy != compute::exact && opt.policy != compute::int8)
    return status::invalid_argument;
  const index_t chunks = (w.cols + chunk_codes - 1) / chunk_codes;
  const index_t cpg = F::group == whole_row ? chunks : F::group / chunk_codes;
  const detail::weights<typename F::scale_type> k{
      w.codes, w.scales, w.zeros, w.rows, w.cols, w.row_bytes(), w.groups(), cpg, chunks};
  return detail::run<detail::kernel_format<F>, A>(k, x, n, y, opt);
}

// y [rows] = W x [cols] on architecture A.
template <class A, class F>
status gemv(const qmatrix_view<F>& w, const float* x, float* y, const options& opt = {}) noexcept {
  return gemm<A>(w, x, 1, y, opt);
}

} // namespace cpu
} // namespace aplq
