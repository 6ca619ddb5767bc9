// SPDX-License-Identifier: Apache-2.0
// The error every io function returns: a status and one line that names the file (and the tensor,
// where there is one). The io headers never throw; tools turn a non-ok error into their one line
// of output and a non-zero exit.
#pragma once

#include <string>
#include <utility>

#include "../status.hpp"

namespace aplq {
namespace io {

struct error {
  status code = status::ok;
  std::string message; // "model.safetensors: tensor 'w': offsets [8, 4) out of order"

  error() = default;
  error(status c, std::string m) : code(c), message(std::move(m)) {}

  // True when something went wrong: `if (auto e = reader.open(p)) return e;`
  explicit operator bool() const noexcept { return code != status::ok; }
  bool ok() const noexcept { return code == status::ok; }
};

inline error fail(status code, std::string message) { return {code, std::move(message)}; }

} // namespace io
} // namespace aplq
