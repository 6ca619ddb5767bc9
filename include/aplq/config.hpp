// SPDX-License-Identifier: Apache-2.0
// Configuration macros shared by every aplq header. They make the core headers compile unchanged
// under g++ (host only) and nvcc (host and device), and hold the debug-only assertion.
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define APLQ_HOST_DEVICE __host__ __device__
#define APLQ_DEVICE_CODE 1
#else
#define APLQ_HOST_DEVICE
#endif

#if defined(_MSC_VER)
#define APLQ_FORCE_INLINE __forceinline
#else
#define APLQ_FORCE_INLINE inline __attribute__((always_inline))
#endif

// Read prefetch hints, into every cache level or into L2 and beyond (no effect where the compiler
// has none).
#if defined(__GNUC__) || defined(__clang__)
#define APLQ_PREFETCH(p) __builtin_prefetch(p)
#define APLQ_PREFETCH_L2(p) __builtin_prefetch(p, 0, 2)
#else
#define APLQ_PREFETCH(p) ((void)(p))
#define APLQ_PREFETCH_L2(p) ((void)(p))
#endif

// APLQ_ASSERT checks internal invariants in debug builds only (never user input: that gets a
// status). It works in device code, where it falls back to the device-side assert.
#if defined(APLQ_DEBUG) || (!defined(NDEBUG) && defined(APLQ_ENABLE_ASSERT))
#include <cassert>
#define APLQ_ASSERT(cond) assert(cond)
#else
#define APLQ_ASSERT(cond) ((void)0)
#endif

#define APLQ_VERSION_MAJOR 0
#define APLQ_VERSION_MINOR 1
#define APLQ_VERSION_PATCH 0
#define APLQ_VERSION_STRING "0.1.0"

namespace aplq {

// Sizes and indices: signed, 64-bit, as in the BLAS-style interfaces users pass them from.
using index_t = std::int64_t;

} // namespace aplq
