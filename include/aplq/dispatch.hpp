// SPDX-License-Identifier: Apache-2.0
// Run-time instruction-set dispatch for the CPU kernels. xsimd cannot switch ISA at run time from
// headers alone (an AVX2 instantiation needs a translation unit built with -mavx2), so the
// compiled library aplq_dispatch builds every kernel once per ISA in its own translation unit
// and picks the best one this CPU supports. Formats arrive as run-time descriptors
// (any_qmatrix_view) and become types through visit_format. Link aplq_dispatch_dep to use it.
#pragma once

#include "cpu/kernel.hpp"
#include "cpu/lut.hpp"
#include "visit.hpp"

namespace aplq {
namespace dispatch {

// Instruction sets, in increasing order of preference within an architecture family.
// (avx512vnni, added later, takes the next number; on x86-64 it ranks above avx512bw.)
enum class isa : int {
  best = -1,
  sse2 = 0,
  sse4_2 = 1,
  avx2 = 2,
  avx512bw = 3,
  neon64 = 4,
  avx512vnni = 5
};
inline constexpr int isa_count = 6;

const char* isa_name(isa i) noexcept;
// Compiled into this build of the library.
bool compiled(isa i) noexcept;
// Compiled in and supported by the CPU this process runs on.
bool available(isa i) noexcept;
// The preferred available ISA (what isa::best selects). APLQ_ISA=<name> in the environment caps
// the choice (for example APLQ_ISA=sse2 to compare); an unknown or unavailable name is ignored.
isa selected() noexcept;

// y [rows] = W x and Y [n][rows] = X [n][cols] W^T, as aplq::gemv / aplq::gemm, on ISA `which`.
// An ISA that is not available gives status::unsupported_arch.
status gemv(const any_qmatrix_view& w, const float* x, float* y, const options& opt = {},
            isa which = isa::best) noexcept;
status gemm(const any_qmatrix_view& w, const float* x, index_t n, float* y, const options& opt = {},
            isa which = isa::best) noexcept;

// The same by table lookup on a lut_matrix (1- and 2-bit formats, either policy; see
// cpu/lut.hpp).
status gemv(const cpu::any_lut_view& w, const float* x, float* y,
            const options& opt = {1, compute::int8}, isa which = isa::best) noexcept;
status gemm(const cpu::any_lut_view& w, const float* x, index_t n, float* y,
            const options& opt = {1, compute::int8}, isa which = isa::best) noexcept;

// A typed view as a run-time descriptor (cpu::erase does the same for a lut_view).
template <class F>
any_qmatrix_view erase(const qmatrix_view<F>& v) noexcept {
  return {describe<F>(), v.codes, v.scales, v.zeros, v.rows, v.cols};
}

} // namespace dispatch
} // namespace aplq
