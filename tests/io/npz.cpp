// SPDX-License-Identifier: Apache-2.0
// NPZ writer and reader (include/aplq/io/npz.hpp): every dtype and a spread of 1-D and 2-D shapes
// round-trip through our reader when streamed in odd chunk sizes, with and without forced ZIP64;
// the writer refuses misuse and leaves no file behind when it fails or is never committed; and a
// truncated or corrupted archive gives an error rather than a crash. numpy's view of the same
// archives is checked by tests/io/npz_numpy.py.
#include "../testing.hpp"
#include "io_testing.hpp"

#include <aplq/io/npz.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using aplq::status;
using aplq::io::npy_dtype;
using aplq::io::npz_reader;
using aplq::io::npz_writer;
using aplq_test::read_all;
using aplq_test::temp_dir;
using aplq_test::write_all;

namespace {

std::uint32_t get32(const std::vector<std::uint8_t>& b, std::size_t at) {
  return aplq::io::npz_detail::get32(b.data() + at);
}
std::uint16_t get16(const std::vector<std::uint8_t>& b, std::size_t at) {
  return aplq::io::npz_detail::get16(b.data() + at);
}
void put32(std::vector<std::uint8_t>& b, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i)
    b[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * i));
}
void put16(std::vector<std::uint8_t>& b, std::size_t at, std::uint16_t v) {
  b[at] = static_cast<std::uint8_t>(v);
  b[at + 1] = static_cast<std::uint8_t>(v >> 8);
}

struct sample {
  std::string key;
  npy_dtype type;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> bytes; // [prod(shape) * itemsize]
};

std::size_t elements(const std::vector<std::int64_t>& shape) {
  std::size_t n = 1;
  for (std::int64_t d : shape)
    n *= static_cast<std::size_t>(d);
  return n;
}

// Every dtype x 1-D and 2-D shapes with odd sizes, filled with random bytes.
std::vector<sample> random_samples(std::uint64_t salt) {
  aplq_test::rng r(salt);
  const std::vector<std::vector<std::int64_t>> shapes = {{1},    {7},      {3, 5},
                                                         {1, 1}, {13, 31}, {2, 129}};
  std::vector<sample> out;
  for (const auto& info : aplq::io::npy_dtype_table)
    for (const auto& shape : shapes) {
      sample s;
      s.key = std::string("model.layer_") + info.name + ".w" + std::to_string(out.size());
      s.type = info.type;
      s.shape = shape;
      s.bytes = r.codes(static_cast<aplq::index_t>(elements(shape)) * info.size, 255);
      out.push_back(std::move(s));
    }
  return out;
}

// Streams every sample in chunks of `chunk` bytes and commits.
aplq::io::error write_npz(const std::string& path, const std::vector<sample>& samples,
                          std::size_t chunk, bool zip64) {
  npz_writer w;
  w.force_zip64(zip64);
  if (auto e = w.open(path))
    return e;
  for (const sample& s : samples) {
    if (auto e = w.begin_array(s.key, s.type, s.shape))
      return e;
    for (std::size_t at = 0; at < s.bytes.size(); at += chunk)
      if (auto e = w.append(s.bytes.data() + at, std::min(chunk, s.bytes.size() - at)))
        return e;
    if (auto e = w.end_array())
      return e;
  }
  return w.commit();
}

void check_round_trip(const std::string& path, const std::vector<sample>& samples) {
  npz_reader r;
  const auto e = r.open(path);
  REQUIRE_MESSAGE(e.ok(), e.message);
  REQUIRE(r.arrays().size() == samples.size());
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const sample& s = samples[i];
    INFO("array ", s.key);
    CHECK(r.arrays()[i].key == s.key); // archive order is write order
    const aplq::io::npz_array* a = r.find(s.key);
    REQUIRE(a != nullptr);
    CHECK(a->type == s.type);
    CHECK(a->shape == s.shape);
    CHECK(a->elements() == static_cast<std::int64_t>(elements(s.shape)));
    REQUIRE(a->bytes == s.bytes.size());
    CHECK(std::equal(s.bytes.begin(), s.bytes.end(), a->data));
    CHECK(reinterpret_cast<std::uintptr_t>(a->data) % 64 == 0);
  }
  CHECK(r.find("absent") == nullptr);
}

// A small archive of two arrays with data free of "PK" byte pairs.
std::vector<sample> small_samples() {
  sample a{"codes", npy_dtype::u8, {3, 5}, {}};
  for (int i = 0; i < 15; ++i)
    a.bytes.push_back(static_cast<std::uint8_t>(i * 3 + 1));
  sample b{"scales", npy_dtype::f32, {3}, {}};
  const float v[3] = {0.5f, -1.25f, 3.0f};
  b.bytes.resize(sizeof v);
  std::memcpy(b.bytes.data(), v, sizeof v);
  return {a, b};
}

bool has_zip64_end(const std::vector<std::uint8_t>& b) {
  return b.size() >= 98 && get32(b, b.size() - 42) == 0x07064b50 &&
         get32(b, b.size() - 98) == 0x06064b50;
}

} // namespace

TEST_CASE("io/npz: every dtype and shape round-trips, streamed in odd chunk sizes") {
  INFO(aplq_test::seed_note());
  temp_dir dir;
  const std::vector<sample> samples = random_samples(1);
  std::vector<std::uint8_t> first;
  for (std::size_t chunk : {std::size_t(1), std::size_t(3), std::size_t(7), std::size_t(64),
                            std::size_t(1000), std::size_t(1) << 20}) {
    for (bool zip64 : {false, true}) {
      INFO("chunk ", chunk, ", forced ZIP64 ", zip64);
      const std::string path = dir.file("model.npz");
      const auto e = write_npz(path, samples, chunk, zip64);
      REQUIRE_MESSAGE(e.ok(), e.message);
      CHECK(dir.entries() == std::vector<std::string>{"model.npz"}); // no temporary left
      check_round_trip(path, samples);
      const std::vector<std::uint8_t> bytes = read_all(path);
      CHECK(has_zip64_end(bytes) == zip64);
      if (!zip64) { // chunking never changes the archive
        if (first.empty())
          first = bytes;
        CHECK(bytes == first);
      }
    }
  }
}

TEST_CASE("io/npz: forced ZIP64 writes the ZIP64 fields and records") {
  temp_dir dir;
  const std::string path = dir.file("z.npz");
  const std::vector<sample> samples = small_samples();
  REQUIRE(write_npz(path, samples, 5, true).ok());
  const std::vector<std::uint8_t> b = read_all(path);
  REQUIRE(has_zip64_end(b));
  const std::size_t eocd = b.size() - 22;
  CHECK(get16(b, eocd + 10) == 0xFFFF);     // entries: see the ZIP64 record
  CHECK(get32(b, eocd + 12) == 0xFFFFFFFF); // central directory size
  CHECK(get32(b, eocd + 16) == 0xFFFFFFFF); // central directory offset
  const std::size_t z = b.size() - 98;
  CHECK(aplq::io::npz_detail::get64(b.data() + z + 32) == 2);
  // First local header: version 4.5, both sizes deferred to a 16-byte ZIP64 field.
  CHECK(get32(b, 0) == 0x04034b50);
  CHECK(get16(b, 4) == 45);
  CHECK(get32(b, 18) == 0xFFFFFFFF);
  CHECK(get32(b, 22) == 0xFFFFFFFF);
  const std::size_t extra = 30 + get16(b, 26);
  CHECK(get16(b, extra) == 1);
  CHECK(get16(b, extra + 2) == 16);
  check_round_trip(path, samples);

  // Without the hook, nothing in a small archive is ZIP64.
  REQUIRE(write_npz(path, samples, 5, false).ok());
  const std::vector<std::uint8_t> plain = read_all(path);
  CHECK_FALSE(has_zip64_end(plain));
  CHECK(get16(plain, 4) == 20);
  CHECK(get16(plain, plain.size() - 22 + 10) == 2);
}

TEST_CASE("io/npz: scalars, zero-length arrays and an empty archive") {
  temp_dir dir;
  const std::string path = dir.file("edge.npz");
  std::vector<sample> samples = {{"scalar", npy_dtype::f64, {}, std::vector<std::uint8_t>(8, 0x40)},
                                 {"none", npy_dtype::f32, {0, 4}, {}},
                                 {"also_none", npy_dtype::i32, {0}, {}}};
  REQUIRE(write_npz(path, samples, 3, false).ok());
  check_round_trip(path, samples);
  REQUIRE(write_npz(path, {}, 3, false).ok());
  npz_reader r;
  REQUIRE(r.open(path).ok());
  CHECK(r.arrays().empty());
}

TEST_CASE("io/npz: a shape with thousands of axes gets a version 2.0 .npy header") {
  temp_dir dir;
  const std::string path = dir.file("v2.npz");
  sample s{"deep", npy_dtype::u16, std::vector<std::int64_t>(30000, 1), {}};
  s.shape.push_back(3);
  s.bytes = {1, 2, 3, 4, 5, 6};
  REQUIRE(write_npz(path, {s}, 4, false).ok());
  check_round_trip(path, {s});
  const std::vector<std::uint8_t> b = read_all(path);
  const std::uint8_t v2[] = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0};
  CHECK(std::search(b.begin(), b.end(), v2, v2 + 8) != b.end());
}

TEST_CASE("io/npz: UTF-8 keys are flagged and read back") {
  temp_dir dir;
  const std::string path = dir.file("utf8.npz");
  const sample s{"gewicht_\xc3\xa4", npy_dtype::i8, {2}, {0x7f, 0x80}};
  REQUIRE(write_npz(path, {s}, 1, false).ok());
  const std::vector<std::uint8_t> b = read_all(path);
  CHECK((get16(b, 6) & 0x800) != 0);
  check_round_trip(path, {s});
}

TEST_CASE("io/npz: the writer refuses misuse and a failed writer leaves nothing behind") {
  temp_dir dir;
  const std::string path = dir.file("bad.npz");
  const std::uint8_t bytes[64] = {};
  npz_writer w;
  REQUIRE(w.open(path).ok());
  CHECK(dir.entries().size() <= 1); // unnamed (O_TMPFILE) or a hidden temporary
  CHECK(!fs::exists(path));
  aplq::io::error e;
  status expected = status::invalid_argument;
  std::string names; // what the message must mention besides the path

  SUBCASE("append without begin_array") { e = w.append(bytes, 4); }
  SUBCASE("end_array without begin_array") { e = w.end_array(); }
  SUBCASE("begin_array while another array is open") {
    REQUIRE(w.begin_array("a", npy_dtype::u8, {4}).ok());
    e = w.begin_array("b", npy_dtype::u8, {4});
    names = "'a'";
  }
  SUBCASE("duplicate key") {
    REQUIRE(w.begin_array("a", npy_dtype::u8, {4}).ok());
    REQUIRE(w.append(bytes, 4).ok());
    REQUIRE(w.end_array().ok());
    e = w.begin_array("a", npy_dtype::f32, {1});
    names = "'a'";
  }
  SUBCASE("more bytes than the shape") {
    REQUIRE(w.begin_array("a", npy_dtype::f32, {3}).ok());
    REQUIRE(w.append(bytes, 8).ok());
    e = w.append(bytes, 5);
    expected = status::invalid_shape;
    names = "'a'";
  }
  SUBCASE("fewer bytes than the shape") {
    REQUIRE(w.begin_array("a", npy_dtype::f16, {3, 3}).ok());
    REQUIRE(w.append(bytes, 17).ok());
    e = w.end_array();
    expected = status::invalid_shape;
    names = "'a'";
  }
  SUBCASE("commit with an array open") {
    REQUIRE(w.begin_array("a", npy_dtype::u8, {1}).ok());
    e = w.commit();
    names = "'a'";
  }
  SUBCASE("negative dimension") {
    e = w.begin_array("a", npy_dtype::u8, {3, -1});
    expected = status::invalid_shape;
    names = "'a'";
  }
  SUBCASE("overflowing shape") {
    e = w.begin_array("a", npy_dtype::f64, {std::int64_t(1) << 40, std::int64_t(1) << 40});
    expected = status::invalid_shape;
  }
  SUBCASE("empty key") { e = w.begin_array("", npy_dtype::u8, {1}); }
  SUBCASE("null data") {
    REQUIRE(w.begin_array("a", npy_dtype::u8, {4}).ok());
    e = w.append(nullptr, 4);
    expected = status::null_pointer;
  }

  REQUIRE(e);
  CHECK(e.code == expected);
  CHECK_MESSAGE(e.message.find(path) != std::string::npos, e.message);
  CHECK_MESSAGE(e.message.find(names) != std::string::npos, e.message);
  CHECK(dir.entries().empty()); // the temporary file went with the error
  // A failed writer stays failed.
  CHECK(w.begin_array("later", npy_dtype::u8, {1}));
  CHECK(w.commit());
  CHECK(dir.entries().empty());
}

TEST_CASE("io/npz: calls on a closed writer fail; an uncommitted writer leaves nothing") {
  temp_dir dir;
  const std::uint8_t bytes[4] = {1, 2, 3, 4};
  {
    npz_writer w;
    CHECK(w.begin_array("a", npy_dtype::u8, {4}).code == status::invalid_argument);
    CHECK(w.append(bytes, 4));
    CHECK(w.commit());
  }
  {
    npz_writer w;
    REQUIRE(w.open(dir.file("left.npz")).ok());
    REQUIRE(w.begin_array("a", npy_dtype::u8, {4}).ok());
    REQUIRE(w.append(bytes, 4).ok());
    CHECK(dir.entries().size() <= 1); // unnamed (O_TMPFILE) or a hidden temporary
  }                                   // destroyed mid-array
  CHECK(dir.entries().empty());
  {
    npz_writer w;
    REQUIRE(w.open(dir.file("dropped.npz")).ok());
    REQUIRE(w.begin_array("a", npy_dtype::u8, {4}).ok());
    REQUIRE(w.append(bytes, 4).ok());
    REQUIRE(w.end_array().ok());
    w.discard();
    CHECK(dir.entries().empty());
    CHECK(w.commit());
  }
  {
    npz_writer w;
    REQUIRE(w.open(dir.file("done.npz")).ok());
    REQUIRE(w.commit().ok());
    CHECK(w.begin_array("a", npy_dtype::u8, {4})); // commit closes the writer
    CHECK(w.commit());
  }
  CHECK(dir.entries() == std::vector<std::string>{"done.npz"});
  // A directory that does not exist: open fails, naming the file.
  npz_writer w;
  const std::string missing = dir.file("no/such/dir.npz");
  const auto e = w.open(missing);
  CHECK(e.code == status::io_error);
  CHECK(e.message.find(missing) != std::string::npos);
}

TEST_CASE("io/npz: a truncated archive gives an error at every length") {
  temp_dir dir;
  const std::string path = dir.file("full.npz"), cut = dir.file("cut.npz");
  for (bool zip64 : {false, true}) {
    REQUIRE(write_npz(path, small_samples(), 7, zip64).ok());
    const std::vector<std::uint8_t> b = read_all(path);
    for (std::size_t n = 0; n < b.size(); ++n) {
      INFO("ZIP64 ", zip64, ", first ", n, " of ", b.size(), " bytes");
      write_all(cut, std::vector<std::uint8_t>(b.begin(), b.begin() + static_cast<long>(n)));
      npz_reader r;
      const auto e = r.open(cut);
      REQUIRE(e);
      CHECK(e.code == status::bad_file);
      CHECK(e.message.find(cut) != std::string::npos);
      CHECK(r.arrays().empty());
    }
  }
  npz_reader r;
  CHECK(r.open(dir.file("absent.npz")).code == status::io_error);
}

TEST_CASE("io/npz: a corrupt central directory or .npy header gives an error") {
  temp_dir dir;
  const std::string path = dir.file("good.npz"), broken = dir.file("broken.npz");
  for (bool zip64 : {false, true}) {
    REQUIRE(write_npz(path, small_samples(), 7, zip64).ok());
    const std::vector<std::uint8_t> good = read_all(path);
    const std::size_t eocd = good.size() - 22;
    const std::size_t cd = zip64 ? static_cast<std::size_t>(aplq::io::npz_detail::get64(
                                       good.data() + good.size() - 98 + 48))
                                 : get32(good, eocd + 16);
    REQUIRE(get32(good, cd) == 0x02014b50);
    const std::size_t local = zip64 ? 0 : get32(good, cd + 42);
    const std::size_t data = local + 30 + get16(good, local + 26) + get16(good, local + 28);
    const std::size_t extra = cd + 46 + get16(good, cd + 28);         // first entry's extra field
    const std::size_t array_data = data + 10 + get16(good, data + 8); // first array's elements

    struct corruption {
      const char* what;
      std::vector<std::uint8_t> bytes;
      bool check_crc;
    };
    std::vector<corruption> cases;
    auto edit = [&](const char* what, auto&& change, bool crc = true) {
      std::vector<std::uint8_t> b = good;
      change(b);
      cases.push_back({what, std::move(b), crc});
    };
    edit("entry signature", [&](auto& b) { b[cd] = 'X'; });
    edit("local header offset past the end", [&](auto& b) {
      if (zip64)
        put32(b, extra + 4 + 16, 0x7ffffff0u); // the 64-bit offset's low half
      else
        put32(b, cd + 42, 0x7ffffff0u);
    });
    edit("local header offset into the data", [&](auto& b) {
      if (!zip64)
        put32(b, cd + 42, static_cast<std::uint32_t>(data + 3));
      else
        put32(b, extra + 4 + 16, static_cast<std::uint32_t>(data + 3));
    });
    edit("sizes larger than the file", [&](auto& b) {
      if (zip64) {
        put32(b, extra + 4, 0x7ffffff0u);
        put32(b, extra + 12, 0x7ffffff0u);
      } else {
        put32(b, cd + 20, 0x7ffffff0u);
        put32(b, cd + 24, 0x7ffffff0u);
      }
    });
    edit("name length past the directory", [&](auto& b) { put16(b, cd + 28, 0xfff0); });
    edit("extra length past the directory", [&](auto& b) { put16(b, cd + 30, 0xfff0); });
    edit("deflated member", [&](auto& b) { put16(b, cd + 10, 8); });
    edit("encrypted member", [&](auto& b) { put16(b, cd + 8, 1); });
    edit("CRC-32", [&](auto& b) { b[cd + 16] ^= 0x01; });
    edit("data byte (CRC-32 catches it)", [&](auto& b) { b[array_data + 2] ^= 0x10; });
    edit("entry count", [&](auto& b) {
      if (zip64)
        b[good.size() - 98 + 32] += 1;
      else
        put16(b, eocd + 10, 3);
    });
    edit("central directory offset", [&](auto& b) {
      if (zip64)
        b[good.size() - 98 + 48] += 1;
      else
        put32(b, eocd + 16, get32(good, eocd + 16) + 1);
    });
    edit("end record comment length", [&](auto& b) { put16(b, eocd + 20, 1); });
    edit("local header name", [&](auto& b) { b[local + 30] ^= 0x20; });
    edit("local header CRC-32", [&](auto& b) { b[local + 14] ^= 0x01; });
    edit("local header size", [&](auto& b) {
      if (zip64) // the local ZIP64 field: the first extra field
        b[local + 30 + get16(good, local + 26) + 4] ^= 0x01;
      else
        b[local + 22] ^= 0x01;
    });
    edit(
        ".npy magic", [&](auto& b) { b[data + 1] = 'X'; }, false);
    edit(
        ".npy version", [&](auto& b) { b[data + 6] = 4; }, false);
    edit(
        ".npy header length", [&](auto& b) { put16(b, data + 8, 0xfff0); }, false);
    edit(
        ".npy dtype", [&](auto& b) { b[data + 23] = '8'; }, false); // '|u1' -> '|u8'
    edit(
        ".npy shape",
        [&](auto& b) {
          const std::string h(b.begin() + static_cast<long>(data),
                              b.begin() + static_cast<long>(array_data));
          const std::size_t at = h.find("(3, 5)");
          REQUIRE(at != std::string::npos);
          b[data + at + 1] = '4';
        },
        false);
    edit(
        ".npy Fortran order",
        [&](auto& b) {
          const std::string h(b.begin() + static_cast<long>(data),
                              b.begin() + static_cast<long>(array_data));
          const std::size_t at = h.find("False");
          REQUIRE(at != std::string::npos);
          std::memcpy(&b[data + at], "True ", 5);
        },
        false);
    if (zip64) {
      edit("ZIP64 locator offset", [&](auto& b) { put32(b, b.size() - 42 + 8, 0x7ffffff0u); });
      edit("ZIP64 record signature", [&](auto& b) { b[b.size() - 98] = 'X'; });
      edit("ZIP64 extra field id", [&](auto& b) { put16(b, extra, 0x0007); });
      edit("ZIP64 extra field too short", [&](auto& b) { put16(b, extra + 2, 8); });
    } else {
      edit("32-bit field deferring to a missing ZIP64 record",
           [&](auto& b) { put32(b, eocd + 16, 0xFFFFFFFFu); });
    }

    for (const corruption& c : cases) {
      INFO("ZIP64 ", zip64, ", corrupt ", std::string(c.what));
      write_all(broken, c.bytes);
      npz_reader r;
      const auto e = r.open(broken, c.check_crc);
      REQUIRE(e);
      CHECK(e.code == status::bad_file);
      CHECK(e.message.find(broken) != std::string::npos);
    }
    // A flipped data byte goes unnoticed only when the caller skips the CRC check.
    std::vector<std::uint8_t> b = good;
    b[array_data + 2] ^= 0x10;
    write_all(broken, b);
    npz_reader r;
    CHECK(r.open(broken, false).ok());
    CHECK(r.open(broken, true).code == status::bad_file);
  }
}

TEST_CASE("io/npz: no single corrupt byte makes the reader read out of bounds") {
  // Every byte of a small archive replaced by three values. open() either fails, or gives the
  // original arrays: with the CRC check, bit for bit; without it, with at most one byte changed
  // (and perhaps a dtype of the same size, '|u1' -> '|i1'). All their bytes are read here.
  temp_dir dir;
  const std::string path = dir.file("good.npz"), broken = dir.file("broken.npz");
  const std::vector<sample> samples = small_samples();
  for (bool zip64 : {false, true}) {
    REQUIRE(write_npz(path, samples, 7, zip64).ok());
    const std::vector<std::uint8_t> good = read_all(path);
    std::size_t opened = 0, refused = 0;
    for (std::size_t i = 0; i < good.size(); ++i)
      for (std::uint8_t v :
           {std::uint8_t(0x00), std::uint8_t(0xff), std::uint8_t(good[i] ^ 0x80)}) {
        std::vector<std::uint8_t> b = good;
        b[i] = v;
        write_all(broken, b);
        for (bool crc : {false, true}) {
          INFO("ZIP64 ", zip64, ", byte ", i, " set to ", int(v), ", CRC check ", crc);
          npz_reader r;
          if (r.open(broken, crc)) {
            ++refused;
            continue;
          }
          ++opened;
          REQUIRE(r.arrays().size() == samples.size());
          std::size_t changed = 0;
          for (std::size_t k = 0; k < samples.size(); ++k) {
            const auto& a = r.arrays()[k];
            const sample& s = samples[k];
            CHECK(a.key == s.key);
            CHECK(a.shape == s.shape);
            CHECK(aplq::io::npy_itemsize(a.type) == aplq::io::npy_itemsize(s.type));
            changed += a.type != s.type;
            REQUIRE(a.bytes == s.bytes.size());
            for (std::size_t j = 0; j < s.bytes.size(); ++j)
              changed += a.data[j] != s.bytes[j];
          }
          CHECK(changed <= (crc ? 0u : 1u));
        }
      }
    CHECK(opened > 0);  // bytes no reader checks (times, attributes, padding)
    CHECK(refused > 0); // and bytes it does
  }
}
