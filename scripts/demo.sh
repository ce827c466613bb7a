#!/usr/bin/env bash
# Quickstart: set up, then run the gateway with the plugin on embedded defaults (SQLite,
# local FAISS index, offline embedding model) against the bundled fake provider, show a few
# requests, and keep serving on http://127.0.0.1:4000 until Ctrl-C.
# Extra arguments go to `adaptive-plugin demo` (e.g. --once, --port 4100).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/adaptive-plugin demo "$@"
