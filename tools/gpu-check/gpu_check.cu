// SPDX-License-Identifier: Apache-2.0
// aplq-gpu-check: one run of a few minutes on a GPU machine that says whether the CUDA kernels
// are right and how fast they are. It prints the device; checks aplq::cuda::gemv and gemm for
// every sequential format (bits x group x zero point x scale type) on odd shapes, in the
// sequential layout (batches 1, 3, 8 and 9, 40) and the tiled one (1, 2, 3, 5, 8, 9, 16, 17, 40),
// against the double-precision oracle aplq::ref::gemm (outputs poisoned with NaN, the f32
// summation bound of each kernel per output (tests/cuda/oracle.hpp), rel-L2 <= 1e-6); measures
// device-to-device copy bandwidth; and times gemm in both layouts on LLM shapes with CUDA events
// (warm-up, median of many launches, weight buffers rotated so the working set exceeds twice the
// L2). The cuBLAS fp16 baseline is taken by gpu_check.py through PyTorch (the toolkit has no
// static cuBLAS, and the binary links cudart statically so that it needs only the driver).
//
//   aplq-gpu-check [--quick] [--json PATH] [--seed N]
//
// Exit status: 0 all checks passed, 1 a correctness check failed or a run-time error, 2 bad
// arguments, 77 no CUDA device.
#include <aplq/cuda/matmul.cuh>
#include <aplq/io/output_file.hpp>
#include <aplq/quantize.hpp>

#include "oracle.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iterator>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using aplq::index_t;

struct arguments {
  bool quick = false;
  std::string json; // empty: no JSON
  bool seed_given = false;
  std::uint64_t seed = 0;
};

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

arguments parse(int argc, char** argv) {
  arguments a;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (arg == "-h" || arg == "--help") {
      std::printf("usage: aplq-gpu-check [--quick] [--json PATH] [--seed N]\n"
                  "  --quick      fewer correctness shapes and timed launches\n"
                  "  --json PATH  also write every result to PATH\n"
                  "  --seed N     random seed of the correctness data (default: fresh)\n"
                  "exit status: 0 pass, 1 failure or error, 2 bad arguments, 77 no CUDA device\n");
      std::exit(0);
    }
    const std::size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    } else if (arg == "--json" || arg == "--seed") {
      if (i + 1 >= argc)
        throw usage_error(arg + " needs a value");
      value = argv[++i];
    }
    if (arg == "--quick" && eq == std::string::npos) {
      a.quick = true;
    } else if (arg == "--json") {
      if (value.empty())
        throw usage_error("--json needs a path");
      a.json = value;
    } else if (arg == "--seed") {
      char* end = nullptr;
      errno = 0;
      const unsigned long long v = std::strtoull(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || errno == ERANGE || value[0] == '-')
        throw usage_error("--seed expects a non-negative integer, got '" + value + "'");
      a.seed = v;
      a.seed_given = true;
    } else {
      throw usage_error("unknown argument '" + std::string(argv[i]) + "' (try --help)");
    }
  }
  return a;
}

void cuda_check(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess)
    throw std::runtime_error(what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                             ")");
}

// A raw device allocation.
struct device_buffer {
  void* p = nullptr;
  std::size_t size = 0;
  device_buffer() = default;
  explicit device_buffer(std::size_t n, const std::string& what) : size(n) {
    cuda_check(cudaMalloc(&p, n == 0 ? 1 : n),
               "cudaMalloc of " + std::to_string(n) + " bytes for " + what);
  }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  ~device_buffer() {
    if (p != nullptr)
      cudaFree(p);
  }
  template <class T>
  T* get(std::size_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<std::uint8_t*>(p) + byte_offset);
  }
};

template <class T>
void upload(const device_buffer& d, std::size_t byte_offset, const std::vector<T>& v) {
  if (!v.empty())
    cuda_check(cudaMemcpy(d.get<std::uint8_t>(byte_offset), v.data(), v.size() * sizeof(T),
                          cudaMemcpyHostToDevice),
               "cudaMemcpy to the device");
}

struct event_pair {
  cudaEvent_t start = nullptr, stop = nullptr;
  event_pair() {
    cuda_check(cudaEventCreate(&start), "cudaEventCreate");
    cuda_check(cudaEventCreate(&stop), "cudaEventCreate");
  }
  event_pair(const event_pair&) = delete;
  event_pair& operator=(const event_pair&) = delete;
  event_pair(event_pair&& o) noexcept : start(o.start), stop(o.stop) { o.start = o.stop = nullptr; }
  ~event_pair() {
    if (start != nullptr)
      cudaEventDestroy(start);
    if (stop != nullptr)
      cudaEventDestroy(stop);
  }
  float ms() const {
    float t = 0.0f;
    cuda_check(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    return t;
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

// ---- JSON (a small writer: the binary must not depend on packages the GPU machine lacks) ----

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
    case '"': out += "\\\""; break;
    case '\\': out += "\\\\"; break;
    case '\n': out += "\\n"; break;
    case '\t': out += "\\t"; break;
    default:
      if (static_cast<unsigned char>(c) < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
        out += buf;
      } else {
        out += c;
      }
    }
  }
  return out + "\"";
}

std::string json_number(double v) {
  if (!std::isfinite(v))
    return "null";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// ---- 1. device ----

struct device_info {
  std::string name;
  int major = 0, minor = 0, sms = 0;
  std::size_t memory = 0, free_memory = 0, l2 = 0;
};

device_info describe_device() {
  cuda_check(cudaSetDevice(0), "cudaSetDevice(0)");
  cudaDeviceProp prop{};
  cuda_check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  device_info d;
  d.name = prop.name;
  d.major = prop.major;
  d.minor = prop.minor;
  d.sms = prop.multiProcessorCount;
  d.memory = prop.totalGlobalMem;
  d.l2 = static_cast<std::size_t>(prop.l2CacheSize);
  std::size_t total = 0;
  cuda_check(cudaMemGetInfo(&d.free_memory, &total), "cudaMemGetInfo");
  std::printf("device 0: %s, sm_%d%d, %d SMs, %.1f GiB memory (%.1f GiB free), L2 %.1f MiB\n",
              d.name.c_str(), d.major, d.minor, d.sms, d.memory / 1073741824.0,
              d.free_memory / 1073741824.0, d.l2 / 1048576.0);
  return d;
}

// ---- 2. correctness ----

struct shape {
  index_t m, k;
};
// 1x1; K and rows off the group and off bytes; K not a multiple of 16 bytes; large K.
constexpr shape check_shapes[] = {{1, 1}, {3, 37}, {67, 300}, {129, 4100}, {16, 65536}};
constexpr index_t check_batches[] = {1, 3, 8};    // gemv, sequential
constexpr index_t check_gemm_batches[] = {9, 40}; // gemm, sequential: the GEMM kernel
constexpr index_t check_tiled_batches[] = {1, 2, 3, 5, 8, 9, 16, 17, 40};
constexpr index_t max_check_batch = 40;
constexpr index_t guard = 64; // floats past the outputs that must stay NaN

struct bits_tally {
  int checks = 0;
  int failures = 0;
};

struct correctness {
  std::uint64_t seed = 0;
  bits_tally by_bits[9];             // indexed by bit width
  std::vector<std::string> failures; // the first few, one line each
  int total_failures = 0;
};

// Checks one format on one shape: the sequential layout through gemv (batches 1, 3, 8; codes on
// and off 16-byte boundaries) and gemm (batches 9 and 40: the GEMM kernel), both through the
// run-time-format launchers (one set of kernel instantiations); the tiled layout, packed on the
// host, through the typed gemm (batches 1, 2, 3, 5, 8, 9, 16, 17, 40: the tensor-core kernel with
// 1 and 2 n-tiles, and several launches).
template <class F>
void check_format(const shape& sh, std::uint64_t salt, correctness& result) {
  using scale_type = typename F::scale_type;
  namespace check = aplq::cuda_check;
  std::mt19937_64 gen(result.seed ^ (salt * 0x9e3779b97f4a7c15ull));
  check::gemv_case<F> c;
  if (aplq::status s = check::make_case<F>(sh.m, sh.k, gen, c, max_check_batch);
      s != aplq::status::ok)
    throw std::runtime_error(std::string("test data: ") + aplq::status_string(s));
  const aplq::qmatrix<F>& q = c.q;
  aplq::cuda::tiled_matrix<F> tiled;
  if (aplq::status s = tiled.pack(q.view()); s != aplq::status::ok)
    throw std::runtime_error(std::string("tiled repack: ") + aplq::status_string(s));

  const std::size_t codes_bytes = q.codes().size();
  const device_buffer d_codes(codes_bytes + 16, "codes");
  const device_buffer d_scales(q.scales().size() * sizeof(scale_type), "scales");
  const device_buffer d_zeros(q.zeros().size() * sizeof(scale_type), "zero points");
  const device_buffer dt_codes(tiled.codes().size(), "tiled codes");
  const device_buffer dt_scales(tiled.scales().size() * sizeof(scale_type), "tiled scales");
  const device_buffer dt_zeros(tiled.zeros().size() * sizeof(scale_type), "tiled zero points");
  const device_buffer d_x(c.x.size() * sizeof(float), "activations");
  const std::size_t y_count = static_cast<std::size_t>(max_check_batch * sh.m + guard);
  const device_buffer d_y(y_count * sizeof(float), "outputs");
  upload(d_scales, 0, q.scales());
  upload(d_zeros, 0, q.zeros());
  upload(dt_codes, 0, tiled.codes());
  upload(dt_scales, 0, tiled.scales());
  upload(dt_zeros, 0, tiled.zeros());
  upload(d_x, 0, c.x);
  std::vector<float> y(y_count);
  const aplq::format_desc desc = aplq::describe<F>();
  const std::string name = aplq::name_of<F>().c_str();
  bits_tally& tally = result.by_bits[F::bits];

  // One launch into NaN-poisoned outputs, checked against the oracle within the bound of the
  // kernel it runs.
  auto check_launch = [&](const std::string& what, index_t n, check::kernel which, auto&& launch) {
    // All bits set: every float is a NaN until the kernel writes it.
    cuda_check(cudaMemset(d_y.p, 0xff, y_count * sizeof(float)), "cudaMemset");
    cudaError_t error = cudaErrorUnknown;
    const aplq::status s = launch(d_y.get<float>(), &error);
    cuda_check(error, "launch of " + what + " " + name);
    cuda_check(cudaDeviceSynchronize(), what + " " + name);
    cuda_check(cudaMemcpy(y.data(), d_y.p, y_count * sizeof(float), cudaMemcpyDeviceToHost),
               "cudaMemcpy to the host");

    const check::outcome o = check::compare(c, n, y, which);

    std::string why;
    if (s != aplq::status::ok)
      why = std::string("status ") + aplq::status_string(s);
    else if (o.worst >= 0)
      why = std::to_string(o.out_of_bound) + " outputs beyond the bound, worst " +
            std::to_string(o.worst) + " (y=" + json_number(y[o.worst]) +
            ", expected=" + json_number(c.expect[o.worst]) + ")";
    else if (!o.rel_l2_ok())
      why = "rel-L2 " + json_number(o.rel_l2) + " > 1e-6";
    else if (o.touched != 0)
      why = std::to_string(o.touched) + " floats past the outputs written";
    ++tally.checks;
    if (!why.empty()) {
      ++tally.failures;
      ++result.total_failures;
      if (result.failures.size() < 20)
        result.failures.push_back(what + " " + name + " M=" + std::to_string(sh.m) + " K=" +
                                  std::to_string(sh.k) + " N=" + std::to_string(n) + ": " + why);
    }
  };

  for (std::size_t offset : {std::size_t{0}, std::size_t{7}}) {
    upload(d_codes, offset, q.codes());
    const aplq::any_qmatrix_view view{desc,
                                      d_codes.get<std::uint8_t>(offset),
                                      d_scales.get<void>(),
                                      F::zero_point ? d_zeros.get<void>() : nullptr,
                                      sh.m,
                                      sh.k};
    const std::string where = "(codes offset " + std::to_string(offset) + ")";
    for (index_t n : check_batches)
      check_launch("gemv " + where, n, check::kernel::gemv_sequential,
                   [&](float* out, cudaError_t* error) {
                     return aplq::cuda::gemv(view, d_x.get<float>(), n, out, 0, error);
                   });
    for (index_t n : check_gemm_batches)
      check_launch("gemm " + where, n, check::kernel::gemm, [&](float* out, cudaError_t* error) {
        return aplq::cuda::gemm(view, d_x.get<float>(), n, out, 0, error);
      });
  }
  const aplq::cuda::tiled_view<F> tv =
      tiled.view_of(dt_codes.get<std::uint8_t>(), dt_scales.get<scale_type>(),
                    F::zero_point ? dt_zeros.get<scale_type>() : nullptr);
  for (index_t n : check_tiled_batches)
    check_launch("gemm (tiled)", n, check::gemm_kernel(n, true),
                 [&](float* out, cudaError_t* error) {
                   return aplq::cuda::gemm(tv, d_x.get<float>(), n, out, 0, error);
                 });
}

correctness check_all(bool quick, std::uint64_t seed) {
  correctness result;
  result.seed = seed;
  std::printf("\ncorrectness: aplq::cuda::gemv and gemm, sequential and tiled layouts, vs "
              "aplq::ref::gemm (double), seed %llu\n",
              static_cast<unsigned long long>(seed));
  for (int bits : {1, 2, 4, 8}) {
    std::uint64_t salt = static_cast<std::uint64_t>(bits) * 1000;
    int formats = 0;
    for (int group : {32, 64, 128, 256, aplq::whole_row})
      for (bool zp : {false, true})
        for (auto sc : {aplq::scale_kind::f32, aplq::scale_kind::f16}) {
          const aplq::format_desc d{bits, group, zp, sc, aplq::layout_kind::sequential};
          ++formats;
          for (const shape& sh : check_shapes) {
            if (quick && sh.k > 4096)
              continue;
            const aplq::status s = aplq::visit_format(d, [&](auto fmt) -> aplq::status {
              using F = decltype(fmt);
              if constexpr (std::is_same<typename F::layout_type, aplq::layout::sequential>::value)
                check_format<F>(sh, ++salt, result);
              return aplq::status::ok;
            });
            if (s != aplq::status::ok)
              throw std::runtime_error(std::string("visit_format: ") + aplq::status_string(s));
          }
        }
    const bits_tally& t = result.by_bits[bits];
    std::printf("  %s q%d: %d formats, %d checks, %d failed\n", t.failures == 0 ? "PASS" : "FAIL",
                bits, formats, t.checks, t.failures);
    std::fflush(stdout);
  }
  for (const std::string& f : result.failures)
    std::printf("  failed: %s\n", f.c_str());
  if (result.total_failures > static_cast<int>(result.failures.size()))
    std::printf("  ... and %d more failures\n",
                result.total_failures - static_cast<int>(result.failures.size()));
  return result;
}

// ---- 3. copy bandwidth ----

struct copy_result {
  std::size_t bytes = 0;
  int reps = 0;
  double median_ms = 0.0;
  double gb_per_s = 0.0; // 2 x bytes / time: read + write, as STREAM copy counts
};

copy_result measure_copy(bool quick, std::size_t free_memory) {
  copy_result c;
  c.bytes = std::size_t{1} << 30;
  while (c.bytes > (std::size_t{16} << 20) && 2 * c.bytes > free_memory / 10 * 8)
    c.bytes /= 2;
  const device_buffer src(c.bytes, "the copy source"), dst(c.bytes, "the copy destination");
  cuda_check(cudaMemset(src.p, 0x5a, c.bytes), "cudaMemset");
  c.reps = quick ? 10 : 20;
  for (int i = 0; i < 3; ++i)
    cuda_check(cudaMemcpyAsync(dst.p, src.p, c.bytes, cudaMemcpyDeviceToDevice, 0), "warm-up copy");
  std::vector<event_pair> events(static_cast<std::size_t>(c.reps));
  for (auto& e : events) {
    cuda_check(cudaEventRecord(e.start, 0), "cudaEventRecord");
    cuda_check(cudaMemcpyAsync(dst.p, src.p, c.bytes, cudaMemcpyDeviceToDevice, 0), "copy");
    cuda_check(cudaEventRecord(e.stop, 0), "cudaEventRecord");
  }
  cuda_check(cudaDeviceSynchronize(), "device-to-device copies");
  std::vector<double> ms;
  for (const auto& e : events)
    ms.push_back(e.ms());
  c.median_ms = median(ms);
  c.gb_per_s = 2.0 * static_cast<double>(c.bytes) / (c.median_ms * 1e-3) / 1e9;
  std::printf("\ncopy bandwidth: cudaMemcpy device-to-device of %.0f MiB, median of %d: %.3f ms, "
              "%.1f GB/s (counted as read + write, 2 x bytes / time, as STREAM copy)\n",
              c.bytes / 1048576.0, c.reps, c.median_ms, c.gb_per_s);
  return c;
}

// ---- 4. timing ----

constexpr shape timed_shapes[] = {{4096, 4096}, {4096, 14336}, {14336, 4096}, {8192, 28672}};
constexpr index_t timed_batches[] = {1, 4, 16, 64};
using timed_q4 = aplq::format<4, 128, false, aplq::half>;
using timed_q8 = aplq::format<8, 128, false, aplq::half>;
using timed_q2 = aplq::format<2, 128, false, aplq::half>;
using timed_q1 = aplq::format<1, 128, false, aplq::half>;
template <class Fn>
void for_each_timed_format(Fn&& fn) {
  fn(timed_q4{});
  fn(timed_q8{});
  fn(timed_q2{});
  fn(timed_q1{});
}

struct timing {
  index_t m = 0, k = 0, n = 0;
  std::string format;
  std::string status = "ok"; // or why there is no time
  double median_us = 0.0, min_us = 0.0;
  double bytes = 0.0; // packed codes + scales (+ zeros) + activations (f32 or f16) + outputs f32
  double gb_per_s = 0.0;
  int copies = 0, reps = 0;
};

// Pseudo-random bytes: timing does not depend on the code values.
__global__ void fill_bytes(std::uint8_t* p, std::size_t n, std::uint32_t seed) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    std::uint32_t h = static_cast<std::uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    p[i] = static_cast<std::uint8_t>(h);
  }
}

// f16 scales in [2^-7, 2^-6): finite and of a realistic size.
__global__ void fill_scales(std::uint16_t* p, std::size_t n, std::uint32_t seed) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    p[i] = static_cast<std::uint16_t>(0x2000u |
                                      ((static_cast<std::uint32_t>(i) * 40503u ^ seed) & 0x3ffu));
}

// Activations in [-1, 1], as float or as f16 (aplq::half bits).
__device__ float fill_value(std::size_t i) {
  return static_cast<float>(static_cast<int>((i * 2654435761u) % 2001u) - 1000) * 1e-3f;
}
__device__ void store_activation(float* p, float v) { *p = v; }
__device__ void store_activation(aplq::half* p, float v) {
  p->bits = __half_as_ushort(__float2half_rn(v));
}
template <class X>
__global__ void fill_activations(X* p, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    store_activation(p + i, fill_value(i));
}

// Times aplq::cuda::gemm on one shape for every timed batch: W in the sequential layout (the
// sequential GEMV kernel up to 8 rows, the GEMM kernel above) or in the tiled one (the tensor-core
// kernel, a launch per 5 f32 or 16 f16 rows); activations of type X (float or aplq::half).
template <class F, bool Tiled, class X = float>
void time_format(const shape& sh, const device_info& dev, bool quick, std::vector<timing>& out) {
  using scale_type = typename F::scale_type;
  aplq::storage_sizes sz;
  if (aplq::storage_of<F>(sh.m, sh.k, sz) != aplq::status::ok)
    throw std::runtime_error("storage_of: bad shape");
  if (Tiled) { // the tiled layout stores whole tiles and units
    const aplq::cuda::tiled_view<F> shape_only{nullptr, nullptr, nullptr, sh.m, sh.k};
    sz.codes_bytes = shape_only.code_bytes();
    sz.scales_bytes = shape_only.scale_count() * static_cast<index_t>(sizeof(scale_type));
  }
  constexpr std::size_t align = 256;
  const auto round_up = [](std::size_t v) { return (v + align - 1) / align * align; };
  const std::size_t codes = round_up(static_cast<std::size_t>(sz.codes_bytes));
  const std::size_t scales = round_up(static_cast<std::size_t>(sz.scales_bytes));
  const std::size_t per_copy = codes + scales; // symmetric formats: no zero points
  static_assert(!F::zero_point, "the timed formats are symmetric");

  // Enough copies that the working set exceeds twice the L2, within 80% of free memory.
  std::size_t free_memory = 0, total = 0;
  cuda_check(cudaMemGetInfo(&free_memory, &total), "cudaMemGetInfo");
  const index_t max_n = timed_batches[std::size(timed_batches) - 1];
  const std::size_t io_bytes = static_cast<std::size_t>(max_n * sh.k) * sizeof(X) +
                               static_cast<std::size_t>(max_n * sh.m) * sizeof(float);
  const std::size_t budget = free_memory / 10 * 8 > io_bytes ? free_memory / 10 * 8 - io_bytes : 0;
  std::size_t copies = std::max<std::size_t>(2, (2 * dev.l2 + per_copy - 1) / per_copy + 1);
  copies = std::min(copies, budget / per_copy);
  std::string name = aplq::name_of<F>().c_str();
  if (Tiled) // q4_g128_f16_seq -> q4_g128_f16_tiled
    name = name.substr(0, name.rfind('_')) + "_tiled";
  if (std::is_same<X, aplq::half>::value) // f16 activations, as the cuBLAS baseline's
    name += "_xf16";
  const int warmup = 5, reps = quick ? 30 : 100;

  auto record = [&](index_t n, const std::string& status) {
    timing t;
    t.m = sh.m;
    t.k = sh.k;
    t.n = n;
    t.format = name;
    t.status = status;
    t.bytes = static_cast<double>(sz.codes_bytes + sz.scales_bytes + sz.zeros_bytes) +
              static_cast<double>(n * sh.k) * sizeof(X) +
              static_cast<double>(n * sh.m) * sizeof(float);
    t.copies = static_cast<int>(copies);
    t.reps = reps;
    out.push_back(t);
    return out.size() - 1;
  };
  if (copies == 0) {
    for (index_t n : timed_batches)
      record(n, "n/a (does not fit in device memory)");
    return;
  }

  const device_buffer slab(copies * per_copy, "weight copies");
  const device_buffer d_x(static_cast<std::size_t>(max_n * sh.k) * sizeof(X), "activations");
  const device_buffer d_y(static_cast<std::size_t>(max_n * sh.m) * sizeof(float), "outputs");
  fill_bytes<<<1024, 256>>>(slab.get<std::uint8_t>(), slab.size, 0x1234567u);
  for (std::size_t c = 0; c < copies; ++c)
    fill_scales<<<256, 256>>>(slab.get<std::uint16_t>(c * per_copy + codes),
                              static_cast<std::size_t>(sz.scales_bytes) / sizeof(scale_type),
                              static_cast<std::uint32_t>(c));
  fill_activations<X><<<256, 256>>>(d_x.get<X>(), static_cast<std::size_t>(max_n * sh.k));
  cuda_check(cudaGetLastError(), "fill kernels");
  cuda_check(cudaDeviceSynchronize(), "fill kernels");

  using view_type = std::conditional_t<Tiled, aplq::cuda::tiled_view<F>, aplq::qmatrix_view<F>>;
  std::vector<view_type> views;
  for (std::size_t c = 0; c < copies; ++c)
    views.push_back({slab.get<std::uint8_t>(c * per_copy),
                     slab.get<scale_type>(c * per_copy + codes), nullptr, sh.m, sh.k});

  for (index_t n : timed_batches) {
    const std::size_t row = record(n, "ok");
    std::size_t next = 0;
    auto launch = [&] {
      cudaError_t error = cudaSuccess;
      const aplq::status s =
          aplq::cuda::gemm(views[next], d_x.get<X>(), n, d_y.get<float>(), 0, &error);
      next = (next + 1) % copies;
      cuda_check(error, "launch of gemm " + name);
      if (s != aplq::status::ok)
        throw std::runtime_error("gemm " + name + ": " + aplq::status_string(s));
    };
    for (int i = 0; i < warmup; ++i)
      launch();
    std::vector<event_pair> events(static_cast<std::size_t>(reps));
    for (auto& e : events) {
      cuda_check(cudaEventRecord(e.start, 0), "cudaEventRecord");
      launch();
      cuda_check(cudaEventRecord(e.stop, 0), "cudaEventRecord");
    }
    cuda_check(cudaDeviceSynchronize(), "gemm " + name);
    std::vector<double> us;
    for (const auto& e : events)
      us.push_back(1e3 * e.ms());
    timing& t = out[row];
    t.median_us = median(us);
    t.min_us = *std::min_element(us.begin(), us.end());
    t.gb_per_s = t.bytes / (t.median_us * 1e-6) / 1e9;
  }
}

std::vector<timing> time_all(const device_info& dev, bool quick, const copy_result& copy) {
  std::printf("\ntiming: CUDA events, warm-up 5, median of %d launches, weights rotated over "
              "copies > 2 x L2\n",
              quick ? 30 : 100);
  std::printf(
      "  GB/s counts packed codes + scales + activations (f32, f16 for _xf16) + outputs f32; "
      "copy%% is the share of the measured copy bandwidth\n");
  std::printf("  %-12s %5s  %-22s %10s %9s %7s %7s\n", "M x K", "batch", "format", "time (us)",
              "GB/s", "copy%", "copies");
  std::vector<timing> all;
  for (const shape& sh : timed_shapes) {
    const std::size_t first = all.size();
    for_each_timed_format([&](auto fmt) {
      using F = decltype(fmt);
      time_format<F, false>(sh, dev, quick, all);
      time_format<F, true>(sh, dev, quick, all);
    });
    // 4-bit with f16 activations, like the baseline's.
    time_format<timed_q4, true, aplq::half>(sh, dev, quick, all);
    // Print by batch, then format.
    for (index_t n : timed_batches)
      for (std::size_t i = first; i < all.size(); ++i) {
        const timing& t = all[i];
        if (t.n != n)
          continue;
        const std::string mk = std::to_string(t.m) + "x" + std::to_string(t.k);
        if (t.status == "ok")
          std::printf("  %-12s %5lld  %-22s %10.2f %9.1f %6.1f%% %7d\n", mk.c_str(),
                      static_cast<long long>(t.n), t.format.c_str(), t.median_us, t.gb_per_s,
                      100.0 * t.gb_per_s / copy.gb_per_s, t.copies);
        else
          std::printf("  %-12s %5lld  %-22s %s\n", mk.c_str(), static_cast<long long>(t.n),
                      t.format.c_str(), t.status.c_str());
      }
    std::fflush(stdout);
  }
  return all;
}

// ---- 5. JSON ----

void write_json(const std::string& path, bool quick, const device_info& dev, const correctness& c,
                const copy_result& copy, const std::vector<timing>& ts) {
  std::string j = "{\n";
  j += "  \"tool\": \"aplq-gpu-check\",\n";
  j += "  \"version\": " + json_string(APLQ_VERSION_STRING) + ",\n";
  j += "  \"quick\": " + std::string(quick ? "true" : "false") + ",\n";
  j += "  \"device\": {\"name\": " + json_string(dev.name) + ", \"sm\": \"" +
       std::to_string(dev.major) + std::to_string(dev.minor) +
       "\", \"sms\": " + std::to_string(dev.sms) +
       ", \"memory_bytes\": " + std::to_string(dev.memory) +
       ", \"free_memory_bytes\": " + std::to_string(dev.free_memory) +
       ", \"l2_bytes\": " + std::to_string(dev.l2) + "},\n";
  j += "  \"copy\": {\"bytes\": " + std::to_string(copy.bytes) +
       ", \"reps\": " + std::to_string(copy.reps) +
       ", \"median_ms\": " + json_number(copy.median_ms) +
       ", \"gb_per_s\": " + json_number(copy.gb_per_s) +
       ", \"counting\": \"read + write: 2 x bytes / time\"},\n";
  j += "  \"correctness\": {\"passed\": " + std::string(c.total_failures == 0 ? "true" : "false") +
       ", \"seed\": " + std::to_string(c.seed) +
       ", \"total_failures\": " + std::to_string(c.total_failures) + ", \"by_bits\": [";
  bool first = true;
  for (int bits : {1, 2, 4, 8}) {
    j += std::string(first ? "" : ", ") + "{\"bits\": " + std::to_string(bits) +
         ", \"checks\": " + std::to_string(c.by_bits[bits].checks) +
         ", \"failures\": " + std::to_string(c.by_bits[bits].failures) + "}";
    first = false;
  }
  j += "], \"failures\": [";
  for (std::size_t i = 0; i < c.failures.size(); ++i)
    j += (i ? ", " : "") + json_string(c.failures[i]);
  j += "]},\n  \"timings\": [\n";
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const timing& t = ts[i];
    const bool ok = t.status == "ok";
    j += "    {\"m\": " + std::to_string(t.m) + ", \"k\": " + std::to_string(t.k) +
         ", \"n\": " + std::to_string(t.n) + ", \"format\": " + json_string(t.format) +
         ", \"status\": " + json_string(t.status) +
         ", \"median_us\": " + (ok ? json_number(t.median_us) : "null") +
         ", \"min_us\": " + (ok ? json_number(t.min_us) : "null") +
         ", \"bytes\": " + json_number(t.bytes) +
         ", \"gb_per_s\": " + (ok ? json_number(t.gb_per_s) : "null") +
         ", \"copies\": " + std::to_string(t.copies) + ", \"reps\": " + std::to_string(t.reps) +
         "}" + (i + 1 < ts.size() ? ",\n" : "\n");
  }
  j += "  ]\n}\n";
  aplq::io::output_file f;
  if (aplq::io::error e = f.open(path))
    throw std::runtime_error(e.message);
  if (aplq::io::error e = f.write(j.data(), j.size()))
    throw std::runtime_error(e.message);
  if (aplq::io::error e = f.commit())
    throw std::runtime_error(e.message);
  std::printf("\nwrote %s\n", path.c_str());
}

int run(const arguments& args) {
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ||
      (e == cudaSuccess && devices == 0)) {
    std::printf("aplq-gpu-check: no CUDA device, nothing checked (%s)\n",
                e == cudaSuccess ? "no devices found" : cudaGetErrorString(e));
    return 77;
  }
  cuda_check(e, "cudaGetDeviceCount");
  const device_info dev = describe_device();
  const std::uint64_t seed =
      args.seed_given
          ? args.seed
          : (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  const correctness c = check_all(args.quick, seed);
  const copy_result copy = measure_copy(args.quick, dev.free_memory);
  const std::vector<timing> ts = time_all(dev, args.quick, copy);
  if (!args.json.empty())
    write_json(args.json, args.quick, dev, c, copy, ts);
  if (c.total_failures != 0) {
    std::printf("\nFAIL: %d correctness checks failed (replay with --seed %llu)\n",
                c.total_failures, static_cast<unsigned long long>(seed));
    return 1;
  }
  std::printf("\nPASS: every correctness check passed\n");
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const usage_error& e) {
    std::fprintf(stderr, "aplq-gpu-check: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "aplq-gpu-check: error: %s\n", e.what());
    return 1;
  }
}
