// SPDX-License-Identifier: Apache-2.0
// A Hugging Face model directory: config.json plus either model.safetensors or shards listed by
// model.safetensors.index.json. open() maps every shard and checks the index against them (a
// missing shard, a tensor the index names but its shard lacks, a tensor in two shards are errors
// naming the file), so a converter can then stream the tensors one by one.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "error.hpp"
#include "safetensors.hpp"

namespace aplq {
namespace io {

// What config.json says about the model (fields absent from it stay empty or 0).
struct model_config {
  std::string model_type;          // "llama", "mistral", "gemma", ...
  std::string architecture;        // architectures[0]: "LlamaForCausalLM", ...
  std::int64_t context_length = 0; // max_position_embeddings (or n_positions, seq_length, n_ctx)
  std::int64_t hidden_size = 0;
  std::int64_t intermediate_size = 0;
  std::int64_t layers = 0;
  std::int64_t heads = 0;
  std::int64_t kv_heads = 0;
  std::int64_t vocab_size = 0;
  std::string torch_dtype;
  nlohmann::json raw; // the whole config.json
};

inline bool file_exists(const std::string& path) noexcept {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Reads a whole small file (config.json, an index) into `out`.
inline error read_text(const std::string& path, std::string& out) {
  mapped_file f;
  if (error e = f.open(path))
    return e;
  out.assign(reinterpret_cast<const char*>(f.data()), static_cast<std::size_t>(f.size()));
  return {};
}

inline error parse_config(const std::string& path, model_config& c) {
  std::string text;
  if (error e = read_text(path, text))
    return e;
  c.raw = nlohmann::json::parse(text, nullptr, false);
  if (c.raw.is_discarded() || !c.raw.is_object())
    return fail(status::bad_file, path + ": not a JSON object");
  auto str = [&](const char* key) {
    const auto it = c.raw.find(key);
    return it != c.raw.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  auto num = [&](std::initializer_list<const char*> keys) -> std::int64_t {
    for (const char* key : keys) {
      const auto it = c.raw.find(key);
      if (it != c.raw.end() && it->is_number_integer())
        return it->get<std::int64_t>();
    }
    return 0;
  };
  c.model_type = str("model_type");
  const auto arch = c.raw.find("architectures");
  if (arch != c.raw.end() && arch->is_array() && !arch->empty() && (*arch)[0].is_string())
    c.architecture = (*arch)[0].get<std::string>();
  c.context_length = num({"max_position_embeddings", "n_positions", "seq_length", "n_ctx"});
  c.hidden_size = num({"hidden_size", "n_embd", "d_model"});
  c.intermediate_size = num({"intermediate_size", "n_inner", "ffn_dim"});
  c.layers = num({"num_hidden_layers", "n_layer", "num_layers"});
  c.heads = num({"num_attention_heads", "n_head"});
  c.kv_heads = num({"num_key_value_heads"});
  if (c.kv_heads == 0)
    c.kv_heads = c.heads;
  c.vocab_size = num({"vocab_size"});
  c.torch_dtype = str("torch_dtype");
  return {};
}

class hf_model {
public:
  struct tensor_ref {
    const safetensors_file* file;
    const tensor_info* info;
  };

  // Opens `dir`; on error the model is left empty.
  error open(const std::string& dir) {
    error e = open_checked(dir);
    if (e) {
      tensors_.clear();
      shards_.clear();
    }
    return e;
  }

private:
  error open_checked(const std::string& dir) {
    shards_.clear();
    tensors_.clear();
    dir_ = dir;
    while (dir_.size() > 1 && dir_.back() == '/')
      dir_.pop_back();
    const std::string config_path = dir_ + "/config.json";
    if (!file_exists(config_path))
      return fail(status::io_error, dir_ + ": no config.json (not a Hugging Face model directory)");
    if (error e = parse_config(config_path, config_))
      return e;

    const std::string index_path = dir_ + "/model.safetensors.index.json";
    std::vector<std::string> files;
    std::map<std::string, std::string> weight_map;
    if (file_exists(index_path)) {
      std::string text;
      if (error e = read_text(index_path, text))
        return e;
      const nlohmann::json index = nlohmann::json::parse(text, nullptr, false);
      const auto wm = index.is_object() ? index.find("weight_map") : index.end();
      if (index.is_discarded() || !index.is_object() || wm == index.end() || !wm->is_object())
        return fail(status::bad_file, index_path + ": no weight_map object");
      std::set<std::string> seen;
      for (auto it = wm->begin(); it != wm->end(); ++it) {
        if (!it->is_string())
          return fail(status::bad_file, index_path + ": weight_map entry " +
                                            detail::quoted(it.key()) + " is not a file name");
        const std::string file = it->get<std::string>();
        if (file.empty() || file.find('/') != std::string::npos || file == "..")
          return fail(status::bad_file, index_path + ": shard name " + detail::quoted(file) +
                                            " is not a file in the model directory");
        weight_map[it.key()] = file;
        if (seen.insert(file).second)
          files.push_back(file);
      }
      std::sort(files.begin(), files.end()); // model-00001-of-00002 first
      for (const std::string& f : files)
        if (!file_exists(dir_ + "/" + f))
          return fail(status::io_error, index_path + ": shard " + f + " is missing from " + dir_);
    } else if (file_exists(dir_ + "/model.safetensors")) {
      files.push_back("model.safetensors");
    } else {
      return fail(status::io_error,
                  dir_ + ": neither model.safetensors nor model.safetensors.index.json");
    }

    std::map<std::string, std::string> owner; // tensor -> shard
    for (const std::string& f : files) {
      auto shard = std::make_unique<safetensors_file>();
      if (error e = shard->open(dir_ + "/" + f))
        return e;
      for (const tensor_info& t : shard->tensors()) {
        const auto [it, fresh] = owner.emplace(t.name, f);
        if (!fresh)
          return fail(status::bad_file, dir_ + ": tensor " + detail::quoted(t.name) +
                                            " is in both " + it->second + " and " + f);
        tensors_.push_back({shard.get(), &t});
      }
      shards_.push_back(std::move(shard));
    }
    for (const auto& [name, file] : weight_map) {
      const auto it = owner.find(name);
      if (it == owner.end() || it->second != file)
        return fail(status::bad_file, index_path + ": tensor " + detail::quoted(name) +
                                          " is not in its shard " + file);
    }
    return {};
  }

public:
  const std::string& dir() const noexcept { return dir_; }
  const model_config& config() const noexcept { return config_; }
  // The tensor called `name`, or nullptr.
  const tensor_ref* find(const std::string& name) const noexcept {
    for (const tensor_ref& t : tensors_)
      if (t.info->name == name)
        return &t;
    return nullptr;
  }
  // Every tensor, shard by shard in file order.
  const std::vector<tensor_ref>& tensors() const noexcept { return tensors_; }
  std::size_t shard_count() const noexcept { return shards_.size(); }
  const safetensors_file& shard(std::size_t i) const noexcept { return *shards_[i]; }
  // Sum of the tensors' bytes.
  std::uint64_t bytes() const noexcept {
    std::uint64_t n = 0;
    for (const tensor_ref& t : tensors_)
      n += t.info->bytes();
    return n;
  }

private:
  std::string dir_;
  model_config config_;
  std::vector<std::unique_ptr<safetensors_file>> shards_;
  std::vector<tensor_ref> tensors_;
};

} // namespace io
} // namespace aplq
