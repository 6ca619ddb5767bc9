# SPDX-License-Identifier: Apache-2.0
# Bad arguments: the right status in AplqError, the library's message, and the output buffer
# untouched. The raw C functions are called through ctypes too (null pointers, negative sizes,
# batch 0), the way an APL or C caller would. APLQ_DEVICE / USE_GPU run in subprocesses, since
# libaplq reads them once per process.
import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

import aplq

F = ctypes.POINTER(ctypes.c_float)


def fp(a):
    return None if a is None else a.ctypes.data_as(F)


@pytest.fixture
def seed_args():
    rng = np.random.default_rng(1)
    rows, cols = 5, 11
    q = rng.integers(-8, 8, (rows, cols)).astype(np.int8)
    scales = rng.uniform(0.1, 0.2, rows).astype(np.float32)
    x = rng.uniform(-1, 1, (2, cols)).astype(np.float32)
    return q, scales, x, rows, cols


def raises(status, fn, *args, **kwargs):
    with pytest.raises(aplq.AplqError) as e:
        fn(*args, **kwargs)
    assert e.value.status == status, str(e.value)
    assert aplq.status_string(status) in str(e.value)
    return e.value


def test_python_wrappers_raise(seed_args):
    q, scales, x, rows, cols = seed_args
    e = raises(aplq.E_UNSUPPORTED_FORMAT, aplq.call_matmul_q, q, scales, None, x[0], 3)
    assert "bits = 3" in e.message
    raises(aplq.E_OUT_OF_RANGE, aplq.call_matmul_q, q, scales, None, x[0], 2)
    raises(aplq.E_OUT_OF_RANGE, aplq.call_matmul_q, q, scales, np.zeros(rows), x[0], 4)
    raises(aplq.E_OUT_OF_RANGE, aplq.call_matmul_q, q.astype(np.int32) + 1000, scales,
           np.zeros(rows), x[0], 8)
    raises(aplq.E_INVALID_SHAPE, aplq.call_matmul_q, q, scales, None, x[0][:-1], 4)
    raises(aplq.E_INVALID_SHAPE, aplq.call_matmul_q, q, scales[:-1], None, x[0], 4)
    raises(aplq.E_INVALID_SHAPE, aplq.call_matmul_q_batch, q, scales, None, x[:0], 4)
    raises(aplq.E_INVALID_ARGUMENT, aplq.call_matmul_q, q.astype(np.float32), scales, None, x[0],
           4)
    raises(aplq.E_INVALID_SHAPE, aplq.call_matmul_1bit, np.zeros((rows, 1), np.uint8), scales,
           x[0])
    w = np.ones((rows, cols), np.float32)
    raises(aplq.E_UNSUPPORTED_FORMAT, aplq.quantize, w, aplq.Format(3, 32))
    raises(aplq.E_UNSUPPORTED_FORMAT, aplq.quantize, w, aplq.Format(4, 48))
    raises(aplq.E_UNSUPPORTED_FORMAT, aplq.Format, 4, 32, scale="bf16")
    w[2, 3] = np.nan
    raises(aplq.E_NON_FINITE, aplq.quantize, w, aplq.Format(4, 32))
    m = aplq.quantize(np.ones((rows, cols)), aplq.Format(4, 32))
    raises(aplq.E_INVALID_SHAPE, aplq.gemv, m, x[0][:-1])
    raises(aplq.E_INVALID_ARGUMENT, aplq.gemv, m, x[0], policy="fast")
    raises(aplq.E_INVALID_SHAPE, aplq.gemm, m, x[:0])
    assert aplq.last_error() != ""
    aplq.gemv(m, x[0])
    assert aplq.last_error() == ""


def test_raw_c_calls_leave_output_untouched(seed_args):
    q, scales, x, rows, cols = seed_args
    lib = aplq._c()
    y = np.full(2 * rows, 12345.0, np.float32)
    packed = np.zeros((rows, 2), np.uint8)
    good = dict(q=q.ctypes.data, eb=1, s=fp(scales), x=fp(x), y=fp(y), r=rows, c=cols, bits=4)

    def matmul_q(**kw):
        a = dict(good, **kw)
        return lib.apl_matmul_q(a["q"], a["eb"], a["s"], None, a["x"], a["y"], a["r"], a["c"],
                                a["bits"], 1)

    def batch(n=2, **kw):
        a = dict(good, **kw)
        return lib.apl_matmul_q_batch(a["q"], a["eb"], a["s"], None, a["x"], a["y"], a["r"],
                                      a["c"], a["bits"], n, 1)

    def one_bit(p=packed.ctypes.data, **kw):
        a = dict(good, **kw)
        return lib.apl_matmul_1bit(p, a["s"], a["x"], a["y"], a["r"], a["c"], 1)

    cases = [
        ("apl_matmul_q", aplq.E_NULL_POINTER, lambda: matmul_q(q=None)),
        ("apl_matmul_q", aplq.E_NULL_POINTER, lambda: matmul_q(s=None)),
        ("apl_matmul_q", aplq.E_NULL_POINTER, lambda: matmul_q(x=None)),
        ("apl_matmul_q", aplq.E_UNSUPPORTED_FORMAT, lambda: matmul_q(bits=3)),
        ("apl_matmul_q", aplq.E_INVALID_ARGUMENT, lambda: matmul_q(eb=3)),
        ("apl_matmul_q", aplq.E_INVALID_SHAPE, lambda: matmul_q(r=-rows)),
        ("apl_matmul_q", aplq.E_INVALID_SHAPE, lambda: matmul_q(c=-cols)),
        ("apl_matmul_q", aplq.E_OUT_OF_RANGE, lambda: matmul_q(bits=2)),
        ("apl_matmul_q_batch", aplq.E_INVALID_SHAPE, lambda: batch(n=0)),
        ("apl_matmul_q_batch", aplq.E_INVALID_SHAPE, lambda: batch(n=-1)),
        ("apl_matmul_q_batch", aplq.E_NULL_POINTER, lambda: batch(q=None)),
        ("apl_matmul_q_batch", aplq.E_INVALID_ARGUMENT, lambda: batch(eb=3)),
        ("apl_matmul_q_batch", aplq.E_UNSUPPORTED_FORMAT, lambda: batch(bits=3)),
        ("apl_matmul_q_batch", aplq.E_OUT_OF_RANGE, lambda: batch(bits=2)),
        ("apl_matmul_1bit", aplq.E_NULL_POINTER, lambda: one_bit(p=None)),
        ("apl_matmul_1bit", aplq.E_NULL_POINTER, lambda: one_bit(x=None)),
        ("apl_matmul_1bit", aplq.E_INVALID_SHAPE, lambda: one_bit(c=0)),
        ("apl_matmul_1bit", aplq.E_INVALID_SHAPE, lambda: one_bit(r=-3)),
    ]
    assert matmul_q() == 0 and batch() == 0 and one_bit() == 0
    for name, want, call in cases:
        y[:] = 12345.0
        rc = call()
        assert rc == want, (name, rc, aplq.last_error())
        assert aplq.last_error().startswith(name + ":"), aplq.last_error()
        assert np.all(y == 12345.0), (name, aplq.last_error())
    assert matmul_q(y=None) == aplq.E_NULL_POINTER


def run_with_env(code, **env):
    full = dict(os.environ, **env)
    full.setdefault("APLQ_LIBRARY", aplq.library_path())
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python")
    full["PYTHONPATH"] = path + os.pathsep + full.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True,
                          timeout=60)


DEVICE_PROBE = """
import numpy as np, aplq
q = np.zeros((2, 3), np.int8); s = np.ones(2, np.float32); x = np.ones(3, np.float32)
try:
    aplq.call_matmul_q(q, s, None, x, 4)
    print("ran", aplq.device())
except aplq.AplqError as e:
    print("refused", e.status, e.message)
"""


def test_device_environment():
    r = run_with_env(DEVICE_PROBE, APLQ_DEVICE="cuda")
    assert r.stdout.startswith(f"refused {aplq.E_DEVICE_UNAVAILABLE} "), r
    assert "APLQ_DEVICE=cuda" in r.stdout, r
    r = run_with_env(DEVICE_PROBE, APLQ_DEVICE="cuda", USE_GPU="false")
    assert r.stdout.strip() == "ran cpu", r
    r = run_with_env(DEVICE_PROBE, APLQ_DEVICE="auto")
    assert r.stdout.strip() == "ran cpu", r
    r = run_with_env(DEVICE_PROBE, APLQ_DEVICE="tpu")
    assert r.stdout.startswith(f"refused {aplq.E_INVALID_ARGUMENT} "), r
