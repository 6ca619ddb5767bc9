// SPDX-License-Identifier: Apache-2.0
// Run-time dispatch: the ISA list is consistent, the selected ISA runs on this CPU, asking for an
// unavailable one is a status, and calls from many threads at once match serial calls.
#include "testing.hpp"

#include <cstring>
#include <thread>

using namespace aplq;

TEST_CASE("dispatch: the selected ISA is compiled and available") {
  const auto sel = dispatch::selected();
  MESSAGE("selected ISA: ", dispatch::isa_name(sel));
  CHECK(dispatch::available(sel));
  CHECK(dispatch::compiled(sel));
  for (int i = 0; i < dispatch::isa_count; ++i) {
    const auto isa = static_cast<dispatch::isa>(i);
    if (dispatch::available(isa))
      CHECK(dispatch::compiled(isa));
    CHECK(std::strlen(dispatch::isa_name(isa)) > 0);
  }
#if defined(__x86_64__)
  CHECK(dispatch::available(dispatch::isa::sse2)); // the x86-64 baseline is always there
#endif
}

TEST_CASE("dispatch: an ISA that is not available is a status") {
  qmatrix<q4_g32> q;
  REQUIRE(q.reset(4, 32) == status::ok);
  std::vector<float> x(32, 1.0f), y(4, 7.0f);
  const auto e = dispatch::erase(q.view());
  for (int i = 0; i < dispatch::isa_count; ++i) {
    const auto isa = static_cast<dispatch::isa>(i);
    const status s = dispatch::gemv(e, x.data(), y.data(), {}, isa);
    CHECK(s == (dispatch::available(isa) ? status::ok : status::unsupported_arch));
  }
  CHECK(dispatch::gemv(e, x.data(), y.data(), {}, static_cast<dispatch::isa>(42)) ==
        status::unsupported_arch);
}

TEST_CASE("dispatch: 8 threads calling at once get the serial results") {
  using F = format<4, 128, true, half, layout::cpu_striped>;
  aplq_test::rng r(77);
  const index_t m = 300, k = 1000;
  const auto w = r.normal(m * k), x = r.normal(3 * k);
  qmatrix<F> q;
  REQUIRE(quantize<F>(w.data(), m, k, q) == status::ok);
  const auto e = dispatch::erase(q.view());
  std::vector<float> serial(3 * m);
  REQUIRE(dispatch::gemm(e, x.data(), 3, serial.data(), {2, compute::int8}) == status::ok);
  std::vector<std::vector<float>> out(8, std::vector<float>(3 * m));
  std::vector<status> st(8);
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&, t] {
      for (int rep = 0; rep < 20 && st[t] == status::ok; ++rep)
        st[t] = dispatch::gemm(e, x.data(), 3, out[t].data(), {t % 3, compute::int8});
    });
  for (auto& t : ts)
    t.join();
  for (int t = 0; t < 8; ++t) {
    CHECK(st[t] == status::ok);
    CHECK(std::memcmp(out[t].data(), serial.data(), serial.size() * sizeof(float)) == 0);
  }
}
