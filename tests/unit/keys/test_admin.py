"""Project admin keys, and the provider-key operations of self-service (rotate, limits, order)."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adaptive_plugin.db.tables_admin import ProjectAdminKey
from adaptive_plugin.db.tables_keys import ProviderKey
from adaptive_plugin.errors import AuthenticationError, KeysError, NotFoundError, PlanError, VaultError
from adaptive_plugin.keys import KeyService, ProjectCreate, ProjectUpdate, ProviderKeyCreate, Vault, hash_api_key
from adaptive_plugin.keys.admin import (
    ADMIN_KEY_PREFIX,
    AdminKeyService,
    ProviderKeyRotate,
    ProviderKeyUpdate,
    SelfProjectUpdate,
)

SECRET_A = "sk-openai-first-key-0123456789"
SECRET_B = "sk-openai-second-key-9876543210"


@pytest.fixture()
def svc(engine: Engine) -> KeyService:
    return KeyService(engine, Vault([os.urandom(32)]))


@pytest.fixture()
def admins(engine: Engine) -> AdminKeyService:
    return AdminKeyService(engine)


def project(svc: KeyService, name: str = "acme", plan: str = "team") -> str:
    return svc.create_project(ProjectCreate(name=name, plan=plan)).id  # type: ignore[arg-type]


def add(svc: KeyService, pid: str, secret: str = SECRET_A, **kw: object) -> str:
    kw.setdefault("environment", "production")
    kw.setdefault("provider", "openai")
    return svc.add_provider_key(pid, ProviderKeyCreate(api_key=secret, **kw)).id  # type: ignore[arg-type]


# -- admin keys ------------------------------------------------------------------------------


def test_admin_key_has_its_own_prefix_and_only_its_hash_is_stored(svc: KeyService, admins: AdminKeyService,
                                                                  engine: Engine) -> None:
    pid = project(svc)
    created = admins.create(pid, label="alice")
    assert created.admin_key.startswith(ADMIN_KEY_PREFIX) and not created.admin_key.startswith("ak-")
    assert created.prefix == created.admin_key[:12]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ProjectAdminKey.__table__)).mappings().all()  # type: ignore[attr-defined]
    assert [r["key_hash"] for r in rows] == [hash_api_key(created.admin_key)]
    assert created.admin_key not in repr(list(rows))
    assert "admin_key" not in admins.list(pid)[0].model_dump()


def test_admin_key_authenticates_to_its_project_until_revoked(svc: KeyService, admins: AdminKeyService) -> None:
    pid = project(svc)
    created = admins.create(pid)
    principal = admins.authenticate(created.admin_key)
    assert principal.project_id == pid and principal.role == "project_admin" and not principal.is_operator
    assert admins.list(pid)[0].last_used_at is not None
    admins.revoke(pid, created.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        admins.authenticate(created.admin_key)
    assert not admins.is_active(created.id)


def test_keys_of_one_kind_are_refused_as_the_other(svc: KeyService, admins: AdminKeyService) -> None:
    pid = project(svc)
    admin_key = admins.create(pid).admin_key
    chat_key = svc.create_api_key(pid, "production").api_key
    with pytest.raises(AuthenticationError, match="starting with 'ak-'"):
        svc.authenticate(admin_key)  # LiteLLM's routes go through this: an admin key calls no model
    with pytest.raises(AuthenticationError, match="starting with 'pak-'"):
        admins.authenticate(chat_key)
    with pytest.raises(AuthenticationError, match="unknown"):
        admins.authenticate(ADMIN_KEY_PREFIX + "x" * 43)


def test_admin_key_of_another_project_cannot_be_revoked_through_this_one(svc: KeyService, admins: AdminKeyService) -> None:
    a, b = project(svc, "a"), project(svc, "b")
    key_b = admins.create(b)
    with pytest.raises(NotFoundError):
        admins.revoke(a, key_b.id)
    assert admins.is_active(key_b.id)
    with pytest.raises(NotFoundError):
        admins.create("prj_missing")


# -- rotation --------------------------------------------------------------------------------


def test_rotation_adds_the_new_key_in_the_old_ones_place_and_revokes_the_old(svc: KeyService) -> None:
    pid = project(svc)
    old_id = add(svc, pid, priority=7, spend_cap_usd=Decimal("5"), spend_cap_period="day", rpm_limit=30)
    new, old = svc.rotate_provider_key(pid, old_id, SECRET_B)
    assert (new.priority, new.spend_cap_usd, new.spend_cap_period, new.rpm_limit) == (7, Decimal("5"), "day", 30)
    assert new.last4 == SECRET_B[-4:] and new.status == "active"
    assert old.id == old_id and old.status == "revoked" and new.fingerprint in (old.status_reason or "")
    assert [k.secret for k in svc.active_keys(pid, "production")] == [SECRET_B]


def test_rotation_that_fails_changes_nothing(svc: KeyService, engine: Engine) -> None:
    pid = project(svc)
    key_id = add(svc, pid)
    with pytest.raises(KeysError, match="is the key being rotated"):
        svc.rotate_provider_key(pid, key_id, SECRET_A)
    broken = KeyService(engine, Vault([os.urandom(32)]))
    broken.vault.encrypt = lambda *a, **k: (_ for _ in ()).throw(VaultError("vault down"))  # type: ignore[method-assign]
    with pytest.raises(VaultError):
        broken.rotate_provider_key(pid, key_id, SECRET_B)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ProviderKey.id, ProviderKey.status)).all()
    assert rows == [(key_id, "active")]
    svc.set_provider_key_status(pid, key_id, "revoked", "x")
    with pytest.raises(KeysError, match="revoked; add a new key"):
        svc.rotate_provider_key(pid, key_id, SECRET_B)


def test_rotation_is_scoped_to_the_project_and_its_plan(svc: KeyService) -> None:
    a, b = project(svc, "a"), project(svc, "b")
    key_b = add(svc, b)
    with pytest.raises(NotFoundError):
        svc.rotate_provider_key(a, key_b, SECRET_B)
    svc.update_project(b, ProjectUpdate(plan="developer"))
    with pytest.raises(PlanError):
        svc.rotate_provider_key(b, key_b, SECRET_B)


def test_rotation_input_is_cleaned_and_checked() -> None:
    assert ProviderKeyRotate(api_key="  sk-abcdefgh12  ").api_key == "sk-abcdefgh12"
    with pytest.raises(ValueError, match="whitespace"):
        ProviderKeyRotate(api_key="sk-abc defgh12")
    with pytest.raises(ValueError):
        ProviderKeyRotate(api_key="short")
    assert "sk-abcdefgh12" not in repr(ProviderKeyRotate(api_key="sk-abcdefgh12"))


# -- limits and order ------------------------------------------------------------------------


def test_limits_are_set_and_cleared(svc: KeyService) -> None:
    pid = project(svc)
    key_id = add(svc, pid)
    changes = ProviderKeyUpdate(priority=3, spend_cap_usd=Decimal("2.5"), spend_cap_period="month", rpm_limit=60)
    view = svc.update_provider_key(pid, key_id, changes.model_dump(exclude_unset=True))
    assert (view.priority, view.spend_cap_usd, view.spend_cap_period, view.rpm_limit) == (3, Decimal("2.5"), "month", 60)
    resolved = svc.active_keys(pid, "production")[0]
    assert resolved.spend_cap_micros == 2_500_000 and resolved.rpm_limit == 60
    cleared = ProviderKeyUpdate(spend_cap_usd=None, spend_cap_period=None, rpm_limit=None)
    view = svc.update_provider_key(pid, key_id, cleared.model_dump(exclude_unset=True))
    assert (view.priority, view.spend_cap_usd, view.rpm_limit) == (3, None, None)
    with pytest.raises(KeysError, match="go together"):
        svc.update_provider_key(pid, key_id, {"spend_cap_usd": Decimal("1")})
    with pytest.raises(ValueError, match="priority cannot be cleared"):
        ProviderKeyUpdate(priority=None)


def test_reorder_sets_the_try_order_of_one_provider(svc: KeyService) -> None:
    pid = project(svc)
    first, second = add(svc, pid, priority=1), add(svc, pid, SECRET_B, priority=2)
    add(svc, pid, "sk-ant-other-provider-key-1", provider="anthropic")
    svc.reorder_provider_keys(pid, "production", "OpenAI", [second, first])
    assert [k.id for k in svc.active_keys(pid, "production") if k.provider == "openai"] == [second, first]
    with pytest.raises(KeysError, match="name every openai key"):
        svc.reorder_provider_keys(pid, "production", "openai", [second])
    with pytest.raises(KeysError, match="name every openai key"):
        svc.reorder_provider_keys(pid, "production", "openai", [second, first, first])


def test_self_service_project_update_leaves_the_plan_to_the_operator() -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        SelfProjectUpdate.model_validate({"plan": "enterprise"})
    with pytest.raises(ValueError, match="fallback must be"):
        SelfProjectUpdate.model_validate({"fallback": None})
    spec = SelfProjectUpdate(allowed_models=[" gpt-4o ", "gpt-4o", "claude-haiku-4-5", ""])
    assert spec.allowed_models == ["claude-haiku-4-5", "gpt-4o"]
    assert SelfProjectUpdate(default_cost_bias=None).model_dump(exclude_unset=True) == {"default_cost_bias": None}
