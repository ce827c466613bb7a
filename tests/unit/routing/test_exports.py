"""`__all__` is honest, and the package never imports litellm."""

from __future__ import annotations

import subprocess
import sys

import adaptive_plugin.routing as routing


def test_all_names_exist_and_public_names_are_exported() -> None:
    for name in routing.__all__:
        assert hasattr(routing, name), name
    public = {n for n in vars(routing) if not n.startswith("_")} - {"annotations", "selection", "quality"}
    assert public <= set(routing.__all__) | {n for n in public if n.startswith("_")}


def test_routing_does_not_import_litellm() -> None:
    code = "import sys, adaptive_plugin.routing, adaptive_plugin.routing.train; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
