"""Bring Your Own Keys: projects, gateway API keys, the encrypted vault and per-attempt key choice."""

from __future__ import annotations

from adaptive_plugin.keys.models import (
    ApiKeyCreated,
    ApiKeyView,
    Principal,
    ProjectCreate,
    ProjectUpdate,
    ProjectView,
    ProviderKeyCreate,
    ProviderKeyView,
    ResolvedKey,
)
from adaptive_plugin.keys.resolver import KEY_FAILURES, KeyChoice, KeyResolver, RequestKeyState, classify_failure
from adaptive_plugin.keys.service import KeyService, hash_api_key
from adaptive_plugin.keys.vault import Vault, fingerprint, master_key_id

__all__ = [
    "KEY_FAILURES",
    "ApiKeyCreated",
    "ApiKeyView",
    "KeyChoice",
    "KeyResolver",
    "KeyService",
    "Principal",
    "ProjectCreate",
    "ProjectUpdate",
    "ProjectView",
    "ProviderKeyCreate",
    "ProviderKeyView",
    "RequestKeyState",
    "ResolvedKey",
    "Vault",
    "classify_failure",
    "fingerprint",
    "hash_api_key",
    "master_key_id",
]
