"""The derived model's fused attention and GELU: same vectors, its checks, its fallbacks."""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from adaptive_plugin.embedding import Embedder, _fetch, fetch_model
from adaptive_plugin.embedding._fetch import DEFAULT_MODEL, MODELS, QUANTIZED_DIGEST_FILE, QUANTIZED_FILE, derive_quantized
from adaptive_plugin.embedding._fuse import NoMatch, fuse
from tests.unit.embedding.conftest import copy_source, copy_static_table

# starts proxy processes (or derives models) of its own: `-m "not slow"` leaves it out
pytestmark = pytest.mark.slow


TEXTS = [
    "How do I reset my password?",
    "Explain the difference between TCP and UDP in two sentences.",
    "hi",
    "",
    "word " * 400,  # longer than the tokenizer's limit
]


def _ops(directory: Path) -> Counter[str]:
    return Counter(node.op_type for node in onnx.load(str(directory / QUANTIZED_FILE)).graph.node)


@pytest.fixture(scope="module")
def unfused_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The integer model as recipe 1 derived it: quantized, nothing fused."""
    directory = copy_source(tmp_path_factory.mktemp("unfused") / "m")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_fetch, "_fused", lambda _directory, unfused: unfused)
        derive_quantized(directory)
    copy_static_table(directory)
    return directory


def test_each_layer_has_one_attention_and_one_gelu_node(derived_dir: Path, unfused_dir: Path) -> None:
    fused, unfused = _ops(derived_dir), _ops(unfused_dir)
    layers = unfused["Softmax"]
    assert layers == MODELS[DEFAULT_MODEL].layers and unfused["Erf"] == layers
    assert fused["MultiHeadAttention"] == layers and fused["Gelu"] == layers
    assert not {"Softmax", "Erf", "Transpose", "IsNaN"} & set(fused)
    # all-MiniLM-L6-v2's export guards each softmax with Where(IsNaN(p), 0, p): gone with it
    model = onnx.load(str(unfused_dir / QUANTIZED_FILE))
    softmaxes = {n.output[0] for n in model.graph.node if n.op_type == "Softmax"}
    guards = sum(1 for n in model.graph.node if n.op_type == "Where" and n.input[2] in softmaxes)
    assert fused["Where"] <= unfused["Where"] - guards
    assert sum(fused.values()) < 0.8 * sum(unfused.values())
    assert (derived_dir / QUANTIZED_DIGEST_FILE).read_text().split()[1] == f"recipe-{MODELS[DEFAULT_MODEL].recipe}"


def test_the_fused_model_gives_the_unfused_models_vectors(derived_dir: Path, unfused_dir: Path) -> None:
    """One text at a time (the request path) and in padded batches (routing, bulk loads): the
    fused attention's key padding mask must ignore the padding exactly like the export's mask."""
    fused, unfused = Embedder.from_directory(derived_dir), Embedder.from_directory(unfused_dir)
    for text in TEXTS:
        assert float(fused.embed_one(text) @ unfused.embed_one(text)) > 0.9999
    batch = (fused.embed(TEXTS) * unfused.embed(TEXTS)).sum(axis=1)
    assert np.all(batch > 0.9999), batch


def test_a_graph_of_another_shape_is_not_fused_and_says_where(unfused_dir: Path) -> None:
    model = onnx.load(str(unfused_dir / QUANTIZED_FILE))
    erf = next(node for node in model.graph.node if node.op_type == "Erf")
    divisor = next(node for node in model.graph.node if erf.input[0] in node.output).input[1]
    for tensor in model.graph.initializer:
        if tensor.name == divisor:  # x / 1.5 instead of x / sqrt(2): not GELU
            tensor.CopyFrom(onnx.numpy_helper.from_array(np.array(1.5, dtype=np.float32), divisor))
    with pytest.raises(NoMatch, match="does not divide by sqrt"):
        fuse(model)
    # the model it was given is left as it was
    assert Counter(n.op_type for n in model.graph.node)["Erf"] == MODELS[DEFAULT_MODEL].layers


def test_when_fusing_fails_the_unfused_model_is_kept_with_a_warning(
    tmp_path: Path, unfused_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    directory = copy_source(tmp_path / "m")

    def no_match(_model: object) -> None:
        raise NoMatch("7 softmax and 6 erf nodes")

    monkeypatch.setattr("adaptive_plugin.embedding._fuse.fuse", no_match)
    with caplog.at_level(logging.WARNING, logger="adaptive_plugin.embedding._fetch"):
        derive_quantized(directory)
    assert "were not fused (7 softmax and 6 erf nodes)" in caplog.text
    assert (directory / QUANTIZED_FILE).read_bytes() == (unfused_dir / QUANTIZED_FILE).read_bytes()


def test_a_fused_model_that_disagrees_is_not_kept(
    tmp_path: Path, unfused_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    directory = copy_source(tmp_path / "m")
    monkeypatch.setattr(_fetch, "MIN_FUSED_COSINE", 1.01)  # no fused model can pass
    with caplog.at_level(logging.WARNING, logger="adaptive_plugin.embedding._fetch"):
        derive_quantized(directory)
    assert "keeping the unfused model" in caplog.text
    assert (directory / QUANTIZED_FILE).read_bytes() == (unfused_dir / QUANTIZED_FILE).read_bytes()


def test_a_model_of_the_older_recipe_warns_and_fetch_model_derives_it_again(
    tmp_path: Path, unfused_dir: Path, derived_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An upgrade keeps working on the old file (its digest still checks) and says how to get
    the faster one; `fetch-model` then derives it without downloading anything."""
    directory = tmp_path / "upgraded"
    shutil.copytree(unfused_dir, directory)
    digest = (directory / QUANTIZED_DIGEST_FILE).read_text().split()[0]
    (directory / QUANTIZED_DIGEST_FILE).write_text(digest + "\n")  # what recipe 1 wrote
    with caplog.at_level(logging.WARNING, logger="adaptive_plugin.embedding._embedder"):
        old = Embedder.from_directory(directory)
    assert "derived by another version of the plugin" in caplog.text
    assert "Run `adaptive-plugin fetch-model`" in caplog.text
    fetch_model(directory)
    assert (directory / QUANTIZED_FILE).read_bytes() == (derived_dir / QUANTIZED_FILE).read_bytes()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="adaptive_plugin.embedding._embedder"):
        new = Embedder.from_directory(directory)
    assert caplog.text == ""
    assert new.identity != old.identity  # offline embedding caches (routing training) are not reused
