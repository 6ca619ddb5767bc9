# SPDX-License-Identifier: Apache-2.0
# numpy compatibility of include/aplq/io/npz.hpp, in both directions, with Debian's python3-numpy
# (a missing numpy fails the test; it is never skipped):
#  - npz_writer_main writes its sample archive, plain and with forced ZIP64 records; numpy.load
#    must give every array with the dtype, shape and values (formulas of the flat index, kept in
#    step with npz_writer_main.cpp) the program wrote, and zipfile must find the CRC-32s right and
#    ZIP64 records exactly where they were forced;
#  - numpy.savez writes the same arrays; npz_writer_main --read (npz_reader) must list each with
#    numpy's dtype, shape and bytes.
#
#   npz_numpy.py PATH/TO/npz_writer_main
import os
import struct
import subprocess
import sys
import tempfile
import zipfile

import numpy as np


def flat(shape):
    return np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)


# key -> (descr, shape, values); keep in step with samples() in npz_writer_main.cpp.
EXPECTED = {
    "layers.0.q_proj.codes": ("|u1", (37, 29), lambda i: (i * 37 + 11) % 256),
    "layers.0.q_proj.scales": ("<f2", (37, 3), lambda i: (i % 200 - 100) * 0.125),
    "layers.0.q_proj.zeros": ("<f4", (37, 3), lambda i: (i % 1000 - 500) / 16.0),
    "u16": ("<u2", (301,), lambda i: (i * 2654435761) % 65536),
    "i8": ("|i1", (5, 7), lambda i: (i * 13) % 256 - 128),
    "i32": ("<i4", (1001,), lambda i: i * 100003 - 50000000),
    "f64": ("<f8", (3, 3), lambda i: i / 3.0 - 1.0),
    "big.codes": ("|u1", (513, 1031), lambda i: (i * 7 + (i >> 10)) % 256),
    "gewicht_\u00e4": ("<f4", (2,), lambda i: i * -4.0 + 1.5),
    "scalar": ("<f8", (), lambda i: i * 0 + 42.25),
    "empty": ("<f4", (0, 4), lambda i: i * 0.0),
}


def expected_array(key):
    descr, shape, f = EXPECTED[key]
    return f(flat(shape)).astype(np.dtype(descr)).reshape(shape)


failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def check_local_headers(raw, path, label):
    """zipfile trusts the central directory; check what it skips: each local header's CRC-32 and
    sizes (ZIP64 ones in its extra field), and the 64-byte alignment of every member's data."""
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            at = info.header_offset
            (sig, _, flags, method, _, _, crc, csize, usize, nlen, xlen) = struct.unpack(
                "<IHHHHHIIIHH", raw[at:at + 30])
            name = raw[at + 30:at + 30 + nlen].decode("utf-8" if flags & 0x800 else "cp437")
            extra = raw[at + 30 + nlen:at + 30 + nlen + xlen]
            if csize == 0xFFFFFFFF or usize == 0xFFFFFFFF:
                tag, size, usize, csize = struct.unpack("<HHQQ", extra[:20])
                check(tag == 1 and size >= 16, f"{label}: {name}: local ZIP64 field first")
            ok = (sig == 0x04034B50 and method == 0 and name == info.filename
                  and crc == info.CRC and csize == usize == info.file_size)
            check(ok, f"{label}: {name}: local header disagrees with the central directory")
            check((at + 30 + nlen + xlen) % 64 == 0, f"{label}: {name}: data not 64-byte aligned")


def check_written(path, zip64):
    label = f"{os.path.basename(path)}"
    with zipfile.ZipFile(path) as z:
        check(z.testzip() is None, f"{label}: zipfile finds a bad CRC-32")
        for info in z.infolist():
            check(info.compress_type == zipfile.ZIP_STORED, f"{label}: {info.filename} not stored")
    with open(path, "rb") as f:
        raw = f.read()
    tail = raw[-98:]
    check_local_headers(raw, path, label)
    has_locator = tail[-42:-38] == b"PK\x06\x07" and tail[:4] == b"PK\x06\x06"
    check(has_locator == zip64, f"{label}: ZIP64 end records present={has_locator}, forced={zip64}")

    with np.load(path) as npz:
        check(sorted(npz.files) == sorted(EXPECTED), f"{label}: keys {sorted(npz.files)}")
        for key in EXPECTED:
            if key not in npz.files:
                continue
            got, want = npz[key], expected_array(key)
            check(got.dtype == want.dtype, f"{label}: {key}: dtype {got.dtype} != {want.dtype}")
            check(got.shape == want.shape, f"{label}: {key}: shape {got.shape} != {want.shape}")
            check(got.dtype.str == EXPECTED[key][0], f"{label}: {key}: descr {got.dtype.str}")
            check(not np.isfortran(got) or got.ndim < 2, f"{label}: {key}: Fortran order")
            check(got.shape == want.shape and np.array_equal(got, want),
                  f"{label}: {key}: values differ")


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def check_read(writer, path):
    arrays = {key: expected_array(key) for key in EXPECTED}
    np.savez(path, **arrays)
    out = subprocess.run([writer, "--read", path], check=True, stdout=subprocess.PIPE).stdout
    lines = out.decode("utf-8").splitlines()
    check(len(lines) == len(arrays), f"numpy.savez archive: {len(lines)} arrays listed")
    for line in lines:
        key, descr, dims, digest = line.split("\t")
        if key not in arrays:
            check(False, f"numpy.savez archive: unexpected key {key!r}")
            continue
        a = arrays[key]
        check(descr == a.dtype.str, f"numpy.savez archive: {key}: descr {descr} != {a.dtype.str}")
        shape = tuple(int(d) for d in dims.split(",")) if dims else ()
        check(shape == a.shape, f"numpy.savez archive: {key}: shape {shape} != {a.shape}")
        check(int(digest, 16) == fnv1a64(a.tobytes()), f"numpy.savez archive: {key}: bytes differ")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: npz_numpy.py PATH/TO/npz_writer_main")
    writer = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="aplq-npz-numpy-") as d:
        for zip64 in (False, True):
            path = os.path.join(d, "sample_zip64.npz" if zip64 else "sample.npz")
            subprocess.run([writer] + (["--zip64"] if zip64 else []) + [path], check=True)
            check_written(path, zip64)
        check_read(writer, os.path.join(d, "from_numpy.npz"))
        leftovers = sorted(n for n in os.listdir(d) if n.startswith("."))
        check(not leftovers, f"temporary files left behind: {leftovers}")
    if failures:
        sys.exit(f"{len(failures)} check(s) failed")
    print(f"numpy {np.__version__}: {len(EXPECTED)} arrays match, plain and ZIP64, both ways")


if __name__ == "__main__":
    main()
