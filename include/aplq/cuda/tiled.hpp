// SPDX-License-Identifier: Apache-2.0
// The GPU-tuned layout ("tiled") and its exact repack. Plain C++ with host+device index math, so
// the repack runs and is tested on any machine; the kernel that reads it is in tiled_gemm.cuh.
//
// Rows are grouped into tiles of 32 and a row of K codes is cut into units of U = 128 / Bits
// codes (1 bit: 128, 2: 64, 4: 32, 8: 16). A unit of a tile, 32 rows x U codes, is 512 bytes:
// 16 bytes for each lane of a warp, in the order the tensor cores' mma.m16n8k16 takes its A
// operand (rows x columns) in registers:
//
//   codes  [tile][unit][lane 0..31][16 bytes]
//   scales [tile][group][row 0..31] and zeros [tile][group][row 0..31], in the format's type.
//
// The unit's rows form two 16-row tiles mt (rows 16 mt ..) and its codes U / 16 blocks kb of 16
// columns. Lane 4 g + t holds, for each (kb, mt), four pairs r = 0..3: the codes of row
// 16 mt + g + 8 (r % 2), columns 16 kb + 2 t + 8 (r / 2) and the one after it. Pair
// p = (2 kb + mt) * 4 + r is pair s = p % (16 / Bits) of the lane's 32-bit word p / (16 / Bits):
// its first code at bit Bits * s, its second at bit 16 + Bits * s. So one shift and mask of a word
// put a pair in the two halves of a register, and a warp's 16-byte loads of a unit are 512
// consecutive bytes. Rows past the end of the matrix are zero codes with zero scales and zero
// points; codes past the end of a row are zero. The repack is exact: code(), scale() and zero()
// read back what pack() was given.
#pragma once

#include <cstdint>
#include <exception>
#include <type_traits>
#include <vector>

#include "../ref.hpp"
#include "../view.hpp"

namespace aplq {
namespace cuda {

inline constexpr index_t tile_rows = 32;  // rows per tile: one per lane of a warp
inline constexpr index_t unit_bytes = 16; // bytes of one row's unit: one 16-byte load

// Non-owning view of a tiled matrix, what the kernels take (device pointers there). The codes
// must be 16-byte aligned (cudaMalloc gives 256).
template <class F>
struct tiled_view {
  static_assert(is_format<F>::value, "tiled_view: F must be an aplq::format");
  using format_type = F;
  using scale_type = typename F::scale_type;
  static constexpr index_t unit_codes = unit_bytes * F::per_byte;

  const std::uint8_t* codes = nullptr; // [code_bytes()]
  const scale_type* scales = nullptr;  // [scale_count()]
  const scale_type* zeros = nullptr;   // [scale_count()], zero-point formats only
  index_t rows = 0;
  index_t cols = 0;

  APLQ_HOST_DEVICE constexpr index_t tiles() const noexcept {
    return (rows + tile_rows - 1) / tile_rows;
  }
  APLQ_HOST_DEVICE constexpr index_t units() const noexcept {
    return (cols + unit_codes - 1) / unit_codes;
  }
  APLQ_HOST_DEVICE constexpr index_t groups() const noexcept { return F::groups(cols); }
  APLQ_HOST_DEVICE constexpr index_t code_bytes() const noexcept {
    return tiles() * units() * tile_rows * unit_bytes;
  }
  // Scales (and zero points), padding rows included.
  APLQ_HOST_DEVICE constexpr index_t scale_count() const noexcept {
    return tiles() * groups() * tile_rows;
  }

  // Where code (r, j) lives: the byte's index in `codes` and the shift within it.
  APLQ_HOST_DEVICE constexpr index_t byte_of(index_t r, index_t j) const noexcept {
    const index_t lane_bytes =
        (r / tile_rows * units() + j / unit_codes) * tile_rows + lane_of(r, j);
    return lane_bytes * unit_bytes + bit_of(r, j) / 8;
  }
  APLQ_HOST_DEVICE static constexpr int shift_of(index_t r, index_t j) noexcept {
    return static_cast<int>(bit_of(r, j) % 8);
  }
  // The lane of a warp that holds code (r, j) of its unit, and the code's bit among the lane's 128.
  APLQ_HOST_DEVICE static constexpr index_t lane_of(index_t r, index_t j) noexcept {
    return 4 * (r % 8) + j % 8 / 2;
  }
  APLQ_HOST_DEVICE static constexpr index_t bit_of(index_t r, index_t j) noexcept {
    const index_t row = r % tile_rows, col = j % unit_codes;
    const index_t pair = ((col / 16 * 2 + row / 16) * 4 + row % 16 / 8 + col % 16 / 8 * 2);
    constexpr index_t pairs_per_word = 16 / F::bits;
    return pair / pairs_per_word * 32 + pair % pairs_per_word * F::bits + col % 2 * 16;
  }
  // Index of the scale (and zero point) of row r, group g.
  APLQ_HOST_DEVICE constexpr index_t scale_index(index_t r, index_t g) const noexcept {
    return (r / tile_rows * groups() + g) * tile_rows + r % tile_rows;
  }

  // The checks every entry point makes: sizes, pointers, and 16-byte aligned codes.
  APLQ_HOST_DEVICE status validate() const noexcept {
    if (rows <= 0 || cols <= 0)
      return status::invalid_shape;
    if (codes == nullptr || scales == nullptr || (F::zero_point && zeros == nullptr))
      return status::null_pointer;
    if (reinterpret_cast<std::uintptr_t>(codes) % unit_bytes != 0)
      return status::invalid_argument;
    return status::ok;
  }
};

// A matrix repacked into the tiled layout, on the host: pack() it from a matrix of the same bits,
// group, zero point and scale type in any layout, copy codes(), scales() and zeros() to the
// device, and hand the kernels a tiled_view of the device copies (view_of).
template <class F>
class tiled_matrix {
public:
  using format_type = F;
  using scale_type = typename F::scale_type;

  template <class G>
  status pack(const qmatrix_view<G>& w) noexcept {
    static_assert(G::bits == F::bits && G::group == F::group && G::zero_point == F::zero_point &&
                      std::is_same<typename G::scale_type, scale_type>::value,
                  "tiled_matrix::pack: the source must differ from F in its layout only");
    if (status s = w.validate(); s != status::ok)
      return s;
    const tiled_view<F> shape{nullptr, nullptr, nullptr, w.rows, w.cols};
    try {
      codes_.assign(static_cast<std::size_t>(shape.code_bytes()), 0);
      scales_.assign(static_cast<std::size_t>(shape.scale_count()), scale_type{});
      zeros_.assign(F::zero_point ? scales_.size() : 0, scale_type{});
    } catch (const std::exception&) { // bad_alloc, or length_error for an absurd shape
      *this = tiled_matrix{};
      return status::out_of_memory;
    }
    rows_ = w.rows;
    cols_ = w.cols;
    const index_t groups = shape.groups();
    for (index_t r = 0; r < w.rows; ++r) {
      const std::uint8_t* row = w.row(r);
      for (index_t j = 0; j < w.cols; ++j)
        codes_[static_cast<std::size_t>(shape.byte_of(r, j))] |=
            static_cast<std::uint8_t>(ref::get_code<G>(row, j) << shape.shift_of(r, j));
      for (index_t g = 0; g < groups; ++g) {
        const auto at = static_cast<std::size_t>(shape.scale_index(r, g));
        scales_[at] = w.scales[r * groups + g];
        if constexpr (F::zero_point)
          zeros_[at] = w.zeros[r * groups + g];
      }
    }
    return status::ok;
  }

  // What was packed: code (r, j), scale and zero point of (r, g).
  unsigned code(index_t r, index_t j) const noexcept {
    const tiled_view<F> v = view();
    return (codes_[static_cast<std::size_t>(v.byte_of(r, j))] >> v.shift_of(r, j)) & F::code_max;
  }
  scale_type scale(index_t r, index_t g) const noexcept {
    return scales_[static_cast<std::size_t>(view().scale_index(r, g))];
  }
  scale_type zero(index_t r, index_t g) const noexcept {
    return F::zero_point ? zeros_[static_cast<std::size_t>(view().scale_index(r, g))]
                         : scale_type{};
  }

  // A view of the host arrays, or of device copies of them.
  tiled_view<F> view() const noexcept {
    return view_of(codes_.data(), scales_.data(), F::zero_point ? zeros_.data() : nullptr);
  }
  tiled_view<F> view_of(const std::uint8_t* codes, const scale_type* scales,
                        const scale_type* zeros) const noexcept {
    return {codes, scales, zeros, rows_, cols_};
  }

  index_t rows() const noexcept { return rows_; }
  index_t cols() const noexcept { return cols_; }
  const std::vector<std::uint8_t>& codes() const noexcept { return codes_; }
  const std::vector<scale_type>& scales() const noexcept { return scales_; }
  const std::vector<scale_type>& zeros() const noexcept { return zeros_; }

private:
  std::vector<std::uint8_t> codes_; // [tiles][units][32][16]
  std::vector<scale_type> scales_;  // [tiles][groups][32]
  std::vector<scale_type> zeros_;   // [tiles][groups][32] or empty
  index_t rows_ = 0;
  index_t cols_ = 0;
};

} // namespace cuda
} // namespace aplq
