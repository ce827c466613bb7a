"""Per-attempt key choice: the project's healthy keys for the provider, then the pooled key.

Each attempt of a request (LiteLLM retries and fallbacks included) asks `choose()` for the
key of *that* deployment's provider. Keys already tried in the request, cooling down, marked
invalid, over their spending cap or over their rate limit are skipped. Keys of one provider
are never offered for another.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from adaptive_plugin.errors import NoKeyAvailableError
from adaptive_plugin.keys.models import Principal, ResolvedKey

FailureReason = Literal[
    "invalid", "quota", "rate_limited", "server_error", "timeout", "connection", "request", "internal",
]
# Reasons another key (or the pooled key) may fix; the rest are the request's fault ("request":
# the provider refused it as malformed, too long or not allowed) or LiteLLM's own ("internal":
# raised before or after the provider call, not by the network): retrying them elsewhere
# repeats the failure and blames a healthy key.
KEY_FAILURES: frozenset[str] = frozenset({"invalid", "quota", "rate_limited", "server_error", "timeout", "connection"})

QUOTA_COOLDOWN_SECONDS = 600.0
_QUOTA_TEXT = ("insufficient_quota", "exceeded your current quota", "credit balance", "billing_hard_limit")


def classify_failure(
    status_code: int | None, message: str, *, timeout: bool = False, connection: bool = False, internal: bool = False
) -> FailureReason:
    """Map a failed provider attempt to a reason.

    `connection`: the network failed (a connect, reset or protocol error in the exception's
    chain); `internal`: the error was raised without a provider answer and without a network
    failure (LiteLLM's own validation or transformation).
    """
    text = message.lower()
    if timeout:
        return "timeout"
    if connection:
        return "connection"
    if internal:
        return "internal"
    if any(marker in text for marker in _QUOTA_TEXT):
        return "quota"  # Anthropic reports an exhausted credit balance as a 400
    if status_code in (401, 403):
        return "invalid"
    if status_code == 429:
        return "rate_limited"
    if status_code == 408:
        return "timeout"
    if status_code is not None and status_code >= 500:
        return "server_error"
    if status_code is not None and 400 <= status_code < 500:
        return "request"
    return "internal"


@dataclass(frozen=True, slots=True)
class KeyChoice:
    source: Literal["byok", "pooled"]
    provider: str
    key: ResolvedKey | None  # None for pooled: the deployment's own key is used

    @property
    def fingerprint(self) -> str | None:
        return self.key.fingerprint if self.key else None


@dataclass(slots=True)
class RequestKeyState:
    """What one client request has tried so far (shared by its attempts)."""

    attempted: list[str] = field(default_factory=list)  # key ids, "pooled:<provider>" for pooled
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    last_choice: KeyChoice | None = None
    last_error: BaseException | None = None  # the last attempt's failure
    last_error_retryable: bool = True  # False when another key cannot fix it


@dataclass(slots=True)
class _Health:
    cooldown_until: float = 0.0
    invalid: bool = False
    calls: deque[float] = field(default_factory=deque)


class KeyResolver:
    """Chooses keys and remembers their health in this process.

    `load_keys(project_id, environment)` returns the decrypted active keys (the caller caches
    and resyncs them); `spend_of(key, period)` returns a key's provider spend in micro-dollars
    for the current day or month.
    """

    def __init__(
        self,
        *,
        load_keys: Callable[[str, str], list[ResolvedKey]],
        spend_of: Callable[[ResolvedKey], int],
        default_cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load_keys = load_keys
        self._spend_of = spend_of
        self._default_cooldown = default_cooldown
        self._clock = clock
        self._health: dict[str, _Health] = {}

    def candidates(self, principal: Principal, provider: str) -> list[ResolvedKey]:
        if not principal.byok_allowed:
            return []
        return [k for k in self._load_keys(principal.project_id, principal.environment) if k.provider == provider]

    def _skip_reason(self, key: ResolvedKey, now: float) -> str | None:
        if key.unavailable:
            return "provider key unavailable"
        h = self._health.get(key.id)
        if h is not None:
            if h.invalid:
                return "invalid"
            if h.cooldown_until > now:
                return "cooling_down"
            if key.rpm_limit is not None:
                while h.calls and h.calls[0] <= now - 60:
                    h.calls.popleft()
                if len(h.calls) >= key.rpm_limit:
                    return "rate_limit"
        if key.spend_cap_micros is not None and self._spend_of(key) >= key.spend_cap_micros:
            return "spend_cap"
        return None

    def usable_byok(self, principal: Principal, provider: str, *, exclude: list[str] | tuple[str, ...] = ()) -> bool:
        now = self._clock()
        return any(
            k.id not in exclude and self._skip_reason(k, now) is None for k in self.candidates(principal, provider)
        )

    def can_serve(self, principal: Principal, provider: str, *, pooled_available: bool) -> bool:
        """Whether some key (BYOK, or pooled if the policy allows) could serve this provider now."""
        if self.usable_byok(principal, provider):
            return True
        return pooled_available and principal.fallback == "pooled"

    def explain(self, principal: Principal, provider: str, state: RequestKeyState, *, pooled_available: bool) -> str:
        """Why no key can serve `provider` for this request (the NoKeyAvailableError message)."""
        now = self._clock()
        skipped = []
        for key in self.candidates(principal, provider):
            if key.id in state.attempted:
                skipped.append(f"{key.fingerprint} already failed in this request")
            else:
                reason = self._skip_reason(key, now)
                if reason is not None:
                    skipped.append(f"{key.fingerprint} {reason.replace('_', ' ')}")
        if not principal.byok_allowed and not pooled_available:
            why = f"no pooled {provider} key is configured and the {principal.plan} plan has no own keys"
        elif principal.fallback == "byok_only":
            detail = "; ".join(skipped) if skipped else f"no {provider} key stored for {principal.environment}"
            why = f"project policy is byok_only and no own {provider} key is usable ({detail})"
        elif f"pooled:{provider}" in state.attempted or not pooled_available:
            detail = "; ".join(skipped) if skipped else f"no own {provider} key"
            why = f"the pooled {provider} key is unavailable ({detail})"
        else:
            why = "no key is usable"
        return f"no usable {provider} key for project {principal.project_name!r}: {why}"

    def choose(
        self, principal: Principal, provider: str, state: RequestKeyState, *, pooled_available: bool
    ) -> KeyChoice:
        """The key for the next attempt on `provider`, or NoKeyAvailableError explaining why none."""
        now = self._clock()
        for key in self.candidates(principal, provider):
            if key.id in state.attempted or self._skip_reason(key, now) is not None:
                continue
            self._record_call(key, now)
            choice = KeyChoice(source="byok", provider=provider, key=key)
            state.attempted.append(key.id)
            state.last_choice = choice
            return choice
        if principal.fallback == "pooled" and pooled_available:
            choice = KeyChoice(source="pooled", provider=provider, key=None)
            state.attempted.append(f"pooled:{provider}")
            state.last_choice = choice
            return choice
        raise NoKeyAvailableError(self.explain(principal, provider, state, pooled_available=pooled_available))

    def _record_call(self, key: ResolvedKey, now: float) -> None:
        if key.rpm_limit is not None:
            self._health.setdefault(key.id, _Health()).calls.append(now)

    def report_failure(self, key: ResolvedKey, reason: FailureReason, *, retry_after: float | None = None) -> None:
        """Cool the key down (honouring retry-after); `invalid` keys stay out until reactivated."""
        h = self._health.setdefault(key.id, _Health())
        if reason == "invalid":
            h.invalid = True
            return
        if reason == "quota":
            wait = max(retry_after or 0.0, QUOTA_COOLDOWN_SECONDS)
        else:
            wait = retry_after if retry_after and retry_after > 0 else self._default_cooldown
        h.cooldown_until = max(h.cooldown_until, self._clock() + wait)

    def forget(self, key_id: str) -> None:
        """Drop remembered health (a reactivated or re-added key starts clean)."""
        self._health.pop(key_id, None)

    def health(self, key_id: str) -> tuple[str, float, int]:
        """This process's view of a key: `invalid` (the provider refused it), `cooling_down` or
        `ok`; the seconds of cooldown left; the calls sent with it in the last minute."""
        h = self._health.get(key_id)
        if h is None:
            return "ok", 0.0, 0
        now = self._clock()
        calls = sum(1 for t in h.calls if t > now - 60)
        if h.invalid:
            return "invalid", 0.0, calls
        left = h.cooldown_until - now
        return ("cooling_down", left, calls) if left > 0 else ("ok", 0.0, calls)

    def cooldowns(self) -> dict[str, float]:
        now = self._clock()
        return {k: h.cooldown_until - now for k, h in self._health.items() if h.cooldown_until > now}
