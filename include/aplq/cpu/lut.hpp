// SPDX-License-Identifier: Apache-2.0
// Table-lookup GEMV/GEMM for 1- and 2-bit weights, after T-MAC's idea: instead
// of widening every low-bit code to a byte and multiplying, each call builds, per group of four
// activations, the table of all 16 sums those activations can contribute, and the weights' bits
// index that table directly. One byte shuffle looks up 32 rows at once, so the weights are
// repacked offline into tiles of 32 interleaved rows (lut_matrix).
//
// Under the int8 policy, results are those of cpu::gemm: the activations are quantized per
// 32-element chunk exactly as there, table entries are exact integer sums, and a chunk's integer
// dot product is exact. Only the f32 summation order of the chunk and group terms differs. The
// exact policy has tables of f32 sums of its own ("The exact policy" below), and from a dozen or
// more activation rows the plain kernels' f32 panels.
//
// Packed layout of a lut_matrix with B bits (1 or 2), T = 32 rows per tile, chunks of 32 columns:
//   codes  [tile][chunk][plane 0..B-1][block 0..3][32 bytes]
//          byte i of block k holds row 32 * tile + i: its low nibble is the index of step 2k,
//          its high nibble that of step 2k + 1. Step s covers columns 32 * chunk + 4s .. +3,
//          and bit q of an index is bit `plane` of the code of column 32 * chunk + 4s + q.
//   scales [tile][group][32] and zeros [tile][group][32], in the format's scale type.
// Rows past the end of the matrix are zero codes with zero scales; columns past the end are zero
// codes (their activations are zero).
//
// A table for one step holds the 16 sums T[idx] = sum over set bits q of xq[4s + q], biased to
// T + 512 (0 .. 1020 for any int8 activations) and split into 5-bit digits: 16 bytes of
// (T + 512) % 32, then 16 bytes of (T + 512) / 32. A plane's 8 steps in a chunk sum each digit
// to at most 8 * 31 = 248, so a byte holds it; the plane's sum is then the low digits' sum + 32
// times the high digits', less 8 * 512, and its biased value is at most 8 * 1020 = 8160, so a
// chunk's sum over its planes, from -8 * 512 * (2^B - 1) on, stays within int16.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <numeric>
#include <type_traits>
#include <vector>

#include "../ref.hpp"
#include "../visit.hpp"
#include "kernel.hpp"

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace aplq {
namespace cpu {

inline constexpr index_t lut_tile_rows = 32;

// Non-owning view of a lut_matrix, what the kernels take.
template <class F>
struct lut_view {
  static_assert(F::bits == 1 || F::bits == 2, "lut_view: table lookup serves 1- and 2-bit formats");
  using format_type = F;
  using scale_type = typename F::scale_type;
  const std::uint8_t* codes = nullptr;
  const scale_type* scales = nullptr;
  const scale_type* zeros = nullptr;
  index_t rows = 0;
  index_t cols = 0;

  static constexpr index_t chunk_bytes = F::bits * 128; // one tile's chunk, every plane
  index_t tiles() const noexcept { return (rows + lut_tile_rows - 1) / lut_tile_rows; }
  index_t chunks() const noexcept { return (cols + chunk_codes - 1) / chunk_codes; }
  index_t groups() const noexcept { return F::groups(cols); }
  index_t tile_bytes() const noexcept { return chunks() * chunk_bytes; }
  index_t code_bytes() const noexcept { return tiles() * tile_bytes(); }
  // Scales (and zero points), padding rows included: [tiles][groups][32].
  index_t scale_count() const noexcept { return tiles() * groups() * lut_tile_rows; }

  status validate() const noexcept {
    if (rows <= 0 || cols <= 0)
      return status::invalid_shape;
    if (codes == nullptr || scales == nullptr || (F::zero_point && zeros == nullptr))
      return status::null_pointer;
    return status::ok;
  }

  // Where bit `p` of code (r, j) lives (see the layout above): byte bit_byte, bit bit_shift.
  index_t bit_byte(index_t r, index_t j, int p) const noexcept {
    const index_t t = r / lut_tile_rows, i = r % lut_tile_rows;
    const index_t c = j / chunk_codes, s = j % chunk_codes / 4;
    return ((t * chunks() + c) * F::bits + p) * 128 + s / 2 * 32 + i;
  }
  static int bit_shift(index_t j) noexcept {
    return static_cast<int>(j % chunk_codes / 4 % 2 * 4 + j % 4);
  }
  // Code (r, j) as packed.
  unsigned code(index_t r, index_t j) const noexcept {
    unsigned u = 0;
    for (int p = 0; p < F::bits; ++p)
      u |= ((codes[bit_byte(r, j, p)] >> bit_shift(j)) & 1u) << p;
    return u;
  }
  // Index of the scale (and zero point) of row r, group g.
  index_t scale_at(index_t r, index_t g) const noexcept {
    return (r / lut_tile_rows * groups() + g) * lut_tile_rows + r % lut_tile_rows;
  }
};

// A 1- or 2-bit matrix repacked for the table-lookup kernels. pack() takes a matrix of the same
// bits, group, zero point and scale type in any layout; code() reads a code back, so the repack is
// checkable against the source.
template <class F>
class lut_matrix {
  static_assert(F::bits == 1 || F::bits == 2,
                "lut_matrix: table lookup serves 1- and 2-bit formats");

public:
  using format_type = F;
  using scale_type = typename F::scale_type;

  template <class G>
  status pack(const qmatrix_view<G>& w) noexcept {
    static_assert(G::bits == F::bits && G::group == F::group && G::zero_point == F::zero_point &&
                      std::is_same<typename G::scale_type, scale_type>::value,
                  "lut_matrix::pack: the source must differ from F in its layout only");
    if (status s = w.validate(); s != status::ok)
      return s;
    const lut_view<F> shape{nullptr, nullptr, nullptr, w.rows, w.cols};
    const index_t groups = shape.groups();
    try {
      codes_.assign(static_cast<std::size_t>(shape.code_bytes()), 0);
      scales_.assign(static_cast<std::size_t>(shape.scale_count()), scale_type{});
      zeros_.assign(F::zero_point ? scales_.size() : 0, scale_type{});
    } catch (const std::exception&) { // bad_alloc, or length_error for an absurd shape
      *this = lut_matrix{};
      return status::out_of_memory;
    }
    rows_ = w.rows;
    cols_ = w.cols;
    const lut_view<F> v = view();
    for (index_t r = 0; r < w.rows; ++r) {
      const std::uint8_t* row = w.row(r);
      for (index_t j = 0; j < w.cols; ++j) {
        const unsigned u = ref::get_code<G>(row, j);
        for (int p = 0; p < F::bits; ++p)
          if ((u >> p) & 1u)
            codes_[static_cast<std::size_t>(v.bit_byte(r, j, p))] |=
                static_cast<std::uint8_t>(1u << v.bit_shift(j));
      }
      for (index_t g = 0; g < groups; ++g) {
        const auto at = static_cast<std::size_t>(v.scale_at(r, g));
        scales_[at] = w.scales[r * groups + g];
        if constexpr (F::zero_point)
          zeros_[at] = w.zeros[r * groups + g];
      }
    }
    return status::ok;
  }

  // Code (r, j) as packed.
  unsigned code(index_t r, index_t j) const noexcept { return view().code(r, j); }

  lut_view<F> view() const noexcept {
    return {codes_.data(), scales_.data(), F::zero_point ? zeros_.data() : nullptr, rows_, cols_};
  }
  index_t rows() const noexcept { return rows_; }
  index_t cols() const noexcept { return cols_; }

private:
  std::vector<std::uint8_t> codes_;
  std::vector<scale_type> scales_;
  std::vector<scale_type> zeros_;
  index_t rows_ = 0;
  index_t cols_ = 0;
};

// The inverse of lut_matrix::pack: the codes, scales and zero points of `w` written into `out`,
// a matrix of the same shape and format in any layout, exactly; padding bits come out zero.
template <class G, class F>
status unpack(const lut_view<F>& w, const qmatrix_span<G>& out) noexcept {
  static_assert(G::bits == F::bits && G::group == F::group && G::zero_point == F::zero_point &&
                    std::is_same<typename G::scale_type, typename F::scale_type>::value,
                "unpack: the target must differ from F in its layout only");
  if (status s = w.validate(); s != status::ok)
    return s;
  if (status s = as_const(out).validate(); s != status::ok)
    return s;
  if (out.rows != w.rows || out.cols != w.cols)
    return status::invalid_shape;
  const index_t groups = w.groups();
  for (index_t r = 0; r < w.rows; ++r) {
    std::uint8_t* row = out.row(r);
    std::memset(row, 0, static_cast<std::size_t>(out.row_bytes()));
    for (index_t j = 0; j < w.cols; ++j)
      ref::set_code<G>(row, j, w.code(r, j));
    for (index_t g = 0; g < groups; ++g) {
      out.scales[r * groups + g] = w.scales[w.scale_at(r, g)];
      if constexpr (F::zero_point)
        out.zeros[r * groups + g] = w.zeros[w.scale_at(r, g)];
    }
  }
  return status::ok;
}

// A lut_view for the run-time dispatch library: the format as a descriptor (its layout is
// ignored: a lut_matrix has one layout of its own).
struct any_lut_view {
  format_desc format;
  const void* codes = nullptr;
  const void* scales = nullptr;
  const void* zeros = nullptr;
  index_t rows = 0;
  index_t cols = 0;
};

template <class F>
any_lut_view erase(const lut_view<F>& v) noexcept {
  return {describe<F>(), v.codes, v.scales, v.zeros, v.rows, v.cols};
}

namespace detail {

// What a tile kernel needs of a lut_matrix, with the group size as a run-time chunk count, so
// one kernel serves every group size of a (bits, zero point, scale type).
template <class Scale>
struct lut_weights {
  const std::uint8_t* codes;
  const Scale* scales;
  const Scale* zeros;
  index_t rows, cols, chunks, groups, chunks_per_group, tiles, tile_bytes;
};

// The tile stream is read once, front to back, in 128- or 256-byte chunks; tiles are contiguous,
// so the prefetcher would follow it, but it restarts at every 4 KiB page. Touching 4 KiB ahead
// (and the scales 1 KiB ahead) took an out-of-cache q2_g32 GEMV from 700 to 480 us and q1_g32
// from 380 to 305 us (4096x4096, one thread, AVX2, median of 180 calls over rotating copies).
inline constexpr index_t lut_prefetch_codes = 4096;
inline constexpr index_t lut_prefetch_scales = 1024;
// The table tile (lut_tile_avx2) asks for the codes 4 KiB ahead into L2, and only 1 KiB ahead
// into L1: a row's tables (256 bytes per chunk, 32 KiB for 4096 columns) share L1 with the
// codes, so code lines that arrive early take the tables' room (a test that let every chunk
// read the same 4 KiB of tables ran 4-8% faster). Out of cache, 4096x4096, 2 threads, median
// of 1500 calls, three alternating rounds: q2_g128 240-248 -> 226-233 us, q1_g128 123-126 ->
// 118-119 us.
inline constexpr index_t lut_prefetch_codes_l1 = 1024;
inline constexpr index_t lut_prefetch_codes_l2 = 4096;

// The table tiles' code prefetch for a chunk of `bytes` bytes (see above).
APLQ_FORCE_INLINE void lut_prefetch_chunk(const std::uint8_t* chunk, index_t bytes) noexcept {
  for (index_t l = 0; l < bytes; l += 64) {
    APLQ_PREFETCH_L2(chunk + lut_prefetch_codes_l2 + l);
    APLQ_PREFETCH(chunk + lut_prefetch_codes_l1 + l);
  }
}

// A tile's 32 results (tile t, activation row k) into y, without its padding rows.
inline void lut_store_tile(const float* out, index_t rows, index_t t, index_t k,
                           float* y) noexcept {
  const index_t r0 = t * lut_tile_rows;
  std::memcpy(y + k * rows + r0, out,
              static_cast<std::size_t>(std::min(lut_tile_rows, rows - r0)) * sizeof(float));
}

// From how many activation rows a lut_matrix of Bits bits takes the int8 panels on A (see
// lut_panel_task). 4096x4096, one thread of a 2-vCPU Intel Xeon, weights in the last-level
// cache, best of 20, tables against panels, us: with AVX512-VNNI, q1_g32 batch 4 626 and 677, 8
// 1231 and 918, 64 11331 and 5566; q2_g32 batch 4 1028 and 717, 8 2009 and 965, 64 16983 and
// 5101. AVX2: q2_g32 batch 4 1173 and 1343, 8 2351 and 2095, 64 19852 and 13496; q1_g32 batch 8
// 1522 and 2003, 64 13095 and 13168: one bit plane halves the tables' work and not the
// panels', so 1-bit formats keep the tables on AVX2.
template <class A, int Bits>
inline constexpr index_t lut_panel_min_batch = Bits == 2 || int8_panel_shape<A>::rows == 16
                                                   ? 8
                                                   : std::numeric_limits<index_t>::max();

// The bias of a table entry and the base of its two digits (see the layout above).
inline constexpr int lut_table_bias = 512;
inline constexpr int lut_digit_bits = 5;
inline constexpr int lut_digit = 1 << lut_digit_bits;

// The table of one step (4 activations x): T[e] = sum of x[q] over the set bits q of e, as 16
// low digits then 16 high digits of T[e] + lut_table_bias.
inline void build_table_scalar(const std::int8_t* x, std::uint8_t* out) noexcept {
  int t[16];
  t[0] = 0;
  for (int q = 0; q < 4; ++q)
    for (int e = 0; e < (1 << q); ++e)
      t[e + (1 << q)] = t[e] + x[q];
  for (int e = 0; e < 16; ++e) {
    const int v = t[e] + lut_table_bias;
    out[e] = static_cast<std::uint8_t>(v % lut_digit);
    out[16 + e] = static_cast<std::uint8_t>(v / lut_digit);
  }
}

#if defined(__AVX2__)
// The same with two u8 x s8 dot products: the 4 activations are broadcast, and for entry e the
// constant bytes are its bits, so entry e's two halves (bits 0-1 against x0, x1 and bits 2-3
// against x2, x3) land in adjacent 16-bit lanes; a horizontal add joins them, the biased sum's
// digits go to the low and high byte of its lane, and a byte shuffle and a dword permute sort
// them. About a dozen instructions a step instead of 60.
inline void build_table_avx2(const std::int8_t* x, std::uint8_t* out) noexcept {
  std::int32_t x4;
  std::memcpy(&x4, x, sizeof x4);
  const __m256i xb = _mm256_set1_epi32(x4);
  // Bytes 4i .. 4i+3 are the bits 0..3 of entry i (entries 0-7), then of entry 8 + i.
  const __m256i bits_lo = _mm256_setr_epi8(0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1,
                                           0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 1, 0);
  const __m256i bits_hi = _mm256_setr_epi8(0, 0, 0, 1, 1, 0, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 0, 1,
                                           1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1);
  // Entries by 16-bit lane: 0-3, 8-11 | 4-7, 12-15.
  const __m256i t = _mm256_add_epi16(
      _mm256_hadd_epi16(_mm256_maddubs_epi16(bits_lo, xb), _mm256_maddubs_epi16(bits_hi, xb)),
      _mm256_set1_epi16(lut_table_bias));
  const __m256i digits = _mm256_or_si256(
      _mm256_and_si256(t, _mm256_set1_epi16(lut_digit - 1)),
      _mm256_slli_epi16(_mm256_srli_epi16(t, lut_digit_bits), 8)); // low | high << 8
  const __m256i split = _mm256_shuffle_epi8(
      digits, _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8,
                               10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
  const __m256i sorted =
      _mm256_permutevar8x32_epi32(split, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), sorted);
}
#endif

// Per activation row and chunk, the 8 steps' tables: [n][chunks][step][16 low, 16 high digits].
template <class A>
void build_tables(const activations& act, std::uint8_t* tables) noexcept {
  const index_t stride = act.chunks * chunk_codes;
  for (index_t k = 0; k < act.n; ++k) {
    const std::int8_t* xq = act.xq.data() + k * stride;
    std::uint8_t* out = tables + k * act.chunks * 256;
    for (index_t s = 0; s < act.chunks * 8; ++s, out += 32) {
#if defined(__AVX2__)
      if constexpr (std::is_base_of<xsimd::avx2, vector_arch<A>>::value) {
        build_table_avx2(xq + 4 * s, out);
        continue;
      }
#endif
      build_table_scalar(xq + 4 * s, out);
    }
  }
}

// Group g's affine scale a and offset term a * c of one row (int8 policy: dot_bias is 0 below
// 8 bits, so the offset is a * c * gsum).
template <class K, class A, class Scale>
APLQ_FORCE_INLINE void lut_affine(const Scale* s, const Scale* z, index_t i, float& a,
                                  float& c) noexcept {
  using VA = vector_arch<A>;
  a = K::affine_a(load_scale<VA>(s[i], VA{}));
  if constexpr (K::zero_point)
    c = K::affine_c(load_scale<VA>(z[i], VA{}));
  else
    c = K::affine_c(0.0f);
}

// What tile t needs against activation row k: its codes, scales and zero points, and the row's
// activation scales, group sums and tables.
template <class Scale>
struct lut_tile_inputs {
  const std::uint8_t* codes;
  const Scale* scales;
  const Scale* zeros;
  const float* dx;
  const float* gsum;
  const std::uint8_t* tables;
};

template <bool ZeroPoint, class Scale>
APLQ_FORCE_INLINE lut_tile_inputs<Scale>
lut_tile_at(const lut_weights<Scale>& w, index_t t, const activations& act,
            const std::uint8_t* tables, index_t k) noexcept {
  const index_t scales_at = t * w.groups * lut_tile_rows;
  return {w.codes + t * w.tile_bytes,
          w.scales + scales_at,
          ZeroPoint ? w.zeros + scales_at : nullptr,
          act.dx.data() + k * act.chunks,
          act.gsum.data() + k * act.groups,
          tables + k * w.chunks * 256};
}

// One tile (32 rows from 32 * t) against activation row k, one lookup at a time: the kernel of
// every ISA without a byte shuffle here, and the reference for the vector one.
template <class K, class A, class Scale>
void lut_tile_scalar(const lut_weights<Scale>& w, index_t t, const activations& act,
                     const std::uint8_t* tables, index_t k, float* y) noexcept {
  const auto [codes, sc, zc, dx, gsum, tab] = lut_tile_at<K::zero_point>(w, t, act, tables, k);
  float acc[lut_tile_rows] = {}, off[lut_tile_rows] = {};
  for (index_t g = 0; g < w.groups; ++g) {
    float gacc[lut_tile_rows] = {};
    const index_t end = std::min(w.chunks, (g + 1) * w.chunks_per_group);
    for (index_t c = g * w.chunks_per_group; c < end; ++c) {
      for (int i = 0; i < lut_tile_rows; ++i) {
        int dot = 0;
        for (int p = 0; p < K::bits; ++p) {
          const std::uint8_t* blk = codes + (c * K::bits + p) * 128;
          int part = 0;
          for (int s = 0; s < 8; ++s) {
            const unsigned idx = (blk[s / 2 * 32 + i] >> (s % 2 * 4)) & 0xfu;
            const std::uint8_t* ts = tab + c * 256 + s * 32;
            part += ts[idx] + lut_digit * ts[16 + idx] - lut_table_bias;
          }
          dot += part * (1 << p);
        }
        gacc[i] += static_cast<float>(dot) * dx[c];
      }
    }
    for (int i = 0; i < lut_tile_rows; ++i) {
      float a, c;
      lut_affine<K, A>(sc, zc, g * lut_tile_rows + i, a, c);
      acc[i] += a * gacc[i];
      off[i] += a * c * gsum[g];
    }
  }
  const index_t r0 = t * lut_tile_rows;
  for (index_t i = 0; i < lut_tile_rows && r0 + i < w.rows; ++i)
    y[k * w.rows + r0 + i] = acc[i] - off[i];
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
template <class Scale>
APLQ_FORCE_INLINE __m256 lut_load8(const Scale* p) noexcept {
  if constexpr (std::is_same<Scale, float>::value)
    return _mm256_loadu_ps(p);
  else
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// 16 bytes of a table in both 128-bit lanes: the low or high digits of a step's 16 entries, or
// under the exact policy one byte of each of its f32 entries.
APLQ_FORCE_INLINE __m256i lut_table(const std::uint8_t* p) noexcept {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// The AVX2 tile: per step, two byte shuffles look up the low and high digits of 32 rows' table
// entries, which add up as bytes over a plane's 8 steps; then per plane two unpacks and two
// vpmaddubsw (digits times 1 and 32) give the rows' int16 sums (biased), accumulated per chunk in
// two registers (rows 0-7 and 16-23, rows 8-15 and 24-31: unpacking works within 128-bit lanes).
// The digits add with saturation, which never happens (at most 248) but keeps GCC from
// reassociating the chain into a tree of partial sums, all live at once and spilled to the
// stack. Before, int16 entries unpacked and added at every step (the same byte shuffles, and an
// unpack for each: 64 shuffles and unpacks a 2-bit chunk, 36 now) with plain adds; 4096 columns,
// one thread of a 2-vCPU Intel Xeon (Emerald Rapids), best of 4000 calls in cache (1024 rows) or of
// 400 over 40 rotating copies (4096 rows), 2 alternating runs, us: 2-bit group 128 GEMV in
// cache 69.1-69.5 -> 49.9-50.1, out of cache 412-418 -> 225-273 (2 threads 176 -> 133-138); 1-bit
// group 128 in cache 38.8-40.0 -> 33.3-33.4 (out of cache, 2 threads 85-87 -> 71-73); 2-bit group
// 32 with zero point in cache 84.7-86.9 -> 65.1-65.8; AVX512-VNNI build, 2-bit group 128 in
// cache 58.6-58.8 -> 48.8-50.0. Outputs bit for bit the same: the integer sums are.
template <class K, class Scale>
void lut_tile_avx2(const lut_weights<Scale>& w, index_t t, const activations& act,
                   const std::uint8_t* tables, index_t k, float* y) noexcept {
  const auto [codes, sc, zc, dx, gsum, tab] = lut_tile_at<K::zero_point>(w, t, act, tables, k);
  constexpr index_t chunk_bytes = K::bits * 128;
  const __m256i nibble = _mm256_set1_epi8(0x0f);
  __m256 acc[4], off[4];
  for (int v = 0; v < 4; ++v)
    acc[v] = off[v] = _mm256_setzero_ps();
  for (index_t g = 0; g < w.groups; ++g) {
    APLQ_PREFETCH(sc + g * lut_tile_rows + lut_prefetch_scales / sizeof(Scale));
    if constexpr (sizeof(Scale) * lut_tile_rows > 64)
      APLQ_PREFETCH(sc + g * lut_tile_rows + (lut_prefetch_scales + 64) / sizeof(Scale));
    __m256 gacc[4];
    for (int v = 0; v < 4; ++v)
      gacc[v] = _mm256_setzero_ps();
    const index_t end = std::min(w.chunks, (g + 1) * w.chunks_per_group);
    for (index_t c = g * w.chunks_per_group; c < end; ++c) {
      const std::uint8_t* chunk = codes + c * chunk_bytes;
      lut_prefetch_chunk(chunk, chunk_bytes);
      const std::uint8_t* ts = tab + c * 256;
      // Less the bias of every plane's 8 entries (times the plane's 2^p, summing to code_max).
      __m256i sa = _mm256_set1_epi16(
          static_cast<std::int16_t>(-8 * lut_table_bias * static_cast<int>(K::code_max)));
      __m256i sb = sa;
      // Per plane, the digit sums; a step's two tables serve every plane.
      __m256i lo[K::bits], hi[K::bits];
      for (int p = 0; p < K::bits; ++p)
        lo[p] = hi[p] = _mm256_setzero_si256();
      for (int b = 0; b < 4; ++b) {
        __m256i idx[K::bits][2];
        for (int p = 0; p < K::bits; ++p) {
          const __m256i v =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(chunk + p * 128 + 32 * b));
          idx[p][0] = _mm256_and_si256(v, nibble);
          idx[p][1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
        }
        for (int h = 0; h < 2; ++h) {
          const std::uint8_t* step = ts + (2 * b + h) * 32;
          const __m256i tlo = lut_table(step), thi = lut_table(step + 16);
          for (int p = 0; p < K::bits; ++p) {
            lo[p] = _mm256_adds_epu8(lo[p], _mm256_shuffle_epi8(tlo, idx[p][h]));
            hi[p] = _mm256_adds_epu8(hi[p], _mm256_shuffle_epi8(thi, idx[p][h]));
          }
        }
      }
      const __m256i base = _mm256_set1_epi16(1 | lut_digit << 8); // bytes 1, 32
      for (int p = 0; p < K::bits; ++p) {
        const __m256i pa = _mm256_maddubs_epi16(_mm256_unpacklo_epi8(lo[p], hi[p]), base);
        const __m256i pb = _mm256_maddubs_epi16(_mm256_unpackhi_epi8(lo[p], hi[p]), base);
        sa = _mm256_add_epi16(sa, _mm256_slli_epi16(pa, p));
        sb = _mm256_add_epi16(sb, _mm256_slli_epi16(pb, p));
      }
      const __m256 d = _mm256_broadcast_ss(dx + c);
      const __m256i part[4] = {_mm256_cvtepi16_epi32(_mm256_castsi256_si128(sa)),
                               _mm256_cvtepi16_epi32(_mm256_castsi256_si128(sb)),
                               _mm256_cvtepi16_epi32(_mm256_extracti128_si256(sa, 1)),
                               _mm256_cvtepi16_epi32(_mm256_extracti128_si256(sb, 1))};
      for (int v = 0; v < 4; ++v)
        gacc[v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(part[v]), d, gacc[v]);
    }
    const __m256 gs = _mm256_broadcast_ss(gsum + g);
    for (int v = 0; v < 4; ++v) {
      __m256 a = lut_load8(sc + g * lut_tile_rows + 8 * v);
      if constexpr (K::affine_a(1.0f) != 1.0f)
        a = _mm256_mul_ps(a, _mm256_set1_ps(K::affine_a(1.0f)));
      acc[v] = _mm256_fmadd_ps(a, gacc[v], acc[v]);
      __m256 c;
      if constexpr (K::zero_point)
        c = lut_load8(zc + g * lut_tile_rows + 8 * v);
      else
        c = _mm256_set1_ps(K::affine_c(0.0f));
      off[v] = _mm256_fmadd_ps(_mm256_mul_ps(a, c), gs, off[v]);
    }
  }
  alignas(32) float out[lut_tile_rows];
  for (int v = 0; v < 4; ++v)
    _mm256_store_ps(out + 8 * v, _mm256_sub_ps(acc[v], off[v]));
  lut_store_tile(out, w.rows, t, k, y);
}
#endif

template <class K, class A, class Scale>
APLQ_FORCE_INLINE void lut_tile(const lut_weights<Scale>& w, index_t t, const activations& act,
                                const std::uint8_t* tables, index_t k, float* y) noexcept {
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
  if constexpr (std::is_base_of<xsimd::avx2, vector_arch<A>>::value) {
    lut_tile_avx2<K>(w, t, act, tables, k, y);
    return;
  }
#endif
  lut_tile_scalar<K, A>(w, t, act, tables, k, y);
}

// What lut_run does for the tiles whose int8 panels found no memory when it cannot allocate the
// tables either: tile t (32 rows from 32 * t) against every activation row, each chunk's integer
// dot product straight from the codes (the sum a table lookup gives), then the f32 sums of
// lut_tile_scalar. Slow, but it needs no memory, so a call whose panels have begun writing y can
// finish.
template <class K, class A, class Scale>
void lut_tile_unbuffered(const lut_weights<Scale>& w, index_t t, const activations& act,
                         float* y) noexcept {
  const index_t stride = act.chunks * chunk_codes, scales_at = t * w.groups * lut_tile_rows;
  const std::uint8_t* codes = w.codes + t * w.tile_bytes;
  const Scale* sc = w.scales + scales_at;
  const Scale* zc = K::zero_point ? w.zeros + scales_at : nullptr;
  for (index_t k = 0; k < act.n; ++k) {
    const float* dx = act.dx.data() + k * act.chunks;
    const float* gsum = act.gsum.data() + k * act.groups;
    const std::int8_t* xq = act.xq.data() + k * stride;
    for (index_t i = 0; i < lut_tile_rows && t * lut_tile_rows + i < w.rows; ++i) {
      float acc = 0.0f, off = 0.0f;
      for (index_t g = 0; g < w.groups; ++g) {
        float gacc = 0.0f;
        const index_t end = std::min(w.chunks, (g + 1) * w.chunks_per_group);
        for (index_t c = g * w.chunks_per_group; c < end; ++c) {
          int dot = 0;
          for (int p = 0; p < K::bits; ++p) {
            const std::uint8_t* blk = codes + (c * K::bits + p) * 128;
            int part = 0;
            for (int j = 0; j < chunk_codes; ++j)
              if ((blk[j / 8 * 32 + i] >> (j % 8)) & 1u)
                part += xq[c * chunk_codes + j];
            dot += part * (1 << p);
          }
          gacc += static_cast<float>(dot) * dx[c];
        }
        float a, cz;
        lut_affine<K, A>(sc, zc, g * lut_tile_rows + i, a, cz);
        acc += a * gacc;
        off += a * cz * gsum[g];
      }
      y[k * w.rows + t * lut_tile_rows + i] = acc - off;
    }
  }
}

// ---- The exact policy: tables of f32 sums ----
//
// The same lookup with the activations as they are. A weight is w = a * v with v a sum over the
// code's bit planes of a part per bit, and with a zero point a term per group besides:
//   1 bit:  w = 2s * (b - 1/2)                       (a = 2s, parts -1/2 and +1/2)
//   2 bits: w = s * (u - 2) = s * (b0 + 2 (b1 - 1))  (a = s, plane 0: 0 and 1, plane 1: -2 and 0)
//   zero point: w = s * (u - r) + s * (r - z), r the code nearest z, u - r = sum over the planes p
//           of 2^p (b_p - r_p)                     (a = s, plane p: 0 and 2^p, or -2^p and 0)
// so per step and plane (with a zero point, per step: see below) a table of 16 f32 sums of the
// step's 4 activations
//   T[e] = A[e & 3] + B[e >> 2],  A[i] = part(bit 0 of i) x0 + part(bit 1 of i) x1,  B the same
// of x2, x3, holds sum over q of part(bit q of e) x_q. A permute (vpermps) looks up 16 rows'
// entries at once; AVX2, whose vpermps takes 8 entries, looks up the entries' bytes instead (see
// lut_exact_tile_avx2). The tables take 512 bytes per plane (with a zero point, in all) and 32
// columns.
//
// With a zero point the parts depend on the row's r, but the parts -1 and 0 at index e are the
// parts 0 and 1 at the index with every bit flipped, negated. So one table of parts 0 and 1 per
// step serves every plane and row: a lane flips its index where bit p of its r is set, and the
// sign of the plane's sum with it; the plane's sum is scaled by 2^p, and (r - z) times the
// group's sum of x (once per activation row and group) opens the group's first block.
//
// Every part is 0 where the weight is 0 and bounded by a small multiple of |w / a|: 3 for 2-bit
// symmetric codes (v = -1 is 1 - 2); with a zero point |u - r| <= 2 |u - z|, since |r - z| <=
// |u - z| for every code u, so 2 for 1 bit and 6 for 2 bits, and |s * (r - z)| <= |w| for every
// weight of the group. The sums are as well conditioned as the plain kernels' (relative to
// sum |w x|). Splitting off s * z * sum x instead (as the int8 policy does) cancels where weights
// are mostly zero: 1-bit zero-point rows quantized to z = 0 or 1 lost 1.1-1.7e-6 (rel-L2) in
// aplq-accuracy's suite that way, beyond the exact policy's 1e-6; so did 2-bit symmetric codes
// as parts +-1/2 on both planes less sum x / 2, on ternary rows.
//
// Summation: a chunk's 8 * bits lookups are summed in registers, chunks into a block of at most
// lut_exact_block chunks of one group, blocks (scaled by a) into the row, as the plain exact
// kernels do.
inline constexpr index_t lut_exact_block = 32;
inline constexpr index_t lut_exact_table = 16; // floats per table

// Tables per step: one per bit plane, or with a zero point one shared by the planes.
template <class K>
inline constexpr int lut_exact_tables = K::zero_point ? 1 : K::bits;

// What bit b of plane p contributes to w / a through the step's table p (see above; with a zero
// point, that of an unflipped lane, without the plane's 2^p).
template <class K>
constexpr float lut_exact_part(int plane, unsigned b) noexcept {
  if (K::zero_point)
    return b != 0 ? 1.0f : 0.0f;
  if (K::bits == 1)
    return b != 0 ? 0.5f : -0.5f;
  return plane == 0 ? (b != 0 ? 1.0f : 0.0f) : (b != 0 ? 0.0f : -2.0f);
}

// With a zero point: the code r nearest z (0 for a NaN z).
template <class K>
float lut_nearest_code(float z) noexcept {
  return std::fmin(std::fmax(std::rint(z), 0.0f), static_cast<float>(K::code_max));
}

// Whether the tables on A are whole tables, or byte rows for lut_exact_tile_avx2: byte rows
// exactly where that tile runs (see lut_exact_tile), which is compiled only with AVX2, FMA and
// F16C.
template <class A>
inline constexpr bool lut_exact_whole_tables =
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#if defined(__AVX512F__)
    std::is_base_of<xsimd::avx512f, A>::value ||
#endif
    !std::is_base_of<xsimd::avx2, vector_arch<A>>::value;
#else
    true;
#endif

#if defined(__AVX2__)
// A table of 16 f32 entries (e[0] holds entries 0-3, ..., e[3] entries 12-15) as the AVX2 tile
// reads it: 4 rows of 16 bytes, row b holding byte b of every entry.
APLQ_FORCE_INLINE void lut_exact_byte_rows(const __m128 (&e)[4], float* out) noexcept {
  // Per vector, dword b = byte b of its 4 entries; then the 4 x 4 dwords transposed.
  const __m128i bytes = _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  __m128i v[4];
  for (int i = 0; i < 4; ++i)
    v[i] = _mm_shuffle_epi8(_mm_castps_si128(e[i]), bytes);
  const __m128i lo01 = _mm_unpacklo_epi32(v[0], v[1]), hi01 = _mm_unpackhi_epi32(v[0], v[1]);
  const __m128i lo23 = _mm_unpacklo_epi32(v[2], v[3]), hi23 = _mm_unpackhi_epi32(v[2], v[3]);
  auto* o = reinterpret_cast<__m128i*>(out);
  _mm_storeu_si128(o, _mm_unpacklo_epi64(lo01, lo23));
  _mm_storeu_si128(o + 1, _mm_unpackhi_epi64(lo01, lo23));
  _mm_storeu_si128(o + 2, _mm_unpacklo_epi64(hi01, hi23));
  _mm_storeu_si128(o + 3, _mm_unpackhi_epi64(hi01, hi23));
}
#endif

// Per activation row, the tables of every step: [n][chunks * 8][lut_exact_tables<K>][16] floats,
// as whole tables or, for the AVX2 tile, as 4 rows of 16 bytes (lut_exact_byte_rows).
template <class A, class K>
void build_exact_tables(const float* x, index_t n, index_t cols, index_t chunks,
                        float* tables) noexcept {
  constexpr int TB = lut_exact_tables<K>;
  const index_t steps = chunks * (chunk_codes / 4);
  for (index_t k = 0; k < n; ++k) {
    const float* xk = x + k * cols;
    float* t = tables + k * steps * TB * lut_exact_table;
    index_t s = 0;
#if defined(__SSE2__)
    // The same sums four at a time, while the step's 4 activations are all inside the row.
    for (; 4 * s + 4 <= cols; ++s) {
      const __m128 v = _mm_loadu_ps(xk + 4 * s);
      for (int p = 0; p < TB; ++p, t += lut_exact_table) {
        const float lo = lut_exact_part<K>(p, 0), hi = lut_exact_part<K>(p, 1);
        const __m128 part0 = _mm_setr_ps(lo, hi, lo, hi), part1 = _mm_setr_ps(lo, lo, hi, hi);
        const __m128 a = _mm_add_ps(_mm_mul_ps(part0, _mm_shuffle_ps(v, v, 0x00)),
                                    _mm_mul_ps(part1, _mm_shuffle_ps(v, v, 0x55)));
        const __m128 b = _mm_add_ps(_mm_mul_ps(part0, _mm_shuffle_ps(v, v, 0xaa)),
                                    _mm_mul_ps(part1, _mm_shuffle_ps(v, v, 0xff)));
        const __m128 e[4] = {
            _mm_add_ps(a, _mm_shuffle_ps(b, b, 0x00)), _mm_add_ps(a, _mm_shuffle_ps(b, b, 0x55)),
            _mm_add_ps(a, _mm_shuffle_ps(b, b, 0xaa)), _mm_add_ps(a, _mm_shuffle_ps(b, b, 0xff))};
#if defined(__AVX2__)
        if constexpr (!lut_exact_whole_tables<A>) {
          lut_exact_byte_rows(e, t);
          continue;
        }
#endif
        for (int q = 0; q < 4; ++q)
          _mm_storeu_ps(t + 4 * q, e[q]);
      }
    }
#endif
    for (; s < steps; ++s) {
      float v[4];
      for (int q = 0; q < 4; ++q) {
        const index_t j = 4 * s + q;
        v[q] = j < cols ? xk[j] : 0.0f;
      }
      for (int p = 0; p < TB; ++p, t += lut_exact_table) {
        float a[4], b[4], e[16];
        for (unsigned i = 0; i < 4; ++i) {
          a[i] = lut_exact_part<K>(p, i & 1u) * v[0] + lut_exact_part<K>(p, i >> 1) * v[1];
          b[i] = lut_exact_part<K>(p, i & 1u) * v[2] + lut_exact_part<K>(p, i >> 1) * v[3];
        }
        for (int i = 0; i < 16; ++i)
          e[i] = a[i & 3] + b[i >> 2];
#if defined(__AVX2__)
        if constexpr (!lut_exact_whole_tables<A>) {
          const __m128 ev[4] = {_mm_loadu_ps(e), _mm_loadu_ps(e + 4), _mm_loadu_ps(e + 8),
                                _mm_loadu_ps(e + 12)};
          lut_exact_byte_rows(ev, t);
          continue;
        }
#endif
        std::copy(e, e + 16, t);
      }
    }
  }
}

// With a zero point, per activation row and group the sum of its activations: [n][groups]. A
// chunk's 32 in 8 interleaved sums, the chunks one after another.
inline void lut_exact_group_sums(const float* x, index_t n, index_t cols, index_t chunks_per_group,
                                 index_t groups, float* sums) noexcept {
  const index_t group_cols = chunks_per_group * chunk_codes;
  for (index_t k = 0; k < n; ++k) {
    const float* xk = x + k * cols;
    for (index_t g = 0; g < groups; ++g) {
      const index_t j1 = std::min(cols, (g + 1) * group_cols);
      float sum = 0.0f;
      for (index_t j0 = g * group_cols; j0 < j1; j0 += chunk_codes) {
        float part[8] = {};
        if (j0 + chunk_codes <= j1) {
          for (index_t j = 0; j < chunk_codes; j += 8)
            for (int l = 0; l < 8; ++l)
              part[l] += xk[j0 + j + l];
        } else {
          for (index_t j = j0; j < j1; ++j)
            part[(j - j0) % 8] += xk[j];
        }
        sum += ((part[0] + part[1]) + (part[2] + part[3])) +
               ((part[4] + part[5]) + (part[6] + part[7]));
      }
      sums[k * groups + g] = sum;
    }
  }
}

// body(g, b0, b1) for every block [b0, b1) of chunks, in order: a group's chunks lut_exact_block
// at a time.
template <class Body>
APLQ_FORCE_INLINE void lut_exact_blocks(index_t chunks, index_t chunks_per_group,
                                        Body&& body) noexcept {
  for (index_t c0 = 0, g = 0; c0 < chunks; c0 += chunks_per_group, ++g) {
    const index_t c1 = std::min(chunks, c0 + chunks_per_group);
    for (index_t b0 = c0; b0 < c1; b0 += lut_exact_block)
      body(g, b0, std::min(c1, b0 + lut_exact_block));
  }
}

// What an exact tile (tile t, activation row k) reads: its codes, scales and zero points, the
// row's tables, and with a zero point its group sums.
template <class Scale>
struct lut_exact_inputs {
  const std::uint8_t* codes;
  const Scale* scales;
  const Scale* zeros;
  const float* tables;
  const float* sums;
};

template <class K, class Scale>
APLQ_FORCE_INLINE lut_exact_inputs<Scale> lut_exact_at(const lut_weights<Scale>& w, index_t t,
                                                       const float* tables, const float* sums,
                                                       index_t k) noexcept {
  const index_t scales_at = t * w.groups * lut_tile_rows;
  return {w.codes + t * w.tile_bytes, w.scales + scales_at,
          K::zero_point ? w.zeros + scales_at : nullptr,
          tables + k * w.chunks * 8 * lut_exact_tables<K> * lut_exact_table,
          K::zero_point ? sums + k * w.groups : nullptr};
}

// One tile (32 rows from 32 * t) against activation row k, one lookup at a time (whole
// tables): the kernel wherever neither vector tile is compiled in, and the reference for them.
template <class K, class A, class Scale>
void lut_exact_tile_scalar(const lut_weights<Scale>& w, index_t t, const float* tables,
                           const float* sums, index_t k, float* y) noexcept {
  const auto [codes, sc, zc, tab, gsum] = lut_exact_at<K>(w, t, tables, sums, k);
  constexpr int B = K::bits, TB = lut_exact_tables<K>;
  float acc[lut_tile_rows] = {};
  lut_exact_blocks(w.chunks, w.chunks_per_group, [&](index_t g, index_t b0, index_t b1) {
    for (int i = 0; i < lut_tile_rows; ++i) {
      float a, z;
      lut_affine<K, A>(sc, zc, g * lut_tile_rows + i, a, z);
      unsigned flip = 0; // with a zero point: bit p set where r's is
      float block = 0.0f;
      if constexpr (K::zero_point) {
        const float r = lut_nearest_code<K>(z);
        flip = static_cast<unsigned>(r);
        if (b0 == g * w.chunks_per_group) // the group's term opens its first block
          block = (r - z) * gsum[g];
      }
      for (index_t c = b0; c < b1; ++c) {
        float part[B] = {}; // per plane with a zero point; else all in part[0]
        for (int s = 0; s < 8; ++s)
          for (int p = 0; p < B; ++p) {
            const std::uint8_t code = codes[(c * B + p) * 128 + s / 2 * 32 + i];
            const unsigned e = ((code >> (s % 2 * 4)) & 0xfu) ^ ((flip >> p & 1u) * 0xfu);
            part[K::zero_point ? p : 0] +=
                tab[((c * 8 + s) * TB + (TB == 1 ? 0 : p)) * lut_exact_table + e];
          }
        float chunk = part[0];
        if constexpr (K::zero_point) {
          if (flip & 1u)
            chunk = -chunk;
          if constexpr (B == 2)
            chunk += (flip & 2u ? -2.0f : 2.0f) * part[1];
        }
        block += chunk;
      }
      acc[i] += a * block;
    }
  });
  const index_t r0 = t * lut_tile_rows;
  for (index_t i = 0; i < lut_tile_rows && r0 + i < w.rows; ++i)
    y[k * w.rows + r0 + i] = acc[i];
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
// Rows 4q .. 4q + 3 and 16 + 4q .. 16 + 4q + 3 of 32 (a quarter of the AVX2 exact tile, in the
// order its sums come in) as f32.
template <class Scale>
APLQ_FORCE_INLINE __m256 lut_load_quarter(const Scale* p, int q) noexcept {
  if constexpr (std::is_same<Scale, float>::value) {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p + 4 * q)),
                                _mm_loadu_ps(p + 16 + 4 * q), 1);
  } else {
    const __m128i lo = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 4 * q));
    const __m128i hi = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 16 + 4 * q));
    return _mm256_cvtph_ps(_mm_unpacklo_epi64(lo, hi));
  }
}

// The AVX2 tile: all 32 rows at once, by byte shuffles (vpshufb). A step's table is stored as
// 4 rows of 16 bytes (byte b of every entry, lut_exact_byte_rows); the code bytes' nibbles, 32
// rows' indices in one register, look up each row of bytes, and two rounds of unpacks put the
// bytes of each entry back together: 12 shuffles for 32 rows and 4 columns, where vpermps on 8
// rows at a time (its 8 entries holding half a table) took 8 vpermps and 2 widenings. The
// shuffles and unpacks run on two ports of Ice Lake and later Intel cores and of AMD's Zen, where
// vpermps has one on Intel; on cores with one shuffle port (Haswell to Comet Lake) this tile may
// be the slower, which was not measured. 4096x4096, 2 threads, out of cache, benchmark suite,
// 2-vCPU Intel Xeon (Emerald Rapids), best of 2 alternating runs, vpermps -> shuffles, us: 2-bit
// group 32 GEMV 678 -> 392, group 32 zero point 740 -> 522, group 128 615 -> 373, group 128
// batch 4 2319 -> 1331; 1-bit group 128 GEMV 258 -> 197.
// The f32 sums come in quarters of rows 4q .. 4q + 3 and 16 + 4q .. 16 + 4q + 3, and the scales,
// zero points and signs are loaded in that order too. With a zero point, a row flips its index
// bytes by xor 0xff (both nibbles) and its plane sum by the sign bit.
template <class K, class Scale>
void lut_exact_tile_avx2(const lut_weights<Scale>& w, index_t t, const float* tables,
                         const float* sums, index_t k, float* y) noexcept {
  const auto [codes, sc, zc, tab, gsum] = lut_exact_at<K>(w, t, tables, sums, k);
  constexpr int B = K::bits, TB = lut_exact_tables<K>, P = K::zero_point ? B : 1;
  const __m256i nibble = _mm256_set1_epi8(0x0f);
  __m256 acc[4];
  for (int q = 0; q < 4; ++q)
    acc[q] = _mm256_setzero_ps();
  lut_exact_blocks(w.chunks, w.chunks_per_group, [&](index_t g, index_t b0, index_t b1) {
    APLQ_PREFETCH(sc + g * lut_tile_rows + lut_prefetch_scales / sizeof(Scale));
    __m256 block[4];
    for (int q = 0; q < 4; ++q)
      block[q] = _mm256_setzero_ps();
    // With a zero point, per plane: 0xff in the bytes of rows whose r has bit p set, and per
    // quarter the sign bit in their lanes.
    __m256i flip[B];
    __m256 sign[B][4];
    if constexpr (K::zero_point) {
      APLQ_PREFETCH(zc + g * lut_tile_rows + lut_prefetch_scales / sizeof(Scale));
      const __m256 gs = _mm256_broadcast_ss(gsum + g);
      __m256i set[B][4];
      for (int q = 0; q < 4; ++q) {
        const __m256 z = lut_load_quarter(zc + g * lut_tile_rows, q);
        const __m256 r = _mm256_min_ps(
            _mm256_max_ps(_mm256_round_ps(z, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                          _mm256_setzero_ps()),
            _mm256_set1_ps(static_cast<float>(K::code_max)));
        const __m256i ri = _mm256_cvttps_epi32(r);
        for (int p = 0; p < B; ++p) {
          const __m256i bit = _mm256_set1_epi32(1 << p);
          set[p][q] = _mm256_cmpeq_epi32(_mm256_and_si256(ri, bit), bit);
          sign[p][q] =
              _mm256_castsi256_ps(_mm256_and_si256(set[p][q], _mm256_set1_epi32(INT32_MIN)));
        }
        if (b0 == g * w.chunks_per_group) // the group's term opens its first block
          block[q] = _mm256_mul_ps(_mm256_sub_ps(r, z), gs);
      }
      // Saturating packs of the quarters' all-ones dwords give the rows' bytes in order.
      for (int p = 0; p < B; ++p)
        flip[p] = _mm256_packs_epi16(_mm256_packs_epi32(set[p][0], set[p][1]),
                                     _mm256_packs_epi32(set[p][2], set[p][3]));
    }
    for (index_t c = b0; c < b1; ++c) {
      const std::uint8_t* chunk = codes + c * B * 128;
      lut_prefetch_chunk(chunk, B * 128);
      const auto* ts = reinterpret_cast<const std::uint8_t*>(tab + c * 8 * TB * lut_exact_table);
      __m256 part[P][4]; // per plane with a zero point; else all in part[0]
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < 4; ++q)
          part[p][q] = _mm256_setzero_ps();
      for (int b = 0; b < 4; ++b)
        for (int p = 0; p < B; ++p) {
          __m256i v =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(chunk + p * 128 + 32 * b));
          if constexpr (K::zero_point)
            v = _mm256_xor_si256(v, flip[p]);
          const __m256i e[2] = {_mm256_and_si256(v, nibble),
                                _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble)};
          for (int h = 0; h < 2; ++h) {
            const std::uint8_t* tb = ts + ((2 * b + h) * TB + (TB == 1 ? 0 : p)) * 64;
            __m256i bytes[4];
            for (int r = 0; r < 4; ++r)
              bytes[r] = _mm256_shuffle_epi8(lut_table(tb + 16 * r), e[h]);
            const __m256i lo01 = _mm256_unpacklo_epi8(bytes[0], bytes[1]); // rows 0-7 | 16-23
            const __m256i hi01 = _mm256_unpackhi_epi8(bytes[0], bytes[1]); // rows 8-15 | 24-31
            const __m256i lo23 = _mm256_unpacklo_epi8(bytes[2], bytes[3]);
            const __m256i hi23 = _mm256_unpackhi_epi8(bytes[2], bytes[3]);
            const __m256i entry[4] = {
                _mm256_unpacklo_epi16(lo01, lo23), _mm256_unpackhi_epi16(lo01, lo23),
                _mm256_unpacklo_epi16(hi01, hi23), _mm256_unpackhi_epi16(hi01, hi23)};
            __m256(&into)[4] = part[P == 1 ? 0 : p];
            for (int q = 0; q < 4; ++q)
              into[q] = _mm256_add_ps(into[q], _mm256_castsi256_ps(entry[q]));
          }
        }
      for (int q = 0; q < 4; ++q) {
        __m256 sum = part[0][q];
        if constexpr (K::zero_point) {
          sum = _mm256_xor_ps(sum, sign[0][q]);
          if constexpr (B == 2) {
            const __m256 v1 = _mm256_add_ps(part[1][q], part[1][q]);
            sum = _mm256_add_ps(sum, _mm256_xor_ps(v1, sign[1][q]));
          }
        }
        block[q] = _mm256_add_ps(block[q], sum);
      }
    }
    for (int q = 0; q < 4; ++q) {
      __m256 a = lut_load_quarter(sc + g * lut_tile_rows, q);
      if constexpr (K::affine_a(1.0f) != 1.0f)
        a = _mm256_mul_ps(a, _mm256_set1_ps(K::affine_a(1.0f)));
      acc[q] = _mm256_fmadd_ps(a, block[q], acc[q]);
    }
  });
  alignas(32) float out[lut_tile_rows];
  for (int q = 0; q < 4; ++q) {
    _mm_store_ps(out + 4 * q, _mm256_castps256_ps128(acc[q]));
    _mm_store_ps(out + 16 + 4 * q, _mm256_extractf128_ps(acc[q], 1));
  }
  lut_store_tile(out, w.rows, t, k, y);
}
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
template <class Scale>
APLQ_FORCE_INLINE __m512 lut_load16(const Scale* p) noexcept {
  if constexpr (std::is_same<Scale, float>::value)
    return _mm512_loadu_ps(p);
  else
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// The AVX-512 tile: rows by sixteens (halves of the tile). vpermps on a zmm reads 4 index bits,
// so the code byte (low nibble) and the byte >> 4 (high nibble) index whole tables. With a zero
// point, flips as in the AVX2 tile.
template <class K, class Scale>
void lut_exact_tile_avx512(const lut_weights<Scale>& w, index_t t, const float* tables,
                           const float* sums, index_t k, float* y) noexcept {
  const auto [codes, sc, zc, tab, gsum] = lut_exact_at<K>(w, t, tables, sums, k);
  constexpr int B = K::bits, TB = lut_exact_tables<K>, P = K::zero_point ? B : 1;
  const auto signed_by = [](__m512 v, __m512i sign) {
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), sign));
  };
  __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
  lut_exact_blocks(w.chunks, w.chunks_per_group, [&](index_t g, index_t b0, index_t b1) {
    APLQ_PREFETCH(sc + g * lut_tile_rows + lut_prefetch_scales / sizeof(Scale));
    __m512 block[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    // With a zero point, per half and plane: 0xff and the sign bit where r has bit p set.
    __m512i flip[2][B], sign[2][B];
    if constexpr (K::zero_point) {
      APLQ_PREFETCH(zc + g * lut_tile_rows + lut_prefetch_scales / sizeof(Scale));
      const __m512 gs = _mm512_set1_ps(gsum[g]);
      for (int h = 0; h < 2; ++h) {
        const __m512 z = lut_load16(zc + g * lut_tile_rows + 16 * h);
        const __m512 r = _mm512_min_ps(
            _mm512_max_ps(_mm512_roundscale_ps(z, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                          _mm512_setzero_ps()),
            _mm512_set1_ps(static_cast<float>(K::code_max)));
        const __m512i ri = _mm512_cvttps_epi32(r);
        for (int p = 0; p < B; ++p) {
          const __mmask16 set = _mm512_test_epi32_mask(ri, _mm512_set1_epi32(1 << p));
          flip[h][p] = _mm512_maskz_mov_epi32(set, _mm512_set1_epi32(0xff));
          sign[h][p] = _mm512_maskz_mov_epi32(set, _mm512_set1_epi32(INT32_MIN));
        }
        if (b0 == g * w.chunks_per_group) // the group's term opens its first block
          block[h] = _mm512_mul_ps(_mm512_sub_ps(r, z), gs);
      }
    }
    for (index_t c = b0; c < b1; ++c) {
      const std::uint8_t* chunk = codes + c * B * 128;
      lut_prefetch_chunk(chunk, B * 128);
      const float* ts = tab + c * 8 * TB * lut_exact_table;
      __m512 pa[2][P], pb[2][P];
      for (int h = 0; h < 2; ++h)
        for (int p = 0; p < P; ++p)
          pa[h][p] = pb[h][p] = _mm512_setzero_ps();
      for (int b = 0; b < 4; ++b)
        for (int p = 0; p < B; ++p) {
          const int table = TB == 1 ? 0 : p;
          const __m512 lo = _mm512_loadu_ps(ts + (2 * b * TB + table) * lut_exact_table);
          const __m512 hi = _mm512_loadu_ps(ts + ((2 * b + 1) * TB + table) * lut_exact_table);
          for (int h = 0; h < 2; ++h) {
            __m512i e = _mm512_cvtepu8_epi32(_mm_loadu_si128(
                reinterpret_cast<const __m128i*>(chunk + p * 128 + 32 * b + 16 * h)));
            if constexpr (K::zero_point)
              e = _mm512_xor_si512(e, flip[h][p]);
            const int into = P == 1 ? 0 : p;
            pa[h][into] = _mm512_add_ps(pa[h][into], _mm512_permutexvar_ps(e, lo));
            pb[h][into] =
                _mm512_add_ps(pb[h][into], _mm512_permutexvar_ps(_mm512_srli_epi32(e, 4), hi));
          }
        }
      for (int h = 0; h < 2; ++h) {
        __m512 sum = _mm512_add_ps(pa[h][0], pb[h][0]);
        if constexpr (K::zero_point) {
          sum = signed_by(sum, sign[h][0]);
          if constexpr (B == 2) {
            const __m512 v1 = _mm512_add_ps(pa[h][1], pb[h][1]);
            sum = _mm512_add_ps(sum, signed_by(_mm512_add_ps(v1, v1), sign[h][1]));
          }
        }
        block[h] = _mm512_add_ps(block[h], sum);
      }
    }
    for (int h = 0; h < 2; ++h) {
      __m512 a = lut_load16(sc + g * lut_tile_rows + 16 * h);
      if constexpr (K::affine_a(1.0f) != 1.0f)
        a = _mm512_mul_ps(a, _mm512_set1_ps(K::affine_a(1.0f)));
      acc[h] = _mm512_fmadd_ps(a, block[h], acc[h]);
    }
  });
  alignas(64) float out[lut_tile_rows];
  _mm512_store_ps(out, acc[0]);
  _mm512_store_ps(out + 16, acc[1]);
  lut_store_tile(out, w.rows, t, k, y);
}
#endif

template <class K, class A, class Scale>
APLQ_FORCE_INLINE void lut_exact_tile(const lut_weights<Scale>& w, index_t t, const float* tables,
                                      const float* sums, index_t k, float* y) noexcept {
#if defined(__AVX512F__) && defined(__AVX512BW__)
  if constexpr (std::is_base_of<xsimd::avx512f, A>::value) {
    lut_exact_tile_avx512<K>(w, t, tables, sums, k, y);
    return;
  }
#endif
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
  if constexpr (!lut_exact_whole_tables<A>) {
    lut_exact_tile_avx2<K>(w, t, tables, sums, k, y);
    return;
  }
#endif
  lut_exact_tile_scalar<K, A>(w, t, tables, sums, k, y);
}

// From how many activation rows the exact policy on a lut_matrix takes the plain kernels' f32
// panels (kernel.hpp, exact_panels: the weights dequantized once per call for all activation
// rows) instead of the tables, which cost the same for every activation row. 4096x4096, 2
// threads, out of cache, tables against the plain layout's panels, ms: 2-bit group 128 with
// AVX-512 batch 16 4.3 and 3.4, AVX2 8.8 and 3.9; 1-bit group 128 with AVX-512 batch 16 1.8 and
// 3.4, batch 64 10.5 and 9.8, AVX2 batch 16 3.3 and 3.9, batch 64 15.2 and 13.1. The panels filled
// from the tiles then cost 3-10% more than the plain layout's (2-bit, AVX-512: batch 16 3.9 and
// 3.6, batch 64 10.5 and 10.3): a row's chunk is 4 bytes per plane, 32 bytes apart.
// With the AVX2 tile on byte shuffles (lut_exact_tile_avx2), tables against the panels filled
// from the tiles: 2-bit group 128 batch 16 5.2 and 4.3; 1-bit group 128 batch 32 5.5 and 6.5,
// batch 64 13.9 and 13.6. So with AVX2 1-bit tables would pay up to about 64 rows; the threshold
// stays at 32, one for both ISAs.
template <int Bits>
inline constexpr index_t lut_exact_panel_min_batch = Bits == 2 ? panel_min_batch : 32;

// The exact panels' fill (kernel.hpp, exact_panels) from the tiles: a row's bits of a plane and
// chunk are 4 bytes of the tile, one per block, whose 32 bits are the chunk's columns in order
// (byte k holds columns 8k .. 8k + 7, low nibble first). So the panels hold the same
// w = a * (u - c) as the plain layout's, and the results are theirs bit for bit.
template <class K, class A, class Scale>
auto lut_exact_fill(const lut_weights<Scale>& w) noexcept {
  return [&w](index_t r, int i, index_t c0, index_t c1, float* out) {
    using VA = vector_arch<A>;
    using fb = xsimd::batch<float, VA>;
    using ib = xsimd::batch<std::int32_t, VA>;
    constexpr int S = static_cast<int>(fb::size), V = chunk_codes / S;
    alignas(64) static constexpr std::int32_t lane[chunk_codes] = {
        0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
        16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
    const index_t row = r + i, t = row / lut_tile_rows, i0 = row % lut_tile_rows;
    const std::uint8_t* tile = w.codes + t * w.tile_bytes;
    const Scale* sc = w.scales + t * w.groups * lut_tile_rows;
    const Scale* zeros = K::zero_point ? w.zeros + t * w.groups * lut_tile_rows : nullptr;
    index_t g = -1;
    float a = 0.0f, c = 0.0f;
    for (index_t ch = c0; ch < c1; ++ch) {
      if (ch / w.chunks_per_group != g) {
        g = ch / w.chunks_per_group;
        lut_affine<K, A>(sc, zeros, g * lut_tile_rows + i0, a, c);
      }
      const std::uint8_t* planes = tile + ch * K::bits * 128 + i0;
      std::int32_t bits[K::bits];
      for (int p = 0; p < K::bits; ++p) {
        const std::uint8_t* b = planes + p * 128;
        bits[p] =
            static_cast<std::int32_t>(std::uint32_t{b[0]} | std::uint32_t{b[32]} << 8 |
                                      std::uint32_t{b[64]} << 16 | std::uint32_t{b[96]} << 24);
      }
      for (int v = 0; v < V; ++v) {
        const ib shift = ib::load_aligned(lane + v * S);
        ib u = (ib(bits[0]) >> shift) & ib(1);
        if constexpr (K::bits == 2)
          u += ((ib(bits[1]) >> shift) & ib(1)) << 1;
        ((xsimd::to_float(u) - fb(c)) * fb(a)).store_aligned(out + (ch - c0) * chunk_codes + v * S);
      }
    }
  };
}

// Tiles [t0, t1) against every activation row, by the plain kernels' panels. A tile keeps a
// chunk of its 32 rows together, so the panels go a column block at a time through every row
// group of the task (a few tiles), and a tile's bytes of that block serve all its row groups
// while they are in L1. Spans of the whole row, as the plain layout takes them, read a row
// group's bytes across the whole row, and the tile's next row group reads them again from L2:
// with AVX-512, 2-bit group 32 with zero point (64 KiB a tile), 4096x4096, 2 threads, out of
// cache, 3 alternating runs, batch 16 3.75-3.95 ms this way, 4.10-4.19 by spans.
template <class K, class A, class Scale>
void lut_exact_panel_task(const lut_weights<Scale>& w, index_t t0, index_t t1,
                          const activations& act, float* y) noexcept {
  exact_panels<A>(t0 * lut_tile_rows, std::min(w.rows, t1 * lut_tile_rows), w.rows, act, y,
                  panel_chunks, lut_exact_fill<K, A>(w));
}

// The exact policy on a lut_matrix: the tables (and with a zero point the group sums) once per
// call, then the tiles; from lut_exact_panel_min_batch activation rows on, the panels instead.
template <class K, class A, class Scale>
status lut_exact_run(const lut_weights<Scale>& w, const float* x, index_t n, float* y,
                     const options& opt) noexcept {
  // Tasks of whole tiles and, where it can be done in few tiles, whole panel row groups.
  constexpr index_t per_group = panel_rows<A> / std::gcd<index_t>(lut_tile_rows, panel_rows<A>);
  const bool panels = n >= lut_exact_panel_min_batch<K::bits>;
  index_t block = std::max<index_t>(1, w.tiles / 64);
  if (panels && per_group <= 4)
    block = (block + per_group - 1) / per_group * per_group;
  const index_t tasks = (w.tiles + block - 1) / block;
  if (panels) {
    // Per calling thread, reused across calls (see run in kernel.hpp).
    thread_local activations act_buffer;
    activations& act = act_buffer;
    status s = prepare<K, A>(x, n, w.cols, w.groups, w.chunks_per_group, compute::exact, act);
    if (s == status::ok)
      s = prepare_panels<A>(act);
    if (s != status::ok)
      return s;
    auto panel_task = [&](index_t b) noexcept {
      lut_exact_panel_task<K, A>(w, b * block, std::min(w.tiles, (b + 1) * block), act, y);
    };
    thread_pool::global().run(opt.threads, tasks, panel_task);
    return status::ok;
  }
  // Per calling thread, reused across calls (see run in kernel.hpp).
  thread_local std::vector<float> table_buffer;
  const index_t table_floats = n * w.chunks * 8 * lut_exact_tables<K> * lut_exact_table;
  try {
    table_buffer.resize(
        static_cast<std::size_t>(table_floats + (K::zero_point ? n * w.groups : 0)));
  } catch (const std::bad_alloc&) {
    return status::out_of_memory;
  }
  build_exact_tables<A, K>(x, n, w.cols, w.chunks, table_buffer.data());
  const float* tables = table_buffer.data();
  float* sums = K::zero_point ? table_buffer.data() + table_floats : nullptr;
  if constexpr (K::zero_point)
    lut_exact_group_sums(x, n, w.cols, w.chunks_per_group, w.groups, sums);
  auto task = [&](index_t b) noexcept {
    const index_t t1 = std::min(w.tiles, (b + 1) * block);
    for (index_t t = b * block; t < t1; ++t)
      for (index_t k = 0; k < n; ++k)
        lut_exact_tile<K, A>(w, t, tables, sums, k, y);
  };
  thread_pool::global().run(opt.threads, tasks, task);
  return status::ok;
}

// The kernel format of a lut_matrix: bits, zero point and scale type; index-order activations.
template <int Bits, bool ZeroPoint, class Scale>
using lut_format = aplq::format<Bits, whole_row, ZeroPoint, Scale, layout::cpu_striped>;

// At larger batches a lut_matrix goes through the int8 panels of the plain kernels (kernel.hpp,
// int8_panels) instead: the tiles' bit planes are rows side by side already, so a panel's codes
// come from them by a few byte operations per plane and step (int8_panel_bits), no transpose.
// Where: see lut_panel_min_batch. Tiles [t0, t1); false, having written nothing, when the panel
// buffers cannot be allocated.
template <class K, class A, class Scale>
bool lut_panel_task(const lut_weights<Scale>& w, index_t t0, index_t t1, const activations& act,
                    float* y) noexcept {
  constexpr int R = int8_panel_shape<A>::rows;
  static_assert(lut_tile_rows % R == 0, "a panel is part of one tile");
  using ib = xsimd::batch<std::int32_t, typename int8_panel_shape<A>::arch>;
  const auto fill = [&](index_t r, int mr, index_t c0, index_t c1, std::uint8_t* codes, float* a,
                        float* c) {
    const index_t t = r / lut_tile_rows, i0 = r % lut_tile_rows;
    const std::uint8_t* tile = w.codes + t * w.tile_bytes;
    const index_t scales_at = t * w.groups * lut_tile_rows;
    const Scale* zeros = K::zero_point ? w.zeros + scales_at : nullptr;
    for (index_t ch = c0; ch < c1; ++ch) {
      const std::uint8_t* planes = tile + ch * K::bits * 128;
      APLQ_PREFETCH(planes + lut_prefetch_codes);
      for (int j = 0; j < chunk_codes / 4; ++j) {
        // Step j: block j / 2, low or high nibbles; plane p 128 bytes further.
        const std::uint8_t* b = planes + j / 2 * 32 + i0;
        const int shift = j % 2 * 4;
        ib u(int8_panel_bits<A>(b, shift, A{}));
        if constexpr (K::bits == 2)
          u += ib(int8_panel_bits<A>(b + 128, shift, A{})) << 1;
        u.store_aligned(
            reinterpret_cast<std::int32_t*>(codes + (ch - c0) * R * chunk_codes + j * R * 4));
      }
      const index_t g = ch / w.chunks_per_group;
      for (int i = 0; i < R; ++i) {
        float ai = 0.0f, ci = 0.0f;
        if (i < mr)
          lut_affine<K, A>(w.scales + scales_at, zeros, g * lut_tile_rows + i0 + i, ai, ci);
        a[(ch - c0) * R + i] = ai;
        c[(ch - c0) * R + i] = ci;
      }
    }
  };
  return int8_panels<A, false>(t0 * lut_tile_rows, std::min(w.rows, t1 * lut_tile_rows), w.rows,
                               act, y, fill);
}

template <class K, class A, class Scale>
status lut_run(const lut_weights<Scale>& w, const float* x, index_t n, float* y,
               const options& opt) noexcept {
  if (n <= 0)
    return status::invalid_shape;
  if (x == nullptr || y == nullptr)
    return status::null_pointer;
  if (opt.policy == compute::exact)
    return lut_exact_run<K, A>(w, x, n, y, opt);
  if (opt.policy != compute::int8)
    return status::invalid_argument;
  // Per calling thread, reused across calls (see run in kernel.hpp).
  thread_local activations act_buffer;
  thread_local std::vector<std::uint8_t> table_buffer;
  activations& act = act_buffer;
  std::vector<std::uint8_t>& tables = table_buffer;
  if (status s = prepare<K, A>(x, n, w.cols, w.groups, w.chunks_per_group, compute::int8, act);
      s != status::ok)
    return s;
  const index_t block = std::max<index_t>(1, w.tiles / 64);
  const index_t tasks = (w.tiles + block - 1) / block;
  // Tasks the panels could not take (no memory for their buffers) fall back to the tables, or
  // without memory for those either, to lut_tile_unbuffered.
  std::vector<unsigned char> left;
  if constexpr (int8_panel_shape<A>::rows > 0) {
    if (n >= lut_panel_min_batch<A, K::bits>) {
      try {
        left.assign(static_cast<std::size_t>(tasks), 0);
      } catch (const std::bad_alloc&) {
        left.assign(0, 0);
      }
      if (!left.empty()) {
        auto panel_task = [&](index_t b) noexcept {
          const index_t t0 = b * block, t1 = std::min(w.tiles, t0 + block);
          left[static_cast<std::size_t>(b)] = !lut_panel_task<K, A>(w, t0, t1, act, y);
        };
        thread_pool::global().run(opt.threads, tasks, panel_task);
        if (std::find(left.begin(), left.end(), 1) == left.end())
          return status::ok;
      }
    }
  }
  try {
    tables.resize(static_cast<std::size_t>(n * w.chunks * 256));
  } catch (const std::bad_alloc&) {
    if (left.empty())
      return status::out_of_memory; // nothing written yet
    auto unbuffered_task = [&](index_t b) noexcept {
      if (!left[static_cast<std::size_t>(b)])
        return;
      for (index_t t = b * block; t < std::min(w.tiles, (b + 1) * block); ++t)
        lut_tile_unbuffered<K, A>(w, t, act, y);
    };
    thread_pool::global().run(opt.threads, tasks, unbuffered_task);
    return status::ok;
  }
  build_tables<A>(act, tables.data());
  const std::uint8_t* tab = tables.data();
  auto task = [&](index_t b) noexcept {
    if (!left.empty() && !left[static_cast<std::size_t>(b)])
      return;
    const index_t t1 = std::min(w.tiles, (b + 1) * block);
    for (index_t t = b * block; t < t1; ++t)
      for (index_t k = 0; k < n; ++k)
        lut_tile<K, A>(w, t, act, tab, k, y);
  };
  thread_pool::global().run(opt.threads, tasks, task);
  return status::ok;
}

template <class Scale>
lut_weights<Scale> lut_weights_of(const Scale* scales, const Scale* zeros,
                                  const std::uint8_t* codes, int bits, int group, index_t rows,
                                  index_t cols) noexcept {
  const index_t chunks = (cols + chunk_codes - 1) / chunk_codes;
  const index_t cpg = group == whole_row ? chunks : group / chunk_codes;
  const index_t tiles = (rows + lut_tile_rows - 1) / lut_tile_rows;
  return {codes,
          scales,
          zeros,
          rows,
          cols,
          chunks,
          (chunks + cpg - 1) / cpg,
          cpg,
          tiles,
          chunks * bits * 128};
}

} // namespace detail

// Y [n][rows] = X [n][cols] W^T by table lookup on architecture A: the int8 policy (the default
// here) or the exact one (any other policy: status::invalid_argument). Results do not depend on
// the thread count.
template <class A, class F>
status gemm(const lut_view<F>& w, const float* x, index_t n, float* y,
            const options& opt = {1, compute::int8}) noexcept {
  if (status s = w.validate(); s != status::ok)
    return s;
  using S = typename F::scale_type;
  const auto k =
      detail::lut_weights_of<S>(w.scales, w.zeros, w.codes, F::bits, F::group, w.rows, w.cols);
  return detail::lut_run<detail::lut_format<F::bits, F::zero_point, S>, A>(k, x, n, y, opt);
}

template <class A, class F>
status gemv(const lut_view<F>& w, const float* x, float* y,
            const options& opt = {1, compute::int8}) noexcept {
  return gemm<A>(w, x, 1, y, opt);
}

// The same for a run-time format (what the dispatch library instantiates once per ISA), through
// visit_format like every run-time format: formats other than 1- and 2-bit ones give
// status::unsupported_format. The descriptor's layout is ignored.
template <class A>
status gemm(const any_lut_view& w, const float* x, index_t n, float* y,
            const options& opt = {1, compute::int8}) noexcept {
  format_desc d = w.format;
  d.layout = layout_kind::sequential;
  return visit_format(d, [&](auto f) -> status {
    using F = decltype(f);
    if constexpr (F::bits > 2) {
      return status::unsupported_format;
    } else {
      using S = const typename F::scale_type;
      const lut_view<F> v{static_cast<const std::uint8_t*>(w.codes), static_cast<S*>(w.scales),
                          static_cast<S*>(w.zeros), w.rows, w.cols};
      return gemm<A>(v, x, n, y, opt);
    }
  });
}

} // namespace cpu
} // namespace aplq
