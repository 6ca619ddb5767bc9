// SPDX-License-Identifier: Apache-2.0
// aplq::cuda::gemm and the tiled layout against aplq::ref: every format (bits 1/2/4/8 x groups
// 32/64/128/256/row x zero point x f32/f16 scales) on odd shapes (1x1, K and rows off the group,
// the unit and the 32-column step, large K):
// - the sequential layout through the GEMM kernel (9 and 40 activation rows: one partial block
//   column, and two), codes starting on and off 16-byte boundaries, typed and run-time entry;
// - the tiled layout, packed on the host from the sequential matrix, through gemm for 1, 2, 3, 5,
//   8, 9, 16, 17 and 40 rows (the tensor-core kernel with 1 and 2 n-tiles, and several
//   launches: 5 f32 or 16 f16/bf16 rows a launch), and gemv for 3; and activations one element
//   off their alignment (copied to an aligned buffer first).
// f32 activations, and f16 and bf16 ones for group 128. y is poisoned with NaN before each
// launch; every output must be written and within its kernel's f32 summation bound, and nothing
// past the outputs may change. Bad arguments give statuses. A batch larger than one launch's
// grid runs in several launches. Fresh data each run (APLQ_TEST_SEED=<n> replays; the seed is
// printed with every failure).
#include <aplq/cuda/matmul.cuh>
#include <aplq/quantize.hpp>

#include "oracle.hpp"
#include "testing.cuh"

#include <doctest/doctest.h>

#include <thrust/copy.h>
#include <thrust/device_vector.h>
#include <thrust/fill.h>

#include <cmath>
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
constexpr index_t sequential_batches[] = {9, 40};
constexpr index_t tiled_batches[] = {1, 2, 3, 5, 8, 9, 16, 17, 40};
constexpr index_t max_n = 40;
constexpr index_t guard = 64; // floats past the outputs that must stay untouched

// Runs one launch into a NaN-poisoned y and checks what it wrote.
template <class F, class Launch>
void check_launch(const cuda_check::gemv_case<F>& c, index_t n, cuda_check::kernel which,
                  thrust::device_vector<float>& d_y, cudaStream_t stream, Launch&& launch) {
  thrust::fill(d_y.begin(), d_y.end(), std::numeric_limits<float>::quiet_NaN());
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  cudaError_t error = cudaErrorUnknown;
  const status s = launch(thrust::raw_pointer_cast(d_y.data()), &error);
  REQUIRE(s == status::ok);
  REQUIRE(error == cudaSuccess);
  const cudaError_t done = cudaStreamSynchronize(stream);
  INFO("cudaStreamSynchronize: ", cudaGetErrorString(done));
  REQUIRE(done == cudaSuccess);
  std::vector<float> y(d_y.size());
  thrust::copy(d_y.begin(), d_y.end(), y.begin());
  const cuda_check::outcome o = cuda_check::compare(c, n, y, which);
  INFO("worst output ", o.worst, " (y=", o.worst >= 0 ? y[o.worst] : 0.0f, ", expected ",
       o.worst >= 0 ? c.expect[o.worst] : 0.0, ") exceeds its bound by ", o.worst_excess);
  CHECK(o.worst == -1); // NaN (never written) fails too
  INFO("rel-L2 ", o.rel_l2, " over ", o.outputs, " outputs");
  CHECK(o.rel_l2_ok());
  CHECK_MESSAGE(o.touched == 0, o.touched, " floats past the outputs were written");
}

template <class F, class X = float>
void check_format(const shape& sh, std::uint64_t salt, cudaStream_t stream) {
  using scale_type = typename F::scale_type;
  std::mt19937_64 gen(base_seed() ^ (salt * 0x9e3779b97f4a7c15ull));
  cuda_check::gemv_case<F> c;
  REQUIRE(cuda_check::make_case<F, X>(sh.m, sh.k, gen, c, max_n) == status::ok);
  const qmatrix<F>& q = c.q;
  const std::string what = std::string(name_of<F>().c_str()) + "/x_" + activation_name<X>() +
                           " M=" + std::to_string(sh.m) + " K=" + std::to_string(sh.k) + " " +
                           seed_note();

  const device_array d_x(cuda_check::stored_as<X>(c.x), 0);
  thrust::device_vector<float> d_y(static_cast<std::size_t>(max_n * sh.m + guard));

  // The sequential layout through the GEMM kernel.
  const device_array d_scales(q.scales(), 0);
  const device_array d_zeros(q.zeros(), 0);
  for (std::size_t offset : {std::size_t{0}, std::size_t{7}}) {
    const device_array d_codes(q.codes(), offset);
    const qmatrix_view<F> view{d_codes.get<std::uint8_t>(), d_scales.get<scale_type>(),
                               F::zero_point ? d_zeros.get<scale_type>() : nullptr, sh.m, sh.k};
    for (index_t n : sequential_batches) {
      // The run-time entry point for the misaligned copy, f32 activations only (as in gemv.cu).
      const bool typed = offset == 0 || !std::is_same<X, float>::value;
      INFO("cuda/gemm/sequential/", typed ? "typed/" : "any/", what, " N=", n,
           " codes offset=", offset);
      check_launch(c, n, cuda_check::gemm_kernel(n, false), d_y, stream,
                   [&](float* y, cudaError_t* error) {
                     if (typed)
                       return aplq::cuda::gemm(view, d_x.get<X>(), n, y, stream, error);
                     const any_qmatrix_view any{describe<F>(), view.codes, view.scales,
                                                view.zeros,    sh.m,       sh.k};
                     return aplq::cuda::gemm(any, d_x.get<float>(), n, y, stream, error);
                   });
    }
  }

  // The tiled layout.
  aplq::cuda::tiled_matrix<F> t;
  REQUIRE(t.pack(q.view()) == status::ok);
  const device_array dt_codes(t.codes(), 0), dt_scales(t.scales(), 0), dt_zeros(t.zeros(), 0);
  const aplq::cuda::tiled_view<F> tv =
      t.view_of(dt_codes.get<std::uint8_t>(), dt_scales.get<scale_type>(),
                F::zero_point ? dt_zeros.get<scale_type>() : nullptr);
  for (index_t n : tiled_batches) {
    INFO("cuda/gemm/tiled/", what, " N=", n);
    check_launch(c, n, cuda_check::gemm_kernel(n, true), d_y, stream,
                 [&](float* y, cudaError_t* error) {
                   return aplq::cuda::gemm(tv, d_x.get<X>(), n, y, stream, error);
                 });
  }
  INFO("cuda/gemv/tiled/", what, " N=3");
  check_launch(c, 3, cuda_check::kernel::tiled, d_y, stream, [&](float* y, cudaError_t* error) {
    return aplq::cuda::gemv(tv, d_x.get<X>(), 3, y, stream, error);
  });
  // Activations one element off their alignment: the launcher copies them to an aligned buffer.
  const device_array d_x_off(cuda_check::stored_as<X>(c.x), sizeof(X));
  INFO("cuda/gemm/tiled/", what, " N=3, activations off alignment");
  check_launch(c, 3, cuda_check::kernel::tiled, d_y, stream, [&](float* y, cudaError_t* error) {
    return aplq::cuda::gemm(tv, d_x_off.get<X>(), 3, y, stream, error);
  });
}

// Every format of `bits` on every shape.
void check_bits(int bits) {
  stream_holder stream;
  for_each_case(bits, static_cast<std::uint64_t>(bits) * 1000 + 500,
                [&](auto fmt, auto x, std::uint64_t salt) {
                  for (const shape& sh : shapes)
                    check_format<decltype(fmt), decltype(x)>(
                        sh, salt * 16 + static_cast<std::uint64_t>(&sh - shapes), stream.s);
                });
}

} // namespace

TEST_CASE("cuda/gemm/q1: sequential and tiled layouts against aplq::ref") { check_bits(1); }
TEST_CASE("cuda/gemm/q2: sequential and tiled layouts against aplq::ref") { check_bits(2); }
TEST_CASE("cuda/gemm/q4: sequential and tiled layouts against aplq::ref") { check_bits(4); }
TEST_CASE("cuda/gemm/q8: sequential and tiled layouts against aplq::ref") { check_bits(8); }

TEST_CASE("cuda/gemm: bad arguments give a status and leave y alone") {
  using F = format<4, 32, true, aplq::half>;
  const index_t m = 5, k = 70, n = 12;
  std::mt19937_64 gen(base_seed() ^ 78u);
  INFO(seed_note());
  const std::vector<float> w = cuda_check::normal(gen, m * k, 0.4f);
  const std::vector<float> x = cuda_check::normal(gen, n * k, 0.2f);
  qmatrix<F> q;
  REQUIRE(quantize<F>(w.data(), m, k, q) == status::ok);
  aplq::cuda::tiled_matrix<F> t;
  REQUIRE(t.pack(q.view()) == status::ok);
  const device_array d_codes(q.codes(), 0), d_scales(q.scales(), 0), d_zeros(q.zeros(), 0);
  const device_array dt_codes(t.codes(), 0), dt_scales(t.scales(), 0), dt_zeros(t.zeros(), 0);
  const device_array d_x(x, 0);
  const qmatrix_view<F> view{d_codes.get<std::uint8_t>(), d_scales.get<aplq::half>(),
                             d_zeros.get<aplq::half>(), m, k};
  const aplq::cuda::tiled_view<F> tv = t.view_of(
      dt_codes.get<std::uint8_t>(), dt_scales.get<aplq::half>(), dt_zeros.get<aplq::half>());
  const float* dx = d_x.get<float>();
  thrust::device_vector<float> d_y(static_cast<std::size_t>(n * m + guard),
                                   std::numeric_limits<float>::quiet_NaN());
  float* dy = thrust::raw_pointer_cast(d_y.data());

  auto expect_status = [&](status want, auto&& call) {
    cudaError_t error = cudaErrorUnknown;
    CHECK(call(&error) == want);
    CHECK(error == cudaSuccess); // nothing was launched
  };
  for (index_t bad_n : {index_t{0}, index_t{-1}}) {
    expect_status(status::invalid_shape,
                  [&](cudaError_t* e) { return aplq::cuda::gemm(view, dx, bad_n, dy, 0, e); });
    expect_status(status::invalid_shape,
                  [&](cudaError_t* e) { return aplq::cuda::gemm(tv, dx, bad_n, dy, 0, e); });
  }
  expect_status(status::invalid_shape,
                [&](cudaError_t* e) { return aplq::cuda::gemv(tv, dx, 9, dy, 0, e); });
  for (index_t any_n : {index_t{2}, n}) {
    expect_status(status::null_pointer, [&](cudaError_t* e) {
      return aplq::cuda::gemm(view, static_cast<const float*>(nullptr), any_n, dy, 0, e);
    });
    expect_status(status::null_pointer,
                  [&](cudaError_t* e) { return aplq::cuda::gemm(view, dx, any_n, nullptr, 0, e); });
    expect_status(status::null_pointer, [&](cudaError_t* e) {
      return aplq::cuda::gemm(tv, static_cast<const float*>(nullptr), any_n, dy, 0, e);
    });
    expect_status(status::null_pointer,
                  [&](cudaError_t* e) { return aplq::cuda::gemm(tv, dx, any_n, nullptr, 0, e); });
    expect_status(status::null_pointer, [&](cudaError_t* e) {
      qmatrix_view<F> v = view;
      v.zeros = nullptr;
      return aplq::cuda::gemm(v, dx, any_n, dy, 0, e);
    });
    expect_status(status::null_pointer, [&](cudaError_t* e) {
      aplq::cuda::tiled_view<F> v = tv;
      v.zeros = nullptr;
      return aplq::cuda::gemm(v, dx, any_n, dy, 0, e);
    });
    expect_status(status::invalid_shape, [&](cudaError_t* e) {
      aplq::cuda::tiled_view<F> v = tv;
      v.cols = 0;
      return aplq::cuda::gemm(v, dx, any_n, dy, 0, e);
    });
    expect_status(status::invalid_argument, [&](cudaError_t* e) {
      aplq::cuda::tiled_view<F> v = tv;
      v.codes += 8; // not 16-byte aligned
      return aplq::cuda::gemm(v, dx, any_n, dy, 0, e);
    });
    // Layouts other than sequential, typed and at run time.
    expect_status(status::unsupported_format, [&](cudaError_t* e) {
      using S = F::with_layout<layout::cpu_striped>;
      const qmatrix_view<S> v{view.codes, view.scales, view.zeros, m, k};
      return aplq::cuda::gemm(v, dx, any_n, dy, 0, e);
    });
    any_qmatrix_view any{describe<F>(), view.codes, view.scales, view.zeros, m, k};
    any.format.layout = layout_kind::cpu_striped;
    expect_status(status::unsupported_format,
                  [&](cudaError_t* e) { return aplq::cuda::gemm(any, dx, any_n, dy, 0, e); });
  }

  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<float> y(d_y.size());
  thrust::copy(d_y.begin(), d_y.end(), y.begin());
  std::size_t touched = 0;
  for (float v : y)
    touched += !std::isnan(v);
  CHECK_MESSAGE(touched == 0, touched, " outputs written by rejected calls");

  // The same matrix, accepted, writes exactly its outputs (the error pointer is optional).
  std::vector<double> expect(static_cast<std::size_t>(n * m));
  REQUIRE(ref::gemm(q.view(), x.data(), n, expect.data()) == status::ok);
  for (bool tiled : {false, true}) {
    const std::string layout_name = tiled ? "tiled" : "sequential";
    INFO(layout_name);
    thrust::fill(d_y.begin(), d_y.end(), std::numeric_limits<float>::quiet_NaN());
    const status s = tiled ? aplq::cuda::gemm(tv, dx, n, dy) : aplq::cuda::gemm(view, dx, n, dy);
    REQUIRE(s == status::ok);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    thrust::copy(d_y.begin(), d_y.end(), y.begin());
    for (std::size_t i = 0; i < y.size(); ++i) {
      INFO("output ", i);
      if (i < expect.size())
        CHECK(std::fabs(y[i] - expect[i]) <= 1e-4 * (1.0 + std::fabs(expect[i])));
      else
        CHECK(std::isnan(y[i]));
    }
  }
}

TEST_CASE("cuda/gemm: more activation rows than one launch's grid holds") {
  // The GEMM grid holds gemm_launch_rows activation rows; more go through several launches.
  using F = format<4, 32>;
  const index_t m = 3, k = 5, n = aplq::cuda::detail::gemm_launch_rows + 7;
  std::mt19937_64 gen(base_seed() ^ 79u);
  INFO(seed_note());
  const std::vector<float> w = cuda_check::normal(gen, m * k, 0.0f);
  const std::vector<float> x = cuda_check::normal(gen, n * k, 0.2f);
  qmatrix<F> q;
  REQUIRE(quantize<F>(w.data(), m, k, q) == status::ok);
  aplq::cuda::tiled_matrix<F> t;
  REQUIRE(t.pack(q.view()) == status::ok);
  const device_array d_codes(q.codes(), 0), d_scales(q.scales(), 0);
  const device_array dt_codes(t.codes(), 0), dt_scales(t.scales(), 0);
  const device_array d_x(x, 0);
  const qmatrix_view<F> view{d_codes.get<std::uint8_t>(), d_scales.get<float>(), nullptr, m, k};
  const aplq::cuda::tiled_view<F> tv =
      t.view_of(dt_codes.get<std::uint8_t>(), dt_scales.get<float>(), nullptr);
  std::vector<double> expect(static_cast<std::size_t>(n * m));
  REQUIRE(ref::gemm(q.view(), x.data(), n, expect.data()) == status::ok);
  thrust::device_vector<float> d_y(static_cast<std::size_t>(n * m + guard));
  std::vector<float> y(d_y.size());
  for (bool tiled : {false, true}) {
    const std::string layout_name = tiled ? "tiled" : "sequential";
    INFO(layout_name);
    thrust::fill(d_y.begin(), d_y.end(), std::numeric_limits<float>::quiet_NaN());
    float* dy = thrust::raw_pointer_cast(d_y.data());
    const status s = tiled ? aplq::cuda::gemm(tv, d_x.get<float>(), n, dy)
                           : aplq::cuda::gemm(view, d_x.get<float>(), n, dy);
    REQUIRE(s == status::ok);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    thrust::copy(d_y.begin(), d_y.end(), y.begin());
    std::size_t wrong = 0, touched = 0;
    for (std::size_t i = 0; i < expect.size(); ++i)
      wrong += !(std::fabs(y[i] - expect[i]) <= 1e-5 * (1.0 + std::fabs(expect[i])));
    for (std::size_t i = expect.size(); i < y.size(); ++i)
      touched += !std::isnan(y[i]);
    CHECK(wrong == 0);
    CHECK(touched == 0);
  }
}
