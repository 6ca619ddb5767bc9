// SPDX-License-Identifier: Apache-2.0
// The GPU-tuned layout (aplq/cuda/tiled.hpp), on the host: for every format, packing from the
// sequential and the striped layout gives identical bytes; every code, scale and zero point reads
// back; the layout maps the padded matrix onto its bytes one to one, with padding zero; the
// kernel's way of reading it (a lane's 16-byte unit as four little-endian words of pairs, in the
// PTX ISA's fragment order of the mma's A operand) gives the packed codes; bad views and sources
// are rejected.
#include "testing.hpp"

#include <aplq/cuda/tiled.hpp>

#include <cstring>

namespace {

using namespace aplq;
using namespace aplq_test;

struct shape {
  index_t m, k;
};
// One row and column; rows off the 32-row tile; columns off every unit (16..128 codes) and
// group; several tiles and units.
constexpr shape shapes[] = {{1, 1}, {31, 100}, {33, 257}, {65, 1000}, {70, 4099}};

template <class F>
void check_format(const shape& sh, std::uint64_t salt) {
  using Seq = typename F::template with_layout<layout::sequential>;
  using Str = typename F::template with_layout<layout::cpu_striped>;
  rng r(salt);
  const std::vector<float> w = r.normal(sh.m * sh.k, F::zero_point ? 0.4f : 0.0f, 1.0f);
  qmatrix<Seq> q;
  REQUIRE(quantize<Seq>(w.data(), sh.m, sh.k, q) == status::ok);
  qmatrix<Str> qs;
  REQUIRE(repack<Str>(q.view(), qs) == status::ok);
  INFO(name_of<F>().c_str(), " M=", sh.m, " K=", sh.k, " ", seed_note());

  cuda::tiled_matrix<Seq> t, t2;
  REQUIRE(t.pack(q.view()) == status::ok);
  REQUIRE(t2.pack(qs.view()) == status::ok);
  const cuda::tiled_view<Seq> v = t.view();
  REQUIRE(t.codes().size() == static_cast<std::size_t>(v.code_bytes()));
  REQUIRE(t.scales().size() == static_cast<std::size_t>(v.scale_count()));
  REQUIRE(t.zeros().size() == (F::zero_point ? t.scales().size() : 0u));
  CHECK(t.codes() == t2.codes());
  CHECK(std::memcmp(t.scales().data(), t2.scales().data(),
                    t.scales().size() * sizeof(typename F::scale_type)) == 0);
  CHECK(std::memcmp(t.zeros().data(), t2.zeros().data(),
                    t.zeros().size() * sizeof(typename F::scale_type)) == 0);

  // Every code, scale and zero point reads back.
  const qmatrix_view<Seq> src = q.view();
  const index_t groups = src.groups();
  index_t wrong_codes = 0, wrong_scales = 0;
  for (index_t i = 0; i < sh.m; ++i) {
    for (index_t j = 0; j < sh.k; ++j)
      wrong_codes += t.code(i, j) != ref::get_code<Seq>(src.row(i), j);
    for (index_t g = 0; g < groups; ++g) {
      const auto at = static_cast<std::size_t>(i * groups + g);
      wrong_scales += std::memcmp(&src.scales[at], &t.scales()[v.scale_index(i, g)],
                                  sizeof(typename F::scale_type)) != 0;
      if (F::zero_point)
        wrong_scales += std::memcmp(&src.zeros[at], &t.zeros()[v.scale_index(i, g)],
                                    sizeof(typename F::scale_type)) != 0;
    }
  }
  CHECK(wrong_codes == 0);
  CHECK(wrong_scales == 0);

  // The padded matrix (whole tiles, whole units) covers every bit of the codes exactly once, and
  // padding codes, scales and zero points are zero.
  const index_t padded_rows = v.tiles() * cuda::tile_rows;
  const index_t padded_cols = v.units() * v.unit_codes;
  std::vector<std::uint8_t> covered(static_cast<std::size_t>(v.code_bytes()), 0);
  index_t overlaps = 0, nonzero_padding = 0;
  for (index_t i = 0; i < padded_rows; ++i)
    for (index_t j = 0; j < padded_cols; ++j) {
      const auto mask = static_cast<std::uint8_t>(F::code_max << v.shift_of(i, j));
      std::uint8_t& c = covered[static_cast<std::size_t>(v.byte_of(i, j))];
      overlaps += (c & mask) != 0;
      c |= mask;
      if (i >= sh.m || j >= sh.k)
        nonzero_padding += t.code(i, j) != 0;
    }
  index_t uncovered = 0;
  for (std::uint8_t c : covered)
    uncovered += c != 0xff;
  CHECK(overlaps == 0);
  CHECK(uncovered == 0);
  for (index_t i = sh.m; i < padded_rows; ++i)
    for (index_t g = 0; g < groups; ++g)
      nonzero_padding += to_float(t.scale(i, g)) != 0.0f || to_float(t.zero(i, g)) != 0.0f;
  CHECK(nonzero_padding == 0);

  // What the kernel reads: lane 4 g + t of a warp loads unit u of a tile as four little-endian
  // words. Pair p = (2 kb + mt) * 4 + r is pair s = p % (16 / Bits) of word p / (16 / Bits), its
  // codes at bits Bits * s and 16 + Bits * s; by the PTX ISA's fragment layout of
  // mma.m16n8k16's A operand, register r of the 16 x 16 block (mt, kb) holds row g + 8 (r % 2),
  // columns 2 t + 8 (r / 2) and the next one.
  constexpr int pairs_per_word = 16 / F::bits;
  index_t wrong_pairs = 0;
  for (index_t tile = 0; tile < v.tiles(); ++tile)
    for (index_t u = 0; u < v.units(); ++u)
      for (int lane = 0; lane < 32; ++lane) {
        const std::uint8_t* at =
            v.codes + ((tile * v.units() + u) * cuda::tile_rows + lane) * cuda::unit_bytes;
        std::uint32_t words[4];
        std::memcpy(words, at, sizeof words);
        const int g = lane / 4, tl = lane % 4;
        for (int kb = 0; kb < v.unit_codes / 16; ++kb)
          for (int mt = 0; mt < 2; ++mt)
            for (int reg = 0; reg < 4; ++reg) {
              const int p = (2 * kb + mt) * 4 + reg;
              const std::uint32_t word = words[p / pairs_per_word];
              const int s = p % pairs_per_word;
              const index_t row = tile * cuda::tile_rows + 16 * mt + g + 8 * (reg % 2);
              const index_t col = u * v.unit_codes + 16 * kb + 2 * tl + 8 * (reg / 2);
              const unsigned lo = (word >> (F::bits * s)) & F::code_max;
              const unsigned hi = (word >> (16 + F::bits * s)) & F::code_max;
              const bool inside = row < sh.m;
              wrong_pairs += lo != (inside && col < sh.k ? t.code(row, col) : 0u);
              wrong_pairs += hi != (inside && col + 1 < sh.k ? t.code(row, col + 1) : 0u);
            }
      }
  CHECK(wrong_pairs == 0);
}

} // namespace

TEST_CASE("tiled: every format packs exactly from either layout and reads back") {
  std::uint64_t salt = 1;
  for (const format_desc& d : all_formats()) {
    if (d.layout != layout_kind::sequential)
      continue;
    for (const shape& sh : shapes) {
      const status s = visit_format(d, [&](auto fmt) -> status {
        using F = decltype(fmt);
        if constexpr (std::is_same<typename F::layout_type, layout::sequential>::value)
          check_format<F>(sh, ++salt);
        return status::ok;
      });
      REQUIRE(s == status::ok);
    }
  }
}

TEST_CASE("tiled: sizes of the layout") {
  using F = format<4, 128, true, half>;
  const cuda::tiled_view<F> v{nullptr, nullptr, nullptr, 33, 100};
  CHECK(v.unit_codes == 32);
  CHECK(v.tiles() == 2);
  CHECK(v.units() == 4);
  CHECK(v.groups() == 1);
  CHECK(v.code_bytes() == 2 * 4 * 32 * 16);
  CHECK(v.scale_count() == 2 * 1 * 32);
  // Row 33 (tile 1, row 1: g = 1), column 70 (unit 2, column 6: t = 3): lane 7, pair 0, bit 0.
  CHECK(v.byte_of(33, 70) == ((1 * 4 + 2) * 32 + 7) * 16 + 0);
  CHECK(v.shift_of(33, 70) == 0);
  CHECK(v.byte_of(33, 71) == ((1 * 4 + 2) * 32 + 7) * 16 + 2); // bit 16
  CHECK(v.shift_of(33, 71) == 0);
  // Row 41 (g = 1, second 8 rows), column 78 (second 8 columns): pair 3, word 0, bit 12.
  CHECK(v.byte_of(41, 78) == ((1 * 4 + 2) * 32 + 7) * 16 + 1);
  CHECK(v.shift_of(41, 78) == 4);
  // Row 49 (second 16-row block), column 70: pair 4, word 1, bit 32.
  CHECK(v.byte_of(49, 70) == ((1 * 4 + 2) * 32 + 7) * 16 + 4);
  CHECK(v.shift_of(49, 70) == 0);
  CHECK(cuda::tiled_view<format<1, 32>>::unit_codes == 128);
  CHECK(cuda::tiled_view<format<8, 32>>::unit_codes == 16);
}

TEST_CASE("tiled: bad views and sources are rejected") {
  using F = format<2, 32, true>;
  rng r(99);
  const std::vector<float> w = r.normal(5 * 70, 0.4f, 1.0f);
  qmatrix<F> q;
  REQUIRE(quantize<F>(w.data(), 5, 70, q) == status::ok);
  cuda::tiled_matrix<F> t;
  REQUIRE(t.pack(q.view()) == status::ok);
  const cuda::tiled_view<F> good = t.view();
  CHECK(good.validate() == status::ok);

  cuda::tiled_view<F> v = good;
  v.rows = 0;
  CHECK(v.validate() == status::invalid_shape);
  v = good;
  v.cols = -1;
  CHECK(v.validate() == status::invalid_shape);
  v = good;
  v.zeros = nullptr;
  CHECK(v.validate() == status::null_pointer);
  v = good;
  v.codes = nullptr;
  CHECK(v.validate() == status::null_pointer);
  v = good;
  v.codes = good.codes + 4; // the kernels' 16-byte loads need aligned codes
  CHECK(v.validate() == status::invalid_argument);

  // A bad source leaves the matrix as it was.
  qmatrix_view<F> bad = q.view();
  bad.scales = nullptr;
  CHECK(t.pack(bad) == status::null_pointer);
  bad = q.view();
  bad.rows = -2;
  CHECK(t.pack(bad) == status::invalid_shape);
  CHECK(t.rows() == 5);
  CHECK(t.cols() == 70);
  CHECK(t.code(4, 69) == ref::get_code<F>(q.view().row(4), 69));
}
