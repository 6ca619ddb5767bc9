// SPDX-License-Identifier: Apache-2.0
// Picks, per call, the kernel instantiation of the best ISA that is both compiled in (Meson
// defines APLQ_HAVE_<ISA> for each kernels_<isa>.cpp it builds) and supported by this CPU.
#include <aplq/dispatch.hpp>

#include <cstdlib>
#include <cstring>

namespace aplq {
namespace dispatch {
namespace detail {

using gemm_fn = status (*)(const any_qmatrix_view&, const float*, index_t, float*,
                           const options&) noexcept;

using lut_gemm_fn = status (*)(const cpu::any_lut_view&, const float*, index_t, float*,
                               const options&) noexcept;

#define APLQ_DECLARE(name)                                                                         \
  status gemm_##name(const any_qmatrix_view&, const float*, index_t, float*,                       \
                     const options&) noexcept;                                                     \
  status lut_gemm_##name(const cpu::any_lut_view&, const float*, index_t, float*,                  \
                         const options&) noexcept;
#if defined(APLQ_HAVE_SSE2)
APLQ_DECLARE(sse2)
#endif
#if defined(APLQ_HAVE_SSE4_2)
APLQ_DECLARE(sse4_2)
#endif
#if defined(APLQ_HAVE_AVX2)
APLQ_DECLARE(avx2)
#endif
#if defined(APLQ_HAVE_AVX512BW)
APLQ_DECLARE(avx512bw)
#endif
#if defined(APLQ_HAVE_NEON64)
APLQ_DECLARE(neon64)
#endif
#if defined(APLQ_HAVE_AVX512VNNI)
APLQ_DECLARE(avx512vnni)
#endif
#undef APLQ_DECLARE

gemm_fn entry(isa i) noexcept {
  switch (i) {
#if defined(APLQ_HAVE_SSE2)
  case isa::sse2: return gemm_sse2;
#endif
#if defined(APLQ_HAVE_SSE4_2)
  case isa::sse4_2: return gemm_sse4_2;
#endif
#if defined(APLQ_HAVE_AVX2)
  case isa::avx2: return gemm_avx2;
#endif
#if defined(APLQ_HAVE_AVX512BW)
  case isa::avx512bw: return gemm_avx512bw;
#endif
#if defined(APLQ_HAVE_NEON64)
  case isa::neon64: return gemm_neon64;
#endif
#if defined(APLQ_HAVE_AVX512VNNI)
  case isa::avx512vnni: return gemm_avx512vnni;
#endif
  default: return nullptr;
  }
}

lut_gemm_fn lut_entry(isa i) noexcept {
  switch (i) {
#if defined(APLQ_HAVE_SSE2)
  case isa::sse2: return lut_gemm_sse2;
#endif
#if defined(APLQ_HAVE_SSE4_2)
  case isa::sse4_2: return lut_gemm_sse4_2;
#endif
#if defined(APLQ_HAVE_AVX2)
  case isa::avx2: return lut_gemm_avx2;
#endif
#if defined(APLQ_HAVE_AVX512BW)
  case isa::avx512bw: return lut_gemm_avx512bw;
#endif
#if defined(APLQ_HAVE_NEON64)
  case isa::neon64: return lut_gemm_neon64;
#endif
#if defined(APLQ_HAVE_AVX512VNNI)
  case isa::avx512vnni: return lut_gemm_avx512vnni;
#endif
  default: return nullptr;
  }
}

bool cpu_supports(isa i) noexcept {
  const auto cpu = xsimd::available_architectures();
  switch (i) {
  case isa::sse2: return cpu.sse2;
  case isa::sse4_2: return cpu.sse4_2;
  case isa::avx2: return cpu.avx2 && cpu.fma3_avx2; // the AVX2 build also uses FMA and F16C
  case isa::avx512bw: return cpu.avx512bw && cpu.avx512dq && cpu.avx512cd && cpu.fma3_avx2;
  case isa::neon64: return cpu.neon64;
  case isa::avx512vnni: // xsimd 8 does not detect VNNI; GCC and Clang do
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    return cpu_supports(isa::avx512bw) && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vnni");
#else
    return false;
#endif
  default: return false;
  }
}

isa choose() noexcept {
  int cap = isa_count - 1;
  if (const char* env = std::getenv("APLQ_ISA")) {
    for (int i = 0; i < isa_count; ++i)
      if (std::strcmp(env, isa_name(static_cast<isa>(i))) == 0 && available(static_cast<isa>(i)))
        cap = i;
  }
  for (int i = cap; i >= 0; --i)
    if (available(static_cast<isa>(i)))
      return static_cast<isa>(i);
  return isa::best; // nothing compiled: every call reports unsupported_arch
}

} // namespace detail

const char* isa_name(isa i) noexcept {
  switch (i) {
  case isa::best: return "best";
  case isa::sse2: return "sse2";
  case isa::sse4_2: return "sse4_2";
  case isa::avx2: return "avx2";
  case isa::avx512bw: return "avx512bw";
  case isa::neon64: return "neon64";
  case isa::avx512vnni: return "avx512vnni";
  }
  return "unknown";
}

bool compiled(isa i) noexcept { return detail::entry(i) != nullptr; }

bool available(isa i) noexcept { return compiled(i) && detail::cpu_supports(i); }

isa selected() noexcept {
  static const isa chosen = detail::choose();
  return chosen;
}

status gemm(const any_qmatrix_view& w, const float* x, index_t n, float* y, const options& opt,
            isa which) noexcept {
  if (which == isa::best)
    which = selected();
  if (!available(which))
    return status::unsupported_arch;
  return detail::entry(which)(w, x, n, y, opt);
}

status gemv(const any_qmatrix_view& w, const float* x, float* y, const options& opt,
            isa which) noexcept {
  return gemm(w, x, 1, y, opt, which);
}

status gemm(const cpu::any_lut_view& w, const float* x, index_t n, float* y, const options& opt,
            isa which) noexcept {
  if (which == isa::best)
    which = selected();
  if (!available(which))
    return status::unsupported_arch;
  return detail::lut_entry(which)(w, x, n, y, opt);
}

status gemv(const cpu::any_lut_view& w, const float* x, float* y, const options& opt,
            isa which) noexcept {
  return gemm(w, x, 1, y, opt, which);
}

} // namespace dispatch
} // namespace aplq
