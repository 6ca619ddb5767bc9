// SPDX-License-Identifier: Apache-2.0
// NPZ (numpy's .npz) write and read. An .npz is a ZIP archive whose members "<key>.npy" each hold
// one array: a .npy header (magic "\x93NUMPY", version, header length, then a Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), } padded with spaces and '\n' so the
// data starts on a 64-byte boundary) followed by the raw little-endian C-order elements.
//
// npz_writer streams: a tensor's bytes arrive in chunks and are never held whole. Each member is
// stored (ZIP method 0, what numpy.savez writes and numpy.load reads); its size is known from the
// shape when it begins, so the local header is written then, with a CRC-32 placeholder that is
// patched (output_file::write_at) once the last chunk has gone through zlib's crc32. A padding
// extra field (0xD935, the id Android's zipalign uses) puts every member, and so every array's
// data, on a 64-byte boundary of the archive: a reader that maps the file gets aligned arrays.
// ZIP64 (PKWARE APPNOTE 4.5.3 extra fields, the ZIP64 end of central directory record and its
// locator) is used wherever a size, offset or count overflows its 32- or 16-bit field — a 7B
// model's export is larger than 4 GiB — and everywhere under force_zip64(true), a test hook.
// Timestamps are fixed (1980-01-01 00:00), so the same arrays always give the same bytes.
//
// npz_reader maps an archive and lists its arrays with pointers into the mapping. Every size and
// offset (end of central directory, ZIP64 records, central directory entries, local headers,
// .npy headers) is checked against the file before it is used, so a truncated or corrupt archive
// gives an error, never an out-of-bounds read. Stored members only (numpy.savez_compressed output
// is refused with a clear message); CRC-32s are checked unless the caller opts out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <zlib.h>

#include "error.hpp"
#include "mapped_file.hpp"
#include "output_file.hpp"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "aplq/io/npz.hpp writes array bytes as little-endian: big-endian hosts are unsupported"
#endif

namespace aplq {
namespace io {

// The element types an aplq export holds, with numpy's descr strings.
enum class npy_dtype { u8, u16, i8, i32, f16, f32, f64 };

struct npy_dtype_info {
  npy_dtype type;
  const char* name;  // for messages: "f32"
  const char* descr; // as numpy writes it: "<f4" ('|' for one-byte types)
  int size;          // bytes per element
};

inline constexpr npy_dtype_info npy_dtype_table[] = {
    {npy_dtype::u8, "u8", "|u1", 1},   {npy_dtype::u16, "u16", "<u2", 2},
    {npy_dtype::i8, "i8", "|i1", 1},   {npy_dtype::i32, "i32", "<i4", 4},
    {npy_dtype::f16, "f16", "<f2", 2}, {npy_dtype::f32, "f32", "<f4", 4},
    {npy_dtype::f64, "f64", "<f8", 8},
};

inline const npy_dtype_info& npy_info_of(npy_dtype t) noexcept {
  for (const npy_dtype_info& d : npy_dtype_table)
    if (d.type == t)
      return d;
  return npy_dtype_table[0]; // unreachable: every enumerator is in the table
}
inline const char* npy_dtype_name(npy_dtype t) noexcept { return npy_info_of(t).name; }
inline const char* npy_descr(npy_dtype t) noexcept { return npy_info_of(t).descr; }
inline int npy_itemsize(npy_dtype t) noexcept { return npy_info_of(t).size; }

// numpy's spellings of the types above: the table's descr, and '<' for '|' on one-byte types.
inline bool parse_npy_descr(const std::string& descr, npy_dtype& out) noexcept {
  for (const npy_dtype_info& d : npy_dtype_table) {
    if (descr == d.descr || (d.size == 1 && descr.size() == 3 && descr[0] == '<' &&
                             descr.compare(1, 2, d.descr + 1) == 0)) {
      out = d.type;
      return true;
    }
  }
  return false;
}

namespace npz_detail {

// ZIP record signatures and sizes (APPNOTE 4.3).
inline constexpr std::uint32_t local_sig = 0x04034b50;
inline constexpr std::uint32_t central_sig = 0x02014b50;
inline constexpr std::uint32_t eocd_sig = 0x06054b50;
inline constexpr std::uint32_t eocd64_sig = 0x06064b50;
inline constexpr std::uint32_t locator64_sig = 0x07064b50;
inline constexpr std::uint64_t local_size = 30;
inline constexpr std::uint64_t central_size = 46;
inline constexpr std::uint64_t eocd_size = 22;
inline constexpr std::uint64_t eocd64_size = 56;
inline constexpr std::uint64_t locator64_size = 20;
inline constexpr std::uint16_t zip64_extra_id = 0x0001;
inline constexpr std::uint16_t align_extra_id = 0xD935;
inline constexpr std::uint32_t max32 = 0xFFFFFFFFu; // also the "see the ZIP64 field" marker
inline constexpr std::uint16_t max16 = 0xFFFFu;
inline constexpr std::uint16_t version_plain = 20; // 2.0: stored members
inline constexpr std::uint16_t version_zip64 = 45; // 4.5: ZIP64
inline constexpr std::uint16_t made_by_unix = 3u << 8;
inline constexpr std::uint16_t flag_utf8 = 1u << 11;
inline constexpr std::uint16_t dos_date_1980 = (0u << 9) | (1u << 5) | 1u; // 1980-01-01
inline constexpr std::uint32_t unix_mode_file = 0100644u;
inline constexpr std::uint64_t npy_align = 64; // numpy's ARRAY_ALIGN; also the member alignment
inline constexpr char npy_magic[] = "\x93NUMPY";
inline constexpr std::size_t npy_magic_size = 6;

inline void put16(std::string& s, std::uint32_t v) {
  s.push_back(static_cast<char>(v & 0xff));
  s.push_back(static_cast<char>((v >> 8) & 0xff));
}
inline void put32(std::string& s, std::uint32_t v) {
  put16(s, v & 0xffff);
  put16(s, v >> 16);
}
inline void put64(std::string& s, std::uint64_t v) {
  put32(s, static_cast<std::uint32_t>(v));
  put32(s, static_cast<std::uint32_t>(v >> 32));
}
inline std::uint16_t get16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}
inline std::uint32_t get32(const std::uint8_t* p) noexcept {
  return get16(p) | (static_cast<std::uint32_t>(get16(p + 2)) << 16);
}
inline std::uint64_t get64(const std::uint8_t* p) noexcept {
  return get32(p) | (static_cast<std::uint64_t>(get32(p + 4)) << 32);
}

// zlib's crc32 over any length (its length argument is 32-bit).
inline std::uint32_t crc32_of(std::uint32_t crc, const void* data, std::uint64_t n) noexcept {
  const auto* p = static_cast<const Bytef*>(data);
  while (n > 0) {
    const uInt part = n > (1u << 30) ? (1u << 30) : static_cast<uInt>(n);
    crc = static_cast<std::uint32_t>(::crc32(crc, p, part));
    p += part;
    n -= part;
  }
  return crc;
}

// Finds extra field `id` among the fields in [p, p + n): 1 when found (body and len set), 0 when
// absent, -1 when a field runs past the end.
inline int find_extra(const std::uint8_t* p, std::uint64_t n, std::uint16_t id,
                      const std::uint8_t*& body, std::uint16_t& len) noexcept {
  while (n >= 4) {
    const std::uint16_t field = get16(p), size = get16(p + 2);
    if (size > n - 4)
      return -1;
    if (field == id) {
      body = p + 4;
      len = size;
      return 1;
    }
    p += 4 + size;
    n -= 4 + static_cast<std::uint64_t>(size);
  }
  return 0;
}

inline std::string quote(const std::string& s) { return "'" + s + "'"; }

// "[3, 4]" for messages.
inline std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// prod(shape) * itemsize, false when a dimension is negative or the product overflows.
inline bool array_bytes(const std::vector<std::int64_t>& shape, int itemsize,
                        std::uint64_t& out) noexcept {
  std::uint64_t n = static_cast<std::uint64_t>(itemsize);
  const std::uint64_t limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  for (std::int64_t d : shape) {
    if (d < 0)
      return false;
    const std::uint64_t u = static_cast<std::uint64_t>(d);
    if (u != 0 && n > limit / u)
      return false;
    n *= u;
  }
  out = n;
  return true;
}

// The complete .npy header (magic to '\n'): version 1.0 while the header length fits 16 bits,
// 2.0 beyond (only shapes with thousands of axes get there).
inline std::string npy_header(npy_dtype t, const std::vector<std::int64_t>& shape) {
  std::string dict = "{'descr': '";
  dict += npy_descr(t);
  dict += "', 'fortran_order': False, 'shape': (";
  for (std::size_t i = 0; i < shape.size(); ++i)
    dict += (i ? ", " : "") + std::to_string(shape[i]);
  dict += shape.size() == 1 ? ",), }" : "), }";
  for (int major = 1; major <= 2; ++major) {
    const std::size_t len_bytes = major == 1 ? 2 : 4;
    const std::size_t fixed = npy_magic_size + 2 + len_bytes;
    const std::size_t unpadded = fixed + dict.size() + 1; // + '\n'
    const std::size_t total = (unpadded + npy_align - 1) / npy_align * npy_align;
    const std::size_t header_len = total - fixed;
    if (major == 1 && header_len > max16)
      continue;
    std::string h(npy_magic, npy_magic_size);
    h.push_back(static_cast<char>(major));
    h.push_back(0);
    if (major == 1)
      put16(h, static_cast<std::uint32_t>(header_len));
    else
      put32(h, static_cast<std::uint32_t>(header_len));
    h += dict;
    h.append(total - h.size() - 1, ' ');
    h.push_back('\n');
    return h;
  }
  return {}; // unreachable: a 32-bit length holds any header a 64-bit shape list makes here
}

// Parses the dict literal of a .npy header: exactly the keys 'descr', 'fortran_order' and
// 'shape', in any order, as numpy writes them (Python 2 era "3L" dimensions included).
class npy_dict_parser {
public:
  npy_dict_parser(const char* p, std::size_t n) : p_(p), end_(p + n) {}

  // On failure returns false and sets `why`.
  bool parse(std::string& descr, bool& fortran, std::vector<std::int64_t>& shape,
             std::string& why) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    skip_space();
    if (!eat('{'))
      return no(why, "header does not start with '{'");
    for (;;) {
      skip_space();
      if (eat('}'))
        break;
      std::string key;
      if (!string_literal(key))
        return no(why, "expected a quoted key in the header dict");
      skip_space();
      if (!eat(':'))
        return no(why, "expected ':' after key '" + key + "'");
      skip_space();
      if (key == "descr" && !have_descr) {
        if (!string_literal(descr))
          return no(why, "'descr' is not a string (structured dtypes are unsupported)");
        have_descr = true;
      } else if (key == "fortran_order" && !have_fortran) {
        if (word("True"))
          fortran = true;
        else if (word("False"))
          fortran = false;
        else
          return no(why, "'fortran_order' is neither True nor False");
        have_fortran = true;
      } else if (key == "shape" && !have_shape) {
        if (!tuple(shape))
          return no(why, "'shape' is not a tuple of non-negative integers");
        have_shape = true;
      } else {
        return no(why, "unexpected or repeated key '" + key + "' in the header dict");
      }
      skip_space();
      if (eat(','))
        continue;
      skip_space();
      if (eat('}'))
        break;
      return no(why, "expected ',' or '}' in the header dict");
    }
    skip_space();
    if (p_ != end_)
      return no(why, "text after the header dict");
    if (!have_descr || !have_fortran || !have_shape)
      return no(why, "the header dict lacks 'descr', 'fortran_order' or 'shape'");
    return true;
  }

private:
  static bool no(std::string& why, std::string text) {
    why = std::move(text);
    return false;
  }
  void skip_space() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r'))
      ++p_;
  }
  bool eat(char c) {
    if (p_ == end_ || *p_ != c)
      return false;
    ++p_;
    return true;
  }
  bool word(const char* w) {
    const std::size_t n = std::strlen(w);
    if (static_cast<std::size_t>(end_ - p_) < n || std::memcmp(p_, w, n) != 0)
      return false;
    p_ += n;
    return true;
  }
  bool string_literal(std::string& out) {
    if (p_ == end_ || (*p_ != '\'' && *p_ != '"'))
      return false;
    const char q = *p_++;
    const char* start = p_;
    while (p_ != end_ && *p_ != q) {
      if (*p_ == '\\')
        return false; // numpy's keys and descrs never need escapes
      ++p_;
    }
    if (p_ == end_)
      return false;
    out.assign(start, p_);
    ++p_;
    return true;
  }
  bool integer(std::int64_t& out) {
    const char* start = p_;
    std::uint64_t v = 0;
    const std::uint64_t limit =
        static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    while (p_ != end_ && *p_ >= '0' && *p_ <= '9') {
      const std::uint64_t digit = static_cast<std::uint64_t>(*p_ - '0');
      if (v > (limit - digit) / 10)
        return false;
      v = v * 10 + digit;
      ++p_;
    }
    if (p_ == start)
      return false;
    eat('L');
    out = static_cast<std::int64_t>(v);
    return true;
  }
  bool tuple(std::vector<std::int64_t>& shape) {
    shape.clear();
    if (!eat('('))
      return false;
    for (;;) {
      skip_space();
      if (eat(')'))
        return true;
      std::int64_t d;
      if (!integer(d))
        return false;
      shape.push_back(d);
      skip_space();
      if (eat(','))
        continue;
      return eat(')');
    }
  }

  const char* p_;
  const char* end_;
};

} // namespace npz_detail

// Writes an .npz: open, then per array begin_array, append (any number of chunks), end_array,
// and finally commit. Until commit the archive lives under a temporary name; after any error the
// writer is failed (the temporary file is removed at once and every later call returns an
// error), and a writer destroyed before commit leaves nothing behind.
class npz_writer {
public:
  npz_writer() = default;
  npz_writer(const npz_writer&) = delete;
  npz_writer& operator=(const npz_writer&) = delete;

  // Test hook: ZIP64 records for every member and the archive even when nothing needs them.
  // Takes effect for arrays begun, and a commit made, after the call.
  void force_zip64(bool on) noexcept { force_zip64_ = on; }

  // Creates the temporary file next to `path`.
  error open(const std::string& path) {
    discard();
    path_ = path;
    if (error e = file_.open(path))
      return failed(std::move(e));
    state_ = state::ready;
    return {};
  }

  // Starts member "<key>.npy" holding a C-order array of `shape` (any rank, 0 = scalar).
  error begin_array(const std::string& key, npy_dtype type,
                    const std::vector<std::int64_t>& shape) {
    if (state_ == state::in_array)
      return failed(misuse("begin_array(" + npz_detail::quote(key) + ") while array " +
                           npz_detail::quote(current_.key) + " is still open"));
    if (state_ != state::ready)
      return unusable("begin_array");
    if (key.empty() || key.find('\0') != std::string::npos)
      return failed(misuse("array key " + npz_detail::quote(key) + " is empty or holds a NUL"));
    const std::string name = key + ".npy";
    if (name.size() > npz_detail::max16)
      return failed(misuse("array key of " + std::to_string(key.size()) + " bytes is too long"));
    if (!keys_.insert(key).second)
      return failed(misuse("array " + npz_detail::quote(key) + " written twice"));
    std::uint64_t data_bytes = 0;
    if (!npz_detail::array_bytes(shape, npy_itemsize(type), data_bytes))
      return failed(fail(status::invalid_shape, where(key) + "shape " +
                                                    npz_detail::shape_text(shape) +
                                                    " has a negative or too large dimension"));
    const std::string npy = npz_detail::npy_header(type, shape);

    member m;
    m.key = key;
    m.name = name;
    m.offset = file_.size();
    m.size = npy.size() + data_bytes;
    m.zip64_size = force_zip64_ || m.size >= npz_detail::max32;
    m.zip64_offset = force_zip64_ || m.offset >= npz_detail::max32;
    m.utf8 = false;
    for (char c : name)
      m.utf8 = m.utf8 || (static_cast<unsigned char>(c) & 0x80u) != 0;
    m.crc = npz_detail::crc32_of(0, npy.data(), npy.size());
    m.expected = data_bytes;
    m.written = 0;
    m.type = type;
    m.shape = shape;

    std::string extra;
    if (m.zip64_size) { // APPNOTE 4.5.3: a local ZIP64 field holds both sizes
      npz_detail::put16(extra, npz_detail::zip64_extra_id);
      npz_detail::put16(extra, 16);
      npz_detail::put64(extra, m.size);
      npz_detail::put64(extra, m.size);
    }
    // Padding field (id, length, 2-byte alignment, zeros) ending on a 64-byte boundary.
    const std::uint64_t unpadded = m.offset + npz_detail::local_size + name.size() + extra.size();
    const std::uint64_t pad =
        (npz_detail::npy_align - (unpadded + 6) % npz_detail::npy_align) % npz_detail::npy_align;
    npz_detail::put16(extra, npz_detail::align_extra_id);
    npz_detail::put16(extra, static_cast<std::uint32_t>(2 + pad));
    npz_detail::put16(extra, static_cast<std::uint32_t>(npz_detail::npy_align));
    extra.append(pad, '\0');

    std::string h;
    npz_detail::put32(h, npz_detail::local_sig);
    npz_detail::put16(h, m.version());
    npz_detail::put16(h, m.flags());
    npz_detail::put16(h, 0); // stored
    npz_detail::put16(h, 0); // 00:00:00
    npz_detail::put16(h, npz_detail::dos_date_1980);
    npz_detail::put32(h, 0); // CRC-32: patched by end_array
    const std::uint32_t size32 =
        m.zip64_size ? npz_detail::max32 : static_cast<std::uint32_t>(m.size);
    npz_detail::put32(h, size32); // compressed
    npz_detail::put32(h, size32); // uncompressed
    npz_detail::put16(h, static_cast<std::uint32_t>(name.size()));
    npz_detail::put16(h, static_cast<std::uint32_t>(extra.size()));
    h += name;
    h += extra;
    h += npy;
    if (error e = file_.write(h.data(), h.size()))
      return failed(with_array(key, std::move(e)));
    current_ = std::move(m);
    state_ = state::in_array;
    return {};
  }

  // The next `bytes` bytes of the current array's data (little-endian elements, C order).
  error append(const void* data, std::size_t bytes) {
    if (state_ == state::ready)
      return failed(misuse("append without begin_array"));
    if (state_ != state::in_array)
      return unusable("append");
    if (bytes == 0)
      return {};
    if (data == nullptr)
      return failed(fail(status::null_pointer, where(current_.key) + "append of null data"));
    if (bytes > current_.expected - current_.written)
      return failed(size_mismatch(current_.written + bytes, "more than"));
    current_.crc = npz_detail::crc32_of(current_.crc, data, bytes);
    if (error e = file_.write(data, bytes))
      return failed(with_array(current_.key, std::move(e)));
    current_.written += bytes;
    return {};
  }

  // Completes the current array: its byte count must equal prod(shape) * itemsize.
  error end_array() {
    if (state_ == state::ready)
      return failed(misuse("end_array without begin_array"));
    if (state_ != state::in_array)
      return unusable("end_array");
    if (current_.written != current_.expected)
      return failed(size_mismatch(current_.written, "but"));
    std::string crc;
    npz_detail::put32(crc, current_.crc);
    if (error e = file_.write_at(current_.offset + 14, crc.data(), crc.size()))
      return failed(with_array(current_.key, std::move(e)));
    members_.push_back(std::move(current_));
    current_ = member{};
    state_ = state::ready;
    return {};
  }

  // Writes the central directory (and the ZIP64 end records where needed) and renames the
  // archive onto its final name. The writer is closed afterwards.
  // Writes the central directory and flushes the archive, still unnamed: readable_path() opens
  // it for a check before commit().
  error finish() {
    if (state_ == state::in_array)
      return failed(
          misuse("finish while array " + npz_detail::quote(current_.key) + " is still open"));
    if (state_ != state::ready)
      return unusable("finish");
    using namespace npz_detail;
    const std::uint64_t cd_offset = file_.size();
    std::string tail;
    for (const member& m : members_) {
      std::string extra;
      if (m.zip64_size || m.zip64_offset) {
        // Only the fields whose 32-bit slot holds the marker, in APPNOTE order.
        const std::uint32_t n = (m.zip64_size ? 16 : 0) + (m.zip64_offset ? 8 : 0);
        put16(extra, zip64_extra_id);
        put16(extra, n);
        if (m.zip64_size) {
          put64(extra, m.size);
          put64(extra, m.size);
        }
        if (m.zip64_offset)
          put64(extra, m.offset);
      }
      const std::uint32_t size32 = m.zip64_size ? max32 : static_cast<std::uint32_t>(m.size);
      put32(tail, central_sig);
      put16(tail, made_by_unix | version_zip64);
      put16(tail, m.version());
      put16(tail, m.flags());
      put16(tail, 0); // stored
      put16(tail, 0);
      put16(tail, dos_date_1980);
      put32(tail, m.crc);
      put32(tail, size32);
      put32(tail, size32);
      put16(tail, static_cast<std::uint32_t>(m.name.size()));
      put16(tail, static_cast<std::uint32_t>(extra.size()));
      put16(tail, 0); // comment
      put16(tail, 0); // disk
      put16(tail, 0); // internal attributes
      put32(tail, unix_mode_file << 16);
      put32(tail, m.zip64_offset ? max32 : static_cast<std::uint32_t>(m.offset));
      tail += m.name;
      tail += extra;
    }
    const std::uint64_t cd_size = tail.size();
    const std::uint64_t count = members_.size();
    const bool count64 = force_zip64_ || count >= max16;
    const bool size64 = force_zip64_ || cd_size >= max32;
    const bool offset64 = force_zip64_ || cd_offset >= max32;
    if (count64 || size64 || offset64) {
      const std::uint64_t eocd64_offset = cd_offset + cd_size;
      put32(tail, eocd64_sig);
      put64(tail, eocd64_size - 12); // the record's size after this field
      put16(tail, made_by_unix | version_zip64);
      put16(tail, version_zip64);
      put32(tail, 0); // this disk
      put32(tail, 0); // disk of the central directory
      put64(tail, count);
      put64(tail, count);
      put64(tail, cd_size);
      put64(tail, cd_offset);
      put32(tail, locator64_sig);
      put32(tail, 0); // disk of the ZIP64 end record
      put64(tail, eocd64_offset);
      put32(tail, 1); // disks in all
    }
    put32(tail, eocd_sig);
    put16(tail, 0);
    put16(tail, 0);
    put16(tail, count64 ? max16 : static_cast<std::uint32_t>(count));
    put16(tail, count64 ? max16 : static_cast<std::uint32_t>(count));
    put32(tail, size64 ? max32 : static_cast<std::uint32_t>(cd_size));
    put32(tail, offset64 ? max32 : static_cast<std::uint32_t>(cd_offset));
    put16(tail, 0); // comment
    if (error e = file_.write(tail.data(), tail.size()))
      return failed(std::move(e));
    if (error e = file_.finish())
      return failed(std::move(e));
    state_ = state::finished;
    return {};
  }

  std::string readable_path() const { return file_.readable_path(); }

  // Finishes the archive if needed and puts it under its final name.
  error commit() {
    if (state_ != state::finished)
      if (error e = finish())
        return e;
    if (error e = file_.commit())
      return failed(std::move(e));
    reset();
    return {};
  }

  // Abandons the archive: the temporary file is removed and the writer closed.
  void discard() noexcept {
    file_.discard();
    reset();
  }

  bool is_open() const noexcept { return state_ == state::ready || state_ == state::in_array; }

private:
  enum class state { closed, ready, in_array, finished, failed };

  struct member {
    std::string key, name;
    std::uint64_t offset = 0;   // of the local header
    std::uint64_t size = 0;     // of the .npy: header + data
    std::uint64_t expected = 0; // data bytes the shape asks for
    std::uint64_t written = 0;  // data bytes appended so far
    std::uint32_t crc = 0;
    bool zip64_size = false, zip64_offset = false, utf8 = false;
    npy_dtype type = npy_dtype::u8;
    std::vector<std::int64_t> shape;

    std::uint32_t version() const noexcept {
      return zip64_size || zip64_offset ? npz_detail::version_zip64 : npz_detail::version_plain;
    }
    std::uint32_t flags() const noexcept { return utf8 ? npz_detail::flag_utf8 : 0; }
  };

  void reset() noexcept {
    state_ = state::closed;
    members_.clear();
    keys_.clear();
    current_ = member{};
  }
  std::string where(const std::string& key) const {
    return path_ + ": array " + npz_detail::quote(key) + ": ";
  }
  error misuse(const std::string& what) const {
    return fail(status::invalid_argument, path_ + ": " + what);
  }
  error size_mismatch(std::uint64_t got, const char* relation) const {
    return fail(status::invalid_shape, where(current_.key) + std::to_string(got) +
                                           " data bytes written " + relation + " the " +
                                           std::to_string(current_.expected) + " that shape " +
                                           npz_detail::shape_text(current_.shape) + " of " +
                                           npy_dtype_name(current_.type) + " needs");
  }
  static error with_array(const std::string& key, error e) {
    e.message += " (array " + npz_detail::quote(key) + ")";
    return e;
  }
  // Removes the temporary file and remembers why, for the calls that follow.
  error failed(error e) {
    file_.discard();
    reset();
    state_ = state::failed;
    first_error_ = e.message;
    return e;
  }
  error unusable(const char* call) const {
    if (state_ == state::failed)
      return fail(status::invalid_argument,
                  std::string(call) + " after an earlier error: " + first_error_);
    return fail(status::invalid_argument,
                (path_.empty() ? std::string("npz_writer") : path_) + ": " + call +
                    " on a writer that is not open (open it first; commit closes it)");
  }

  output_file file_;
  std::string path_;
  state state_ = state::closed;
  std::string first_error_;
  bool force_zip64_ = false;
  std::vector<member> members_;
  std::set<std::string> keys_;
  member current_;
};

// One array of an opened archive. `data` points into the reader's mapping and lives as long as
// it; it is 64-byte aligned when npz_writer wrote the archive (any alignment otherwise).
struct npz_array {
  std::string key; // member name without ".npy"
  npy_dtype type = npy_dtype::u8;
  std::vector<std::int64_t> shape;    // C order; empty for a scalar
  const std::uint8_t* data = nullptr; // [bytes]
  std::uint64_t bytes = 0;            // prod(shape) * itemsize

  std::int64_t elements() const noexcept {
    return static_cast<std::int64_t>(bytes / static_cast<std::uint64_t>(npy_itemsize(type)));
  }
};

// Reads an .npz (ours or numpy.savez's) through a read-only mapping.
class npz_reader {
public:
  // Maps `path` and checks the whole archive; with check_crc, every member's CRC-32 too (a full
  // pass over the data, as numpy.load does).
  error open(const std::string& path, bool check_crc = true) {
    close();
    if (error e = map_.open(path))
      return e;
    path_ = path;
    error e = parse(check_crc);
    if (e)
      close();
    return e;
  }

  const std::vector<npz_array>& arrays() const noexcept { return arrays_; }
  const npz_array* find(const std::string& key) const noexcept {
    for (const npz_array& a : arrays_)
      if (a.key == key)
        return &a;
    return nullptr;
  }
  const std::string& path() const noexcept { return path_; }

  void close() noexcept {
    arrays_.clear();
    map_.close();
  }

private:
  error bad(const std::string& what) const { return fail(status::bad_file, path_ + ": " + what); }
  error bad_member(const std::string& name, const std::string& what) const {
    return bad("member " + npz_detail::quote(name) + ": " + what);
  }

  // The end of central directory record: the last one whose comment runs exactly to the end.
  bool find_eocd(std::uint64_t& at) const noexcept {
    using namespace npz_detail;
    const std::uint64_t size = map_.size();
    if (size < eocd_size)
      return false;
    const std::uint64_t lowest = size - eocd_size > max16 ? size - eocd_size - max16 : 0;
    for (std::uint64_t p = size - eocd_size + 1; p-- > lowest;) {
      const std::uint8_t* r = map_.data() + p;
      if (get32(r) == eocd_sig && p + eocd_size + get16(r + 20) == size) {
        at = p;
        return true;
      }
    }
    return false;
  }

  error parse(bool check_crc) {
    using namespace npz_detail;
    const std::uint8_t* base = map_.data();
    std::uint64_t eocd = 0;
    if (!find_eocd(eocd))
      return bad("no ZIP end of central directory record: truncated, or not an .npz");
    const std::uint8_t* r = base + eocd;
    std::uint64_t count = get16(r + 10);
    std::uint64_t cd_size = get32(r + 12);
    std::uint64_t cd_offset = get32(r + 16);
    if (get16(r + 4) != 0 || get16(r + 6) != 0 || get16(r + 8) != get16(r + 10))
      return bad("multi-disk (split) archives are unsupported");
    std::uint64_t cd_end = eocd; // where the central directory must end
    if (eocd >= locator64_size && get32(base + eocd - locator64_size) == locator64_sig) {
      const std::uint8_t* loc = base + eocd - locator64_size;
      const std::uint64_t at = get64(loc + 8);
      if (get32(loc + 4) != 0 || get32(loc + 16) > 1)
        return bad("multi-disk (split) archives are unsupported");
      if (at > eocd - locator64_size || eocd - locator64_size - at < eocd64_size)
        return bad("ZIP64 end record offset " + std::to_string(at) + " out of range");
      const std::uint8_t* z = base + at;
      if (get32(z) != eocd64_sig)
        return bad("no ZIP64 end of central directory record where its locator points");
      if (get32(z + 16) != 0 || get32(z + 20) != 0 || get64(z + 24) != get64(z + 32))
        return bad("multi-disk (split) archives are unsupported");
      count = get64(z + 32);
      cd_size = get64(z + 40);
      cd_offset = get64(z + 48);
      cd_end = at;
    } else if (count == max16 || cd_size == max32 || cd_offset == max32) {
      return bad("end record defers to a ZIP64 record that is missing");
    }
    if (cd_offset > cd_end || cd_end - cd_offset != cd_size)
      return bad("central directory [" + std::to_string(cd_offset) + ", +" +
                 std::to_string(cd_size) + ") does not end where the end record begins (" +
                 std::to_string(cd_end) + "): truncated or corrupt");
    if (count > cd_size / central_size)
      return bad(std::to_string(count) + " entries cannot fit a central directory of " +
                 std::to_string(cd_size) + " bytes");

    std::set<std::string> keys;
    arrays_.reserve(static_cast<std::size_t>(count));
    std::uint64_t at = cd_offset;
    for (std::uint64_t i = 0; i < count; ++i) {
      if (cd_end - at < central_size || get32(base + at) != central_sig)
        return bad("central directory entry " + std::to_string(i) + " is corrupt");
      const std::uint8_t* c = base + at;
      const std::uint64_t name_len = get16(c + 28), extra_len = get16(c + 30);
      const std::uint64_t entry_size = central_size + name_len + extra_len + get16(c + 32);
      if (cd_end - at < entry_size)
        return bad("central directory entry " + std::to_string(i) + " runs past its end");
      const std::string name(reinterpret_cast<const char*>(c + central_size),
                             static_cast<std::size_t>(name_len));
      const std::uint16_t flags = get16(c + 8), method = get16(c + 10);
      if (flags & 0x41u)
        return bad_member(name, "is encrypted");
      if (method != 0)
        return bad_member(name, "is compressed (method " + std::to_string(method) +
                                    "); only stored members are supported (numpy.savez, not "
                                    "savez_compressed)");
      std::uint64_t csize = get32(c + 20), usize = get32(c + 24), offset = get32(c + 42);
      std::uint64_t disk = get16(c + 34);
      if (error e = read_zip64_extra(name, c + central_size + name_len, extra_len, usize, csize,
                                     offset, disk))
        return e;
      if (disk != 0)
        return bad_member(name, "lies on another disk of a split archive");
      if (csize != usize)
        return bad_member(name, "stored sizes disagree (" + std::to_string(csize) + " vs " +
                                    std::to_string(usize) + ")");
      // The local header and the data lie before the central directory.
      if (offset > cd_offset || cd_offset - offset < local_size)
        return bad_member(name, "local header offset " + std::to_string(offset) + " out of range");
      const std::uint8_t* l = base + offset;
      if (get32(l) != local_sig)
        return bad_member(name, "no local header at offset " + std::to_string(offset));
      const std::uint64_t data_at = offset + local_size + get16(l + 26) + get16(l + 28);
      if (data_at > cd_offset || cd_offset - data_at < usize)
        return bad_member(name, "data [" + std::to_string(data_at) + ", +" + std::to_string(usize) +
                                    ") out of range");
      if (get16(l + 26) != name_len || std::memcmp(l + local_size, name.data(), name.size()) != 0)
        return bad_member(name, "local header names another member");
      if (error e = check_local(name, l, usize, get32(c + 16)))
        return e;
      if (check_crc) {
        const bool intact = crc32_of(0, base + data_at, usize) == get32(c + 16);
        map_.release(data_at, usize); // checked: no need to keep the pages resident
        if (!intact)
          return bad_member(name, "CRC-32 mismatch: the data is corrupt");
      }
      npz_array a;
      if (name.size() < 4 || name.compare(name.size() - 4, 4, ".npy") != 0)
        return bad_member(name, "is not a .npy array");
      a.key = name.substr(0, name.size() - 4);
      if (!keys.insert(a.key).second)
        return bad_member(name, "appears twice");
      if (error e = read_npy(a, base + data_at, usize))
        return e;
      arrays_.push_back(std::move(a));
      at += entry_size;
    }
    if (at != cd_end)
      return bad("central directory holds more than its " + std::to_string(count) + " entries");
    return {};
  }

  // Fills the 64-bit values whose 32-bit slots hold the ZIP64 marker, in APPNOTE order.
  error read_zip64_extra(const std::string& name, const std::uint8_t* p, std::uint64_t n,
                         std::uint64_t& usize, std::uint64_t& csize, std::uint64_t& offset,
                         std::uint64_t& disk) const {
    using namespace npz_detail;
    const bool want_u = usize == max32, want_c = csize == max32, want_o = offset == max32,
               want_d = disk == max16;
    if (!want_u && !want_c && !want_o && !want_d)
      return {};
    const std::uint8_t* q = nullptr;
    std::uint16_t len = 0;
    const int found = find_extra(p, n, zip64_extra_id, q, len);
    if (found < 0)
      return bad_member(name, "extra field runs past its entry");
    if (found == 0)
      return bad_member(name, "ZIP64 extra field missing");
    const std::uint64_t need =
        (want_u ? 8 : 0) + (want_c ? 8 : 0) + (want_o ? 8 : 0) + (want_d ? 4 : 0);
    if (len < need)
      return bad_member(name, "ZIP64 extra field too short");
    if (want_u) {
      usize = get64(q);
      q += 8;
    }
    if (want_c) {
      csize = get64(q);
      q += 8;
    }
    if (want_o) {
      offset = get64(q);
      q += 8;
    }
    if (want_d)
      disk = get32(q);
    return {};
  }

  // Without a data descriptor (flag bit 3) the local header repeats the CRC-32 and the sizes;
  // they must agree with the central directory. `l` is a local header whose name and extra
  // fields lie inside the file.
  error check_local(const std::string& name, const std::uint8_t* l, std::uint64_t size,
                    std::uint32_t crc) const {
    using namespace npz_detail;
    if (get16(l + 6) & 0x08u)
      return {};
    std::uint64_t csize = get32(l + 18), usize = get32(l + 22);
    if (csize == max32 || usize == max32) { // both sizes in the local ZIP64 field
      const std::uint8_t* q = nullptr;
      std::uint16_t len = 0;
      if (find_extra(l + local_size + get16(l + 26), get16(l + 28), zip64_extra_id, q, len) != 1 ||
          len < 16)
        return bad_member(name, "local header lacks its ZIP64 sizes");
      usize = get64(q);
      csize = get64(q + 8);
    }
    if (get32(l + 14) != crc || csize != size || usize != size)
      return bad_member(name, "local header disagrees with the central directory (CRC-32 or "
                              "sizes)");
    return {};
  }

  // The .npy member at p, n bytes: header, dtype, shape, and a data size that matches them.
  error read_npy(npz_array& a, const std::uint8_t* p, std::uint64_t n) const {
    using namespace npz_detail;
    const std::string what = "array " + quote(a.key) + ": ";
    if (n < npy_magic_size + 4 || std::memcmp(p, npy_magic, npy_magic_size) != 0)
      return bad(what + "not a .npy (no \\x93NUMPY magic)");
    const unsigned major = p[6], minor = p[7];
    std::uint64_t header_at = 0, header_len = 0;
    if (major == 1 && minor == 0) {
      header_at = 10;
      header_len = get16(p + 8);
    } else if ((major == 2 || major == 3) && minor == 0 && n >= 12) {
      header_at = 12;
      header_len = get32(p + 8);
    } else {
      return bad(what + ".npy version " + std::to_string(major) + "." + std::to_string(minor) +
                 " is unsupported");
    }
    if (header_len > n - header_at)
      return bad(what + ".npy header length " + std::to_string(header_len) +
                 " runs past the member");
    std::string descr, why;
    bool fortran = false;
    npy_dict_parser parser(reinterpret_cast<const char*>(p + header_at),
                           static_cast<std::size_t>(header_len));
    if (!parser.parse(descr, fortran, a.shape, why))
      return bad(what + ".npy header: " + why);
    if (!parse_npy_descr(descr, a.type))
      return bad(what + "dtype " + quote(descr) + " is unsupported");
    std::uint64_t bytes = 0;
    if (!array_bytes(a.shape, npy_itemsize(a.type), bytes))
      return bad(what + "shape " + shape_text(a.shape) + " is too large");
    int long_axes = 0; // Fortran and C order differ only with two axes longer than 1
    for (std::int64_t d : a.shape)
      long_axes += d > 1;
    if (fortran && long_axes > 1)
      return bad(what + "Fortran-order arrays are unsupported");
    const std::uint64_t data_at = header_at + header_len;
    if (n - data_at != bytes)
      return bad(what + "holds " + std::to_string(n - data_at) + " data bytes, shape " +
                 shape_text(a.shape) + " of " + npy_dtype_name(a.type) + " needs " +
                 std::to_string(bytes));
    a.data = p + data_at;
    a.bytes = bytes;
    return {};
  }

  mapped_file map_;
  std::string path_;
  std::vector<npz_array> arrays_;
};

} // namespace io
} // namespace aplq
