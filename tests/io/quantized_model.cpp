// SPDX-License-Identifier: Apache-2.0
// The aplq export loader (include/aplq/io/quantized_model.hpp): an export loads into views equal
// to what was quantized and that the kernels take; exports that describe themselves wrongly are
// refused with a message naming the file and the tensor.
#include "../testing.hpp"
#include "io_testing.hpp"

#include <aplq/io/quantized_model.hpp>
#include <aplq/quantize.hpp>

#include <cstring>
#include <map>
#include <string>
#include <vector>

using aplq::status;
using aplq::io::dtype;
using aplq_test::bytes_of;
using aplq_test::read_all;
using aplq_test::temp_dir;
using aplq_test::write_all;

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
