#!/usr/bin/env bash
# The Hugging Face tier: build (or reuse) its environment, then run its tests against
# transformers 5.25.0 and trl 1.16.0 on the CPU.
#
#   bash tests/hf/run.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/../.."
env_dir="$(bash tests/hf/build_env.sh)"
export PYTHONPATH="$PWD"
exec "$env_dir/bin/python" -m pytest -q -o addopts="-p no:cacheprovider" tests/hf "$@"
