#!/usr/bin/env bash
# The real NeMo AutoModel tier: build (or reuse) its environment, then run its tests against
# nemo-automodel 0.7.0 on the CPU.
#
#   bash tests/automodel/run.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/../.."
env_dir="$(bash tests/automodel/build_env.sh)"
export PYTHONPATH="$PWD:$PWD/tests/automodel/support"
exec "$env_dir/bin/python" -m pytest -q -o addopts="-p no:cacheprovider" tests/automodel "$@"
