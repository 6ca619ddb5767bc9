// SPDX-License-Identifier: Apache-2.0
// mapped_file: a read-only memory map of a whole file (POSIX mmap). Readers parse headers from it
// and hand out pointers into it, so a model is never copied into memory; release() drops the pages
// of a range from this process (they stay in the page cache) once a converter is done with them,
// which keeps the resident size of a streaming conversion near one tensor.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.hpp"

namespace aplq {
namespace io {

class mapped_file {
public:
  mapped_file() = default;
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  mapped_file(mapped_file&& o) noexcept { swap(o); }
  mapped_file& operator=(mapped_file&& o) noexcept {
    if (this != &o) {
      close();
      swap(o);
    }
    return *this;
  }
  ~mapped_file() { close(); }

  error open(const std::string& path) {
    close();
    path_ = path;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return fail(status::io_error, path + ": cannot open: " + std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      return fail(status::io_error, path + ": not a regular file");
    }
    size_ = static_cast<std::uint64_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        size_ = 0;
        return fail(status::io_error, path + ": cannot map: " + std::strerror(err));
      }
      data_ = static_cast<const std::uint8_t*>(p);
    }
    ::close(fd);
    return {};
  }

  const std::uint8_t* data() const noexcept { return data_; }
  std::uint64_t size() const noexcept { return size_; }
  const std::string& path() const noexcept { return path_; }

  // Drops the pages of [offset, offset + bytes) from this process's resident set.
  void release(std::uint64_t offset, std::uint64_t bytes) const noexcept {
    if (data_ == nullptr || offset >= size_)
      return;
    const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    const std::uint64_t begin = (offset + page - 1) / page * page;
    const std::uint64_t end = offset + bytes > size_ ? size_ : offset + bytes;
    if (end > begin)
      ::madvise(const_cast<std::uint8_t*>(data_) + begin, end - begin, MADV_DONTNEED);
  }

  void close() noexcept {
    if (data_ != nullptr)
      ::munmap(const_cast<std::uint8_t*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }

private:
  void swap(mapped_file& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(path_, o.path_);
  }

  const std::uint8_t* data_ = nullptr;
  std::uint64_t size_ = 0;
  std::string path_;
};

} // namespace io
} // namespace aplq
