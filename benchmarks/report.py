#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Turns aplq-bench's JSON into a markdown table and a PNG plot.

    build/benchmarks/aplq-bench --quick --benchmark_format=json --benchmark_out=bench.json
    /usr/bin/python3 benchmarks/report.py bench.json --out report

writes report.md and report.png. With --benchmark_repetitions the median of each case is used. The table lists every aplq case with its time, effective GB/s,
fraction of the STREAM-triad bandwidth measured in the same run, and its speed-up over the two
baselines of the same shape, batch and thread count (f32 xsimd and OpenBLAS on the dequantized
matrix). The plot shows effective GB/s per bit width against the measured bandwidth, and time
relative to the OpenBLAS baseline. Uses Debian's python3-matplotlib.
"""
import argparse
import json
import os
import sys
import tempfile


def parse_name(name):
    """gemv/q4_g32_s32/int8/avx2/4096x4096/b1/t1/ooc[/real_time] -> dict, or None."""
    parts = name.split("/")
    if parts and parts[-1] == "real_time":
        parts = parts[:-1]
    if parts[0] in ("gemv", "gemm") and len(parts) == 8:
        return dict(kind="aplq", op=parts[0], format=parts[1], policy=parts[2], isa=parts[3],
                    shape=parts[4], batch=int(parts[5][1:]), threads=int(parts[6][1:]),
                    cache=parts[7], bits=int(parts[1].split("_")[0][1:]))
    if parts[0] == "baseline" and len(parts) == 6:
        return dict(kind=parts[1], shape=parts[2], batch=int(parts[3][1:]),
                    threads=int(parts[4][1:]), cache=parts[5])
    if parts[0] == "stream" and len(parts) == 3:
        return dict(kind="triad", threads=int(parts[2][1:]))
    return None


def load(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    rows = []
    benchmarks = data.get("benchmarks", [])
    # With --benchmark_repetitions the medians stand for each case; otherwise the single runs.
    medians = any(b.get("aggregate_name") == "median" for b in benchmarks)
    for b in benchmarks:
        if b.get("error_occurred"):
            continue
        if medians and b.get("aggregate_name") != "median":
            continue
        if not medians and b.get("run_type", "iteration") != "iteration":
            continue
        info = parse_name(b.get("run_name", b["name"]))
        if info is None:
            continue
        scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b.get("time_unit", "ns")]
        info["us"] = b["real_time"] * scale
        info["gbps"] = b.get("bytes_per_second", 0.0) * 1e-9
        info["bw_frac"] = b.get("bw_frac", 0.0)
        rows.append(info)
    return data.get("context", {}), rows


def key(r):
    return (r["shape"], r["batch"], r["threads"], r["cache"])


def write_markdown(context, rows, path):
    base = {}
    for r in rows:
        if r["kind"] in ("f32_xsimd", "openblas"):
            base[(r["kind"],) + key(r)] = r["us"]
    lines = ["# aplq benchmark report", ""]
    lines.append("ISA %s; STREAM triad %s; last-level cache %s bytes." % (
        context.get("isa", "?"),
        ", ".join("%s GB/s at %s" % (float(v), k.split("_t")[-1] + "T")
                  for k, v in sorted(context.items()) if k.startswith("triad_GBps_t")),
        context.get("llc_bytes", "?")))
    lines.append("Host: %s, %s CPUs, %s." % (context.get("host_name", "?"),
                                            context.get("num_cpus", "?"),
                                            context.get("date", "?")))
    lines.append("")
    lines.append("speed-up = baseline time / aplq time (same shape, batch, threads, same run); "
                 "bw = effective bytes/s over the triad bandwidth at that thread count.")
    lines.append("")
    lines.append("| case | shape | batch | threads | time µs | GB/s | bw | vs f32 xsimd | vs OpenBLAS |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["kind"] != "aplq":
            continue
        fx = base.get(("f32_xsimd",) + key(r))
        ob = base.get(("openblas",) + key(r))
        lines.append("| %s/%s/%s | %s | %d | %d | %.1f | %.2f | %.2f | %s | %s |" % (
            r["op"], r["format"], r["policy"], r["shape"], r["batch"], r["threads"], r["us"],
            r["gbps"], r["bw_frac"], "%.2f×" % (fx / r["us"]) if fx else "–",
            "%.2f×" % (ob / r["us"]) if ob else "–"))
    lines.append("")
    lines.append("Baselines:")
    lines.append("")
    lines.append("| baseline | shape | batch | threads | time µs | GB/s | bw |")
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["kind"] in ("f32_xsimd", "openblas"):
            lines.append("| %s | %s | %d | %d | %.1f | %.2f | %.2f |" % (
                r["kind"], r["shape"], r["batch"], r["threads"], r["us"], r["gbps"],
                r["bw_frac"]))
    atomic_write(path, "\n".join(lines) + "\n")


def write_plot(context, rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gemv = [r for r in rows if r["kind"] == "aplq" and r["batch"] == 1 and r["cache"] == "ooc"]
    cache = "out of cache"
    if not gemv:
        gemv = [r for r in rows if r["kind"] == "aplq" and r["batch"] == 1]
        cache = "in cache"
    threads = max((r["threads"] for r in gemv), default=1)
    shape = sorted({r["shape"] for r in gemv})[0] if gemv else "?"
    sel = [r for r in gemv if r["threads"] == threads and r["shape"] == shape]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for policy, lut, marker in (("exact", False, "o"), ("int8", False, "s"), ("exact", True, "v"),
                                ("int8", True, "^")):
        pts = sorted((r["bits"], r["gbps"]) for r in sel
                     if r["policy"] == policy and r["format"].endswith("_lut") == lut)
        best = {}
        for b, g in pts:
            best[b] = max(g, best.get(b, 0.0))
        if best:
            ax1.plot(list(best), list(best.values()), marker=marker,
                     label="aplq %s%s" % (policy, " table lookup" if lut else ""))
    triad = context.get("triad_GBps_t%d" % threads)
    if triad:
        ax1.axhline(float(triad), color="k", linestyle="--", label="STREAM triad (same run)")
    ax1.set_xscale("log", base=2)
    ax1.set_xticks([1, 2, 4, 8])
    ax1.set_xticklabels(["1", "2", "4", "8"])
    ax1.set_xlabel("bits per weight")
    ax1.set_ylabel("effective GB/s")
    ax1.set_title("GEMV %s, %d thread(s), %s" % (shape, threads, cache))
    ax1.legend()

    base = {key(r): r["us"] for r in rows if r["kind"] == "openblas"}
    labels, ratios = [], []
    for r in rows:
        if r["kind"] == "aplq" and r["threads"] == threads and r["shape"] == shape:
            b = base.get(key(r))
            if b:
                labels.append("%s %s b%d" % (r["format"], r["policy"], r["batch"]))
                ratios.append(r["us"] / b)
    ax2.barh(range(len(ratios)), ratios)
    ax2.set_yticks(range(len(ratios)))
    ax2.set_yticklabels(labels, fontsize=6)
    ax2.axvline(1.0, color="k", linestyle="--")
    ax2.set_xlabel("time relative to OpenBLAS on the dequantized matrix (lower is faster)")
    ax2.set_title("%s, %d thread(s)" % (shape, threads))
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path, text):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", help="aplq-bench --benchmark_format=json output")
    ap.add_argument("--out", default="report", help="output prefix (writes PREFIX.md, PREFIX.png)")
    args = ap.parse_args()
    try:
        context, rows = load(args.json)
    except (OSError, ValueError, KeyError) as e:
        print("report.py: cannot read %s: %s" % (args.json, e), file=sys.stderr)
        return 1
    if not any(r["kind"] == "aplq" for r in rows):
        print("report.py: %s has no aplq benchmark results" % args.json, file=sys.stderr)
        return 1
    write_markdown(context, rows, args.out + ".md")
    write_plot(context, rows, args.out + ".png")
    print("wrote %s.md and %s.png" % (args.out, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
