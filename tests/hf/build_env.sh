#!/usr/bin/env bash
# Build the Hugging Face tier's environment (Python 3.11, transformers 5.25.0, trl 1.16.0,
# torch 2.13.0 CPU) into a cache folder outside the repository, and print its path.
#
#   bash tests/hf/build_env.sh         # about a minute and a half, about 1.5 GB; reused once built
#
# NEMO_BEYOND_NLL_HF_ENV overrides the folder. The folder's name carries a hash of requirements.lock
# (tests/support/build_tier_env.sh does the building, for every tier). The project is installed
# editable into it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec bash "$here/../support/build_tier_env.sh" hf 3.11 "$here/requirements.lock" yes
