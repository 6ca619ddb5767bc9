// SPDX-License-Identifier: Apache-2.0
// The few xsimd spellings that differ between 8.1 (Debian 12) and 13/14: everything else in the
// CPU kernels is plain xsimd.
#pragma once

#include <xsimd/xsimd.hpp>

namespace aplq {
namespace cpu {
namespace compat {

template <class T, class A>
inline T reduce_add(const xsimd::batch<T, A>& v) noexcept {
#if defined(XSIMD_VERSION_MAJOR) && XSIMD_VERSION_MAJOR >= 11
  return xsimd::reduce_add(v);
#else
  return xsimd::hadd(v);
#endif
}

} // namespace compat
} // namespace cpu
} // namespace aplq
