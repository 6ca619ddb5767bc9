// SPDX-License-Identifier: Apache-2.0
// aplq-hub-fetch: the hub client of aplq-convert on its own, for its tests and for checking a
// cache by hand. It resolves a repository id with the environment's settings (HF_ENDPOINT,
// HF_TOKEN, HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, ...) and prints the snapshot directory.
//
//   aplq-hub-fetch REPO_ID [REVISION]
#include "hub.hpp"

#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
    std::fprintf(argc == 2 ? stdout : stderr, "usage: aplq-hub-fetch REPO_ID [REVISION]\n");
    return argc == 2 ? 0 : 2;
  }
  try {
    const std::string repo = argv[1];
    if (!aplq::tools::is_repo_id(repo))
      throw std::runtime_error("'" + repo + "' is not a Hugging Face repository id (ORG/NAME)" +
                               " or is a local path");
    aplq::tools::hub_options opt = aplq::tools::hub_options::from_environment();
    if (argc == 3)
      opt.revision = argv[2];
    const auto snapshot = aplq::tools::resolve_model(repo, opt, std::cerr);
    std::printf("%s\n", snapshot.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::cerr.flush();
    std::fprintf(stderr, "aplq-hub-fetch: error: %s\n", e.what());
  }
  return 1;
}
