#!/usr/bin/env bash
# Fetch the wheels of benchmarks/gpu_wheels.txt for the GPU machine (CPython 3.12, x86_64 Linux) into one
# folder, to carry there with the working tree: benchmarks/gpu_check.sh installs them with no network.
#   benchmarks/download_gpu_wheels.sh [DIR]      # DIR defaults to benchmarks/gpu_wheels (ignored by git)
# The list is pinned and complete (dependencies included), hence --no-deps: resolving here would also
# fetch torch and its CUDA libraries, which the machine has.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-benchmarks/gpu_wheels}
LIST=benchmarks/gpu_wheels.txt
mkdir -p "$DIR"
grep -v '^antlr4-python3-runtime' "$LIST" | python -m pip download --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 -d "$DIR" -r /dev/stdin
# The one source-only package is pure Python: its wheel built here installs anywhere.
python -m pip wheel --no-deps -w "$DIR" "$(grep '^antlr4-python3-runtime' "$LIST" | cut -d' ' -f1)"
du -sh "$DIR"
