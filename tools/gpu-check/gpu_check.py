#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""GPU check driver: runs aplq-gpu-check (correctness, copy bandwidth, kernel timings), times the
cuBLAS fp16 baseline through PyTorch on the same shapes and batches (the CUDA toolkit has no
static cuBLAS, PyTorch bundles one), and prints one table: time, effective GB/s, fraction of the
measured copy bandwidth and speed-up over cuBLAS fp16. Writes the merged JSON. Needs only the
standard library; without PyTorch the baseline column reads "n/a (no PyTorch)".

  gpu_check.py [--binary PATH] [--json PATH] [--quick] [--no-torch]
  gpu_check.py --from-json PATH [--json PATH]   (no runs: the table of an earlier JSON)

Exit status: 0 pass, 1 a correctness failure or an error, 2 bad arguments, 77 no CUDA device.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile

PROG = "gpu_check.py"
BASELINE = "cublas_f16"
BATCHES = (1, 4, 16, 64)


class check_error(Exception):
    """One line for the user; main prints it and exits non-zero."""


def run_binary(binary, quick, json_dir):
    """Runs aplq-gpu-check with --json into a temporary file; returns (exit status, its JSON)."""
    if not os.path.isfile(binary) or not os.access(binary, os.X_OK):
        raise check_error(f"{binary}: no such executable (build it with tools/gpu-check/build.sh)")
    fd, raw = tempfile.mkstemp(prefix=".aplq-gpu-check-", suffix=".json", dir=json_dir)
    os.close(fd)
    try:
        cmd = [binary, "--json", raw] + (["--quick"] if quick else [])
        sys.stdout.flush()
        rc = subprocess.call(cmd)
        data = None
        if os.path.getsize(raw) > 0:
            with open(raw, encoding="utf-8") as f:
                data = json.load(f)
        return rc, data
    finally:
        os.unlink(raw)


def torch_baseline(data, quick):
    """cuBLAS fp16 through torch.nn.functional.linear: W [M, K], x [n, K], y [n, M], all fp16."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return {"status": "n/a (no PyTorch)", "timings": []}
    if not torch.cuda.is_available():
        return {"status": "n/a (PyTorch without CUDA)", "timings": []}
    l2 = int(data["device"]["l2_bytes"])
    reps, warmup = (30 if quick else 100), 5
    shapes = sorted({(t["m"], t["k"]) for t in data["timings"]}, key=lambda s: (s[0] * s[1], s))
    out = {"status": "ok", "torch": torch.__version__, "cuda": torch.version.cuda,
           "device": torch.cuda.get_device_name(0), "timings": []}
    for m, k in shapes:
        w_bytes = m * k * 2
        free, _ = torch.cuda.mem_get_info()
        copies = max(2, -(-2 * l2 // w_bytes) + 1)
        copies = min(copies, int(0.8 * free) // w_bytes)
        if copies < 1:
            for n in BATCHES:
                out["timings"].append({"m": m, "k": k, "n": n, "format": BASELINE,
                                       "status": "n/a (does not fit in device memory)"})
            continue
        gen = torch.Generator(device="cuda").manual_seed(m * 131 + k)
        ws = [torch.randn(m, k, device="cuda", dtype=torch.float16, generator=gen) * 0.02
              for _ in range(copies)]
        for n in BATCHES:
            x = torch.randn(n, k, device="cuda", dtype=torch.float16, generator=gen)
            for i in range(warmup):
                F.linear(x, ws[i % copies])
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                      for _ in range(reps)]
            for i, (start, stop) in enumerate(events):
                start.record()
                F.linear(x, ws[i % copies])
                stop.record()
            torch.cuda.synchronize()
            us = [1e3 * s.elapsed_time(e) for s, e in events]
            median_us = statistics.median(us)
            nbytes = w_bytes + n * k * 2 + n * m * 2
            out["timings"].append({"m": m, "k": k, "n": n, "format": BASELINE, "status": "ok",
                                   "median_us": median_us, "min_us": min(us), "bytes": nbytes,
                                   "gb_per_s": nbytes / (median_us * 1e-6) / 1e9,
                                   "copies": copies, "reps": reps})
        del ws
        torch.cuda.empty_cache()
    return out


def build_table(data):
    """Rows of the table: per shape and batch, the cuBLAS fp16 row then ours, with the fraction
    of the copy bandwidth and the speed-up (cuBLAS time / our time) filled in."""
    copy_gbs = data["copy"]["gb_per_s"]
    cublas = data.get("cublas") or {"status": "n/a (not measured)", "timings": []}
    base = {(t["m"], t["k"], t["n"]): t for t in cublas.get("timings", [])}
    keys = []
    for t in data["timings"]:
        if (t["m"], t["k"], t["n"]) not in keys:
            keys.append((t["m"], t["k"], t["n"]))
    rows = []
    for key in keys:
        b = base.get(key)
        b_ok = b is not None and b.get("status") == "ok"
        b_why = cublas["status"] if b is None else b.get("status", "n/a")
        entries = [b] if b is not None else []
        entries += [t for t in data["timings"] if (t["m"], t["k"], t["n"]) == key]
        for t in entries:
            ok = t.get("status") == "ok" and t.get("median_us")
            row = {"m": key[0], "k": key[1], "n": key[2], "format": t["format"],
                   "status": t.get("status", "n/a"),
                   "median_us": t["median_us"] if ok else None,
                   "gb_per_s": t["gb_per_s"] if ok else None,
                   "copy_fraction": t["gb_per_s"] / copy_gbs if ok and copy_gbs else None,
                   "speedup_vs_cublas": None,
                   "baseline": "ok" if b_ok else b_why}
            if ok and b_ok:
                row["speedup_vs_cublas"] = b["median_us"] / t["median_us"]
            rows.append(row)
    return rows


def format_table(data, rows):
    lines = []
    d = data["device"]
    lines.append(f"device: {d['name']} (sm_{d['sm']}, {d['sms']} SMs, "
                 f"L2 {d['l2_bytes'] / 2**20:.1f} MiB)")
    c = data["copy"]
    lines.append(f"copy bandwidth: {c['gb_per_s']:.1f} GB/s (device-to-device cudaMemcpy, "
                 f"{c['counting']})")
    corr = data["correctness"]
    per_bits = ", ".join(f"q{b['bits']} {b['checks'] - b['failures']}/{b['checks']}"
                         for b in corr["by_bits"])
    lines.append(f"correctness: {'PASS' if corr['passed'] else 'FAIL'} ({per_bits})")
    lines.append("GB/s: ours = packed codes + scales (+zeros) + activations f32 + outputs f32; "
                 "cuBLAS = fp16 weights + activations + outputs")
    header = f"{'M x K':<12} {'batch':>5}  {'format':<22} {'time (us)':>10} {'GB/s':>8} " \
             f"{'copy%':>6}  {'vs cuBLAS fp16'}"
    lines.append(header)
    lines.append("-" * len(header))
    for r in rows:
        mk = f"{r['m']}x{r['k']}"
        if r["median_us"] is None:
            lines.append(f"{mk:<12} {r['n']:>5}  {r['format']:<22} {r['status']}")
            continue
        if r["format"] == BASELINE:
            vs = "1.00x (baseline)"
        elif r["speedup_vs_cublas"] is not None:
            vs = f"{r['speedup_vs_cublas']:.2f}x"
        else:
            vs = r["baseline"]
        lines.append(f"{mk:<12} {r['n']:>5}  {r['format']:<22} {r['median_us']:>10.2f} "
                     f"{r['gb_per_s']:>8.1f} {100 * r['copy_fraction']:>5.1f}%  {vs}")
    return "\n".join(lines)


def write_json(path, data):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv):
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--binary", default="build-gpu/aplq-gpu-check", help="aplq-gpu-check to run")
    p.add_argument("--json", help="merged JSON to write (default gpu-check.json when running)")
    p.add_argument("--quick", action="store_true", help="fewer shapes and launches")
    p.add_argument("--no-torch", action="store_true", help="skip the cuBLAS baseline")
    p.add_argument("--from-json", metavar="PATH",
                   help="print the table of an earlier JSON; runs nothing")
    args = p.parse_args(argv)

    if args.from_json:
        try:
            with open(args.from_json, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise check_error(f"{args.from_json}: {e}") from e
        rc = 0
    else:
        out = args.json or "gpu-check.json"
        rc, data = run_binary(args.binary, args.quick,
                              os.path.dirname(os.path.abspath(out)))
        if rc == 77:
            return 77
        if rc not in (0, 1) or data is None:
            raise check_error(f"{args.binary} exited with status {rc}")
        if args.no_torch:
            data["cublas"] = {"status": "n/a (--no-torch)", "timings": []}
        else:
            print("\ncuBLAS fp16 baseline through PyTorch ...", flush=True)
            data["cublas"] = torch_baseline(data, args.quick)
        args.json = out

    try:
        rows = build_table(data)
        text = format_table(data, rows)
    except (KeyError, TypeError, ZeroDivisionError) as e:
        src = args.from_json or args.binary
        raise check_error(f"{src}: malformed results: missing or bad field {e}") from e
    print("\n" + text)
    data["table"] = rows
    if args.json:
        write_json(args.json, data)
        print(f"\nwrote {args.json}")
    if not data["correctness"]["passed"]:
        return 1
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except check_error as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        sys.exit(1)
