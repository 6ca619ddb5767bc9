// SPDX-License-Identifier: Apache-2.0
// aplq-demo: quantizes a random Gaussian matrix W [rows, cols] at 1, 2, 4 and 8 bits (groups of
// 128, both layouts) and, for each format, reports the two accuracy questions kept apart in
// DESIGN.md — quantization error (W_q x against the FP32 W x) and kernel error (aplq::gemv against
// the oracle aplq::ref::gemv on the same quantized weights, for both compute policies) — and the
// GEMV time and effective bandwidth over the packed weights. A quick look, not the benchmark suite.
//
//   aplq-demo [--rows N] [--cols N] [--threads N] [--seed N]
#include <aplq/dispatch.hpp>
#include <aplq/matmul.hpp>
#include <aplq/validate.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct arguments {
  aplq::index_t rows = 1024;
  aplq::index_t cols = 4096;
  int threads = 1; // <= 0: all cores
  unsigned long long seed = 1;
};

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

long long parse_int(const std::string& name, const std::string& text, long long lo, long long hi) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE || v < lo || v > hi)
    throw usage_error(name + " expects an integer in [" + std::to_string(lo) + ", " +
                      std::to_string(hi) + "], got '" + text + "'");
  return v;
}

// Accepts "--name value" and "--name=value".
arguments parse(int argc, char** argv) {
  arguments a;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (arg == "-h" || arg == "--help") {
      std::printf("usage: aplq-demo [--rows N] [--cols N] [--threads N] [--seed N]\n"
                  "  --rows N     rows of W (default 1024)\n"
                  "  --cols N     columns of W, the length of x (default 4096)\n"
                  "  --threads N  kernel threads, 0 for all cores (default 1)\n"
                  "  --seed N     random seed (default 1)\n");
      std::exit(0);
    }
    const std::size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    } else if (arg == "--rows" || arg == "--cols" || arg == "--threads" || arg == "--seed") {
      if (i + 1 >= argc)
        throw usage_error(arg + " needs a value");
      value = argv[++i];
    }
    if (arg == "--rows")
      a.rows = parse_int(arg, value, 1, 1 << 20);
    else if (arg == "--cols")
      a.cols = parse_int(arg, value, 1, 1 << 20);
    else if (arg == "--threads")
      a.threads = static_cast<int>(parse_int(arg, value, 0, 4096));
    else if (arg == "--seed")
      a.seed = static_cast<unsigned long long>(parse_int(arg, value, 0, 1LL << 62));
    else
      throw usage_error("unknown argument '" + std::string(argv[i]) + "' (try --help)");
  }
  return a;
}

void check(aplq::status s, const char* what) {
  if (s != aplq::status::ok)
    throw std::runtime_error(std::string(what) + ": " + aplq::status_string(s));
}

struct problem {
  arguments args;
  std::vector<float> w;     // [rows, cols]
  std::vector<float> x;     // [cols]
  std::vector<double> y_fp; // [rows], W x in double
};

struct policy_result {
  double kernel_err = 0.0;
  double micros = 0.0; // median
};

// Runs GEMV (run-time dispatch) under one policy: its error against the oracle and its median time.
template <class Format>
policy_result run_policy(const problem& p, const aplq::qmatrix<Format>& q,
                         const std::vector<double>& y_ref, aplq::compute policy) {
  aplq::options opt;
  opt.threads = p.args.threads;
  opt.policy = policy;
  std::vector<float> y(static_cast<std::size_t>(p.args.rows)); // [rows]
  // The run-time dispatch picks the best instruction set this CPU has.
  const aplq::any_qmatrix_view w = aplq::dispatch::erase(q.view());
  check(aplq::dispatch::gemv(w, p.x.data(), y.data(), opt), "gemv");

  policy_result r;
  r.kernel_err = aplq::validate::rel_l2(y, y_ref);

  // At least 5 timed runs and about 0.2 s of them, at most 1000.
  using clock = std::chrono::steady_clock;
  std::vector<double> times;
  const auto start = clock::now();
  while (times.size() < 5 ||
         (times.size() < 1000 && clock::now() - start < std::chrono::milliseconds(200))) {
    const auto t0 = clock::now();
    aplq::dispatch::gemv(w, p.x.data(), y.data(), opt);
    times.push_back(std::chrono::duration<double, std::micro>(clock::now() - t0).count());
  }
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  r.micros = times[times.size() / 2];
  return r;
}

// Returns false when the exact kernel misses the 1e-6 contract of DESIGN.md.
template <class Format>
bool run_format(const problem& p) {
  const arguments& a = p.args;
  aplq::qmatrix<Format> q;
  check(aplq::quantize<Format>(p.w.data(), a.rows, a.cols, q), "quantize");

  std::vector<double> y_ref(static_cast<std::size_t>(a.rows)); // [rows], W_q x in double
  check(aplq::ref::gemv(q.view(), p.x.data(), y_ref.data()), "ref::gemv");
  const double quant_err = aplq::validate::rel_l2(y_ref, p.y_fp);

  const policy_result exact = run_policy(p, q, y_ref, aplq::compute::exact);
  const policy_result int8 = run_policy(p, q, y_ref, aplq::compute::int8);

  const double bytes = static_cast<double>(q.codes().size()) +
                       static_cast<double>((q.scales().size() + q.zeros().size()) *
                                           sizeof(typename Format::scale_type));
  std::printf("%4d  %-12s  %9.2e  %9.2e  %9.2e  %9.1f  %9.1f  %8.2f  %8.2f\n", Format::bits,
              aplq::name_of<Format>().c_str(), quant_err, exact.kernel_err, int8.kernel_err,
              exact.micros, int8.micros, bytes / exact.micros * 1e-3, bytes / int8.micros * 1e-3);
  std::fflush(stdout);
  return exact.kernel_err <= 1e-6;
}

template <int Bits>
bool run_bits(const problem& p) {
  using seq = aplq::format<Bits, 128>;
  using striped = typename seq::template with_layout<aplq::layout::cpu_striped>;
  const bool ok_seq = run_format<seq>(p);
  const bool ok_striped = run_format<striped>(p);
  return ok_seq && ok_striped;
}

int run(const arguments& a) {
  problem p;
  p.args = a;
  p.w.resize(static_cast<std::size_t>(a.rows * a.cols));
  p.x.resize(static_cast<std::size_t>(a.cols));
  std::mt19937_64 rng(a.seed);
  std::normal_distribution<float> normal;
  for (float& v : p.w)
    v = normal(rng);
  for (float& v : p.x)
    v = normal(rng);
  p.y_fp.resize(static_cast<std::size_t>(a.rows));
  for (aplq::index_t r = 0; r < a.rows; ++r) {
    double sum = 0.0;
    for (aplq::index_t j = 0; j < a.cols; ++j)
      sum += static_cast<double>(p.w[r * a.cols + j]) * p.x[j];
    p.y_fp[r] = sum;
  }

  std::printf("aplq %s demo: W [%lld, %lld] and x Gaussian, seed %llu, threads %d, ISA %s\n",
              APLQ_VERSION_STRING, static_cast<long long>(a.rows), static_cast<long long>(a.cols),
              a.seed, a.threads, aplq::dispatch::isa_name(aplq::dispatch::selected()));
  std::printf("quant err: rel-L2 of W_q x vs FP32 W x; kernel err: rel-L2 of dispatch::gemv vs "
              "aplq::ref::gemv\n(same quantized W); time: median GEMV; GB/s: packed weights "
              "(codes + scales) / time\n\n");
  std::printf("%4s  %-12s  %9s  %9s  %9s  %9s  %9s  %8s  %8s\n", "", "", "quant", "kernel",
              "kernel", "exact", "int8", "exact", "int8");
  std::printf("%4s  %-12s  %9s  %9s  %9s  %9s  %9s  %8s  %8s\n", "bits", "format", "err",
              "err exact", "err int8", "us", "us", "GB/s", "GB/s");
  bool ok = run_bits<1>(p);
  ok = run_bits<2>(p) && ok;
  ok = run_bits<4>(p) && ok;
  ok = run_bits<8>(p) && ok;
  if (!ok) {
    std::fprintf(stderr, "aplq-demo: exact kernel error above 1e-6 (seed %llu)\n", a.seed);
    return 1;
  }
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  arguments a;
  try {
    a = parse(argc, argv);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "aplq-demo: %s\n", e.what());
    return 2;
  }
  try {
    return run(a);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "aplq-demo: out of memory for W [%lld, %lld]\n",
                 static_cast<long long>(a.rows), static_cast<long long>(a.cols));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "aplq-demo: %s\n", e.what());
  }
  return 1;
}
