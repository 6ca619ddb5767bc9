// SPDX-License-Identifier: Apache-2.0
// qmatrix<Format>: an owning, host-side quantized matrix (codes, scales, zero points in
// std::vector) that hands out the views kernels take. Allocation failure is a status, not an
// exception.
#pragma once

#include <new>
#include <vector>

#include "ref.hpp"
#include "view.hpp"

namespace aplq {

template <class Format>
class qmatrix {
public:
  using format_type = Format;
  using scale_type = typename Format::scale_type;

  qmatrix() = default;

  // Sizes the matrix for [rows, cols] with every code, scale and zero point zero.
  status reset(index_t rows, index_t cols) noexcept {
    if (rows <= 0 || cols <= 0)
      return status::invalid_shape;
    try {
      codes_.assign(static_cast<std::size_t>(rows * Format::row_bytes(cols)), 0);
      scales_.assign(static_cast<std::size_t>(rows * Format::groups(cols)), scale_type{});
      zeros_.assign(Format::zero_point ? scales_.size() : 0, scale_type{});
    } catch (const std::bad_alloc&) {
      *this = qmatrix{};
      return status::out_of_memory;
    }
    rows_ = rows;
    cols_ = cols;
    return status::ok;
  }

  index_t rows() const noexcept { return rows_; }
  index_t cols() const noexcept { return cols_; }
  bool empty() const noexcept { return rows_ == 0; }

  qmatrix_view<Format> view() const noexcept {
    return {codes_.data(), scales_.data(), Format::zero_point ? zeros_.data() : nullptr, rows_,
            cols_};
  }
  qmatrix_span<Format> span() noexcept {
    return {codes_.data(), scales_.data(), Format::zero_point ? zeros_.data() : nullptr, rows_,
            cols_};
  }

  std::vector<std::uint8_t>& codes() noexcept { return codes_; }
  const std::vector<std::uint8_t>& codes() const noexcept { return codes_; }
  std::vector<scale_type>& scales() noexcept { return scales_; }
  const std::vector<scale_type>& scales() const noexcept { return scales_; }
  std::vector<scale_type>& zeros() noexcept { return zeros_; }
  const std::vector<scale_type>& zeros() const noexcept { return zeros_; }

private:
  std::vector<std::uint8_t> codes_; // [rows][row_bytes]
  std::vector<scale_type> scales_;  // [rows][groups]
  std::vector<scale_type> zeros_;   // [rows][groups] or empty
  index_t rows_ = 0;
  index_t cols_ = 0;
};

// Repacks into a freshly sized matrix of another layout (bit-exact).
template <class To, class From>
status repack(const qmatrix_view<From>& in, qmatrix<To>& out) noexcept {
  if (status s = in.validate(); s != status::ok)
    return s;
  if (status s = out.reset(in.rows, in.cols); s != status::ok)
    return s;
  return ref::repack<To>(in, out.span());
}

} // namespace aplq
