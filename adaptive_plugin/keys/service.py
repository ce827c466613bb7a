"""Projects, gateway API keys and the provider-key vault, over the database.

    >>> svc = KeyService(engine, Vault([master]))                          # doctest: +SKIP
    >>> p = svc.create_project(ProjectCreate(name="acme", plan="team"))    # doctest: +SKIP
    >>> created = svc.create_api_key(p.id, "production")                   # doctest: +SKIP
    >>> svc.authenticate(created.api_key).project_id == p.id                # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Iterator
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from adaptive_plugin import metrics, providers
from adaptive_plugin.db import session_scope
from adaptive_plugin.db._changes import record_change
from adaptive_plugin.db.tables_keys import Project, ProjectApiKey, ProviderKey, utcnow
from adaptive_plugin.errors import AuthenticationError, KeysError, NotFoundError, PlanError, VaultError
from adaptive_plugin.keys.models import (
    BYOK_PLANS,
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
from adaptive_plugin.keys.vault import Sealed, Vault, fingerprint

log = logging.getLogger("adaptive_plugin")

API_KEY_PREFIX = "ak-"
BROKEN_REASON = "the encrypted key failed authentication (altered or copied row); delete it and add the key again"
_ENV_TAG = {"dev": "dev", "staging": "stg", "production": "prd"}


def hash_api_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _project_view(row: Project) -> ProjectView:
    return ProjectView(
        id=row.id,
        name=row.name,
        plan=row.plan,  # type: ignore[arg-type]
        fallback=row.fallback,  # type: ignore[arg-type]
        allowed_models=json.loads(row.allowed_models) if row.allowed_models else None,
        cache_enabled=row.cache_enabled,
        default_cost_bias=row.default_cost_bias,
        created_at=row.created_at,
    )


def _api_key_view(row: ProjectApiKey) -> ApiKeyView:
    return ApiKeyView(
        id=row.id,
        project_id=row.project_id,
        environment=row.environment,  # type: ignore[arg-type]
        prefix=row.prefix,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def _provider_key_view(row: ProviderKey) -> ProviderKeyView:
    return ProviderKeyView(
        id=row.id,
        project_id=row.project_id,
        environment=row.environment,  # type: ignore[arg-type]
        provider=row.provider,
        priority=row.priority,
        fingerprint=row.fingerprint,
        last4=row.last4,
        status=row.status,  # type: ignore[arg-type]
        status_reason=row.status_reason,
        spend_cap_usd=Decimal(row.spend_cap_usd) if row.spend_cap_usd else None,
        spend_cap_period=row.spend_cap_period,  # type: ignore[arg-type]
        rpm_limit=row.rpm_limit,
        master_key_id=row.master_key_id,
        created_at=row.created_at,
    )


class _Change:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.revision: int | None = None

    def record(self, kind: str, project_id: str, key_id: str | None = None) -> None:
        self.revision = record_change(self.session, kind=kind, project_id=project_id, key_id=key_id)


class KeyService:
    """Database operations of the keys capability. Every method is synchronous and short."""

    def __init__(self, engine: Engine, vault: Vault) -> None:
        self.engine = engine
        self.vault = vault
        # called with the new revision after a change has committed (the change feed's Redis)
        self.on_change: Callable[[int], None] | None = None

    @contextlib.contextmanager
    def _changing(self) -> Iterator[_Change]:
        """A transaction whose `record()`ed changes bump the shared revision with it, announced
        to `on_change` once committed."""
        with session_scope(self.engine) as s:
            tx = _Change(s)
            yield tx
        if tx.revision is not None and self.on_change is not None:
            self.on_change(tx.revision)

    # -- projects ----------------------------------------------------------------------

    def create_project(self, spec: ProjectCreate) -> ProjectView:
        row = Project(
            id=_new_id("prj"),
            name=spec.name,
            plan=spec.plan,
            fallback=spec.fallback,
            allowed_models=json.dumps(spec.allowed_models) if spec.allowed_models is not None else None,
            cache_enabled=spec.cache_enabled,
            default_cost_bias=spec.default_cost_bias,
        )
        try:
            with session_scope(self.engine) as s:
                s.add(row)
        except IntegrityError:
            raise KeysError(f"a project named {spec.name!r} already exists") from None
        return _project_view(row)

    def list_projects(self) -> list[ProjectView]:
        with session_scope(self.engine) as s:
            return [_project_view(r) for r in s.exec(select(Project).order_by(Project.created_at))]

    def get_project(self, project_id: str) -> ProjectView:
        with session_scope(self.engine) as s:
            return _project_view(self._project(s, project_id))

    def find_project(self, ref: str) -> ProjectView:
        """A project by id or by name."""
        with session_scope(self.engine) as s:
            row = s.get(Project, ref) or s.exec(select(Project).where(Project.name == ref)).first()
            if row is None:
                raise NotFoundError(f"project {ref!r} not found")
            return _project_view(row)

    def update_project(self, project_id: str, spec: ProjectUpdate) -> ProjectView:
        with self._changing() as tx:
            row = self._project(tx.session, project_id)
            changes = spec.model_dump(exclude_unset=True)
            for name, value in changes.items():
                if name == "allowed_models":
                    value = json.dumps(value) if value is not None else None
                setattr(row, name, value)
            tx.session.add(row)
            tx.record("project", project_id)  # plan, fallback, models: every process reloads the project
            return _project_view(row)

    @staticmethod
    def _project(s, project_id: str) -> Project:  # type: ignore[no-untyped-def]
        row = s.get(Project, project_id)
        if row is None:
            raise NotFoundError(f"project {project_id!r} not found")
        return row

    # -- gateway API keys ----------------------------------------------------------------

    def create_api_key(self, project_id: str, environment: str) -> ApiKeyCreated:
        if environment not in _ENV_TAG:
            raise KeysError(f"environment must be one of {', '.join(_ENV_TAG)}")
        token = f"{API_KEY_PREFIX}{_ENV_TAG[environment]}-{secrets.token_urlsafe(32)}"
        with session_scope(self.engine) as s:
            self._project(s, project_id)
            row = ProjectApiKey(
                id=_new_id("ak"),
                project_id=project_id,
                environment=environment,
                key_hash=hash_api_key(token),
                prefix=token[:10],
            )
            s.add(row)
        return ApiKeyCreated(**_api_key_view(row).model_dump(), api_key=token)

    def list_api_keys(self, project_id: str) -> list[ApiKeyView]:
        with session_scope(self.engine) as s:
            self._project(s, project_id)
            rows = s.exec(select(ProjectApiKey).where(ProjectApiKey.project_id == project_id))
            return [_api_key_view(r) for r in rows]

    def revoke_api_key(self, project_id: str, api_key_id: str) -> ApiKeyView:
        with self._changing() as tx:
            row = tx.session.get(ProjectApiKey, api_key_id)
            if row is None or row.project_id != project_id:
                raise NotFoundError(f"API key {api_key_id!r} not found in project {project_id!r}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                tx.session.add(row)
                tx.record("api_key", project_id, api_key_id)
            return _api_key_view(row)

    def authenticate(self, token: str) -> Principal:
        """The principal behind a gateway API key, or AuthenticationError."""
        if not token or not token.startswith(API_KEY_PREFIX) or len(token) > 200:
            raise AuthenticationError("malformed API key: expected a project key starting with 'ak-'")
        with session_scope(self.engine) as s:
            key = s.exec(select(ProjectApiKey).where(ProjectApiKey.key_hash == hash_api_key(token))).first()
            if key is None:
                raise AuthenticationError("unknown API key")
            if key.revoked_at is not None:
                raise AuthenticationError("API key has been revoked")
            project = self._project(s, key.project_id)
            return Principal(
                project_id=project.id,
                project_name=project.name,
                environment=key.environment,
                plan=project.plan,
                fallback=project.fallback,
                allowed_models=frozenset(json.loads(project.allowed_models)) if project.allowed_models else None,
                cache_enabled=project.cache_enabled,
                default_cost_bias=project.default_cost_bias,
                api_key_id=key.id,
            )

    # -- provider keys -------------------------------------------------------------------

    def add_provider_key(self, project_id: str, spec: ProviderKeyCreate) -> ProviderKeyView:
        """Store a key; `UnknownProviderError` for a provider outside the registry and
        `KeyFormatError` for a key that carries another provider's prefix (both 400)."""
        provider = providers.require(spec.provider, api_key=spec.api_key)
        spec = spec.model_copy(update={"provider": provider})
        key_id = _new_id("pk")
        with self._changing() as tx:
            s = tx.session
            project = self._project(s, project_id)
            if project.plan not in BYOK_PLANS:
                raise PlanError(
                    f"project {project.name!r} is on the {project.plan} plan; Bring Your Own Keys needs the team "
                    "or enterprise plan"
                )
            sealed = self.vault.encrypt(
                spec.api_key, project_id=project_id, environment=spec.environment, provider=spec.provider, key_id=key_id
            )
            row = ProviderKey(
                id=key_id,
                project_id=project_id,
                environment=spec.environment,
                provider=spec.provider,
                priority=spec.priority,
                ciphertext=sealed.ciphertext,
                nonce=sealed.nonce,
                master_key_id=sealed.master_key_id,
                fingerprint=fingerprint(spec.api_key),
                last4=spec.api_key[-4:],
                spend_cap_usd=str(spec.spend_cap_usd) if spec.spend_cap_usd is not None else None,
                spend_cap_period=spec.spend_cap_period,
                rpm_limit=spec.rpm_limit,
            )
            s.add(row)
            tx.record("provider_key", project_id, key_id)
        return _provider_key_view(row)

    def list_provider_keys(self, project_id: str) -> list[ProviderKeyView]:
        with session_scope(self.engine) as s:
            self._project(s, project_id)
            rows = s.exec(
                select(ProviderKey)
                .where(ProviderKey.project_id == project_id)
                .order_by(ProviderKey.environment, ProviderKey.provider, ProviderKey.priority)
            )
            return [_provider_key_view(r) for r in rows]

    def set_provider_key_status(
        self, project_id: str | None, key_id: str, status: str, reason: str | None = None
    ) -> ProviderKeyView:
        """Revoke, reactivate or mark a key invalid. Once this returns, no worker or replica starts
        another call with a key revoked or marked invalid here (see adaptive_plugin.changes)."""
        with self._changing() as tx:
            row = tx.session.get(ProviderKey, key_id)
            if row is None or (project_id is not None and row.project_id != project_id):
                raise NotFoundError(f"provider key {key_id!r} not found")
            row.status = status
            row.status_reason = reason
            row.updated_at = utcnow()
            tx.session.add(row)
            tx.record("provider_key", row.project_id, key_id)
            return _provider_key_view(row)

    def delete_provider_key(self, project_id: str, key_id: str) -> None:
        with self._changing() as tx:
            row = tx.session.get(ProviderKey, key_id)
            if row is None or row.project_id != project_id:
                raise NotFoundError(f"provider key {key_id!r} not found")
            tx.session.delete(row)
            tx.record("provider_key", project_id, key_id)

    def rotate_provider_key(self, project_id: str, key_id: str, new_secret: str) -> tuple[ProviderKeyView, ProviderKeyView]:
        """Add `new_secret` in the old key's place (provider, priority, caps) and revoke the old key,
        in one transaction: either both happen or neither. Returns (new, old)."""
        new_id = _new_id("pk")
        with self._changing() as tx:
            s = tx.session
            project = self._project(s, project_id)
            if project.plan not in BYOK_PLANS:
                raise PlanError(f"project {project.name!r} is on the {project.plan} plan; Bring Your Own Keys needs "
                                "the team or enterprise plan")
            old = s.get(ProviderKey, key_id)
            if old is None or old.project_id != project_id:
                raise NotFoundError(f"provider key {key_id!r} not found")
            if old.status == "revoked":
                raise KeysError(f"provider key {key_id!r} is revoked; add a new key instead of rotating it")
            if providers.canonical(old.provider):  # the new key must not belong to another provider
                providers.require(old.provider, api_key=new_secret)
            new_fingerprint = fingerprint(new_secret)
            if new_fingerprint == old.fingerprint:
                raise KeysError("the new key is the key being rotated; give the new key")
            sealed = self.vault.encrypt(new_secret, project_id=project_id, environment=old.environment,
                                        provider=old.provider, key_id=new_id)
            now = utcnow()
            new = ProviderKey(
                id=new_id, project_id=project_id, environment=old.environment, provider=old.provider,
                priority=old.priority, ciphertext=sealed.ciphertext, nonce=sealed.nonce,
                master_key_id=sealed.master_key_id, fingerprint=new_fingerprint, last4=new_secret[-4:],
                spend_cap_usd=old.spend_cap_usd, spend_cap_period=old.spend_cap_period, rpm_limit=old.rpm_limit,
                created_at=now, updated_at=now,
            )
            old.status, old.status_reason, old.updated_at = "revoked", f"rotated to {new_fingerprint}", now
            s.add(new)
            s.add(old)
            tx.record("provider_key", project_id, key_id)  # the old key is out everywhere at once
            return _provider_key_view(new), _provider_key_view(old)

    def update_provider_key(self, project_id: str, key_id: str, changes: dict[str, object]) -> ProviderKeyView:
        """Set priority, spending cap (`spend_cap_usd` with `spend_cap_period`) or rpm limit; None clears."""
        with self._changing() as tx:
            s = tx.session
            row = s.get(ProviderKey, key_id)
            if row is None or row.project_id != project_id:
                raise NotFoundError(f"provider key {key_id!r} not found")
            cap = changes.get("spend_cap_usd", row.spend_cap_usd)
            period = changes.get("spend_cap_period", row.spend_cap_period)
            if (cap is None) != (period is None):
                raise KeysError("spend_cap_usd and spend_cap_period go together: set both, or clear both")
            if "priority" in changes:
                row.priority = int(changes["priority"])  # type: ignore[call-overload]
            row.spend_cap_usd = str(cap) if cap is not None else None
            row.spend_cap_period = str(period) if period is not None else None
            if "rpm_limit" in changes:
                limit = changes["rpm_limit"]
                row.rpm_limit = int(limit) if limit is not None else None  # type: ignore[call-overload]
            row.updated_at = utcnow()
            s.add(row)
            tx.record("provider_key", project_id, key_id)
            return _provider_key_view(row)

    def reorder_provider_keys(self, project_id: str, environment: str, provider: str,
                              key_ids: list[str]) -> list[ProviderKeyView]:
        """Give the keys of one environment and provider priorities 10, 20, ... in the order given;
        every key of that scope that is not revoked must be named once."""
        provider = provider.strip().lower()
        with self._changing() as tx:
            s = tx.session
            self._project(s, project_id)
            rows = {r.id: r for r in s.exec(select(ProviderKey).where(
                ProviderKey.project_id == project_id, ProviderKey.environment == environment,
                ProviderKey.provider == provider, ProviderKey.status != "revoked"))}
            if len(set(key_ids)) != len(key_ids) or set(key_ids) != set(rows):
                expected = ", ".join(sorted(rows)) or "none"
                raise KeysError(f"name every {provider} key of {environment} that is not revoked, once each "
                                f"(expected: {expected})")
            now = utcnow()
            for position, kid in enumerate(key_ids, start=1):
                rows[kid].priority, rows[kid].updated_at = position * 10, now
                s.add(rows[kid])
            tx.record("provider_key", project_id)
            return [_provider_key_view(rows[k]) for k in key_ids]

    def active_keys(self, project_id: str, environment: str) -> list[ResolvedKey]:
        """Decrypted active keys of a project environment, by provider then priority.

        A row that cannot be decrypted does not stop the others: it comes back `unavailable`
        (no secret), so key choice skips it like an invalid key. A row that fails authentication
        under a configured master key was altered: it is marked broken for every process (see
        `vault_failure`); a row under a master key this process lacks is only skipped here.
        """
        with session_scope(self.engine) as s:
            rows = list(
                s.exec(
                    select(ProviderKey)
                    .where(
                        ProviderKey.project_id == project_id,
                        ProviderKey.environment == environment,
                        ProviderKey.status.in_(("active", "broken")),  # type: ignore[attr-defined]
                    )
                    .order_by(ProviderKey.provider, ProviderKey.priority, ProviderKey.created_at)
                )
            )
        out = []
        for row in rows:
            secret = ""
            unavailable = row.status == "broken"
            if not unavailable:
                try:
                    secret = self._decrypt(row)
                except VaultError:
                    self.vault_failure(row)
                    unavailable = True
            cap = Decimal(row.spend_cap_usd) if row.spend_cap_usd else None
            out.append(
                ResolvedKey(
                    id=row.id,
                    # a row stored under an alias by an older version ("google") serves its provider
                    provider=providers.canonical(row.provider) or row.provider,
                    priority=row.priority,
                    secret=secret,
                    fingerprint=row.fingerprint,
                    spend_cap_micros=int(cap * 1_000_000) if cap is not None else None,
                    spend_cap_period=row.spend_cap_period,
                    rpm_limit=row.rpm_limit,
                    unavailable=unavailable,
                )
            )
        return out

    def unknown_provider_keys(self) -> list[dict[str, str]]:
        """Stored keys whose provider is outside the registry (never used): for `adaptive-plugin check`."""
        known = set(providers.supported_names())
        with session_scope(self.engine) as s:
            rows = s.execute(
                sa.select(ProviderKey.id, ProviderKey.project_id, ProviderKey.environment, ProviderKey.provider,
                          ProviderKey.fingerprint, ProviderKey.status)
                .where(ProviderKey.provider.notin_(known))
                .order_by(ProviderKey.project_id, ProviderKey.provider)
            ).all()
        out = []
        for key_id, project_id, environment, provider, fp, status in rows:
            alias_of = providers.canonical(provider)
            out.append({
                "id": key_id, "project_id": project_id, "environment": environment, "provider": provider,
                "fingerprint": fp, "status": status,
                "note": (f"stored under the alias {provider!r}: used as {alias_of!r}" if alias_of else
                         f"unknown provider {provider!r}: never used; delete it and add the key again under one of "
                         f"{', '.join(sorted(known))}"),
            })
        return out

    def vault_failure(self, row: ProviderKey) -> str:
        """Count and log (without secrets) a row that does not decrypt; mark it broken when it
        failed authentication under a configured master key. Returns the reason."""
        if row.master_key_id not in self.vault.key_ids:
            log.error("adaptive: provider key %s (project %s, %s, fingerprint %s) is encrypted under master key id "
                      "%s, which is not in ADAPTIVE_MASTER_KEYS: skipped by this process", row.id, row.project_id,
                      row.provider, row.fingerprint, row.master_key_id)
            metrics.VAULT_FAILURES.labels(reason="unknown_master_key").inc()
            return "unknown_master_key"
        self._log_broken(row, marked=self._mark_broken(row))
        return "authentication"

    @staticmethod
    def _log_broken(row: ProviderKey, *, marked: bool) -> None:
        log.error("adaptive: provider key %s (project %s, %s, %s, fingerprint %s) failed authentication in the "
                  "vault (the row was altered or copied): %s; delete it and add the key again", row.id,
                  row.project_id, row.environment, row.provider, row.fingerprint,
                  "marked broken" if marked else "already marked broken")
        metrics.VAULT_FAILURES.labels(reason="authentication").inc()

    def _mark_broken(self, row: ProviderKey) -> bool:
        """Broken for every process, unless the row changed since it was read (re-encrypted)."""
        with self._changing() as tx:
            result = tx.session.execute(
                sa.update(ProviderKey)
                .where(ProviderKey.id == row.id, ProviderKey.nonce == row.nonce,  # type: ignore[arg-type]
                       ProviderKey.status.in_(("active", "invalid", "revoked")))  # type: ignore[attr-defined]
                .values(status="broken", status_reason=BROKEN_REASON, updated_at=utcnow())
            )
            marked = bool(result.rowcount)  # type: ignore[attr-defined]
            if marked:
                tx.record("provider_key", row.project_id, row.id)
            return marked

    def _decrypt(self, row: ProviderKey) -> str:
        """The plaintext of a row; the associated data binds it to the row's own scope and id."""
        return self.vault.decrypt(
            Sealed(row.ciphertext, row.nonce, row.master_key_id),
            project_id=row.project_id, environment=row.environment, provider=row.provider, key_id=row.id,
        )

    # -- master keys -----------------------------------------------------------------------

    def check_vault(self, *, sample: int = 20) -> int:
        """Start-up check: every master key id in use is configured, and under each one some row
        decrypts. VaultError names the first master key that fails so (a wrong key list);
        a few damaged rows are not fatal: those in the sample are marked broken. Returns the
        number of master key ids checked."""
        checked = 0
        with session_scope(self.engine) as s:
            ids = [r[0] for r in s.execute(sa.select(ProviderKey.master_key_id).distinct())]
            for mk in ids:
                if mk not in self.vault.key_ids:
                    raise VaultError(
                        f"provider keys are encrypted under master key id {mk}, which is not in ADAPTIVE_MASTER_KEYS"
                    )
                rows = list(s.exec(select(ProviderKey).where(ProviderKey.master_key_id == mk,
                                                             ProviderKey.status != "broken").limit(sample)))
                failed = []
                for row in rows:
                    try:
                        self._decrypt(row)
                        break
                    except VaultError:
                        failed.append(row)
                else:
                    if rows:
                        raise VaultError(
                            f"none of {len(rows)} provider keys under master key id {mk} decrypts: the master key "
                            "is wrong or the rows were altered"
                        )
                for row in failed:
                    self.vault_failure(row)
                checked += 1
        return checked

    def vault_report(self, *, batch_size: int = 500) -> tuple[int, list[dict[str, str]]]:
        """Every provider key row read and decrypted (none changed): how many, and those that do
        not decrypt or are marked broken, named for the operator (ids, never secrets)."""
        checked, bad = 0, []
        after = ""
        while True:
            with session_scope(self.engine) as s:
                rows = list(s.exec(select(ProviderKey).where(ProviderKey.id > after)
                                   .order_by(ProviderKey.id).limit(batch_size)))
            if not rows:
                return checked, bad
            for row in rows:
                checked += 1
                problem = None
                if row.status == "broken":
                    problem = row.status_reason or BROKEN_REASON
                elif row.master_key_id not in self.vault.key_ids:
                    problem = f"encrypted under master key id {row.master_key_id}, not in ADAPTIVE_MASTER_KEYS"
                else:
                    try:
                        self._decrypt(row)
                    except VaultError:
                        problem = "fails authentication: the row was altered or copied from another project"
                if problem is not None:
                    bad.append({"id": row.id, "project_id": row.project_id, "environment": row.environment,
                                "provider": row.provider, "fingerprint": row.fingerprint, "status": row.status,
                                "problem": problem})
            after = rows[-1].id

    def rotate_encryption(self, *, batch_size: int = 200) -> int:
        """Re-encrypt every row not under the newest master key; returns the number re-encrypted.
        Broken rows stay as they are (marked broken when found); a row under a master key that is
        not configured stops the rotation with VaultError naming it."""
        done = 0
        while True:
            with self._changing() as tx:
                s = tx.session
                rows = list(s.exec(select(ProviderKey).where(ProviderKey.master_key_id != self.vault.current_id,
                                                             ProviderKey.status != "broken").limit(batch_size)))
                if not rows:
                    return done
                for row in rows:
                    try:
                        secret = self._decrypt(row)
                    except VaultError:
                        if row.master_key_id not in self.vault.key_ids:
                            raise
                        row.status, row.status_reason, row.updated_at = "broken", BROKEN_REASON, utcnow()
                        s.add(row)
                        tx.record("provider_key", row.project_id, row.id)
                        self._log_broken(row, marked=True)
                        continue
                    sealed = self.vault.encrypt(secret, project_id=row.project_id, environment=row.environment,
                                                provider=row.provider, key_id=row.id)
                    row.ciphertext, row.nonce, row.master_key_id = sealed.ciphertext, sealed.nonce, sealed.master_key_id
                    s.add(row)
                    done += 1


__all__ = ["API_KEY_PREFIX", "KeyService", "VaultError", "hash_api_key"]
