#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# What the GPU machine runs, from the repository root: lists the GPUs (nvidia-smi -L, when
# present), then runs gpu_check.py with the given aplq-gpu-check binary under a time limit. The
# output is also written to $OUT/gpu-check.txt and the merged JSON to $OUT/gpu-check.json when
# $OUT is set (else to ./gpu-check.json). Exits with the check's status (0 pass, 1 failure or
# error, 77 no CUDA device, 124 time limit).
#
#   tools/gpu-check/run.sh [BINARY] [-- gpu_check.py options, e.g. --quick]
#   GPU_CHECK_TIMEOUT=seconds (default 540) bounds the whole run.
set -u
binary=build-gpu/aplq-gpu-check
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
  binary=$1
  shift
fi
[ $# -gt 0 ] && [ "$1" = "--" ] && shift
here=$(dirname "$0")
python=$(command -v python3 || command -v python || true)
if [ -z "$python" ]; then
  echo "run.sh: error: no python3 on this machine" >&2
  exit 1
fi
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  log=$OUT/gpu-check.txt
  json=$OUT/gpu-check.json
else
  log=/dev/null
  json=gpu-check.json
fi
limit=${GPU_CHECK_TIMEOUT:-540}

status_file=$(mktemp)
{
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L
  else
    echo "nvidia-smi: not found"
  fi
  if command -v timeout >/dev/null 2>&1; then
    timeout -k 10 "$limit" "$python" -u "$here/gpu_check.py" --binary "$binary" --json "$json" "$@"
  else
    "$python" -u "$here/gpu_check.py" --binary "$binary" --json "$json" "$@"
  fi
  echo $? >"$status_file"
} 2>&1 | tee "$log"
rc=$(cat "$status_file")
rm -f "$status_file"
[ "$rc" = 124 ] && echo "run.sh: error: the check ran past ${limit}s" | tee -a "$log" >&2
exit "${rc:-1}"
