// SPDX-License-Identifier: Apache-2.0
// Quantization of float weights into any format. A quantizer is a customization point: it picks
// the scale (and zero point) of one group; aplq then stores them in the format's scale type and
// rounds every weight to the nearest code under the *stored* values. rtn_quantizer is plain
// round-to-nearest; a scale search plugs in by providing the same call operator.
#pragma once

#include <cmath>

#include "qmatrix.hpp"
#include "ref.hpp"

namespace aplq {

struct group_params {
  float scale = 0.0f;
  float zero = 0.0f; // zero-point formats only
};

// Round to nearest with per-group absmax (symmetric) or min/max (zero point):
//  - symmetric, Bits >= 2: the element m of largest magnitude maps to the most negative code,
//    s = m / -2^(Bits-1), so the whole signed range [-2^(Bits-1), 2^(Bits-1)) is used (the
//    opposite extreme clamps by at most s);
//  - symmetric, Bits == 1: codes are signs and s = mean |w|, the scale minimising the squared
//    error of sign(w) * s;
//  - zero point: the range [min(w, 0), max(w, 0)] is split into 2^Bits - 1 steps, and z is the
//    code of 0.0, so zero is represented exactly.
struct rtn_quantizer {
  template <class Format>
  group_params operator()(Format, const float* w, index_t n) const noexcept {
    group_params p;
    if constexpr (Format::zero_point) {
      float lo = 0.0f, hi = 0.0f;
      for (index_t i = 0; i < n; ++i) {
        lo = std::fmin(lo, w[i]);
        hi = std::fmax(hi, w[i]);
      }
      p.scale = (hi - lo) / static_cast<float>(Format::code_max);
      p.zero = p.scale > 0.0f ? std::fmin(std::fmax(std::rint(-lo / p.scale), 0.0f),
                                          static_cast<float>(Format::code_max))
                              : 0.0f;
    } else if constexpr (Format::bits == 1) {
      double sum = 0.0;
      for (index_t i = 0; i < n; ++i)
        sum += std::fabs(w[i]);
      p.scale = static_cast<float>(sum / static_cast<double>(n));
    } else {
      float m = 0.0f;
      for (index_t i = 0; i < n; ++i)
        if (std::fabs(w[i]) > std::fabs(m))
          m = w[i];
      p.scale = m / -static_cast<float>(1 << (Format::bits - 1));
    }
    return p;
  }
};

namespace detail {

// The nearest code to w under stored scale s and zero point z. w / s is taken in double: in f32
// a quotient just past a half (-80.500004 rounding to -80.5, then to even -80) makes rint pick the
// farther of two codes.
template <class Format>
inline unsigned nearest_code(float w, float s, float z) noexcept {
  if constexpr (!Format::zero_point && Format::bits == 1) {
    return w >= 0.0f ? (s >= 0.0f ? 1u : 0u) : (s >= 0.0f ? 0u : 1u);
  } else {
    const double offset = Format::zero_point ? z : static_cast<double>(1 << (Format::bits - 1));
    const double q =
        s != 0.0f ? std::rint(static_cast<double>(w) / static_cast<double>(s)) + offset : offset;
    return static_cast<unsigned>(std::fmin(std::fmax(q, 0.0), double(Format::code_max)));
  }
}

} // namespace detail

// Quantizes w [rows][cols] into `out`, which must already have that shape. NaN or Inf anywhere
// in w is status::non_finite, checked before anything is written; a scale that does not fit the
// scale type (f16 beyond 65504) is status::out_of_range.
template <class Format, class Quantizer = rtn_quantizer>
status quantize(const float* w, index_t rows, index_t cols, const qmatrix_span<Format>& out,
                const Quantizer& quantizer = {}) noexcept {
  if (rows <= 0 || cols <= 0)
    return status::invalid_shape;
  if (w == nullptr)
    return status::null_pointer;
  if (status s = as_const(out).validate(); s != status::ok)
    return s;
  if (out.rows != rows || out.cols != cols)
    return status::invalid_shape;
  for (index_t i = 0; i < rows * cols; ++i)
    if (!std::isfinite(w[i]))
      return status::non_finite;

  using scale_type = typename Format::scale_type;
  const index_t gs = Format::group_size(cols);
  const index_t groups = Format::groups(cols);
  for (index_t r = 0; r < rows; ++r) {
    const float* wr = w + r * cols;
    std::uint8_t* row = out.row(r);
    for (index_t b = 0; b < out.row_bytes(); ++b)
      row[b] = 0;
    for (index_t g = 0; g < groups; ++g) {
      const index_t begin = g * gs;
      const index_t n = cols - begin < gs ? cols - begin : gs;
      const group_params p = quantizer(Format{}, wr + begin, n);
      const scale_type s = from_float<scale_type>(p.scale);
      const scale_type z = from_float<scale_type>(p.zero);
      if (!std::isfinite(to_float(s)) || !std::isfinite(to_float(z)))
        return status::out_of_range;
      out.scales[r * groups + g] = s;
      if constexpr (Format::zero_point)
        out.zeros[r * groups + g] = z;
      for (index_t j = begin; j < begin + n; ++j)
        ref::set_code<Format>(row, j,
                              detail::nearest_code<Format>(wr[j], to_float(s), to_float(z)));
    }
  }
  return status::ok;
}

// Sizes `out` for [rows, cols] and quantizes into it.
template <class Format, class Quantizer = rtn_quantizer>
status quantize(const float* w, index_t rows, index_t cols, qmatrix<Format>& out,
                const Quantizer& quantizer = {}) noexcept {
  if (rows <= 0 || cols <= 0)
    return status::invalid_shape;
  if (status s = out.reset(rows, cols); s != status::ok)
    return s;
  return quantize<Format>(w, rows, cols, out.span(), quantizer);
}

} // namespace aplq
