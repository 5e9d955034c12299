#!/usr/bin/env bash
# The GPU check in one go (see benchmarks/gpu_check.py for its steps and budgets):
#   benchmarks/gpu_check.sh OUT [--wheels DIR]   # on the GPU machine, offline, with the wheels carried along
#   benchmarks/gpu_check.sh --smoke OUT          # the same steps at tiny sizes on CPU (tests/test_gpu_check.py)
# Everything lands in OUT; OUT/summary.md starts with each step's status.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
exec "$PYTHON" benchmarks/gpu_check.py "$@"
