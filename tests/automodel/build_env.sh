#!/usr/bin/env bash
# Build the real NeMo AutoModel tier's environment (Python 3.11, nemo-automodel 0.7.0,
# transformers 5.18.0, torch 2.13.0 CPU) into a cache folder outside the repository, and print its path.
#
#   bash tests/automodel/build_env.sh         # a few minutes, about 2 GB; reused once built
#
# NEMO_BEYOND_NLL_AUTOMODEL_ENV overrides the folder. The folder's name carries a hash of
# requirements.lock, so a changed lock builds a new environment instead of patching an old one
# (tests/support/build_tier_env.sh does the building, for every tier). The project is installed
# editable into it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec bash "$here/../support/build_tier_env.sh" automodel 3.11 "$here/requirements.lock" yes
