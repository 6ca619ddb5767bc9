// SPDX-License-Identifier: Apache-2.0
// The Hugging Face hub client of aplq-convert: turns a repository id ("mistralai/Mistral-7B-v0.3")
// into a local snapshot directory holding config.json, the safetensors weights (one file or an
// index and its shards) and the tokenizer files. It reads and writes the cache layout that
// huggingface_hub uses, so a model fetched here is reused by transformers and the other way round:
//
//   <cache>/models--ORG--NAME/blobs/<etag>                        the bytes of one file
//                            /blobs/<etag>.incomplete             a download in progress (resumed)
//                            /snapshots/<commit>/<file> -> ../../blobs/<etag>   (relative link)
//                            /refs/<revision>                     the commit of a branch or tag
//                            /.no_exist/<commit>/<file>           a file the repository lacks
//   <cache>/.locks/models--ORG--NAME/<etag>.lock                  flock() while downloading
//
// Downloads use libcurl, resume from the partial file with an HTTP Range request (also after a
// dropped connection, within the same run) and send the token only to the endpoint's own host.
#pragma once

#include <filesystem>
#include <ostream>
#include <string>

namespace aplq {
namespace tools {

struct hub_options {
  std::string endpoint;        // $HF_ENDPOINT or https://huggingface.co (no trailing slash)
  std::string token;           // $HF_TOKEN, else $HUGGINGFACE_HUB_TOKEN, else the token file
                               // that `huggingface-cli login` writes, else empty
  std::string token_source;    // where the token came from ("HF_TOKEN", a file path), for messages
  std::filesystem::path cache; // $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub
  std::string revision = "main"; // a branch, a tag or a 40-digit commit
  bool offline = false;          // $HF_HUB_OFFLINE=1: the cache only, no network
  bool progress = true;          // percentage lines while downloading (off with
                                 // $HF_HUB_DISABLE_PROGRESS_BARS=1)
  int attempts = 5; // tries per file when a transfer breaks off (dropped connection, time-out,
                    // HTTP 5xx or 429); each try resumes where the previous one stopped

  // The options the environment asks for, with the defaults of huggingface_hub.
  static hub_options from_environment();
};

// True when `model` looks like "org/name" (and is not an existing local file or directory).
bool is_repo_id(const std::string& model);

// The cache folder of a repository: <cache>/models--ORG--NAME.
std::filesystem::path repo_cache_dir(const std::filesystem::path& cache,
                                     const std::string& repo_id);

// The snapshot directory holding config.json and the safetensors files of repo_id: from the
// cache when complete there, else downloaded into it. Progress and "[cache]/[download]" lines go
// to `log` (a single updating line when `log` is std::cerr/std::clog on a terminal, a line every
// few percent otherwise). Throws std::runtime_error with a one-line message on failure.
std::filesystem::path resolve_model(const std::string& repo_id, const hub_options& opt,
                                    std::ostream& log);

} // namespace tools
} // namespace aplq
