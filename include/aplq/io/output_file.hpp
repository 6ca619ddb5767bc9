// SPDX-License-Identifier: Apache-2.0
// output_file: a file written under a temporary name in its destination directory and renamed
// onto its final name only by commit(). A writer that fails or is destroyed before commit()
// removes the temporary file, so an interrupted or failed run never leaves a half-written output
// behind. Positioned writes (write_at) let a writer patch a header it could only complete at the
// end (NPZ local headers, for instance).
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.hpp"

namespace aplq {
namespace io {

class output_file {
public:
  output_file() = default;
  output_file(const output_file&) = delete;
  output_file& operator=(const output_file&) = delete;
  ~output_file() { discard(); }

  // Creates "<dir>/.<name>.tmp-XXXXXX" next to `path`.
  error open(const std::string& path) {
    discard();
    final_ = path;
    const std::size_t slash = path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
    const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    temp_ = dir + "." + base + ".tmp-XXXXXX";
    fd_ = ::mkstemp(&temp_[0]);
    if (fd_ < 0) {
      error e = fail(status::io_error, path + ": cannot create: " + std::strerror(errno));
      temp_.clear();
      return e;
    }
    ::fchmod(fd_, 0644);
    size_ = 0;
    return {};
  }

  bool is_open() const noexcept { return fd_ >= 0; }
  const std::string& path() const noexcept { return final_; }
  // Bytes appended so far (the end of the file).
  std::uint64_t size() const noexcept { return size_; }

  // Appends n bytes.
  error write(const void* data, std::size_t n) {
    if (error e = write_at(size_, data, n))
      return e;
    return {};
  }

  // Writes n bytes at offset (which may be before the end, to patch, or at the end, to append).
  error write_at(std::uint64_t offset, const void* data, std::size_t n) {
    if (fd_ < 0)
      return fail(status::io_error, final_ + ": write to a file that is not open");
    const char* p = static_cast<const char*>(data);
    std::uint64_t at = offset;
    while (n > 0) {
      const ssize_t w = ::pwrite(fd_, p, n, static_cast<off_t>(at));
      if (w < 0) {
        if (errno == EINTR)
          continue;
        return fail(status::io_error, final_ + ": write failed: " + std::strerror(errno));
      }
      p += w;
      at += static_cast<std::uint64_t>(w);
      n -= static_cast<std::size_t>(w);
    }
    if (at > size_)
      size_ = at;
    return {};
  }

  // Flushes to disk and renames onto the final name.
  error commit() {
    if (fd_ < 0)
      return fail(status::io_error, final_ + ": commit of a file that is not open");
    const bool synced = ::fsync(fd_) == 0;
    const bool closed = ::close(fd_) == 0;
    fd_ = -1;
    if (!synced || !closed || std::rename(temp_.c_str(), final_.c_str()) != 0) {
      error e = fail(status::io_error, final_ + ": cannot complete: " + std::strerror(errno));
      discard();
      return e;
    }
    temp_.clear();
    return {};
  }

  // Closes and removes the temporary file (no-op after commit).
  void discard() noexcept {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = -1;
    if (!temp_.empty())
      ::unlink(temp_.c_str());
    temp_.clear();
  }

private:
  int fd_ = -1;
  std::string final_;
  std::string temp_;
  std::uint64_t size_ = 0;
};

} // namespace io
} // namespace aplq
