// SPDX-License-Identifier: Apache-2.0
// The aplq benchmark suite (Google Benchmark). GEMV and GEMM for every bit width on the shapes
// people run, both compute policies, 1 thread and all cores, through the run-time dispatch (the
// best ISA of this CPU); quantize and repack speed; and, measured in the same run, the baselines
// a user would otherwise reach for (f32 GEMV/GEMM with xsimd, OpenBLAS sgemv/sgemm on the
// dequantized matrix) and the machine's memory bandwidth (a STREAM triad of our own).
//
// Names carry the configuration: gemv/q4_g32_s32/int8/4096x4096/b1/t1/ooc. "ooc" cases rotate
// enough copies of the weights that the working set is at least 4x the last-level cache, so
// every call streams its weights from memory; "inc" cases reuse one copy.
// Counters: bytes_per_second (weights + scales + activations + output), GFLOPS (2*M*K*N per
// call), bw_frac (bytes/s over the triad bandwidth measured at the same thread count).
//
// --quick runs a small subset (one shape, batch 1 and 16) in about a minute; any other argument
// goes to Google Benchmark (--benchmark_filter=..., --benchmark_format=json, ...).
#include <aplq/dispatch.hpp>
#include <aplq/matmul.hpp>

#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

extern "C" void openblas_set_num_threads(int);

namespace {

using aplq::index_t;

int all_threads() { return aplq::cpu::thread_pool::global().max_threads(); }

// The largest data cache of cpu0, from sysfs (the L3 on x86); 32 MiB when unknown.
std::size_t last_level_cache() {
  std::size_t best = 0;
  for (int i = 0; i < 8; ++i) {
    std::ifstream f("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/size");
    std::string s;
    if (!(f >> s) || s.empty())
      continue;
    std::size_t v = std::stoul(s);
    if (s.back() == 'K')
      v <<= 10;
    else if (s.back() == 'M')
      v <<= 20;
    best = std::max(best, v);
  }
  return best ? best : (32u << 20);
}

// How many copies of a buffer of `bytes` make a working set of at least 4x the LLC.
int copies_out_of_cache(std::size_t bytes) {
  const std::size_t want = 4 * last_level_cache();
  return static_cast<int>(std::max<std::size_t>(2, (want + bytes - 1) / bytes));
}

struct shape {
  index_t m, k;
};

std::vector<float> gaussian(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& e : v)
    e = d(gen);
  return v;
}

// ---- memory bandwidth: STREAM triad a = b + s * c over arrays 4x the LLC, split by threads.

struct triad_arrays {
  std::vector<double> a, b, c;
  triad_arrays() {
    const std::size_t n = 4 * last_level_cache() / sizeof(double);
    a.assign(n, 0.0);
    b.assign(n, 1.0);
    c.assign(n, 2.0);
  }
  std::size_t bytes() const { return 3 * a.size() * sizeof(double); }
  void run(int threads) {
    const index_t tasks = 64;
    const std::size_t per = (a.size() + tasks - 1) / tasks;
    auto task = [&](index_t t) {
      const std::size_t lo = t * per, hi = std::min(a.size(), lo + per);
      double* __restrict pa = a.data();
      const double* __restrict pb = b.data();
      const double* __restrict pc = c.data();
      for (std::size_t i = lo; i < hi; ++i)
        pa[i] = pb[i] + 3.0 * pc[i];
    };
    aplq::cpu::thread_pool::global().run(threads, tasks, task);
  }
};

triad_arrays& triad() {
  static triad_arrays t;
  return t;
}

std::map<int, double> triad_bandwidth; // threads -> bytes/s, measured before the other cases

double measure_triad(int threads) {
  auto& t = triad();
  t.run(threads);
  double best = 0.0;
  for (int rep = 0; rep < 10; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    t.run(threads);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, t.bytes() / s);
  }
  return best;
}

void bm_triad(benchmark::State& state, int threads) {
  auto& t = triad();
  for (auto _ : state)
    t.run(threads);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * t.bytes()));
  state.counters["bw_frac"] = benchmark::Counter(
      static_cast<double>(state.iterations() * t.bytes()) / triad_bandwidth[threads],
      benchmark::Counter::kIsRate);
}

void set_counters(benchmark::State& state, double bytes_per_call, double flops_per_call,
                  int threads) {
  const double it = static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(it * bytes_per_call));
  state.counters["GFLOPS"] =
      benchmark::Counter(it * flops_per_call * 1e-9, benchmark::Counter::kIsRate);
  state.counters["bw_frac"] = benchmark::Counter(it * bytes_per_call / triad_bandwidth[threads],
                                                 benchmark::Counter::kIsRate);
}

// ---- aplq kernels.

// Quantized weights of one shape and format, in `copies` separate buffers (same contents): a
// qmatrix's arrays, or with `lut` those of a cpu::lut_matrix (1 and 2 bits).
struct packed_weights {
  aplq::format_desc format;
  index_t rows = 0, cols = 0;
  std::size_t bytes = 0; // codes + scales + zeros of one copy
  std::vector<std::vector<std::uint8_t>> codes, scales, zeros;
  const void* zeros_of(int i) const { return format.zero_point ? zeros[i].data() : nullptr; }
  aplq::any_qmatrix_view view(int i) const {
    return {format, codes[i].data(), scales[i].data(), zeros_of(i), rows, cols};
  }
  aplq::cpu::any_lut_view lut_view(int i) const {
    return {format, codes[i].data(), scales[i].data(), zeros_of(i), rows, cols};
  }
};

template <class T>
std::vector<std::uint8_t> as_bytes(const T* p, std::size_t n) {
  const auto* b = reinterpret_cast<const std::uint8_t*>(p);
  return std::vector<std::uint8_t>(b, b + n * sizeof(T));
}

// One cache entry at a time: cases are registered shape by shape, format by format.
std::shared_ptr<packed_weights> weights_for(const aplq::format_desc& d, shape s, bool rotate,
                                            bool lut = false) {
  static std::shared_ptr<packed_weights> cached;
  static std::string key;
  const std::string k = std::string(aplq::name_of(d).c_str()) + std::to_string(s.m) + "x" +
                        std::to_string(s.k) + (rotate ? "r" : "") + (lut ? "lut" : "");
  if (cached && key == k)
    return cached;
  cached.reset();
  auto p = std::make_shared<packed_weights>();
  p->format = d;
  p->rows = s.m;
  p->cols = s.k;
  const auto w = gaussian(static_cast<std::size_t>(s.m * s.k), 1);
  aplq::visit_format(d, [&](auto f) {
    using F = decltype(f);
    aplq::qmatrix<F> q;
    if (aplq::quantize<F>(w.data(), s.m, s.k, q) != aplq::status::ok)
      std::abort();
    if constexpr (F::bits <= 2) {
      if (lut) {
        aplq::cpu::lut_matrix<F> packed;
        if (packed.pack(q.view()) != aplq::status::ok)
          std::abort();
        const auto v = packed.view();
        const auto n = static_cast<std::size_t>(v.scale_count());
        p->codes.push_back(as_bytes(v.codes, static_cast<std::size_t>(v.code_bytes())));
        p->scales.push_back(as_bytes(v.scales, n));
        p->zeros.push_back(F::zero_point ? as_bytes(v.zeros, n) : std::vector<std::uint8_t>{});
        return aplq::status::ok;
      }
    }
    p->codes.push_back(as_bytes(q.codes().data(), q.codes().size()));
    p->scales.push_back(as_bytes(q.scales().data(), q.scales().size()));
    p->zeros.push_back(as_bytes(q.zeros().data(), q.zeros().size()));
    return aplq::status::ok;
  });
  p->bytes = p->codes[0].size() + p->scales[0].size() + p->zeros[0].size();
  const int n = rotate ? copies_out_of_cache(p->bytes) : 1;
  for (int i = 1; i < n; ++i) {
    p->codes.push_back(p->codes[0]);
    p->scales.push_back(p->scales[0]);
    p->zeros.push_back(p->zeros[0]);
  }
  cached = p;
  key = k;
  return p;
}

void bm_aplq(benchmark::State& state, aplq::format_desc d, shape s, index_t batch,
             aplq::compute policy, int threads, bool rotate, bool lut) {
  const auto w = weights_for(d, s, rotate, lut);
  const auto x = gaussian(static_cast<std::size_t>(batch * s.k), 2);
  std::vector<float> y(static_cast<std::size_t>(batch * s.m));
  const aplq::options opt{threads, policy};
  const int n = static_cast<int>(w->codes.size());
  int i = 0;
  for (auto _ : state) {
    const aplq::status st =
        lut ? aplq::dispatch::gemm(w->lut_view(i), x.data(), batch, y.data(), opt)
            : aplq::dispatch::gemm(w->view(i), x.data(), batch, y.data(), opt);
    if (st != aplq::status::ok) {
      state.SkipWithError("aplq::dispatch::gemm failed");
      break;
    }
    benchmark::ClobberMemory();
    i = i + 1 == n ? 0 : i + 1;
  }
  const double bytes = static_cast<double>(w->bytes) + 4.0 * batch * (s.k + s.m);
  set_counters(state, bytes, 2.0 * s.m * s.k * batch, threads);
  state.counters["copies"] = n;
}

// ---- baselines on the dequantized (f32) matrix.

struct f32_weights {
  index_t rows = 0, cols = 0;
  std::vector<std::vector<float>> copies;
};

std::shared_ptr<f32_weights> f32_for(shape s, bool rotate) {
  static std::shared_ptr<f32_weights> cached;
  static std::string key;
  const std::string k = std::to_string(s.m) + "x" + std::to_string(s.k) + (rotate ? "r" : "");
  if (cached && key == k)
    return cached;
  cached.reset();
  auto p = std::make_shared<f32_weights>();
  p->rows = s.m;
  p->cols = s.k;
  p->copies.push_back(gaussian(static_cast<std::size_t>(s.m * s.k), 1));
  const int n = rotate ? copies_out_of_cache(p->copies[0].size() * sizeof(float)) : 1;
  for (int i = 1; i < n; ++i)
    p->copies.push_back(p->copies[0]);
  cached = p;
  key = k;
  return p;
}

// Y [n][m] = X [n][k] W^T in f32 with xsimd: a row of W stays in L1 while every activation row
// passes over it, four accumulators per dot product.
void f32_xsimd_gemm(const float* w, const float* x, float* y, index_t m, index_t k, index_t n,
                    int threads) {
  using fb = xsimd::batch<float>;
  constexpr index_t W = fb::size;
  const index_t block = std::max<index_t>(8, m / 64);
  auto task = [&](index_t t) {
    for (index_t r = t * block; r < std::min(m, (t + 1) * block); ++r) {
      const float* wr = w + r * k;
      for (index_t i = 0; i < n; ++i) {
        const float* xi = x + i * k;
        fb a0(0.0f), a1(0.0f), a2(0.0f), a3(0.0f);
        index_t j = 0;
        for (; j + 4 * W <= k; j += 4 * W) {
          a0 = xsimd::fma(fb::load_unaligned(wr + j), fb::load_unaligned(xi + j), a0);
          a1 = xsimd::fma(fb::load_unaligned(wr + j + W), fb::load_unaligned(xi + j + W), a1);
          a2 = xsimd::fma(fb::load_unaligned(wr + j + 2 * W), fb::load_unaligned(xi + j + 2 * W),
                          a2);
          a3 = xsimd::fma(fb::load_unaligned(wr + j + 3 * W), fb::load_unaligned(xi + j + 3 * W),
                          a3);
        }
        float sum = aplq::cpu::compat::reduce_add((a0 + a1) + (a2 + a3));
        for (; j < k; ++j)
          sum += wr[j] * xi[j];
        y[i * m + r] = sum;
      }
    }
  };
  aplq::cpu::thread_pool::global().run(threads, (m + block - 1) / block, task);
}

void bm_f32(benchmark::State& state, bool openblas, shape s, index_t batch, int threads,
            bool rotate) {
  const auto w = f32_for(s, rotate);
  const auto x = gaussian(static_cast<std::size_t>(batch * s.k), 2);
  std::vector<float> y(static_cast<std::size_t>(batch * s.m));
  openblas_set_num_threads(threads);
  const int n = static_cast<int>(w->copies.size());
  int i = 0;
  for (auto _ : state) {
    const float* wi = w->copies[i].data();
    if (!openblas)
      f32_xsimd_gemm(wi, x.data(), y.data(), s.m, s.k, batch, threads);
    else if (batch == 1)
      cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(s.m), static_cast<int>(s.k), 1.0f,
                  wi, static_cast<int>(s.k), x.data(), 1, 0.0f, y.data(), 1);
    else
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(batch),
                  static_cast<int>(s.m), static_cast<int>(s.k), 1.0f, x.data(),
                  static_cast<int>(s.k), wi, static_cast<int>(s.k), 0.0f, y.data(),
                  static_cast<int>(s.m));
    benchmark::ClobberMemory();
    i = i + 1 == n ? 0 : i + 1;
  }
  const double bytes = 4.0 * (s.m * s.k + batch * (s.k + s.m));
  set_counters(state, bytes, 2.0 * s.m * s.k * batch, threads);
  state.counters["copies"] = n;
}

// ---- quantize and repack speed (single thread, in cache-sized pieces of one large matrix).

void bm_quantize(benchmark::State& state, aplq::format_desc d, shape s) {
  const auto w = gaussian(static_cast<std::size_t>(s.m * s.k), 1);
  aplq::visit_format(d, [&](auto f) {
    using F = decltype(f);
    aplq::qmatrix<F> q;
    q.reset(s.m, s.k);
    for (auto _ : state)
      benchmark::DoNotOptimize(aplq::quantize<F>(w.data(), s.m, s.k, q.span()));
    return aplq::status::ok;
  });
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * s.m * s.k * 4));
  state.counters["weights_per_second"] = benchmark::Counter(
      static_cast<double>(state.iterations() * s.m * s.k), benchmark::Counter::kIsRate);
}

void bm_repack(benchmark::State& state, aplq::format_desc d, shape s) {
  const auto w = gaussian(static_cast<std::size_t>(s.m * s.k), 1);
  aplq::visit_format(d, [&](auto f) {
    using F = decltype(f);
    using G = typename F::template with_layout<aplq::layout::cpu_striped>;
    aplq::qmatrix<F> q;
    aplq::quantize<F>(w.data(), s.m, s.k, q);
    aplq::qmatrix<G> out;
    out.reset(s.m, s.k);
    for (auto _ : state)
      benchmark::DoNotOptimize(aplq::ref::repack<G>(q.view(), out.span()));
    return aplq::status::ok;
  });
  state.counters["weights_per_second"] = benchmark::Counter(
      static_cast<double>(state.iterations() * s.m * s.k), benchmark::Counter::kIsRate);
}

// ---- registration.

std::string shape_name(shape s) { return std::to_string(s.m) + "x" + std::to_string(s.k); }

// gemv/q4_g32_s32/int8/avx2/4096x4096/b1/t1/ooc; table-lookup cases name the format ..._lut.
void register_case(const aplq::format_desc& d, shape s, index_t b, aplq::compute policy, int t,
                   bool rotate, bool lut) {
  std::string format = aplq::name_of(d).c_str();
  if (lut)
    format = format.substr(0, format.rfind('_')) + "_lut";
  const std::string name = std::string(b == 1 ? "gemv/" : "gemm/") + format + "/" +
                           (policy == aplq::compute::exact ? "exact" : "int8") + "/" +
                           aplq::dispatch::isa_name(aplq::dispatch::selected()) + "/" +
                           shape_name(s) + "/b" + std::to_string(b) + "/t" + std::to_string(t) +
                           (rotate ? "/ooc" : "/inc");
  benchmark::RegisterBenchmark(name.c_str(), bm_aplq, d, s, b, policy, t, rotate, lut)
      ->UseRealTime();
}

void register_all(bool quick) {
  const int all = all_threads();
  std::vector<int> thread_counts = {1};
  if (all > 1)
    thread_counts.push_back(all);

  for (int t : thread_counts) {
    benchmark::RegisterBenchmark(("stream/triad/t" + std::to_string(t)).c_str(), bm_triad, t)
        ->UseRealTime();
  }

  const std::vector<shape> shapes =
      quick ? std::vector<shape>{{4096, 4096}}
            : std::vector<shape>{
                  {4096, 4096}, {4096, 11008}, {11008, 4096}, {4096, 14336}, {14336, 4096}};
  const std::vector<index_t> batches =
      quick ? std::vector<index_t>{1, 16} : std::vector<index_t>{1, 4, 16, 64};
  const std::vector<int> groups = quick ? std::vector<int>{32} : std::vector<int>{32, 128};
  const std::vector<bool> zero_points =
      quick ? std::vector<bool>{false} : std::vector<bool>{false, true};

  for (const shape s : shapes) {
    const std::string sn = shape_name(s);
    for (int bits : {1, 2, 4, 8})
      for (int g : groups)
        for (bool zp : zero_points) {
          const aplq::format_desc d{bits, g, zp, aplq::scale_kind::f32,
                                    aplq::layout_kind::cpu_striped};
          for (index_t b : batches)
            for (auto policy : {aplq::compute::exact, aplq::compute::int8})
              for (int t : thread_counts)
                register_case(d, s, b, policy, t, true, false);
          // The table-lookup kernels of 1- and 2-bit formats.
          if (bits <= 2)
            for (index_t b : batches)
              for (auto policy : {aplq::compute::exact, aplq::compute::int8})
                for (int t : thread_counts)
                  register_case(d, s, b, policy, t, true, true);
        }
    for (index_t b : batches)
      for (bool blas : {false, true})
        for (int t : thread_counts) {
          const std::string name = std::string("baseline/") + (blas ? "openblas" : "f32_xsimd") +
                                   "/" + sn + "/b" + std::to_string(b) + "/t" + std::to_string(t) +
                                   "/ooc";
          benchmark::RegisterBenchmark(name.c_str(), bm_f32, blas, s, b, t, true)->UseRealTime();
        }
  }

  // In-cache GEMV: the kernels' compute speed with no memory stall.
  const shape small{1024, 1024};
  for (int bits : {1, 2, 4, 8}) {
    const aplq::format_desc d{bits, 32, false, aplq::scale_kind::f32,
                              aplq::layout_kind::cpu_striped};
    for (auto policy : {aplq::compute::exact, aplq::compute::int8})
      register_case(d, small, 1, policy, 1, false, false);
    if (bits <= 2)
      register_case(d, small, 1, aplq::compute::int8, 1, false, true);
  }
  benchmark::RegisterBenchmark("baseline/f32_xsimd/1024x1024/b1/t1/inc", bm_f32, false, small,
                               index_t{1}, 1, false)
      ->UseRealTime();

  const shape qs{1024, 4096};
  for (int bits : (quick ? std::vector<int>{4} : std::vector<int>{1, 2, 4, 8})) {
    const aplq::format_desc d{bits, 128, false, aplq::scale_kind::f32,
                              aplq::layout_kind::sequential};
    benchmark::RegisterBenchmark(
        ("quantize/" + std::string(aplq::name_of(d).c_str()) + "/" + shape_name(qs)).c_str(),
        bm_quantize, d, qs);
    benchmark::RegisterBenchmark(
        ("repack/" + std::string(aplq::name_of(d).c_str()) + "_to_s32/" + shape_name(qs)).c_str(),
        bm_repack, d, qs);
  }
}

} // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0)
      quick = true;
    else
      args.push_back(argv[i]);
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data()))
    return 2;

  for (int t : {1, all_threads()})
    triad_bandwidth[t] = measure_triad(t);
  benchmark::AddCustomContext("isa", aplq::dispatch::isa_name(aplq::dispatch::selected()));
  benchmark::AddCustomContext("llc_bytes", std::to_string(last_level_cache()));
  for (const auto& [t, bw] : triad_bandwidth)
    benchmark::AddCustomContext("triad_GBps_t" + std::to_string(t), std::to_string(bw * 1e-9));

  register_all(quick);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
