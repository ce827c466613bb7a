"""AES-256-GCM vault: ciphertexts are bound to their row and readable only with the right master key."""

from __future__ import annotations

import os

import pytest

from adaptive_plugin.errors import VaultError
from adaptive_plugin.keys import Vault, fingerprint, master_key_id
from adaptive_plugin.keys.vault import Sealed

K1, K2 = os.urandom(32), os.urandom(32)
WHERE = {"project_id": "prj_1", "environment": "production", "provider": "openai", "key_id": "pk_1"}
SECRET = "sk-proj-abcdefghijklmnop1234"


def test_round_trip() -> None:
    vault = Vault([K1])
    sealed = vault.encrypt(SECRET, **WHERE)
    assert sealed.master_key_id == master_key_id(K1) == vault.current_id
    assert SECRET.encode() not in sealed.ciphertext
    assert vault.decrypt(sealed, **WHERE) == SECRET


def test_nonces_are_fresh() -> None:
    vault = Vault([K1])
    a, b = vault.encrypt(SECRET, **WHERE), vault.encrypt(SECRET, **WHERE)
    assert a.nonce != b.nonce and a.ciphertext != b.ciphertext
    assert len(a.nonce) == 12


def test_unicode_secret_round_trips() -> None:
    vault = Vault([K1])
    assert vault.decrypt(vault.encrypt("clé-ünïcode-🔑", **WHERE), **WHERE) == "clé-ünïcode-🔑"


@pytest.mark.parametrize(
    "field, other",
    [("project_id", "prj_2"), ("environment", "dev"), ("provider", "anthropic"), ("key_id", "pk_2")],
)
def test_row_moved_to_another_project_provider_or_id_fails(field: str, other: str) -> None:
    vault = Vault([K1])
    sealed = vault.encrypt(SECRET, **WHERE)
    moved = {**WHERE, field: other}
    with pytest.raises(VaultError, match="failed authentication") as info:
        vault.decrypt(sealed, **moved)
    assert SECRET not in str(info.value)


def test_altered_ciphertext_fails() -> None:
    vault = Vault([K1])
    sealed = vault.encrypt(SECRET, **WHERE)
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(VaultError):
        vault.decrypt(Sealed(flipped, sealed.nonce, sealed.master_key_id), **WHERE)


def test_wrong_master_key_names_the_key_ids() -> None:
    sealed = Vault([K1]).encrypt(SECRET, **WHERE)
    with pytest.raises(VaultError) as info:
        Vault([K2]).decrypt(sealed, **WHERE)
    message = str(info.value)
    assert "pk_1" in message and master_key_id(K1) in message
    assert "ADAPTIVE_MASTER_KEYS" in message


def test_same_id_but_different_key_material_fails_cleanly() -> None:
    # a row claiming K2's id but sealed under K1: authentication fails, not a crash
    sealed = Vault([K1]).encrypt(SECRET, **WHERE)
    forged = Sealed(sealed.ciphertext, sealed.nonce, master_key_id(K2))
    with pytest.raises(VaultError, match=f"pk_1 failed authentication: wrong master key for id {master_key_id(K2)}"):
        Vault([K2]).decrypt(forged, **WHERE)


def test_first_key_encrypts_and_every_key_decrypts() -> None:
    old_sealed = Vault([K1]).encrypt(SECRET, **WHERE)
    both = Vault([K2, K1])
    assert both.current_id == master_key_id(K2)
    assert both.key_ids == {master_key_id(K1), master_key_id(K2)}
    assert both.decrypt(old_sealed, **WHERE) == SECRET
    assert both.encrypt(SECRET, **WHERE).master_key_id == master_key_id(K2)


def test_reencrypt_moves_to_the_newest_key() -> None:
    old_sealed = Vault([K1]).encrypt(SECRET, **WHERE)
    new_sealed = Vault([K2, K1]).reencrypt(old_sealed, **WHERE)
    assert new_sealed.master_key_id == master_key_id(K2)
    assert Vault([K2]).decrypt(new_sealed, **WHERE) == SECRET


@pytest.mark.parametrize("keys", [[], [b"short"], [K1, os.urandom(16)]])
def test_bad_master_keys_are_refused(keys: list[bytes]) -> None:
    with pytest.raises(VaultError):
        Vault(keys)


def test_public_identifiers_are_short_stable_and_not_the_secret() -> None:
    assert master_key_id(K1) == master_key_id(K1) != master_key_id(K2)
    assert len(master_key_id(K1)) == 12
    fp = fingerprint(SECRET)
    assert fp == fingerprint(SECRET) != fingerprint(SECRET + "x")
    assert len(fp) == 12 and SECRET[-4:] not in fp
