// SPDX-License-Identifier: Apache-2.0
// aplq-accuracy: the accuracy validation suite. With no arguments it quantizes Gaussian layers
// of several shapes (1x1, 37x300 with tails, 256x1024, 1024x4096, 4096x4096) at 1, 2, 4 and 8
// bits, symmetric and zero point, group sizes 32 to whole row, f32 and f16 scales, both layouts,
// plus multi-head attention blocks, and reports for each the quantization error (vs FP32) and the
// kernel error (the run-time dispatch kernels vs the oracle, both compute policies, every ISA
// this CPU runs) against the tolerances of aplq/validate.hpp. Exit status 0 when every check
// passes, 1 when one fails, 2 for a bad argument, 3 for any other error.
//
//   aplq-accuracy [--quick] [--isa NAME] [--threads N] [--seed N] [--json [PATH]]
//                 [--inject-fault wrong-scales]
//
// With --manifest it validates a converted model instead, layer by layer (see run_manifest):
//
//   aplq-accuracy --manifest DIR/<name>_manifest_q4.json [--original MODEL_DIR]
//                 [--activations FILE.npz] [--layers N] [--rows N]
#include <aplq/dispatch.hpp>
#include <aplq/io/hf_model.hpp>
#include <aplq/io/npz.hpp>
#include <aplq/io/output_file.hpp>
#include <aplq/io/quantized_model.hpp>
#include <aplq/validate.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <iostream>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using aplq::index_t;
namespace dispatch = aplq::dispatch;
namespace validate = aplq::validate;
using json = nlohmann::ordered_json;

struct arguments {
  bool quick = false;
  std::string isa = "all";
  int threads = 2;
  std::uint64_t seed = 1;
  bool json = false;
  std::string json_path; // empty: JSON to stdout, instead of the text report
  std::string fault;     // "" or "wrong-scales"
  // --manifest mode
  std::string manifest;    // a manifest .json or an export .safetensors
  std::string original;    // the source model directory (quantization error)
  std::string activations; // NPZ of recorded activations, one [n, cols] array per weight name
  int layers = 0;          // quantized weights checked, spread evenly; 0 for all
  index_t rows = 4;        // random activation rows per layer
};

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------------
// The suite

struct layer_case {
  std::string name;
  index_t rows, cols, n; // W [rows, cols], x [n, cols]
  std::vector<aplq::format_desc> formats;
};

struct attention_case {
  std::string name;
  index_t tokens, dim, heads;
  std::vector<aplq::format_desc> formats;
};

struct suite {
  std::vector<layer_case> layers;
  std::vector<attention_case> attention;
};

// bits x zero point x groups, with one scale type and layout.
std::vector<aplq::format_desc> sweep(std::initializer_list<int> bits,
                                     std::initializer_list<bool> zero_points,
                                     std::initializer_list<int> groups, aplq::scale_kind scale,
                                     aplq::layout_kind layout) {
  std::vector<aplq::format_desc> out;
  for (int b : bits)
    for (bool z : zero_points)
      for (int g : groups)
        out.push_back({b, g, z, scale, layout});
  return out;
}

// Sizes chosen so that the full suite stays within seconds on two cores: the oracle (scalar,
// double) is what costs, about rows * cols * n weight evaluations per format.
suite make_suite(bool quick) {
  using aplq::whole_row;
  using L = aplq::layout_kind;
  using S = aplq::scale_kind;
  const auto all_bits = {1, 2, 4, 8};
  const auto both = {false, true};
  const auto all_groups = {32, 64, 128, 256, whole_row};
  suite s;
  // A lone weight: every group is a tail of one.
  s.layers.push_back({"single", 1, 1, 4, sweep(all_bits, both, {32}, S::f32, L::sequential)});
  if (quick) {
    s.layers.push_back(
        {"tails", 37, 300, 8, sweep(all_bits, both, {32, whole_row}, S::f32, L::sequential)});
    s.layers.push_back(
        {"small", 64, 512, 8, sweep(all_bits, {false}, {128}, S::f16, L::cpu_striped)});
    s.attention.push_back(
        {"attn-d128", 16, 128, 4, sweep({2, 4}, {false}, {128}, S::f16, L::cpu_striped)});
    return s;
  }
  // K = 300: tails at every group size (300 = 9 * 32 + 12 = 2 * 128 + 44 = 256 + 44).
  s.layers.push_back(
      {"tails", 37, 300, 8, sweep(all_bits, both, all_groups, S::f32, L::sequential)});
  s.layers.push_back(
      {"small", 256, 1024, 8, sweep(all_bits, both, all_groups, S::f16, L::cpu_striped)});
  // The converter's formats (f16 scales) on LLM-like widths.
  auto wide = sweep(all_bits, both, {128}, S::f16, L::cpu_striped);
  for (auto f : sweep(all_bits, {false}, {32, whole_row}, S::f32, L::sequential))
    wide.push_back(f);
  s.layers.push_back({"wide", 1024, 4096, 4, wide});
  s.layers.push_back(
      {"square", 4096, 4096, 2, sweep(all_bits, {false}, {128}, S::f16, L::cpu_striped)});
  auto blocks = sweep(all_bits, {false}, {128}, S::f16, L::cpu_striped);
  blocks.push_back({4, 32, true, S::f16, L::cpu_striped});
  blocks.push_back({8, whole_row, false, S::f32, L::sequential});
  s.attention.push_back({"attn-d512", 64, 512, 8, blocks});
  return s;
}

// ---------------------------------------------------------------------------------------------
// Kernels under test

validate::kernel dispatch_kernel(dispatch::isa which) {
  return {dispatch::isa_name(which),
          [which](const aplq::any_qmatrix_view& w, const float* x, index_t n, float* y,
                  const aplq::options& opt) { return dispatch::gemm(w, x, n, y, opt, which); }};
}

// The table-lookup kernels of 1- and 2-bit formats, both policies: every call repacks the
// weights into a cpu::lut_matrix, then multiplies through the run-time dispatch on `which`.
validate::kernel lut_kernel(dispatch::isa which) {
  validate::kernel k;
  k.name = std::string(dispatch::isa_name(which)) + "-lut";
  k.run = [which](const aplq::any_qmatrix_view& w, const float* x, index_t n, float* y,
                  const aplq::options& opt) {
    return aplq::visit_format(w.format, [&](auto f) -> aplq::status {
      using F = decltype(f);
      if constexpr (F::bits > 2) {
        return aplq::status::unsupported_format;
      } else {
        using S = const typename F::scale_type;
        const aplq::qmatrix_view<F> v{static_cast<const std::uint8_t*>(w.codes),
                                      static_cast<S*>(w.scales), static_cast<S*>(w.zeros), w.rows,
                                      w.cols};
        aplq::cpu::lut_matrix<F> lut;
        if (aplq::status st = lut.pack(v); st != aplq::status::ok)
          return st;
        return dispatch::gemm(aplq::cpu::erase(lut.view()), x, n, y, opt, which);
      }
    });
  };
  k.serves = [](const aplq::format_desc& f, aplq::compute p) {
    return f.bits <= 2 && (p == aplq::compute::int8 || p == aplq::compute::exact);
  };
  return k;
}

// --inject-fault wrong-scales: the kernel sees every scale multiplied by 1.05 or 0.95 (even and
// odd index), the oracle the stored ones. Expected: every kernel check fails (an output error of
// about 5%), every quantization check still passes.
validate::kernel with_wrong_scales(validate::kernel k) {
  validate::kernel_fn inner = std::move(k.run);
  k.run = [inner](const aplq::any_qmatrix_view& w, const float* x, index_t n, float* y,
                  const aplq::options& opt) -> aplq::status {
    if (w.scales == nullptr || w.rows <= 0 || w.cols <= 0)
      return inner(w, x, n, y, opt);
    const index_t groups =
        w.format.group == aplq::whole_row ? 1 : (w.cols + w.format.group - 1) / w.format.group;
    const std::size_t count = static_cast<std::size_t>(w.rows * groups);
    auto factor = [](std::size_t i) { return i % 2 == 0 ? 1.05f : 0.95f; };
    aplq::any_qmatrix_view bad = w;
    if (w.format.scale == aplq::scale_kind::f16) {
      const auto* s = static_cast<const aplq::half*>(w.scales);
      std::vector<aplq::half> wrong(count);
      for (std::size_t i = 0; i < count; ++i)
        wrong[i] = aplq::float_to_half(aplq::half_to_float(s[i]) * factor(i));
      bad.scales = wrong.data();
      return inner(bad, x, n, y, opt);
    }
    const auto* s = static_cast<const float*>(w.scales);
    std::vector<float> wrong(count);
    for (std::size_t i = 0; i < count; ++i)
      wrong[i] = s[i] * factor(i);
    bad.scales = wrong.data();
    return inner(bad, x, n, y, opt);
  };
  return k;
}

std::vector<dispatch::isa> available_isas() {
  std::vector<dispatch::isa> out;
  for (int i = dispatch::isa_count - 1; i >= 0; --i)
    if (dispatch::available(static_cast<dispatch::isa>(i)))
      out.push_back(static_cast<dispatch::isa>(i));
  return out;
}

std::string join_isas(const std::vector<dispatch::isa>& isas) {
  std::string s;
  for (auto i : isas)
    s += (s.empty() ? "" : ", ") + std::string(dispatch::isa_name(i));
  return s.empty() ? "none" : s;
}

// The ISAs --isa selects: all available ones, the best one, or one by name.
std::vector<dispatch::isa> chosen_isas(const std::string& name) {
  const auto available = available_isas();
  if (available.empty())
    throw std::runtime_error("no kernel ISA is available on this CPU (dispatch library built "
                             "without kernels?)");
  if (name == "all")
    return available;
  if (name == "best")
    return {dispatch::selected()};
  for (int i = 0; i < dispatch::isa_count; ++i) {
    const auto isa = static_cast<dispatch::isa>(i);
    if (name == dispatch::isa_name(isa)) {
      if (!dispatch::available(isa))
        throw usage_error("--isa " + name +
                          ": not available on this CPU (available: " + join_isas(available) + ")");
      return {isa};
    }
  }
  throw usage_error("--isa: unknown instruction set '" + name + "' (all, best, " +
                    join_isas(available) + ")");
}

// ---------------------------------------------------------------------------------------------
// Running

std::vector<float> gaussian(std::mt19937_64& gen, index_t n, double stddev) {
  std::normal_distribution<float> d(0.0f, static_cast<float>(stddev));
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& e : v)
    e = d(gen);
  return v;
}

// One generator per case, so that a case's data depend only on the seed and its name.
std::mt19937_64 generator(std::uint64_t seed, const std::string& name) {
  std::seed_seq seq{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32),
                    static_cast<std::uint32_t>(std::hash<std::string>{}(name))};
  return std::mt19937_64(seq);
}

void require(aplq::status s, const std::string& what) {
  if (s != aplq::status::ok)
    throw std::runtime_error(what + ": " + aplq::status_string(s));
}

validate::report run_suite(const arguments& a, const std::vector<validate::kernel>& kernels) {
  validate::settings settings;
  settings.threads = a.threads;
  validate::report report;
  const suite s = make_suite(a.quick);
  for (const auto& c : s.layers) {
    auto gen = generator(a.seed, c.name);
    // W ~ N(0, 1/cols) (the usual initialisation; the relative errors do not depend on it).
    const auto w = gaussian(gen, c.rows * c.cols, 1.0 / std::sqrt(static_cast<double>(c.cols)));
    const auto x = gaussian(gen, c.n * c.cols, 1.0); // [n, cols]
    for (const auto& f : c.formats) {
      validate::layer_result r;
      require(validate::validate_layer(c.name, w.data(), c.rows, c.cols, x.data(), c.n, f, kernels,
                                       r, settings),
              "layer " + c.name + " " + aplq::name_of(f).c_str());
      report.layers.push_back(std::move(r));
    }
  }
  for (const auto& c : s.attention) {
    auto gen = generator(a.seed, c.name);
    const double sd = 1.0 / std::sqrt(static_cast<double>(c.dim));
    std::vector<float> w[4];
    for (auto& m : w)
      m = gaussian(gen, c.dim * c.dim, sd);              // [dim, dim]
    const auto x = gaussian(gen, c.tokens * c.dim, 1.0); // [tokens, dim]
    const validate::attention_weights aw{w[0].data(), w[1].data(), w[2].data(), w[3].data()};
    for (const auto& f : c.formats) {
      validate::attention_result r;
      require(validate::validate_attention(c.name, aw, c.dim, c.heads, x.data(), c.tokens, f,
                                           kernels, r, settings),
              "attention block " + c.name + " " + aplq::name_of(f).c_str());
      report.attention.push_back(std::move(r));
    }
  }
  return report;
}

// ---------------------------------------------------------------------------------------------
// --manifest: a converted model, layer by layer

// Recorded activations of one weight: an array named after it, [n, cols] (or [cols]) of float32
// or float16.
std::vector<float> recorded(const aplq::io::npz_reader& npz, const std::string& name, index_t cols,
                            index_t& n) {
  const aplq::io::npz_array* a = npz.find(name);
  if (a == nullptr)
    return {};
  const bool vector = a->shape.size() == 1;
  if ((!vector && a->shape.size() != 2) || a->shape.back() != cols ||
      (a->type != aplq::io::npy_dtype::f32 && a->type != aplq::io::npy_dtype::f16))
    throw std::runtime_error(npz.path() + ": activations '" + name +
                             "' must be float32 or float16 [n, " + std::to_string(cols) + "]");
  n = vector ? 1 : a->shape[0];
  std::vector<float> x(static_cast<std::size_t>(n * cols));
  aplq::io::to_float(a->type == aplq::io::npy_dtype::f32 ? aplq::io::dtype::f32
                                                         : aplq::io::dtype::f16,
                     a->data, n * cols, x.data());
  if (n == 0)
    throw std::runtime_error(npz.path() + ": activations '" + name + "' are empty");
  return x;
}

// Validates every quantized weight of an export (or --layers of them): the kernel error always;
// with --original, the quantization error against the FP32 original. Its tolerance for random
// Gaussian activations comes from the weights, not from a Gaussian-weight model (real weights
// have heavier tails): E||(W_q - W) x||^2 / E||W x||^2 = ||W_q - W||^2 / ||W||^2 for x ~ N(0, I),
// so the output rel-L2 must match the weight rel-L2 the manifest recorded at conversion, within
// the same sampling allowance as the suite's. A wrong original, or an export that is not what its
// manifest says, fails it. With recorded activations (not isotropic) the quantization error is
// reported only (tolerance inf); their kernel error is checked as usual.
validate::report run_manifest(const arguments& a, const std::vector<validate::kernel>& kernels) {
  aplq::io::quantized_model model;
  if (auto e = model.open(a.manifest))
    throw std::runtime_error(e.message);
  aplq::io::hf_model original;
  if (!a.original.empty())
    if (auto e = original.open(a.original))
      throw std::runtime_error(e.message);
  aplq::io::npz_reader npz;
  if (!a.activations.empty())
    if (auto e = npz.open(a.activations))
      throw std::runtime_error(e.message);

  // What the manifest recorded per weight at conversion.
  std::map<std::string, double> recorded_error;
  const auto& doc = model.manifest();
  if (doc.is_object() && doc.contains("tensors") && doc["tensors"].is_array())
    for (const auto& t : doc["tensors"]) {
      if (!t.is_object() || !t.contains("name") || !t["name"].is_string() || !t.contains("error") ||
          !t["error"].is_object())
        continue;
      const auto e = t["error"].find("weight_rel_l2");
      if (e != t["error"].end() && e->is_number())
        recorded_error[t["name"].get<std::string>()] = e->get<double>();
    }
  const auto& weights = model.weights();
  const std::size_t total = weights.size();
  const std::size_t want =
      a.layers <= 0 ? total : std::min<std::size_t>(static_cast<std::size_t>(a.layers), total);
  validate::report report;
  std::size_t with_recorded = 0;
  for (std::size_t k = 0; k < want; ++k) {
    const aplq::io::quantized_weight& w = weights[want == total ? k : k * total / want];
    std::vector<float> fp32;
    if (!a.original.empty()) {
      const aplq::io::hf_model::tensor_ref* src = original.find(w.name);
      if (src == nullptr)
        throw std::runtime_error(original.dir() + ": has no tensor '" + w.name + "'");
      if (src->info->shape != std::vector<std::int64_t>{w.view.rows, w.view.cols})
        throw std::runtime_error(src->file->path() + ": tensor '" + w.name +
                                 "' has another shape than in the export");
      fp32.resize(static_cast<std::size_t>(w.view.rows * w.view.cols));
      if (auto e = src->file->read_float(*src->info, fp32.data()))
        throw std::runtime_error(e.message);
      src->file->release(*src->info);
    }
    validate::settings settings;
    settings.threads = a.threads;
    const auto it = recorded_error.find(w.name);
    const double weight_err = it != recorded_error.end() ? it->second : std::nan("");
    if (!fp32.empty() && std::isfinite(weight_err))
      settings.quantization_tolerance =
          std::max(weight_err, 1e-7) *
          (validate::model_allowance +
           validate::quantization_sigmas /
               std::sqrt(validate::effective_samples(w.view.rows, w.view.cols, a.rows)));
    else if (!fp32.empty())
      settings.quantization_tolerance = std::numeric_limits<double>::infinity();

    auto gen = generator(a.seed, w.name);
    const auto x = gaussian(gen, a.rows * w.view.cols, 1.0);
    validate::layer_result r;
    require(validate::validate_quantized(w.name, w.view, fp32.empty() ? nullptr : fp32.data(),
                                         x.data(), a.rows, kernels, r, settings),
            "layer " + w.name);
    report.layers.push_back(std::move(r));
    model.release(w); // keep the resident set near one layer, whatever the model's size

    if (!a.activations.empty()) {
      index_t n = 0;
      const std::vector<float> xr = recorded(npz, w.name, w.view.cols, n);
      if (!xr.empty()) {
        settings.quantization_tolerance = std::numeric_limits<double>::infinity();
        validate::layer_result rr;
        require(validate::validate_quantized(w.name + " (recorded)", w.view,
                                             fp32.empty() ? nullptr : fp32.data(), xr.data(), n,
                                             kernels, rr, settings),
                "layer " + w.name + " with recorded activations");
        report.layers.push_back(std::move(rr));
        ++with_recorded;
      }
    }
  }
  report.notes.push_back("model: " + a.manifest + " (" + std::to_string(want) + " of " +
                         std::to_string(total) + " quantized weights)");
  if (a.original.empty())
    report.notes.push_back("no --original: kernel error only");
  else if (!recorded_error.empty())
    report.notes.push_back("original: " + a.original +
                           "; quantization tolerance from the weight rel-L2 the manifest recorded");
  else
    report.notes.push_back("original: " + a.original +
                           "; no manifest with recorded errors, so the quantization error is "
                           "reported, not checked (tolerance inf): pass the manifest to check it");
  if (!a.activations.empty())
    report.notes.push_back("recorded activations: " + a.activations + " (" +
                           std::to_string(with_recorded) +
                           " layers; quantization error "
                           "reported, not checked)");
  return report;
}

// ---------------------------------------------------------------------------------------------
// JSON

json number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json format_json(const aplq::format_desc& f) {
  return {{"name", aplq::name_of(f).c_str()},
          {"bits", f.bits},
          {"group", f.group == aplq::whole_row ? json("row") : json(f.group)},
          {"zero_point", f.zero_point},
          {"scale", f.scale == aplq::scale_kind::f16 ? "f16" : "f32"},
          {"layout", f.layout == aplq::layout_kind::sequential ? "sequential" : "cpu_striped"}};
}

json check_json(const validate::check& c) {
  return {{"error", number(c.error)}, {"tolerance", number(c.tolerance)}, {"pass", c.pass()}};
}

json result_json(const validate::result_base& r) {
  json j;
  j["name"] = r.name;
  j["format"] = format_json(r.format);
  if (r.has_quantization) {
    j["quantization"] = check_json(r.quantization);
    j["quantization"]["model"] = number(r.quantization_model);
  } else {
    j["quantization"] = nullptr;
  }
  json kernels = json::array();
  for (const auto& k : r.kernels) {
    json kj = check_json(k.result);
    kj["kernel"] = k.kernel;
    kj["policy"] = k.policy == aplq::compute::exact ? "exact" : "int8";
    kernels.push_back(kj);
  }
  j["kernels"] = kernels;
  j["pass"] = r.pass();
  return j;
}

json report_json(const validate::report& report, const arguments& a,
                 const std::vector<validate::kernel>& kernels, double seconds) {
  json j;
  j["tool"] = "aplq-accuracy";
  j["version"] = APLQ_VERSION_STRING;
  j["seed"] = a.seed;
  j["threads"] = a.threads;
  j["quick"] = a.quick;
  j["fault"] = a.fault.empty() ? json(nullptr) : json(a.fault);
  json names = json::array();
  for (const auto& k : kernels)
    names.push_back(k.name);
  j["kernels"] = names;

  json kernel_tol = json::array(), quant_tol = json::array();
  for (int bits : {1, 2, 4, 8}) {
    const aplq::format_desc f{bits, 128};
    kernel_tol.push_back({{"bits", bits},
                          {"seed_table", validate::seed_tolerance(bits)},
                          {"exact", validate::kernel_tolerance(f, aplq::compute::exact)},
                          {"int8", validate::kernel_tolerance(f, aplq::compute::int8)}});
    for (bool zp : {false, true})
      for (int g : {32, 64, 128, 256, aplq::whole_row}) {
        const aplq::format_desc q{bits, g, zp};
        quant_tol.push_back(
            {{"bits", bits},
             {"zero_point", zp},
             {"group", g == aplq::whole_row ? json("row") : json(g)},
             {"cols", report.table_cols},
             {"model", validate::quantization_model(q, report.table_cols)},
             {"tolerance", validate::quantization_tolerance(q, report.table_cols)}});
      }
  }
  j["tolerances"] = {{"kernel", kernel_tol},
                     {"quantization", quant_tol},
                     {"model_allowance", validate::model_allowance},
                     {"quantization_sigmas", validate::quantization_sigmas},
                     {"int8_sigmas", validate::int8_sigmas},
                     {"attention_factor", validate::attention_factor}};

  json layers = json::array(), blocks = json::array();
  for (const auto& l : report.layers) {
    json lj = result_json(l);
    lj["rows"] = l.rows;
    lj["cols"] = l.cols;
    lj["n"] = l.n;
    layers.push_back(lj);
  }
  for (const auto& b : report.attention) {
    json bj = result_json(b);
    bj["tokens"] = b.tokens;
    bj["dim"] = b.dim;
    bj["heads"] = b.heads;
    blocks.push_back(bj);
  }
  j["layers"] = layers;
  j["attention"] = blocks;
  j["summary"] = {{"tests", report.tests()},   {"passed", report.passed()},
                  {"checks", report.checks()}, {"checks_passed", report.checks_passed()},
                  {"pass", report.pass()},     {"seconds", seconds}};
  return j;
}

void write_json(const std::string& path, const json& j) {
  const std::string text = j.dump(2) + "\n";
  aplq::io::output_file out;
  if (auto e = out.open(path))
    throw std::runtime_error(e.message);
  if (auto e = out.write(text.data(), text.size()))
    throw std::runtime_error(e.message);
  if (auto e = out.commit())
    throw std::runtime_error(e.message);
}

int run(const arguments& a) {
  const auto isas = chosen_isas(a.isa);
  std::vector<validate::kernel> kernels;
  for (auto isa : isas)
    for (const auto& k : {dispatch_kernel(isa), lut_kernel(isa)})
      kernels.push_back(a.fault.empty() ? k : with_wrong_scales(k));

  const auto start = std::chrono::steady_clock::now();
  validate::report report = a.manifest.empty() ? run_suite(a, kernels) : run_manifest(a, kernels);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const char* what = !a.manifest.empty() ? ", converted model"
                     : a.quick           ? ", quick suite"
                                         : ", full suite";
  report.notes.insert(report.notes.begin(), std::string("aplq ") + APLQ_VERSION_STRING + what +
                                                ", seed " + std::to_string(a.seed) + ", threads " +
                                                std::to_string(a.threads));
  report.notes.insert(
      report.notes.begin() + 1,
      "kernels: aplq::dispatch::gemm on " + join_isas(isas) +
          ", and on each the table lookup of 1- and 2-bit formats (<isa>-lut)" +
          (a.manifest.empty() ? "; data: W ~ N(0, 1/K), x ~ N(0, 1)" : "; x ~ N(0, 1)"));
  if (!a.fault.empty())
    report.notes.push_back("FAULT INJECTED (" + a.fault +
                           "): the kernels get every scale x1.05 / x0.95, the oracle the "
                           "stored ones");

  if (a.json && a.json_path.empty()) {
    std::cout << report_json(report, a, kernels, seconds).dump(2) << "\n";
  } else {
    report.print(std::cout);
    std::printf("Time: %.1f s\n", seconds);
    std::fflush(stdout);
    if (a.json)
      write_json(a.json_path, report_json(report, a, kernels, seconds));
  }
  if (report.tests() == 0)
    throw std::runtime_error("the suite ran no tests");
  return report.pass() ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  arguments a;
  CLI::App app{"aplq-accuracy: quantization error (vs FP32) and kernel error (vs the oracle) of "
               "aplq's formats and kernels, checked against derived tolerances.\nExit status: 0 "
               "all checks pass, 1 a check failed, 2 bad argument, 3 other error.",
               "aplq-accuracy"};
  app.add_flag("--quick", a.quick, "a smaller suite (about a second)");
  app.add_option("--isa", a.isa, "instruction set of the kernels: all (default), best, or a name");
  app.add_option("--threads", a.threads, "kernel threads, 0 for all cores (default 2)")
      ->check(CLI::Range(0, 4096));
  app.add_option("--seed", a.seed, "random seed of the suite's data (default 1)");
  auto* json_opt = app.add_option("--json", a.json_path,
                                  "write the report as JSON to PATH (atomically), or to stdout "
                                  "instead of the text when no PATH is given")
                       ->expected(0, 1);
  app.add_option("--manifest", a.manifest,
                 "validate a converted model (its manifest .json or export .safetensors) instead "
                 "of running the suite");
  app.add_option("--original", a.original,
                 "with --manifest: the source model directory, for the quantization error");
  app.add_option(
      "--activations", a.activations,
      "with --manifest: NPZ of recorded activations, an [n, cols] array per weight name");
  app.add_option("--layers", a.layers, "with --manifest: weights to check, spread evenly; 0 all")
      ->check(CLI::Range(0, 1 << 24));
  app.add_option("--rows", a.rows, "with --manifest: random activation rows per layer (default 4)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--inject-fault", a.fault,
                 "wrong-scales: give the kernels perturbed scales (the run must fail)")
      ->check(CLI::IsMember({"wrong-scales"}));
  try {
    app.parse(argc, argv);
    a.json = json_opt->count() > 0;
    if (a.manifest.empty() && (!a.original.empty() || !a.activations.empty()))
      throw CLI::ValidationError("--original and --activations go with --manifest");
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "aplq-accuracy: error: %s\n", e.what());
    return 2;
  }
  try {
    return run(a);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "aplq-accuracy: error: %s\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "aplq-accuracy: error: out of memory\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "aplq-accuracy: error: %s\n", e.what());
  }
  return 3;
}
