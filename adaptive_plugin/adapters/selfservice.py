"""Project self-service: what a project admin may do, shared by the API (`selfservice_api.py`),
the dashboard (`ui/`) and, through the API, the CLI.

Every operation takes the project id from an `AdminPrincipal` that `authorize()` built from
the caller's credential, never from the request alone:

- a project admin key (`pak-...`) acts on its own project only; naming another is a 403
  that does not say whether that project exists;
- the LiteLLM master key (the operator) acts on the project it names;
- a chat API key (`ak-...`) manages nothing (403); anything else is a 401.

Provider keys are write-only: views carry the fingerprint, the last four characters, status,
health (as this worker sees it: cooldowns and rate windows are per process), spend this
period and last use (the latest ledger row that ended on the key), never the key or the
vault's key id.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from adaptive_plugin.adapters.auth import is_master_key
from adaptive_plugin.billing import micros_to_usd
from adaptive_plugin.billing.ledger import GROUP_FIELDS, parse_bound
from adaptive_plugin.errors import AuthenticationError, ForbiddenError, KeysError, NotFoundError
from adaptive_plugin.keys import ApiKeyCreated, ApiKeyView, ProjectUpdate, ProviderKeyCreate, ProviderKeyView
from adaptive_plugin.keys.admin import (
    ADMIN_KEY_PREFIX,
    AdminKeyService,
    AdminPrincipal,
    ProviderKeyOrder,
    ProviderKeyUpdate,
    SelfProjectUpdate,
)
from adaptive_plugin.keys.models import BYOK_PLANS, CapPeriod, Environment, FallbackPolicy, Plan
from adaptive_plugin.keys.service import API_KEY_PREFIX

if TYPE_CHECKING:
    from adaptive_plugin.adapters.runtime import Runtime

USAGE_GROUPS = tuple(f for f in GROUP_FIELDS if f != "project_id")
_COUNTS = ("requests", "input_tokens", "cached_tokens", "output_tokens", "overhead_fee_micros", "model_cost_micros")
ENVIRONMENTS: tuple[str, ...] = ("production", "staging", "dev")
Health = Literal["ok", "cooling_down", "invalid", "revoked", "over_spend_cap", "rate_limited"]


class ProviderKeyStatus(BaseModel):
    """A provider key as its project sees it: never the key itself."""

    id: str
    environment: Environment
    provider: str
    priority: int = Field(description="Lower is tried first.")
    fingerprint: str
    last4: str
    status: Literal["active", "revoked", "invalid"]
    status_reason: str | None
    health: Health = Field(description="This worker's view: cooldowns and rate windows are per process.")
    cooldown_seconds: float = Field(description="Seconds until the key is tried again (0: not cooling down).")
    calls_last_minute: int
    spend_cap_usd: Decimal | None
    spend_cap_period: CapPeriod | None
    spent_usd: Decimal | None = Field(description="Provider cost on this key in the cap's current UTC day or month.")
    rpm_limit: int | None
    created_at: datetime
    last_used_at: datetime | None = Field(description=(
        "The latest request that ended on this key, answered or failed (a failed attempt that fell back to "
        "another key is in that request's fallbacks instead)."))


class RotateResult(BaseModel):
    new: ProviderKeyStatus
    revoked: ProviderKeyStatus


class SelfProject(BaseModel):
    id: str
    name: str
    plan: Plan
    byok_allowed: bool = Field(description="Whether the plan lets the project store its own provider keys.")
    fallback: FallbackPolicy
    default_cost_bias: float | None
    allowed_models: list[str] | None
    cache_enabled: bool
    created_at: datetime
    available_models: list[str] = Field(description="The gateway's model groups.")


class RequestLogEntry(BaseModel):
    id: int
    request_id: str
    ts: datetime
    environment: str
    provider: str
    model_group: str
    model: str
    key_source: str = Field(description="byok (your key), pooled (the gateway's), cache (no key) or none.")
    key_fingerprint: str | None
    cache: str
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    overhead_fee_usd: Decimal
    model_cost_usd: Decimal
    latency_ms: float
    outcome: str
    status_code: int
    error_code: str | None
    fallbacks: list[dict[str, str]] = Field(description="Keys that failed first: fingerprint (or pooled:<provider>) and reason.")
    routed: bool
    task_type: str | None


class RequestLogPage(BaseModel):
    items: list[RequestLogEntry]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")


class UsageReport(BaseModel):
    group_by: list[str]
    rows: list[dict[str, Any]]
    total: dict[str, Any] = Field(description="The sums of the rows: the ledger's totals over the same filters.")


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("id:"):
            raise ValueError
        value = int(text[3:])
        if value < 1:
            raise ValueError
        return value
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("cursor is not one this API returned (use next_cursor as given)") from None


def available_models(runtime: Runtime) -> list[str] | None:
    """The proxy's model groups, or None before the router exists."""
    if not runtime.ensure_strategy():
        return None
    return sorted(runtime.index.groups())


def check_models(groups: list[str] | None, models: list[str] | None) -> None:
    """KeysError naming the first model that is not one of the gateway's model groups
    (`groups`: `available_models()`, read on the event loop; None: not known yet)."""
    if models is None or groups is None:
        return
    patterns = [g for g in groups if "*" in g]
    for model in models:
        if model not in groups and not any(fnmatch.fnmatchcase(model, p) for p in patterns):
            raise KeysError(f"unknown model {model!r}: the gateway serves {', '.join(groups) or 'none'}")


class SelfService:
    """The self-service operations over one plugin context (synchronous: run them in a thread)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.ctx = runtime.ctx
        self.admins = AdminKeyService(runtime.ctx.engine)

    # -- who is calling ------------------------------------------------------------------

    def authorize(self, token: str, project_ref: str | None) -> AdminPrincipal:
        """The principal of a management credential, bound to the project it may act on."""
        if not token:
            raise AuthenticationError("missing credential: send 'Authorization: Bearer pak-...' (a project admin key)")
        if is_master_key(token):
            if not project_ref:
                raise KeysError("the master key can manage any project: name one with ?project_id=")
            return AdminPrincipal(role="operator", project_id=self.ctx.keys.find_project(project_ref).id)
        if token.startswith(API_KEY_PREFIX):
            raise ForbiddenError("a chat API key (ak-...) only calls models; managing a project needs a project admin "
                                 "key (pak-...)")
        if not token.startswith(ADMIN_KEY_PREFIX):
            raise AuthenticationError("unknown credential: send a project admin key (pak-...) or the master key")
        principal = self.admins.authenticate(token)
        if project_ref and project_ref != principal.project_id:
            raise ForbiddenError("this admin key manages its own project only")
        return principal

    @staticmethod
    def project_of(principal: AdminPrincipal) -> str:
        if principal.project_id is None:
            raise KeysError("no project chosen")
        return principal.project_id

    # -- project settings ------------------------------------------------------------------

    def available_models(self) -> list[str] | None:
        """Call on the event loop (the router's model list is not read from threads)."""
        return available_models(self.runtime)

    def project(self, principal: AdminPrincipal, models: list[str] | None) -> SelfProject:
        view = self.ctx.keys.get_project(self.project_of(principal))
        return SelfProject(
            id=view.id, name=view.name, plan=view.plan, byok_allowed=view.plan in BYOK_PLANS, fallback=view.fallback,
            default_cost_bias=view.default_cost_bias, allowed_models=view.allowed_models,
            cache_enabled=view.cache_enabled, created_at=view.created_at, available_models=models or [],
        )

    def update_project(self, principal: AdminPrincipal, spec: SelfProjectUpdate, models: list[str] | None) -> SelfProject:
        check_models(models, spec.allowed_models)
        changes = spec.model_dump(exclude_unset=True)
        self.ctx.keys.update_project(self.project_of(principal), ProjectUpdate(**changes))
        self.ctx.principals.invalidate()
        return self.project(principal, models)

    # -- provider keys ---------------------------------------------------------------------

    def provider_keys(self, principal: AdminPrincipal, environment: str | None = None) -> list[ProviderKeyStatus]:
        views = [v for v in self.ctx.keys.list_provider_keys(self.project_of(principal))
                 if environment is None or v.environment == environment]
        used = self.ctx.ledger.last_used(v.id for v in views)
        return [self._status(v, used.get(v.id)) for v in views]

    def _status(self, view: ProviderKeyView, last_used: datetime | None) -> ProviderKeyStatus:
        health, cooldown, calls = self.ctx.resolver.health(view.id)
        spent = None
        if view.spend_cap_usd is not None and view.spend_cap_period is not None:
            spent = micros_to_usd(self.ctx.ledger.provider_spend_micros(view.id, view.spend_cap_period))
        if view.status == "revoked":
            health, cooldown = "revoked", 0.0
        elif view.status == "invalid":
            health = "invalid"
        elif health == "ok" and spent is not None and view.spend_cap_usd is not None and spent >= view.spend_cap_usd:
            health = "over_spend_cap"
        elif health == "ok" and view.rpm_limit is not None and calls >= view.rpm_limit:
            health = "rate_limited"
        return ProviderKeyStatus(
            id=view.id, environment=view.environment, provider=view.provider, priority=view.priority,
            fingerprint=view.fingerprint, last4=view.last4, status=view.status, status_reason=view.status_reason,
            health=health, cooldown_seconds=round(cooldown, 1), calls_last_minute=calls,  # type: ignore[arg-type]
            spend_cap_usd=view.spend_cap_usd, spend_cap_period=view.spend_cap_period, spent_usd=spent,
            rpm_limit=view.rpm_limit, created_at=view.created_at, last_used_at=last_used,
        )

    def provider_key(self, principal: AdminPrincipal, key_id: str) -> ProviderKeyStatus:
        for status in self.provider_keys(principal):
            if status.id == key_id:
                return status
        raise NotFoundError(f"provider key {key_id!r} not found")

    def add_provider_key(self, principal: AdminPrincipal, spec: ProviderKeyCreate) -> ProviderKeyStatus:
        view = self.ctx.keys.add_provider_key(self.project_of(principal), spec)
        return self._status(view, None)

    def rotate_provider_key(self, principal: AdminPrincipal, key_id: str, secret: str) -> RotateResult:
        new, old = self.ctx.keys.rotate_provider_key(self.project_of(principal), key_id, secret)
        return RotateResult(new=self._status(new, None), revoked=self._status(old, self.ctx.ledger.last_used([old.id]).get(old.id)))

    def revoke_provider_key(self, principal: AdminPrincipal, key_id: str) -> ProviderKeyStatus:
        reason = "revoked by the operator" if principal.is_operator else "revoked by a project admin"
        self.ctx.keys.set_provider_key_status(self.project_of(principal), key_id, "revoked", reason)
        return self.provider_key(principal, key_id)

    def update_provider_key(self, principal: AdminPrincipal, key_id: str, spec: ProviderKeyUpdate) -> ProviderKeyStatus:
        self.ctx.keys.update_provider_key(self.project_of(principal), key_id, spec.model_dump(exclude_unset=True))
        return self.provider_key(principal, key_id)

    def reorder_provider_keys(self, principal: AdminPrincipal, spec: ProviderKeyOrder) -> list[ProviderKeyStatus]:
        self.ctx.keys.reorder_provider_keys(self.project_of(principal), spec.environment, spec.provider, spec.key_ids)
        by_id = {s.id: s for s in self.provider_keys(principal, spec.environment)}
        return [by_id[k] for k in spec.key_ids]

    def move_provider_key(self, principal: AdminPrincipal, key_id: str, step: int) -> None:
        """Swap a key with its neighbour in the try order of its environment and provider."""
        key = self.provider_key(principal, key_id)
        chain = [s for s in self.provider_keys(principal, key.environment)
                 if s.provider == key.provider and s.status != "revoked"]
        chain.sort(key=lambda s: (s.priority, s.created_at))
        ids = [s.id for s in chain]
        i = ids.index(key_id)
        j = i + step
        if 0 <= j < len(ids):
            ids[i], ids[j] = ids[j], ids[i]
            self.ctx.keys.reorder_provider_keys(self.project_of(principal), key.environment, key.provider, ids)

    # -- chat API keys ---------------------------------------------------------------------

    def api_keys(self, principal: AdminPrincipal, environment: str | None = None) -> list[ApiKeyView]:
        return [k for k in self.ctx.keys.list_api_keys(self.project_of(principal))
                if environment is None or k.environment == environment]

    def create_api_key(self, principal: AdminPrincipal, environment: str) -> ApiKeyCreated:
        return self.ctx.keys.create_api_key(self.project_of(principal), environment)

    def revoke_api_key(self, principal: AdminPrincipal, key_id: str) -> ApiKeyView:
        view = self.ctx.keys.revoke_api_key(self.project_of(principal), key_id)
        self.ctx.principals.invalidate()
        return view

    # -- request log and usage -------------------------------------------------------------

    def request_log(self, principal: AdminPrincipal, *, limit: int = 50, cursor: str | None = None,
                    since: str | None = None, until: str | None = None, **filters: str | None) -> RequestLogPage:
        before = decode_cursor(cursor) if cursor else None
        rows = self.ctx.ledger.requests(
            project_id=self.project_of(principal), limit=limit + 1, before_id=before,
            since=parse_bound(since, "since"), until=parse_bound(until, "until", end=True), **filters)
        more = len(rows) > limit
        rows = rows[:limit]
        items = [RequestLogEntry(
            **{k: row[k] for k in RequestLogEntry.model_fields if k in row and k not in ("fallbacks",)},
            overhead_fee_usd=micros_to_usd(row["overhead_fee_micros"]),
            model_cost_usd=micros_to_usd(row["model_cost_micros"]),
            fallbacks=json.loads(row["fallbacks"]) if row.get("fallbacks") else [],
        ) for row in rows]
        return RequestLogPage(items=items, next_cursor=encode_cursor(rows[-1]["id"]) if more and rows else None)

    def usage(self, principal: AdminPrincipal, *, group_by: list[str], environment: str | None = None,
              since: str | None = None, until: str | None = None) -> UsageReport:
        bad = [g for g in group_by if g not in USAGE_GROUPS]
        if bad:
            raise ValueError(f"cannot group by {bad[0]!r}; choose from {', '.join(USAGE_GROUPS)}")
        if environment is not None and environment not in ENVIRONMENTS:
            raise ValueError(f"environment must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}")
        pid = self.project_of(principal)
        options: dict[str, Any] = dict(project_id=pid, since_day=since or None, until_day=until or None,
                                       environment=environment)
        rows = self.ctx.ledger.totals(group_by=group_by, **options)
        if not group_by:
            return UsageReport(group_by=[], rows=rows, total=rows[0])
        # summed from the same rows (one snapshot of the ledger): a second query could see rows
        # written in between, and the total would not be the sum of the rows shown with it
        total: dict[str, Any] = {name: sum(r[name] for r in rows) for name in _COUNTS}
        for name in ("overhead_fee", "model_cost"):
            total[f"{name}_usd"] = str(micros_to_usd(total[f"{name}_micros"]))
        total["total_usd"] = str(micros_to_usd(total["overhead_fee_micros"] + total["model_cost_micros"]))
        return UsageReport(group_by=group_by, rows=rows, total=total)


__all__ = ["ENVIRONMENTS", "ProviderKeyStatus", "RequestLogEntry", "RequestLogPage", "RotateResult", "SelfProject",
           "SelfService", "USAGE_GROUPS", "UsageReport", "decode_cursor", "encode_cursor"]
