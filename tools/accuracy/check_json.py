# SPDX-License-Identifier: Apache-2.0
"""aplq-accuracy's JSON agrees with its text report, and its exit statuses are the documented ones.

Runs the quick suite with --json PATH (text on stdout, JSON in the file) and checks that every
layer and block line of the text shows the JSON's numbers, that the totals and tolerance tables
agree, and that --json without a path prints the same JSON. Then --inject-fault wrong-scales:
exit 1, every kernel check failed and every quantization check passed (the two errors are never
mixed). Bad arguments: exit 2 (3 for an unwritable output), one line on stderr, no file left.

Usage: check_json.py PATH/TO/aplq-accuracy
"""
import json
import os
import re
import subprocess
import sys
import tempfile


def fail(message):
    print("check_json.py: " + message, file=sys.stderr)
    sys.exit(1)


def run(tool, *args):
    p = subprocess.run([tool, *args], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def sci(v):
    """The text report's number format (%.2e; '-' for a policy that did not run)."""
    return "-" if v is None or v < 0 else "%.2e" % v


LINE = re.compile(r"^  (\S+)\s+(\S+ \S+)\s+(q\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)"
                  r"\s+(PASS|FAIL)$")


def result_lines(text):
    return [m.groups() for m in map(LINE.match, text.splitlines()) if m]


def worst(entry, policy):
    errors = [k["error"] for k in entry["kernels"] if k["policy"] == policy]
    if not errors:
        return None, None
    if any(e is None for e in errors):
        return float("nan"), None
    tol = [k["tolerance"] for k in entry["kernels"] if k["policy"] == policy][0]
    return max(errors), tol


def check_agreement(text, report):
    if not text.startswith("ACCURACY VALIDATION REPORT\n"):
        fail("the text report does not start with its title")
    entries = report["layers"] + report["attention"]
    lines = result_lines(text)
    if len(lines) != len(entries) or not entries:
        fail("%d result lines in the text, %d results in the JSON" % (len(lines), len(entries)))
    for line, e in zip(lines, entries):
        name, _, fmt, qerr, qtol, eerr, etol, ierr, itol, verdict = line
        where = "%s %s" % (name, fmt)
        if name != e["name"] or fmt != e["format"]["name"]:
            fail("text line %s, JSON entry %s %s" % (where, e["name"], e["format"]["name"]))
        q = e["quantization"]
        expect = [sci(q["error"]), sci(q["tolerance"])] if q else ["-", "-"]
        for pol in ("exact", "int8"):
            err, tol = worst(e, pol)
            expect += [sci(err), sci(tol)]
        got = [qerr, qtol, eerr, etol, ierr, itol]
        if got != expect:
            fail("%s: text %s, JSON %s" % (where, got, expect))
        if (verdict == "PASS") != e["pass"]:
            fail("%s: text %s, JSON pass=%s" % (where, verdict, e["pass"]))
        passes = all(k["pass"] for k in e["kernels"]) and (q is None or q["pass"])
        if passes != e["pass"]:
            fail("%s: the JSON's pass disagrees with its checks" % where)
    s = report["summary"]
    overall = "Overall: %d/%d tests passed (%d/%d checks)" % (
        s["passed"], s["tests"], s["checks_passed"], s["checks"])
    if overall not in text:
        fail("'%s' not in the text" % overall)
    if s["tests"] != len(entries) or s["passed"] != sum(e["pass"] for e in entries):
        fail("the summary does not count the results")
    for row in report["tolerances"]["kernel"]:
        line = "  %-5d %-11s %-11s %s" % (row["bits"], sci(row["seed_table"]), sci(row["exact"]),
                                         sci(row["int8"]))
        if line not in text.splitlines():
            fail("kernel tolerance row '%s' not in the text" % line)


def main():
    if len(sys.argv) != 2:
        fail("usage: check_json.py PATH/TO/aplq-accuracy")
    tool = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "report.json")
        rc, text, err = run(tool, "--quick", "--json", path)
        if rc != 0:
            fail("quick suite: exit %d, stderr %r" % (rc, err))
        report = json.load(open(path))
        check_agreement(text, report)
        if not report["summary"]["pass"] or report["fault"] is not None:
            fail("the quick suite should pass without a fault")

        rc, out, err = run(tool, "--quick", "--json")
        if rc != 0:
            fail("--json to stdout: exit %d, stderr %r" % (rc, err))
        again = json.loads(out)  # stdout holds the JSON alone
        for r in (report, again):
            r["summary"].pop("seconds")
        if again != report:
            fail("--json to stdout differs from --json PATH")

        # One named ISA: its plain kernels and its table lookup.
        isa = report["kernels"][0]
        rc, out, err = run(tool, "--quick", "--isa", isa, "--json")
        if rc != 0 or json.loads(out)["kernels"] != [isa, isa + "-lut"]:
            fail("--isa %s: exit %d, stderr %r" % (isa, rc, err))
        # The table lookup checks 1- and 2-bit formats, with and without a zero point, under both
        # policies, and nothing else.
        lut = [(e["format"]["bits"], e["format"]["zero_point"], k["policy"])
               for e in report["layers"] + report["attention"]
               for k in e["kernels"] if k["kernel"].endswith("-lut")]
        if (not lut or {(b, z) for b, z, p in lut if p == "exact"}
                != {(b, z) for b, z, p in lut if p == "int8"}
                or {b for b, _, p in lut if p == "exact"} != {1, 2}
                or any(b > 2 or p not in ("exact", "int8") for b, z, p in lut)):
            fail("table-lookup checks: %r" % lut[:4])

        fpath = os.path.join(tmp, "fault.json")
        rc, text, err = run(tool, "--quick", "--inject-fault", "wrong-scales", "--json", fpath)
        if rc != 1:
            fail("--inject-fault wrong-scales: exit %d (expected 1), stderr %r" % (rc, err))
        fault = json.load(open(fpath))
        check_agreement(text, fault)
        entries = fault["layers"] + fault["attention"]
        if fault["fault"] != "wrong-scales" or fault["summary"]["pass"]:
            fail("the faulty run's JSON does not say so")
        if not all(not k["pass"] for e in entries for k in e["kernels"]):
            fail("a kernel check passed with wrong scales")
        if not all(e["quantization"]["pass"] for e in entries):
            fail("wrong scales in the kernel changed a quantization check")

        for args, code in ((["--threads", "many"], 2), (["--isa", "nope"], 2),
                           (["--inject-fault", "other"], 2), (["--bogus"], 2),
                           (["--quick", "--json", os.path.join(tmp, "no", "dir.json")], 3)):
            bad = os.path.join(tmp, "bad.json")
            rc, out, err = run(tool, *args, *([] if "--json" in args else ["--json", bad]))
            lines = err.strip().splitlines()
            if rc != code or len(lines) != 1 or not lines[0].startswith("aplq-accuracy: error: "):
                fail("%s: exit %d (expected %d), stderr %r" % (args, rc, code, err))
        left = sorted(set(os.listdir(tmp)) - {"report.json", "fault.json"})
        if left:
            fail("files left behind: %s" % left)
    print("check_json.py: text and JSON agree; fault and bad-argument exits as documented")


if __name__ == "__main__":
    main()
