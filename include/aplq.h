/* SPDX-License-Identifier: Apache-2.0 */
/* aplq.h: the C ABI of libaplq, for C, APL (native calls), Python (ctypes) and anything else
 * that can call C. It serves every aplq format with run-time bits / group / layout, picks the
 * best CPU instruction set of the machine at run time, and never throws, never aborts: every
 * function returns an integer status (APLQ_OK = 0, errors negative) and aplq_status_string()
 * says what it means; aplq_last_error() adds which argument was wrong.
 *
 * Two APIs:
 *  - the native API (aplq_*): describe a format (aplq_format), quantize float weights once into
 *    buffers you own (aplq_sizes tells how large), then call aplq_gemv / aplq_gemm as often as
 *    you like on those packed weights;
 *  - the seed-compatible entry points (apl_*), with the exact signatures of the tool set users
 *    migrate from. They convert their arguments on every call (see each one for the cost).
 *
 * Shapes follow BLAS habits: W is [rows, cols] (the seed's out_rows x in_cols), x is [cols],
 * y = W x is [rows]; a batch X [n, cols] gives Y = X W^T [n, rows]. Arrays are row-major.
 *
 * Device: APLQ_DEVICE=auto|cpu|cuda in the environment (read once, at the first call that needs
 * it) chooses where the multiplies run; USE_GPU=false (or 0, no, off) forces the CPU whatever
 * APLQ_DEVICE says. This build has no CUDA backend: auto and cpu run on the CPU, and cuda makes
 * every multiply (and apl_ffi_init) return APLQ_E_DEVICE_UNAVAILABLE rather than quietly running
 * somewhere else. Any other APLQ_DEVICE value gives APLQ_E_INVALID_ARGUMENT the same way.
 *
 * Threads: calls from several threads at once are safe; concurrent multiplies share one worker
 * pool, whose parallel sections run one after another, each with its own thread count. Results
 * never depend on the thread count. Nothing here keeps state between calls except the per-thread
 * last-error text and the device/ISA choice made once per process.
 *
 * Output buffers are written only on success: a call that returns an error leaves them as they
 * were. C99 (stdint.h, stddef.h); usable from C++ as is. */
#ifndef APLQ_H
#define APLQ_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define APLQ_API
#elif defined(__GNUC__)
#define APLQ_API __attribute__((visibility("default")))
#else
#define APLQ_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Status codes ------------------------------------------------------------------------ */
/* -1 .. -10 have the values of aplq::status in the C++ API; the rest exist only here. */
#define APLQ_OK 0
#define APLQ_E_NULL_POINTER (-1)        /* a required pointer is NULL */
#define APLQ_E_INVALID_SHAPE (-2)       /* a size is zero or negative, or two sizes disagree */
#define APLQ_E_UNSUPPORTED_FORMAT (-3)  /* bits / group / scale type / layout not implemented */
#define APLQ_E_NON_FINITE (-4)          /* NaN or Inf in weights to quantize */
#define APLQ_E_OUT_OF_RANGE (-5)        /* a code outside its bit width, a scale that overflows */
#define APLQ_E_INVALID_ARGUMENT (-6)    /* any other bad argument (elem_bytes, policy, ...) */
#define APLQ_E_OUT_OF_MEMORY (-7)       /* a working buffer could not be allocated */
#define APLQ_E_UNSUPPORTED_ARCH (-8)    /* no compiled instruction set runs on this CPU */
#define APLQ_E_DEVICE_ERROR (-9)        /* a GPU call failed */
#define APLQ_E_INTERNAL (-10)           /* an invariant broke: a bug in aplq */
#define APLQ_E_DEVICE_UNAVAILABLE (-11) /* APLQ_DEVICE names a device not available */
#define APLQ_E_BUFFER_TOO_SMALL (-12)   /* an output buffer is smaller than aplq_sizes says */

/* A static string for any status code ("unknown status" for codes not listed above). */
APLQ_API const char* aplq_status_string(int status);
/* What the most recent failing aplq/apl call on this thread got wrong, with the function and
 * argument named ("aplq_gemv: x is NULL"); "" when the most recent call succeeded. The text
 * stays valid until the next call on the same thread. */
APLQ_API const char* aplq_last_error(void);

/* ---- Queries ----------------------------------------------------------------------------- */
APLQ_API const char* aplq_version(void); /* "0.1.0" */
APLQ_API int aplq_version_number(void);  /* major * 10000 + minor * 100 + patch */
/* Space-separated instruction-set names: compiled into this library ("sse2 sse4_2 avx2
 * avx512bw"), and the subset this CPU runs. */
APLQ_API const char* aplq_compiled_isas(void);
APLQ_API const char* aplq_available_isas(void);
/* The ISA multiplies use ("avx2", ...), or "none". APLQ_ISA=<name> caps it (to compare). */
APLQ_API const char* aplq_selected_isa(void);
/* 1 when this library was built with CUDA and a usable GPU is present; 0 here (no CUDA build). */
APLQ_API int aplq_gpu_available(void);

#define APLQ_DEVICE_CPU 0
#define APLQ_DEVICE_CUDA 1
/* Where multiplies run, after APLQ_DEVICE and USE_GPU: APLQ_DEVICE_CPU or APLQ_DEVICE_CUDA, or
 * the negative status every multiply returns when the environment asks for the impossible. */
APLQ_API int aplq_device(void);

/* ---- Native API: formats ----------------------------------------------------------------- */
#define APLQ_GROUP_ROW 0 /* one scale (and zero point) per row */
#define APLQ_SCALE_F32 0
#define APLQ_SCALE_F16 1
#define APLQ_LAYOUT_SEQUENTIAL 0  /* interchange: codes in order, low bits first within a byte */
#define APLQ_LAYOUT_CPU_STRIPED 1 /* 32-byte stripes the CPU kernels load directly (faster) */
/* 1 and 2 bits only: tiles of 32 interleaved rows for the table-lookup kernels (aplq's fastest
 * for those widths, under either policy). Rows are rounded up to whole tiles (padding rows hold
 * zero codes and zero scales); the arrays are those of aplq::cpu::lut_matrix (<aplq/cpu/lut.hpp>
 * draws them). Make one with aplq_repack or aplq_quantize; aplq_dequantize and aplq_repack read
 * it back exactly. */
#define APLQ_LAYOUT_LUT 2

/* A quantization format. Values: symmetric, bits >= 2: w = s * (u - 2^(bits-1)); symmetric,
 * 1 bit: w = s * (2u - 1) (bit 1 = +s); zero point: w = s * (u - z); u is the unsigned code.
 * Ternary weights ride on 2-bit symmetric. The bit diagrams are in <aplq/format.hpp>. */
typedef struct aplq_format {
  int bits;       /* 1, 2, 4 or 8 */
  int group;      /* consecutive weights of a row sharing a scale: 32, 64, 128, 256, or
                     APLQ_GROUP_ROW */
  int zero_point; /* 0: symmetric; 1: one zero point per group, stored like the scales */
  int scale_type; /* APLQ_SCALE_F32 or APLQ_SCALE_F16 (IEEE binary16, for scales and zeros) */
  int layout;     /* APLQ_LAYOUT_SEQUENTIAL, APLQ_LAYOUT_CPU_STRIPED or APLQ_LAYOUT_LUT */
} aplq_format;

/* How many bytes a [rows, cols] matrix of a format takes. With APLQ_LAYOUT_LUT, rows counts
 * whole tiles (rounded up to a multiple of 32) and row_bytes is 4 * bits per 32 columns. */
typedef struct aplq_sizes {
  int64_t row_bytes;    /* bytes of codes per row */
  int64_t groups;       /* scale groups per row */
  int64_t codes_bytes;  /* rows * row_bytes */
  int64_t scales_bytes; /* rows * groups * (4 or 2) */
  int64_t zeros_bytes;  /* as scales_bytes for zero-point formats, else 0 */
} aplq_sizes;

APLQ_API int aplq_sizes_of(const aplq_format* format, int64_t rows, int64_t cols,
                           aplq_sizes* sizes);

/* A packed matrix W [rows, cols] in memory you own: codes [rows][row_bytes], scales and zeros
 * [rows][groups] (zeros NULL for symmetric formats); with APLQ_LAYOUT_LUT, arrays of the sizes
 * aplq_sizes_of gives, in the tile order of <aplq/cpu/lut.hpp>. aplq only reads it. */
typedef struct aplq_qmatrix {
  aplq_format format;
  const void* codes;
  const void* scales;
  const void* zeros;
  int64_t rows;
  int64_t cols;
} aplq_qmatrix;

/* Where quantize and repack write, with each buffer's capacity in bytes (checked against
 * aplq_sizes_of: too small is APLQ_E_BUFFER_TOO_SMALL). zeros may be NULL/0 for symmetric
 * formats. */
typedef struct aplq_qbuffers {
  void* codes;
  size_t codes_bytes;
  void* scales;
  size_t scales_bytes;
  void* zeros;
  size_t zeros_bytes;
} aplq_qbuffers;

/* ---- Native API: packing ----------------------------------------------------------------- */
/* Quantizes w [rows, cols] (round to nearest: per-group absmax, or min/max with zero points,
 * as aplq::rtn_quantizer) into `out`. NaN/Inf in w is APLQ_E_NON_FINITE; an f16 scale beyond
 * 65504 is APLQ_E_OUT_OF_RANGE. Works in a temporary of the packed size, copied to `out` at the
 * end, so `out` is untouched on error. */
APLQ_API int aplq_quantize(const aplq_format* format, const float* w, int64_t rows, int64_t cols,
                           const aplq_qbuffers* out);
/* out [rows, cols] = W as floats. */
APLQ_API int aplq_dequantize(const aplq_qmatrix* w, float* out);
/* Copies W into `layout` (APLQ_LAYOUT_*), same format otherwise, bit-exactly: sized by
 * aplq_sizes_of with that layout. Repack once to APLQ_LAYOUT_CPU_STRIPED for the fastest
 * multiplies on the CPU, or, for 1- and 2-bit formats, to APLQ_LAYOUT_LUT (see aplq_gemv for
 * its policies). */
APLQ_API int aplq_repack(const aplq_qmatrix* w, int layout, const aplq_qbuffers* out);

/* ---- Native API: multiplies -------------------------------------------------------------- */
/* exact: dequantize to f32 and FMA, within 1e-6 (relative) of the exact product */
#define APLQ_POLICY_EXACT 0
/* int8: activations quantized to int8 per 32 values, integer dot products (about 5e-3
 * relative activation-quantization error) */
#define APLQ_POLICY_INT8 1

/* NULL options, or a zero-initialized struct, mean: all cores, APLQ_POLICY_EXACT. */
typedef struct aplq_options {
  int threads; /* threads to use; <= 0: all hardware threads */
  int policy;  /* APLQ_POLICY_EXACT or APLQ_POLICY_INT8 */
} aplq_options;

/* y [rows] = W x [cols]. An APLQ_LAYOUT_LUT matrix multiplies by table lookup: with
 * APLQ_POLICY_INT8 its results are those of the plain kernels up to f32 summation order; with
 * APLQ_POLICY_EXACT (also what NULL options mean) its tables hold f32 sums of the activations,
 * within the same 1e-6 (from 12 rows of 2-bit or 32 rows of 1-bit activations it dequantizes
 * once per call instead, as the plain kernels do). */
APLQ_API int aplq_gemv(const aplq_qmatrix* w, const float* x, float* y,
                       const aplq_options* options);
/* Y [n, rows] = X [n, cols] W^T. */
APLQ_API int aplq_gemm(const aplq_qmatrix* w, const float* x, int64_t n, float* y,
                       const aplq_options* options);

/* ---- Seed-compatible entry points -------------------------------------------------------- */
/* All return 0 on success and a negative APLQ_E_* status on error; num_threads <= 0 means all
 * cores; output is written only on success. */

/* NULL or any path: use this library (there is no separate backend to load); 0 = ok, or
 * APLQ_E_DEVICE_UNAVAILABLE / APLQ_E_INVALID_ARGUMENT when APLQ_DEVICE cannot be honoured. */
APLQ_API int apl_ffi_init(const char* backend_path);
/* Nothing to release; 0. */
APLQ_API int apl_ffi_cleanup(void);

/* One quantized code per element, stored as a little-endian integer of elem_bytes (1, 2 or 4)
 * bytes, row-major [out_rows][in_cols]. With zero_points (per row): codes are unsigned in
 * [0, 2^bits) and w = scales[r] * (q - zero_points[r]). With zero_points == NULL: codes are
 * signed two's complement in [-2^(bits-1), 2^(bits-1)) and w = scales[r] * q. bits is 2, 4 or
 * 8 (anything else: APLQ_E_UNSUPPORTED_FORMAT; elem_bytes other than 1, 2, 4:
 * APLQ_E_INVALID_ARGUMENT). A code out of range is APLQ_E_OUT_OF_RANGE, never silent.
 * output[r] = sum_c w[r][c] * input[c].
 *
 * Cost: every call reads all out_rows * in_cols codes, checks their range and packs them into
 * a temporary of about out_rows * in_cols * bits / 8 bytes (aplq's per-row format in the
 * striped layout the CPU kernels load directly; scales and zero points are used in place). That
 * pass is single-threaded and dominates a GEMV: 4096 x 4096 4-bit int8 codes took about 35 ms
 * per call, against about 1 ms for aplq_gemv on the same weights packed once (2-core x86-64,
 * AVX-512). For repeated calls on the same weights, pack once with the native API (aplq_format
 * {bits, APLQ_GROUP_ROW, zero_points != NULL, APLQ_SCALE_F32, any layout}) and call aplq_gemv /
 * aplq_gemm. */
APLQ_API int apl_matmul_q(const void* q_data, int elem_bytes, const float* scales,
                          const float* zero_points, const float* input, float* output, int out_rows,
                          int in_cols, int bits, int num_threads);
/* Same, for batch inputs [batch][in_cols] -> outputs [batch][out_rows]. batch <= 0 is
 * APLQ_E_INVALID_SHAPE. The packing cost is paid once per call, shared by the batch. */
APLQ_API int apl_matmul_q_batch(const void* q_data, int elem_bytes, const float* scales,
                                const float* zero_points, const float* inputs, float* outputs,
                                int out_rows, int in_cols, int bits, int batch, int num_threads);
/* 1-bit packed weights: row r occupies ceil(in_cols/8) bytes, weight c is bit (c % 8) (LSB
 * first) of byte c/8; bit 1 -> +scales[r], bit 0 -> -scales[r].
 *
 * Cost: this is exactly aplq's 1-bit symmetric per-row sequential format, so when in_cols is a
 * multiple of 8 the multiply runs on `packed` in place with no conversion. Otherwise each row
 * ends in a partial byte whose unused bits may hold anything, and every call copies the
 * out_rows * ceil(in_cols/8) bytes once to clear them. The native API (aplq_format {1,
 * APLQ_GROUP_ROW, 0, APLQ_SCALE_F32, APLQ_LAYOUT_SEQUENTIAL}) takes the same bytes. */
APLQ_API int apl_matmul_1bit(const uint8_t* packed, const float* scales, const float* input,
                             float* output, int out_rows, int in_cols, int num_threads);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* APLQ_H */
