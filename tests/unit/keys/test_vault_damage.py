"""A damaged vault row stays contained: it is marked broken (metric, log line without secrets),
skipped like an invalid key so the project's other keys and its fallback policy still serve, the
tenant's error names no internal id, start-up goes on, and the operator's report names the row."""

from __future__ import annotations

import logging
import os

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine
from sqlmodel import Session

from adaptive_plugin.db.tables_keys import ProviderKey
from adaptive_plugin.errors import NoKeyAvailableError, VaultError
from adaptive_plugin.keys import (
    KeyResolver,
    KeyService,
    Principal,
    ProjectCreate,
    ProviderKeyCreate,
    RequestKeyState,
    Vault,
    master_key_id,
)

K1, K2 = os.urandom(32), os.urandom(32)
SECRETS = {"first": "sk-openai-first-0123456789abcdef", "second": "sk-openai-second-0123456789abcd",
           "claude": "sk-ant-claude-0123456789abcdefgh"}


@pytest.fixture()
def svc(engine: Engine) -> KeyService:
    return KeyService(engine, Vault([K1]))


def setup_project(svc: KeyService, fallback: str = "pooled") -> tuple[str, dict[str, str]]:
    pid = svc.create_project(ProjectCreate(name=f"acme-{fallback}", plan="team", fallback=fallback)).id  # type: ignore[arg-type]
    ids = {}
    for name, provider, priority in (("first", "openai", 1), ("second", "openai", 2), ("claude", "anthropic", 1)):
        ids[name] = svc.add_provider_key(pid, ProviderKeyCreate(
            environment="production", provider=provider, api_key=SECRETS[name], priority=priority)).id
    return pid, ids


def tamper(engine: Engine, key_id: str) -> None:
    with Session(engine) as s:
        row = s.get(ProviderKey, key_id)
        assert row is not None
        row.ciphertext = bytes([row.ciphertext[0] ^ 0x01]) + row.ciphertext[1:]
        s.add(row)
        s.commit()


def failures(reason: str) -> float:
    return REGISTRY.get_sample_value("adaptive_keys_vault_failures_total", {"reason": reason}) or 0.0


def test_tampered_row_is_marked_broken_and_the_others_still_decrypt(
    svc: KeyService, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    pid, ids = setup_project(svc)
    tamper(engine, ids["first"])
    before = failures("authentication")
    with caplog.at_level(logging.ERROR, logger="adaptive_plugin"):
        chain = svc.active_keys(pid, "production")
    assert [(k.id, k.unavailable) for k in chain] == [(ids["claude"], False), (ids["first"], True), (ids["second"], False)]
    assert [k.secret for k in chain] == [SECRETS["claude"], "", SECRETS["second"]]
    assert failures("authentication") == before + 1
    views = {v.id: v for v in svc.list_provider_keys(pid)}
    assert views[ids["first"]].status == "broken" and "altered" in (views[ids["first"]].status_reason or "")
    assert views[ids["second"]].status == "active"
    assert ids["first"] in caplog.text and "marked broken" in caplog.text
    assert not any(secret in caplog.text for secret in SECRETS.values())
    # other processes read the mark and skip the row without decrypting (no second count)
    again = KeyService(engine, Vault([K1])).active_keys(pid, "production")
    assert [k.unavailable for k in again] == [False, True, False]
    assert failures("authentication") == before + 1


def principal(pid: str, fallback: str) -> Principal:
    return Principal(project_id=pid, project_name="acme", environment="production", plan="team", fallback=fallback,
                     allowed_models=None, cache_enabled=True, default_cost_bias=None, api_key_id="ak_1")


def resolver(svc: KeyService) -> KeyResolver:
    return KeyResolver(load_keys=svc.active_keys)


def test_broken_key_is_skipped_like_an_invalid_one(svc: KeyService, engine: Engine) -> None:
    pid, ids = setup_project(svc)
    tamper(engine, ids["first"])
    r = resolver(svc)
    state = RequestKeyState()
    choice = r.choose(principal(pid, "pooled"), "openai", state, pooled_available=True)
    assert choice.key is not None and choice.key.id == ids["second"] and choice.key.secret == SECRETS["second"]
    assert r.choose(principal(pid, "pooled"), "anthropic", RequestKeyState(), pooled_available=True).key.id == ids["claude"]  # type: ignore[union-attr]
    # the last own key broken too: the pooled key, as the policy allows
    tamper(engine, ids["second"])
    assert r.choose(principal(pid, "pooled"), "openai", RequestKeyState(), pooled_available=True).source == "pooled"


def test_byok_only_tenant_sees_provider_key_unavailable_without_internal_ids(svc: KeyService, engine: Engine) -> None:
    pid, ids = setup_project(svc, fallback="byok_only")
    tamper(engine, ids["first"])
    tamper(engine, ids["second"])
    with pytest.raises(NoKeyAvailableError) as err:
        resolver(svc).choose(principal(pid, "byok_only"), "openai", RequestKeyState(), pooled_available=True)
    message = err.value.message
    assert "provider key unavailable" in message
    assert ids["first"] not in message and ids["second"] not in message and "pk_" not in message
    assert master_key_id(K1) not in message


def test_row_under_a_master_key_this_process_lacks_is_skipped_not_marked(engine: Engine) -> None:
    pid, ids = setup_project(KeyService(engine, Vault([K2, K1])))  # rows under K2
    before = failures("unknown_master_key")
    chain = KeyService(engine, Vault([K1])).active_keys(pid, "production")  # a replica without K2
    assert all(k.unavailable for k in chain)
    assert failures("unknown_master_key") == before + 3
    assert {v.status for v in KeyService(engine, Vault([K2])).list_provider_keys(pid)} == {"active"}


def test_start_up_check_tolerates_a_few_damaged_rows_but_not_a_wrong_key(svc: KeyService, engine: Engine) -> None:
    pid, ids = setup_project(svc)
    tamper(engine, ids["first"])
    assert svc.check_vault() == 1  # the others decrypt: not fatal
    assert {v.id: v.status for v in svc.list_provider_keys(pid)}[ids["first"]] == "broken"
    tamper(engine, ids["second"])
    tamper(engine, ids["claude"])
    with pytest.raises(VaultError, match=f"none of .* under master key id {master_key_id(K1)} decrypts"):
        svc.check_vault()
    with pytest.raises(VaultError, match="not in ADAPTIVE_MASTER_KEYS"):
        KeyService(engine, Vault([K2])).check_vault()


def test_vault_report_names_every_damaged_row(svc: KeyService, engine: Engine) -> None:
    pid, ids = setup_project(svc)
    assert svc.vault_report() == (3, [])
    tamper(engine, ids["second"])
    checked, bad = svc.vault_report()
    assert checked == 3 and [(b["id"], b["status"], b["provider"]) for b in bad] == [(ids["second"], "active", "openai")]
    assert "altered" in bad[0]["problem"] and not any(secret in str(bad) for secret in SECRETS.values())
    svc.active_keys(pid, "production")  # marks it
    assert [(b["id"], b["status"]) for b in svc.vault_report()[1]] == [(ids["second"], "broken")]


def test_rotation_skips_and_marks_a_damaged_row(engine: Engine) -> None:
    old = KeyService(engine, Vault([K1]))
    pid, ids = setup_project(old)
    tamper(engine, ids["second"])
    both = KeyService(engine, Vault([K2, K1]))
    assert both.rotate_encryption(batch_size=1) == 2
    views = {v.id: v for v in both.list_provider_keys(pid)}
    assert views[ids["second"]].status == "broken" and views[ids["second"]].master_key_id == master_key_id(K1)
    assert {views[ids[n]].master_key_id for n in ("first", "claude")} == {master_key_id(K2)}
    assert both.rotate_encryption() == 0
