#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Self-contained-include test (as in CUTLASS): every public header under include/aplq compiles on
# its own, so a user can include any one of them first. Headers are globbed at run time, so new
# ones are covered without touching this script. CUDA headers (include/aplq/cuda/*.cuh) are left to
# the CUDA suite; the host-side ones there (*.hpp) are checked here too.
#
# Usage: check.sh SOURCE_ROOT [COMPILER COMMAND...]   (defaults to $CXX, then c++)
set -uo pipefail

root=$(cd "${1:?usage: check.sh SOURCE_ROOT [COMPILER COMMAND...]}" && pwd)
shift
cxx=("$@")
if ((${#cxx[@]} == 0)); then cxx=("${CXX:-c++}"); fi
flags=(-std=c++17 -fsyntax-only -I "$root/include")
if xsimd_flags=$(pkg-config --cflags xsimd 2>/dev/null); then
  read -r -a extra <<<"$xsimd_flags"
  flags+=("${extra[@]}")
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cd "$root/include"
mapfile -t headers < <(find aplq \( -name '*.hpp' -o -name '*.h' \) |
                         LC_ALL=C sort)
if ((${#headers[@]} == 0)); then
  echo "check.sh: no headers found under $root/include/aplq" >&2
  exit 1
fi

bad=()
for h in "${headers[@]}"; do
  tu="$tmp/${h//\//_}.cpp"
  printf '#include <%s>\n' "$h" >"$tu"
  if ! "${cxx[@]}" "${flags[@]}" "$tu" >"$tmp/out" 2>&1; then
    bad+=("$h")
    echo "--- $h does not compile on its own:" >&2
    head -n 20 "$tmp/out" >&2
  fi
done

echo "${#headers[@]} headers checked, ${#bad[@]} not self-contained"
if ((${#bad[@]})); then
  printf 'not self-contained: %s\n' "${bad[@]}" >&2
  exit 1
fi
