#!/usr/bin/env bash
# Build the real Megatron-Bridge tier's environment (Python 3.12, Megatron-Bridge 0.6.2,
# Megatron-Core 0.19.2, torch 2.14.1) into a cache folder outside the repository, and print its path.
#
#   bash tests/bridge/build_env.sh            # about 5 minutes on 2 cores, 6 GB; reused once built
#
# NEMO_BEYOND_NLL_BRIDGE_ENV overrides the folder. The folder's name carries a hash of
# requirements.lock, so a changed lock builds a new environment instead of patching an old one
# (tests/support/build_tier_env.sh does the building, for every tier).
# Transformer Engine and nvidia-resiliency-ext are not installed (no wheel / no release new
# enough on PyPI): support/standins.py stands in for their import-time names.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# Outside pip's own cap on this machine's torch (a constraint file for the Python 3.11 wheels).
export PIP_CONSTRAINT=""
exec bash "$here/../support/build_tier_env.sh" bridge 3.12 "$here/requirements.lock" no
