"""Per-attempt key choice: the project's healthy keys for the provider, then the pooled key.

Each attempt of a request (LiteLLM retries and fallbacks included) asks `choose()` for the
key of *that* deployment's provider. Keys already tried in the request, cooling down or marked
invalid are skipped, and so are keys the limits capability knows to be over their spending cap
(a key's caps and rpm limit are counted cluster-wide when an attempt is admitted, see
adaptive_plugin.limits). Keys of one provider are never offered for another.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from adaptive_plugin import providers
from adaptive_plugin.errors import KeysError, NoKeyAvailableError, PlanError
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
    hinted = providers.error_reason(text)  # provider-specific shapes (see adaptive_plugin.providers)
    if hinted is not None:
        return hinted
    if any(marker in text for marker in _QUOTA_TEXT):
        return "quota"  # Anthropic reports an exhausted credit balance as a 400
    if status_code == 402:  # Payment Required: DeepSeek's empty balance
        return "quota"
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
    byok_off_by_plan: bool = False  # the last attempt skipped stored keys of its provider: the plan has no BYOK


@dataclass(slots=True)
class _Health:
    cooldown_until: float = 0.0
    cooldown_reason: str = ""
    invalid: bool = False
    calls: deque[float] = field(default_factory=deque)  # this process's calls (for `health`), not enforced


class KeyResolver:
    """Chooses keys and remembers their health in this process.

    `load_keys(project_id, environment)` returns the decrypted active keys (the caller caches
    and resyncs them). A key's spending cap and rpm limit are counted cluster-wide by the limits
    capability when an attempt is admitted; `limit_hint(project_id, key)` returns
    `(reason, seconds)` when a key is already known to be held back by one, so that it is
    skipped without asking.
    """

    def __init__(
        self,
        *,
        load_keys: Callable[[str, str], list[ResolvedKey]],
        limit_hint: Callable[[str, ResolvedKey], tuple[str, float] | None] | None = None,
        default_cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load_keys = load_keys
        self._limit_hint = limit_hint
        self._default_cooldown = default_cooldown
        self._clock = clock
        self._health: dict[str, _Health] = {}

    def candidates(self, principal: Principal, provider: str) -> list[ResolvedKey]:
        if not principal.byok_allowed:
            return []
        return [k for k in self._load_keys(principal.project_id, principal.environment) if k.provider == provider]

    def stored_but_off(self, principal: Principal, provider: str) -> bool:
        """Whether the project stores keys for `provider` that its plan does not let it use."""
        if principal.byok_allowed:
            return False
        return any(k.provider == provider for k in self._load_keys(principal.project_id, principal.environment))

    @staticmethod
    def plan_refusal(principal: Principal) -> str | None:
        """Why no request of this project can be served on its plan, or None: a `byok_only` project on
        a plan without Bring Your Own Keys can use neither its own keys nor the pooled ones."""
        if principal.byok_allowed or principal.fallback != "byok_only":
            return None
        return (f"project {principal.project_name!r} is on the {principal.plan} plan, which does not use its own "
                "provider keys (Bring Your Own Keys needs the team or enterprise plan), and its fallback policy "
                "byok_only forbids the pooled keys: move the project to the team or enterprise plan, or set its "
                "fallback to pooled")

    def refusal(self, principal: Principal, provider: str, state: RequestKeyState, *, pooled_available: bool) -> KeysError:
        """The error for a request no key can serve: the plan's (PlanError) or the keys' (NoKeyAvailableError)."""
        plan = self.plan_refusal(principal)
        if plan is not None:
            return PlanError(plan)
        return NoKeyAvailableError(self.explain(principal, provider, state, pooled_available=pooled_available))

    def _skip_reason(self, key: ResolvedKey, now: float, project_id: str = "") -> str | None:
        if key.unavailable:
            return "provider key unavailable"
        h = self._health.get(key.id)
        if h is not None:
            if h.invalid:
                return "invalid"
            if h.cooldown_until > now:
                return "cooling_down"
        if self._limit_hint is not None and (hint := self._limit_hint(project_id, key)) is not None:
            return hint[0]
        return None

    def usable_byok(self, principal: Principal, provider: str, *, exclude: list[str] | tuple[str, ...] = ()) -> bool:
        now = self._clock()
        return any(
            k.id not in exclude and self._skip_reason(k, now, principal.project_id) is None
            for k in self.candidates(principal, provider)
        )

    def wait_hint(self, principal: Principal, provider: str | None = None) -> tuple[str, float] | None:
        """`(reason, seconds)` until the soonest of the project's keys (of `provider`, or any)
        held back by a rate limit or a spending cap may serve again; None when none is."""
        now = self._clock()
        waits: list[tuple[float, str]] = []
        for key in self._load_keys(principal.project_id, principal.environment) if principal.byok_allowed else []:
            if provider is not None and key.provider != provider:
                continue
            h = self._health.get(key.id)
            if h is not None and not h.invalid and h.cooldown_until > now and h.cooldown_reason == "rate_limited":
                waits.append((h.cooldown_until - now, "rate_limited"))
            if self._limit_hint is not None and (hint := self._limit_hint(principal.project_id, key)) is not None:
                waits.append((hint[1], hint[0]))
        if not waits:
            return None
        seconds, reason = min(waits)
        return reason, seconds

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
                reason = self._skip_reason(key, now, principal.project_id)
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
        """The key for the next attempt on `provider`, or NoKeyAvailableError (PlanError) explaining why none."""
        now = self._clock()
        state.byok_off_by_plan = self.stored_but_off(principal, provider)
        for key in self.candidates(principal, provider):
            if key.id in state.attempted or self._skip_reason(key, now, principal.project_id) is not None:
                continue
            choice = KeyChoice(source="byok", provider=provider, key=key)
            state.attempted.append(key.id)
            state.last_choice = choice
            return choice
        if principal.fallback == "pooled" and pooled_available:
            choice = KeyChoice(source="pooled", provider=provider, key=None)
            state.attempted.append(f"pooled:{provider}")
            state.last_choice = choice
            return choice
        raise self.refusal(principal, provider, state, pooled_available=pooled_available)

    def note_call(self, key: ResolvedKey) -> None:
        """A call is made with `key` (admitted by its limits): counted for `health`, this process only."""
        if key.rpm_limit is None:
            return
        now = self._clock()
        calls = self._health.setdefault(key.id, _Health()).calls
        calls.append(now)
        while calls and calls[0] <= now - 60:
            calls.popleft()

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
        until = self._clock() + wait
        if until >= h.cooldown_until:
            h.cooldown_until, h.cooldown_reason = until, reason

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
