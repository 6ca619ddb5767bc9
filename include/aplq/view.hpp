// SPDX-License-Identifier: Apache-2.0
// Non-owning views of a quantized matrix W [rows, cols]: the codes (rows * row_bytes bytes), the
// scales and, for zero-point formats, the zero points ([rows][groups] each). Views are trivially
// copyable values that kernels on the host and on the device take by value.
#pragma once

#include "format.hpp"
#include "status.hpp"

namespace aplq {

template <class Format, class Byte, class Scale>
struct basic_qmatrix_view {
  static_assert(is_format<Format>::value, "basic_qmatrix_view: Format must be an aplq::format");
  using format_type = Format;

  Byte* codes = nullptr;   // [rows][row_bytes()]
  Scale* scales = nullptr; // [rows][groups()]
  Scale* zeros = nullptr;  // [rows][groups()], zero-point formats only
  index_t rows = 0;
  index_t cols = 0;

  APLQ_HOST_DEVICE constexpr index_t row_bytes() const noexcept { return Format::row_bytes(cols); }
  APLQ_HOST_DEVICE constexpr index_t groups() const noexcept { return Format::groups(cols); }
  APLQ_HOST_DEVICE constexpr Byte* row(index_t r) const noexcept { return codes + r * row_bytes(); }

  // Cheap checks every public entry point makes before touching memory.
  APLQ_HOST_DEVICE constexpr status validate() const noexcept {
    if (rows <= 0 || cols <= 0)
      return status::invalid_shape;
    if (codes == nullptr || scales == nullptr || (Format::zero_point && zeros == nullptr))
      return status::null_pointer;
    return status::ok;
  }
};

// Read-only view, what kernels take.
template <class Format>
using qmatrix_view =
    basic_qmatrix_view<Format, const std::uint8_t, const typename Format::scale_type>;
// Writable view, what quantize and repack fill.
template <class Format>
using qmatrix_span = basic_qmatrix_view<Format, std::uint8_t, typename Format::scale_type>;

template <class Format>
APLQ_HOST_DEVICE constexpr qmatrix_view<Format> as_const(const qmatrix_span<Format>& s) noexcept {
  return {s.codes, s.scales, s.zeros, s.rows, s.cols};
}

} // namespace aplq
