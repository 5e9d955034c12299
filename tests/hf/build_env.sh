#!/usr/bin/env bash
# Build the Hugging Face tier's environment (Python 3.11, transformers 5.25.0, trl 1.16.0,
# torch 2.13.0 CPU) into a cache folder outside the repository, and print its path.
#
#   bash tests/hf/build_env.sh         # about a minute, about 1.5 GB; reused once built
#
# NEMO_BEYOND_NLL_HF_ENV overrides the folder. The folder's name carries a hash of
# requirements.lock, so a changed lock builds a new environment instead of patching an old one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
lock="$here/requirements.lock"
hash="$(sha256sum "$lock" | cut -c1-12)"
home="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
env_dir="${NEMO_BEYOND_NLL_HF_ENV:-${XDG_CACHE_HOME:-$home/.cache}/nemo_beyond_nll/hf-env-$hash}"

if [ -f "$env_dir/.complete" ]; then
  echo "$env_dir"
  exit 0
fi

python311=""
for candidate in "$(command -v python3.11 || true)" "$(PYENV_VERSION=3.11.7 pyenv which python 2>/dev/null || true)" \
    "${PYENV_ROOT:-$home/.pyenv}"/versions/3.11*/bin/python3.11 "$(command -v python3 || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    python311="$candidate"
    break
  fi
done
if [ -z "$python311" ]; then
  echo "build_env.sh: error: Python 3.11 not found (python3.11 on PATH or pyenv 3.11)" >&2
  exit 2
fi

echo "building the Hugging Face tier environment in $env_dir" >&2
rm -rf "$env_dir"
"$python311" -m venv "$env_dir"
if ! "$env_dir/bin/pip" install -q --no-deps -r "$lock" > "$env_dir/build.log" 2>&1 \
    || ! "$env_dir/bin/pip" install -q --no-deps -e "$root" >> "$env_dir/build.log" 2>&1; then
  tail -n 40 "$env_dir/build.log" >&2
  echo "build_env.sh: error: installing $lock and the project failed (log: $env_dir/build.log)" >&2
  exit 1
fi
touch "$env_dir/.complete"
echo "$env_dir"
