#!/usr/bin/env bash
# The GPU check: checks and times ddpmseg's CUDA path on one GPU in at most 5 minutes
# (benchmarks/gpu_check.py says what it measures). Run from anywhere, with the package's environment:
#   benchmarks/gpu_check.sh            # on a machine with a GPU; prints a Markdown block at the end
#   benchmarks/gpu_check.sh --quick    # every section on the CPU with small sizes (the test's mode)
# PYTHON picks the interpreter (default: python); GPU_CHECK_TIMEOUT the limit in seconds (default 300).
# When OUT names a directory, the output is also written to OUT/gpu_check.log.
set -euo pipefail
cd "$(dirname "$0")/.."
command=(timeout "${GPU_CHECK_TIMEOUT:-300}" "${PYTHON:-python}" benchmarks/gpu_check.py "$@")
if [[ -n "${OUT:-}" && -d "${OUT}" ]]; then
    "${command[@]}" 2>&1 | tee "${OUT}/gpu_check.log"
    exit "${PIPESTATUS[0]}"
fi
exec "${command[@]}"
