// SPDX-License-Identifier: Apache-2.0
// safetensors read (memory-mapped, every header field checked against the file before any tensor
// byte is touched) and write (planned header first, tensors streamed in any order, temporary name
// until commit). The format: 8 bytes little-endian header length N, N bytes of UTF-8 JSON
// {"name": {"dtype": "F16", "shape": [r, c], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {"key": "value"}}, then the data section the offsets index.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../half.hpp"
#include "error.hpp"
#include "mapped_file.hpp"
#include "output_file.hpp"

namespace aplq {
namespace io {

enum class dtype {
  boolean,
  u8,
  i8,
  f8_e5m2,
  f8_e4m3,
  i16,
  u16,
  f16,
  bf16,
  i32,
  u32,
  f32,
  f64,
  i64,
  u64
};

struct dtype_info {
  dtype type;
  const char* name; // as spelled in the header
  int size;         // bytes per element
};

inline constexpr dtype_info dtype_table[] = {
    {dtype::boolean, "BOOL", 1},    {dtype::u8, "U8", 1},           {dtype::i8, "I8", 1},
    {dtype::f8_e5m2, "F8_E5M2", 1}, {dtype::f8_e4m3, "F8_E4M3", 1}, {dtype::i16, "I16", 2},
    {dtype::u16, "U16", 2},         {dtype::f16, "F16", 2},         {dtype::bf16, "BF16", 2},
    {dtype::i32, "I32", 4},         {dtype::u32, "U32", 4},         {dtype::f32, "F32", 4},
    {dtype::f64, "F64", 8},         {dtype::i64, "I64", 8},         {dtype::u64, "U64", 8},
};

inline const dtype_info& info_of(dtype t) noexcept {
  for (const dtype_info& d : dtype_table)
    if (d.type == t)
      return d;
  return dtype_table[0]; // unreachable: every enumerator is in the table
}
inline const char* dtype_name(dtype t) noexcept { return info_of(t).name; }
inline int dtype_size(dtype t) noexcept { return info_of(t).size; }
inline bool parse_dtype(const std::string& name, dtype& out) noexcept {
  for (const dtype_info& d : dtype_table)
    if (name == d.name) {
      out = d.type;
      return true;
    }
  return false;
}
// F32, F16, BF16 and F64 convert to float (to_float below).
inline bool is_float(dtype t) noexcept {
  return t == dtype::f32 || t == dtype::f16 || t == dtype::bf16 || t == dtype::f64;
}

struct tensor_info {
  std::string name;
  dtype type = dtype::f32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0; // byte offsets into the data section
  std::uint64_t end = 0;

  std::int64_t elements() const noexcept {
    std::int64_t n = 1;
    for (std::int64_t d : shape)
      n *= d;
    return n;
  }
  std::uint64_t bytes() const noexcept { return end - begin; }
};

// n elements of a float dtype at src (any alignment) to float.
inline void to_float(dtype t, const void* src, std::int64_t n, float* dst) noexcept {
  const auto* p = static_cast<const std::uint8_t*>(src);
  switch (t) {
  case dtype::f32: std::memcpy(dst, p, static_cast<std::size_t>(n) * 4); break;
  case dtype::f16:
    for (std::int64_t i = 0; i < n; ++i) {
      half h;
      std::memcpy(&h.bits, p + 2 * i, 2);
      dst[i] = half_to_float(h);
    }
    break;
  case dtype::bf16:
    for (std::int64_t i = 0; i < n; ++i) {
      std::uint16_t b;
      std::memcpy(&b, p + 2 * i, 2);
      const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
      std::memcpy(dst + i, &u, 4);
    }
    break;
  case dtype::f64:
    for (std::int64_t i = 0; i < n; ++i) {
      double d;
      std::memcpy(&d, p + 8 * i, 8);
      dst[i] = static_cast<float>(d);
    }
    break;
  default: break; // callers check is_float first
  }
}

// JSON text of j that never throws: invalid UTF-8 in a string (a file name, say) becomes U+FFFD.
template <class Json>
std::string json_text(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

namespace detail {

inline bool valid_utf8(const std::uint8_t* s, std::size_t n) noexcept {
  std::size_t i = 0;
  while (i < n) {
    const std::uint8_t c = s[i];
    int extra;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1;
      cp = c & 0x1fu;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2;
      cp = c & 0x0fu;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3;
      cp = c & 0x07u;
    } else {
      return false;
    }
    if (n - i <= static_cast<std::size_t>(extra)) // continuation bytes past the end
      return false;
    for (int k = 1; k <= extra; ++k) {
      if ((s[i + k] & 0xc0) != 0x80)
        return false;
      cp = (cp << 6) | (s[i + k] & 0x3fu);
    }
    static constexpr std::uint32_t min_of[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_of[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += static_cast<std::size_t>(extra) + 1;
  }
  return true;
}

inline std::string quoted(const std::string& s) { return "'" + s + "'"; }

} // namespace detail

// A safetensors file opened for reading. open() checks the whole header: its length against the
// file, UTF-8 and JSON, every dtype, shape and offset pair, that each tensor's byte count matches
// its shape, that tensors lie inside the data section and do not overlap.
class safetensors_file {
public:
  // Largest header accepted (the reference implementation's limit).
  static constexpr std::uint64_t max_header_bytes = 100u << 20;

  error open(const std::string& path) {
    tensors_.clear();
    metadata_.clear();
    if (error e = map_.open(path))
      return e;
    const std::uint64_t size = map_.size();
    if (size < 8)
      return bad("file of " + std::to_string(size) +
                 " bytes is shorter than the 8-byte header length");
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i)
      n = (n << 8) | map_.data()[i];
    if (n > max_header_bytes)
      return bad("header length " + std::to_string(n) + " exceeds the " +
                 std::to_string(max_header_bytes) + "-byte limit");
    if (n > size - 8)
      return bad("header length " + std::to_string(n) + " is larger than the file (" +
                 std::to_string(size) + " bytes): truncated or not a safetensors file");
    const std::uint8_t* header = map_.data() + 8;
    if (!detail::valid_utf8(header, static_cast<std::size_t>(n)))
      return bad("header is not valid UTF-8");
    data_offset_ = 8 + n;
    const std::uint64_t data_size = size - data_offset_;

    nlohmann::json doc = nlohmann::json::parse(header, header + n, nullptr, false);
    if (doc.is_discarded() || !doc.is_object())
      return bad("header is not a JSON object");
    for (auto it = doc.begin(); it != doc.end(); ++it) {
      if (it.key() == "__metadata__") {
        if (!it->is_object())
          return bad("__metadata__ is not an object");
        for (auto m = it->begin(); m != it->end(); ++m) {
          if (!m->is_string())
            return bad("__metadata__ value " + detail::quoted(m.key()) + " is not a string");
          metadata_[m.key()] = m->get<std::string>();
        }
        continue;
      }
      tensor_info t;
      t.name = it.key();
      if (error e = parse_entry(*it, data_size, t))
        return e;
      tensors_.push_back(std::move(t));
    }
    std::vector<const tensor_info*> by_offset;
    for (const tensor_info& t : tensors_)
      by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(), [](const tensor_info* a, const tensor_info* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    for (std::size_t i = 1; i < by_offset.size(); ++i)
      if (by_offset[i]->begin < by_offset[i - 1]->end)
        return bad("tensors " + detail::quoted(by_offset[i - 1]->name) + " and " +
                   detail::quoted(by_offset[i]->name) + " overlap");
    std::sort(tensors_.begin(), tensors_.end(), [](const tensor_info& a, const tensor_info& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.name < b.name;
    });
    return {};
  }

  const std::string& path() const noexcept { return map_.path(); }
  // In file order.
  const std::vector<tensor_info>& tensors() const noexcept { return tensors_; }
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  const tensor_info* find(const std::string& name) const noexcept {
    for (const tensor_info& t : tensors_)
      if (t.name == name)
        return &t;
    return nullptr;
  }
  // The tensor's bytes (checked by open to lie inside the file).
  const std::uint8_t* data(const tensor_info& t) const noexcept {
    return map_.data() + data_offset_ + t.begin;
  }
  // Converts a float tensor (F32, F16, BF16, F64) to float; dst holds t.elements() floats.
  error read_float(const tensor_info& t, float* dst) const {
    if (!is_float(t.type))
      return fail(status::bad_file, path() + ": tensor " + detail::quoted(t.name) + " has dtype " +
                                        dtype_name(t.type) + ", not a float dtype");
    to_float(t.type, data(t), t.elements(), dst);
    return {};
  }
  // Lets the pages of a tensor leave this process's resident set once it has been consumed.
  void release(const tensor_info& t) const noexcept { release(t, 0, t.bytes()); }
  // The same for bytes [offset, offset + n) of a tensor.
  void release(const tensor_info& t, std::uint64_t offset, std::uint64_t n) const noexcept {
    map_.release(data_offset_ + t.begin + offset, n);
  }

private:
  error bad(const std::string& what) const {
    return fail(status::bad_file, map_.path() + ": " + what);
  }

  error parse_entry(const nlohmann::json& v, std::uint64_t data_size, tensor_info& t) const {
    const std::string who = "tensor " + detail::quoted(t.name);
    if (!v.is_object())
      return bad(who + ": entry is not an object");
    const auto d = v.find("dtype");
    const auto s = v.find("shape");
    const auto o = v.find("data_offsets");
    if (d == v.end() || s == v.end() || o == v.end())
      return bad(who + ": entry needs dtype, shape and data_offsets");
    if (!d->is_string() || !parse_dtype(d->get<std::string>(), t.type))
      return bad(who + ": unknown dtype " + (d->is_string() ? d->get<std::string>() : d->dump()));
    if (!s->is_array())
      return bad(who + ": shape is not an array");
    // Elements times element size must fit the data section, so bound the product as it grows.
    std::uint64_t elements = 1;
    for (const auto& dim : *s) {
      if (!dim.is_number_unsigned())
        return bad(who + ": shape " + s->dump() + " has a dimension that is not a count");
      const std::uint64_t k = dim.get<std::uint64_t>();
      if (k > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return bad(who + ": shape " + s->dump() + " has a dimension beyond 2^63");
      if (k != 0 && elements > data_size / k + 1)
        return bad(who + ": shape " + s->dump() + " is larger than the file");
      elements *= k;
      t.shape.push_back(static_cast<std::int64_t>(k));
    }
    if (!o->is_array() || o->size() != 2 || !(*o)[0].is_number_unsigned() ||
        !(*o)[1].is_number_unsigned())
      return bad(who + ": data_offsets is not a pair of offsets");
    t.begin = (*o)[0].get<std::uint64_t>();
    t.end = (*o)[1].get<std::uint64_t>();
    if (t.begin > t.end)
      return bad(who + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                 ") are reversed");
    if (t.end > data_size)
      return bad(who + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                 ") exceed the data section of " + std::to_string(data_size) + " bytes");
    const std::uint64_t need = elements * static_cast<std::uint64_t>(dtype_size(t.type));
    if (elements > data_size || need != t.end - t.begin)
      return bad(who + ": shape " + s->dump() + " of " + dtype_name(t.type) + " needs " +
                 std::to_string(need) + " bytes, data_offsets hold " +
                 std::to_string(t.end - t.begin));
    return {};
  }

  mapped_file map_;
  std::uint64_t data_offset_ = 0;
  std::vector<tensor_info> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes a safetensors file: plan every tensor (add), open (writes the header), then write each
// tensor's bytes, in any order and in pieces, and commit. Tensors are laid out by decreasing
// element size, so every tensor starts at a multiple of its element size (the header is padded
// to 8 bytes) and a reader may use the mapped data in place.
class safetensors_writer {
public:
  error add(const std::string& name, dtype type, std::vector<std::int64_t> shape) {
    if (opened_)
      return fail(status::invalid_argument, out_.path() + ": add after open");
    if (name.empty() || name == "__metadata__" || index_.count(name))
      return fail(status::invalid_argument, "safetensors: tensor name " + detail::quoted(name) +
                                                " is empty, reserved or already planned");
    tensor_info t;
    t.name = name;
    t.type = type;
    std::uint64_t n = 1;
    for (std::int64_t d : shape) {
      if (d < 0)
        return fail(status::invalid_shape,
                    "safetensors: tensor " + detail::quoted(name) + " has a negative dimension");
      n *= static_cast<std::uint64_t>(d);
    }
    t.shape = std::move(shape);
    t.end = n * static_cast<std::uint64_t>(dtype_size(type)); // a size until open() places it
    index_[name] = plan_.size();
    plan_.push_back(std::move(t));
    return {};
  }
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

  // Places the tensors and writes the header to a temporary file next to `path`.
  error open(const std::string& path) {
    std::vector<std::size_t> order(plan_.size());
    for (std::size_t i = 0; i < order.size(); ++i)
      order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return dtype_size(plan_[a].type) > dtype_size(plan_[b].type);
    });
    std::uint64_t at = 0;
    for (std::size_t i : order) {
      const std::uint64_t bytes = plan_[i].end;
      plan_[i].begin = at;
      plan_[i].end = at + bytes;
      at += bytes;
    }
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata_.empty())
      header["__metadata__"] = metadata_;
    for (std::size_t i : order) {
      const tensor_info& t = plan_[i];
      header[t.name] = {
          {"dtype", dtype_name(t.type)}, {"shape", t.shape}, {"data_offsets", {t.begin, t.end}}};
    }
    std::string text = json_text(header);
    text.append((8 - text.size() % 8) % 8, ' ');
    if (error e = out_.open(path))
      return e;
    std::uint8_t length[8];
    for (int i = 0; i < 8; ++i)
      length[i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(text.size()) >> (8 * i));
    if (error e = out_.write(length, 8))
      return e;
    if (error e = out_.write(text.data(), text.size()))
      return e;
    data_offset_ = 8 + text.size();
    written_.assign(plan_.size(), 0);
    opened_ = true;
    // Size the file now: a full disk fails here rather than after minutes of quantization.
    if (at > 0)
      if (error e = out_.write_at(data_offset_ + at - 1, "", 1))
        return e;
    return {};
  }

  // Writes bytes [offset, offset + n) of tensor `name`.
  error write(const std::string& name, const void* data, std::uint64_t n,
              std::uint64_t offset = 0) {
    const auto it = index_.find(name);
    if (!opened_ || it == index_.end())
      return fail(status::invalid_argument, out_.path() + ": write of tensor " +
                                                detail::quoted(name) + " that is not planned");
    const tensor_info& t = plan_[it->second];
    if (offset > t.bytes() || n > t.bytes() - offset)
      return fail(status::invalid_argument, out_.path() + ": tensor " + detail::quoted(name) +
                                                ": write past its " + std::to_string(t.bytes()) +
                                                " bytes");
    if (error e = out_.write_at(data_offset_ + t.begin + offset, data, static_cast<std::size_t>(n)))
      return e;
    written_[it->second] += n;
    return {};
  }

  // Checks every tensor was written in full and flushes the file, still unnamed: readable_path()
  // opens it for a check before commit().
  error finish() {
    if (!opened_)
      return fail(status::invalid_argument, "safetensors: finish before open");
    for (std::size_t i = 0; i < plan_.size(); ++i)
      if (written_[i] != plan_[i].bytes())
        return fail(status::internal_error, out_.path() + ": tensor " +
                                                detail::quoted(plan_[i].name) + " written " +
                                                std::to_string(written_[i]) + " of " +
                                                std::to_string(plan_[i].bytes()) + " bytes");
    return out_.finish();
  }
  std::string readable_path() const { return out_.readable_path(); }
  // Finishes the file and puts it under its final name.
  error commit() {
    if (error e = finish())
      return e;
    opened_ = false;
    return out_.commit();
  }
  void discard() noexcept {
    out_.discard();
    opened_ = false;
  }
  // Total file size once open.
  std::uint64_t file_bytes() const noexcept { return out_.size(); }

private:
  std::vector<tensor_info> plan_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::uint64_t> written_;
  output_file out_;
  std::uint64_t data_offset_ = 0;
  bool opened_ = false;
};

} // namespace io
} // namespace aplq
