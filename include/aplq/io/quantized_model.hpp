// SPDX-License-Identifier: Apache-2.0
// The aplq export of a quantized model and its loader. An export is one safetensors file that any
// safetensors reader can open. Each quantized weight W [rows, cols] becomes three tensors in the
// sequential (interchange) layout:
//
//   <name>.codes   U8        [rows, row_bytes]   packed codes, format.hpp's sequential layout
//   <name>.scales  F16 / F32 [rows, groups]      one scale per group
//   <name>.zeros   F16 / F32 [rows, groups]      zero-point formats only
//
// and __metadata__ says which: "aplq.format" = "aplq-export", "aplq.version" = "1",
// "aplq.layout" = "sequential", and "aplq.quantized" = a JSON object
// {"<name>": {"bits": 4, "group": 128, "zero_point": false, "scale": "f16", "shape": [r, c]}}.
// Every other tensor (embeddings, norms, biases) is stored as it came. The NPZ export holds the
// same arrays under the same names (BF16 widened to float32) and the metadata as the UTF-8 JSON
// bytes of a uint8 array "__metadata__". The manifest written next to the export
// (<model>_manifest_q<bits>.json) names the file in "export"/"file"; the loader accepts the
// manifest or either export, telling the formats apart by their first bytes. Loading maps the file
// and checks every quantized weight (dtypes, shapes, byte counts, finite scales) before handing out
// views the kernels take.
#pragma once

#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../visit.hpp"
#include "error.hpp"
#include "hf_model.hpp"
#include "npz.hpp"
#include "safetensors.hpp"

namespace aplq {
namespace io {

inline constexpr const char* export_format_name = "aplq-export";
inline constexpr const char* export_version = "1";

inline const char* scale_name(scale_kind s) noexcept {
  return s == scale_kind::f16 ? "f16" : "f32";
}
inline dtype scale_dtype(scale_kind s) noexcept {
  return s == scale_kind::f16 ? dtype::f16 : dtype::f32;
}

// The safetensors dtype of an NPY dtype, and back (false: no NPY equivalent, BF16 among them).
inline dtype dtype_of(npy_dtype t) noexcept {
  switch (t) {
  case npy_dtype::u8: return dtype::u8;
  case npy_dtype::u16: return dtype::u16;
  case npy_dtype::i8: return dtype::i8;
  case npy_dtype::i32: return dtype::i32;
  case npy_dtype::f16: return dtype::f16;
  case npy_dtype::f32: return dtype::f32;
  case npy_dtype::f64: return dtype::f64;
  }
  return dtype::u8; // unreachable
}
inline bool npy_of(dtype t, npy_dtype& out) noexcept {
  for (npy_dtype n : {npy_dtype::u8, npy_dtype::u16, npy_dtype::i8, npy_dtype::i32, npy_dtype::f16,
                      npy_dtype::f32, npy_dtype::f64})
    if (dtype_of(n) == t) {
      out = n;
      return true;
    }
  return false;
}

// The per-weight entry of "aplq.quantized".
inline nlohmann::json describe_quantized(const format_desc& f, index_t rows, index_t cols) {
  return {{"bits", f.bits},
          {"group", f.group},
          {"zero_point", f.zero_point},
          {"scale", scale_name(f.scale)},
          {"shape", {rows, cols}}};
}

// Plans the tensors of quantized weight `name` in a safetensors writer.
inline error plan_quantized(safetensors_writer& w, const std::string& name, const format_desc& f,
                            index_t rows, index_t cols) {
  storage_sizes s;
  if (status st = storage_of(f, rows, cols, s); st != status::ok)
    return fail(st, "tensor " + detail::quoted(name) + ": " + status_string(st));
  if (error e = w.add(name + ".codes", dtype::u8, {rows, s.row_bytes}))
    return e;
  if (error e = w.add(name + ".scales", scale_dtype(f.scale), {rows, s.groups}))
    return e;
  if (f.zero_point)
    if (error e = w.add(name + ".zeros", scale_dtype(f.scale), {rows, s.groups}))
      return e;
  return {};
}

// One quantized weight of a loaded export: a view into the mapped file.
struct quantized_weight {
  std::string name;
  any_qmatrix_view view; // sequential layout
  storage_sizes sizes;
};

class quantized_model {
public:
  // `path` is an export (.safetensors) or its manifest (.json).
  error open(const std::string& path) {
    weights_.clear();
    manifest_ = nlohmann::json();
    std::string file = path;
    if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0) {
      std::string text;
      if (error e = read_text(path, text))
        return e;
      manifest_ = nlohmann::json::parse(text, nullptr, false);
      const nlohmann::json* name = nullptr;
      if (manifest_.is_object() && manifest_.contains("export") && manifest_["export"].is_object())
        if (auto it = manifest_["export"].find("file");
            it != manifest_["export"].end() && it->is_string())
          name = &*it;
      if (name == nullptr)
        return fail(status::bad_file, path + ": not an aplq manifest (no export.file)");
      const std::string rel = name->get<std::string>();
      if (rel.empty() || rel.find('/') != std::string::npos)
        return fail(status::bad_file, path + ": export.file " + detail::quoted(rel) +
                                          " is not a file next to the manifest");
      const std::size_t slash = path.find_last_of('/');
      file = (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) + rel;
    }
    path_ = file;
    mapped_file head;
    if (error e = head.open(file))
      return e;
    npz_ = head.size() >= 4 && std::memcmp(head.data(), "PK\x03\x04", 4) == 0;
    head.close();
    if (npz_) {
      if (error e = zip_.open(file))
        return e;
      if (error e = npz_metadata())
        return e;
    } else {
      if (error e = file_.open(file))
        return e;
      meta_ = file_.metadata();
    }
    return parse_metadata();
  }

  // True when the export is an NPZ archive (file() is then empty, npz() holds the arrays).
  bool is_npz() const noexcept { return npz_; }
  const safetensors_file& file() const noexcept { return file_; }
  const npz_reader& npz() const noexcept { return zip_; }
  const std::vector<quantized_weight>& weights() const noexcept { return weights_; }
  const quantized_weight* find(const std::string& name) const noexcept {
    for (const quantized_weight& w : weights_)
      if (w.name == name)
        return &w;
    return nullptr;
  }
  // Lets the mapped pages of a weight leave the resident set once a caller is done with it.
  void release(const quantized_weight& w) const noexcept {
    if (!npz_)
      for (const char* suffix : {".codes", ".scales", ".zeros"})
        if (const tensor_info* t = file_.find(w.name + suffix))
          file_.release(*t);
  }
  // The manifest when open() was given one (null JSON otherwise).
  const nlohmann::json& manifest() const noexcept { return manifest_; }
  // True for the .codes/.scales/.zeros tensors of a quantized weight.
  bool is_part_of_quantized(const std::string& tensor) const noexcept {
    for (const char* suffix : {".codes", ".scales", ".zeros"}) {
      const std::size_t n = std::char_traits<char>::length(suffix);
      if (tensor.size() > n && tensor.compare(tensor.size() - n, n, suffix) == 0 &&
          find(tensor.substr(0, tensor.size() - n)) != nullptr)
        return true;
    }
    return false;
  }

private:
  error bad(const std::string& what) const { return fail(status::bad_file, path_ + ": " + what); }

  error parse_metadata() {
    const auto& meta = meta_;
    const auto fmt = meta.find("aplq.format");
    if (fmt == meta.end() || fmt->second != export_format_name)
      return bad("not an aplq export (no aplq.format metadata)");
    const auto ver = meta.find("aplq.version");
    if (ver == meta.end() || ver->second != export_version)
      return bad("aplq export version " + (ver == meta.end() ? std::string("?") : ver->second) +
                 " is not supported (this loader reads version " + export_version + ")");
    const auto lay = meta.find("aplq.layout");
    if (lay == meta.end() || lay->second != "sequential")
      return bad("aplq.layout must be sequential");
    const auto q = meta.find("aplq.quantized");
    const nlohmann::json list =
        q == meta.end() ? nlohmann::json() : nlohmann::json::parse(q->second, nullptr, false);
    if (!list.is_object())
      return bad("aplq.quantized metadata is not a JSON object");
    for (auto it = list.begin(); it != list.end(); ++it)
      if (error e = load_weight(it.key(), *it))
        return e;
    return {};
  }

  error load_weight(const std::string& name, const nlohmann::json& d) {
    const std::string who = "quantized weight " + detail::quoted(name) + ": ";
    auto int_field = [&](const char* key, long long& v) {
      const auto it = d.find(key);
      if (it == d.end() || !it->is_number_integer())
        return false;
      v = it->get<long long>();
      return true;
    };
    long long bits = 0, group = 0;
    const auto zp = d.find("zero_point");
    const auto sc = d.find("scale");
    const auto sh = d.find("shape");
    if (!d.is_object() || !int_field("bits", bits) || !int_field("group", group) || zp == d.end() ||
        !zp->is_boolean() || sc == d.end() || !sc->is_string() || sh == d.end() ||
        !sh->is_array() || sh->size() != 2 || !(*sh)[0].is_number_integer() ||
        !(*sh)[1].is_number_integer())
      return bad(who + "entry needs bits, group, zero_point, scale and shape [rows, cols]");
    quantized_weight w;
    w.name = name;
    format_desc& f = w.view.format;
    f.bits = static_cast<int>(bits);
    f.group = static_cast<int>(group);
    f.zero_point = zp->get<bool>();
    f.layout = layout_kind::sequential;
    if (*sc == "f16")
      f.scale = scale_kind::f16;
    else if (*sc == "f32")
      f.scale = scale_kind::f32;
    else
      return bad(who + "scale type " + sc->dump() + " is not f16 or f32");
    w.view.rows = (*sh)[0].get<index_t>();
    w.view.cols = (*sh)[1].get<index_t>();
    if (bits != f.bits || group != f.group ||
        visit_format(f, [](auto) { return status::ok; }) != status::ok)
      return bad(who + "bits " + std::to_string(bits) + ", group " + std::to_string(group) +
                 " is not a format aplq implements");
    if (storage_of(f, w.view.rows, w.view.cols, w.sizes) != status::ok)
      return bad(who + "shape " + sh->dump() + " is not a valid matrix shape");

    auto part = [&](const char* suffix, dtype type, index_t cols, array& out) -> error {
      if (!find_array(name + suffix, out))
        return bad(who + "tensor " + detail::quoted(name + suffix) + " is missing");
      if (out.type != type || out.shape.size() != 2 || out.shape[0] != w.view.rows ||
          out.shape[1] != cols)
        return bad("tensor " + detail::quoted(name + suffix) + " is " + dtype_name(out.type) + " " +
                   nlohmann::json(out.shape).dump() + ", expected " + dtype_name(type) + " [" +
                   std::to_string(w.view.rows) + ", " + std::to_string(cols) + "]");
      if (reinterpret_cast<std::uintptr_t>(out.data) %
              static_cast<std::uintptr_t>(dtype_size(type)) !=
          0)
        return bad("tensor " + detail::quoted(name + suffix) +
                   " is not aligned to its element size (the file was not written by aplq)");
      return {};
    };
    array codes, scales, zeros;
    if (error e = part(".codes", dtype::u8, w.sizes.row_bytes, codes))
      return e;
    if (error e = part(".scales", scale_dtype(f.scale), w.sizes.groups, scales))
      return e;
    if (f.zero_point)
      if (error e = part(".zeros", scale_dtype(f.scale), w.sizes.groups, zeros))
        return e;
    for (const array* t : {&scales, &zeros}) {
      if (t->data == nullptr)
        continue;
      std::vector<float> v(static_cast<std::size_t>(t->shape[0] * t->shape[1]));
      to_float(t->type, t->data, static_cast<std::int64_t>(v.size()), v.data());
      for (std::size_t i = 0; i < v.size(); ++i)
        if (!std::isfinite(v[i]))
          return bad("tensor " + detail::quoted(t->name) + " holds a non-finite value at [" +
                     std::to_string(i / static_cast<std::size_t>(w.sizes.groups)) + ", " +
                     std::to_string(i % static_cast<std::size_t>(w.sizes.groups)) + "]");
    }
    w.view.codes = codes.data;
    w.view.scales = scales.data;
    w.view.zeros = zeros.data;
    weights_.push_back(std::move(w));
    return {};
  }

  // A tensor of either container.
  struct array {
    std::string name;
    dtype type = dtype::u8;
    std::vector<std::int64_t> shape;
    const std::uint8_t* data = nullptr;
  };

  bool find_array(const std::string& name, array& out) const {
    out.name = name;
    if (!npz_) {
      const tensor_info* t = file_.find(name);
      if (t == nullptr)
        return false;
      out.type = t->type;
      out.shape = t->shape;
      out.data = file_.data(*t);
      return true;
    }
    const npz_array* a = zip_.find(name);
    if (a == nullptr)
      return false;
    out.type = dtype_of(a->type);
    out.shape = a->shape;
    out.data = a->data;
    return true;
  }

  // The NPZ export's metadata: a uint8 array "__metadata__" holding a JSON object of strings.
  error npz_metadata() {
    meta_.clear();
    const npz_array* a = zip_.find("__metadata__");
    if (a == nullptr || a->type != npy_dtype::u8 || a->shape.size() != 1)
      return bad("not an aplq export (no __metadata__ uint8 array)");
    const auto* text = reinterpret_cast<const char*>(a->data);
    const nlohmann::json m = nlohmann::json::parse(text, text + a->bytes, nullptr, false);
    if (!m.is_object())
      return bad("__metadata__ is not a JSON object");
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (!it->is_string())
        return bad("__metadata__ value " + detail::quoted(it.key()) + " is not a string");
      meta_[it.key()] = it->get<std::string>();
    }
    return {};
  }

  std::string path_;
  bool npz_ = false;
  safetensors_file file_;
  npz_reader zip_;
  std::map<std::string, std::string> meta_;
  std::vector<quantized_weight> weights_;
  nlohmann::json manifest_;
};

} // namespace io
} // namespace aplq
