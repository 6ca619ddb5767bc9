# SPDX-License-Identifier: Apache-2.0
# The native API through Python (aplq.quantize / dequantize / repack / gemv / gemm) against a
# numpy float64 reference computed from the format definitions in aplq.h: every bit width,
# groups, zero points, f16 scales, every layout, both policies, 1 and several threads.
import itertools

import numpy as np
import pytest

import aplq

SHAPES = [(1, 1), (3, 31), (19, 130), (7, 515)]
FORMATS = [aplq.Format(b, g, z, s)
           for b, g, z, s in itertools.product([1, 2, 4, 8], [0, 32, 128], [False, True],
                                               ["f32", "f16"])]


def reference_weights(q):
    """W [rows, cols] in float64 from a sequential-layout QMatrix, straight from aplq.h."""
    f = q.format
    per_byte = 8 // f.bits
    j = np.arange(q.cols)
    u = (q.codes[:, j // per_byte] >> ((j % per_byte) * f.bits)) & ((1 << f.bits) - 1)
    g = np.zeros(q.cols, int) if f.group == 0 else j // f.group
    s = q.scales.astype(np.float64)[:, g]
    if f.zero_point:
        return s * (u - q.zeros.astype(np.float64)[:, g])
    if f.bits == 1:
        return s * (2.0 * u - 1.0)
    return s * (u - 2.0 ** (f.bits - 1))


def random_case(fmt, rows, cols):
    """Weights [rows, cols] and 3 activation rows, uniform in [-1, 1], seeded by the case."""
    rng = np.random.default_rng(rows * 1000 + cols + fmt.bits)
    return (rng.uniform(-1, 1, (rows, cols)).astype(np.float32),
            rng.uniform(-1, 1, (3, cols)).astype(np.float32))


def rel_l2(y, ref):
    ref = np.asarray(ref, np.float64)
    den = np.linalg.norm(ref)
    return np.linalg.norm(np.asarray(y, np.float64) - ref) / (den if den > 0 else 1.0)


@pytest.mark.parametrize("fmt", FORMATS, ids=repr)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_quantize_dequantize_repack_multiply(fmt, shape):
    rows, cols = shape
    w, x = random_case(fmt, rows, cols)

    q = aplq.quantize(w, fmt)
    sz = aplq.sizes(fmt, rows, cols)
    assert sz["row_bytes"] == (cols * fmt.bits + 7) // 8
    assert q.codes.shape == (rows, sz["row_bytes"])
    assert q.scales.shape == (rows, sz["groups"]) and q.scales.dtype == fmt.scale_dtype
    assert (q.zeros is not None) == fmt.zero_point

    wq = reference_weights(q)
    np.testing.assert_array_equal(aplq.dequantize(q), wq.astype(np.float32))
    assert np.max(np.abs(wq - w)) <= (2.0 if fmt.bits == 1 else 1.0)

    striped = aplq.repack(q, "cpu_striped")
    assert striped.format.layout == "cpu_striped"
    back = striped.repack("sequential")
    np.testing.assert_array_equal(back.codes, q.codes)
    np.testing.assert_array_equal(back.scales, q.scales)

    ref = x.astype(np.float64) @ wq.T  # [3, rows]
    for m, threads, policy in itertools.product([q, striped], [1, 3, 0], ["exact", "int8"]):
        tol = 1e-5 if policy == "exact" else 3e-2
        y = aplq.gemv(m, x[0], threads=threads, policy=policy)
        assert y.dtype == np.float32 and y.shape == (rows,)
        assert rel_l2(y, ref[0]) <= tol, (m.format, threads, policy)
        y = m.gemm(x, threads=threads, policy=policy)
        assert y.shape == (3, rows)
        assert rel_l2(y, ref) <= tol, (m.format, threads, policy)


LUT_FORMATS = [f for f in FORMATS if f.bits <= 2]


@pytest.mark.parametrize("fmt", LUT_FORMATS, ids=repr)
@pytest.mark.parametrize("shape", [(1, 1), (33, 130), (70, 300)], ids=str)
def test_lut_layout(fmt, shape):
    # 'lut': rows rounded up to tiles of 32, exact round trips, the plain kernels' results.
    rows, cols = shape
    w, x = random_case(fmt, rows, cols)
    q = aplq.quantize(w, fmt)
    lut = aplq.repack(q, "lut")
    tiles, groups = (rows + 31) // 32, q.scales.shape[1]
    assert lut.codes.shape == (tiles, 32 * ((cols + 31) // 32) * 4 * fmt.bits)
    assert lut.scales.shape == (tiles, groups, 32)
    padded = np.zeros((32 * tiles, groups), q.scales.dtype)
    padded[:rows] = q.scales
    np.testing.assert_array_equal(lut.scales, padded.reshape(tiles, 32, groups).transpose(0, 2, 1))
    direct = aplq.quantize(w, fmt.with_layout("lut"))
    np.testing.assert_array_equal(direct.codes, lut.codes)
    np.testing.assert_array_equal(direct.scales, lut.scales)
    if fmt.zero_point:
        np.testing.assert_array_equal(direct.zeros, lut.zeros)
    np.testing.assert_array_equal(aplq.repack(lut, "lut").codes, lut.codes)
    striped = lut.repack("cpu_striped")
    np.testing.assert_array_equal(striped.codes, q.repack("cpu_striped").codes)
    back = lut.repack("sequential")
    np.testing.assert_array_equal(back.codes, q.codes)
    np.testing.assert_array_equal(back.scales, q.scales)
    if fmt.zero_point:
        np.testing.assert_array_equal(back.zeros, q.zeros)
    np.testing.assert_array_equal(aplq.dequantize(lut), aplq.dequantize(q))
    for threads, policy in itertools.product([1, 0], ["int8", "exact"]):
        plain = q.gemm(x, threads=threads, policy=policy)
        assert rel_l2(lut.gemm(x, threads=threads, policy=policy), plain) <= 1e-5
        assert rel_l2(lut.gemv(x[0], threads=threads, policy=policy), plain[0]) <= 1e-5
    ref = x.astype(np.float64) @ reference_weights(q).T
    assert rel_l2(lut.gemm(x, policy="exact"), ref) <= 1e-5
    with pytest.raises(aplq.AplqError) as e:
        aplq.repack(aplq.quantize(w, aplq.Format(4, 32)), "lut")
    assert e.value.status == aplq.E_UNSUPPORTED_FORMAT


def test_arrays_from_elsewhere():
    # A QMatrix over codes/scales that did not come from aplq.quantize (a checkpoint, say).
    rng = np.random.default_rng(5)
    rows, cols = 6, 70
    fmt = aplq.Format(4, 32, zero_point=True)
    codes = rng.integers(0, 256, (rows, 35), dtype=np.uint8)
    scales = rng.uniform(0.01, 0.1, (rows, 3)).astype(np.float32)
    zeros = rng.uniform(0, 15, (rows, 3)).astype(np.float32)
    q = aplq.QMatrix(fmt, codes, scales, zeros, rows, cols)
    x = rng.uniform(-1, 1, cols).astype(np.float32)
    assert rel_l2(q.gemv(x), reference_weights(q) @ x) <= 1e-5
    with pytest.raises(aplq.AplqError) as e:
        aplq.QMatrix(fmt, codes[:, :-1], scales, zeros, rows, cols)
    assert e.value.status == aplq.E_INVALID_SHAPE


def test_queries():
    assert aplq.version() == "%d.%d.%d" % (aplq.version_number() // 10000,
                                           aplq.version_number() // 100 % 100,
                                           aplq.version_number() % 100)
    assert aplq.compiled_isas()
    assert set(aplq.available_isas()) <= set(aplq.compiled_isas())
    assert aplq.selected_isa() in aplq.available_isas()
    assert aplq.gpu_available() is False
    assert aplq.device() == "cpu"
    assert aplq.ffi_init() == 0 and aplq.ffi_init("/any/path") == 0 and aplq.ffi_cleanup() == 0
    assert aplq.status_string(0) == "ok"
    assert aplq.status_string(aplq.E_DEVICE_UNAVAILABLE) == "requested device unavailable"
    assert aplq.status_string(42) == "unknown status"
    assert aplq.library_path()
