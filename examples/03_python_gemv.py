#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Example 03: aplq from Python (ctypes + numpy, no build step of its own).

Quantizes a float matrix to 4 bits with zero points, repacks it once for the CPU kernels, runs
GEMV and a batched GEMM, and checks both against numpy in float64; then the seed-compatible
call_matmul_q. Run from the source tree after `meson compile -C build`:

    PYTHONPATH=python python3 examples/03_python_gemv.py

(APLQ_LIBRARY=/path/to/libaplq.so picks a library; otherwise the build directory is used.)
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import aplq  # noqa: E402


def rel_l2(y, ref):
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


def main():
    rng = np.random.default_rng(42)
    rows, cols = 256, 1000
    w = rng.standard_normal((rows, cols)).astype(np.float32)  # [rows, cols]
    x = rng.standard_normal((4, cols)).astype(np.float32)     # [4, cols]

    fmt = aplq.Format(bits=4, group=128, zero_point=True)
    q = aplq.quantize(w, fmt).repack("cpu_striped")  # pack once
    wq = aplq.dequantize(q).astype(np.float64)       # what the kernels multiply by

    y = aplq.gemv(q, x[0])                 # [rows], all cores
    Y = aplq.gemm(q, x, threads=2)         # [4, rows]
    err_v = rel_l2(y, wq @ x[0])
    err_m = rel_l2(Y, x.astype(np.float64) @ wq.T)
    quant = rel_l2(wq, w)
    print(f"aplq {aplq.version()} on {aplq.selected_isa()} ({aplq.library_path()})")
    print(f"q4_g128 with zero points: kernel error gemv {err_v:.1e}, gemm {err_m:.1e}; "
          f"quantization error {quant:.3f}")

    codes = rng.integers(-8, 8, (rows, cols), dtype=np.int8)  # signed 4-bit codes
    scales = rng.uniform(0.01, 0.1, rows).astype(np.float32)
    y_seed = aplq.call_matmul_q(codes, scales, None, x[0], bits=4)
    err_s = rel_l2(y_seed, (scales[:, None] * codes.astype(np.float64)) @ x[0])
    print(f"call_matmul_q (seed API): error {err_s:.1e}")

    try:
        aplq.call_matmul_q(codes, scales, None, x[0], bits=2)  # codes do not fit 2 bits
    except aplq.AplqError as e:
        print(f"expected error: {e}")
    return 0 if max(err_v, err_m, err_s) <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
