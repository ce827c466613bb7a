#!/usr/bin/env bash
# Set up and run the whole test suite (unit, end-to-end through the real proxy, PostgreSQL,
# Helm chart). Starts PostgreSQL and Redis on 127.0.0.1 if they are down.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# the second embedding model the tests derive and compare (not used by the gateway by default)
.venv/bin/adaptive-plugin fetch-model --model paraphrase-MiniLM-L3-v2
./scripts/services.sh
export TEST_POSTGRES_URL="${TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"
export TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
fi
exit "$code"
