/* SPDX-License-Identifier: Apache-2.0 */
/* Tests of libaplq through include/aplq.h, compiled as C99: every entry point against a
 * double-precision reference written here from the definitions in aplq.h (odd shapes, every bit
 * width, with and without zero points, 1 and several threads), bad arguments (the right status,
 * the output untouched, a message in aplq_last_error), and 8 threads calling at once (the same
 * bits as serial calls).
 *
 * Usage: test_capi [--device=cpu|cuda-unavailable|invalid] [--quick] [--seed=N]
 *   --device says what APLQ_DEVICE / USE_GPU in the environment should have produced; the
 *   non-cpu modes check that every multiply refuses with the right status. --quick runs only
 *   the queries and the 1-bit seed entry point (for the environment variants). */
#include <aplq.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long rng_state;
static unsigned long long seed;
static int failures;
static int checks;

#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    ++checks;                                                                                      \
    if (!(cond)) {                                                                                 \
      ++failures;                                                                                  \
      fprintf(stderr, "%s:%d: CHECK(%s) failed (seed %llu): ", __FILE__, __LINE__, #cond, seed);   \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fprintf(stderr, "\n");                                                                       \
    }                                                                                              \
  } while (0)

static unsigned rnd(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (unsigned)((rng_state * 2685821657736338717ULL) >> 32);
}
static float uniform(float lo, float hi) {
  return lo + (hi - lo) * (float)(rnd() & 0xffffff) / (float)0x1000000;
}
static void fill(float* v, long n, float lo, float hi) {
  long i;
  for (i = 0; i < n; ++i)
    v[i] = uniform(lo, hi);
}

static void* xmalloc(size_t n) {
  void* p = malloc(n > 0 ? n : 1);
  if (p == NULL) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  return p;
}

/* Relative L2 distance of y from the reference. */
static double rel_l2(const float* y, const double* ref, long n) {
  double num = 0.0, den = 0.0;
  long i;
  for (i = 0; i < n; ++i) {
    num += ((double)y[i] - ref[i]) * ((double)y[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

static const float sentinel = 12345.0f;
static void set_sentinel(float* y, long n) {
  long i;
  for (i = 0; i < n; ++i)
    y[i] = sentinel;
}
static int untouched(const float* y, long n) {
  long i;
  for (i = 0; i < n; ++i)
    if (y[i] != sentinel)
      return 0;
  return 1;
}

static const int threads_tried[] = {1, 3, 0};

/* ---- Seed entry points --------------------------------------------------------------------- */

/* Stores v as an elem_bytes-wide little-endian integer. */
static void put_le(unsigned char* p, int elem_bytes, long v) {
  int b;
  unsigned long u = (unsigned long)v;
  for (b = 0; b < elem_bytes; ++b)
    p[b] = (unsigned char)((u >> (8 * b)) & 0xffu);
}

/* Random seed-format weights: codes [rows][cols] of elem_bytes each (and their values in q),
 * per-row scales and, when zp != NULL, per-row zero points. */
static void seed_weights(unsigned char* codes, long* q, float* scales, float* zp, int rows,
                         int cols, int bits, int elem_bytes) {
  long i, n = (long)rows * cols;
  int r;
  for (i = 0; i < n; ++i) {
    const long range = 1L << bits;
    const long u = (long)(rnd() % (unsigned)range);
    q[i] = zp != NULL ? u : u - range / 2;
    put_le(codes + i * elem_bytes, elem_bytes, q[i]);
  }
  for (r = 0; r < rows; ++r) {
    scales[r] = uniform(0.01f, 0.2f);
    if (zp != NULL)
      zp[r] = uniform(0.0f, (float)((1 << bits) - 1)); /* fractional zero points work too */
  }
}

static void seed_reference(const long* q, const float* scales, const float* zp, const float* x,
                           double* y, int rows, int cols, int batch) {
  int b, r, c;
  for (b = 0; b < batch; ++b)
    for (r = 0; r < rows; ++r) {
      double sum = 0.0;
      for (c = 0; c < cols; ++c) {
        const double w = (double)scales[r] *
                         ((double)q[(long)r * cols + c] - (zp != NULL ? (double)zp[r] : 0.0));
        sum += w * (double)x[(long)b * cols + c];
      }
      y[(long)b * rows + r] = sum;
    }
}

static void test_matmul_q(void) {
  static const int shapes[][2] = {{1, 1}, {3, 7}, {17, 33}, {5, 300}, {40, 129}};
  static const int bits_tried[] = {2, 4, 8};
  static const int elem_tried[] = {1, 2, 4};
  static const int batches[] = {1, 2, 5};
  size_t s;
  int bi, ei, z, t, k;
  for (s = 0; s < sizeof shapes / sizeof shapes[0]; ++s)
    for (bi = 0; bi < 3; ++bi)
      for (ei = 0; ei < 3; ++ei)
        for (z = 0; z < 2; ++z) {
          const int rows = shapes[s][0], cols = shapes[s][1], bits = bits_tried[bi];
          const int eb = elem_tried[ei];
          const long n = (long)rows * cols;
          unsigned char* codes = xmalloc((size_t)(n * eb));
          long* q = xmalloc(sizeof(long) * (size_t)n);
          float* scales = xmalloc(sizeof(float) * (size_t)rows);
          float* zp = z ? xmalloc(sizeof(float) * (size_t)rows) : NULL;
          float* x = xmalloc(sizeof(float) * (size_t)cols * 5);
          float* y = xmalloc(sizeof(float) * (size_t)rows * 5);
          double* ref = xmalloc(sizeof(double) * (size_t)rows * 5);
          seed_weights(codes, q, scales, zp, rows, cols, bits, eb);
          fill(x, (long)cols * 5, -1.0f, 1.0f);
          for (t = 0; t < 3; ++t) {
            int rc;
            seed_reference(q, scales, zp, x, ref, rows, cols, 1);
            set_sentinel(y, rows);
            rc = apl_matmul_q(codes, eb, scales, zp, x, y, rows, cols, bits, threads_tried[t]);
            CHECK(rc == 0, "apl_matmul_q %dx%d q%d e%d z%d t%d: %d %s", rows, cols, bits, eb, z,
                  threads_tried[t], rc, aplq_last_error());
            CHECK(rel_l2(y, ref, rows) <= 1e-5, "apl_matmul_q %dx%d q%d e%d z%d: rel-L2 %g", rows,
                  cols, bits, eb, z, rel_l2(y, ref, rows));
            for (k = 0; k < 3; ++k) {
              const int batch = batches[k];
              seed_reference(q, scales, zp, x, ref, rows, cols, batch);
              set_sentinel(y, (long)rows * batch);
              rc = apl_matmul_q_batch(codes, eb, scales, zp, x, y, rows, cols, bits, batch,
                                      threads_tried[t]);
              CHECK(rc == 0, "apl_matmul_q_batch: %d %s", rc, aplq_last_error());
              CHECK(rel_l2(y, ref, (long)rows * batch) <= 1e-5,
                    "apl_matmul_q_batch %dx%d q%d e%d z%d batch %d: rel-L2 %g", rows, cols, bits,
                    eb, z, batch, rel_l2(y, ref, (long)rows * batch));
            }
          }
          free(codes);
          free(q);
          free(scales);
          free(zp);
          free(x);
          free(y);
          free(ref);
        }
}

static void test_matmul_1bit(void) {
  static const int shapes[][2] = {{1, 1}, {3, 7}, {17, 33}, {5, 300}, {9, 64}, {33, 1000}};
  size_t s;
  int t, r, c;
  for (s = 0; s < sizeof shapes / sizeof shapes[0]; ++s) {
    const int rows = shapes[s][0], cols = shapes[s][1], rb = (cols + 7) / 8;
    unsigned char* packed = xmalloc((size_t)rows * (size_t)rb);
    float* scales = xmalloc(sizeof(float) * (size_t)rows);
    float* x = xmalloc(sizeof(float) * (size_t)cols);
    float* y = xmalloc(sizeof(float) * (size_t)rows);
    double* ref = xmalloc(sizeof(double) * (size_t)rows);
    unsigned char* copy = xmalloc((size_t)rows * (size_t)rb);
    for (c = 0; c < rows * rb; ++c)
      packed[c] = (unsigned char)rnd(); /* unused bits of a row's last byte hold garbage too */
    memcpy(copy, packed, (size_t)rows * (size_t)rb);
    fill(scales, rows, 0.01f, 0.5f);
    fill(x, cols, -1.0f, 1.0f);
    for (r = 0; r < rows; ++r) {
      double sum = 0.0;
      for (c = 0; c < cols; ++c) {
        const int bit = (packed[r * rb + c / 8] >> (c % 8)) & 1;
        sum += (bit ? (double)scales[r] : -(double)scales[r]) * (double)x[c];
      }
      ref[r] = sum;
    }
    for (t = 0; t < 3; ++t) {
      int rc;
      set_sentinel(y, rows);
      rc = apl_matmul_1bit(packed, scales, x, y, rows, cols, threads_tried[t]);
      CHECK(rc == 0, "apl_matmul_1bit: %d %s", rc, aplq_last_error());
      CHECK(rel_l2(y, ref, rows) <= 1e-5, "apl_matmul_1bit %dx%d t%d: rel-L2 %g", rows, cols,
            threads_tried[t], rel_l2(y, ref, rows));
    }
    CHECK(memcmp(copy, packed, (size_t)rows * (size_t)rb) == 0, "apl_matmul_1bit wrote its input");
    free(packed);
    free(copy);
    free(scales);
    free(x);
    free(y);
    free(ref);
  }
}

/* ---- Native API ---------------------------------------------------------------------------- */

static double half_to_double(unsigned short h) {
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (e == 0)
    return sign * ldexp((double)m, -24);
  if (e == 31)
    return m ? NAN : sign * INFINITY;
  return sign * ldexp((double)(m | 0x400), e - 25);
}

/* W[r][j] of a sequential-layout matrix, from the definitions in aplq.h. */
static double weight_of(const aplq_qmatrix* w, const aplq_sizes* sz, long r, long j) {
  const aplq_format* f = &w->format;
  const int per_byte = 8 / f->bits;
  const unsigned char* row = (const unsigned char*)w->codes + r * sz->row_bytes;
  const unsigned u = (row[j / per_byte] >> ((j % per_byte) * f->bits)) & ((1u << f->bits) - 1u);
  const long g = r * sz->groups + (f->group == APLQ_GROUP_ROW ? 0 : j / f->group);
  const double s = f->scale_type == APLQ_SCALE_F16
                       ? half_to_double(((const unsigned short*)w->scales)[g])
                       : (double)((const float*)w->scales)[g];
  if (f->zero_point) {
    const double z = f->scale_type == APLQ_SCALE_F16
                         ? half_to_double(((const unsigned short*)w->zeros)[g])
                         : (double)((const float*)w->zeros)[g];
    return s * ((double)u - z);
  }
  if (f->bits == 1)
    return s * (2.0 * u - 1.0);
  return s * ((double)u - (double)(1 << (f->bits - 1)));
}

typedef struct owned {
  aplq_qmatrix m;
  aplq_sizes sz;
  aplq_qbuffers buf;
} owned;

static int alloc_owned(owned* o, aplq_format f, long rows, long cols) {
  int rc;
  memset(o, 0, sizeof *o);
  o->m.format = f;
  o->m.rows = rows;
  o->m.cols = cols;
  rc = aplq_sizes_of(&f, rows, cols, &o->sz);
  if (rc != 0)
    return rc;
  o->buf.codes = xmalloc((size_t)o->sz.codes_bytes);
  o->buf.codes_bytes = (size_t)o->sz.codes_bytes;
  o->buf.scales = xmalloc((size_t)o->sz.scales_bytes);
  o->buf.scales_bytes = (size_t)o->sz.scales_bytes;
  o->buf.zeros = o->sz.zeros_bytes ? xmalloc((size_t)o->sz.zeros_bytes) : NULL;
  o->buf.zeros_bytes = (size_t)o->sz.zeros_bytes;
  o->m.codes = o->buf.codes;
  o->m.scales = o->buf.scales;
  o->m.zeros = o->buf.zeros;
  return 0;
}

static void free_owned(owned* o) {
  free(o->buf.codes);
  free(o->buf.scales);
  free(o->buf.zeros);
}

/* APLQ_LAYOUT_LUT for a quantized sequential matrix `seq` (deq: its dequantized values, x: n
 * activation rows): sizes, exact round trips through repack, quantize and dequantize, and
 * int8 multiplies that agree with the plain kernels'; 4 and 8 bits are refused. */
static void test_lut_layout(const char* name, const owned* seq, const float* deq, const float* x,
                            int n) {
  const long rows = seq->m.rows, cols = seq->m.cols;
  aplq_format f = seq->m.format;
  owned lut, direct, back, copy, striped, striped_ref;
  aplq_sizes sz;
  float *y, *y_plain, *deq_lut, *w;
  double* plain;
  aplq_options opt;
  int rc, t, p;
  long i;
  f.layout = APLQ_LAYOUT_LUT;
  if (f.bits > 2) {
    aplq_qbuffers none;
    memset(&none, 0, sizeof none);
    CHECK(aplq_sizes_of(&f, rows, cols, &sz) == APLQ_E_UNSUPPORTED_FORMAT,
          "%s: sizes of a %d-bit lut layout", name, f.bits);
    CHECK(aplq_repack(&seq->m, APLQ_LAYOUT_LUT, &none) == APLQ_E_UNSUPPORTED_FORMAT,
          "%s: repack of %d bits to the lut layout", name, f.bits);
    return;
  }
  y = xmalloc(sizeof(float) * (size_t)(rows * n));
  y_plain = xmalloc(sizeof(float) * (size_t)(rows * n));
  plain = xmalloc(sizeof(double) * (size_t)(rows * n));
  deq_lut = xmalloc(sizeof(float) * (size_t)(rows * cols));
  w = xmalloc(sizeof(float) * (size_t)(rows * cols));
  rc = alloc_owned(&lut, f, rows, cols);
  CHECK(rc == 0, "%s lut sizes: %d %s", name, rc, aplq_last_error());
  if (rc != 0)
    return;
  CHECK(lut.sz.row_bytes == (cols + 31) / 32 * f.bits * 4 &&
            lut.sz.codes_bytes == (rows + 31) / 32 * 32 * lut.sz.row_bytes &&
            lut.sz.scales_bytes ==
                (rows + 31) / 32 * 32 * seq->sz.groups * (f.scale_type == APLQ_SCALE_F16 ? 2 : 4) &&
            lut.sz.zeros_bytes == (f.zero_point ? lut.sz.scales_bytes : 0),
        "%s lut sizes: row_bytes %lld codes %lld scales %lld", name, (long long)lut.sz.row_bytes,
        (long long)lut.sz.codes_bytes, (long long)lut.sz.scales_bytes);
  rc = aplq_repack(&seq->m, APLQ_LAYOUT_LUT, &lut.buf);
  CHECK(rc == 0, "%s repack to lut: %d %s", name, rc, aplq_last_error());

  /* back to sequential, and dequantized from the tiles: exactly the source */
  f.layout = APLQ_LAYOUT_SEQUENTIAL;
  CHECK(alloc_owned(&back, f, rows, cols) == 0, "%s sizes", name);
  /* sequential-sized buffers are too small for the tiles (rows round up to 32): refused,
   * untouched */
  if ((rows % 32) != 0) {
    memset(back.buf.codes, 0x5a, back.buf.codes_bytes);
    rc = aplq_repack(&seq->m, APLQ_LAYOUT_LUT, &back.buf);
    CHECK(rc == APLQ_E_BUFFER_TOO_SMALL, "%s repack to lut into small buffers: %d", name, rc);
    for (i = 0; i < (long)back.buf.codes_bytes; ++i)
      if (((const unsigned char*)back.buf.codes)[i] != 0x5a) {
        CHECK(0, "%s refused repack wrote byte %ld", name, i);
        break;
      }
  }
  memset(back.buf.codes, 0xa5, back.buf.codes_bytes); /* padding bits must come out zero */
  rc = aplq_repack(&lut.m, APLQ_LAYOUT_SEQUENTIAL, &back.buf);
  CHECK(rc == 0, "%s repack from lut: %d %s", name, rc, aplq_last_error());
  CHECK(memcmp(seq->buf.codes, back.buf.codes, seq->buf.codes_bytes) == 0 &&
            memcmp(seq->buf.scales, back.buf.scales, seq->buf.scales_bytes) == 0 &&
            (!f.zero_point || memcmp(seq->buf.zeros, back.buf.zeros, seq->buf.zeros_bytes) == 0),
        "%s lut round trip differs", name);
  rc = aplq_dequantize(&lut.m, deq_lut);
  CHECK(rc == 0 && memcmp(deq, deq_lut, sizeof(float) * (size_t)(rows * cols)) == 0,
        "%s dequantize from lut differs (%d)", name, rc);

  /* lut -> lut copies; lut -> striped is seq -> striped */
  f.layout = APLQ_LAYOUT_LUT;
  CHECK(alloc_owned(&copy, f, rows, cols) == 0, "%s sizes", name);
  rc = aplq_repack(&lut.m, APLQ_LAYOUT_LUT, &copy.buf);
  CHECK(rc == 0 && memcmp(copy.buf.codes, lut.buf.codes, lut.buf.codes_bytes) == 0 &&
            memcmp(copy.buf.scales, lut.buf.scales, lut.buf.scales_bytes) == 0 &&
            (!f.zero_point || memcmp(copy.buf.zeros, lut.buf.zeros, lut.buf.zeros_bytes) == 0),
        "%s lut to lut differs (%d)", name, rc);
  f.layout = APLQ_LAYOUT_CPU_STRIPED;
  CHECK(alloc_owned(&striped, f, rows, cols) == 0 && alloc_owned(&striped_ref, f, rows, cols) == 0,
        "%s sizes", name);
  memset(striped.buf.codes, 0xa5, striped.buf.codes_bytes);
  memset(striped_ref.buf.codes, 0, striped_ref.buf.codes_bytes);
  rc = aplq_repack(&lut.m, APLQ_LAYOUT_CPU_STRIPED, &striped.buf);
  CHECK(rc == 0, "%s lut to striped: %d %s", name, rc, aplq_last_error());
  rc = aplq_repack(&seq->m, APLQ_LAYOUT_CPU_STRIPED, &striped_ref.buf);
  CHECK(rc == 0 && memcmp(striped.buf.codes, striped_ref.buf.codes, striped.buf.codes_bytes) == 0 &&
            memcmp(striped.buf.scales, striped_ref.buf.scales, striped.buf.scales_bytes) == 0,
        "%s lut to striped differs from seq to striped (%d)", name, rc);

  /* quantized straight into tiles == quantized, then repacked */
  f.layout = APLQ_LAYOUT_LUT;
  CHECK(alloc_owned(&direct, f, rows, cols) == 0, "%s sizes", name);
  memcpy(w, deq, sizeof(float) * (size_t)(rows * cols));
  rc = aplq_quantize(&f, w, rows, cols, &direct.buf);
  CHECK(rc == 0, "%s quantize to lut: %d %s", name, rc, aplq_last_error());
  f.layout = APLQ_LAYOUT_SEQUENTIAL;
  rc = aplq_quantize(&f, w, rows, cols, &back.buf);
  CHECK(rc == 0, "%s quantize: %d %s", name, rc, aplq_last_error());
  rc = aplq_repack(&back.m, APLQ_LAYOUT_LUT, &lut.buf);
  CHECK(rc == 0 && memcmp(direct.buf.codes, lut.buf.codes, lut.buf.codes_bytes) == 0 &&
            memcmp(direct.buf.scales, lut.buf.scales, lut.buf.scales_bytes) == 0 &&
            (!f.zero_point || memcmp(direct.buf.zeros, lut.buf.zeros, lut.buf.zeros_bytes) == 0),
        "%s quantize to lut differs from quantize + repack (%d)", name, rc);

  /* multiplies: the plain kernels' results within 1e-5 under the int8 policy (up to f32
   * summation order) and the exact one (also what NULL options mean) */
  for (p = 0; p < 2; ++p)
    for (t = 0; t < 3; ++t) {
      const char* policy = p == 0 ? "int8" : "exact";
      opt.threads = threads_tried[t];
      opt.policy = p == 0 ? APLQ_POLICY_INT8 : APLQ_POLICY_EXACT;
      rc = aplq_gemm(&back.m, x, n, y_plain, &opt);
      CHECK(rc == 0, "%s plain %s gemm: %d %s", name, policy, rc, aplq_last_error());
      for (i = 0; i < rows * n; ++i)
        plain[i] = (double)y_plain[i];
      set_sentinel(y, rows * n);
      rc = aplq_gemm(&lut.m, x, n, y, p == 1 && t == 0 ? NULL : &opt);
      CHECK(rc == 0 && rel_l2(y, plain, rows * n) <= 1e-5,
            "%s lut %s gemm t%d: %d, rel-L2 %g against plain", name, policy, opt.threads, rc,
            rel_l2(y, plain, rows * n));
      set_sentinel(y, rows * n);
      rc = aplq_gemv(&lut.m, x, y, &opt);
      CHECK(rc == 0 && rel_l2(y, plain, rows) <= 1e-5, "%s lut %s gemv t%d: %d, rel-L2 %g", name,
            policy, opt.threads, rc, rel_l2(y, plain, rows));
    }
  /* a policy out of range is refused, output untouched */
  opt.policy = 7;
  set_sentinel(y, rows * n);
  CHECK(aplq_gemv(&lut.m, x, y, &opt) == APLQ_E_INVALID_ARGUMENT && untouched(y, rows * n),
        "%s lut gemv with policy 7", name);
  free_owned(&lut);
  free_owned(&direct);
  free_owned(&back);
  free_owned(&copy);
  free_owned(&striped);
  free_owned(&striped_ref);
  free(y);
  free(y_plain);
  free(plain);
  free(deq_lut);
  free(w);
}

static void test_native(void) {
  static const int shapes[][2] = {{1, 1}, {3, 31}, {19, 130}, {7, 515}, {45, 100}};
  static const int bits_tried[] = {1, 2, 4, 8};
  static const int groups[] = {APLQ_GROUP_ROW, 32, 128};
  size_t s;
  int bi, gi, z, st, t, p;
  for (s = 0; s < sizeof shapes / sizeof shapes[0]; ++s)
    for (bi = 0; bi < 4; ++bi)
      for (gi = 0; gi < 3; ++gi)
        for (z = 0; z < 2; ++z)
          for (st = 0; st < 2; ++st) {
            const long rows = shapes[s][0], cols = shapes[s][1];
            const int n = 3;
            aplq_format f;
            owned seq, striped, back;
            float *w = xmalloc(sizeof(float) * (size_t)(rows * cols)), *deq;
            float* x = xmalloc(sizeof(float) * (size_t)(cols * n));
            float* y = xmalloc(sizeof(float) * (size_t)(rows * n));
            double* ref = xmalloc(sizeof(double) * (size_t)(rows * n));
            long r, j, i;
            int rc;
            char name[64];
            f.bits = bits_tried[bi];
            f.group = groups[gi];
            f.zero_point = z;
            f.scale_type = st ? APLQ_SCALE_F16 : APLQ_SCALE_F32;
            f.layout = APLQ_LAYOUT_SEQUENTIAL;
            sprintf(name, "q%d_g%d_z%d_%s %ldx%ld", f.bits, f.group, z, st ? "f16" : "f32", rows,
                    cols);
            fill(w, rows * cols, -1.0f, 1.0f);
            fill(x, cols * n, -1.0f, 1.0f);
            rc = alloc_owned(&seq, f, rows, cols);
            CHECK(rc == 0, "%s aplq_sizes_of: %d", name, rc);
            CHECK(seq.sz.row_bytes == (cols * f.bits + 7) / 8, "%s row_bytes %lld", name,
                  (long long)seq.sz.row_bytes);
            rc = aplq_quantize(&f, w, rows, cols, &seq.buf);
            CHECK(rc == 0, "%s aplq_quantize: %d %s", name, rc, aplq_last_error());

            /* dequantize == the definition */
            deq = xmalloc(sizeof(float) * (size_t)(rows * cols));
            rc = aplq_dequantize(&seq.m, deq);
            CHECK(rc == 0, "%s aplq_dequantize: %d", name, rc);
            for (i = 0, r = 0; r < rows; ++r)
              for (j = 0; j < cols; ++j, ++i)
                if ((float)weight_of(&seq.m, &seq.sz, r, j) != deq[i]) {
                  CHECK(0, "%s dequantize [%ld][%ld]: %g vs %g", name, r, j, (double)deq[i],
                        weight_of(&seq.m, &seq.sz, r, j));
                  r = rows;
                  break;
                }
            /* quantization error stays sane (weights in [-1, 1]) */
            {
              double err = 0.0;
              for (i = 0; i < rows * cols; ++i)
                err = fmax(err, fabs((double)deq[i] - (double)w[i]));
              CHECK(err <= (f.bits == 1 ? 2.0 : 1.0), "%s max quantization error %g", name, err);
            }

            /* repack to striped and back: bit-exact */
            f.layout = APLQ_LAYOUT_CPU_STRIPED;
            alloc_owned(&striped, f, rows, cols);
            f.layout = APLQ_LAYOUT_SEQUENTIAL;
            alloc_owned(&back, f, rows, cols);
            rc = aplq_repack(&seq.m, APLQ_LAYOUT_CPU_STRIPED, &striped.buf);
            CHECK(rc == 0, "%s repack to striped: %d %s", name, rc, aplq_last_error());
            rc = aplq_repack(&striped.m, APLQ_LAYOUT_SEQUENTIAL, &back.buf);
            CHECK(rc == 0, "%s repack back: %d %s", name, rc, aplq_last_error());
            CHECK(memcmp(seq.buf.codes, back.buf.codes, seq.buf.codes_bytes) == 0 &&
                      memcmp(seq.buf.scales, back.buf.scales, seq.buf.scales_bytes) == 0 &&
                      (!z || memcmp(seq.buf.zeros, back.buf.zeros, seq.buf.zeros_bytes) == 0),
                  "%s repack round trip differs", name);

            for (i = 0; i < n; ++i)
              for (r = 0; r < rows; ++r) {
                double sum = 0.0;
                for (j = 0; j < cols; ++j)
                  sum += weight_of(&seq.m, &seq.sz, r, j) * (double)x[i * cols + j];
                ref[i * rows + r] = sum;
              }
            for (t = 0; t < 3; ++t)
              for (p = 0; p < 2; ++p) {
                aplq_options opt;
                const double tol = p == APLQ_POLICY_EXACT ? 1e-5 : 3e-2;
                int layout;
                opt.threads = threads_tried[t];
                opt.policy = p;
                for (layout = 0; layout < 2; ++layout) {
                  const aplq_qmatrix* m = layout ? &striped.m : &seq.m;
                  set_sentinel(y, rows * n);
                  rc = aplq_gemv(m, x, y, &opt);
                  CHECK(rc == 0, "%s gemv: %d %s", name, rc, aplq_last_error());
                  CHECK(rel_l2(y, ref, rows) <= tol, "%s gemv layout %d policy %d: rel-L2 %g", name,
                        layout, p, rel_l2(y, ref, rows));
                  rc = aplq_gemm(m, x, n, y, &opt);
                  CHECK(rc == 0, "%s gemm: %d %s", name, rc, aplq_last_error());
                  CHECK(rel_l2(y, ref, rows * n) <= tol, "%s gemm layout %d policy %d: rel-L2 %g",
                        name, layout, p, rel_l2(y, ref, rows * n));
                }
              }
            /* NULL options: all cores, exact */
            rc = aplq_gemv(&seq.m, x, y, NULL);
            CHECK(rc == 0 && rel_l2(y, ref, rows) <= 1e-5, "%s gemv NULL options", name);

            test_lut_layout(name, &seq, deq, x, n);

            free_owned(&seq);
            free_owned(&striped);
            free_owned(&back);
            free(w);
            free(deq);
            free(x);
            free(y);
            free(ref);
          }
}

static void test_queries(void) {
  int code;
  const char* sel = aplq_selected_isa();
  CHECK(strcmp(aplq_version(), "0.1.0") >= 0 && aplq_version()[0] != '\0', "version '%s'",
        aplq_version());
  CHECK(aplq_version_number() >= 100, "version number %d", aplq_version_number());
  CHECK(aplq_compiled_isas()[0] != '\0', "no compiled ISA");
  CHECK(strstr(aplq_available_isas(), sel) != NULL, "selected %s not in available '%s'", sel,
        aplq_available_isas());
  CHECK(strstr(aplq_compiled_isas(), sel) != NULL, "selected %s not in compiled '%s'", sel,
        aplq_compiled_isas());
  CHECK(aplq_gpu_available() == 0, "no CUDA build, yet a GPU is reported");
  for (code = 0; code >= APLQ_E_BUFFER_TOO_SMALL; --code)
    CHECK(strcmp(aplq_status_string(code), "unknown status") != 0, "status %d has no text", code);
  CHECK(strcmp(aplq_status_string(1), "unknown status") == 0, "status 1");
  CHECK(strcmp(aplq_status_string(-99), "unknown status") == 0, "status -99");
  CHECK(apl_ffi_init(NULL) == 0 && apl_ffi_init("/any/path") == 0 && apl_ffi_cleanup() == 0,
        "apl_ffi_init / cleanup");
  printf("aplq %s, ISAs compiled: %s; available: %s; selected: %s\n", aplq_version(),
         aplq_compiled_isas(), aplq_available_isas(), sel);
}

/* ---- Bad arguments ------------------------------------------------------------------------- */

#define EXPECT_STATUS(call, want, y, n)                                                            \
  do {                                                                                             \
    int rc_;                                                                                       \
    set_sentinel(y, n);                                                                            \
    rc_ = (call);                                                                                  \
    CHECK(rc_ == (want), "%s returned %d (%s), expected %d", #call, rc_, aplq_status_string(rc_),  \
          want);                                                                                   \
    CHECK(untouched(y, n), "%s wrote its output", #call);                                          \
    CHECK(aplq_last_error()[0] != '\0', "%s left no last error", #call);                           \
  } while (0)

static void test_bad_arguments(void) {
  enum { rows = 5, cols = 11 };
  signed char q8[rows * cols];
  unsigned char u8[rows * cols];
  short q16[rows * cols];
  int q32[rows * cols];
  unsigned char packed[rows * 2];
  float scales[rows], zp[rows], x[cols * 2], y[rows * 2];
  aplq_format f = {4, 32, 0, APLQ_SCALE_F32, APLQ_LAYOUT_SEQUENTIAL};
  owned o;
  aplq_options opt = {1, APLQ_POLICY_EXACT};
  aplq_qmatrix bad;
  float w[rows * cols];
  int i;
  for (i = 0; i < rows * cols; ++i) {
    q8[i] = (signed char)(i % 16 - 8);
    u8[i] = (unsigned char)(i % 16);
    q16[i] = (short)(i % 4 - 2);
    q32[i] = i % 4; /* unsigned: used with zero points */
  }
  memset(packed, 0x5a, sizeof packed);
  fill(scales, rows, 0.1f, 0.2f);
  fill(zp, rows, 0.0f, 3.0f);
  fill(x, cols * 2, -1.0f, 1.0f);
  fill(w, rows * cols, -1.0f, 1.0f);

  /* a good call first, so the next ones must set the error themselves */
  CHECK(apl_matmul_q(q8, 1, scales, NULL, x, y, rows, cols, 4, 1) == 0, "good call");
  CHECK(aplq_last_error()[0] == '\0', "success leaves '%s'", aplq_last_error());

  /* apl_matmul_q */
  EXPECT_STATUS(apl_matmul_q(NULL, 1, scales, NULL, x, y, rows, cols, 4, 1), APLQ_E_NULL_POINTER, y,
                rows);
  EXPECT_STATUS(apl_matmul_q(q8, 1, NULL, NULL, x, y, rows, cols, 4, 1), APLQ_E_NULL_POINTER, y,
                rows);
  EXPECT_STATUS(apl_matmul_q(q8, 1, scales, NULL, NULL, y, rows, cols, 4, 1), APLQ_E_NULL_POINTER,
                y, rows);
  CHECK(apl_matmul_q(q8, 1, scales, NULL, x, NULL, rows, cols, 4, 1) == APLQ_E_NULL_POINTER,
        "NULL output");
  EXPECT_STATUS(apl_matmul_q(q8, 1, scales, NULL, x, y, rows, cols, 3, 1),
                APLQ_E_UNSUPPORTED_FORMAT, y, rows);
  EXPECT_STATUS(apl_matmul_q(q8, 1, scales, NULL, x, y, rows, cols, 1, 1),
                APLQ_E_UNSUPPORTED_FORMAT, y, rows);
  EXPECT_STATUS(apl_matmul_q(q8, 1, scales, NULL, x, y, rows, cols, 16, 1),
                APLQ_E_UNSUPPORTED_FORMAT, y, rows);
  EXPECT_STATUS(apl_matmul_q(q8, 3, scales, NULL, x, y, rows, cols, 4, 1), APLQ_E_INVALID_ARGUMENT,
                y, rows);
  EXPECT_STATUS(apl_matmul_q(q8, 0, scales, NULL, x, y, rows, cols, 4, 1), APLQ_E_INVALID_ARGUMENT,
                y, rows);
  EXPECT_STATUS(apl_matmul_q(q8, 1, scales, NULL, x, y, -rows, cols, 4, 1), APLQ_E_INVALID_SHAPE, y,
                rows);
  EXPECT_STATUS(apl_matmul_q(q8, 1, scales, NULL, x, y, rows, -1, 4, 1), APLQ_E_INVALID_SHAPE, y,
                rows);
  EXPECT_STATUS(apl_matmul_q(q8, 1, scales, NULL, x, y, 0, cols, 4, 1), APLQ_E_INVALID_SHAPE, y,
                rows);
  /* out of range: signed 2-bit codes are in [-2, 2); 4-bit in [-8, 8); unsigned in [0, 16) */
  EXPECT_STATUS(apl_matmul_q(q8, 1, scales, NULL, x, y, rows, cols, 2, 1), APLQ_E_OUT_OF_RANGE, y,
                rows);
  EXPECT_STATUS(apl_matmul_q(q8, 1, scales, zp, x, y, rows, cols, 4, 1), APLQ_E_OUT_OF_RANGE, y,
                rows);
  EXPECT_STATUS(apl_matmul_q(u8, 1, scales, NULL, x, y, rows, cols, 4, 1), APLQ_E_OUT_OF_RANGE, y,
                rows);
  q16[rows * cols - 1] = 2; /* the very last code, signed 2-bit */
  EXPECT_STATUS(apl_matmul_q(q16, 2, scales, NULL, x, y, rows, cols, 2, 1), APLQ_E_OUT_OF_RANGE, y,
                rows);
  q16[rows * cols - 1] = -2;
  CHECK(apl_matmul_q(q16, 2, scales, NULL, x, y, rows, cols, 2, 1) == 0, "q16 in range");
  q32[7] = 256; /* beyond 8 bits */
  EXPECT_STATUS(apl_matmul_q(q32, 4, scales, zp, x, y, rows, cols, 8, 1), APLQ_E_OUT_OF_RANGE, y,
                rows);
  q32[7] = -1; /* negative with zero points */
  EXPECT_STATUS(apl_matmul_q(q32, 4, scales, zp, x, y, rows, cols, 8, 1), APLQ_E_OUT_OF_RANGE, y,
                rows);
  q32[7] = 255;
  CHECK(apl_matmul_q(q32, 4, scales, zp, x, y, rows, cols, 8, 1) == 0, "q32 in range");

  /* apl_matmul_q_batch */
  EXPECT_STATUS(apl_matmul_q_batch(q8, 1, scales, NULL, x, y, rows, cols, 4, 0, 1),
                APLQ_E_INVALID_SHAPE, y, rows * 2);
  EXPECT_STATUS(apl_matmul_q_batch(q8, 1, scales, NULL, x, y, rows, cols, 4, -2, 1),
                APLQ_E_INVALID_SHAPE, y, rows * 2);
  EXPECT_STATUS(apl_matmul_q_batch(NULL, 1, scales, NULL, x, y, rows, cols, 4, 2, 1),
                APLQ_E_NULL_POINTER, y, rows * 2);
  EXPECT_STATUS(apl_matmul_q_batch(q8, 1, scales, NULL, NULL, y, rows, cols, 4, 2, 1),
                APLQ_E_NULL_POINTER, y, rows * 2);
  EXPECT_STATUS(apl_matmul_q_batch(q8, 3, scales, NULL, x, y, rows, cols, 4, 2, 1),
                APLQ_E_INVALID_ARGUMENT, y, rows * 2);
  EXPECT_STATUS(apl_matmul_q_batch(q8, 1, scales, NULL, x, y, rows, cols, 3, 2, 1),
                APLQ_E_UNSUPPORTED_FORMAT, y, rows * 2);
  EXPECT_STATUS(apl_matmul_q_batch(q8, 1, scales, NULL, x, y, rows, cols, 2, 2, 1),
                APLQ_E_OUT_OF_RANGE, y, rows * 2);

  /* apl_matmul_1bit */
  EXPECT_STATUS(apl_matmul_1bit(NULL, scales, x, y, rows, cols, 1), APLQ_E_NULL_POINTER, y, rows);
  EXPECT_STATUS(apl_matmul_1bit(packed, NULL, x, y, rows, cols, 1), APLQ_E_NULL_POINTER, y, rows);
  EXPECT_STATUS(apl_matmul_1bit(packed, scales, NULL, y, rows, cols, 1), APLQ_E_NULL_POINTER, y,
                rows);
  EXPECT_STATUS(apl_matmul_1bit(packed, scales, x, y, rows, 0, 1), APLQ_E_INVALID_SHAPE, y, rows);
  EXPECT_STATUS(apl_matmul_1bit(packed, scales, x, y, -1, cols, 1), APLQ_E_INVALID_SHAPE, y, rows);

  /* native API */
  CHECK(alloc_owned(&o, f, rows, cols) == 0, "alloc");
  CHECK(aplq_quantize(&f, w, rows, cols, &o.buf) == 0, "quantize");
  EXPECT_STATUS(aplq_gemv(NULL, x, y, &opt), APLQ_E_NULL_POINTER, y, rows);
  EXPECT_STATUS(aplq_gemv(&o.m, NULL, y, &opt), APLQ_E_NULL_POINTER, y, rows);
  bad = o.m;
  bad.codes = NULL;
  EXPECT_STATUS(aplq_gemv(&bad, x, y, &opt), APLQ_E_NULL_POINTER, y, rows);
  bad = o.m;
  bad.format.zero_point = 1; /* zeros NULL */
  EXPECT_STATUS(aplq_gemv(&bad, x, y, &opt), APLQ_E_NULL_POINTER, y, rows);
  bad = o.m;
  bad.format.bits = 3;
  EXPECT_STATUS(aplq_gemv(&bad, x, y, &opt), APLQ_E_UNSUPPORTED_FORMAT, y, rows);
  bad = o.m;
  bad.format.group = 48;
  EXPECT_STATUS(aplq_gemv(&bad, x, y, &opt), APLQ_E_UNSUPPORTED_FORMAT, y, rows);
  bad = o.m;
  bad.format.layout = 7;
  EXPECT_STATUS(aplq_gemv(&bad, x, y, &opt), APLQ_E_UNSUPPORTED_FORMAT, y, rows);
  bad = o.m;
  bad.format.scale_type = 2;
  EXPECT_STATUS(aplq_gemv(&bad, x, y, &opt), APLQ_E_UNSUPPORTED_FORMAT, y, rows);
  bad = o.m;
  bad.rows = -5;
  EXPECT_STATUS(aplq_gemv(&bad, x, y, &opt), APLQ_E_INVALID_SHAPE, y, rows);
  bad = o.m;
  bad.cols = 0;
  EXPECT_STATUS(aplq_gemv(&bad, x, y, &opt), APLQ_E_INVALID_SHAPE, y, rows);
  opt.policy = 2;
  EXPECT_STATUS(aplq_gemv(&o.m, x, y, &opt), APLQ_E_INVALID_ARGUMENT, y, rows);
  opt.policy = APLQ_POLICY_EXACT;
  EXPECT_STATUS(aplq_gemm(&o.m, x, 0, y, &opt), APLQ_E_INVALID_SHAPE, y, rows * 2);
  EXPECT_STATUS(aplq_gemm(&o.m, x, -1, y, &opt), APLQ_E_INVALID_SHAPE, y, rows * 2);
  EXPECT_STATUS(aplq_gemm(&o.m, NULL, 2, y, &opt), APLQ_E_NULL_POINTER, y, rows * 2);
  EXPECT_STATUS(aplq_dequantize(&o.m, NULL), APLQ_E_NULL_POINTER, y, 0);
  bad = o.m;
  bad.scales = NULL;
  EXPECT_STATUS(aplq_dequantize(&bad, y), APLQ_E_NULL_POINTER, y, rows * 2);

  /* quantize / repack outputs stay untouched too */
  {
    owned dst;
    aplq_qbuffers small;
    unsigned char before[64];
    float nan_w[rows * cols];
    aplq_sizes sz;
    aplq_format f3 = f;
    alloc_owned(&dst, f, rows, cols);
    memset(dst.buf.codes, 0xab, dst.buf.codes_bytes);
    memcpy(before, dst.buf.codes, dst.buf.codes_bytes < 64 ? dst.buf.codes_bytes : 64);
    memcpy(nan_w, w, sizeof nan_w);
    nan_w[rows * cols - 1] = NAN;
    CHECK(aplq_quantize(&f, nan_w, rows, cols, &dst.buf) == APLQ_E_NON_FINITE, "NaN weights");
    nan_w[rows * cols - 1] = INFINITY;
    CHECK(aplq_quantize(&f, nan_w, rows, cols, &dst.buf) == APLQ_E_NON_FINITE, "Inf weights");
    CHECK(aplq_quantize(&f, NULL, rows, cols, &dst.buf) == APLQ_E_NULL_POINTER, "NULL w");
    CHECK(aplq_quantize(NULL, w, rows, cols, &dst.buf) == APLQ_E_NULL_POINTER, "NULL format");
    CHECK(aplq_quantize(&f, w, rows, cols, NULL) == APLQ_E_NULL_POINTER, "NULL out");
    CHECK(aplq_quantize(&f, w, -rows, cols, &dst.buf) == APLQ_E_INVALID_SHAPE, "negative rows");
    f3.bits = 3;
    CHECK(aplq_quantize(&f3, w, rows, cols, &dst.buf) == APLQ_E_UNSUPPORTED_FORMAT, "bits 3");
    small = dst.buf;
    small.codes_bytes -= 1;
    CHECK(aplq_quantize(&f, w, rows, cols, &small) == APLQ_E_BUFFER_TOO_SMALL, "small codes");
    small = dst.buf;
    small.scales_bytes = 0;
    CHECK(aplq_quantize(&f, w, rows, cols, &small) == APLQ_E_BUFFER_TOO_SMALL, "small scales");
    small = dst.buf;
    small.scales = NULL;
    CHECK(aplq_quantize(&f, w, rows, cols, &small) == APLQ_E_NULL_POINTER, "NULL scales");
    small = dst.buf;
    small.codes_bytes = 1;
    CHECK(aplq_repack(&o.m, APLQ_LAYOUT_CPU_STRIPED, &small) == APLQ_E_BUFFER_TOO_SMALL,
          "small repack");
    CHECK(aplq_repack(&o.m, 5, &dst.buf) == APLQ_E_UNSUPPORTED_FORMAT, "repack layout 5");
    CHECK(memcmp(before, dst.buf.codes, dst.buf.codes_bytes < 64 ? dst.buf.codes_bytes : 64) == 0,
          "failed quantize/repack wrote codes");
    CHECK(aplq_sizes_of(&f, 0, cols, &sz) == APLQ_E_INVALID_SHAPE, "sizes rows 0");
    CHECK(aplq_sizes_of(&f, rows, cols, NULL) == APLQ_E_NULL_POINTER, "sizes NULL");
    CHECK(aplq_sizes_of(&f, (int64_t)1 << 62, (int64_t)1 << 40, &sz) == APLQ_E_INVALID_SHAPE,
          "sizes overflow");
    free_owned(&dst);
  }
  free_owned(&o);
}

/* ---- Concurrency --------------------------------------------------------------------------- */

enum { mt_rows = 97, mt_cols = 333, mt_threads = 8, mt_rounds = 20 };

typedef struct mt_case {
  const signed char* q;
  const float* scales;
  const float* x;
  const owned* native;
  const float* want_seed; /* [mt_rows] */
  const float* want_gemm; /* [3][mt_rows] */
  int mismatches;
} mt_case;

static void* mt_worker(void* arg) {
  mt_case* c = (mt_case*)arg;
  float y[3 * mt_rows];
  aplq_options opt = {2, APLQ_POLICY_EXACT};
  int round;
  for (round = 0; round < mt_rounds; ++round) {
    if (apl_matmul_q(c->q, 1, c->scales, NULL, c->x, y, mt_rows, mt_cols, 4, 2) != 0 ||
        memcmp(y, c->want_seed, sizeof(float) * mt_rows) != 0)
      ++c->mismatches;
    if (aplq_gemm(&c->native->m, c->x, 3, y, &opt) != 0 ||
        memcmp(y, c->want_gemm, sizeof(float) * 3 * mt_rows) != 0)
      ++c->mismatches;
  }
  return NULL;
}

static void test_threads(void) {
  static signed char q[mt_rows * mt_cols];
  static float scales[mt_rows], x[3 * mt_cols], w[mt_rows * mt_cols];
  static float want_seed[mt_rows], want_gemm[3 * mt_rows];
  aplq_format f = {4, 64, 1, APLQ_SCALE_F16, APLQ_LAYOUT_CPU_STRIPED};
  aplq_options serial = {1, APLQ_POLICY_EXACT};
  owned native;
  pthread_t th[mt_threads];
  mt_case cases[mt_threads];
  int i;
  for (i = 0; i < mt_rows * mt_cols; ++i)
    q[i] = (signed char)((int)(rnd() % 16) - 8);
  fill(scales, mt_rows, 0.01f, 0.1f);
  fill(x, 3 * mt_cols, -1.0f, 1.0f);
  fill(w, mt_rows * mt_cols, -1.0f, 1.0f);
  alloc_owned(&native, f, mt_rows, mt_cols);
  CHECK(aplq_quantize(&f, w, mt_rows, mt_cols, &native.buf) == 0, "quantize");
  CHECK(apl_matmul_q(q, 1, scales, NULL, x, want_seed, mt_rows, mt_cols, 4, 1) == 0, "serial");
  CHECK(aplq_gemm(&native.m, x, 3, want_gemm, &serial) == 0, "serial gemm");
  for (i = 0; i < mt_threads; ++i) {
    mt_case c = {q, scales, x, NULL, want_seed, want_gemm, 0};
    c.native = &native;
    cases[i] = c;
    CHECK(pthread_create(&th[i], NULL, mt_worker, &cases[i]) == 0, "pthread_create");
  }
  for (i = 0; i < mt_threads; ++i) {
    pthread_join(th[i], NULL);
    CHECK(cases[i].mismatches == 0, "thread %d: %d results differ from the serial ones", i,
          cases[i].mismatches);
  }
  free_owned(&native);
}

/* ---- Device selection ---------------------------------------------------------------------- */

/* APLQ_DEVICE asks for what this build cannot do: every multiply refuses, packing still works. */
static void test_device_refused(int want) {
  signed char q[6] = {0, 1, -1, 0, 1, -1};
  unsigned char packed[2] = {1, 2};
  float scales[2] = {1.0f, 1.0f}, x[3] = {1.0f, 2.0f, 3.0f}, y[2], w[6] = {0};
  aplq_format f = {8, APLQ_GROUP_ROW, 0, APLQ_SCALE_F32, APLQ_LAYOUT_SEQUENTIAL};
  owned o;
  CHECK(aplq_device() == want, "aplq_device %d", aplq_device());
  CHECK(strstr(aplq_last_error(), "APLQ_DEVICE") != NULL, "message '%s'", aplq_last_error());
  CHECK(apl_ffi_init(NULL) == want, "apl_ffi_init");
  EXPECT_STATUS(apl_matmul_q(q, 1, scales, NULL, x, y, 2, 3, 4, 1), want, y, 2);
  EXPECT_STATUS(apl_matmul_q_batch(q, 1, scales, NULL, x, y, 2, 3, 4, 1, 1), want, y, 2);
  EXPECT_STATUS(apl_matmul_1bit(packed, scales, x, y, 2, 3, 1), want, y, 2);
  alloc_owned(&o, f, 2, 3);
  CHECK(aplq_quantize(&f, w, 2, 3, &o.buf) == 0, "quantize still works");
  EXPECT_STATUS(aplq_gemv(&o.m, x, y, NULL), want, y, 2);
  EXPECT_STATUS(aplq_gemm(&o.m, x, 1, y, NULL), want, y, 2);
  free_owned(&o);
}

int main(int argc, char** argv) {
  const char* device = "cpu";
  int quick = 0, i;
  seed = 20240611ULL;
  for (i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--device=", 9) == 0)
      device = argv[i] + 9;
    else if (strncmp(argv[i], "--seed=", 7) == 0)
      seed = strtoull(argv[i] + 7, NULL, 10);
    else if (strcmp(argv[i], "--quick") == 0)
      quick = 1;
    else {
      fprintf(stderr,
              "usage: %s [--device=cpu|cuda-unavailable|invalid] [--quick] "
              "[--seed=N]\n",
              argv[0]);
      return 2;
    }
  }
  rng_state = seed * 2 + 1;
  if (strcmp(device, "cuda-unavailable") == 0) {
    test_device_refused(APLQ_E_DEVICE_UNAVAILABLE);
  } else if (strcmp(device, "invalid") == 0) {
    test_device_refused(APLQ_E_INVALID_ARGUMENT);
  } else {
    CHECK(aplq_device() == APLQ_DEVICE_CPU, "aplq_device %d: %s", aplq_device(), aplq_last_error());
    test_queries();
    test_matmul_1bit();
    if (!quick) {
      test_matmul_q();
      test_native();
      test_bad_arguments();
      test_threads();
    }
  }
  printf("%d checks, %d failed (seed %llu)\n", checks, failures, seed);
  return failures == 0 ? 0 : 1;
}
