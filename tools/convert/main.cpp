// SPDX-License-Identifier: Apache-2.0
// aplq-convert: a Hugging Face model (local directory, repository id or catalog alias) in, an aplq
// export out: the 2-D linear weights of the transformer blocks quantized (RTN, aplq::quantize),
// every other tensor kept as it was, plus a manifest. Tensors stream one at a time from the mapped
// shards, so a conversion needs about one tensor's worth of memory, not the model's. Every output
// is written under a temporary name and renamed when complete.
//
//   aplq-convert MODEL [--bits 1|2|4|8[,...]] [--group 32|64|128|256|row] [--zero-point]
//                [--output-dir DIR] [--format safetensors|npz] [--keep PATTERN...]
//   aplq-convert --list-models
//   aplq-convert --convert-all [--bits 4]
#include <aplq/dispatch.hpp>
#include <aplq/io/hf_model.hpp>
#include <aplq/io/npz.hpp>
#include <aplq/io/quantized_model.hpp>
#include <aplq/matmul.hpp>
#include <aplq/validate.hpp>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <fnmatch.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

#include "catalog.hpp"
#include "hub.hpp"
#include "text.hpp"

namespace {

using aplq::format_desc;
using aplq::index_t;
using aplq::io::dtype;
using aplq::io::tensor_info;
using json = nlohmann::ordered_json;

struct arguments {
  std::string model;
  std::vector<int> bits{4};
  std::string group = "128";
  bool zero_point = false;
  std::string scale = "f16";
  std::string output_dir = ".";
  std::string format = "safetensors";
  std::vector<std::string> keep;
  std::string name;
  bool list_models = false;
  bool convert_all = false;
  int threads = 0;
  int check_layers = 0; // 0: every quantized layer
  unsigned seed = 1;
};

[[noreturn]] void raise(const std::string& what) { throw std::runtime_error(what); }
void check(const aplq::io::error& e) {
  if (e)
    raise(e.message);
}

// printf into a string of any length.
template <class... Args>
std::string text_of(const char* fmt, Args... args) {
  const int n = std::snprintf(nullptr, 0, fmt, args...);
  std::string s(static_cast<std::size_t>(std::max(n, 0)), '\0');
  std::snprintf(&s[0], s.size() + 1, fmt, args...);
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_directory(const std::string& p) {
  std::error_code ec;
  return std::filesystem::is_directory(p, ec);
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s;
  for (std::size_t i = 0; i < shape.size(); ++i)
    s += (i ? "x" : "") + std::to_string(shape[i]);
  return s.empty() ? "scalar" : s;
}

// ---- [1] locate ---------------------------------------------------------------------------------

struct located {
  std::string dir;    // model directory (config.json + safetensors)
  std::string source; // what the user named, resolved: a path or a repository id
  std::string name;   // output file stem
};

located locate(const arguments& a, const std::string& model) {
  located m;
  std::string repo;
  if (is_directory(model)) {
    m.dir = model;
    m.source = model;
    // The directory's own name, also for "." or "models/x/".
    char* real = ::realpath(model.c_str(), nullptr);
    const std::string base = real != nullptr ? real : model;
    std::free(real);
    m.name = base.substr(base.find_last_of('/') + 1);
    if (m.name.empty())
      m.name = "model";
    std::cout << "[1] locate     local directory " << model << "\n";
  } else if (const aplq::tools::catalog_entry* e = aplq::tools::find_alias(model)) {
    repo = e->repo;
    m.name = e->alias;
  } else if (aplq::tools::is_repo_id(model)) {
    repo = model;
    m.name = aplq::tools::lower(model.substr(model.find('/') + 1));
  } else {
    raise(model + ": not a model directory, a repository id (org/name) or a catalog alias "
                  "(aplq-convert --list-models lists them)");
  }
  if (!repo.empty()) {
    std::cout << "[1] locate     " << repo << (repo != model ? " (" + model + ")" : "") << "\n";
    aplq::tools::hub_options opt = aplq::tools::hub_options::from_environment();
    m.dir = aplq::tools::resolve_model(repo, opt, std::cout).string();
    m.source = repo;
  }
  if (!a.name.empty())
    m.name = a.name;
  return m;
}

// ---- what gets quantized
// -------------------------------------------------------------------------

// The 2-D weights of the transformer blocks: attention and MLP projections in every Hugging Face
// architecture (model.layers.N., transformer.h.N., blocks.N., encoder.layer.N.). Norms and biases
// are 1-D; embeddings and the output head live outside the blocks.
bool is_block_linear(const tensor_info& t) {
  static const std::regex block(R"((^|\.)(layers|h|blocks|layer)\.[0-9]+\.)");
  return t.shape.size() == 2 && t.shape[0] > 0 && t.shape[1] > 0 && aplq::io::is_float(t.type) &&
         ends_with(t.name, ".weight") && std::regex_search(t.name, block);
}

bool kept_by_pattern(const std::vector<std::string>& keep, const std::string& name) {
  for (const std::string& p : keep)
    if (::fnmatch(p.c_str(), name.c_str(), 0) == 0)
      return true;
  return false;
}

format_desc parse_format(const arguments& a, int bits) {
  format_desc f;
  f.bits = bits;
  f.group = a.group == "row" ? aplq::whole_row : std::stoi(a.group);
  f.zero_point = a.zero_point;
  f.scale = a.scale == "f16" ? aplq::scale_kind::f16 : aplq::scale_kind::f32;
  f.layout = aplq::layout_kind::sequential;
  return f;
}

// ---- [2] quantize
// ---------------------------------------------------------------------------------

struct quantized_tensor {
  std::vector<std::uint8_t> codes;
  std::vector<std::uint8_t> scales; // f16 or f32 bytes
  std::vector<std::uint8_t> zeros;
  double weight_rel_l2 = 0.0; // ||W - W_q|| / ||W||
  double output_rel_l2 = 0.0; // ||(W - W_q) x|| / ||W x|| for Gaussian x
};

// Rows [r0, r0 + n) of a 2-D float tensor as float; NaN or Inf is an error naming the element.
void read_rows(const aplq::io::safetensors_file& f, const tensor_info& t, index_t r0, index_t n,
               std::vector<float>& out) {
  const index_t cols = t.shape[1];
  out.resize(static_cast<std::size_t>(n * cols));
  const std::size_t size = static_cast<std::size_t>(aplq::io::dtype_size(t.type));
  aplq::io::to_float(t.type, f.data(t) + static_cast<std::size_t>(r0 * cols) * size, n * cols,
                     out.data());
  for (std::size_t i = 0; i < out.size(); ++i)
    if (!std::isfinite(out[i]))
      raise(f.path() + ": tensor '" + t.name + "' holds " + (std::isnan(out[i]) ? "NaN" : "Inf") +
            " at [" + std::to_string(r0 + static_cast<index_t>(i) / cols) + ", " +
            std::to_string(static_cast<index_t>(i) % cols) + "]");
}

// Quantizes a 2-D float tensor in blocks of rows on the thread pool, reading each block from the
// mapping (no float copy of the whole tensor), and measures both errors against its rows.
template <class F>
void quantize_tensor(const aplq::io::safetensors_file& file, const tensor_info& t, int threads,
                     unsigned seed, quantized_tensor& out) {
  const index_t rows = t.shape[0], cols = t.shape[1];
  aplq::qmatrix<F> q;
  if (aplq::status s = q.reset(rows, cols); s != aplq::status::ok)
    raise(file.path() + ": tensor '" + t.name + "': " + aplq::status_string(s));
  const aplq::qmatrix_span<F> all = q.span();
  constexpr index_t block = 16;
  const index_t tasks = (rows + block - 1) / block;
  std::vector<double> err(static_cast<std::size_t>(tasks)), ref(err.size()), yerr(err.size()),
      yref(err.size());
  std::vector<aplq::status> st(err.size(), aplq::status::ok);
  std::vector<std::string> failure(err.size());
  std::vector<float> x(static_cast<std::size_t>(cols));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> gauss;
  for (float& v : x)
    v = gauss(rng);
  auto task = [&](index_t k) noexcept {
    const auto ti = static_cast<std::size_t>(k);
    const index_t r0 = k * block, n = std::min(block, rows - r0);
    std::vector<float> w;
    try {
      read_rows(file, t, r0, n, w);
    } catch (const std::exception& e) {
      failure[ti] = e.what();
      return;
    }
    const index_t groups = all.groups();
    aplq::qmatrix_span<F> part{all.codes + r0 * all.row_bytes(), all.scales + r0 * groups,
                               F::zero_point ? all.zeros + r0 * groups : nullptr, n, cols};
    st[ti] = aplq::quantize<F>(w.data(), n, cols, part);
    if (st[ti] != aplq::status::ok)
      return;
    const aplq::qmatrix_view<F> v = aplq::as_const(part);
    for (index_t r = 0; r < n; ++r) {
      double yq = 0.0, y = 0.0;
      for (index_t j = 0; j < cols; ++j) {
        const double wf = w[static_cast<std::size_t>(r * cols + j)];
        const double d = aplq::ref::weight(v, r, j) - wf;
        err[ti] += d * d;
        ref[ti] += wf * wf;
        yq += d * x[static_cast<std::size_t>(j)];
        y += wf * x[static_cast<std::size_t>(j)];
      }
      yerr[ti] += yq * yq;
      yref[ti] += y * y;
    }
  };
  aplq::cpu::thread_pool::global().run(threads, tasks, task);
  double e = 0, r = 0, ye = 0, yr = 0;
  for (std::size_t k = 0; k < err.size(); ++k) {
    if (!failure[k].empty()) // the first block in row order names the first bad element
      raise(failure[k]);
    if (st[k] != aplq::status::ok)
      raise(file.path() + ": tensor '" + t.name +
            "': quantization failed: " + aplq::status_string(st[k]));
    e += err[k];
    r += ref[k];
    ye += yerr[k];
    yr += yref[k];
  }
  out.weight_rel_l2 = r > 0 ? std::sqrt(e / r) : std::sqrt(e);
  out.output_rel_l2 = yr > 0 ? std::sqrt(ye / yr) : std::sqrt(ye);
  auto bytes = [](const auto& v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(v.data());
    return std::vector<std::uint8_t>(p, p + v.size() * sizeof(v[0]));
  };
  out.codes = std::move(q.codes());
  out.scales = bytes(q.scales());
  out.zeros = bytes(q.zeros());
}

// ---- [3] export: one interface over the two output formats
// ---------------------------------------

// Kept tensors are copied in slices of this size, each released from the resident set after.
constexpr std::uint64_t slice_bytes = 16u << 20;

// A kept float tensor must be finite too: checks bytes [at, at + n) of t, n a multiple of its
// element size, through `buf`.
void check_finite(const aplq::io::safetensors_file& f, const tensor_info& t, std::uint64_t at,
                  std::uint64_t n, std::vector<float>& buf) {
  if (!aplq::io::is_float(t.type))
    return;
  const auto size = static_cast<std::uint64_t>(aplq::io::dtype_size(t.type));
  buf.resize(static_cast<std::size_t>(n / size));
  aplq::io::to_float(t.type, f.data(t) + at, static_cast<std::int64_t>(buf.size()), buf.data());
  for (std::size_t i = 0; i < buf.size(); ++i)
    if (!std::isfinite(buf[i]))
      raise(f.path() + ": tensor '" + t.name + "' holds " + (std::isnan(buf[i]) ? "NaN" : "Inf") +
            " at element " + std::to_string(at / size + i));
}

class export_sink {
public:
  virtual ~export_sink() = default;
  virtual void plan_quantized(const std::string& name, const format_desc& f, index_t rows,
                              index_t cols) = 0;
  virtual void plan_tensor(const tensor_info& t) = 0;
  virtual void open(const std::string& path, const std::map<std::string, std::string>& meta) = 0;
  virtual void write_quantized(const std::string& name, const quantized_tensor& q) = 0;
  // Copies a kept tensor from its mapped source, a slice at a time.
  virtual void write_tensor(const aplq::io::safetensors_file& f, const tensor_info& t) = 0;
  // Completes the file, still unnamed; readable_path() opens it for the checks before commit.
  virtual void finish() = 0;
  virtual std::string readable_path() const = 0;
  virtual void commit() = 0;
  std::uint64_t bytes() const {
    struct stat st;
    return ::stat(readable_path().c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
  }
};

class safetensors_sink final : public export_sink {
public:
  void plan_quantized(const std::string& name, const format_desc& f, index_t rows,
                      index_t cols) override {
    check(aplq::io::plan_quantized(w_, name, f, rows, cols));
  }
  void plan_tensor(const tensor_info& t) override { check(w_.add(t.name, t.type, t.shape)); }
  void open(const std::string& path, const std::map<std::string, std::string>& meta) override {
    for (const auto& [k, v] : meta)
      w_.set_metadata(k, v);
    check(w_.open(path));
  }
  void write_quantized(const std::string& name, const quantized_tensor& q) override {
    check(w_.write(name + ".codes", q.codes.data(), q.codes.size()));
    check(w_.write(name + ".scales", q.scales.data(), q.scales.size()));
    if (!q.zeros.empty())
      check(w_.write(name + ".zeros", q.zeros.data(), q.zeros.size()));
  }
  void write_tensor(const aplq::io::safetensors_file& f, const tensor_info& t) override {
    std::vector<float> buf;
    for (std::uint64_t at = 0; at < t.bytes(); at += slice_bytes) {
      const std::uint64_t n = std::min(slice_bytes, t.bytes() - at);
      check_finite(f, t, at, n, buf);
      check(w_.write(t.name, f.data(t) + at, n, at));
      f.release(t, at, n);
    }
  }
  void finish() override { check(w_.finish()); }
  std::string readable_path() const override { return w_.readable_path(); }
  void commit() override { check(w_.commit()); }

private:
  aplq::io::safetensors_writer w_;
};

// NPZ: numpy has no bfloat16, so BF16 tensors are widened to float32 (exactly); the metadata
// travels as the UTF-8 JSON bytes of a uint8 array "__metadata__".
class npz_sink final : public export_sink {
public:
  void plan_quantized(const std::string& name, const format_desc& f, index_t rows,
                      index_t cols) override {
    aplq::storage_sizes s;
    if (aplq::storage_of(f, rows, cols, s) != aplq::status::ok)
      raise("tensor '" + name + "': shape too large");
    sizes_[name] = s;
    scale_ = f.scale == aplq::scale_kind::f16 ? aplq::io::npy_dtype::f16 : aplq::io::npy_dtype::f32;
  }
  void plan_tensor(const tensor_info&) override {}
  void open(const std::string& path, const std::map<std::string, std::string>& meta) override {
    check(w_.open(path));
    json m(meta);
    const std::string text = aplq::io::json_text(m);
    array("__metadata__", aplq::io::npy_dtype::u8, {static_cast<std::int64_t>(text.size())},
          text.data(), text.size());
  }
  void write_quantized(const std::string& name, const quantized_tensor& q) override {
    const aplq::storage_sizes& s = sizes_.at(name);
    const index_t rows = s.codes_bytes / s.row_bytes;
    array(name + ".codes", aplq::io::npy_dtype::u8, {rows, s.row_bytes}, q.codes.data(),
          q.codes.size());
    array(name + ".scales", scale_, {rows, s.groups}, q.scales.data(), q.scales.size());
    if (!q.zeros.empty())
      array(name + ".zeros", scale_, {rows, s.groups}, q.zeros.data(), q.zeros.size());
  }
  void write_tensor(const aplq::io::safetensors_file& f, const tensor_info& t) override {
    const std::uint8_t* data = f.data(t);
    aplq::io::npy_dtype d = aplq::io::npy_dtype::f32; // BF16 is widened to float32
    if (t.type != dtype::bf16 && !aplq::io::npy_of(t.type, d))
      raise("tensor '" + t.name + "': dtype " + aplq::io::dtype_name(t.type) +
            " has no NPZ equivalent (use --format safetensors)");
    check(w_.begin_array(t.name, d, t.shape));
    const bool widen = t.type == dtype::bf16;
    std::vector<float> buf(widen ? slice_bytes / 2 : 0);
    std::vector<float> checked;
    for (std::uint64_t at = 0; at < t.bytes(); at += slice_bytes) {
      const std::uint64_t n = std::min(slice_bytes, t.bytes() - at);
      check_finite(f, t, at, n, checked);
      if (widen) { // exact: bf16 is the top half of a float32
        aplq::io::to_float(dtype::bf16, data + at, static_cast<std::int64_t>(n / 2), buf.data());
        check(w_.append(buf.data(), static_cast<std::size_t>(n * 2)));
      } else {
        check(w_.append(data + at, static_cast<std::size_t>(n)));
      }
      f.release(t, at, n);
    }
    check(w_.end_array());
  }
  void finish() override { check(w_.finish()); }
  std::string readable_path() const override { return w_.readable_path(); }
  void commit() override { check(w_.commit()); }

private:
  void array(const std::string& key, aplq::io::npy_dtype d, std::vector<std::int64_t> shape,
             const void* data, std::size_t n) {
    check(w_.begin_array(key, d, shape));
    check(w_.append(data, n));
    check(w_.end_array());
  }

  aplq::io::npz_writer w_;
  std::map<std::string, aplq::storage_sizes> sizes_;
  aplq::io::npy_dtype scale_ = aplq::io::npy_dtype::f16;
};

// ---- one conversion: [2] quantize + [3] export, [4] manifest, [5] validate, [6] accuracy --------

struct conversion {
  int bits = 4;
  format_desc format;
  std::string export_path;
  std::string manifest_path;
  std::uint64_t original_bytes = 0; // every tensor of the source model
  std::uint64_t export_bytes = 0;
  std::uint64_t linear_original_bytes = 0; // the quantized tensors only, before and after
  std::uint64_t linear_export_bytes = 0;
  int quantized = 0;
  int kept = 0;
  double weight_err_mean = 0, weight_err_max = 0;
  double output_err_mean = 0, output_err_max = 0;
  std::string accuracy_line; // stage [6]'s verdict
  // Until the end of the conversion, export and manifest are unnamed files read through these.
  std::string export_readable;
  std::string manifest_readable;
};

std::string join(const std::string& dir, const std::string& file) {
  return dir.empty() || dir.back() == '/' ? dir + file : dir + "/" + file;
}

void make_dirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    raise(dir + ": cannot create the output directory: " + ec.message());
}

void validate_manifest(const conversion& c, const json& manifest);
std::string accuracy_check(const arguments& a, const aplq::io::hf_model& model, const conversion& c,
                           const json& manifest);

conversion convert(const arguments& a, const located& m, const aplq::io::hf_model& model,
                   int bits) {
  conversion c;
  c.bits = bits;
  c.format = parse_format(a, bits);
  const std::string q = "_q" + std::to_string(bits);
  const bool npz = a.format == "npz";
  c.export_path =
      join(a.output_dir, m.name + (npz ? "_quantized" + q + ".npz" : q + ".safetensors"));
  c.manifest_path = join(a.output_dir, m.name + "_manifest" + q + ".json");
  const std::string fname = aplq::name_of(c.format).c_str();

  std::unique_ptr<export_sink> sink;
  if (npz) {
    sink = std::make_unique<npz_sink>();
  } else {
    sink = std::make_unique<safetensors_sink>();
  }
  // Plan: which tensors are quantized, and every output tensor's size up front.
  std::vector<bool> quantize(model.tensors().size());
  json described = json::object();
  for (std::size_t i = 0; i < model.tensors().size(); ++i) {
    const tensor_info& t = *model.tensors()[i].info;
    c.original_bytes += t.bytes();
    quantize[i] = is_block_linear(t) && !kept_by_pattern(a.keep, t.name);
    if (quantize[i]) {
      sink->plan_quantized(t.name, c.format, t.shape[0], t.shape[1]);
      described[t.name] = aplq::io::describe_quantized(c.format, t.shape[0], t.shape[1]);
      ++c.quantized;
    } else {
      sink->plan_tensor(t);
      ++c.kept;
    }
  }
  if (c.quantized == 0)
    raise(model.dir() + ": no 2-D linear weight inside a transformer block to quantize (all " +
          std::to_string(c.kept) + " tensors kept)");
  const std::map<std::string, std::string> meta = {
      {"aplq.format", aplq::io::export_format_name},
      {"aplq.version", aplq::io::export_version},
      {"aplq.layout", "sequential"},
      {"aplq.source", m.source},
      {"aplq.quantizer", "rtn"},
      {"aplq.quantized", aplq::io::json_text(described)},
  };
  sink->open(c.export_path, meta);

  std::cout << "[2] quantize   " << c.quantized << " linear weights to " << fname << ", " << c.kept
            << " tensors kept as they are\n";
  json tensors = json::array();
  int done = 0;
  for (std::size_t i = 0; i < model.tensors().size(); ++i) {
    const aplq::io::safetensors_file& file = *model.tensors()[i].file;
    const tensor_info& t = *model.tensors()[i].info;
    json entry = {{"name", t.name},
                  {"shape", t.shape},
                  {"dtype", aplq::io::dtype_name(t.type)},
                  {"original_bytes", t.bytes()},
                  {"quantized", bool(quantize[i])}};
    if (quantize[i]) {
      quantized_tensor qt;
      aplq::visit_format(c.format, [&](auto f) {
        quantize_tensor<decltype(f)>(file, t, a.threads, a.seed + static_cast<unsigned>(i), qt);
        return aplq::status::ok;
      });
      sink->write_quantized(t.name, qt);
      const std::uint64_t out = qt.codes.size() + qt.scales.size() + qt.zeros.size();
      c.linear_original_bytes += t.bytes();
      c.linear_export_bytes += out;
      c.weight_err_mean += qt.weight_rel_l2;
      c.weight_err_max = std::max(c.weight_err_max, qt.weight_rel_l2);
      c.output_err_mean += qt.output_rel_l2;
      c.output_err_max = std::max(c.output_err_max, qt.output_rel_l2);
      entry["format"] = fname;
      entry["bits"] = c.format.bits;
      entry["group"] = c.format.group;
      entry["zero_point"] = c.format.zero_point;
      entry["scale"] = aplq::io::scale_name(c.format.scale);
      entry["bytes"] = {{"codes", qt.codes.size()},
                        {"scales", qt.scales.size()},
                        {"zeros", qt.zeros.size()},
                        {"total", out}};
      entry["error"] = {{"weight_rel_l2", qt.weight_rel_l2}, {"output_rel_l2", qt.output_rel_l2}};
      ++done;
      const std::string line =
          text_of("    %4d/%-4d %-48s %11s  rel-L2 weight %.4f output %.4f\n", done, c.quantized,
                  t.name.c_str(), shape_text(t.shape).c_str(), qt.weight_rel_l2, qt.output_rel_l2);
      std::cout << line << std::flush;
    } else {
      sink->write_tensor(file, t);
      entry["bytes"] = {{"total", npz && t.type == dtype::bf16 ? 2 * t.bytes() : t.bytes()}};
    }
    file.release(t);
    tensors.push_back(std::move(entry));
  }
  c.weight_err_mean /= c.quantized;
  c.output_err_mean /= c.quantized;
  sink->finish(); // complete but unnamed until [5] and [6] have checked it
  c.export_bytes = sink->bytes();
  c.export_readable = sink->readable_path();
  std::cout << "[3] export     " << c.export_path << " (" << aplq::tools::human_size(c.export_bytes)
            << ", " << (npz ? "NPZ" : "safetensors") << ")\n";

  const aplq::io::model_config& cfg = model.config();
  json manifest = {{"aplq_manifest_version", 1},
                   {"model",
                    {{"name", m.name},
                     {"source", m.source},
                     {"family", cfg.model_type},
                     {"architecture", cfg.architecture},
                     {"context_length", cfg.context_length},
                     {"hidden_size", cfg.hidden_size},
                     {"intermediate_size", cfg.intermediate_size},
                     {"layers", cfg.layers},
                     {"heads", cfg.heads},
                     {"kv_heads", cfg.kv_heads},
                     {"vocab_size", cfg.vocab_size},
                     {"config", cfg.raw}}},
                   {"quantization",
                    {{"bits", c.format.bits},
                     {"group", c.format.group},
                     {"group_name", a.group},
                     {"zero_point", c.format.zero_point},
                     {"scale", aplq::io::scale_name(c.format.scale)},
                     {"layout", "sequential"},
                     {"method", "rtn"},
                     {"format", fname},
                     {"kept_patterns", a.keep}}},
                   {"export",
                    {{"file", c.export_path.substr(c.export_path.find_last_of('/') + 1)},
                     {"format", npz ? "npz" : "safetensors"},
                     {"bytes", c.export_bytes}}},
                   {"sizes",
                    {{"original_bytes", c.original_bytes},
                     {"export_bytes", c.export_bytes},
                     {"quantized_tensors_original_bytes", c.linear_original_bytes},
                     {"quantized_tensors_bytes", c.linear_export_bytes}}},
                   {"error",
                    {{"weight_rel_l2_mean", c.weight_err_mean},
                     {"weight_rel_l2_max", c.weight_err_max},
                     {"output_rel_l2_mean", c.output_err_mean},
                     {"output_rel_l2_max", c.output_err_max}}},
                   {"tensors", tensors}};
  aplq::io::output_file manifest_file;
  check(manifest_file.open(c.manifest_path));
  const std::string text = aplq::io::json_text(manifest, 2) + "\n";
  check(manifest_file.write(text.data(), text.size()));
  check(manifest_file.finish());
  c.manifest_readable = manifest_file.readable_path();
  std::cout << "[4] manifest   " << c.manifest_path << "\n";

  validate_manifest(c, manifest);
  c.accuracy_line = accuracy_check(a, model, c, manifest);
  // Both checked: only now do they take their names (an older export is replaced only here).
  sink->commit();
  check(manifest_file.commit());
  return c;
}

// ---- [5] the manifest read back against the export ---------------------------------------------

void validate_manifest(const conversion& c, const json& written) {
  std::string text;
  check(aplq::io::read_text(c.manifest_readable, text));
  const json manifest = json::parse(text, nullptr, false);
  if (manifest.is_discarded() || manifest != written)
    raise(c.manifest_path + ": the manifest read back differs from the one written");
  const json& tensors = manifest["tensors"];
  std::size_t checked = 0;
  if (manifest["export"]["format"] == "safetensors") {
    aplq::io::quantized_model loaded;
    check(loaded.open(c.export_readable));
    if (loaded.file().tensors().size() != static_cast<std::size_t>(2 * c.quantized + c.kept) +
                                              (c.format.zero_point ? c.quantized : 0))
      raise(c.export_path + ": holds " + std::to_string(loaded.file().tensors().size()) +
            " tensors, the manifest describes " + std::to_string(tensors.size()) + " weights");
    for (const json& e : tensors) {
      const std::string name = e["name"];
      if (e["quantized"]) {
        const aplq::io::quantized_weight* w = loaded.find(name);
        if (w == nullptr || w->view.rows != e["shape"][0] || w->view.cols != e["shape"][1] ||
            w->view.format.bits != e["bits"] || w->view.format.group != e["group"] ||
            w->view.format.zero_point != e["zero_point"] ||
            w->sizes.codes_bytes != e["bytes"]["codes"] ||
            w->sizes.scales_bytes != e["bytes"]["scales"] ||
            w->sizes.zeros_bytes != e["bytes"]["zeros"])
          raise(c.export_path + ": quantized weight '" + name + "' does not match the manifest");
      } else {
        const tensor_info* t = loaded.file().find(name);
        if (t == nullptr || t->shape != e["shape"].get<std::vector<std::int64_t>>() ||
            aplq::io::dtype_name(t->type) != e["dtype"] || t->bytes() != e["bytes"]["total"])
          raise(c.export_path + ": tensor '" + name + "' does not match the manifest");
      }
      ++checked;
    }
  } else {
    aplq::io::npz_reader loaded;
    check(loaded.open(c.export_readable));
    auto has = [&](const std::string& key, std::vector<std::int64_t> shape, std::uint64_t bytes) {
      const aplq::io::npz_array* a = loaded.find(key);
      if (a == nullptr || a->shape != shape || a->bytes != bytes)
        raise(c.export_path + ": array '" + key + "' does not match the manifest");
    };
    for (const json& e : tensors) {
      const std::string name = e["name"];
      const std::vector<std::int64_t> shape = e["shape"];
      if (e["quantized"]) {
        aplq::storage_sizes s;
        aplq::storage_of(c.format, shape[0], shape[1], s);
        has(name + ".codes", {shape[0], s.row_bytes}, e["bytes"]["codes"]);
        has(name + ".scales", {shape[0], s.groups}, e["bytes"]["scales"]);
        if (c.format.zero_point)
          has(name + ".zeros", {shape[0], s.groups}, e["bytes"]["zeros"]);
      } else {
        has(name, shape, e["bytes"]["total"]);
      }
      ++checked;
    }
  }
  std::cout << "[5] validate   manifest matches the export: " << checked << " tensors\n";
}

// ---- [6] the export read back and run: kernel vs oracle, and vs the FP32 original ---------------

std::string accuracy_check(const arguments& a, const aplq::io::hf_model& model, const conversion& c,
                           const json&) {
  aplq::io::quantized_model loaded; // the library's loader, on the file as written
  check(loaded.open(c.export_readable));
  std::vector<std::size_t> picked;
  const std::size_t total = loaded.weights().size();
  const std::size_t want =
      a.check_layers <= 0 ? total : std::min<std::size_t>(a.check_layers, total);
  for (std::size_t i = 0; i < want; ++i)
    picked.push_back(want == total ? i : i * total / want);

  const std::vector<aplq::validate::kernel> kernels = {
      {std::string("dispatch/") + aplq::dispatch::isa_name(aplq::dispatch::selected()),
       [](const aplq::any_qmatrix_view& w, const float* x, index_t n, float* y,
          const aplq::options& opt) { return aplq::dispatch::gemm(w, x, n, y, opt); }}};
  aplq::validate::settings settings;
  settings.threads = a.threads;
  // Real weights have heavier tails than the Gaussian model behind the quantization tolerance:
  // their error is reported against that model, and only the kernel checks decide.
  settings.quantization_tolerance = std::numeric_limits<double>::infinity();

  std::mt19937_64 rng(a.seed);
  std::normal_distribution<float> gauss;
  constexpr index_t n = 4; // activation rows: the GEMV path and a small GEMM
  double exact_worst = 0, int8_worst = 0, exact_tol = 0, int8_tol = 0, q_sum = 0, ratio_sum = 0;
  index_t rows_checked = 0, rows_total = 0;
  int failed = 0;
  for (std::size_t i : picked) {
    const aplq::io::quantized_weight& w = loaded.weights()[i];
    const std::string& name = w.name;
    const aplq::any_qmatrix_view& view = w.view;
    const aplq::io::hf_model::tensor_ref* src = model.find(name);
    if (src == nullptr)
      raise(c.export_path + ": quantized weight '" + name + "' is not in the source model");
    // The first rows of the layer, at most 16 Mi weights: the checks need the FP32 original in
    // memory, and a window keeps that small for any model size.
    aplq::any_qmatrix_view window = view;
    window.rows =
        std::min<index_t>(view.rows, std::max<index_t>(1, (index_t{1} << 24) / view.cols));
    std::vector<float> original;
    read_rows(*src->file, *src->info, 0, window.rows, original);
    rows_checked += window.rows;
    rows_total += view.rows;
    std::vector<float> x(static_cast<std::size_t>(n * view.cols));
    for (float& v : x)
      v = gauss(rng);
    aplq::validate::layer_result r;
    const aplq::status st = aplq::validate::validate_quantized(name, window, original.data(),
                                                               x.data(), n, kernels, r, settings);
    if (st != aplq::status::ok)
      raise(c.export_path + ": tensor '" + name +
            "': validation failed: " + aplq::status_string(st));
    loaded.release(w);
    src->file->release(*src->info);
    for (const aplq::validate::kernel_check& k : r.kernels) {
      const bool exact = k.policy == aplq::compute::exact;
      (exact ? exact_worst : int8_worst) =
          std::max(exact ? exact_worst : int8_worst, k.result.error);
      (exact ? exact_tol : int8_tol) = k.result.tolerance;
      if (!k.result.pass()) {
        ++failed;
        std::cout << "    FAIL " << name << " " << k.kernel << "/" << (exact ? "exact" : "int8")
                  << " kernel error " << k.result.error << " > " << k.result.tolerance << "\n";
      }
    }
    q_sum += r.quantization.error;
    ratio_sum += r.quantization.error / aplq::validate::quantization_model(view.format, view.cols);
  }
  const std::string line =
      text_of("accuracy %s: %zu of %zu layers (%.0f%% of their rows) through %s; kernel vs "
              "oracle rel-L2 exact %.2e (tol %.0e), int8 %.2e (tol %.1e); output vs FP32 "
              "rel-L2 mean %.4f (%.2fx the Gaussian-weight model)",
              failed ? "FAIL" : "pass", picked.size(), total,
              100.0 * double(rows_checked) / double(std::max<index_t>(1, rows_total)),
              kernels[0].name.c_str(), exact_worst, exact_tol, int8_worst, int8_tol,
              q_sum / double(picked.size()), ratio_sum / double(picked.size()));
  std::cout << "[6] " << line << "\n";
  if (failed)
    raise(std::to_string(failed) + " kernel checks failed on " + c.export_path);
  return line;
}

// ---- driver ---------------------------------------------------------------------------------

void print_summary(const located& m, const aplq::io::hf_model& model,
                   const std::vector<conversion>& done) {
  const aplq::io::model_config& cfg = model.config();
  std::cout << "\nSummary: " << m.name << " (" << m.source << ")\n";
  std::cout << "  family          " << (cfg.model_type.empty() ? "?" : cfg.model_type) << " / "
            << (cfg.architecture.empty() ? "?" : cfg.architecture) << "\n";
  std::cout << "  context length  " << cfg.context_length << "\n";
  for (const conversion& c : done) {
    const std::string line = text_of(
        "  q%d  %-22s manifest %s\n"
        "      size %s -> %s (linear weights %s -> %s, %.2fx smaller)\n"
        "      rel-L2 error: weights mean %.4f max %.4f; outputs mean %.4f max %.4f\n"
        "      %s\n",
        c.bits, aplq::name_of(c.format).c_str(), c.manifest_path.c_str(),
        aplq::tools::human_size(c.original_bytes).c_str(),
        aplq::tools::human_size(c.export_bytes).c_str(),
        aplq::tools::human_size(c.linear_original_bytes).c_str(),
        aplq::tools::human_size(c.linear_export_bytes).c_str(),
        double(c.linear_original_bytes) / double(std::max<std::uint64_t>(1, c.linear_export_bytes)),
        c.weight_err_mean, c.weight_err_max, c.output_err_mean, c.output_err_max,
        c.accuracy_line.c_str());
    std::cout << line;
  }
  struct rusage ru;
  if (::getrusage(RUSAGE_SELF, &ru) == 0)
    std::cout << "  peak resident memory "
              << aplq::tools::human_size(static_cast<std::uint64_t>(ru.ru_maxrss) * 1024)
              << " (model " << aplq::tools::human_size(model.bytes()) << ")\n";
}

void convert_model(const arguments& a, const std::string& model_arg) {
  const located m = locate(a, model_arg);
  aplq::io::hf_model model;
  check(model.open(m.dir));
  std::cout << "             " << model.dir() << ": " << model.tensors().size() << " tensors in "
            << model.shard_count() << " file" << (model.shard_count() == 1 ? "" : "s") << ", "
            << aplq::tools::human_size(model.bytes()) << "\n";
  make_dirs(a.output_dir);
  std::vector<conversion> done;
  for (int bits : a.bits) // a conversion that fails leaves nothing: its files were never named
    done.push_back(convert(a, m, model, bits));
  print_summary(m, model, done);
}

void list_models() {
  const aplq::tools::hub_options opt = aplq::tools::hub_options::from_environment();
  std::cout << "Catalog (aplq-convert ALIAS):\n";
  for (const aplq::tools::catalog_entry& e : aplq::tools::model_catalog) {
    const bool cached =
        is_directory((aplq::tools::repo_cache_dir(opt.cache, e.repo) / "snapshots").string());
    const std::string line =
        text_of("  %-20s %-38s %-10s %s\n", e.alias, e.repo, cached ? "cached" : "-", e.note);
    std::cout << line;
  }
  std::cout << "Any other repository id (org/name) or local model directory works too.\n"
            << "Cache: " << opt.cache.string() << "  Endpoint: " << opt.endpoint << "\n";
}

} // namespace

int main(int argc, char** argv) {
  arguments a;
  CLI::App app{"aplq-convert: quantize a Hugging Face model into an aplq export + manifest"};
  app.add_option("model", a.model, "model directory, repository id (org/name) or catalog alias");
  app.add_option("--bits", a.bits, "bit width(s): 1, 2, 4 or 8; several give one export each")
      ->delimiter(',')
      ->check(CLI::IsMember({1, 2, 4, 8}));
  app.add_option("--group", a.group, "scale group: 32, 64, 128, 256 or row")
      ->check(CLI::IsMember({"32", "64", "128", "256", "row"}));
  app.add_flag("--zero-point", a.zero_point, "asymmetric quantization with per-group zero points");
  app.add_option("--scale", a.scale, "scale type: f16 or f32")
      ->check(CLI::IsMember({"f16", "f32"}));
  app.add_option("--output-dir,-o", a.output_dir, "where the export and manifest go");
  app.add_option("--format", a.format, "export format: safetensors or npz")
      ->check(CLI::IsMember({"safetensors", "npz"}));
  app.add_option("--keep", a.keep, "glob of weights to keep unquantized (repeatable)")
      ->allow_extra_args(false);
  app.add_option("--name", a.name, "output file stem (default: the alias or model name)");
  app.add_option("--threads", a.threads, "quantization threads, 0 for all cores")
      ->check(CLI::Range(0, 1024));
  app.add_option("--check-layers", a.check_layers,
                 "layers the accuracy stage checks, spread evenly; 0 for all")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--seed", a.seed, "seed of the random activations of the error measurements");
  app.add_flag("--list-models", a.list_models, "list the catalog and what is cached");
  app.add_flag("--convert-all", a.convert_all, "convert every catalog model");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "aplq-convert: error: " << e.what() << " (see --help)\n";
    return 2;
  }
  try {
    if (a.list_models) {
      list_models();
      return 0;
    }
    if (a.convert_all) {
      if (!a.model.empty())
        throw std::runtime_error("--convert-all takes no MODEL");
      int failed = 0;
      for (const aplq::tools::catalog_entry& e : aplq::tools::model_catalog) {
        std::cout << "\n=== " << e.alias << " ===\n";
        try {
          arguments one = a;
          convert_model(one, e.alias);
        } catch (const std::exception& ex) {
          std::cerr << "aplq-convert: error: " << e.alias << ": " << ex.what() << "\n";
          ++failed;
        }
      }
      if (failed)
        std::cerr << "aplq-convert: error: " << failed << " of "
                  << std::size(aplq::tools::model_catalog) << " catalog models failed\n";
      return failed ? 1 : 0;
    }
    if (a.model.empty()) {
      std::cerr << "aplq-convert: error: MODEL is required (or --list-models, --convert-all; see "
                   "--help)\n";
      return 2;
    }
    convert_model(a, a.model);
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "aplq-convert: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
