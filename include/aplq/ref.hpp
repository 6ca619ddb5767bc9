// SPDX-License-Identifier: Apache-2.0
// aplq::ref, the scalar oracle every kernel is tested against: code access by layout index math,
// pack / unpack, dequantize, repack, and GEMV / GEMM accumulating in double. Written for clarity,
// one code at a time; it compiles for the host and the device.
#pragma once

#include "view.hpp"

namespace aplq {
namespace ref {

// Code j of a packed row.
template <class Format>
APLQ_HOST_DEVICE inline unsigned get_code(const std::uint8_t* row, index_t j) noexcept {
  using L = typename Format::layout_type;
  return (row[L::template byte_of<Format::bits>(j)] >> L::template shift_of<Format::bits>(j)) &
         Format::code_max;
}

// Sets code j of a packed row (u must be in [0, 2^bits)).
template <class Format>
APLQ_HOST_DEVICE inline void set_code(std::uint8_t* row, index_t j, unsigned u) noexcept {
  using L = typename Format::layout_type;
  std::uint8_t& byte = row[L::template byte_of<Format::bits>(j)];
  const int shift = L::template shift_of<Format::bits>(j);
  byte = static_cast<std::uint8_t>((byte & ~(Format::code_max << shift)) |
                                   ((u & Format::code_max) << shift));
}

// Packs codes [rows][cols] (one unsigned code per byte) into `packed` [rows][row_bytes].
// Padding bits are zero. A code >= 2^bits is out_of_range and leaves `packed` untouched.
template <class Format>
status pack(const std::uint8_t* codes, index_t rows, index_t cols, std::uint8_t* packed) noexcept {
  if (rows <= 0 || cols <= 0)
    return status::invalid_shape;
  if (codes == nullptr || packed == nullptr)
    return status::null_pointer;
  for (index_t i = 0; i < rows * cols; ++i)
    if (codes[i] > Format::code_max)
      return status::out_of_range;
  const index_t rb = Format::row_bytes(cols);
  for (index_t r = 0; r < rows; ++r) {
    std::uint8_t* row = packed + r * rb;
    for (index_t b = 0; b < rb; ++b)
      row[b] = 0;
    for (index_t j = 0; j < cols; ++j)
      set_code<Format>(row, j, codes[r * cols + j]);
  }
  return status::ok;
}

// Unpacks `packed` [rows][row_bytes] into codes [rows][cols], one code per byte.
template <class Format>
status unpack(const std::uint8_t* packed, index_t rows, index_t cols,
              std::uint8_t* codes) noexcept {
  if (rows <= 0 || cols <= 0)
    return status::invalid_shape;
  if (codes == nullptr || packed == nullptr)
    return status::null_pointer;
  const index_t rb = Format::row_bytes(cols);
  for (index_t r = 0; r < rows; ++r)
    for (index_t j = 0; j < cols; ++j)
      codes[r * cols + j] = static_cast<std::uint8_t>(get_code<Format>(packed + r * rb, j));
  return status::ok;
}

// The weight W[r][j] in double, straight from the definition in format.hpp.
template <class Format>
APLQ_HOST_DEVICE inline double weight(const qmatrix_view<Format>& w, index_t r,
                                      index_t j) noexcept {
  const index_t g = r * w.groups() + j / Format::group_size(w.cols);
  const double s = to_float(w.scales[g]);
  const unsigned u = get_code<Format>(w.row(r), j);
  if constexpr (Format::zero_point)
    return s * (static_cast<double>(u) - static_cast<double>(to_float(w.zeros[g])));
  else
    return s * Format::symmetric_value(u);
}

// out [rows][cols] = W, rounded once from double to float.
template <class Format>
status dequantize(const qmatrix_view<Format>& w, float* out) noexcept {
  if (status s = w.validate(); s != status::ok)
    return s;
  if (out == nullptr)
    return status::null_pointer;
  for (index_t r = 0; r < w.rows; ++r)
    for (index_t j = 0; j < w.cols; ++j)
      out[r * w.cols + j] = static_cast<float>(weight(w, r, j));
  return status::ok;
}

// y [rows] = W x [cols], in double.
template <class Format>
status gemv(const qmatrix_view<Format>& w, const float* x, double* y) noexcept {
  if (status s = w.validate(); s != status::ok)
    return s;
  if (x == nullptr || y == nullptr)
    return status::null_pointer;
  for (index_t r = 0; r < w.rows; ++r) {
    double sum = 0.0;
    for (index_t j = 0; j < w.cols; ++j)
      sum += weight(w, r, j) * static_cast<double>(x[j]);
    y[r] = sum;
  }
  return status::ok;
}

// Y [n][rows] = X [n][cols] W^T, in double.
template <class Format>
status gemm(const qmatrix_view<Format>& w, const float* x, index_t n, double* y) noexcept {
  if (n <= 0)
    return status::invalid_shape;
  if (x == nullptr || y == nullptr)
    return status::null_pointer;
  for (index_t i = 0; i < n; ++i)
    if (status s = gemv(w, x + i * w.cols, y + i * w.rows); s != status::ok)
      return s;
  return status::ok;
}

// Copies W into another layout of the same format (bit-exact): codes are moved one by one,
// scales and zero points copied. `out` must have the same shape.
template <class To, class From>
status repack(const qmatrix_view<From>& in, const qmatrix_span<To>& out) noexcept {
  static_assert(To::bits == From::bits && To::group == From::group &&
                    To::zero_point == From::zero_point &&
                    std::is_same<typename To::scale_type, typename From::scale_type>::value,
                "repack: formats may differ in layout only");
  if (status s = in.validate(); s != status::ok)
    return s;
  if (status s = as_const(out).validate(); s != status::ok)
    return s;
  if (in.rows != out.rows || in.cols != out.cols)
    return status::invalid_shape;
  for (index_t r = 0; r < in.rows; ++r) {
    std::uint8_t* dst = out.row(r);
    for (index_t b = 0; b < out.row_bytes(); ++b)
      dst[b] = 0;
    for (index_t j = 0; j < in.cols; ++j)
      set_code<To>(dst, j, get_code<From>(in.row(r), j));
  }
  const index_t n = in.rows * in.groups();
  for (index_t i = 0; i < n; ++i) {
    out.scales[i] = in.scales[i];
    if constexpr (To::zero_point)
      out.zeros[i] = in.zeros[i];
  }
  return status::ok;
}

} // namespace ref
} // namespace aplq
