// SPDX-License-Identifier: Apache-2.0
// What the CUDA test files share: the run's seed, device copies of host arrays at a chosen byte
// offset, a stream, activation type names, and the walk over the formats and activation types.
#pragma once

#include <aplq/half.hpp>
#include <aplq/visit.hpp>

#include <doctest/doctest.h>

#include <thrust/copy.h>
#include <thrust/device_vector.h>

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace aplq {
namespace cuda_test {

// The run's base seed: APLQ_TEST_SEED if set, else fresh from the OS (as tests/testing.hpp,
// which .cu files do not include: it pulls in xsimd).
inline std::uint64_t base_seed() {
  static const std::uint64_t seed = [] {
    if (const char* s = std::getenv("APLQ_TEST_SEED"))
      return static_cast<std::uint64_t>(std::strtoull(s, nullptr, 10));
    return (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  }();
  return seed;
}

inline std::string seed_note() { return "APLQ_TEST_SEED=" + std::to_string(base_seed()); }

// A host array copied to the device (as bytes, so f16 scales need no device-side type), at
// `offset` bytes past a 256-byte aligned allocation.
struct device_array {
  thrust::device_vector<std::uint8_t> bytes;
  std::size_t offset = 0;
  template <class T>
  device_array(const std::vector<T>& v, std::size_t off) : bytes(off + v.size() * sizeof(T) + 1) {
    offset = off;
    if (!v.empty())
      thrust::copy(reinterpret_cast<const std::uint8_t*>(v.data()),
                   reinterpret_cast<const std::uint8_t*>(v.data()) + v.size() * sizeof(T),
                   bytes.begin() + static_cast<std::ptrdiff_t>(off));
  }
  template <class T>
  const T* get() const {
    return reinterpret_cast<const T*>(thrust::raw_pointer_cast(bytes.data()) + offset);
  }
};

struct stream_holder {
  cudaStream_t s = nullptr;
  stream_holder() { REQUIRE(cudaStreamCreate(&s) == cudaSuccess); }
  ~stream_holder() { cudaStreamDestroy(s); }
};

template <class X>
const char* activation_name() {
  return std::is_same<X, float>::value        ? "f32"
         : std::is_same<X, aplq::half>::value ? "f16"
                                              : "bf16";
}

// Calls check(F{}, X{}, salt) for every sequential format F of `bits` (groups 32/64/128/256/row
// x zero point x f32/f16 scales) with X = float activations, and at group 128 (with and without
// zero points, both scale types) with X = aplq::half and aplq::bfloat16 too: the activation load
// is the only part that changes. Each call gets its own salt, counted up from `salt`.
template <class Check>
void for_each_case(int bits, std::uint64_t salt, Check&& check) {
  for (int group : {32, 64, 128, 256, whole_row})
    for (bool zp : {false, true})
      for (auto sc : {scale_kind::f32, scale_kind::f16}) {
        const format_desc d{bits, group, zp, sc, layout_kind::sequential};
        const status s = visit_format(d, [&](auto fmt) -> status {
          using F = decltype(fmt);
          if constexpr (std::is_same<typename F::layout_type, layout::sequential>::value) {
            check(fmt, float{}, ++salt);
            if constexpr (F::group == 128) {
              check(fmt, aplq::half{}, ++salt);
              check(fmt, aplq::bfloat16{}, ++salt);
            }
          }
          return status::ok;
        });
        REQUIRE(s == status::ok);
      }
}

} // namespace cuda_test
} // namespace aplq
