// SPDX-License-Identifier: Apache-2.0
// Hugging Face model directories (include/aplq/io/hf_model.hpp): config.json, sharded indexes,
// and what is wrong with them (missing shard, tensor in two shards, ...), each an error naming
// the file.
#include "../testing.hpp"
#include "io_testing.hpp"

#include <aplq/io/hf_model.hpp>

#include <cstdio>
#include <string>
#include <vector>

using aplq::status;
using aplq::io::dtype;
using aplq_test::bytes_of;
using aplq_test::temp_dir;
using aplq_test::write_all;

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
