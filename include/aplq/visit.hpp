// SPDX-License-Identifier: Apache-2.0
// The one place where run-time numbers (bits = 4, group = 128, ...) become a format type. The C
// ABI, the compiled dispatch library and the tools go through visit_format; kernels never branch
// on the bit width at run time.
#pragma once

#include <limits>

#include "format.hpp"
#include "status.hpp"

namespace aplq {

enum class scale_kind : int { f32 = 0, f16 = 1 };
enum class layout_kind : int { sequential = 0, cpu_striped = 1 };

// A format described at run time. group == 0 means whole_row.
struct format_desc {
  int bits = 4;
  int group = 128;
  bool zero_point = false;
  scale_kind scale = scale_kind::f32;
  layout_kind layout = layout_kind::sequential;
};

template <class Format>
constexpr format_desc describe() noexcept {
  return {Format::bits, Format::group, Format::zero_point,
          std::is_same<typename Format::scale_type, half>::value ? scale_kind::f16
                                                                 : scale_kind::f32,
          std::is_same<typename Format::layout_type, layout::sequential>::value
              ? layout_kind::sequential
              : layout_kind::cpu_striped};
}

// A short printable name: q4_g128_seq, q2_row_z_f16_s32, ...
struct format_name {
  char text[32];
  const char* c_str() const noexcept { return text; }
};

inline format_name name_of(const format_desc& d) noexcept {
  format_name n{};
  int i = 0;
  auto put = [&](const char* s) {
    while (*s && i < 31)
      n.text[i++] = *s++;
  };
  auto put_int = [&](int v) {
    char digits[12];
    int k = 0;
    do {
      digits[k++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v > 0 && k < 11);
    while (k > 0 && i < 31)
      n.text[i++] = digits[--k];
  };
  put("q");
  put_int(d.bits);
  if (d.group == whole_row) {
    put("_row");
  } else {
    put("_g");
    put_int(d.group);
  }
  if (d.zero_point)
    put("_z");
  if (d.scale == scale_kind::f16)
    put("_f16");
  put(d.layout == layout_kind::sequential ? "_seq" : "_s32");
  n.text[i] = '\0';
  return n;
}

template <class Format>
format_name name_of() noexcept {
  return name_of(describe<Format>());
}

namespace detail {

template <int B, int G, bool Z, class S, class Fn>
status visit_layout(layout_kind l, Fn&& fn) {
  switch (l) {
  case layout_kind::sequential: return fn(format<B, G, Z, S, layout::sequential>{});
  case layout_kind::cpu_striped: return fn(format<B, G, Z, S, layout::cpu_striped>{});
  }
  return status::unsupported_format;
}

template <int B, int G, class Fn>
status visit_options(const format_desc& d, Fn&& fn) {
  const bool f16 = d.scale == scale_kind::f16;
  if (d.scale != scale_kind::f32 && d.scale != scale_kind::f16)
    return status::unsupported_format;
  if (d.zero_point)
    return f16 ? visit_layout<B, G, true, half>(d.layout, fn)
               : visit_layout<B, G, true, float>(d.layout, fn);
  return f16 ? visit_layout<B, G, false, half>(d.layout, fn)
             : visit_layout<B, G, false, float>(d.layout, fn);
}

template <int B, class Fn>
status visit_group(const format_desc& d, Fn&& fn) {
  switch (d.group) {
  case whole_row: return visit_options<B, whole_row>(d, fn);
  case 32: return visit_options<B, 32>(d, fn);
  case 64: return visit_options<B, 64>(d, fn);
  case 128: return visit_options<B, 128>(d, fn);
  case 256: return visit_options<B, 256>(d, fn);
  default: return status::unsupported_format;
  }
}

} // namespace detail

// Calls fn(Format{}) with the format type that `d` describes and returns what fn returns, or
// status::unsupported_format when no such format exists. fn must return aplq::status.
template <class Fn>
status visit_format(const format_desc& d, Fn&& fn) {
  switch (d.bits) {
  case 1: return detail::visit_group<1>(d, fn);
  case 2: return detail::visit_group<2>(d, fn);
  case 4: return detail::visit_group<4>(d, fn);
  case 8: return detail::visit_group<8>(d, fn);
  default: return status::unsupported_format;
  }
}

// Bytes a [rows, cols] matrix takes in each of its three arrays.
struct storage_sizes {
  index_t row_bytes = 0;    // codes of one row
  index_t groups = 0;       // scales (and zero points) of one row
  index_t codes_bytes = 0;  // rows * row_bytes
  index_t scales_bytes = 0; // rows * groups * sizeof(scale)
  index_t zeros_bytes = 0;  // scales_bytes for zero-point formats, else 0
};

// The sizes of a [rows, cols] matrix of Format: invalid_shape when a size is not positive or a
// byte count overflows index_t.
template <class Format>
constexpr status storage_of(index_t rows, index_t cols, storage_sizes& s) noexcept {
  constexpr index_t max = std::numeric_limits<index_t>::max();
  constexpr index_t scale_bytes = static_cast<index_t>(sizeof(typename Format::scale_type));
  if (rows <= 0 || cols <= 0 || cols > max / 8)
    return status::invalid_shape;
  s.row_bytes = Format::row_bytes(cols);
  s.groups = Format::groups(cols);
  if (rows > max / s.row_bytes || rows > max / (s.groups * scale_bytes))
    return status::invalid_shape;
  s.codes_bytes = rows * s.row_bytes;
  s.scales_bytes = rows * s.groups * scale_bytes;
  s.zeros_bytes = Format::zero_point ? s.scales_bytes : 0;
  return status::ok;
}

inline status storage_of(const format_desc& d, index_t rows, index_t cols,
                         storage_sizes& s) noexcept {
  return visit_format(d, [&](auto f) { return storage_of<decltype(f)>(rows, cols, s); });
}

// A type-erased quantized matrix: what crosses the C ABI and the compiled dispatch library.
struct any_qmatrix_view {
  format_desc format;
  const void* codes = nullptr;
  const void* scales = nullptr;
  const void* zeros = nullptr;
  index_t rows = 0;
  index_t cols = 0;
};

} // namespace aplq
