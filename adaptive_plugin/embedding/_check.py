"""The derived model's check: vectors of fixed texts, recorded where it was derived, compared where it runs.

A derived integer model is the model the router and cache were tuned on only if the CPU that
runs it computes what the deriving CPU computed. A model directory travels: it is built into an
image on one machine and runs on nodes with other CPUs. So `fetch_model` records, beside the
derived file, its vectors of `CHECK_TEXTS` and how close they are to the float source model's;
`Embedder.from_directory` embeds the same texts at load (about 30 ms) and falls back to the
float model when the mean cosine to the recorded vectors is below `AGREEMENT`.

Measured (bench/RESULTS.md, "Integer kernels"): between a VNNI CPU and an AVX2-only one, both
with an exact kernel, the mean cosine on these texts is 0.9999 or more; with the saturating u8s8
kernel on the AVX2 CPU it is about 0.99.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from adaptive_plugin.embedding._embedder import Embedder

__all__ = ["AGREEMENT", "CHECK_FILE", "CHECK_TEXTS", "Record", "agreement", "recorded_check", "write_check"]

CHECK_FILE = "model_dynamic_int8.check.json"
# lowest mean cosine between the vectors here and the recorded ones (see the module doc)
AGREEMENT = 0.999
CHECK_TEXTS = (
    "hi",
    "What is the capital of France?",
    "How do I reverse a linked list in Python without recursion?",
    "Is it safe to eat raw chicken?",
    "Is it unsafe to eat raw chicken?",
    "How do I disable two-factor authentication on my account?",
    "Write a haiku about the first snow of winter in the mountains.",
    "Solve for x: 3x + 7 = 22, and explain each step.",
    "What was the population of Tokyo in 1990 compared with 2020?",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\nWhy is this slow for n = 40?",
    "Translate into German: the train leaves at half past seven tomorrow morning.",
    "¿Cuál es la diferencia entre ser y estar?",
    "Summarise the causes of the First World War in three bullet points, for a high-school class.",
    "My landlord kept my deposit after I moved out; the flat was clean and I have photos. What can I do?",
    "Compare PostgreSQL and SQLite for a small web service with about a hundred users, covering "
    "concurrency, backups, operational burden, and what changes if the service grows to ten "
    "thousand users across several regions.",
    "word " * 120,  # longer than the tokenizer's limit
)


@dataclass(frozen=True)
class Record:
    """What `fetch_model` recorded: the derived model's vectors of `CHECK_TEXTS` on the CPU that
    derived it, that CPU's kernel, and the cosine of those vectors to the float model's."""

    vectors: np.ndarray
    kernel: str
    source_mean: float
    source_min: float
    threshold: float = AGREEMENT


def _texts_digest() -> str:
    return hashlib.sha256("\x1e".join(CHECK_TEXTS).encode("utf-8")).hexdigest()


def write_check(directory: Path, derived: Embedder, source: Embedder) -> Record:
    """Embed `CHECK_TEXTS` with both models, record the derived vectors beside the model."""
    ours = np.stack([derived.embed_one(text) for text in CHECK_TEXTS])
    theirs = np.stack([source.embed_one(text) for text in CHECK_TEXTS])
    cosines = (ours * theirs).sum(axis=1)
    record = Record(vectors=ours, kernel=derived.kernel, source_mean=float(cosines.mean()),
                    source_min=float(cosines.min()))
    body = {
        "texts_sha256": _texts_digest(),
        "kernel": record.kernel,
        "numerics": derived.numerics,
        "source_cosine_mean": round(record.source_mean, 6),
        "source_cosine_min": round(record.source_min, 6),
        "vectors": base64.b64encode(ours.astype("<f4").tobytes()).decode("ascii"),
    }
    partial = directory / f".{CHECK_FILE}.partial"
    partial.write_text(json.dumps(body, indent=1) + "\n")
    os.replace(partial, directory / CHECK_FILE)
    return record


def recorded_check(directory: Path) -> Record | None:
    """The check recorded beside the derived model; None if there is none or it is of other texts."""
    path = directory / CHECK_FILE
    try:
        body = json.loads(path.read_text())
        if body.get("texts_sha256") != _texts_digest():
            return None
        vectors = np.frombuffer(base64.b64decode(body["vectors"]), dtype="<f4").reshape(len(CHECK_TEXTS), -1)
        return Record(vectors=vectors.astype(np.float32), kernel=str(body["kernel"]),
                      source_mean=float(body["source_cosine_mean"]), source_min=float(body["source_cosine_min"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):  # damaged: as if none were recorded (fetch-model writes it again)
        return None


def agreement(embedder: Embedder, record: Record) -> float:
    """The mean cosine between `embedder`'s vectors of `CHECK_TEXTS` and the recorded ones."""
    ours = np.stack([embedder.embed_one(text) for text in CHECK_TEXTS])
    if ours.shape != record.vectors.shape:
        return 0.0
    return float((ours * record.vectors).sum(axis=1).mean())
