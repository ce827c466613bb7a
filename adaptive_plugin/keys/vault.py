"""AES-256-GCM encryption of provider keys under operator master keys.

The associated data binds each ciphertext to its project, environment, provider and key id,
so a row copied to another project (or relabelled to another provider) fails to decrypt.
Several master keys may be configured: the first encrypts, every one decrypts (rows record
which one by a short id), and `reencrypt` moves a row to the newest key.

    >>> v = Vault([bytes(32)])
    >>> sealed = v.encrypt("sk-123", project_id="p", environment="dev", provider="openai", key_id="k")
    >>> v.decrypt(sealed, project_id="p", environment="dev", provider="openai", key_id="k")
    'sk-123'
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from adaptive_plugin.errors import VaultError


def master_key_id(key: bytes) -> str:
    """Short public identifier of a master key (not reversible)."""
    return hashlib.sha256(b"adaptive-master-key:" + key).hexdigest()[:12]


def fingerprint(secret: str) -> str:
    """Short public identifier of a provider key, safe to show and log."""
    return hashlib.sha256(b"adaptive-provider-key:" + secret.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Sealed:
    ciphertext: bytes
    nonce: bytes
    master_key_id: str


def _aad(project_id: str, environment: str, provider: str, key_id: str) -> bytes:
    return "\x1f".join(("adaptive/v1", project_id, environment, provider, key_id)).encode()


class Vault:
    """Encrypts and decrypts provider keys; the first master key is the encrypting one."""

    def __init__(self, master_keys: list[bytes]) -> None:
        if not master_keys:
            raise VaultError("no master key configured (ADAPTIVE_MASTER_KEYS)")
        for key in master_keys:
            if len(key) != 32:
                raise VaultError("a master key must be 32 bytes (AES-256)")
        self._keys = {master_key_id(k): AESGCM(k) for k in master_keys}
        self.current_id = master_key_id(master_keys[0])

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def encrypt(self, secret: str, *, project_id: str, environment: str, provider: str, key_id: str) -> Sealed:
        nonce = os.urandom(12)
        ct = self._keys[self.current_id].encrypt(nonce, secret.encode(), _aad(project_id, environment, provider, key_id))
        return Sealed(ciphertext=ct, nonce=nonce, master_key_id=self.current_id)

    def decrypt(self, sealed: Sealed, *, project_id: str, environment: str, provider: str, key_id: str) -> str:
        aead = self._keys.get(sealed.master_key_id)
        if aead is None:
            raise VaultError(
                f"provider key {key_id} is encrypted under master key id {sealed.master_key_id}, "
                "which is not in ADAPTIVE_MASTER_KEYS"
            )
        try:
            plain = aead.decrypt(sealed.nonce, sealed.ciphertext, _aad(project_id, environment, provider, key_id))
        except InvalidTag:
            raise VaultError(
                f"provider key {key_id} failed authentication: wrong master key for id {sealed.master_key_id}, "
                "or the row was altered or copied from another project"
            ) from None
        return plain.decode()

    def reencrypt(self, sealed: Sealed, *, project_id: str, environment: str, provider: str, key_id: str) -> Sealed:
        secret = self.decrypt(sealed, project_id=project_id, environment=environment, provider=provider, key_id=key_id)
        return self.encrypt(secret, project_id=project_id, environment=environment, provider=provider, key_id=key_id)
