"""`__all__` is honest, and the package never imports litellm."""

from __future__ import annotations

import subprocess
import sys
import types

import adaptive_plugin.routing as routing


def test_all_names_exist_and_every_public_name_is_exported() -> None:
    for name in routing.__all__:
        assert hasattr(routing, name), name
    public = {
        name
        for name, value in vars(routing).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert public == set(routing.__all__)


def test_routing_does_not_import_litellm() -> None:
    code = "import sys, adaptive_plugin.routing, adaptive_plugin.routing.train; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
