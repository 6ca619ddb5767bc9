// SPDX-License-Identifier: Apache-2.0
// Memory layouts of packed codes within one row. A layout is a stateless type with constexpr,
// host+device index math: where code j of a row lives (byte_of, shift_of) and how many bytes a
// row of `cols` codes takes (row_bytes). Rows are stored one after another, row_bytes apart.
// The bit diagrams are in format.hpp.
#pragma once

#include "config.hpp"

namespace aplq {
namespace layout {

// The interchange layout (C ABI, NPZ, most checkpoints): codes packed in order, little-endian
// within a byte. Code j sits at bits [(j % per_byte) * Bits, +Bits) of byte j / per_byte.
struct sequential {
  static constexpr int id = 0;
  static constexpr const char* name = "seq";

  template <int Bits>
  APLQ_HOST_DEVICE static constexpr index_t row_bytes(index_t cols) noexcept {
    return (cols * Bits + 7) / 8;
  }
  template <int Bits>
  APLQ_HOST_DEVICE static constexpr index_t byte_of(index_t j) noexcept {
    return j / (8 / Bits);
  }
  template <int Bits>
  APLQ_HOST_DEVICE static constexpr int shift_of(index_t j) noexcept {
    return static_cast<int>(j % (8 / Bits)) * Bits;
  }
};

// A SIMD-friendly layout: a row is cut into stripes of Width bytes holding Width * per_byte
// codes. Code r of a stripe sits in byte r % Width at bits [(r / Width) * Bits, +Bits), so one
// shift and one mask of a Width-byte load yield Width consecutive codes ("bit planes"). Rows are
// padded to whole stripes; padding codes are zero. With Width = 32 one AVX2 load covers a stripe
// and every 32-code plane lies inside one scale group (groups are multiples of 32).
template <int Width>
struct striped {
  static_assert(Width == 16 || Width == 32 || Width == 64, "striped: Width must be 16, 32 or 64");
  static constexpr int id = Width == 32 ? 1 : (Width == 16 ? 2 : 3);
  static constexpr int width = Width;
  static constexpr const char* name = Width == 32 ? "s32" : (Width == 16 ? "s16" : "s64");

  template <int Bits>
  APLQ_HOST_DEVICE static constexpr index_t stripe_codes() noexcept {
    return index_t{Width} * (8 / Bits);
  }
  template <int Bits>
  APLQ_HOST_DEVICE static constexpr index_t row_bytes(index_t cols) noexcept {
    return (cols + stripe_codes<Bits>() - 1) / stripe_codes<Bits>() * Width;
  }
  template <int Bits>
  APLQ_HOST_DEVICE static constexpr index_t byte_of(index_t j) noexcept {
    return j / stripe_codes<Bits>() * Width + j % Width;
  }
  template <int Bits>
  APLQ_HOST_DEVICE static constexpr int shift_of(index_t j) noexcept {
    return static_cast<int>(j % stripe_codes<Bits>() / Width) * Bits;
  }
};

// The layout the CPU kernels are tuned for.
using cpu_striped = striped<32>;

} // namespace layout
} // namespace aplq
