// SPDX-License-Identifier: Apache-2.0
// aplq::cuda::gemv against aplq::ref: every sequential format (bits 1/2/4/8 x groups
// 32/64/128/256/row x zero point x f32/f16 scales) on odd shapes (1x1, K and rows off the group,
// byte and 16-byte sizes, large K), 1, 3 and 8 activation rows, rows starting on and off 16-byte
// boundaries, through the typed and the run-time-format entry points; f32 activations, and f16
// and bf16 ones for group 128. y is poisoned with NaN
// before each launch; every output must be written and within the f32 summation bound, and
// nothing past the outputs may change. Bad arguments give statuses. Fresh data each run
// (APLQ_TEST_SEED=<n> replays; the seed is printed with every failure).
#include <aplq/cuda/matmul.cuh>
#include <aplq/quantize.hpp>

#include "oracle.hpp"
#include "testing.cuh"

#include <doctest/doctest.h>

#include <thrust/copy.h>
#include <thrust/device_vector.h>
#include <thrust/fill.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace aplq;
using namespace aplq::cuda_test;

struct shape {
  index_t m, k;
};
constexpr shape shapes[] = {{1, 1}, {3, 37}, {67, 300}, {129, 4100}, {16, 65536}};
constexpr index_t batches[] = {1, 3, 8};
constexpr index_t guard = 64; // floats past the outputs that must stay untouched

template <class F, class X>
std::string where(const shape& sh, index_t n, std::size_t offset, bool typed) {
  return std::string("cuda/gemv/") + name_of<F>().c_str() + "/x_" + activation_name<X>() +
         (typed ? "/typed" : "/any") + " M=" + std::to_string(sh.m) + " K=" + std::to_string(sh.k) +
         " N=" + std::to_string(n) + " codes offset=" + std::to_string(offset) + " " + seed_note();
}

// Activations of type X (float, half, bfloat16).
template <class F, class X = float>
void check_format(const shape& sh, std::uint64_t salt, cudaStream_t stream) {
  using scale_type = typename F::scale_type;
  constexpr index_t max_n = aplq::cuda::gemv_max_n;
  std::mt19937_64 gen(base_seed() ^ (salt * 0x9e3779b97f4a7c15ull));
  cuda_check::gemv_case<F> c;
  REQUIRE(cuda_check::make_case<F, X>(sh.m, sh.k, gen, c) == status::ok);
  const qmatrix<F>& q = c.q;

  const device_array d_x(cuda_check::stored_as<X>(c.x), 0);
  const device_array d_scales(q.scales(), 0);
  const device_array d_zeros(q.zeros(), 0);
  thrust::device_vector<float> d_y(static_cast<std::size_t>(max_n * sh.m + guard));
  std::vector<float> y(d_y.size());

  for (std::size_t offset : {std::size_t{0}, std::size_t{7}}) {
    const device_array d_codes(q.codes(), offset);
    const qmatrix_view<F> view{d_codes.get<std::uint8_t>(), d_scales.get<scale_type>(),
                               F::zero_point ? d_zeros.get<scale_type>() : nullptr, sh.m, sh.k};
    for (index_t n : batches) {
      // Typed entry point for aligned codes, the run-time one for the misaligned copy (f32
      // activations only: the run-time one instantiates every format's kernel).
      const bool typed = offset == 0 || !std::is_same<X, float>::value;
      INFO(where<F, X>(sh, n, offset, typed));
      thrust::fill(d_y.begin(), d_y.end(), std::numeric_limits<float>::quiet_NaN());
      REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
      float* d_out = thrust::raw_pointer_cast(d_y.data());
      cudaError_t error = cudaErrorUnknown;
      status s;
      if (typed) {
        s = aplq::cuda::gemv(view, d_x.get<X>(), n, d_out, stream, &error);
      } else {
        const any_qmatrix_view any{describe<F>(), view.codes, view.scales, view.zeros, sh.m, sh.k};
        s = aplq::cuda::gemv(any, d_x.get<float>(), n, d_out, stream, &error);
      }
      REQUIRE(s == status::ok);
      REQUIRE(error == cudaSuccess);
      const cudaError_t done = cudaStreamSynchronize(stream);
      INFO("cudaStreamSynchronize: ", cudaGetErrorString(done));
      REQUIRE(done == cudaSuccess);
      thrust::copy(d_y.begin(), d_y.end(), y.begin());

      const cuda_check::outcome o =
          cuda_check::compare(c, n, y, cuda_check::kernel::gemv_sequential);
      INFO("worst output ", o.worst, " (y=", o.worst >= 0 ? y[o.worst] : 0.0f, ", expected ",
           o.worst >= 0 ? c.expect[o.worst] : 0.0, ") exceeds its bound by ", o.worst_excess);
      CHECK(o.worst == -1); // NaN (never written) fails too
      INFO("rel-L2 ", o.rel_l2, " over ", o.outputs, " outputs");
      CHECK(o.rel_l2_ok());
      CHECK_MESSAGE(o.touched == 0, o.touched, " floats past the outputs were written");
    }
  }
}

// Every sequential format of `bits` on every shape.
void check_bits(int bits) {
  stream_holder stream;
  for_each_case(bits, static_cast<std::uint64_t>(bits) * 1000,
                [&](auto fmt, auto x, std::uint64_t salt) {
                  for (const shape& sh : shapes)
                    check_format<decltype(fmt), decltype(x)>(
                        sh, salt * 16 + static_cast<std::uint64_t>(&sh - shapes), stream.s);
                });
}

} // namespace

TEST_CASE("cuda/gemv/q1: every group, zero point and scale type against aplq::ref") {
  check_bits(1);
}
TEST_CASE("cuda/gemv/q2: every group, zero point and scale type against aplq::ref") {
  check_bits(2);
}
TEST_CASE("cuda/gemv/q4: every group, zero point and scale type against aplq::ref") {
  check_bits(4);
}
TEST_CASE("cuda/gemv/q8: every group, zero point and scale type against aplq::ref") {
  check_bits(8);
}

TEST_CASE("cuda/gemv: bad arguments give a status and leave y alone") {
  using F = format<4, 32, true, aplq::half>;
  const index_t m = 5, k = 70;
  std::mt19937_64 gen(base_seed() ^ 77u);
  INFO(seed_note());
  const std::vector<float> w = cuda_check::normal(gen, m * k, 0.4f);
  const std::vector<float> x = cuda_check::normal(gen, 2 * k, 0.2f);
  qmatrix<F> q;
  REQUIRE(quantize<F>(w.data(), m, k, q) == status::ok);
  const device_array d_codes(q.codes(), 0), d_scales(q.scales(), 0), d_zeros(q.zeros(), 0);
  const device_array d_x(x, 0);
  const qmatrix_view<F> view{d_codes.get<std::uint8_t>(), d_scales.get<aplq::half>(),
                             d_zeros.get<aplq::half>(), m, k};
  const float* dx = d_x.get<float>();
  thrust::device_vector<float> d_y(static_cast<std::size_t>(9 * m),
                                   std::numeric_limits<float>::quiet_NaN());
  float* dy = thrust::raw_pointer_cast(d_y.data());

  auto expect_status = [&](status want, auto&& call) {
    cudaError_t error = cudaErrorUnknown;
    CHECK(call(&error) == want);
    CHECK(error == cudaSuccess); // nothing was launched
  };
  expect_status(status::invalid_shape,
                [&](cudaError_t* e) { return aplq::cuda::gemv(view, dx, 0, dy, 0, e); });
  expect_status(status::invalid_shape,
                [&](cudaError_t* e) { return aplq::cuda::gemv(view, dx, 9, dy, 0, e); });
  expect_status(status::invalid_shape,
                [&](cudaError_t* e) { return aplq::cuda::gemv(view, dx, -1, dy, 0, e); });
  expect_status(status::null_pointer, [&](cudaError_t* e) {
    return aplq::cuda::gemv(view, static_cast<const float*>(nullptr), 1, dy, 0, e);
  });
  expect_status(status::null_pointer,
                [&](cudaError_t* e) { return aplq::cuda::gemv(view, dx, 1, nullptr, 0, e); });
  expect_status(status::invalid_shape, [&](cudaError_t* e) {
    qmatrix_view<F> v = view;
    v.rows = 0;
    return aplq::cuda::gemv(v, dx, 1, dy, 0, e);
  });
  expect_status(status::invalid_shape, [&](cudaError_t* e) {
    qmatrix_view<F> v = view;
    v.cols = -3;
    return aplq::cuda::gemv(v, dx, 1, dy, 0, e);
  });
  expect_status(status::null_pointer, [&](cudaError_t* e) {
    qmatrix_view<F> v = view;
    v.zeros = nullptr; // a zero-point format needs its zero points
    return aplq::cuda::gemv(v, dx, 1, dy, 0, e);
  });
  expect_status(status::null_pointer, [&](cudaError_t* e) {
    qmatrix_view<F> v = view;
    v.scales = nullptr;
    return aplq::cuda::gemv(v, dx, 1, dy, 0, e);
  });
  // Layouts other than sequential, typed and at run time; formats that do not exist.
  expect_status(status::unsupported_format, [&](cudaError_t* e) {
    using S = F::with_layout<layout::cpu_striped>;
    const qmatrix_view<S> v{view.codes, view.scales, view.zeros, m, k};
    return aplq::cuda::gemv(v, dx, 1, dy, 0, e);
  });
  any_qmatrix_view any{describe<F>(), view.codes, view.scales, view.zeros, m, k};
  any.format.layout = layout_kind::cpu_striped;
  expect_status(status::unsupported_format,
                [&](cudaError_t* e) { return aplq::cuda::gemv(any, dx, 1, dy, 0, e); });
  any.format.layout = layout_kind::sequential;
  any.format.bits = 3;
  expect_status(status::unsupported_format,
                [&](cudaError_t* e) { return aplq::cuda::gemv(any, dx, 1, dy, 0, e); });
  any.format.bits = 4;
  any.format.group = 48;
  expect_status(status::unsupported_format,
                [&](cudaError_t* e) { return aplq::cuda::gemv(any, dx, 1, dy, 0, e); });
  any.format.group = 32;
  expect_status(status::invalid_shape,
                [&](cudaError_t* e) { return aplq::cuda::gemv(any, dx, 9, dy, 0, e); });

  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<float> y(d_y.size());
  thrust::copy(d_y.begin(), d_y.end(), y.begin());
  std::size_t touched = 0;
  for (float v : y)
    touched += !std::isnan(v);
  CHECK_MESSAGE(touched == 0, touched, " outputs written by rejected calls");

  // The same matrix, accepted, writes exactly its outputs (the error pointer is optional).
  REQUIRE(aplq::cuda::gemv(any, dx, 2, dy) == status::ok);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  thrust::copy(d_y.begin(), d_y.end(), y.begin());
  std::vector<double> expect(static_cast<std::size_t>(2 * m));
  REQUIRE(ref::gemm(q.view(), x.data(), 2, expect.data()) == status::ok);
  for (std::size_t i = 0; i < y.size(); ++i) {
    INFO("output ", i);
    if (i < expect.size())
      CHECK(std::fabs(y[i] - expect[i]) <= 1e-4 * (1.0 + std::fabs(expect[i])));
    else
      CHECK(std::isnan(y[i]));
  }
}
