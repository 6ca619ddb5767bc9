// SPDX-License-Identifier: Apache-2.0
// The GPU-tuned layout (aplq/cuda/tiled.hpp), on the host: for every format, packing from the
// sequential and the striped layout gives identical bytes; every code, scale and zero point reads
// back; the layout maps the padded matrix onto its bytes one to one, with padding zero; the
// kernels' ways of reading it (a lane's 16-byte unit as four little-endian words, and the GEMM's
// 16 codes from one start byte) give the packed codes; bad views and sources are rejected.
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
      const auto mask = static_cast<std::uint8_t>(F::code_max << v.shift_of(j));
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

  // What the kernels read. gemv_tiled: lane i loads unit u of row 32 * tile + i as four
  // little-endian words, code c of the unit at bits (c % (32 / Bits)) * Bits of word
  // c / (32 / Bits). gemm_tiles: codes j0 .. j0 + 15 (j0 a multiple of 16) are the 2 * Bits
  // bytes from byte_of(r, j0) on, per_byte codes a byte.
  constexpr int per_word = 32 / F::bits;
  index_t wrong_unit = 0, wrong_run = 0;
  for (index_t i = 0; i < sh.m; ++i)
    for (index_t u = 0; u < v.units(); ++u) {
      const index_t tile = i / cuda::tile_rows, lane = i % cuda::tile_rows;
      const std::uint8_t* at =
          v.codes + ((tile * v.units() + u) * cuda::tile_rows + lane) * cuda::unit_bytes;
      std::uint32_t words[4];
      std::memcpy(words, at, sizeof words);
      for (index_t c = 0; c < v.unit_codes && u * v.unit_codes + c < sh.k; ++c) {
        const unsigned code = (words[c / per_word] >> (c % per_word * F::bits)) & F::code_max;
        wrong_unit += code != t.code(i, u * v.unit_codes + c);
      }
    }
  for (index_t i = 0; i < sh.m; ++i)
    for (index_t j0 = 0; j0 < sh.k; j0 += 16) {
      const std::uint8_t* b = v.codes + v.byte_of(i, j0);
      for (index_t j = j0; j < j0 + 16 && j < sh.k; ++j) {
        const unsigned code =
            (b[(j - j0) / F::per_byte] >> ((j - j0) % F::per_byte * F::bits)) & F::code_max;
        wrong_run += code != t.code(i, j);
      }
    }
  CHECK(wrong_unit == 0);
  CHECK(wrong_run == 0);
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
  // Row 33 (tile 1, lane 1), column 70 (unit 2, code 6: byte 3, high nibble).
  CHECK(v.byte_of(33, 70) == ((1 * 4 + 2) * 32 + 1) * 16 + 3);
  CHECK(v.shift_of(70) == 0);
  CHECK(v.shift_of(71) == 4);
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
