#!/usr/bin/env bash
# Build one real-package tier's environment (a venv of the tier's Python holding its pinned lock) into a
# cache folder outside the repository, and print its path. Each tier's build_env.sh calls this.
#
#   bash tests/support/build_tier_env.sh TIER PYTHON_VERSION LOCK EDITABLE
#
# TIER names the folder, ${XDG_CACHE_HOME:-~/.cache}/nemo_beyond_nll/TIER-env-<the first 12 hex digits
# of the lock's sha256>, so a changed lock builds a new environment instead of patching an old one;
# NEMO_BEYOND_NLL_<TIER>_ENV overrides it. PYTHON_VERSION is major.minor (3.12). The lock is installed
# with --no-deps (it pins everything); EDITABLE=yes also installs the project itself, editable (no: the
# tier reaches it through PYTHONPATH). A folder is reused once its .complete file exists.
set -euo pipefail
if [ $# -ne 4 ] || { [ "$4" != yes ] && [ "$4" != no ]; }; then
  echo "usage: build_tier_env.sh TIER PYTHON_VERSION LOCK yes|no" >&2
  exit 2
fi
tier="$1"
version="$2"
lock="$(cd "$(dirname "$3")" && pwd)/$(basename "$3")"
editable="$4"
root="$(cd "$(dirname "$0")/../.." && pwd)"
hash="$(sha256sum "$lock" | cut -c1-12)"
home="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
override="NEMO_BEYOND_NLL_$(echo "$tier" | tr '[:lower:]-' '[:upper:]_')_ENV"
env_dir="${!override:-${XDG_CACHE_HOME:-$home/.cache}/nemo_beyond_nll/$tier-env-$hash}"

if [ -f "$env_dir/.complete" ]; then
  echo "$env_dir"
  exit 0
fi

find_python() {
  local pyenv_root candidate
  pyenv_root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$home/.pyenv}")"
  for candidate in "$pyenv_root"/versions/"$version".*/bin/"python$version" \
      "$(command -v "python$version" || true)" "$(command -v python3 || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] \
        && "$candidate" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$version'" 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if ! python="$(find_python)"; then
  echo "build_tier_env.sh: error: Python $version not found (python$version on PATH or pyenv $version)" >&2
  exit 2
fi

echo "building the $tier tier environment in $env_dir" >&2
rm -rf "$env_dir"
"$python" -m venv "$env_dir"
log="$env_dir/build.log"
if ! "$env_dir/bin/pip" install -q --no-deps -r "$lock" > "$log" 2>&1 \
    || { [ "$editable" = yes ] && ! "$env_dir/bin/pip" install -q --no-deps -e "$root" >> "$log" 2>&1; }; then
  tail -n 40 "$log" >&2
  echo "build_tier_env.sh: error: installing $lock$([ "$editable" = yes ] && echo " and the project") failed (log: $log)" >&2
  exit 1
fi
touch "$env_dir/.complete"
echo "$env_dir"
