// SPDX-License-Identifier: Apache-2.0
// Example 01: quantize a float matrix to 4 bits (groups of 128 weights share a scale), multiply
// it by a vector with aplq::gemv, and check the result against the scalar oracle aplq::ref::gemv.
#include <aplq/matmul.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  using format = aplq::q4_g128; // 4-bit symmetric codes, one f32 scale per 128 weights
  const aplq::index_t rows = 256, cols = 1000;

  std::mt19937 rng(42);
  std::normal_distribution<float> normal;
  std::vector<float> w(rows * cols); // [rows, cols]
  std::vector<float> x(cols);        // [cols]
  for (float& v : w)
    v = normal(rng);
  for (float& v : x)
    v = normal(rng);

  // Quantize: W [256, 1000] floats -> 4-bit codes [256, 500] bytes + scales [256, 8].
  aplq::qmatrix<format> q;
  if (aplq::status s = aplq::quantize<format>(w.data(), rows, cols, q); s != aplq::status::ok) {
    std::fprintf(stderr, "quantize failed: %s\n", aplq::status_string(s));
    return 1;
  }

  // y = W_q x with the SIMD kernel, and in double with the oracle.
  std::vector<float> y(rows);
  std::vector<double> y_ref(rows);
  if (aplq::status s = aplq::gemv(q.view(), x.data(), y.data()); s != aplq::status::ok) {
    std::fprintf(stderr, "gemv failed: %s\n", aplq::status_string(s));
    return 1;
  }
  aplq::ref::gemv(q.view(), x.data(), y_ref.data());

  double err = 0.0, norm = 0.0;
  for (aplq::index_t r = 0; r < rows; ++r) {
    err += (y[r] - y_ref[r]) * (y[r] - y_ref[r]);
    norm += y_ref[r] * y_ref[r];
  }
  const double rel = std::sqrt(err / norm);
  std::printf("%s: gemv %lldx%lld, relative error vs aplq::ref::gemv = %.3g\n",
              aplq::name_of<format>().c_str(), static_cast<long long>(rows),
              static_cast<long long>(cols), rel);
  return rel <= 1e-6 ? 0 : 1;
}
