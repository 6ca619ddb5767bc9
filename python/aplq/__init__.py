# SPDX-License-Identifier: Apache-2.0
"""aplq for Python: quantized matrix multiplies through libaplq's C ABI (include/aplq.h).

numpy in, numpy out; every error raises AplqError with the C status code, its text and the
library's message. Nothing is computed in Python: each call checks shapes and dtypes, then makes
one ctypes call (which releases the GIL, so several Python threads can multiply at once).

Native API (pack once, multiply often)::

    fmt = aplq.Format(bits=4, group=128)               # symmetric, f32 scales, sequential
    q = aplq.quantize(w, fmt)                          # w: float [rows, cols] -> QMatrix
    q = aplq.repack(q, "cpu_striped")                  # optional: the CPU kernels' layout
    # (1 and 2 bits: aplq.repack(q, "lut") for the table-lookup kernels, either policy)
    y = aplq.gemv(q, x)                                # [rows] = W x
    Y = aplq.gemm(q, X, threads=0, policy="int8")      # [n, rows] = X W^T

Seed entry points (convert on every call, see aplq.h)::

    y = aplq.call_matmul_q(codes, scales, zero_points, x, bits=4)
    Y = aplq.call_matmul_q_batch(codes, scales, zero_points, X, bits=4)
    y = aplq.call_matmul_1bit(packed, scales, x)

libaplq is found through APLQ_LIBRARY, a build directory of this source tree, or the system
(see aplq._capi); it is loaded at the first call.
"""
import ctypes

import numpy as np

from . import _capi

__all__ = [
    "AplqError", "Format", "QMatrix", "status_string", "last_error", "version", "version_number",
    "compiled_isas", "available_isas", "selected_isa", "gpu_available", "device",
    "library_path", "sizes", "quantize", "dequantize", "repack", "gemv", "gemm", "ffi_init",
    "ffi_cleanup", "call_matmul_q", "call_matmul_q_batch", "call_matmul_1bit",
]

# Status codes (aplq.h).
OK = 0
E_NULL_POINTER = -1
E_INVALID_SHAPE = -2
E_UNSUPPORTED_FORMAT = -3
E_NON_FINITE = -4
E_OUT_OF_RANGE = -5
E_INVALID_ARGUMENT = -6
E_OUT_OF_MEMORY = -7
E_UNSUPPORTED_ARCH = -8
E_DEVICE_ERROR = -9
E_INTERNAL = -10
E_DEVICE_UNAVAILABLE = -11
E_BUFFER_TOO_SMALL = -12

GROUP_ROW = 0
_SCALES = {"f32": (0, np.float32), "f16": (1, np.float16)}
_LAYOUTS = {"sequential": 0, "cpu_striped": 1, "lut": 2}
_POLICIES = {"exact": 0, "int8": 1}

_lib = None


def _c():
    global _lib
    if _lib is None:
        _lib = _capi.load()
    return _lib


class AplqError(Exception):
    """A libaplq call failed: `status` is the negative status code, `message` what went wrong."""

    def __init__(self, status, message=None):
        self.status = status
        self.message = message or status_string(status)
        super().__init__(f"{self.message} (status {status}: {status_string(status)})")


def _check(rc):
    if rc != OK:
        raise AplqError(rc, last_error() or None)
    return rc


def _fail(status, message):
    raise AplqError(status, message)


def status_string(status):
    """The text of a status code."""
    return _c().aplq_status_string(int(status)).decode()


def last_error():
    """The message of this thread's most recent failed call ("" after a success)."""
    return _c().aplq_last_error().decode()


def version():
    return _c().aplq_version().decode()


def version_number():
    return _c().aplq_version_number()


def compiled_isas():
    """Instruction sets compiled into libaplq, e.g. ['sse2', 'sse4_2', 'avx2', 'avx512bw']."""
    return _c().aplq_compiled_isas().decode().split()


def available_isas():
    """The compiled instruction sets this CPU runs."""
    return _c().aplq_available_isas().decode().split()


def selected_isa():
    """The instruction set multiplies use (APLQ_ISA=<name> caps it)."""
    return _c().aplq_selected_isa().decode()


def gpu_available():
    """True when libaplq was built with CUDA and a GPU is present (never, in this version)."""
    return bool(_c().aplq_gpu_available())


def device():
    """'cpu' or 'cuda' after APLQ_DEVICE and USE_GPU; AplqError if they ask for the impossible."""
    rc = _c().aplq_device()
    if rc < 0:
        _check(rc)
    return "cuda" if rc == 1 else "cpu"


def library_path():
    """The libaplq file in use."""
    return _c().path


# ---- Native API ------------------------------------------------------------------------------


class Format:
    """A quantization format: bits 1/2/4/8; group 32/64/128/256 or 0 (GROUP_ROW: whole row);
    zero_point; scale 'f32' or 'f16'; layout 'sequential', 'cpu_striped' or (1 and 2 bits: the
    table-lookup kernels, either policy) 'lut'."""

    def __init__(self, bits=4, group=128, zero_point=False, scale="f32", layout="sequential"):
        if scale not in _SCALES:
            _fail(E_UNSUPPORTED_FORMAT, f"scale = {scale!r}: expected 'f32' or 'f16'")
        if layout not in _LAYOUTS:
            _fail(E_UNSUPPORTED_FORMAT, f"layout = {layout!r}: expected one of {list(_LAYOUTS)}")
        self.bits, self.group, self.zero_point = int(bits), int(group), bool(zero_point)
        self.scale, self.layout = scale, layout

    def with_layout(self, layout):
        return Format(self.bits, self.group, self.zero_point, self.scale, layout)

    @property
    def scale_dtype(self):
        return np.dtype(_SCALES[self.scale][1])

    def _struct(self):
        return _capi.Format(self.bits, self.group, int(self.zero_point), _SCALES[self.scale][0],
                            _LAYOUTS[self.layout])

    def __eq__(self, other):
        return isinstance(other, Format) and vars(self) == vars(other)

    def __repr__(self):
        return (f"Format(bits={self.bits}, group={self.group}, zero_point={self.zero_point}, "
                f"scale={self.scale!r}, layout={self.layout!r})")


def sizes(fmt, rows, cols):
    """Byte sizes of a [rows, cols] matrix: row_bytes, groups, codes_bytes, scales_bytes,
    zeros_bytes."""
    s = _capi.Sizes()
    _check(_c().aplq_sizes_of(ctypes.byref(fmt._struct()), int(rows), int(cols), ctypes.byref(s)))
    return {name: getattr(s, name) for name, _ in _capi.Sizes._fields_}


def _array_shapes(fmt, sz):
    """Shapes of codes and of scales (and zeros): [rows, row_bytes] and [rows, groups], or in the
    'lut' layout [tiles, tile_bytes] and [tiles, groups, 32], tiles of 32 rows (see aplq.h)."""
    if fmt.layout == "lut":
        tiles = sz["codes_bytes"] // (32 * sz["row_bytes"])
        return (tiles, 32 * sz["row_bytes"]), (tiles, sz["groups"], 32)
    rows = sz["codes_bytes"] // sz["row_bytes"]
    return (rows, sz["row_bytes"]), (rows, sz["groups"])


class QMatrix:
    """A packed matrix W [rows, cols]: codes uint8 [rows, row_bytes], scales and (zero-point
    formats) zeros [rows, groups] of the format's scale dtype; in the 'lut' layout codes
    [tiles, tile_bytes] and scales [tiles, groups, 32] (row 32 * t + i is scales[t, :, i]).
    Arrays from elsewhere (a checkpoint, say) are checked against sizes() and used as they
    are."""

    def __init__(self, fmt, codes, scales, zeros, rows, cols):
        rows, cols = int(rows), int(cols)
        sz = sizes(fmt, rows, cols)
        codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1)
        scales = np.ascontiguousarray(scales, dtype=fmt.scale_dtype).reshape(-1)
        if codes.size != sz["codes_bytes"]:
            _fail(E_INVALID_SHAPE, f"codes: {codes.size} bytes, {sz['codes_bytes']} expected")
        if scales.nbytes != sz["scales_bytes"]:
            _fail(E_INVALID_SHAPE, f"scales: {scales.nbytes} bytes, {sz['scales_bytes']} expected")
        if fmt.zero_point:
            if zeros is None:
                _fail(E_NULL_POINTER, "zeros: required by a zero-point format")
            zeros = np.ascontiguousarray(zeros, dtype=fmt.scale_dtype).reshape(-1)
            if zeros.nbytes != sz["zeros_bytes"]:
                _fail(E_INVALID_SHAPE, f"zeros: {zeros.nbytes} bytes, {sz['zeros_bytes']} expected")
        else:
            zeros = None
        self.format, self.rows, self.cols = fmt, rows, cols
        codes_shape, scales_shape = _array_shapes(fmt, sz)
        self.codes = codes.reshape(codes_shape)
        self.scales = scales.reshape(scales_shape)
        self.zeros = None if zeros is None else zeros.reshape(scales_shape)

    @classmethod
    def empty(cls, fmt, rows, cols):
        codes_shape, scales_shape = _array_shapes(fmt, sizes(fmt, rows, cols))
        zeros = np.zeros(scales_shape, fmt.scale_dtype) if fmt.zero_point else None
        return cls(fmt, np.zeros(codes_shape, np.uint8), np.zeros(scales_shape, fmt.scale_dtype),
                   zeros, rows, cols)

    @property
    def shape(self):
        return (self.rows, self.cols)

    def _struct(self):
        return _capi.QMatrix(self.format._struct(), self.codes.ctypes.data,
                             self.scales.ctypes.data,
                             None if self.zeros is None else self.zeros.ctypes.data,
                             self.rows, self.cols)

    def _buffers(self):
        zeros = self.zeros
        return _capi.QBuffers(self.codes.ctypes.data, self.codes.nbytes, self.scales.ctypes.data,
                              self.scales.nbytes, None if zeros is None else zeros.ctypes.data,
                              0 if zeros is None else zeros.nbytes)

    def gemv(self, x, threads=0, policy="exact"):
        return gemv(self, x, threads, policy)

    def gemm(self, x, threads=0, policy="exact"):
        return gemm(self, x, threads, policy)

    def dequantize(self):
        return dequantize(self)

    def repack(self, layout):
        return repack(self, layout)

    def __repr__(self):
        return f"QMatrix({self.format!r}, rows={self.rows}, cols={self.cols})"


def _floats(a, name, ndim):
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.ndim != ndim:
        _fail(E_INVALID_SHAPE, f"{name}: {a.ndim} dimensions, {ndim} expected")
    return a


def _fp(a):
    return None if a is None else a.ctypes.data_as(_capi.c_float_p)


def quantize(w, fmt):
    """Quantizes float weights w [rows, cols] (round to nearest) into a new QMatrix."""
    w = _floats(w, "w", 2)
    q = QMatrix.empty(fmt, w.shape[0], w.shape[1])
    _check(_c().aplq_quantize(ctypes.byref(fmt._struct()), _fp(w), w.shape[0], w.shape[1],
                              ctypes.byref(q._buffers())))
    return q


def dequantize(q):
    """W as float32 [rows, cols]."""
    out = np.empty((q.rows, q.cols), np.float32)
    _check(_c().aplq_dequantize(ctypes.byref(q._struct()), _fp(out)))
    return out


def repack(q, layout):
    """A copy of q in another layout ('sequential', 'cpu_striped' or, for 1 and 2 bits, 'lut'),
    bit-exact."""
    if layout not in _LAYOUTS:
        _fail(E_UNSUPPORTED_FORMAT, f"layout = {layout!r}: expected one of {list(_LAYOUTS)}")
    out = QMatrix.empty(q.format.with_layout(layout), q.rows, q.cols)
    _check(_c().aplq_repack(ctypes.byref(q._struct()), _LAYOUTS[layout],
                            ctypes.byref(out._buffers())))
    return out


def _options(threads, policy):
    if policy not in _POLICIES:
        _fail(E_INVALID_ARGUMENT, f"policy = {policy!r}: expected 'exact' or 'int8'")
    return _capi.Options(int(threads), _POLICIES[policy])


def gemv(q, x, threads=0, policy="exact"):
    """y [rows] = W x, x [cols]. threads <= 0: all cores; policy 'exact' or 'int8'."""
    x = _floats(x, "x", 1)
    if x.shape[0] != q.cols:
        _fail(E_INVALID_SHAPE, f"x: {x.shape[0]} values, W has {q.cols} columns")
    y = np.empty(q.rows, np.float32)
    opt = _options(threads, policy)
    _check(_c().aplq_gemv(ctypes.byref(q._struct()), _fp(x), _fp(y), ctypes.byref(opt)))
    return y


def gemm(q, x, threads=0, policy="exact"):
    """Y [n, rows] = X W^T, X [n, cols]."""
    x = _floats(x, "x", 2)
    if x.shape[1] != q.cols:
        _fail(E_INVALID_SHAPE, f"x: {x.shape[1]} columns, W has {q.cols}")
    y = np.empty((x.shape[0], q.rows), np.float32)
    opt = _options(threads, policy)
    _check(_c().aplq_gemm(ctypes.byref(q._struct()), _fp(x), x.shape[0], _fp(y),
                          ctypes.byref(opt)))
    return y


# ---- Seed entry points -----------------------------------------------------------------------


def ffi_init(backend_path=None):
    """apl_ffi_init: checks that APLQ_DEVICE can be honoured."""
    return _check(_c().apl_ffi_init(None if backend_path is None else str(backend_path).encode()))


def ffi_cleanup():
    return _check(_c().apl_ffi_cleanup())


def _seed_codes(q, signed):
    """Codes as little-endian integers of 1, 2 or 4 bytes whose signedness matches the C call:
    signed without zero points, unsigned with. Values are kept (a value the target type cannot
    hold raises E_OUT_OF_RANGE); libaplq checks the bit-width range."""
    q = np.asarray(q)
    if q.dtype.kind not in "iu":
        _fail(E_INVALID_ARGUMENT, f"codes: dtype {q.dtype}, an integer dtype expected")
    if q.ndim != 2:
        _fail(E_INVALID_SHAPE, f"codes: {q.ndim} dimensions, 2 expected ([out_rows, in_cols])")
    size = q.dtype.itemsize if q.dtype.itemsize in (1, 2, 4) else 4
    target = np.dtype(("<i" if signed else "<u") + str(size))
    if q.dtype != target:
        info = np.iinfo(target)
        if q.size and (q.min() < info.min or q.max() > info.max):
            _fail(E_OUT_OF_RANGE, f"codes: values outside [{info.min}, {info.max}]")
        q = q.astype(target)
    return np.ascontiguousarray(q)


def _seed_weights(q, scales, zero_points):
    q = _seed_codes(q, signed=zero_points is None)
    rows = q.shape[0]
    scales = _floats(scales, "scales", 1)
    if scales.shape[0] != rows:
        _fail(E_INVALID_SHAPE, f"scales: {scales.shape[0]} values, {rows} rows")
    if zero_points is not None:
        zero_points = _floats(zero_points, "zero_points", 1)
        if zero_points.shape[0] != rows:
            _fail(E_INVALID_SHAPE, f"zero_points: {zero_points.shape[0]} values, {rows} rows")
    return q, scales, zero_points


def call_matmul_q(q, scales, zero_points, x, bits, num_threads=0):
    """apl_matmul_q: y [out_rows] = W x. q: integer codes [out_rows, in_cols] (signed in
    [-2^(bits-1), 2^(bits-1)) with zero_points None, else unsigned in [0, 2^bits)); scales and
    zero_points: float [out_rows]; x: float [in_cols]; bits 2, 4 or 8."""
    q, scales, zero_points = _seed_weights(q, scales, zero_points)
    x = _floats(x, "x", 1)
    if x.shape[0] != q.shape[1]:
        _fail(E_INVALID_SHAPE, f"x: {x.shape[0]} values, codes have {q.shape[1]} columns")
    y = np.empty(q.shape[0], np.float32)
    _check(_c().apl_matmul_q(q.ctypes.data, q.dtype.itemsize, _fp(scales), _fp(zero_points),
                             _fp(x), _fp(y), q.shape[0], q.shape[1], int(bits), int(num_threads)))
    return y


def call_matmul_q_batch(q, scales, zero_points, x, bits, num_threads=0):
    """apl_matmul_q_batch: Y [batch, out_rows] = X W^T for X [batch, in_cols]."""
    q, scales, zero_points = _seed_weights(q, scales, zero_points)
    x = _floats(x, "inputs", 2)
    if x.shape[1] != q.shape[1]:
        _fail(E_INVALID_SHAPE, f"inputs: {x.shape[1]} columns, codes have {q.shape[1]}")
    y = np.empty((x.shape[0], q.shape[0]), np.float32)
    _check(_c().apl_matmul_q_batch(q.ctypes.data, q.dtype.itemsize, _fp(scales),
                                   _fp(zero_points), _fp(x), _fp(y), q.shape[0], q.shape[1],
                                   int(bits), x.shape[0], int(num_threads)))
    return y


def call_matmul_1bit(packed, scales, x, num_threads=0):
    """apl_matmul_1bit: packed uint8 [out_rows, ceil(in_cols/8)] (weight c = bit c % 8 of byte
    c / 8, bit 1 -> +scale), scales float [out_rows], x float [in_cols]; in_cols = len(x)."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    x = _floats(x, "x", 1)
    if packed.ndim != 2 or packed.shape[1] != (x.shape[0] + 7) // 8:
        _fail(E_INVALID_SHAPE, f"packed: shape {packed.shape}, [out_rows, {(x.shape[0] + 7) // 8}]"
              f" expected for {x.shape[0]} inputs")
    scales = _floats(scales, "scales", 1)
    if scales.shape[0] != packed.shape[0]:
        _fail(E_INVALID_SHAPE, f"scales: {scales.shape[0]} values, {packed.shape[0]} rows")
    y = np.empty(packed.shape[0], np.float32)
    _check(_c().apl_matmul_1bit(packed.ctypes.data, _fp(scales), _fp(x), _fp(y), packed.shape[0],
                                x.shape[0], int(num_threads)))
    return y
