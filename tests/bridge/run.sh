#!/usr/bin/env bash
# The real Megatron-Bridge tier: build (or reuse) its environment, then run its tests, and the
# Megatron-Core hook tests of the default suite, against Megatron-Bridge 0.6.2 / Megatron-Core 0.19.2.
#
#   bash tests/bridge/run.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/../.."
env_dir="$(bash tests/bridge/build_env.sh)"
export PYTHONPATH="$PWD:$PWD/tests/bridge/support"
exec "$env_dir/bin/python" -m pytest -q -o addopts="-p no:cacheprovider" \
  tests/bridge tests/megatron/test_hook.py tests/megatron/test_fused_output.py "$@"
