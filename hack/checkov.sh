#!/usr/bin/env bash
# Installs, once, a pinned checkov (the policy scanner platform teams run on charts) into
# a virtualenv of its own in the cache: its many pinned dependencies stay out of .venv.
#
# Prints the path of the checkov program as the last line of stdout.
set -euo pipefail

VERSION=${CHECKOV_VERSION:-3.3.30}
cache_root=${STALK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stalk}
venv="$cache_root/tools/checkov-$VERSION"
python=${PYTHON:-python3}

if [[ ! -f "$venv/.complete" ]]; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q "checkov==$VERSION"
  touch "$venv/.complete"
fi
echo "$venv/bin/checkov"
