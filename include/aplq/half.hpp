// SPDX-License-Identifier: Apache-2.0
// IEEE 754 binary16 storage type for scales and zero points (and bfloat16 for GPU activations).
// Conversions are plain bit manipulation (round to nearest even, subnormals, Inf and NaN kept) so
// that they give the same bits on the host, on the device and in the oracle; kernels may use F16C
// or CUDA intrinsics, which round the same way.
#pragma once

#include <cstring>

#include "config.hpp"

namespace aplq {

struct half {
  std::uint16_t bits = 0;
};

APLQ_HOST_DEVICE inline float half_to_float(half h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h.bits & 0x8000u) << 16;
  const std::uint32_t exponent = (h.bits >> 10) & 0x1fu;
  const std::uint32_t mantissa = h.bits & 0x3ffu;
  std::uint32_t out;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in binary32.
    float magnitude = static_cast<float>(mantissa) * (1.0f / 16777216.0f);
    std::memcpy(&out, &magnitude, sizeof out);
    out |= sign;
  } else if (exponent == 31) {
    out = sign | 0x7f800000u | (mantissa << 13);
  } else {
    out = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  }
  float f;
  std::memcpy(&f, &out, sizeof f);
  return f;
}

APLQ_HOST_DEVICE inline half float_to_half(float f) noexcept {
  std::uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) { // Inf stays Inf, NaN stays a (quiet) NaN
    const std::uint16_t nan_bits = ax > 0x7f800000u ? (0x200u | ((ax >> 13) & 0x3ffu)) : 0u;
    return half{static_cast<std::uint16_t>(sign | 0x7c00u | nan_bits)};
  }
  if (ax >= 0x477ff000u) // 65520 and above round to Inf
    return half{static_cast<std::uint16_t>(sign | 0x7c00u)};
  if (ax < 0x38800000u) { // below 2^-14: a subnormal half (or zero)
    const std::uint32_t e = ax >> 23;
    const std::uint32_t shift = 126u - e; // value * 2^24 == m >> shift
    if (shift > 24u)
      return half{sign};
    const std::uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    std::uint32_t r = m >> shift;
    const std::uint32_t rem = m & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (r & 1u)))
      ++r;
    return half{static_cast<std::uint16_t>(sign | r)};
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits to nearest even;
  // a carry out of the mantissa correctly bumps the exponent.
  const std::uint32_t rounded = ax - (112u << 23) + 0xfffu + ((ax >> 13) & 1u);
  return half{static_cast<std::uint16_t>(sign | (rounded >> 13))};
}

// bfloat16, the upper half of a binary32 (GPU activations): widening is exact, narrowing rounds
// to nearest even, Inf stays Inf and NaN stays a quiet NaN.
struct bfloat16 {
  std::uint16_t bits = 0;
};

APLQ_HOST_DEVICE inline float bfloat16_to_float(bfloat16 b) noexcept {
  const std::uint32_t x = static_cast<std::uint32_t>(b.bits) << 16;
  float f;
  std::memcpy(&f, &x, sizeof f);
  return f;
}

APLQ_HOST_DEVICE inline bfloat16 float_to_bfloat16(float f) noexcept {
  std::uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  if ((x & 0x7fffffffu) > 0x7f800000u)
    return bfloat16{static_cast<std::uint16_t>((x >> 16) | 0x40u)};
  // A carry out of the mantissa bumps the exponent, up to Inf: round to nearest even.
  x += 0x7fffu + ((x >> 16) & 1u);
  return bfloat16{static_cast<std::uint16_t>(x >> 16)};
}

// Uniform access for the scale and activation storage types.
APLQ_HOST_DEVICE inline float to_float(float v) noexcept { return v; }
APLQ_HOST_DEVICE inline float to_float(half v) noexcept { return half_to_float(v); }
APLQ_HOST_DEVICE inline float to_float(bfloat16 v) noexcept { return bfloat16_to_float(v); }

template <class Scale>
APLQ_HOST_DEVICE inline Scale from_float(float v) noexcept {
  if constexpr (sizeof(Scale) == sizeof(float))
    return v;
  else
    return float_to_half(v);
}

} // namespace aplq
