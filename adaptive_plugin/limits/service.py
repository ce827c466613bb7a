"""The limits service: reserve an attempt's worst case against every limit that applies, settle it.

    >>> limits = Limits(stores, repo=LimitsRepository(engine), seed=seed)     # doctest: +SKIP
    >>> outcome = await limits.reserve(Ask(project_id="prj_1", project_name="acme",
    ...                                    environment="production", bill_micros=650))  # doctest: +SKIP
    >>> await limits.settle(outcome, Actual(bill_micros=210, tokens=900))      # doctest: +SKIP

`reserve` returns None when nothing is limited (no store is touched), a `Refusal` naming the
limit with no room, or an `Admission` to settle (success) or release (failure) exactly once.

Refusals that cannot change before a known time (a cap whose settled spend already reached it,
a project's full rpm window) are remembered in this process until then, so a flood of requests
against a reached limit is refused without a store round trip (`precheck`, `key_hint`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from decimal import Decimal

from adaptive_plugin import metrics
from adaptive_plugin._synced import SyncedCache
from adaptive_plugin.errors import AdaptiveError, LimitsUnavailableError
from adaptive_plugin.limits._repo import LimitsRepository
from adaptive_plugin.limits._results import Missing, Refused
from adaptive_plugin.limits._stores import CounterStores
from adaptive_plugin.limits.models import (
    MICROS_PER_USD,
    WINDOW_SECONDS,
    WINDOW_TTL_SECONDS,
    Actual,
    Admission,
    Ask,
    Charge,
    KeyLimits,
    LimitsUpdate,
    ProjectLimits,
    ProjectLimitsView,
    Refusal,
    Scope,
    ScopeLimitsView,
    ScopeUsage,
    period_end,
    seconds_until,
    spend_counter,
    window_counter,
)

log = logging.getLogger("adaptive_plugin.limits")

_SPEND_KEEP_SECONDS = 2 * 86_400  # a spending counter outlives its period by two days
_MAX_HINTS = 10_000


def _scopes(project_id: str, project_name: str, environment: str) -> tuple[Scope, Scope]:
    return (Scope("project", project_id, project_id, f"project {project_name!r}"),
            Scope("environment", f"{project_id}/{environment}", project_id,
                  f"project {project_name!r} environment {environment!r}"))


def key_scope(project_id: str, key: KeyLimits) -> Scope:
    return Scope("key", key.key_id, project_id, f"provider key {key.fingerprint}")


def _spend_charge(scope: Scope, cap: int, period: str, amount: int, now: float) -> Charge:
    end = period_end(now, period)
    return Charge(counter=spend_counter(scope, period, now), scope=scope, what="spend", limit=cap, amount=amount,
                  ttl=int(end - now) + _SPEND_KEEP_SECONDS, period=period, resets_at=end)


def _window_charge(scope: Scope, what: str, limit: int, amount: int) -> Charge:
    return Charge(counter=window_counter(scope, what), scope=scope, what=what, limit=limit, amount=amount,  # type: ignore[arg-type]
                  ttl=WINDOW_TTL_SECONDS)


def charges_for(ask: Ask, limits: ProjectLimits, now: float) -> list[Charge]:
    """Every counter the attempt touches, given the limits that apply to it."""
    out: list[Charge] = []
    key = ask.key
    if key is not None:
        scope = key_scope(ask.project_id, key)
        if key.spend_cap_micros is not None and key.spend_cap_period:
            out.append(_spend_charge(scope, key.spend_cap_micros, key.spend_cap_period, ask.key_cost_micros, now))
        if key.rpm:
            out.append(_window_charge(scope, "rpm", key.rpm, 1))
    project, environment = _scopes(ask.project_id, ask.project_name, ask.environment)
    for scope, lim in ((project, limits.project), (environment, limits.environment(ask.environment))):
        if lim.spend_cap_micros is not None and lim.spend_cap_period:
            out.append(_spend_charge(scope, lim.spend_cap_micros, lim.spend_cap_period, ask.bill_micros, now))
        if lim.rpm and ask.count_request:
            out.append(_window_charge(scope, "rpm", lim.rpm, 1))
        if lim.tpm:
            out.append(_window_charge(scope, "tpm", lim.tpm, ask.tokens))
    return out


class Limits:
    """Spending caps and rate limits of provider keys, projects and environments."""

    def __init__(self, stores: CounterStores, *, repo: LimitsRepository, seed: Callable[[Charge, float], int],
                 hold_seconds: float = 900.0, sync_seconds: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.stores = stores
        self.repo = repo
        self._seed = seed
        self.hold_seconds = hold_seconds
        self._clock = clock
        self._limits: SyncedCache[str, ProjectLimits] = SyncedCache(repo.load, max_age=sync_seconds)
        self._hints: dict[str, tuple[float, int]] = {}  # counter -> (refused until, at which limit)

    # -- what applies -------------------------------------------------------------------------

    async def project_limits(self, project_id: str) -> ProjectLimits:
        cached = self._limits.peek(project_id)
        if cached is not None:
            return cached
        return await asyncio.to_thread(self._limits.get, project_id)

    @staticmethod
    def needs_amounts(limits: ProjectLimits, environment: str, key: KeyLimits | None) -> bool:
        """Whether a spending cap or a tpm limit applies (the worst case must then be computed)."""
        if key is not None and key.spend_cap_micros is not None:
            return True
        return any(lim.spend_cap_micros is not None or lim.tpm is not None
                   for lim in (limits.project, limits.environment(environment)))

    # -- reserve, settle, release ---------------------------------------------------------------

    async def reserve(self, ask: Ask, limits: ProjectLimits | None = None) -> Admission | Refusal | None:
        """Reserve the attempt against every limit that applies, all or nothing."""
        if limits is None:
            limits = await self.project_limits(ask.project_id)
        now = self._clock()
        charges = charges_for(ask, limits, now)
        if not charges:
            return None
        for charge in charges:
            refusal = self._hinted(charge, now) or self._impossible(charge, now)
            if refusal is not None:
                return self._refused(refusal)
        hold_id = secrets.token_hex(12)
        for _ in range(4):
            store, result = await self.stores.reserve(ask.project_id, hold_id, charges, hold_seconds=self.hold_seconds)
            if isinstance(result, Missing):
                charge = charges[result.index]
                used = await asyncio.to_thread(self._seed, charge, now)
                await self.stores.seed(store, ask.project_id, charge, used)
                continue
            if isinstance(result, Refused):
                refusal = self._refusal(charges[result.index], result, now)
                self._remember(refusal, now)
                return self._refused(refusal)
            return Admission(hold_id=hold_id, project_id=ask.project_id, charges=tuple(charges),
                             window_starts=dict(result.window_starts), store=store)
        raise LimitsUnavailableError("the limit counters could not be seeded from the ledger; retry shortly")

    async def settle(self, admission: Admission | None, actual: Actual) -> None:
        """Replace the reservation by what the attempt used. Fails open: a store error is logged
        and the reservation expires after `hold_seconds`."""
        if admission is None or admission.done:
            return
        admission.done = True
        now = self._clock()
        held, adds, windows = [], [], []
        for c in admission.charges:
            if c.what == "spend":
                held.append(c.counter)
                amount = actual.key_cost_micros if c.scope.kind == "key" else actual.bill_micros
                assert c.period is not None
                adds.append((spend_counter(c.scope, c.period, now), amount))  # the period the ledger dates it in
            else:
                start = admission.window_starts.get(c.counter, "")
                if c.what == "tpm":
                    windows.append((c.counter, start, actual.tokens - c.amount))
                elif c.scope.kind == "key" and not actual.provider_called:
                    windows.append((c.counter, start, -c.amount))
        try:
            await self.stores.finish(admission.store, admission.project_id, admission.hold_id,
                                     held=held, adds=adds, windows=windows)
        except AdaptiveError as exc:
            log.error("adaptive: a limit reservation could not be settled (it expires in %.0f s): %s",
                      self.hold_seconds, exc.message)

    async def release(self, admission: Admission | None, *, provider_called: bool = True) -> None:
        """Give the reservation back (the attempt failed, or made no provider call)."""
        await self.settle(admission, Actual(provider_called=provider_called))

    # -- refusals ---------------------------------------------------------------------------------

    def _refusal(self, charge: Charge, result: Refused, now: float) -> Refusal:
        if charge.what == "spend":
            if result.used + charge.amount > charge.limit:
                retry = seconds_until(charge.resets_at, now)
            else:
                retry = 1  # reservations in flight hold the room; they settle within a request's time
        else:
            retry = seconds_until(now + result.window_left, now)
        return Refusal(charge, used=result.used, reserved=result.reserved, retry_after=retry)

    @staticmethod
    def _impossible(charge: Charge, now: float) -> Refusal | None:
        """A worst case larger than the whole limit never fits."""
        if charge.amount <= charge.limit:
            return None
        until = charge.resets_at if charge.what == "spend" else now + WINDOW_SECONDS
        return Refusal(charge, used=0, reserved=0, retry_after=seconds_until(until, now))

    @staticmethod
    def _refused(refusal: Refusal) -> Refusal:
        metrics.LIMITS_REFUSALS.labels(scope=refusal.scope, limit=refusal.charge.what).inc()
        return refusal

    def _remember(self, refusal: Refusal, now: float) -> None:
        """Remember refusals nothing can lift before a known time."""
        c = refusal.charge
        if c.what == "spend" and refusal.used >= c.limit:
            until = c.resets_at
        elif c.what == "rpm" and c.scope.kind != "key" and refusal.used >= c.limit:
            until = now + refusal.retry_after  # project rpm is never given back
        else:
            return
        if len(self._hints) >= _MAX_HINTS:
            self._hints = {k: v for k, v in self._hints.items() if v[0] > now}
        self._hints[c.counter] = (until, c.limit)

    def _hinted(self, charge: Charge, now: float) -> Refusal | None:
        hint = self._hints.get(charge.counter)
        if hint is None or hint[0] <= now or hint[1] != charge.limit or charge.amount <= 0:
            return None
        return Refusal(charge, used=charge.limit, reserved=0, retry_after=seconds_until(hint[0], now))

    def precheck(self, limits: ProjectLimits, *, project_id: str, project_name: str, environment: str) -> Refusal | None:
        """A refusal of the request's project or environment known in this process, or None."""
        if not self._hints:
            return None
        now = self._clock()
        ask = Ask(project_id=project_id, project_name=project_name, environment=environment, bill_micros=1)
        for charge in charges_for(ask, limits, now):
            refusal = self._hinted(charge, now)
            if refusal is not None:
                return self._refused(refusal)
        return None

    def key_hint(self, project_id: str, key: KeyLimits) -> tuple[str, float] | None:
        """("spend_cap", seconds) when the key's cap is known to be reached in this process."""
        if key.spend_cap_micros is None or not key.spend_cap_period or not self._hints:
            return None
        now = self._clock()
        charge = _spend_charge(key_scope(project_id, key), key.spend_cap_micros, key.spend_cap_period, 1, now)
        refusal = self._hinted(charge, now)
        return ("spend_cap", float(refusal.retry_after)) if refusal is not None else None

    # -- the operator's view and changes ----------------------------------------------------------

    async def set_limits(self, project_id: str, spec: LimitsUpdate) -> ProjectLimitsView:
        """Replace a scope's limits; its counters start again (spending from the ledger)."""
        await asyncio.to_thread(self.repo.put, project_id, spec)
        env = spec.environment
        scope = _scopes(project_id, "", env)[1] if env else _scopes(project_id, "", "")[0]
        now = self._clock()
        counters = [spend_counter(scope, p, now) for p in ("day", "month")]
        counters += [window_counter(scope, w) for w in ("rpm", "tpm")]
        await self.stores.reset(project_id, counters)
        for counter in counters:
            self._hints.pop(counter, None)
        self._limits.invalidate(project_id)
        return await self.describe(project_id)

    async def describe(self, project_id: str) -> ProjectLimitsView:
        rows = await asyncio.to_thread(self.repo.rows, project_id)
        now = self._clock()
        views, wanted = [], []
        for row in rows:
            env = None if row.environment == "*" else row.environment
            scope = _scopes(project_id, "", env)[1] if env else _scopes(project_id, "", "")[0]
            spend = spend_counter(scope, row.spend_cap_period, now) if row.spend_cap_period else None
            names = (spend, window_counter(scope, "rpm"), window_counter(scope, "tpm"))
            wanted += [n for n in names if n]
            views.append((row, env, names))
        values = await self.stores.read(project_id, wanted) if wanted else {}
        out = []
        for row, env, (spend, rpm, tpm) in views:
            usage = ScopeUsage()
            if spend is not None and spend in values:
                usage.spent_usd = Decimal(values[spend].used) / MICROS_PER_USD
                usage.reserved_usd = Decimal(values[spend].reserved) / MICROS_PER_USD
            if row.spend_cap_period:
                usage.period_resets_in_seconds = seconds_until(period_end(now, row.spend_cap_period), now)
            for name, field in ((rpm, "requests_this_minute"), (tpm, "tokens_this_minute")):
                value = values.get(name)
                if value is not None and now - value.window_start < WINDOW_SECONDS:
                    setattr(usage, field, value.used)
            out.append(ScopeLimitsView(
                environment=env, spend_cap_usd=Decimal(row.spend_cap_usd) if row.spend_cap_usd else None,
                spend_cap_period=row.spend_cap_period, rpm_limit=row.rpm_limit, tpm_limit=row.tpm_limit,  # type: ignore[arg-type]
                usage=usage))
        return ProjectLimitsView(project_id=project_id, limits=out)

    async def close(self) -> None:
        await self.stores.close()

