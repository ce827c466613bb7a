"""The embedding tests' model directories: copies of the fetched model's pinned files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adaptive_plugin.embedding import default_model_dir
from adaptive_plugin.embedding._fetch import MODEL_FILES, derive_quantized


def copy_source(target: Path) -> Path:
    """A new model directory holding only the pinned source files (nothing derived)."""
    target.mkdir(parents=True)
    for _req, _member, name, _digest in MODEL_FILES:
        shutil.copyfile(default_model_dir() / name, target / name)
    return target


@pytest.fixture(scope="session")
def derived_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory with the integer model as `fetch-model` derives it (tests copy it before altering it)."""
    directory = copy_source(tmp_path_factory.mktemp("model") / "m")
    derive_quantized(directory)
    return directory
