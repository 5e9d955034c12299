#!/usr/bin/env bash
# Build the real Megatron-Bridge tier's environment (Python 3.12, Megatron-Bridge 0.6.2,
# Megatron-Core 0.19.2, torch 2.14.1) into a cache folder outside the repository, and print its path.
#
#   bash tests/bridge/build_env.sh            # about 5 minutes on 2 cores, 6 GB; reused once built
#
# NEMO_BEYOND_NLL_BRIDGE_ENV overrides the folder. The folder's name carries a hash of
# requirements.lock, so a changed lock builds a new environment instead of patching an old one.
# Transformer Engine and nvidia-resiliency-ext are not installed (no wheel / no release new
# enough on PyPI): support/standins.py stands in for their import-time names.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
lock="$here/requirements.lock"
hash="$(sha256sum "$lock" | cut -c1-12)"
home="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
env_dir="${NEMO_BEYOND_NLL_BRIDGE_ENV:-${XDG_CACHE_HOME:-$home/.cache}/nemo_beyond_nll/bridge-env-$hash}"

if [ -f "$env_dir/.complete" ]; then
  echo "$env_dir"
  exit 0
fi

python312=""
for candidate in "$(PYENV_VERSION=3.12.1 pyenv which python 2>/dev/null || true)" "$(command -v python3.12 || true)" \
    "${PYENV_ROOT:-$home/.pyenv}"/versions/3.12*/bin/python3.12; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    python312="$candidate"
    break
  fi
done
if [ -z "$python312" ]; then
  echo "build_env.sh: error: Python 3.12 not found (pyenv 3.12.1 or python3.12 on PATH)" >&2
  exit 2
fi

echo "building the Megatron-Bridge tier environment in $env_dir" >&2
rm -rf "$env_dir"
"$python312" -m venv "$env_dir"
# Outside pip's own cap on this machine's torch (a constraint file for the Python 3.11 wheels).
export PIP_CONSTRAINT=""
if ! "$env_dir/bin/pip" install -q --no-deps -r "$lock" > "$env_dir/build.log" 2>&1; then
  tail -n 40 "$env_dir/build.log" >&2
  echo "build_env.sh: error: installing $lock failed (log: $env_dir/build.log)" >&2
  exit 1
fi
touch "$env_dir/.complete"
echo "$env_dir"
