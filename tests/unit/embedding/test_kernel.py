"""The integer kernel: the derived model gives the vectors it was trained on, on whatever CPU runs it.

On an AVX2 CPU without VNNI, onnxruntime's u8s8 products saturate in 16 bits; there the
embedder multiplies with the u8u8 kernel instead (`_kernel`). These tests hold on both kinds of
CPU: what they compare is exact integer arithmetic and the vectors the shipped artifacts know.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from adaptive_plugin.embedding import Embedder
from adaptive_plugin.embedding._check import AGREEMENT, CHECK_FILE, CHECK_TEXTS, recorded_check
from adaptive_plugin.embedding._fetch import DEFAULT_MODEL, MODELS, QUANTIZED_FILE, fetch_model
from adaptive_plugin.embedding._kernel import PROBE_FILE, probe_model, u8s8_is_exact, unsigned_weights
from adaptive_plugin.errors import EmbeddingModelError

REFERENCE = Path(__file__).with_name("reference_vectors.json")


def _matmul_model(weights: np.ndarray, zero: int | None):
    from onnx import TensorProto, helper, numpy_helper

    inputs = ["a", "w", "a_zero"] + (["w_zero"] if zero is not None else [])
    constants = [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.array(0, np.uint8), "a_zero")]
    if zero is not None:
        constants.append(numpy_helper.from_array(np.array(zero, np.int8), "w_zero"))
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", inputs, ["y"])], "g",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, weights.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [None, weights.shape[1]])], initializer=constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run(model, a: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"a": a})[0]


@pytest.mark.parametrize("zero", [0, None], ids=["zero-point", "no-zero-point"])
def test_unsigned_weights_compute_the_exact_integer_products_on_this_cpu(zero: int | None) -> None:
    """Full-range activations against full-range weights: the u8u8 form gives numpy's exact
    int64 products; the u8s8 form does too exactly where the probe says u8s8 is exact."""
    rng = np.random.default_rng(7)
    weights = rng.integers(-127, 128, size=(96, 24)).astype(np.int8)
    weights[:4] = 127  # pairs of large products: what a 16-bit pair sum cannot hold
    a = rng.integers(0, 256, size=(5, 96)).astype(np.uint8)
    a[:, :4] = 255
    exact = a.astype(np.int64) @ weights.astype(np.int64)
    signed = _run(_matmul_model(weights, zero), a)
    unsigned = _run(unsigned_weights(_matmul_model(weights, zero)), a)
    np.testing.assert_array_equal(unsigned, exact)
    assert np.array_equal(signed, exact) == u8s8_is_exact()


def test_the_shipped_probe_is_the_graph_the_code_builds() -> None:
    import onnx

    shipped = onnx.load(str(PROBE_FILE))
    assert shipped.graph == probe_model().graph


def test_the_derived_model_uses_an_exact_kernel_and_gives_the_trained_on_vectors(derived_dir: Path) -> None:
    """What the router and the cache were trained on: the derived model's vectors of the check
    texts where its products are exact (recorded on a CPU with VNNI, `reference_vectors.json`).
    With the saturating u8s8 kernel on an AVX2 CPU they agreed to a mean cosine of only 0.993."""
    embedder = Embedder.from_directory(derived_dir)
    assert embedder.kernel == ("u8s8" if u8s8_is_exact() else "u8u8")
    assert embedder.identity == f"{DEFAULT_MODEL}:{QUANTIZED_FILE}:{(derived_dir / QUANTIZED_FILE).stat().st_size}"
    reference = json.loads(REFERENCE.read_text())
    assert reference["texts"] == list(CHECK_TEXTS)
    expected = np.frombuffer(base64.b64decode(reference["vectors"]), dtype="<f4").reshape(len(CHECK_TEXTS), -1)
    cosines = (np.stack([embedder.embed_one(t) for t in CHECK_TEXTS]) * expected).sum(axis=1)
    assert cosines.mean() >= AGREEMENT and cosines.min() >= 0.99, cosines
    # and the other kernel computes the same products here
    other = Embedder.from_directory(derived_dir, kernel="u8u8", check=False)
    np.testing.assert_allclose(other.embed_one(CHECK_TEXTS[3]), embedder.embed_one(CHECK_TEXTS[3]), atol=1e-5)


def test_fetch_model_records_the_check_and_load_compares_with_it(derived_dir: Path) -> None:
    record = recorded_check(derived_dir)
    assert record is not None and record.kernel in ("u8s8", "u8u8")
    # measured on 6,847 cache texts: mean 0.9949, lowest 0.9745 to the float model (bench/RESULTS.md)
    assert record.source_mean >= 0.99 and record.source_min >= 0.97
    embedder = Embedder.from_directory(derived_dir)
    assert embedder.check_cosine is not None and embedder.check_cosine >= AGREEMENT


def test_a_model_that_computes_other_vectors_here_falls_back_to_the_float_model(
    derived_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A model directory derived on another CPU whose vectors this CPU does not reproduce (here:
    the recorded vectors of another model) is not used: the float source model is, and says why."""
    directory = tmp_path / "moved"
    shutil.copytree(derived_dir, directory)
    body = json.loads((directory / CHECK_FILE).read_text())
    vectors = np.frombuffer(base64.b64decode(body["vectors"]), dtype="<f4").reshape(len(CHECK_TEXTS), -1)
    body["vectors"] = base64.b64encode(np.roll(vectors, 1, axis=0).astype("<f4").tobytes()).decode()
    (directory / CHECK_FILE).write_text(json.dumps(body))
    with caplog.at_level(logging.WARNING, logger="adaptive_plugin.embedding._embedder"):
        embedder = Embedder.from_directory(directory)
    assert embedder.identity.startswith(f"{DEFAULT_MODEL}:{MODELS[DEFAULT_MODEL].source}:")
    assert embedder.numerics.startswith("float32 source model: the integer model's check failed on this CPU")
    assert "does not give the vectors it gave where it was derived" in caplog.text
    assert embedder.check_cosine is not None and embedder.check_cosine < AGREEMENT


def test_a_directory_without_a_check_warns_and_fetch_model_records_it(
    derived_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "older"
    shutil.copytree(derived_dir, directory)
    (directory / CHECK_FILE).unlink()
    derived = (directory / QUANTIZED_FILE).read_bytes()
    with caplog.at_level(logging.WARNING, logger="adaptive_plugin.embedding._embedder"):
        embedder = Embedder.from_directory(directory)
    assert embedder.kernel and "records no check of its integer model" in caplog.text
    fetch_model(directory)  # no download, no new derivation: only the check is recorded
    assert recorded_check(directory) is not None
    assert (directory / QUANTIZED_FILE).read_bytes() == derived


def test_an_unknown_kernel_is_a_named_error(derived_dir: Path) -> None:
    with pytest.raises(EmbeddingModelError, match="unknown integer kernel 'avx9'"):
        Embedder.from_directory(derived_dir, kernel="avx9")


@pytest.mark.slow  # two CLI processes that each load the model: about 5 s
def test_check_reports_the_kernel_and_the_fallback(derived_dir: Path, tmp_path: Path) -> None:
    """`adaptive-plugin check` says how this CPU computes the model, and warns when it fell back."""
    import os
    import subprocess
    import sys

    from adaptive_plugin.config import Settings

    moved = tmp_path / "moved"
    shutil.copytree(derived_dir, moved)
    body = json.loads((moved / CHECK_FILE).read_text())
    body["vectors"] = base64.b64encode(np.zeros((len(CHECK_TEXTS), 384), "<f4").tobytes()).decode()
    (moved / CHECK_FILE).write_text(json.dumps(body))
    keep = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTIVE_")}
    for directory, fell_back in ((derived_dir, False), (moved, True)):
        env = {**keep, "ADAPTIVE_MASTER_KEYS": Settings.generate_master_key(), "ADAPTIVE_EMBEDDING_PROCESS": "false",
               "ADAPTIVE_STATE_DIR": str(tmp_path / f"state-{fell_back}"), "ADAPTIVE_EMBEDDING_MODEL_DIR": str(directory)}
        run = subprocess.run([sys.executable, "-m", "adaptive_plugin.cli", "check"], env=env, capture_output=True,
                             text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)["embedding"]
        if fell_back:
            assert report["kernel"] is None and report["check_cosine"] < report["check_threshold"]
            assert report["numerics"].startswith("float32 source model: the integer model's check failed")
            assert "warning: embedding: float32 source model" in run.stderr
        else:
            assert report["kernel"] == ("u8s8" if u8s8_is_exact() else "u8u8") and report["check_cosine"] >= AGREEMENT
            assert "warning" not in run.stderr


def write_reference(directory: Path) -> None:
    """Record `reference_vectors.json` from the derived model in `directory`, on a CPU whose u8s8
    kernel is exact (`python -m tests.unit.embedding.test_kernel [MODEL_DIR]`)."""
    embedder = Embedder.from_directory(directory, check=False)
    if embedder.kernel != "u8s8":
        raise SystemExit("record the reference on a CPU whose u8s8 kernel is exact (with VNNI)")
    vectors = np.stack([embedder.embed_one(t) for t in CHECK_TEXTS]).astype("<f4")
    REFERENCE.write_text(json.dumps({"identity": embedder.identity, "numerics": embedder.numerics,
                                     "texts": list(CHECK_TEXTS),
                                     "vectors": base64.b64encode(vectors.tobytes()).decode()}, indent=1) + "\n")


if __name__ == "__main__":
    import sys

    from adaptive_plugin.embedding import default_model_dir

    write_reference(Path(sys.argv[1]) if len(sys.argv) > 1 else default_model_dir())
