# SPDX-License-Identifier: Apache-2.0
# The seed-compatible entry points (call_matmul_q, call_matmul_q_batch, call_matmul_1bit)
# against a numpy float64 reference: odd shapes, bits 2/4/8, 1/2/4-byte codes, with and without
# zero points, 1 and several threads; and 8 Python threads at once give the serial results.
import itertools
import threading

import numpy as np
import pytest

import aplq

SHAPES = [(1, 1), (3, 7), (17, 33), (5, 300), (40, 129)]
DTYPES = {1: (np.int8, np.uint8), 2: (np.int16, np.uint16), 4: (np.int32, np.uint32)}


def rel_l2(y, ref):
    den = np.linalg.norm(ref)
    return np.linalg.norm(np.asarray(y, np.float64) - ref) / (den if den > 0 else 1.0)


def seed_weights(rng, rows, cols, bits, elem_bytes, zero_point):
    signed, unsigned = DTYPES[elem_bytes]
    if zero_point:
        q = rng.integers(0, 1 << bits, (rows, cols)).astype(unsigned)
        zp = rng.uniform(0, (1 << bits) - 1, rows).astype(np.float32)
    else:
        q = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (rows, cols)).astype(signed)
        zp = None
    scales = rng.uniform(0.01, 0.2, rows).astype(np.float32)
    return q, scales, zp


def reference(q, scales, zp, x):
    w = scales.astype(np.float64)[:, None] * (
        q.astype(np.float64) - (0.0 if zp is None else zp.astype(np.float64)[:, None]))
    return x.astype(np.float64) @ w.T


@pytest.mark.parametrize("zero_point", [False, True], ids=["signed", "zero_points"])
@pytest.mark.parametrize("elem_bytes", [1, 2, 4])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_matmul_q(bits, elem_bytes, zero_point):
    rng = np.random.default_rng(bits * 100 + elem_bytes * 10 + zero_point)
    for rows, cols in SHAPES:
        q, scales, zp = seed_weights(rng, rows, cols, bits, elem_bytes, zero_point)
        x = rng.uniform(-1, 1, (5, cols)).astype(np.float32)
        ref = reference(q, scales, zp, x)
        for threads in (1, 3, 0):
            y = aplq.call_matmul_q(q, scales, zp, x[0], bits, threads)
            assert y.dtype == np.float32 and y.shape == (rows,)
            assert rel_l2(y, ref[0]) <= 1e-5, (rows, cols, threads)
            for batch in (1, 2, 5):
                y = aplq.call_matmul_q_batch(q, scales, zp, x[:batch], bits, threads)
                assert y.shape == (batch, rows)
                assert rel_l2(y, ref[:batch]) <= 1e-5, (rows, cols, threads, batch)


def test_matmul_q_codes_of_any_integer_dtype():
    # Values count, not the dtype: int64 codes, or unsigned codes without zero points.
    rng = np.random.default_rng(3)
    q = rng.integers(-8, 8, (9, 45))
    scales = rng.uniform(0.1, 0.2, 9).astype(np.float32)
    x = rng.uniform(-1, 1, 45).astype(np.float32)
    ref = reference(q, scales, None, x)
    assert rel_l2(aplq.call_matmul_q(q, scales, None, x, 4), ref) <= 1e-5
    assert rel_l2(aplq.call_matmul_q(q.astype(">i2"), scales, None, x, 4), ref) <= 1e-5
    u = rng.integers(0, 16, (9, 45))
    assert rel_l2(aplq.call_matmul_q(u.astype(np.uint16), scales, None, x, 8),
                  reference(u, scales, None, x)) <= 1e-5


@pytest.mark.parametrize("shape", SHAPES + [(9, 64), (33, 1000)], ids=str)
def test_matmul_1bit(shape):
    rows, cols = shape
    rng = np.random.default_rng(rows + cols)
    # Random bytes: the unused bits of a row's last byte hold garbage too.
    packed = rng.integers(0, 256, (rows, (cols + 7) // 8), dtype=np.uint8)
    keep = packed.copy()
    scales = rng.uniform(0.01, 0.5, rows).astype(np.float32)
    x = rng.uniform(-1, 1, cols).astype(np.float32)
    bits = np.unpackbits(packed, axis=1, bitorder="little")[:, :cols]
    ref = (np.where(bits == 1, 1.0, -1.0) * scales.astype(np.float64)[:, None]) @ x
    for threads in (1, 3, 0):
        y = aplq.call_matmul_1bit(packed, scales, x, threads)
        assert rel_l2(y, ref) <= 1e-5, threads
    np.testing.assert_array_equal(packed, keep)


def test_eight_threads_match_serial():
    rng = np.random.default_rng(8)
    rows, cols = 97, 333
    q, scales, zp = seed_weights(rng, rows, cols, 4, 1, True)
    x = rng.uniform(-1, 1, (4, cols)).astype(np.float32)
    packed = rng.integers(0, 256, (rows, (cols + 7) // 8), dtype=np.uint8)
    native = aplq.repack(aplq.quantize(rng.uniform(-1, 1, (rows, cols)), aplq.Format(2, 64)),
                         "cpu_striped")
    jobs = [
        lambda t: aplq.call_matmul_q(q, scales, zp, x[0], 4, t),
        lambda t: aplq.call_matmul_q_batch(q, scales, zp, x, 4, t),
        lambda t: aplq.call_matmul_1bit(packed, scales, x[1], t),
        lambda t: aplq.gemm(native, x, threads=t),
        lambda t: aplq.gemv(native, x[2], threads=t, policy="int8"),
    ]
    serial = [job(1) for job in jobs]
    errors = []

    def worker(k):
        try:
            for rounds in range(10):
                for job, want in zip(jobs, serial):
                    got = job(1 + (k + rounds) % 3)
                    if not np.array_equal(got, want):
                        errors.append((k, rounds))
        except Exception as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
