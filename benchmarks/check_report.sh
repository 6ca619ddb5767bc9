#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Smoke test of the report pipeline: a few in-cache cases of aplq-bench as JSON, then report.py;
# the markdown must list aplq cases and the PNG must exist. Timings are not checked.
# Usage: check_report.sh APLQ_BENCH REPORT_PY
set -euo pipefail
bench=$1
report=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bench" --benchmark_filter='/inc' --benchmark_min_time=0.01 --benchmark_format=json \
  --benchmark_out="$tmp/bench.json" >/dev/null
/usr/bin/python3 "$report" "$tmp/bench.json" --out "$tmp/report"
grep -q '^| gemv/q4_g32_s32/int8 | 1024x1024 | 1 | 1 |' "$tmp/report.md"
test -s "$tmp/report.png"
# A file without results is refused with one line and a non-zero exit.
echo '{"benchmarks": []}' >"$tmp/empty.json"
if /usr/bin/python3 "$report" "$tmp/empty.json" --out "$tmp/empty" 2>"$tmp/err"; then
  echo "report.py accepted a file without results" >&2
  exit 1
fi
test "$(wc -l <"$tmp/err")" -eq 1
test ! -e "$tmp/empty.md"
echo "report pipeline ok"
