"""Each package's `__all__` is honest: it names things that exist, and every public name is in it.

As httpx's tests/test_exported_members.py. Sub-modules are not exports; private helpers start
with an underscore.
"""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = [
    "adaptive_plugin.errors",
    "adaptive_plugin.keys",
    "adaptive_plugin.billing",
    "adaptive_plugin.embedding",
    "adaptive_plugin.db",
    "adaptive_plugin.cache",
    "adaptive_plugin.routing",
    "adaptive_plugin.limits",
]
NOT_EXPORTS = {"annotations"}  # `from __future__ import annotations`


def load(name: str) -> types.ModuleType:
    module = importlib.import_module(name)
    if not hasattr(module, "__all__"):
        pytest.skip(f"{name} defines no __all__ (yet)")
    return module


def public_names(module: types.ModuleType) -> set[str]:
    return {
        name for name, value in vars(module).items()
        if not name.startswith("_") and name not in NOT_EXPORTS and not isinstance(value, types.ModuleType)
    }


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_exist(name: str) -> None:
    module = load(name)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), "duplicates in __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == []


@pytest.mark.parametrize("name", PACKAGES)
def test_public_names_are_exported(name: str) -> None:
    module = load(name)
    assert public_names(module) - set(module.__all__) == set()


@pytest.mark.parametrize("name", PACKAGES)
def test_star_import_gives_exactly_all(name: str) -> None:
    module = load(name)
    namespace: dict[str, object] = {}
    exec(f"from {name} import *", namespace)  # noqa: S102 - the import users write
    assert set(namespace) - {"__builtins__"} == set(module.__all__)


def test_the_error_tree_is_reachable_from_the_packages_that_raise_it() -> None:
    from adaptive_plugin import errors, keys

    assert keys.KeyService.__module__ == "adaptive_plugin.keys.service"
    assert set(errors.__all__) >= {"VaultError", "PlanError", "AuthenticationError", "NoKeyAvailableError"}
