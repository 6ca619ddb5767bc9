// SPDX-License-Identifier: Apache-2.0
// The consumer of tests/subproject: quantizes a small random matrix, runs aplq::gemv and checks it
// against the oracle aplq::ref::gemv. Exits non-zero on any error or mismatch.
#include <aplq/matmul.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  const aplq::index_t rows = 37, cols = 200; // 200 = 6 groups of 32 + a tail of 8
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::vector<float> w(rows * cols), x(cols); // [rows, cols], [cols]
  for (float& v : w)
    v = normal(rng);
  for (float& v : x)
    v = normal(rng);

  aplq::qmatrix<aplq::q4_g32> q;
  if (aplq::status s = aplq::quantize<aplq::q4_g32>(w.data(), rows, cols, q);
      s != aplq::status::ok) {
    std::fprintf(stderr, "quantize: %s\n", aplq::status_string(s));
    return 1;
  }
  std::vector<float> y(rows);
  std::vector<double> expect(rows);
  if (aplq::status s = aplq::gemv(q.view(), x.data(), y.data()); s != aplq::status::ok) {
    std::fprintf(stderr, "gemv: %s\n", aplq::status_string(s));
    return 1;
  }
  if (aplq::status s = aplq::ref::gemv(q.view(), x.data(), expect.data()); s != aplq::status::ok) {
    std::fprintf(stderr, "ref::gemv: %s\n", aplq::status_string(s));
    return 1;
  }

  double err = 0.0, norm = 0.0;
  for (aplq::index_t r = 0; r < rows; ++r) {
    err += (y[r] - expect[r]) * (y[r] - expect[r]);
    norm += expect[r] * expect[r];
  }
  const double rel = std::sqrt(err / norm);
  std::printf("consumer: %s gemv %lldx%lld, rel-L2 vs ref = %.3g\n",
              aplq::name_of<aplq::q4_g32>().c_str(), static_cast<long long>(rows),
              static_cast<long long>(cols), rel);
  return rel <= 1e-6 ? 0 : 1;
}
