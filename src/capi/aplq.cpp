// SPDX-License-Identifier: Apache-2.0
// libaplq: the C ABI of include/aplq.h over the C++ library. Run-time formats become types
// through aplq::visit_format only; multiplies go through the run-time ISA dispatch library
// (aplq_dispatch, linked whole into libaplq). Every entry point validates all its arguments
// before it writes anything, catches every exception, and reports failures as a status plus a
// per-thread message. The only other state is the device choice and the ISA lists, computed
// once per process and immutable afterwards.
#include <aplq.h>

#include <aplq/dispatch.hpp>
#include <aplq/quantize.hpp>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <vector>

namespace {

using aplq::index_t;
using aplq::status;

static_assert(APLQ_E_NULL_POINTER == static_cast<int>(status::null_pointer) &&
                  APLQ_E_INVALID_SHAPE == static_cast<int>(status::invalid_shape) &&
                  APLQ_E_UNSUPPORTED_FORMAT == static_cast<int>(status::unsupported_format) &&
                  APLQ_E_NON_FINITE == static_cast<int>(status::non_finite) &&
                  APLQ_E_OUT_OF_RANGE == static_cast<int>(status::out_of_range) &&
                  APLQ_E_INVALID_ARGUMENT == static_cast<int>(status::invalid_argument) &&
                  APLQ_E_OUT_OF_MEMORY == static_cast<int>(status::out_of_memory) &&
                  APLQ_E_UNSUPPORTED_ARCH == static_cast<int>(status::unsupported_arch) &&
                  APLQ_E_DEVICE_ERROR == static_cast<int>(status::device_error) &&
                  APLQ_E_INTERNAL == static_cast<int>(status::internal_error),
              "aplq.h: status codes must match aplq::status");
static_assert(APLQ_GROUP_ROW == aplq::whole_row, "aplq.h: APLQ_GROUP_ROW must be whole_row");
static_assert(APLQ_SCALE_F32 == static_cast<int>(aplq::scale_kind::f32) &&
                  APLQ_SCALE_F16 == static_cast<int>(aplq::scale_kind::f16),
              "aplq.h: scale types must match aplq::scale_kind");
static_assert(APLQ_LAYOUT_SEQUENTIAL == static_cast<int>(aplq::layout_kind::sequential) &&
                  APLQ_LAYOUT_CPU_STRIPED == static_cast<int>(aplq::layout_kind::cpu_striped),
              "aplq.h: layouts must match aplq::layout_kind");
static_assert(APLQ_POLICY_EXACT == static_cast<int>(aplq::compute::exact) &&
                  APLQ_POLICY_INT8 == static_cast<int>(aplq::compute::int8),
              "aplq.h: policies must match aplq::compute");

// ---- Errors --------------------------------------------------------------------------------

// A fixed buffer: no allocation, nothing to destroy when a thread or the library goes away.
thread_local char last_error_text[256];

void clear_error() noexcept { last_error_text[0] = '\0'; }

// Records "<function>: <message>" for aplq_last_error and returns `code`.
int fail(int code, const char* function, const char* format, ...) noexcept
    __attribute__((format(printf, 3, 4)));
int fail(int code, const char* function, const char* format, ...) noexcept {
  int n = std::snprintf(last_error_text, sizeof last_error_text, "%s: ", function);
  if (n < 0 || n >= static_cast<int>(sizeof last_error_text))
    n = 0;
  std::va_list args;
  va_start(args, format);
  std::vsnprintf(last_error_text + n, sizeof last_error_text - static_cast<std::size_t>(n), format,
                 args);
  va_end(args);
  return code;
}

int fail(status s, const char* function, const char* what) noexcept {
  return fail(static_cast<int>(s), function, "%s (%s)", aplq::status_string(s), what);
}

// Runs an entry point's body: clears the last error, turns any exception into a status.
template <class Body>
int guarded(const char* function, Body&& body) noexcept {
  clear_error();
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(APLQ_E_OUT_OF_MEMORY, function, "out of memory");
  } catch (const std::exception& e) {
    return fail(APLQ_E_INTERNAL, function, "internal error: %s", e.what());
  } catch (...) {
    return fail(APLQ_E_INTERNAL, function, "internal error: unknown exception");
  }
}

// A status from the C++ library, with the function named when it is an error.
int from_status(status s, const char* function, const char* what) noexcept {
  return s == status::ok ? APLQ_OK : fail(s, function, what);
}

// ---- Device --------------------------------------------------------------------------------

bool equals_ignoring_case(const char* a, const char* b) noexcept {
  for (; *a && *b; ++a, ++b) {
    const char ca = (*a >= 'A' && *a <= 'Z') ? static_cast<char>(*a - 'A' + 'a') : *a;
    if (ca != *b)
      return false;
  }
  return *a == *b;
}

struct device_choice {
  int device = APLQ_DEVICE_CPU; // or a negative status
  char message[160] = "";
};

device_choice choose_device() noexcept {
  device_choice c;
  const char* use_gpu = std::getenv("USE_GPU");
  if (use_gpu != nullptr &&
      (equals_ignoring_case(use_gpu, "false") || equals_ignoring_case(use_gpu, "0") ||
       equals_ignoring_case(use_gpu, "no") || equals_ignoring_case(use_gpu, "off")))
    return c; // the seed's switch: CPU whatever APLQ_DEVICE says
  const char* requested = std::getenv("APLQ_DEVICE");
  if (requested == nullptr || *requested == '\0' || equals_ignoring_case(requested, "auto") ||
      equals_ignoring_case(requested, "cpu"))
    return c; // no GPU backend in this build: auto means the CPU
  if (equals_ignoring_case(requested, "cuda")) {
    c.device = APLQ_E_DEVICE_UNAVAILABLE;
    std::snprintf(c.message, sizeof c.message,
                  "APLQ_DEVICE=cuda, but this libaplq was built without CUDA (unset it, or set "
                  "APLQ_DEVICE=auto or cpu, to run on the CPU)");
    return c;
  }
  c.device = APLQ_E_INVALID_ARGUMENT;
  std::snprintf(c.message, sizeof c.message, "APLQ_DEVICE=%.40s: expected auto, cpu or cuda",
                requested);
  return c;
}

const device_choice& device() noexcept {
  static const device_choice chosen = choose_device();
  return chosen;
}

// APLQ_OK when multiplies may run, else the failure (recorded for aplq_last_error).
int check_device(const char* function) noexcept {
  const device_choice& d = device();
  return d.device >= 0 ? APLQ_OK : fail(d.device, function, "%s", d.message);
}

// ---- Formats and views ---------------------------------------------------------------------

bool is_lut(const aplq_format& f) noexcept { return f.layout == APLQ_LAYOUT_LUT; }

// The C descriptor as aplq's, or a failure for fields visit_format cannot see (zero_point,
// scale_type and layout outside their enums). APLQ_LAYOUT_LUT, which has no aplq::layout_kind
// (a cpu::lut_matrix is a container of its own), describes its format with the sequential
// layout; callers tell it apart with is_lut.
int to_desc(const aplq_format* f, const char* function, aplq::format_desc& d) noexcept {
  if (f == nullptr)
    return fail(status::null_pointer, function, "format is NULL");
  if (f->zero_point != 0 && f->zero_point != 1)
    return fail(APLQ_E_UNSUPPORTED_FORMAT, function, "format.zero_point = %d: expected 0 or 1",
                f->zero_point);
  if (f->scale_type != APLQ_SCALE_F32 && f->scale_type != APLQ_SCALE_F16)
    return fail(APLQ_E_UNSUPPORTED_FORMAT, function,
                "format.scale_type = %d: expected APLQ_SCALE_F32 or APLQ_SCALE_F16", f->scale_type);
  if (f->layout != APLQ_LAYOUT_SEQUENTIAL && f->layout != APLQ_LAYOUT_CPU_STRIPED && !is_lut(*f))
    return fail(APLQ_E_UNSUPPORTED_FORMAT, function,
                "format.layout = %d: expected APLQ_LAYOUT_SEQUENTIAL, APLQ_LAYOUT_CPU_STRIPED or "
                "APLQ_LAYOUT_LUT",
                f->layout);
  d.bits = f->bits;
  d.group = f->group;
  d.zero_point = f->zero_point != 0;
  d.scale = static_cast<aplq::scale_kind>(f->scale_type);
  d.layout = is_lut(*f) ? aplq::layout_kind::sequential : static_cast<aplq::layout_kind>(f->layout);
  if (aplq::visit_format(d, [](auto) { return status::ok; }) != status::ok)
    return fail(APLQ_E_UNSUPPORTED_FORMAT, function,
                "bits = %d, group = %d: bits must be 1, 2, 4 or 8 and group 32, 64, 128, 256 or "
                "0 (whole row)",
                f->bits, f->group);
  if (is_lut(*f) && f->bits > 2)
    return fail(APLQ_E_UNSUPPORTED_FORMAT, function,
                "format.layout = APLQ_LAYOUT_LUT with bits = %d: table lookup serves 1- and 2-bit "
                "formats",
                f->bits);
  return APLQ_OK;
}

// Byte sizes of a [rows, cols] matrix of format F, in its layout or as a cpu::lut_matrix (rows
// rounded up to whole tiles of 32), or false when they overflow int64.
template <class F>
bool sizes_of(index_t rows, index_t cols, bool lut, aplq_sizes& s) noexcept {
  aplq::storage_sizes z;
  if (aplq::storage_of<F>(rows, cols, z) != status::ok)
    return false;
  if constexpr (F::bits <= 2) {
    if (lut) {
      constexpr index_t max = std::numeric_limits<index_t>::max();
      constexpr index_t tile = aplq::cpu::lut_tile_rows;
      using V = aplq::cpu::lut_view<F>;
      const V shape{nullptr, nullptr, nullptr, rows, cols};
      const index_t scale_bytes = z.groups * static_cast<index_t>(sizeof(typename F::scale_type));
      if (shape.chunks() > max / V::chunk_bytes || shape.tiles() > max / shape.tile_bytes() ||
          shape.tiles() * tile > max / scale_bytes)
        return false;
      z.row_bytes = shape.tile_bytes() / tile;
      z.codes_bytes = shape.code_bytes();
      z.scales_bytes = shape.scale_count() * static_cast<index_t>(sizeof(typename F::scale_type));
      z.zeros_bytes = F::zero_point ? z.scales_bytes : 0;
    }
  } else if (lut) {
    return false; // to_desc refuses the table-lookup layout for these widths
  }
  s.row_bytes = z.row_bytes;
  s.groups = z.groups;
  s.codes_bytes = z.codes_bytes;
  s.scales_bytes = z.scales_bytes;
  s.zeros_bytes = z.zeros_bytes;
  return true;
}

int check_shape(index_t rows, index_t cols, const char* function) noexcept {
  if (rows <= 0 || cols <= 0)
    return fail(APLQ_E_INVALID_SHAPE, function, "rows = %lld, cols = %lld: both must be positive",
                static_cast<long long>(rows), static_cast<long long>(cols));
  return APLQ_OK;
}

// Checks a C matrix and turns it into the dispatch library's run-time view.
int to_view(const aplq_qmatrix* w, const char* function, aplq::any_qmatrix_view& v) noexcept {
  if (w == nullptr)
    return fail(status::null_pointer, function, "w is NULL");
  if (int rc = to_desc(&w->format, function, v.format); rc != APLQ_OK)
    return rc;
  if (int rc = check_shape(w->rows, w->cols, function); rc != APLQ_OK)
    return rc;
  if (w->codes == nullptr)
    return fail(status::null_pointer, function, "w->codes is NULL");
  if (w->scales == nullptr)
    return fail(status::null_pointer, function, "w->scales is NULL");
  if (w->format.zero_point && w->zeros == nullptr)
    return fail(status::null_pointer, function, "w->zeros is NULL for a zero-point format");
  aplq_sizes s{};
  const bool fits = aplq::visit_format(v.format, [&](auto f) {
                      return sizes_of<decltype(f)>(w->rows, w->cols, is_lut(w->format), s)
                                 ? status::ok
                                 : status::invalid_shape;
                    }) == status::ok;
  if (!fits)
    return fail(APLQ_E_INVALID_SHAPE, function, "rows = %lld, cols = %lld: too large",
                static_cast<long long>(w->rows), static_cast<long long>(w->cols));
  v.codes = w->codes;
  v.scales = w->scales;
  v.zeros = w->format.zero_point ? w->zeros : nullptr;
  v.rows = w->rows;
  v.cols = w->cols;
  return APLQ_OK;
}

template <class F>
aplq::qmatrix_view<F> typed(const aplq::any_qmatrix_view& v) noexcept {
  using S = const typename F::scale_type;
  return {static_cast<const std::uint8_t*>(v.codes), static_cast<S*>(v.scales),
          static_cast<S*>(v.zeros), v.rows, v.cols};
}

// The same arrays as a lut_matrix's (an APLQ_LAYOUT_LUT matrix; F has 1 or 2 bits).
template <class F>
aplq::cpu::lut_view<F> typed_lut(const aplq::any_qmatrix_view& v) noexcept {
  using S = const typename F::scale_type;
  return {static_cast<const std::uint8_t*>(v.codes), static_cast<S*>(v.scales),
          static_cast<S*>(v.zeros), v.rows, v.cols};
}

// Copies a packed lut_matrix into buffers checked by to_span.
template <class F, class G>
void copy_out(const aplq::cpu::lut_matrix<F>& m, const aplq::qmatrix_span<G>& dst) noexcept {
  const auto v = m.view();
  using S = typename F::scale_type;
  std::memcpy(dst.codes, v.codes, static_cast<std::size_t>(v.code_bytes()));
  std::memcpy(dst.scales, v.scales, static_cast<std::size_t>(v.scale_count()) * sizeof(S));
  if constexpr (F::zero_point)
    std::memcpy(dst.zeros, v.zeros, static_cast<std::size_t>(v.scale_count()) * sizeof(S));
}

// Checks that `out` holds a [rows, cols] matrix of F (as a lut_matrix when `lut`: then only the
// span's pointers mean anything) and returns the span over it.
template <class F>
int to_span(const aplq_qbuffers* out, index_t rows, index_t cols, bool lut, const char* function,
            aplq::qmatrix_span<F>& span) noexcept {
  if (out == nullptr)
    return fail(status::null_pointer, function, "out is NULL");
  aplq_sizes s{};
  if (!sizes_of<F>(rows, cols, lut, s))
    return fail(APLQ_E_INVALID_SHAPE, function, "rows = %lld, cols = %lld: too large",
                static_cast<long long>(rows), static_cast<long long>(cols));
  if (out->codes == nullptr)
    return fail(status::null_pointer, function, "out->codes is NULL");
  if (out->scales == nullptr)
    return fail(status::null_pointer, function, "out->scales is NULL");
  if (F::zero_point && out->zeros == nullptr)
    return fail(status::null_pointer, function, "out->zeros is NULL for a zero-point format");
  auto small = [&](const char* name, std::size_t have, index_t need) {
    return fail(APLQ_E_BUFFER_TOO_SMALL, function, "out->%s holds %zu bytes, %lld needed", name,
                have, static_cast<long long>(need));
  };
  if (static_cast<unsigned long long>(out->codes_bytes) <
      static_cast<unsigned long long>(s.codes_bytes))
    return small("codes_bytes", out->codes_bytes, s.codes_bytes);
  if (static_cast<unsigned long long>(out->scales_bytes) <
      static_cast<unsigned long long>(s.scales_bytes))
    return small("scales_bytes", out->scales_bytes, s.scales_bytes);
  if (static_cast<unsigned long long>(out->zeros_bytes) <
      static_cast<unsigned long long>(s.zeros_bytes))
    return small("zeros_bytes", out->zeros_bytes, s.zeros_bytes);
  using S = typename F::scale_type;
  span = {static_cast<std::uint8_t*>(out->codes), static_cast<S*>(out->scales),
          F::zero_point ? static_cast<S*>(out->zeros) : nullptr, rows, cols};
  return APLQ_OK;
}

int to_options(const aplq_options* o, const char* function, aplq::options& opt) noexcept {
  opt.threads = 0; // NULL or zero-initialized: all cores
  opt.policy = aplq::compute::exact;
  if (o == nullptr)
    return APLQ_OK;
  if (o->policy != APLQ_POLICY_EXACT && o->policy != APLQ_POLICY_INT8)
    return fail(APLQ_E_INVALID_ARGUMENT, function,
                "options->policy = %d: expected APLQ_POLICY_EXACT or APLQ_POLICY_INT8", o->policy);
  opt.threads = o->threads;
  opt.policy = static_cast<aplq::compute>(o->policy);
  return APLQ_OK;
}

// Y [n, rows] = X W^T with the dispatch library: the plain kernels, or the table-lookup ones
// for an APLQ_LAYOUT_LUT matrix.
int multiply(const aplq_qmatrix* w, const aplq::any_qmatrix_view& v, const float* x, index_t n,
             float* y, const aplq::options& opt, const char* function) noexcept {
  if (!is_lut(w->format))
    return from_status(aplq::dispatch::gemm(v, x, n, y, opt), function, "multiply");
  const aplq::cpu::any_lut_view l{v.format, v.codes, v.scales, v.zeros, v.rows, v.cols};
  return from_status(aplq::dispatch::gemm(l, x, n, y, opt), function, "multiply");
}

// ---- Seed entry points -----------------------------------------------------------------------

// Reads code j of a seed array: elem_bytes-wide little-endian integers, two's complement when
// Signed. Assembled byte by byte, so neither alignment nor host byte order matters.
template <int ElemBytes, bool Signed>
APLQ_FORCE_INLINE std::int64_t seed_code(const std::uint8_t* p) noexcept {
  std::uint32_t u = 0;
  for (int b = 0; b < ElemBytes; ++b)
    u |= static_cast<std::uint32_t>(p[b]) << (8 * b);
  if constexpr (Signed) {
    constexpr int shift = 32 - 8 * ElemBytes;
    return static_cast<std::int64_t>(static_cast<std::int32_t>(u << shift) >> shift);
  } else {
    return static_cast<std::int64_t>(u);
  }
}

// Packs seed codes [rows][cols] into `packed` (F's layout, zeroed, rows * row_bytes), mapping
// a signed q to aplq's unsigned u = q + 2^(bits-1). A code out of range stops the packing with
// its position in `bad` (packed is a temporary: nothing the caller owns is touched).
template <class F, int ElemBytes, bool Signed>
status pack_seed(const std::uint8_t* src, index_t rows, index_t cols, std::uint8_t* packed,
                 index_t& bad) noexcept {
  using L = typename F::layout_type;
  constexpr std::int64_t lo = Signed ? -(std::int64_t{1} << (F::bits - 1)) : 0;
  constexpr std::int64_t hi = Signed ? (std::int64_t{1} << (F::bits - 1)) : (1 << F::bits);
  const index_t row_bytes = F::row_bytes(cols);
  for (index_t r = 0; r < rows; ++r) {
    const std::uint8_t* in = src + r * cols * ElemBytes;
    std::uint8_t* row = packed + r * row_bytes;
    for (index_t j = 0; j < cols; ++j) {
      const std::int64_t q = seed_code<ElemBytes, Signed>(in + j * ElemBytes);
      if (q < lo || q >= hi) {
        bad = r * cols + j;
        return status::out_of_range;
      }
      const unsigned u = static_cast<unsigned>(q - lo);
      row[L::template byte_of<F::bits>(j)] |=
          static_cast<std::uint8_t>(u << L::template shift_of<F::bits>(j));
    }
  }
  return status::ok;
}

template <class F, bool Signed>
status pack_seed(const void* src, int elem_bytes, index_t rows, index_t cols, std::uint8_t* packed,
                 index_t& bad) noexcept {
  const auto* bytes = static_cast<const std::uint8_t*>(src);
  switch (elem_bytes) {
  case 1: return pack_seed<F, 1, Signed>(bytes, rows, cols, packed, bad);
  case 2: return pack_seed<F, 2, Signed>(bytes, rows, cols, packed, bad);
  case 4: return pack_seed<F, 4, Signed>(bytes, rows, cols, packed, bad);
  default: return status::invalid_argument;
  }
}

int seed_threads_and_shape(int out_rows, int in_cols, const char* function) noexcept {
  if (out_rows <= 0 || in_cols <= 0)
    return fail(APLQ_E_INVALID_SHAPE, function,
                "out_rows = %d, in_cols = %d: both must be positive", out_rows, in_cols);
  return APLQ_OK;
}

// apl_matmul_q and apl_matmul_q_batch.
int matmul_q(const char* function, const void* q_data, int elem_bytes, const float* scales,
             const float* zero_points, const float* inputs, float* outputs, int out_rows,
             int in_cols, int bits, int batch, int num_threads) {
  if (int rc = check_device(function); rc != APLQ_OK)
    return rc;
  if (int rc = seed_threads_and_shape(out_rows, in_cols, function); rc != APLQ_OK)
    return rc;
  if (batch <= 0)
    return fail(APLQ_E_INVALID_SHAPE, function, "batch = %d: must be positive", batch);
  if (bits != 2 && bits != 4 && bits != 8)
    return fail(APLQ_E_UNSUPPORTED_FORMAT, function,
                "bits = %d: expected 2, 4 or 8 (1-bit weights: apl_matmul_1bit)", bits);
  if (elem_bytes != 1 && elem_bytes != 2 && elem_bytes != 4)
    return fail(APLQ_E_INVALID_ARGUMENT, function, "elem_bytes = %d: expected 1, 2 or 4",
                elem_bytes);
  if (q_data == nullptr)
    return fail(status::null_pointer, function, "q_data is NULL");
  if (scales == nullptr)
    return fail(status::null_pointer, function, "scales is NULL");
  if (inputs == nullptr)
    return fail(status::null_pointer, function, "input is NULL");
  if (outputs == nullptr)
    return fail(status::null_pointer, function, "output is NULL");

  // Per-row f32 scales (and zero points) used in place; codes packed into the striped layout.
  aplq::format_desc d;
  d.bits = bits;
  d.group = aplq::whole_row;
  d.zero_point = zero_points != nullptr;
  d.scale = aplq::scale_kind::f32;
  d.layout = aplq::layout_kind::cpu_striped;
  index_t bad = -1;
  const status s = aplq::visit_format(d, [&](auto f) {
    using F = decltype(f);
    if constexpr (F::bits >= 2 && F::group == aplq::whole_row &&
                  std::is_same<typename F::scale_type, float>::value &&
                  std::is_same<typename F::layout_type, aplq::layout::cpu_striped>::value) {
      std::vector<std::uint8_t> packed(static_cast<std::size_t>(out_rows) *
                                       static_cast<std::size_t>(F::row_bytes(in_cols)));
      const status p =
          F::zero_point
              ? pack_seed<F, false>(q_data, elem_bytes, out_rows, in_cols, packed.data(), bad)
              : pack_seed<F, true>(q_data, elem_bytes, out_rows, in_cols, packed.data(), bad);
      if (p != status::ok)
        return p;
      const aplq::qmatrix_view<F> v{packed.data(), scales, F::zero_point ? zero_points : nullptr,
                                    out_rows, in_cols};
      aplq::options opt;
      opt.threads = num_threads;
      return aplq::dispatch::gemm(aplq::dispatch::erase(v), inputs, batch, outputs, opt);
    } else {
      return status::internal_error; // the descriptor above never names such a format
    }
  });
  if (s == status::out_of_range) {
    const long long r = static_cast<long long>(bad / in_cols),
                    c = static_cast<long long>(bad % in_cols);
    return zero_points != nullptr
               ? fail(APLQ_E_OUT_OF_RANGE, function,
                      "code [%lld][%lld] is outside [0, %d) (unsigned, zero_points given)", r, c,
                      1 << bits)
               : fail(APLQ_E_OUT_OF_RANGE, function,
                      "code [%lld][%lld] is outside [%d, %d) (signed, zero_points NULL)", r, c,
                      -(1 << (bits - 1)), 1 << (bits - 1));
  }
  return from_status(s, function, "multiply");
}

// The ISA list strings, built once.
std::string isa_list(bool (*keep)(aplq::dispatch::isa) noexcept) {
  std::string s;
  for (int i = 0; i < aplq::dispatch::isa_count; ++i) {
    const auto which = static_cast<aplq::dispatch::isa>(i);
    if (keep(which)) {
      if (!s.empty())
        s += ' ';
      s += aplq::dispatch::isa_name(which);
    }
  }
  return s;
}

} // namespace

// ---- C entry points ----------------------------------------------------------------------------

extern "C" {

APLQ_API const char* aplq_status_string(int code) {
  switch (code) {
  case APLQ_E_DEVICE_UNAVAILABLE: return "requested device unavailable";
  case APLQ_E_BUFFER_TOO_SMALL: return "output buffer too small";
  default:
    if (code <= 0 && code >= APLQ_E_INTERNAL)
      return aplq::status_string(static_cast<status>(code));
    return "unknown status";
  }
}

APLQ_API const char* aplq_last_error(void) { return last_error_text; }

APLQ_API const char* aplq_version(void) { return APLQ_VERSION_STRING; }

APLQ_API int aplq_version_number(void) {
  return APLQ_VERSION_MAJOR * 10000 + APLQ_VERSION_MINOR * 100 + APLQ_VERSION_PATCH;
}

APLQ_API const char* aplq_compiled_isas(void) {
  try {
    static const std::string list = isa_list(aplq::dispatch::compiled);
    return list.c_str();
  } catch (...) {
    return "";
  }
}

APLQ_API const char* aplq_available_isas(void) {
  try {
    static const std::string list = isa_list(aplq::dispatch::available);
    return list.c_str();
  } catch (...) {
    return "";
  }
}

APLQ_API const char* aplq_selected_isa(void) {
  const aplq::dispatch::isa i = aplq::dispatch::selected();
  return i == aplq::dispatch::isa::best ? "none" : aplq::dispatch::isa_name(i);
}

APLQ_API int aplq_gpu_available(void) { return 0; }

APLQ_API int aplq_device(void) {
  clear_error();
  return device().device >= 0 ? device().device : check_device("aplq_device");
}

APLQ_API int aplq_sizes_of(const aplq_format* format, int64_t rows, int64_t cols,
                           aplq_sizes* sizes) {
  static const char* const fn = "aplq_sizes_of";
  return guarded(fn, [&] {
    aplq::format_desc d;
    if (int rc = to_desc(format, fn, d); rc != APLQ_OK)
      return rc;
    if (int rc = check_shape(rows, cols, fn); rc != APLQ_OK)
      return rc;
    if (sizes == nullptr)
      return fail(status::null_pointer, fn, "sizes is NULL");
    aplq_sizes s{};
    const status st = aplq::visit_format(d, [&](auto f) {
      return sizes_of<decltype(f)>(rows, cols, is_lut(*format), s) ? status::ok
                                                                   : status::invalid_shape;
    });
    if (st != status::ok)
      return fail(APLQ_E_INVALID_SHAPE, fn, "rows = %lld, cols = %lld: too large",
                  static_cast<long long>(rows), static_cast<long long>(cols));
    *sizes = s;
    return APLQ_OK;
  });
}

APLQ_API int aplq_quantize(const aplq_format* format, const float* w, int64_t rows, int64_t cols,
                           const aplq_qbuffers* out) {
  static const char* const fn = "aplq_quantize";
  return guarded(fn, [&] {
    aplq::format_desc d;
    if (int rc = to_desc(format, fn, d); rc != APLQ_OK)
      return rc;
    if (int rc = check_shape(rows, cols, fn); rc != APLQ_OK)
      return rc;
    if (w == nullptr)
      return fail(status::null_pointer, fn, "w is NULL");
    int rc = APLQ_OK;
    const status s = aplq::visit_format(d, [&](auto f) {
      using F = decltype(f);
      aplq::qmatrix_span<F> dst;
      if ((rc = to_span<F>(out, rows, cols, is_lut(*format), fn, dst)) != APLQ_OK)
        return status::ok;
      // Quantized into a temporary: quantize can fail half-way (a scale overflowing f16).
      aplq::qmatrix<F> tmp;
      if (const status q = aplq::quantize<F>(w, rows, cols, tmp); q != status::ok)
        return q;
      if constexpr (F::bits <= 2) {
        if (is_lut(*format)) {
          aplq::cpu::lut_matrix<F> packed;
          if (const status p = packed.pack(tmp.view()); p != status::ok)
            return p;
          copy_out(packed, dst);
          return status::ok;
        }
      }
      std::memcpy(dst.codes, tmp.codes().data(), tmp.codes().size());
      std::memcpy(dst.scales, tmp.scales().data(), tmp.scales().size() * sizeof(*dst.scales));
      if constexpr (F::zero_point)
        std::memcpy(dst.zeros, tmp.zeros().data(), tmp.zeros().size() * sizeof(*dst.zeros));
      return status::ok;
    });
    if (rc != APLQ_OK)
      return rc;
    return from_status(s, fn, s == status::non_finite ? "NaN or Inf in w" : "quantize");
  });
}

APLQ_API int aplq_dequantize(const aplq_qmatrix* w, float* out) {
  static const char* const fn = "aplq_dequantize";
  return guarded(fn, [&] {
    aplq::any_qmatrix_view v;
    if (int rc = to_view(w, fn, v); rc != APLQ_OK)
      return rc;
    if (out == nullptr)
      return fail(status::null_pointer, fn, "out is NULL");
    const status s = aplq::visit_format(v.format, [&](auto f) {
      using F = decltype(f);
      if constexpr (F::bits <= 2) {
        if (is_lut(w->format)) { // through a sequential copy
          aplq::qmatrix<F> tmp;
          if (const status r = tmp.reset(v.rows, v.cols); r != status::ok)
            return r;
          if (const status u = aplq::cpu::unpack(typed_lut<F>(v), tmp.span()); u != status::ok)
            return u;
          return aplq::ref::dequantize(tmp.view(), out);
        }
      }
      return aplq::ref::dequantize(typed<F>(v), out);
    });
    return from_status(s, fn, "dequantize");
  });
}

APLQ_API int aplq_repack(const aplq_qmatrix* w, int layout, const aplq_qbuffers* out) {
  static const char* const fn = "aplq_repack";
  return guarded(fn, [&] {
    aplq::any_qmatrix_view v;
    if (int rc = to_view(w, fn, v); rc != APLQ_OK)
      return rc;
    const bool to_lut = layout == APLQ_LAYOUT_LUT, from_lut = is_lut(w->format);
    if (layout != APLQ_LAYOUT_SEQUENTIAL && layout != APLQ_LAYOUT_CPU_STRIPED && !to_lut)
      return fail(APLQ_E_UNSUPPORTED_FORMAT, fn,
                  "layout = %d: expected APLQ_LAYOUT_SEQUENTIAL, APLQ_LAYOUT_CPU_STRIPED or "
                  "APLQ_LAYOUT_LUT",
                  layout);
    if (to_lut && w->format.bits > 2)
      return fail(APLQ_E_UNSUPPORTED_FORMAT, fn,
                  "layout = APLQ_LAYOUT_LUT with bits = %d: table lookup serves 1- and 2-bit "
                  "formats",
                  w->format.bits);
    int rc = APLQ_OK;
    const status s = aplq::visit_format(v.format, [&](auto from) {
      using From = decltype(from);
      // The target differs in layout only: visit.hpp's own layout step picks its type (the
      // sequential one stands for APLQ_LAYOUT_LUT, as in to_desc).
      return aplq::detail::visit_layout<From::bits, From::group, From::zero_point,
                                        typename From::scale_type>(
          to_lut ? aplq::layout_kind::sequential : static_cast<aplq::layout_kind>(layout),
          [&](auto to) {
            using To = decltype(to);
            aplq::qmatrix_span<To> dst;
            if ((rc = to_span<To>(out, v.rows, v.cols, to_lut, fn, dst)) != APLQ_OK)
              return status::ok;
            if constexpr (From::bits <= 2) {
              if (from_lut && to_lut) {
                aplq_sizes z{}; // to_view has checked that these sizes exist
                sizes_of<From>(v.rows, v.cols, true, z);
                std::memcpy(dst.codes, v.codes, static_cast<std::size_t>(z.codes_bytes));
                std::memcpy(dst.scales, v.scales, static_cast<std::size_t>(z.scales_bytes));
                if (From::zero_point)
                  std::memcpy(dst.zeros, v.zeros, static_cast<std::size_t>(z.zeros_bytes));
                return status::ok;
              }
              if (from_lut)
                return aplq::cpu::unpack(typed_lut<From>(v), dst);
              if (to_lut) {
                aplq::cpu::lut_matrix<From> packed;
                if (const status p = packed.pack(typed<From>(v)); p != status::ok)
                  return p;
                copy_out(packed, dst);
                return status::ok;
              }
            }
            return aplq::ref::repack<To>(typed<From>(v), dst);
          });
    });
    if (rc != APLQ_OK)
      return rc;
    return from_status(s, fn, "repack");
  });
}

APLQ_API int aplq_gemm(const aplq_qmatrix* w, const float* x, int64_t n, float* y,
                       const aplq_options* options) {
  static const char* const fn = "aplq_gemm";
  return guarded(fn, [&] {
    if (int rc = check_device(fn); rc != APLQ_OK)
      return rc;
    aplq::any_qmatrix_view v;
    if (int rc = to_view(w, fn, v); rc != APLQ_OK)
      return rc;
    if (n <= 0)
      return fail(APLQ_E_INVALID_SHAPE, fn, "n = %lld: must be positive",
                  static_cast<long long>(n));
    if (x == nullptr)
      return fail(status::null_pointer, fn, "x is NULL");
    if (y == nullptr)
      return fail(status::null_pointer, fn, "y is NULL");
    aplq::options opt;
    if (int rc = to_options(options, fn, opt); rc != APLQ_OK)
      return rc;
    return multiply(w, v, x, n, y, opt, fn);
  });
}

APLQ_API int aplq_gemv(const aplq_qmatrix* w, const float* x, float* y,
                       const aplq_options* options) {
  static const char* const fn = "aplq_gemv";
  return guarded(fn, [&] {
    if (int rc = check_device(fn); rc != APLQ_OK)
      return rc;
    aplq::any_qmatrix_view v;
    if (int rc = to_view(w, fn, v); rc != APLQ_OK)
      return rc;
    if (x == nullptr)
      return fail(status::null_pointer, fn, "x is NULL");
    if (y == nullptr)
      return fail(status::null_pointer, fn, "y is NULL");
    aplq::options opt;
    if (int rc = to_options(options, fn, opt); rc != APLQ_OK)
      return rc;
    return multiply(w, v, x, 1, y, opt, fn);
  });
}

APLQ_API int apl_ffi_init(const char* backend_path) {
  (void)backend_path; // the kernels live in this library; there is nothing else to load
  return guarded("apl_ffi_init", [] { return check_device("apl_ffi_init"); });
}

APLQ_API int apl_ffi_cleanup(void) {
  clear_error();
  return APLQ_OK;
}

APLQ_API int apl_matmul_q(const void* q_data, int elem_bytes, const float* scales,
                          const float* zero_points, const float* input, float* output, int out_rows,
                          int in_cols, int bits, int num_threads) {
  static const char* const fn = "apl_matmul_q";
  return guarded(fn, [&] {
    return matmul_q(fn, q_data, elem_bytes, scales, zero_points, input, output, out_rows, in_cols,
                    bits, 1, num_threads);
  });
}

APLQ_API int apl_matmul_q_batch(const void* q_data, int elem_bytes, const float* scales,
                                const float* zero_points, const float* inputs, float* outputs,
                                int out_rows, int in_cols, int bits, int batch, int num_threads) {
  static const char* const fn = "apl_matmul_q_batch";
  return guarded(fn, [&] {
    return matmul_q(fn, q_data, elem_bytes, scales, zero_points, inputs, outputs, out_rows, in_cols,
                    bits, batch, num_threads);
  });
}

APLQ_API int apl_matmul_1bit(const uint8_t* packed, const float* scales, const float* input,
                             float* output, int out_rows, int in_cols, int num_threads) {
  static const char* const fn = "apl_matmul_1bit";
  return guarded(fn, [&] {
    if (int rc = check_device(fn); rc != APLQ_OK)
      return rc;
    if (int rc = seed_threads_and_shape(out_rows, in_cols, fn); rc != APLQ_OK)
      return rc;
    if (packed == nullptr)
      return fail(status::null_pointer, fn, "packed is NULL");
    if (scales == nullptr)
      return fail(status::null_pointer, fn, "scales is NULL");
    if (input == nullptr)
      return fail(status::null_pointer, fn, "input is NULL");
    if (output == nullptr)
      return fail(status::null_pointer, fn, "output is NULL");
    // The seed's bytes are aplq's 1-bit symmetric per-row sequential format (bit 1 = +s).
    aplq::format_desc d;
    d.bits = 1;
    d.group = aplq::whole_row;
    d.zero_point = false;
    d.scale = aplq::scale_kind::f32;
    d.layout = aplq::layout_kind::sequential;
    const status s = aplq::visit_format(d, [&](auto f) {
      using F = decltype(f);
      if constexpr (F::bits == 1 && F::group == aplq::whole_row && !F::zero_point &&
                    std::is_same<typename F::scale_type, float>::value &&
                    std::is_same<typename F::layout_type, aplq::layout::sequential>::value) {
        const index_t row_bytes = F::row_bytes(in_cols); // ceil(in_cols / 8)
        std::vector<std::uint8_t> cleared;
        const std::uint8_t* codes = packed;
        if (in_cols % 8 != 0) {
          // The last byte of each row has unused bits the caller may not have cleared.
          cleared.assign(packed, packed + static_cast<std::size_t>(out_rows) *
                                              static_cast<std::size_t>(row_bytes));
          const auto mask = static_cast<std::uint8_t>((1u << (in_cols % 8)) - 1u);
          for (index_t r = 0; r < out_rows; ++r)
            cleared[static_cast<std::size_t>(r * row_bytes + row_bytes - 1)] &= mask;
          codes = cleared.data();
        }
        const aplq::qmatrix_view<F> v{codes, scales, nullptr, out_rows, in_cols};
        aplq::options opt;
        opt.threads = num_threads;
        return aplq::dispatch::gemv(aplq::dispatch::erase(v), input, output, opt);
      } else {
        return status::internal_error; // the descriptor above never names such a format
      }
    });
    return from_status(s, fn, "multiply");
  });
}

} // extern "C"
