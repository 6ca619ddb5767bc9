#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Vendoring test: copies tests/subproject/consumer into a temporary directory, puts the aplq
# source tree at subprojects/aplq (a symlink), configures with --wrap-mode=nofallback and
# --force-fallback-for=aplq (so an installed aplq cannot stand in for the subproject), builds and
# runs the consumer, and checks that aplq's own tests, examples, benchmarks and tools were not
# configured there (those features turn off automatically in a subproject).
#
# Usage: run.sh APLQ_SOURCE_ROOT [MESON COMMAND...]   (defaults to meson on PATH)
set -euo pipefail

root=$(cd "${1:?usage: run.sh APLQ_SOURCE_ROOT [MESON COMMAND...]}" && pwd)
shift
meson=("$@")
if ((${#meson[@]} == 0)); then meson=(meson); fi
here=$(cd "$(dirname "$0")" && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/aplq-subproject.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp -r "$here/consumer" "$tmp/consumer"
mkdir "$tmp/consumer/subprojects"
ln -s "$root" "$tmp/consumer/subprojects/aplq"

cd "$tmp/consumer"
"${meson[@]}" setup build --wrap-mode=nofallback --force-fallback-for=aplq
"${meson[@]}" compile -C build consumer
./build/consumer

# Nothing of aplq's own test/example/benchmark/tool trees may be configured in a subproject.
"${meson[@]}" introspect --targets --tests build >build/introspect.json
/usr/bin/python3 - build/introspect.json <<'PY'
import json, re, sys
info = json.load(open(sys.argv[1]))
banned = re.compile(r"subprojects/aplq/(tests|examples|benchmarks|tools)/")
bad = [t["name"] for t in info["targets"] if any(banned.search(f) for f in [t["defined_in"]])]
bad += ["test " + t["name"] for t in info["tests"]]
if bad:
    sys.exit("aplq built its own tests/tools inside a subproject: " + ", ".join(sorted(bad)))
print("subproject: no aplq tests, examples, benchmarks or tools configured")
PY
