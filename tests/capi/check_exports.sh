#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Exported-symbol check of the shared libaplq: its dynamic symbol table defines exactly the
# functions aplq.h declares (APLQ_API), all named aplq_* or apl_*; the C++ kernels, the dispatch
# library and inlined standard-library code stay local (src/capi/aplq.map).
#
# Usage: check_exports.sh LIBAPLQ_SO APLQ_H
set -euo pipefail

lib=${1:?usage: check_exports.sh LIBAPLQ_SO APLQ_H}
header=${2:?usage: check_exports.sh LIBAPLQ_SO APLQ_H}
nm=${NM:-nm}

exported=$("$nm" -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | LC_ALL=C sort -u)
declared=$(grep -v '^[[:space:]]*#' "$header" | tr '\n' ' ' | grep -o 'APLQ_API[^;(]*(' |
             sed 's/.*[ *]\([A-Za-z_][A-Za-z_0-9]*\)($/\1/' | LC_ALL=C sort -u)

status=0
foreign=$(grep -Ev '^(aplq|apl)_' <<<"$exported" || true)
if [[ -n $foreign ]]; then
  echo "exported symbols outside aplq_*/apl_*:" >&2
  sed 's/^/  /' <<<"$foreign" >&2
  status=1
fi
missing=$(LC_ALL=C comm -13 <(echo "$exported") <(echo "$declared"))
if [[ -n $missing ]]; then
  echo "declared in aplq.h but not exported:" >&2
  sed 's/^/  /' <<<"$missing" >&2
  status=1
fi
extra=$(LC_ALL=C comm -23 <(echo "$exported") <(echo "$declared"))
if [[ -n $extra ]]; then
  echo "exported but not declared in aplq.h:" >&2
  sed 's/^/  /' <<<"$extra" >&2
  status=1
fi
echo "$(wc -l <<<"$exported") symbols exported, $(wc -l <<<"$declared") declared"
exit "$status"
