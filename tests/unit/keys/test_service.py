"""KeyService over a real SQLite file: projects, gateway API keys, the provider-key vault."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from adaptive_plugin.errors import (
    AuthenticationError,
    KeyFormatError,
    KeysError,
    NotFoundError,
    PlanError,
    UnknownProviderError,
    VaultError,
)
from adaptive_plugin.keys import (
    KeyService,
    ProjectCreate,
    ProjectUpdate,
    ProviderKeyCreate,
    Vault,
    fingerprint,
    hash_api_key,
    master_key_id,
)

K1, K2 = os.urandom(32), os.urandom(32)
OPENAI_SECRET = "sk-openai-secret-0123456789abcdef"


@pytest.fixture()
def svc(engine: Engine) -> KeyService:
    return KeyService(engine, Vault([K1]))


def team(svc: KeyService, name: str = "acme", **kw: object) -> str:
    return svc.create_project(ProjectCreate(name=name, plan="team", **kw)).id  # type: ignore[arg-type]


def add_key(svc: KeyService, project_id: str, secret: str = OPENAI_SECRET, **kw: object) -> str:
    kw.setdefault("environment", "production")
    kw.setdefault("provider", "openai")
    return svc.add_provider_key(project_id, ProviderKeyCreate(api_key=secret, **kw)).id  # type: ignore[arg-type]


def db_bytes(engine: Engine) -> bytes:
    engine.dispose()  # the last connection to close checkpoints the WAL
    path = Path(str(engine.url.database))
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


# -- projects --------------------------------------------------------------------------------


def test_create_find_list_update_project(svc: KeyService) -> None:
    p = svc.create_project(ProjectCreate(name="acme", plan="team", allowed_models=["gpt-4o-mini"], default_cost_bias=0.2))
    assert (p.plan, p.fallback, p.allowed_models, p.cache_enabled) == ("team", "pooled", ["gpt-4o-mini"], True)
    assert svc.find_project("acme").id == p.id == svc.find_project(p.id).id
    assert [x.id for x in svc.list_projects()] == [p.id]
    updated = svc.update_project(p.id, ProjectUpdate(fallback="byok_only", allowed_models=None))
    assert updated.fallback == "byok_only" and updated.allowed_models is None
    assert updated.default_cost_bias == 0.2  # fields not given are kept


def test_duplicate_project_name_is_refused(svc: KeyService) -> None:
    team(svc, "acme")
    with pytest.raises(KeysError, match="'acme' already exists"):
        team(svc, "acme")


def test_unknown_project_is_not_found(svc: KeyService) -> None:
    with pytest.raises(NotFoundError, match="'nope' not found"):
        svc.find_project("nope")
    with pytest.raises(NotFoundError):
        svc.create_api_key("prj_missing", "dev")
    with pytest.raises(NotFoundError):
        add_key(svc, "prj_missing")


# -- gateway API keys ------------------------------------------------------------------------


def test_api_key_authenticates_to_its_project_and_environment(svc: KeyService) -> None:
    pid = team(svc, allowed_models=["gpt-4o-mini", "auto"])
    created = svc.create_api_key(pid, "staging")
    assert created.api_key.startswith("ak-stg-") and created.prefix == created.api_key[:10]
    who = svc.authenticate(created.api_key)
    assert (who.project_id, who.environment, who.plan, who.api_key_id) == (pid, "staging", "team", created.id)
    assert who.allowed_models == frozenset({"gpt-4o-mini", "auto"})
    assert who.scope == f"{pid}/staging" and who.byok_allowed


def test_only_the_api_key_hash_is_stored(svc: KeyService, engine: Engine) -> None:
    pid = team(svc)
    token = svc.create_api_key(pid, "production").api_key
    listed = svc.list_api_keys(pid)
    assert len(listed) == 1 and not hasattr(listed[0], "api_key")
    raw = db_bytes(engine)
    assert token.encode() not in raw
    assert token.split("-", 2)[2].encode() not in raw  # not even the random part
    assert hash_api_key(token).encode() in raw


def test_authenticate_unknown_revoked_and_malformed_differ(svc: KeyService) -> None:
    pid = team(svc)
    created = svc.create_api_key(pid, "dev")
    messages = set()
    with pytest.raises(AuthenticationError, match="unknown API key") as info:
        svc.authenticate("ak-dev-" + "x" * 43)
    messages.add(str(info.value))
    for bad in ["", "sk-not-ours", "ak-" + "x" * 300]:
        with pytest.raises(AuthenticationError, match="malformed API key") as info:
            svc.authenticate(bad)
        messages.add(str(info.value))
    svc.revoke_api_key(pid, created.id)
    with pytest.raises(AuthenticationError, match="revoked") as info:
        svc.authenticate(created.api_key)
    messages.add(str(info.value))
    assert len(messages) == 3
    assert all(created.api_key not in m for m in messages)
    assert AuthenticationError.status_code == 401


def test_revoke_is_idempotent_and_scoped_to_the_project(svc: KeyService) -> None:
    a, b = team(svc, "a"), team(svc, "b")
    key = svc.create_api_key(a, "dev")
    with pytest.raises(NotFoundError):
        svc.revoke_api_key(b, key.id)
    first = svc.revoke_api_key(a, key.id).revoked_at
    again = svc.revoke_api_key(a, key.id).revoked_at
    assert first is not None and again is not None
    assert again.replace(tzinfo=None) == first.replace(tzinfo=None)  # SQLite drops the offset


def test_unknown_environment_is_refused(svc: KeyService) -> None:
    with pytest.raises(KeysError, match="environment must be one of dev, staging, production"):
        svc.create_api_key(team(svc), "prod")


# -- provider keys -------------------------------------------------------------------------


@pytest.mark.parametrize("plan", ["developer"])
def test_developer_plan_cannot_bring_keys(svc: KeyService, plan: str) -> None:
    pid = svc.create_project(ProjectCreate(name="solo", plan=plan)).id  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="team or enterprise") as info:
        add_key(svc, pid)
    assert "'solo'" in str(info.value) and info.value.status_code == 403
    assert svc.list_provider_keys(pid) == []


def test_enterprise_plan_can_bring_keys(svc: KeyService) -> None:
    pid = svc.create_project(ProjectCreate(name="big", plan="enterprise")).id
    add_key(svc, pid)
    assert len(svc.active_keys(pid, "production")) == 1


def test_provider_key_is_encrypted_and_never_shown(svc: KeyService, engine: Engine) -> None:
    pid = team(svc)
    view = svc.add_provider_key(
        pid, ProviderKeyCreate(environment="production", provider=" OpenAI ", api_key=OPENAI_SECRET,
                               spend_cap_usd=Decimal("12.5"), spend_cap_period="month", rpm_limit=60),
    )
    assert view.provider == "openai" and view.last4 == OPENAI_SECRET[-4:]
    assert view.fingerprint == fingerprint(OPENAI_SECRET) and view.master_key_id == master_key_id(K1)
    assert OPENAI_SECRET not in view.model_dump_json()
    [resolved] = svc.active_keys(pid, "production")
    assert resolved.secret == OPENAI_SECRET and OPENAI_SECRET not in repr(resolved)
    assert (resolved.spend_cap_micros, resolved.spend_cap_period, resolved.rpm_limit) == (12_500_000, "month", 60)
    assert OPENAI_SECRET.encode() not in db_bytes(engine)


def test_active_keys_by_environment_provider_priority_and_status(svc: KeyService) -> None:
    pid = team(svc)
    late = add_key(svc, pid, "sk-openai-second-key", priority=200)
    first = add_key(svc, pid, "sk-openai-first-key", priority=10)
    claude = add_key(svc, pid, "sk-ant-key-000000", provider="anthropic")
    add_key(svc, pid, "sk-openai-dev-key", environment="dev")
    revoked = add_key(svc, pid, "sk-openai-revoked", priority=1)
    svc.set_provider_key_status(pid, revoked, "revoked", "leaked")
    assert [k.id for k in svc.active_keys(pid, "production")] == [claude, first, late]
    svc.set_provider_key_status(pid, revoked, "active")
    assert [k.id for k in svc.active_keys(pid, "production")][:2] == [claude, revoked]


def test_status_change_and_delete_are_scoped(svc: KeyService) -> None:
    a, b = team(svc, "a"), team(svc, "b")
    key = add_key(svc, a)
    with pytest.raises(NotFoundError):
        svc.set_provider_key_status(b, key, "revoked")
    with pytest.raises(NotFoundError):
        svc.delete_provider_key(b, key)
    view = svc.set_provider_key_status(None, key, "invalid", "provider answered 401")  # the hooks' path
    assert (view.status, view.status_reason) == ("invalid", "provider answered 401")
    svc.delete_provider_key(a, key)
    assert svc.list_provider_keys(a) == []


def test_every_change_bumps_the_shared_revision_in_its_transaction(svc: KeyService, engine: Engine) -> None:
    from adaptive_plugin.db._changes import changes_since, current_revision

    announced: list[int] = []
    svc.on_change = announced.append
    pid = team(svc)
    r0, _ = current_revision(engine)
    key = add_key(svc, pid)
    svc.set_provider_key_status(pid, key, "revoked")
    api_key = svc.create_api_key(pid, "production")
    svc.revoke_api_key(pid, api_key.id)
    svc.revoke_api_key(pid, api_key.id)  # already revoked: no change
    svc.update_project(pid, ProjectUpdate(fallback="byok_only"))
    svc.delete_provider_key(pid, key)
    revision, changes = changes_since(engine, r0)
    assert revision == r0 + 5 and announced == list(range(r0 + 1, r0 + 6))
    assert [(c.kind, c.project_id, c.key_id) for c in changes or []] == [
        ("provider_key", pid, key), ("provider_key", pid, key), ("api_key", pid, api_key.id),
        ("project", pid, None), ("provider_key", pid, key)]
    # a change that fails commits nothing, its revision included
    with pytest.raises(NotFoundError):
        svc.set_provider_key_status(pid, "pk_missing", "revoked")
    assert current_revision(engine)[0] == revision


def test_row_copied_to_another_project_fails_to_decrypt(svc: KeyService, engine: Engine) -> None:
    from sqlmodel import Session

    from adaptive_plugin.db.tables_keys import ProviderKey

    a, b = team(svc, "a"), team(svc, "b")
    key = add_key(svc, a)
    with Session(engine) as s:
        row = s.get(ProviderKey, key)
        assert row is not None
        s.add(ProviderKey(**{**row.model_dump(), "id": "pk_stolen", "project_id": b}))
        s.commit()
    [stolen] = svc.active_keys(b, "production")  # the associated data binds it to project a
    assert stolen.unavailable and stolen.secret == ""
    assert {v.id: v.status for v in svc.list_provider_keys(b)} == {"pk_stolen": "broken"}
    assert [k.secret for k in svc.active_keys(a, "production")] == [OPENAI_SECRET]


# -- master key rotation ---------------------------------------------------------------------


def test_rotation_to_a_new_master_key(engine: Engine) -> None:
    old = KeyService(engine, Vault([K1]))
    pid = team(old)
    secrets_ = [f"sk-openai-rotation-{i:04d}" for i in range(7)]
    for s in secrets_:
        add_key(old, pid, s)

    # K2 first: new rows use it, old rows still decrypt while K1 is configured
    both = KeyService(engine, Vault([K2, K1]))
    add_key(both, pid, "sk-openai-after-rotation")
    ids = {v.master_key_id for v in both.list_provider_keys(pid)}
    assert ids == {master_key_id(K1), master_key_id(K2)}
    assert both.check_vault() == 2
    assert len(both.active_keys(pid, "production")) == 8

    # removing K1 before rotating: start-up names the missing key id; the old rows are unusable
    with pytest.raises(VaultError, match=master_key_id(K1)):
        KeyService(engine, Vault([K2])).check_vault()
    assert sum(not k.unavailable for k in KeyService(engine, Vault([K2])).active_keys(pid, "production")) == 1

    assert both.rotate_encryption(batch_size=3) == 7
    assert {v.master_key_id for v in both.list_provider_keys(pid)} == {master_key_id(K2)}
    assert both.rotate_encryption() == 0

    only_new = KeyService(engine, Vault([K2]))
    assert only_new.check_vault() == 1
    assert sorted(k.secret for k in only_new.active_keys(pid, "production")) == sorted(
        [*secrets_, "sk-openai-after-rotation"]
    )


def test_check_vault_with_the_wrong_master_key(engine: Engine) -> None:
    pid = team(KeyService(engine, Vault([K1])))
    add_key(KeyService(engine, Vault([K1])), pid)
    with pytest.raises(VaultError, match=master_key_id(K1)):
        KeyService(engine, Vault([K2])).check_vault()


def test_check_vault_on_empty_database(svc: KeyService) -> None:
    assert svc.check_vault() == 0


# -- input validation (models) -------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"provider": "Open AI!"}, "provider must be one of openai, anthropic, gemini, groq, deepseek"),
        ({"api_key": "sk-with space-xxxx"}, "must not contain whitespace"),
        ({"api_key": "short"}, "at least 8"),
        ({"spend_cap_usd": Decimal("5")}, "spend_cap_usd and spend_cap_period go together"),
        ({"environment": "prod"}, "environment"),
    ],
)
def test_provider_key_input_is_validated(kw: dict[str, object], match: str) -> None:
    from pydantic import ValidationError

    spec = {"environment": "dev", "provider": "openai", "api_key": OPENAI_SECRET, **kw}
    with pytest.raises(ValidationError, match=match):
        ProviderKeyCreate(**spec)  # type: ignore[arg-type]


# -- providers (the registry) ----------------------------------------------------------------


def test_unknown_provider_is_refused_listing_the_supported_names(svc: KeyService) -> None:
    pid = team(svc)
    with pytest.raises(UnknownProviderError, match="unknown provider 'opneai'; supported: openai, anthropic, gemini") as err:
        add_key(svc, pid, provider="opneai")
    assert err.value.status_code == 400
    assert svc.list_provider_keys(pid) == []


def test_alias_is_stored_under_the_canonical_name(svc: KeyService) -> None:
    pid = team(svc)
    add_key(svc, pid, "AIzaSyA-gemini-key-0123456789", provider="Google")
    [view] = svc.list_provider_keys(pid)
    assert view.provider == "gemini"
    [resolved] = svc.active_keys(pid, "production")
    assert resolved.provider == "gemini" and resolved.secret == "AIzaSyA-gemini-key-0123456789"


def test_key_of_another_provider_is_refused(svc: KeyService) -> None:
    pid = team(svc)
    with pytest.raises(KeyFormatError, match="looks like a key for Groq .*not for DeepSeek"):
        add_key(svc, pid, "gsk_this-is-a-groq-key-000", provider="deepseek")
    assert svc.list_provider_keys(pid) == []


def test_rows_stored_under_unknown_names_are_reported_and_aliases_still_serve(svc: KeyService, engine: Engine) -> None:
    import sqlalchemy as sa

    pid = team(svc)
    typo = add_key(svc, pid, "sk-typo-key-0000000000")
    alias = add_key(svc, pid, "AIzaSyA-old-alias-row-000", provider="gemini")
    # rows an older version stored unchecked: rename them in place, re-encrypting under the stored name
    for key_id, name, secret in ((typo, "opneai", "sk-typo-key-0000000000"), (alias, "google", "AIzaSyA-old-alias-row-000")):
        sealed = svc.vault.encrypt(secret, project_id=pid, environment="production", provider=name, key_id=key_id)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE adaptive_provider_key SET provider = :p, ciphertext = :c, nonce = :n WHERE id = :i"),
                         {"p": name, "c": sealed.ciphertext, "n": sealed.nonce, "i": key_id})
    report = {row["provider"]: row for row in svc.unknown_provider_keys()}
    assert set(report) == {"opneai", "google"}
    assert "never used" in report["opneai"]["note"] and report["opneai"]["id"] == typo
    assert "used as 'gemini'" in report["google"]["note"]
    assert {k.provider for k in svc.active_keys(pid, "production")} == {"opneai", "gemini"}


def test_project_view_says_whether_byok_is_on(svc: KeyService) -> None:
    pid = team(svc)
    assert svc.get_project(pid).byok == "on"
    view = svc.update_project(pid, ProjectUpdate(plan="developer"))
    assert view.byok == "off-by-plan" and view.model_dump()["byok"] == "off-by-plan"
