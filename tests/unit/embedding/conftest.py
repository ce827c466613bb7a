"""The embedding tests' model directories: copies of the fetched model's pinned files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adaptive_plugin.embedding import default_model_dir
from adaptive_plugin.embedding._fetch import DEFAULT_MODEL, MODELS, derive_quantized
from adaptive_plugin.embedding._static import STATIC_DIGEST_FILE, STATIC_FILE, static_current


def fetched_dir(model: str = DEFAULT_MODEL) -> Path:
    """Where `fetch-model` put `model` on this machine (the default model: `default_model_dir()`)."""
    return default_model_dir() if model == DEFAULT_MODEL else default_model_dir().parent / MODELS[model].directory_name


def copy_source(target: Path, model: str = DEFAULT_MODEL) -> Path:
    """A new model directory holding only the pinned source files (nothing derived)."""
    source = fetched_dir(model)
    if model != DEFAULT_MODEL and not (source / MODELS[model].source).is_file():
        pytest.skip(f"{model} is not fetched on this machine (`adaptive-plugin fetch-model --model {model}`)")
    target.mkdir(parents=True)
    for _req, _member, name, _digest in MODELS[model].files:
        shutil.copyfile(source / name, target / name)
    return target


@pytest.fixture(scope="session")
def derived_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory with the integer model as `fetch-model` derives it (tests copy it before altering it)."""
    directory = copy_source(tmp_path_factory.mktemp("model") / "m")
    derive_quantized(directory)
    copy_static_table(directory)
    return directory


def copy_static_table(target: Path) -> None:
    """The first-look table `fetch-model` distilled on this machine, so that tests which call
    `fetch_model` on a copy do not distil it again (15 s each; `test_static.py` distils it once)."""
    source = fetched_dir()
    if static_current(source):
        for name in (STATIC_FILE, STATIC_DIGEST_FILE):
            shutil.copyfile(source / name, target / name)


@pytest.fixture(scope="session")
def rowwise_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model derived row by row (recipe 3): batches are exact, so the worker batches."""
    directory = copy_source(tmp_path_factory.mktemp("rowwise") / "m")
    derive_quantized(directory, rowwise=True)
    return directory
