# SPDX-License-Identifier: Apache-2.0
"""Finds and loads libaplq and declares the C signatures of include/aplq.h for ctypes.

The library is looked up, in order: the APLQ_LIBRARY environment variable (a file path), a
build directory of this source tree (build*/src/capi/libaplq.so, newest first), then the system
(ctypes.util.find_library, e.g. after `meson install`). No Python runs in the multiplies: each
call is one ctypes call into libaplq, which releases the GIL while it runs.
"""
import ctypes
import ctypes.util
import glob
import os

c_float_p = ctypes.POINTER(ctypes.c_float)


class Format(ctypes.Structure):
    _fields_ = [("bits", ctypes.c_int), ("group", ctypes.c_int), ("zero_point", ctypes.c_int),
                ("scale_type", ctypes.c_int), ("layout", ctypes.c_int)]


class Sizes(ctypes.Structure):
    _fields_ = [("row_bytes", ctypes.c_int64), ("groups", ctypes.c_int64),
                ("codes_bytes", ctypes.c_int64), ("scales_bytes", ctypes.c_int64),
                ("zeros_bytes", ctypes.c_int64)]


class QMatrix(ctypes.Structure):
    _fields_ = [("format", Format), ("codes", ctypes.c_void_p), ("scales", ctypes.c_void_p),
                ("zeros", ctypes.c_void_p), ("rows", ctypes.c_int64), ("cols", ctypes.c_int64)]


class QBuffers(ctypes.Structure):
    _fields_ = [("codes", ctypes.c_void_p), ("codes_bytes", ctypes.c_size_t),
                ("scales", ctypes.c_void_p), ("scales_bytes", ctypes.c_size_t),
                ("zeros", ctypes.c_void_p), ("zeros_bytes", ctypes.c_size_t)]


class Options(ctypes.Structure):
    _fields_ = [("threads", ctypes.c_int), ("policy", ctypes.c_int)]


_I, _I64, _P, _F = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p, c_float_p
_S = ctypes.c_char_p
_SIGNATURES = {
    "aplq_status_string": (_S, [_I]),
    "aplq_last_error": (_S, []),
    "aplq_version": (_S, []),
    "aplq_version_number": (_I, []),
    "aplq_compiled_isas": (_S, []),
    "aplq_available_isas": (_S, []),
    "aplq_selected_isa": (_S, []),
    "aplq_gpu_available": (_I, []),
    "aplq_device": (_I, []),
    "aplq_sizes_of": (_I, [ctypes.POINTER(Format), _I64, _I64, ctypes.POINTER(Sizes)]),
    "aplq_quantize": (_I, [ctypes.POINTER(Format), _F, _I64, _I64, ctypes.POINTER(QBuffers)]),
    "aplq_dequantize": (_I, [ctypes.POINTER(QMatrix), _F]),
    "aplq_repack": (_I, [ctypes.POINTER(QMatrix), _I, ctypes.POINTER(QBuffers)]),
    "aplq_gemv": (_I, [ctypes.POINTER(QMatrix), _F, _F, ctypes.POINTER(Options)]),
    "aplq_gemm": (_I, [ctypes.POINTER(QMatrix), _F, _I64, _F, ctypes.POINTER(Options)]),
    "apl_ffi_init": (_I, [_S]),
    "apl_ffi_cleanup": (_I, []),
    "apl_matmul_q": (_I, [_P, _I, _F, _F, _F, _F, _I, _I, _I, _I]),
    "apl_matmul_q_batch": (_I, [_P, _I, _F, _F, _F, _F, _I, _I, _I, _I, _I]),
    "apl_matmul_1bit": (_I, [_P, _F, _F, _F, _I, _I, _I]),
}


def _candidates():
    env = os.environ.get("APLQ_LIBRARY")
    if env:
        return [env]  # asked for explicitly: no silent fallback to another copy
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    found = glob.glob(os.path.join(root, "build*", "src", "capi", "libaplq.so"))
    found.sort(key=os.path.getmtime, reverse=True)
    system = ctypes.util.find_library("aplq")
    return found + ([system] if system else [])


def load():
    """Loads libaplq and declares every function's signature; raises OSError if not found."""
    tried = []
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path}: {e}")
            continue
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        lib.path = path
        return lib
    raise OSError("aplq: libaplq not found (set APLQ_LIBRARY to the path of libaplq.so, or "
                  "build it: meson setup build && meson compile -C build)"
                  + ("; tried " + "; ".join(tried) if tried else ""))
