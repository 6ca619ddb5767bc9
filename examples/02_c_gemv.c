/* SPDX-License-Identifier: Apache-2.0 */
/* Example 02: libaplq from C. Quantize a float matrix to 4 bits (groups of 128 weights share a
 * scale) with the native API, repack it once into the CPU kernels' layout, multiply it by a
 * vector with aplq_gemv, and check the result against a double loop over the dequantized
 * weights. Then the seed-compatible apl_matmul_q on int8 codes, checked the same way.
 * Build: cc -std=c99 02_c_gemv.c $(pkg-config --cflags --libs aplq-c) -lm */
#include <aplq.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define ROWS 256
#define COLS 1000

static double rel_l2(const float* y, const double* ref, int n) {
  double num = 0.0, den = 0.0;
  int i;
  for (i = 0; i < n; ++i) {
    num += (y[i] - ref[i]) * (y[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return sqrt(num / den);
}

static int fail(const char* what, int status) {
  fprintf(stderr, "%s: %s (%s)\n", what, aplq_status_string(status), aplq_last_error());
  return 1;
}

int main(void) {
  static float w[ROWS * COLS], wq[ROWS * COLS], x[COLS], y[ROWS];
  static signed char q[ROWS * COLS];
  static float row_scales[ROWS];
  static double ref[ROWS];
  aplq_format seq = {4, 128, 0, APLQ_SCALE_F32, APLQ_LAYOUT_SEQUENTIAL};
  aplq_format striped = {4, 128, 0, APLQ_SCALE_F32, APLQ_LAYOUT_CPU_STRIPED};
  aplq_sizes s_seq, s_str;
  aplq_qbuffers b_seq, b_str;
  aplq_qmatrix m_seq, m_str;
  aplq_options opt = {0, APLQ_POLICY_EXACT}; /* all cores, exact */
  int i, r, c, rc;
  double err;

  srand(42);
  for (i = 0; i < ROWS * COLS; ++i)
    w[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
  for (i = 0; i < COLS; ++i)
    x[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;

  /* Quantize once: W [256, 1000] floats -> codes [256][500] bytes + scales [256][8]. */
  if ((rc = aplq_sizes_of(&seq, ROWS, COLS, &s_seq)) != APLQ_OK ||
      (rc = aplq_sizes_of(&striped, ROWS, COLS, &s_str)) != APLQ_OK)
    return fail("aplq_sizes_of", rc);
  b_seq.codes = malloc((size_t)s_seq.codes_bytes);
  b_seq.codes_bytes = (size_t)s_seq.codes_bytes;
  b_seq.scales = malloc((size_t)s_seq.scales_bytes);
  b_seq.scales_bytes = (size_t)s_seq.scales_bytes;
  b_seq.zeros = NULL;
  b_seq.zeros_bytes = 0;
  b_str = b_seq;
  b_str.codes = malloc((size_t)s_str.codes_bytes);
  b_str.codes_bytes = (size_t)s_str.codes_bytes;
  b_str.scales = malloc((size_t)s_str.scales_bytes);
  b_str.scales_bytes = (size_t)s_str.scales_bytes;
  if (!b_seq.codes || !b_seq.scales || !b_str.codes || !b_str.scales)
    return fail("malloc", APLQ_E_OUT_OF_MEMORY);
  if ((rc = aplq_quantize(&seq, w, ROWS, COLS, &b_seq)) != APLQ_OK)
    return fail("aplq_quantize", rc);
  m_seq.format = seq;
  m_seq.codes = b_seq.codes;
  m_seq.scales = b_seq.scales;
  m_seq.zeros = NULL;
  m_seq.rows = ROWS;
  m_seq.cols = COLS;
  /* Repack once into the layout the CPU kernels load directly. */
  if ((rc = aplq_repack(&m_seq, APLQ_LAYOUT_CPU_STRIPED, &b_str)) != APLQ_OK)
    return fail("aplq_repack", rc);
  m_str = m_seq;
  m_str.format = striped;
  m_str.codes = b_str.codes;
  m_str.scales = b_str.scales;

  /* y = W x, as often as needed, on the best ISA of this CPU. */
  if ((rc = aplq_gemv(&m_str, x, y, &opt)) != APLQ_OK)
    return fail("aplq_gemv", rc);

  /* Check: a double loop over the dequantized weights. */
  if ((rc = aplq_dequantize(&m_seq, wq)) != APLQ_OK)
    return fail("aplq_dequantize", rc);
  for (r = 0; r < ROWS; ++r) {
    ref[r] = 0.0;
    for (c = 0; c < COLS; ++c)
      ref[r] += (double)wq[r * COLS + c] * x[c];
  }
  err = rel_l2(y, ref, ROWS);
  printf("aplq %s on %s: aplq_gemv q4_g128 %dx%d, relative error %.2e\n", aplq_version(),
         aplq_selected_isa(), ROWS, COLS, err);
  if (!(err <= 1e-6))
    return 1;

  /* The seed entry point: signed 8-bit codes, one scale per row (packed on every call). */
  for (r = 0; r < ROWS; ++r) {
    row_scales[r] = 1.0f / 127.0f;
    for (c = 0; c < COLS; ++c)
      q[r * COLS + c] = (signed char)(rand() % 256 - 128);
  }
  if ((rc = apl_matmul_q(q, 1, row_scales, NULL, x, y, ROWS, COLS, 8, 0)) != 0)
    return fail("apl_matmul_q", rc);
  for (r = 0; r < ROWS; ++r) {
    ref[r] = 0.0;
    for (c = 0; c < COLS; ++c)
      ref[r] += (double)row_scales[r] * q[r * COLS + c] * x[c];
  }
  err = rel_l2(y, ref, ROWS);
  printf("apl_matmul_q int8 %dx%d, relative error %.2e\n", ROWS, COLS, err);

  free(b_seq.codes);
  free(b_seq.scales);
  free(b_str.codes);
  free(b_str.scales);
  return err <= 1e-6 ? 0 : 1;
}
