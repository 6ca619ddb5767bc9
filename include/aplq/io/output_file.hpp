// SPDX-License-Identifier: Apache-2.0
// output_file: a file that appears under its final name only when complete. It is created
// unnamed in its destination directory (O_TMPFILE), so a run that fails, or is killed, leaves
// nothing behind: the kernel frees an unnamed file when its last descriptor closes. commit()
// links it in and renames it onto the final name, replacing an older file only then. finish()
// flushes it without naming it, and readable_path() lets a reader open the finished file to check
// it before commit. Where O_TMPFILE is not supported, a hidden "<dir>/.<name>.tmp-XXXXXX" is used
// and removed on failure. Positioned writes (write_at) let a writer patch a header it can only
// complete at the end (NPZ local headers, for instance).
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
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

  error open(const std::string& path) {
    discard();
    final_ = path;
    const std::size_t slash = path.find_last_of('/');
    dir_ = slash == std::string::npos ? std::string(".") : path.substr(0, slash + 1);
    base_ = slash == std::string::npos ? path : path.substr(slash + 1);
    if (base_.empty())
      return fail(status::io_error, path + ": not a file name");
#ifdef O_TMPFILE
    fd_ = ::open(dir_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
#endif
    if (fd_ < 0) { // no O_TMPFILE here (or on this file system): a hidden temporary name
      temp_ = dir_ + (dir_.back() == '/' ? "" : "/") + "." + base_ + ".tmp-XXXXXX";
      fd_ = ::mkostemp(&temp_[0], O_CLOEXEC);
      if (fd_ < 0) {
        temp_.clear();
        return fail(status::io_error, path + ": cannot create: " + std::strerror(errno));
      }
      ::fchmod(fd_, 0644);
    }
    size_ = 0;
    finished_ = false;
    return {};
  }

  bool is_open() const noexcept { return fd_ >= 0; }
  const std::string& path() const noexcept { return final_; }
  // Bytes written so far (the end of the file).
  std::uint64_t size() const noexcept { return size_; }
  // A path that opens the file as written so far, before commit.
  std::string readable_path() const {
    return temp_.empty() ? "/proc/self/fd/" + std::to_string(fd_) : temp_;
  }

  // Appends n bytes.
  error write(const void* data, std::size_t n) { return write_at(size_, data, n); }

  // Writes n bytes at offset (which may be before the end, to patch, or at the end, to append).
  error write_at(std::uint64_t offset, const void* data, std::size_t n) {
    if (fd_ < 0 || finished_)
      return fail(status::io_error, final_ + ": write to a file that is not open for writing");
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

  // Flushes the file to disk; it stays unnamed (readable through readable_path()).
  error finish() {
    if (fd_ < 0)
      return fail(status::io_error, final_ + ": finish of a file that is not open");
    if (!finished_ && ::fsync(fd_) != 0)
      return fail(status::io_error, final_ + ": cannot flush: " + std::strerror(errno));
    finished_ = true;
    return {};
  }

  // Finishes the file if needed and puts it under its final name.
  error commit() {
    if (error e = finish())
      return e;
    if (temp_.empty()) { // unnamed: link under a temporary name, then rename over the final one
      std::string named = dir_ + (dir_.back() == '/' ? "" : "/") + "." + base_ + ".tmp-";
      const std::string proc = readable_path();
      bool linked = false;
      for (int attempt = 0; attempt < 100 && !linked; ++attempt) {
        const std::string candidate =
            named + std::to_string(::getpid()) + "-" + std::to_string(attempt);
        if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, candidate.c_str(), AT_SYMLINK_FOLLOW) == 0) {
          temp_ = candidate;
          linked = true;
        } else if (errno != EEXIST) {
          break;
        }
      }
      if (!linked)
        return fail(status::io_error, final_ + ": cannot complete: " + std::strerror(errno));
    }
    ::close(fd_);
    fd_ = -1;
    if (std::rename(temp_.c_str(), final_.c_str()) != 0) {
      error e = fail(status::io_error, final_ + ": cannot complete: " + std::strerror(errno));
      discard();
      return e;
    }
    temp_.clear();
    return {};
  }

  // Closes and removes the file (no-op after commit).
  void discard() noexcept {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = -1;
    if (!temp_.empty())
      ::unlink(temp_.c_str());
    temp_.clear();
    finished_ = false;
  }

private:
  int fd_ = -1;
  bool finished_ = false;
  std::string final_;
  std::string dir_;
  std::string base_;
  std::string temp_; // the file's name before commit, when it has one
  std::uint64_t size_ = 0;
};

} // namespace io
} // namespace aplq
