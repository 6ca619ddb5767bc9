// SPDX-License-Identifier: Apache-2.0
// The models aplq-convert knows by a short name, and the Hugging Face repositories they stand for.
#pragma once

#include <string>

namespace aplq {
namespace tools {

struct catalog_entry {
  const char* alias;
  const char* repo;
  const char* note;
};

inline constexpr catalog_entry model_catalog[] = {
    {"tinyllama", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "1.1B, Llama architecture"},
    {"mistral-7b", "mistralai/Mistral-7B-v0.1", "7.2B"},
    {"mistral-7b-instruct", "mistralai/Mistral-7B-Instruct-v0.2", "7.2B, instruction tuned"},
    {"gemma-2b", "google/gemma-2b", "2.5B, gated: accept the licence on its page"},
    {"llama2-7b", "meta-llama/Llama-2-7b-hf", "6.7B, gated: accept the licence on its page"},
};

// The catalog entry whose alias is `name`, or nullptr.
inline const catalog_entry* find_alias(const std::string& name) noexcept {
  for (const catalog_entry& e : model_catalog)
    if (name == e.alias)
      return &e;
  return nullptr;
}

} // namespace tools
} // namespace aplq
