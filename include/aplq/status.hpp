// SPDX-License-Identifier: Apache-2.0
// Status codes returned by every public entry point (C++ API and, with the same numbers, the C
// ABI). No exceptions leave include/aplq: a call either succeeds or says why it did not.
#pragma once

#include "config.hpp"

namespace aplq {

enum class status : int {
  ok = 0,
  null_pointer = -1,       // a required pointer is null
  invalid_shape = -2,      // a size is zero or negative, or two sizes disagree
  unsupported_format = -3, // bits / group / layout not one aplq implements
  non_finite = -4,         // NaN or Inf in the weights to quantize
  out_of_range = -5,       // a value does not fit (code outside its bit width, scale overflow)
  invalid_argument = -6,   // any other bad argument (thread count, policy, ...)
  out_of_memory = -7,      // a working buffer could not be allocated
  unsupported_arch = -8,   // the requested instruction set is not compiled in or not on this CPU
  device_error = -9,       // a GPU call failed
  internal_error = -10,    // an invariant broke: a bug in aplq
  // -11, -12 are C ABI codes (aplq.h). The io headers (include/aplq/io) add:
  io_error = -20, // a file could not be opened, read, written or renamed
  bad_file = -21, // a file's contents are malformed (header, offsets, dtype, shape)
};

APLQ_HOST_DEVICE constexpr const char* status_string(status s) noexcept {
  switch (s) {
  case status::ok: return "ok";
  case status::null_pointer: return "null pointer argument";
  case status::invalid_shape: return "invalid shape (size zero, negative, or mismatched)";
  case status::unsupported_format: return "unsupported quantization format";
  case status::non_finite: return "non-finite value (NaN or Inf) in input";
  case status::out_of_range: return "value out of range for the format";
  case status::invalid_argument: return "invalid argument";
  case status::out_of_memory: return "out of memory";
  case status::unsupported_arch:
    return "instruction set not compiled in or not supported by this CPU";
  case status::device_error: return "GPU device error";
  case status::internal_error: return "internal error";
  case status::io_error: return "file could not be opened, read or written";
  case status::bad_file: return "malformed file";
  }
  return "unknown status";
}

} // namespace aplq
