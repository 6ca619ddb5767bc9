// SPDX-License-Identifier: Apache-2.0
// Small text helpers shared by aplq-convert and its hub client.
#pragma once

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <string>

namespace aplq {
namespace tools {

inline std::string lower(std::string s) {
  for (char& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// 1536 -> "1.5 KiB".
inline std::string human_size(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else
    std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

} // namespace tools
} // namespace aplq
