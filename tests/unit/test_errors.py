"""The error tree: one root, stable codes, and a module docstring that draws it truthfully."""

from __future__ import annotations

import inspect
import re

import pytest

from adaptive_plugin import errors
from adaptive_plugin.errors import AdaptiveError
from tests.unit._trees import drawn_tree

CLASSES = [obj for _, obj in inspect.getmembers(errors, inspect.isclass) if issubclass(obj, AdaptiveError)]
LEAVES = [cls for cls in CLASSES if not cls.__subclasses__()]


def test_every_error_is_exported_and_named_error() -> None:
    assert sorted(cls.__name__ for cls in CLASSES) == sorted(errors.__all__)
    for cls in CLASSES:
        assert cls.__name__.endswith("Error")
        assert cls.__module__ == "adaptive_plugin.errors"


def test_one_root_one_level_of_branches() -> None:
    for cls in CLASSES:
        assert issubclass(cls, AdaptiveError)
        assert len(cls.__mro__) - cls.__mro__.index(AdaptiveError) <= 4  # leaf -> branch -> root -> Exception


def test_codes_are_unique_and_machine_readable() -> None:
    codes = [cls.code for cls in CLASSES]
    assert len(set(codes)) == len(codes)
    for code in codes:
        assert re.fullmatch(r"[a-z][a-z_]*[a-z]", code), code


@pytest.mark.parametrize("cls", LEAVES, ids=lambda c: c.__name__)
def test_leaves_carry_their_own_status_and_code(cls: type[AdaptiveError]) -> None:
    assert "code" in vars(cls) and "status_code" in vars(cls)
    assert 400 <= cls.status_code <= 599


@pytest.mark.parametrize(
    "cls, status, code",
    [
        (errors.AuthenticationError, 401, "invalid_api_key"),
        (errors.PlanError, 403, "plan_not_allowed"),
        (errors.NotFoundError, 404, "not_found"),
        (errors.NoKeyAvailableError, 424, "no_provider_key"),
        (errors.DatabaseUnavailableError, 503, "database_unavailable"),
        (errors.NoCandidateError, 400, "no_candidate_model"),
        (errors.ConfigError, 500, "config_invalid"),
    ],
)
def test_status_codes_clients_rely_on(cls: type[AdaptiveError], status: int, code: str) -> None:
    assert (cls.status_code, cls.code) == (status, code)


def test_message_and_to_dict() -> None:
    exc = errors.PlanError("needs the team plan")
    assert str(exc) == exc.message == "needs the team plan"
    assert exc.to_dict() == {"error": {"message": "needs the team plan", "type": "adaptive_error", "code": "plan_not_allowed"}}


def test_branches_catch_their_leaves() -> None:
    with pytest.raises(errors.StorageError):
        raise errors.DatabaseUnavailableError("down")
    with pytest.raises(errors.KeysError):
        raise errors.VaultError("bad key")
    with pytest.raises(errors.CacheError):
        raise errors.CacheIndexError("corrupt")
    with pytest.raises(errors.RoutingError):
        raise errors.NoCandidateError("none")


def test_module_docstring_draws_the_real_tree() -> None:
    drawn = drawn_tree(errors.__doc__ or "")
    real = {cls.__name__: (None if cls is AdaptiveError else cls.__mro__[1].__name__) for cls in CLASSES}
    assert drawn == real
