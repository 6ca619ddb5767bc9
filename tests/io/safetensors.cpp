// SPDX-License-Identifier: Apache-2.0
// The safetensors reader and writer, Hugging Face model directories and the aplq export loader
// (include/aplq/io/{safetensors,hf_model,quantized_model}.hpp): round trips, and every kind of
// damaged file giving bad_file with a message naming the file and the tensor, never a crash.
#include "../testing.hpp"
#include "io_testing.hpp"

#include <aplq/io/hf_model.hpp>
#include <aplq/io/quantized_model.hpp>
#include <aplq/quantize.hpp>

#include <cstring>
#include <string>
#include <vector>

using aplq::status;
using aplq::io::dtype;
using aplq_test::read_all;
using aplq_test::temp_dir;
using aplq_test::write_all;

namespace {

std::vector<std::uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

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
       raw_file(R"({"a":{"dtype":"F32","shape":[-2,2],"data_offsets":[0,16]}})", data), "'a'"},
      {"missing field", raw_file(R"({"a":{"dtype":"F32","shape":[4]}})", data), "'a'"},
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
       "'a'"},
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

namespace {

void write_config(const temp_dir& dir) {
  write_all(dir.file("config.json"),
            bytes_of(R"({"model_type":"llama","architectures":["LlamaForCausalLM"],)"
                     R"("max_position_embeddings":4096,"hidden_size":8,"num_attention_heads":2})"));
}

void write_shard(const std::string& path, const std::vector<std::string>& names) {
  aplq::io::safetensors_writer w;
  for (const std::string& n : names)
    REQUIRE_FALSE(w.add(n, dtype::f32, {2}));
  REQUIRE_FALSE(w.open(path));
  const float v[2] = {1.0f, -1.0f};
  for (const std::string& n : names)
    REQUIRE_FALSE(w.write(n, v, 8));
  REQUIRE_FALSE(w.commit());
}

} // namespace

TEST_CASE("hf_model: sharded directories and what is wrong with them") {
  temp_dir dir;
  write_config(dir);
  write_shard(dir.file("m-2.safetensors"), {"b", "c"});
  write_shard(dir.file("m-1.safetensors"), {"a"});
  write_all(dir.file("model.safetensors.index.json"),
            bytes_of(R"({"weight_map":{"a":"m-1.safetensors","b":"m-2.safetensors",)"
                     R"("c":"m-2.safetensors"}})"));
  aplq::io::hf_model m;
  const aplq::io::error e = m.open(dir.path.string());
  REQUIRE_MESSAGE(!e, e.message);
  CHECK(m.config().model_type == "llama");
  CHECK(m.config().architecture == "LlamaForCausalLM");
  CHECK(m.config().context_length == 4096);
  CHECK(m.config().kv_heads == 2);
  REQUIRE(m.tensors().size() == 3);
  CHECK(m.tensors()[0].info->name == "a"); // shards in name order
  CHECK(m.shard_count() == 2);
  CHECK(m.bytes() == 24);

  SUBCASE("a tensor the index names is not in its shard") {
    write_all(dir.file("model.safetensors.index.json"),
              bytes_of(R"({"weight_map":{"a":"m-1.safetensors","x":"m-2.safetensors"}})"));
    const aplq::io::error f = m.open(dir.path.string());
    CHECK(f.code == status::bad_file);
    CHECK(f.message.find("'x'") != std::string::npos);
  }
  SUBCASE("a missing shard") {
    write_all(dir.file("model.safetensors.index.json"),
              bytes_of(R"({"weight_map":{"a":"m-1.safetensors","b":"m-3.safetensors"}})"));
    const aplq::io::error f = m.open(dir.path.string());
    CHECK(f.code == status::io_error);
    CHECK(f.message.find("m-3.safetensors is missing") != std::string::npos);
  }
  SUBCASE("a shard outside the directory") {
    write_all(dir.file("model.safetensors.index.json"),
              bytes_of(R"({"weight_map":{"a":"../m-1.safetensors"}})"));
    CHECK(m.open(dir.path.string()).code == status::bad_file);
  }
  SUBCASE("a tensor in two shards") {
    write_shard(dir.file("m-2.safetensors"), {"a", "b"});
    const aplq::io::error f = m.open(dir.path.string());
    CHECK(f.code == status::bad_file);
    CHECK(f.message.find("'a' is in both") != std::string::npos);
  }
  SUBCASE("no weights, no config") {
    std::remove(dir.file("model.safetensors.index.json").c_str());
    CHECK(m.open(dir.path.string()).message.find("neither model.safetensors") != std::string::npos);
    std::remove(dir.file("config.json").c_str());
    CHECK(m.open(dir.path.string()).message.find("no config.json") != std::string::npos);
  }
}

namespace {

// An export of one q4_g32_f16 zero-point weight W [3, 70] (tails in the last group), plus a
// kept tensor, and what aplq::quantize made of W.
using export_format = aplq::format<4, 32, true, aplq::half>;

aplq::qmatrix<export_format> write_export(const std::string& path,
                                          const std::map<std::string, std::string>& extra = {}) {
  aplq_test::rng rng(41);
  const std::vector<float> w = rng.normal(3 * 70);
  aplq::qmatrix<export_format> q;
  REQUIRE(aplq::quantize<export_format>(w.data(), 3, 70, q) == status::ok);
  const aplq::format_desc f = aplq::describe<export_format>();
  aplq::io::safetensors_writer out;
  REQUIRE_FALSE(aplq::io::plan_quantized(out, "w", f, 3, 70));
  REQUIRE_FALSE(out.add("norm", dtype::f32, {2}));
  out.set_metadata("aplq.format", aplq::io::export_format_name);
  out.set_metadata("aplq.version", aplq::io::export_version);
  out.set_metadata("aplq.layout", "sequential");
  out.set_metadata("aplq.quantized",
                   nlohmann::json{{"w", aplq::io::describe_quantized(f, 3, 70)}}.dump());
  for (const auto& [k, v] : extra)
    out.set_metadata(k, v);
  REQUIRE_FALSE(out.open(path));
  REQUIRE_FALSE(out.write("w.codes", q.codes().data(), q.codes().size()));
  REQUIRE_FALSE(out.write("w.scales", q.scales().data(), q.scales().size() * 2));
  REQUIRE_FALSE(out.write("w.zeros", q.zeros().data(), q.zeros().size() * 2));
  const float norm[2] = {1, 2};
  REQUIRE_FALSE(out.write("norm", norm, 8));
  REQUIRE_FALSE(out.commit());
  return q;
}

} // namespace

TEST_CASE("quantized_model: an export loads into views equal to what was quantized") {
  temp_dir dir;
  const auto q = write_export(dir.file("m_q4.safetensors"));
  aplq::io::quantized_model m;
  const aplq::io::error e = m.open(dir.file("m_q4.safetensors"));
  REQUIRE_MESSAGE(!e, e.message);
  REQUIRE(m.weights().size() == 1);
  const aplq::io::quantized_weight& w = m.weights()[0];
  CHECK(w.view.format.bits == 4);
  CHECK(w.view.format.group == 32);
  CHECK(w.view.format.zero_point);
  CHECK(w.view.format.scale == aplq::scale_kind::f16);
  CHECK(w.view.rows == 3);
  CHECK(w.view.cols == 70);
  CHECK(std::memcmp(w.view.codes, q.codes().data(), q.codes().size()) == 0);
  CHECK(std::memcmp(w.view.scales, q.scales().data(), q.scales().size() * 2) == 0);
  CHECK(std::memcmp(w.view.zeros, q.zeros().data(), q.zeros().size() * 2) == 0);
  CHECK(m.is_part_of_quantized("w.codes"));
  CHECK_FALSE(m.is_part_of_quantized("norm"));
  // The kernels take the loaded view: same result as on the matrix it came from.
  aplq_test::rng rng(42);
  const std::vector<float> x = rng.normal(70);
  std::vector<float> y1(3), y2(3);
  REQUIRE(aplq::dispatch::gemv(w.view, x.data(), y1.data()) == status::ok);
  REQUIRE(aplq::dispatch::gemv(aplq::dispatch::erase(q.view()), x.data(), y2.data()) == status::ok);
  CHECK(y1 == y2);

  // Through a manifest next to it.
  write_all(dir.file("m_manifest_q4.json"),
            bytes_of(R"({"export":{"file":"m_q4.safetensors","format":"safetensors"}})"));
  aplq::io::quantized_model via;
  REQUIRE_FALSE(via.open(dir.file("m_manifest_q4.json")));
  CHECK(via.weights().size() == 1);
  write_all(dir.file("bad_manifest.json"), bytes_of(R"({"export":{"file":"/etc/passwd"}})"));
  CHECK(via.open(dir.file("bad_manifest.json")).code == status::bad_file);
}

TEST_CASE("quantized_model: exports that do not describe themselves correctly are refused") {
  temp_dir dir;
  const std::string path = dir.file("m.safetensors");
  aplq::io::quantized_model m;
  struct bad_case {
    const char* what;
    std::map<std::string, std::string> meta;
    const char* needle;
  };
  const std::vector<bad_case> cases = {
      {"not an export", {{"aplq.format", "other"}}, "not an aplq export"},
      {"newer version", {{"aplq.version", "9"}}, "version 9"},
      {"other layout", {{"aplq.layout", "cpu_striped"}}, "sequential"},
      {"bits 3",
       {{"aplq.quantized",
         R"({"w":{"bits":3,"group":32,"zero_point":true,"scale":"f16","shape":[3,70]}})"}},
       "'w'"},
      {"shape disagrees",
       {{"aplq.quantized",
         R"({"w":{"bits":4,"group":32,"zero_point":true,"scale":"f16","shape":[3,71]}})"}},
       "'w.codes'"},
      {"scale type disagrees",
       {{"aplq.quantized",
         R"({"w":{"bits":4,"group":32,"zero_point":true,"scale":"f32","shape":[3,70]}})"}},
       "'w.scales'"},
      {"tensor missing",
       {{"aplq.quantized",
         R"({"v":{"bits":4,"group":32,"zero_point":false,"scale":"f16","shape":[3,70]}})"}},
       "'v.codes' is missing"},
      {"not JSON", {{"aplq.quantized", "{"}}, "aplq.quantized"},
  };
  for (const bad_case& c : cases) {
    INFO(c.what);
    write_export(path, c.meta);
    const aplq::io::error e = m.open(path);
    CHECK(e.code == status::bad_file);
    const std::string msg = e.message;
    INFO(msg);
    CHECK(msg.find("m.safetensors") != std::string::npos);
    CHECK(msg.find(c.needle) != std::string::npos);
  }

  // A non-finite scale in the file.
  write_export(path);
  std::vector<std::uint8_t> bytes = read_all(path);
  aplq::io::safetensors_file f;
  REQUIRE_FALSE(f.open(path));
  const aplq::io::tensor_info* s = f.find("w.scales");
  REQUIRE(s != nullptr);
  // The data section ends the file.
  const std::size_t at = bytes.size() - static_cast<std::size_t>(f.tensors().back().end) +
                         static_cast<std::size_t>(s->begin);
  bytes[at + 2] = 0x00; // scale [0, 1] = +Inf (0x7c00)
  bytes[at + 3] = 0x7c;
  write_all(path, bytes);
  const aplq::io::error e = m.open(path);
  CHECK(e.code == status::bad_file);
  CHECK(e.message.find("'w.scales' holds a non-finite value at [0, 1]") != std::string::npos);
}
