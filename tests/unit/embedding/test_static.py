"""The first-look table: distilled by `fetch-model`, checked when loaded, and the same tokens as
the model's own tokenizer on the fast path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from adaptive_plugin.embedding import StaticEmbedder, fetch_model
from adaptive_plugin.embedding._static import DIMENSIONS, STATIC_FILE, _tokenizer
from adaptive_plugin.errors import EmbeddingModelError
from tests.unit.embedding.conftest import fetched_dir

CACHE_DEV = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cache" / "dev.jsonl"


@pytest.mark.slow
def test_fetch_model_distils_a_missing_or_altered_table_and_loading_refuses_an_altered_one(
    derived_dir: Path, tmp_path: Path
) -> None:
    directory = tmp_path / "m"
    shutil.copytree(derived_dir, directory)
    shipped = StaticEmbedder.from_directory(directory)
    table = np.load(directory / STATIC_FILE)
    table[0, 0] += 1.0
    np.save(directory / STATIC_FILE, table)
    with pytest.raises(EmbeddingModelError, match="does not match its recorded SHA-256.*fetch-model --force"):
        StaticEmbedder.from_directory(directory)
    (directory / STATIC_FILE).unlink()
    with pytest.raises(EmbeddingModelError, match="has no first-look table.*adaptive-plugin fetch-model"):
        StaticEmbedder.from_directory(directory)

    fetch_model(directory)  # no download: the table alone is distilled again
    again = StaticEmbedder.from_directory(directory)
    assert again.dimensions == DIMENSIONS and again.identity.startswith("static:")
    np.testing.assert_allclose(np.load(directory / STATIC_FILE), np.load(fetched_dir() / STATIC_FILE), atol=1e-4)
    texts = ["What is the capital of France?", "How do I reverse a linked list in Python?"]
    for text in texts:
        assert float(again.embed_one(text) @ shipped.embed_one(text)) > 0.9999


def _texts() -> list[str]:
    texts = ["", "   ", "Hello, World!!", "C++ vs. C#: which one?", "e-mail me at a@b.co (ASAP)...",
             "x=3*y^2; print(f'{x:.2f}')", "tab\tand\nnewline", "NULL\x00byte and \x07bell",
             "café naïve résumé", "日本語のテキスト", "emoji 🙂 ok", "don't won't can't", "supercalifragilistic" * 3]
    if CACHE_DEV.is_file():
        rows = [json.loads(line) for line in CACHE_DEV.read_text().splitlines()[:400] if line.strip()]
        texts += [t for r in rows for t in (r["a"], r["b"])]
    return texts


def test_the_fast_path_gives_the_tokenizers_ids() -> None:
    """Printable ASCII is split into words without the tokenizer; every text must get exactly the
    ids the model's tokenizer gives it, or the first look would search with other vectors."""
    directory = fetched_dir()
    embedder = StaticEmbedder.from_directory(directory)
    tokenizer = _tokenizer(directory)
    for text in _texts():
        assert embedder._ids(text) == tokenizer.encode(text, add_special_tokens=False).ids, text
    for text in _texts():  # the second time from the word memo
        assert embedder._ids(text) == tokenizer.encode(text, add_special_tokens=False).ids, text


def test_vectors_are_unit_length_and_a_text_without_tokens_is_zero() -> None:
    embedder = StaticEmbedder.from_directory(fetched_dir())
    v = embedder.embed_one("How do I bake sourdough bread at home?")
    assert v.shape == (DIMENSIONS,) and v.dtype == np.float32
    assert abs(float(v @ v) - 1.0) < 1e-5
    assert not embedder.embed_one("").any()
    near = embedder.embed_one("How can I bake sourdough bread at home?")
    far = embedder.embed_one("What is the tallest mountain in South America?")
    assert float(v @ near) > float(v @ far)
