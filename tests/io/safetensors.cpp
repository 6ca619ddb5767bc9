// SPDX-License-Identifier: Apache-2.0
// The safetensors reader and writer (include/aplq/io/safetensors.hpp): round trips, and every
// kind of damaged file giving bad_file with a message naming the file and the tensor, never a
// crash or a read past the end.
#include "../testing.hpp"
#include "io_testing.hpp"

#include <aplq/io/safetensors.hpp>

#include <cstring>
#include <string>
#include <vector>

using aplq::status;
using aplq::io::dtype;
using aplq_test::temp_dir;
using aplq_test::write_all;

namespace {

// A safetensors file from a header text and a data section.
std::vector<std::uint8_t> raw_file(const std::string& header, const std::vector<std::uint8_t>& data,
                                   std::uint64_t length_field = ~0ull) {
  const std::uint64_t n = length_field == ~0ull ? header.size() : length_field;
  std::vector<std::uint8_t> out(8);
  for (int i = 0; i < 8; ++i)
    out[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(n >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

aplq::io::error open_bytes(const temp_dir& dir, const std::vector<std::uint8_t>& bytes) {
  write_all(dir.file("t.safetensors"), bytes);
  aplq::io::safetensors_file f;
  return f.open(dir.file("t.safetensors"));
}

// Writes one tensor per entry with the given writer plan, data = index pattern.
void write_sample(const std::string& path) {
  aplq::io::safetensors_writer w;
  REQUIRE_FALSE(w.add("u", dtype::u8, {2, 3}));
  REQUIRE_FALSE(w.add("h", dtype::f16, {5}));
  REQUIRE_FALSE(w.add("f", dtype::f32, {3, 5}));
  REQUIRE_FALSE(w.add("b", dtype::bf16, {7}));
  w.set_metadata("k", "v");
  REQUIRE_FALSE(w.open(path));
  std::vector<float> f(15);
  for (int i = 0; i < 15; ++i)
    f[static_cast<std::size_t>(i)] = 0.5f * static_cast<float>(i) - 3.0f;
  std::vector<std::uint16_t> b(7), h(5);
  for (int i = 0; i < 7; ++i)
    b[static_cast<std::size_t>(i)] = static_cast<std::uint16_t>(0x3f80 + i); // 1.0, 1.0078125...
  for (int i = 0; i < 5; ++i)
    h[static_cast<std::size_t>(i)] = aplq::float_to_half(static_cast<float>(i) - 2.0f).bits;
  const std::uint8_t u[6] = {1, 2, 3, 250, 251, 252};
  // Out of order and in pieces.
  REQUIRE_FALSE(w.write("b", b.data(), 14));
  REQUIRE_FALSE(w.write("f", f.data() + 7, 32, 28));
  REQUIRE_FALSE(w.write("u", u, 6));
  REQUIRE_FALSE(w.write("f", f.data(), 28));
  REQUIRE_FALSE(w.write("h", h.data(), 10));
  REQUIRE_FALSE(w.commit());
}

} // namespace

TEST_CASE("safetensors: what the writer writes, the reader reads back") {
  temp_dir dir;
  write_sample(dir.file("s.safetensors"));
  CHECK(dir.entries() == std::vector<std::string>{"s.safetensors"});
  aplq::io::safetensors_file f;
  const aplq::io::error e = f.open(dir.file("s.safetensors"));
  REQUIRE_MESSAGE(!e, e.message);
  REQUIRE(f.tensors().size() == 4);
  CHECK(f.metadata().at("k") == "v");
  for (const aplq::io::tensor_info& t : f.tensors()) {
    // Largest element first: every tensor starts aligned to its element size.
    const auto addr = reinterpret_cast<std::uintptr_t>(f.data(t));
    CHECK(addr % static_cast<std::uintptr_t>(aplq::io::dtype_size(t.type)) == 0);
  }
  const aplq::io::tensor_info* t = f.find("f");
  REQUIRE(t != nullptr);
  CHECK(t->shape == std::vector<std::int64_t>{3, 5});
  std::vector<float> v(15);
  REQUIRE_FALSE(f.read_float(*t, v.data()));
  for (int i = 0; i < 15; ++i)
    CHECK(v[static_cast<std::size_t>(i)] == 0.5f * static_cast<float>(i) - 3.0f);
  std::vector<float> b(7), h(5);
  REQUIRE_FALSE(f.read_float(*f.find("b"), b.data()));
  CHECK(b[0] == 1.0f);
  CHECK(b[6] == 1.0f + 6.0f / 128.0f);
  REQUIRE_FALSE(f.read_float(*f.find("h"), h.data()));
  CHECK(h[0] == -2.0f);
  CHECK(h[4] == 2.0f);
  CHECK(std::memcmp(f.data(*f.find("u")), "\x01\x02\x03\xfa\xfb\xfc", 6) == 0);
  const aplq::io::error not_float = f.read_float(*f.find("u"), v.data());
  CHECK(not_float.code == status::bad_file);
  CHECK(not_float.message.find("'u'") != std::string::npos);
}

TEST_CASE("safetensors: writer misuse is refused and leaves no file") {
  temp_dir dir;
  {
    aplq::io::safetensors_writer w;
    REQUIRE_FALSE(w.add("a", dtype::f32, {4}));
    CHECK(w.add("a", dtype::f32, {4}).code == status::invalid_argument);
    CHECK(w.add("__metadata__", dtype::f32, {4}).code == status::invalid_argument);
    CHECK(w.add("n", dtype::f32, {-1}).code == status::invalid_shape);
    REQUIRE_FALSE(w.open(dir.file("w.safetensors")));
    CHECK(w.add("b", dtype::f32, {1}).code == status::invalid_argument);
    const float four[5] = {1, 2, 3, 4, 5};
    CHECK(w.write("a", four, 20).code == status::invalid_argument); // past its 16 bytes
    CHECK(w.write("zz", four, 4).code == status::invalid_argument); // not planned
    REQUIRE_FALSE(w.write("a", four, 12));
    const aplq::io::error e = w.commit(); // 4 bytes missing
    CHECK(e.code == status::internal_error);
    CHECK(e.message.find("'a'") != std::string::npos);
  }
  {
    aplq::io::safetensors_writer w; // destroyed before commit
    REQUIRE_FALSE(w.add("a", dtype::u8, {1}));
    REQUIRE_FALSE(w.open(dir.file("w.safetensors")));
  }
  CHECK(dir.entries().empty());
}

TEST_CASE("safetensors: damaged files give bad_file naming the file and the tensor") {
  temp_dir dir;
  const std::vector<std::uint8_t> data(24, 0x11);
  const std::string good = R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                           R"("b":{"dtype":"U8","shape":[8],"data_offsets":[16,24]}})";
  REQUIRE_FALSE(open_bytes(dir, raw_file(good, data)));

  struct bad_case {
    const char* what;
    std::vector<std::uint8_t> file;
    const char* needle;
  };
  const std::vector<bad_case> cases = {
      {"empty", {}, "shorter than the 8-byte header length"},
      {"length beyond file", raw_file(good, data, 1000), "larger than the file"},
      {"length absurd", raw_file(good, data, 1ull << 40), "exceeds"},
      {"not JSON", raw_file("{\"a\":", data), "not a JSON object"},
      {"not an object", raw_file("[1,2,3]", data), "not a JSON object"},
      {"not UTF-8", raw_file("{\"\xff\":{}}", data), "UTF-8"},
      {"overlong UTF-8", raw_file("{\"\xc0\xaf\":{}}", data), "UTF-8"},
      {"unknown dtype",
       raw_file(R"({"a":{"dtype":"F7","shape":[2,2],"data_offsets":[0,16]}})", data),
       "'a': unknown dtype F7"},
      {"negative dim",
       raw_file(R"({"a":{"dtype":"F32","shape":[-2,2],"data_offsets":[0,16]}})", data),
       "'a': shape [-2,2] has a dimension that is not a count"},
      {"missing field", raw_file(R"({"a":{"dtype":"F32","shape":[4]}})", data),
       "'a': entry needs dtype, shape and data_offsets"},
      {"offsets reversed",
       raw_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[16,0]}})", data), "reversed"},
      {"offsets beyond",
       raw_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}})", data),
       "'a': data_offsets [16, 32) exceed"},
      {"shape vs bytes",
       raw_file(R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", data),
       "'a': shape [2,3] of F32 needs 24 bytes"},
      {"huge shape",
       raw_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})",
                data),
       "'a': shape [4294967296,4294967296] is larger than the file"},
      {"dimension beyond 2^63",
       raw_file(R"({"a":{"dtype":"F32","shape":[0,18446744073709551615],"data_offsets":[0,0]}})",
                data),
       "'a': shape [0,18446744073709551615] has a dimension beyond 2^63"},
      {"overlap",
       raw_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                R"("b":{"dtype":"U8","shape":[8],"data_offsets":[8,16]}})",
                data),
       "overlap"},
      {"metadata not strings",
       raw_file(R"({"__metadata__":{"k":1},"b":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})",
                data),
       "__metadata__"},
  };
  for (const bad_case& c : cases) {
    INFO(c.what);
    const aplq::io::error e = open_bytes(dir, c.file);
    CHECK(e.code == status::bad_file);
    const std::string msg = e.message;
    INFO(msg);
    CHECK(msg.find("t.safetensors") != std::string::npos);
    CHECK(msg.find(c.needle) != std::string::npos);
  }
  // Every truncation of a good file is an error, never a read past the end.
  const std::vector<std::uint8_t> whole = raw_file(good, data);
  for (std::size_t n = 0; n < whole.size(); ++n) {
    const std::vector<std::uint8_t> cut(whole.begin(), whole.begin() + static_cast<long>(n));
    CHECK(open_bytes(dir, cut).code == status::bad_file);
  }
  aplq::io::safetensors_file none;
  CHECK(none.open(dir.file("missing.safetensors")).code == status::io_error);
}
