"""The first look: a static token table distilled from the embedding model, microseconds per text.

Most cache lookups are misses, and most misses are far from every cached entry; the full model
costs milliseconds of CPU to say so. `StaticEmbedder` says it in about 30 microseconds: a text's
vector is the weighted mean of its tokens' rows in a table, normalised. The semantic cache
searches these vectors first and embeds fully only when an entry is close (`cache/_cascade.py`).

The table is distilled by `fetch_model` from the model's own float source, as the model2vec
method does (no hub, no torch): every vocabulary token is embedded alone (`[CLS] token [SEP]`,
mean-pooled: 30,522 texts, about 12 s), the rows are centred and reduced by PCA to `DIMENSIONS`,
and each row is weighted by a / (a + p(token)) (smooth inverse frequency: frequent tokens such as
"the" count for little). The token frequencies ship with the package (`artifacts/token_counts.npy`,
counted on the routing prompts of the development data by `python -m
adaptive_plugin.embedding._static counts DATA_DIR`).

Files beside the model: `static_table.npy` (float32, vocabulary x DIMENSIONS) and
`static_table.sha256` ("<sha256> recipe-<n>"); the digest names the table (`identity`), so
vectors of another table are never compared with this one's.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from adaptive_plugin.embedding._fetch import _sha256, verify_model_dir, write_digest
from adaptive_plugin.errors import EmbeddingModelError

__all__ = ["DIMENSIONS", "STATIC_FILE", "StaticEmbedder", "derive_static"]

log = logging.getLogger(__name__)

STATIC_FILE = "static_table.npy"
STATIC_DIGEST_FILE = "static_table.sha256"
STATIC_RECIPE = 1
DIMENSIONS = 128  # 256 skipped 1.3% more lookups on the cache data than 128, at twice the memory
SIF_A = 1e-3
COUNTS_FILE = Path(__file__).with_name("artifacts") / "token_counts.npy"
_BATCH = 1024


class StaticEmbedder:
    """Unit vectors from a token table: `embed_one(text)` in microseconds, no model run.

    >>> s = StaticEmbedder.from_directory("/path/to/model")   # doctest: +SKIP
    >>> s.embed_one("What is the capital of France?").shape   # doctest: +SKIP
    (128,)
    """

    def __init__(self, table: np.ndarray, tokenizer: Any, *, identity: str) -> None:
        self._table = np.ascontiguousarray(table, dtype=np.float32)
        self._tokenizer = tokenizer
        self.dimensions = int(table.shape[1])
        self.identity = identity
        # word -> its WordPiece ids: most words of a request were seen before, and a dict read
        # costs far less than the Rust tokenizer's call (see `_ids`)
        self._words: dict[str, list[int]] = {}

    @classmethod
    def from_directory(cls, directory: str | os.PathLike[str]) -> StaticEmbedder:
        """Load the table `fetch_model` derived; EmbeddingModelError if it is missing or altered."""
        path = Path(directory)
        table_file, digest_file = path / STATIC_FILE, path / STATIC_DIGEST_FILE
        if not table_file.is_file() or not digest_file.is_file():
            raise EmbeddingModelError(f"{path} has no first-look table ({STATIC_FILE}); run `adaptive-plugin fetch-model`")
        digest = _sha256(table_file)
        if digest_file.read_text().split()[:1] != [digest]:
            raise EmbeddingModelError(
                f"first-look table {table_file} does not match its recorded SHA-256; run `adaptive-plugin fetch-model --force`")
        try:
            table = np.load(table_file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise EmbeddingModelError(f"cannot read the first-look table {table_file}: {exc}") from exc
        return cls(table, _tokenizer(path), identity=f"static:{digest[:16]}")

    def embed_one(self, text: str) -> np.ndarray:
        """The (dimensions,) float32 unit vector of `text` (zeros for a text without tokens)."""
        ids = self._ids(text)
        if not ids:
            return np.zeros(self.dimensions, dtype=np.float32)
        vector = self._table[ids].sum(axis=0)
        norm = float(np.sqrt(vector @ vector))
        return vector / norm if norm > 0 else vector


    def _ids(self, text: str) -> list[int]:
        """The WordPiece ids of `text`, as the tokenizer gives them. Printable ASCII text is split
        into words here exactly as BERT's normaliser and pre-tokeniser split it (lower case;
        whitespace and each ASCII punctuation character apart), and each word's ids are
        remembered; any other text goes to the tokenizer whole."""
        if not text.isascii() or _CONTROL.search(text):
            return list(self._tokenizer.encode(text, add_special_tokens=False).ids)
        ids: list[int] = []
        words = self._words
        for word in _ASCII_WORDS.findall(text.lower()):
            known = words.get(word)
            if known is None:
                if len(words) >= _MAX_WORDS:
                    words.clear()
                known = words[word] = list(self._tokenizer.encode(word, add_special_tokens=False).ids)
            ids.extend(known)
        return ids


# BERT's pre-tokeniser on ASCII: runs of letters and digits, and every other printable character alone
_ASCII_WORDS = re.compile(r"[a-z0-9]+|[^a-z0-9\s]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # the normaliser drops these: the tokenizer decides
_MAX_WORDS = 200_000


def _tokenizer(directory: Path) -> Any:
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    except Exception as exc:  # noqa: BLE001 - the Rust tokenizer raises its own exception type
        raise EmbeddingModelError(f"cannot load the tokenizer of {directory}: {exc}") from exc
    tokenizer.no_padding()
    tokenizer.no_truncation()  # the request path already cuts texts (embedding_text)
    return tokenizer


def static_current(directory: Path) -> bool:
    """Whether `directory` holds an unaltered table of the current recipe."""
    table_file, digest_file = directory / STATIC_FILE, directory / STATIC_DIGEST_FILE
    if not table_file.is_file() or not digest_file.is_file():
        return False
    fields = digest_file.read_text().split()
    return len(fields) == 2 and fields[1] == f"recipe-{STATIC_RECIPE}" and fields[0] == _sha256(table_file)


def derive_static(directory: Path) -> Path:
    """Distil the table from the float source model in `directory` (see the module doc)."""
    import onnxruntime as ort

    spec = verify_model_dir(directory)
    tokenizer = _tokenizer(directory)
    vocabulary = tokenizer.get_vocab_size()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    session = ort.InferenceSession(str(directory / spec.source), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    rows = np.zeros((vocabulary, spec.dimensions), dtype=np.float32)
    for start in range(0, vocabulary, _BATCH):
        ids = np.arange(start, min(vocabulary, start + _BATCH), dtype=np.int64)
        tokens = np.stack([np.full_like(ids, cls_id), ids, np.full_like(ids, sep_id)], axis=1)
        feed = {"input_ids": tokens, "attention_mask": np.ones_like(tokens), "token_type_ids": np.zeros_like(tokens)}
        hidden = session.run([spec.output], {k: v for k, v in feed.items() if k in names})[0]
        rows[ids] = hidden.mean(axis=1)  # mean pooling over [CLS], the token and [SEP]
    centred = rows - rows.mean(axis=0)
    _u, _s, vt = np.linalg.svd(centred, full_matrices=False)
    basis = vt[:DIMENSIONS] * np.sign(vt[:DIMENSIONS, :1])  # a fixed sign per component
    table = (centred @ basis.T) * _sif_weights(vocabulary)[:, None]
    target, digest = directory / STATIC_FILE, directory / STATIC_DIGEST_FILE
    partial = directory / f".{STATIC_FILE}.partial.npy"
    np.save(partial, table.astype(np.float32))
    os.replace(partial, target)
    write_digest(target, digest, STATIC_RECIPE)
    log.info("embedding: distilled the first-look table %s (%d tokens x %d)", target, vocabulary, DIMENSIONS)
    return target


def _sif_weights(vocabulary: int) -> np.ndarray:
    counts = np.load(COUNTS_FILE).astype(np.float64)
    if counts.shape != (vocabulary,):
        counts = np.ones(vocabulary)  # another vocabulary: every token weighs the same
    p = (counts + 1) / (counts + 1).sum()
    return SIF_A / (SIF_A + p)


def count_tokens(data_dir: Path, directory: Path) -> np.ndarray:
    """Token counts of the routing prompts under `data_dir` (the shipped frequencies)."""
    from adaptive_plugin.embedding._text import embedding_text, query_text

    tokenizer = _tokenizer(directory)
    texts = []
    for name in ("dev.jsonl", "arena_bench.jsonl", "routerarena.jsonl"):
        with (data_dir / "routing" / name).open(encoding="utf-8") as fh:
            texts += [embedding_text(query_text(json.loads(line)["messages"])) for line in fh if line.strip()]
    counts = np.zeros(tokenizer.get_vocab_size(), dtype=np.uint32)
    for encoding in tokenizer.encode_batch(texts, add_special_tokens=False):
        np.add.at(counts, encoding.ids, 1)
    return counts


if __name__ == "__main__":  # python -m adaptive_plugin.embedding._static counts DATA_DIR [MODEL_DIR]
    from adaptive_plugin.embedding._embedder import default_model_dir

    if len(sys.argv) < 3 or sys.argv[1] != "counts":
        raise SystemExit("usage: python -m adaptive_plugin.embedding._static counts DATA_DIR [MODEL_DIR]")
    model_dir = Path(sys.argv[3]) if len(sys.argv) > 3 else default_model_dir()
    np.save(COUNTS_FILE, count_tokens(Path(sys.argv[2]), model_dir))
    print(f"wrote {COUNTS_FILE}", file=sys.stderr)
