"""LiteLLM glue of the limits capability (adaptive_plugin.limits): where in a request's life its
reservations are made, settled and released, and how a refusal reaches the client.

- `precheck` (pre-call hook, fails closed): a project or environment already known in this
  process to be at a limit is refused at once, before the router retries anything.
- `choose_key` (per attempt, fails closed): the key for the attempt, with its worst case
  reserved against every limit that applies. A key at its own limit is skipped for the
  project's next key or the pooled key (as a failing key is); a project or environment limit
  refuses the request: 429 `spend_cap_reached` or `rate_limited` with `Retry-After`.
- `attempt_failed` (per failed attempt, fails open): the reservation is released; a provider's
  429 and its retry-after are remembered.
- `settle` (success, fails open): the reservation becomes what the attempt really cost (a cache
  hit: its discounted fee, and the key's rpm slot back).
- `request_failed` (request failed, fails open): anything still held is released; when the
  request ran out of keys because of rate limits or caps (ours or the provider's 429), the
  client gets 429 with `Retry-After` instead of 424.

Client disconnects mid-stream: LiteLLM reports the stream's usage through the success event
(in 1.106.12 it reads the provider's stream to its end, or bills the chunks already streamed),
so the reservation is settled to it; a stream for which no usage is ever reported leaves the
reservation to expire after `ADAPTIVE_LIMITS_HOLD_SECONDS` (`test_abandoned_stream_leaves_no_reservation`).
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass, field
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

import litellm
from fastapi import HTTPException

from adaptive_plugin.adapters.deployments import DeploymentInfo
from adaptive_plugin.billing import Fee, Usage, usd_to_micros
from adaptive_plugin.context import key_limits
from adaptive_plugin.errors import (
    AdaptiveError,
    LimitsError,
    LimitsUnavailableError,
    NoKeyAvailableError,
    RateLimitedError,
    SpendCapReachedError,
)
from adaptive_plugin.keys import KeyChoice
from adaptive_plugin.limits import Actual, Admission, Ask, KeyLimits, ProjectLimits, Refusal, worst_case

if TYPE_CHECKING:
    from adaptive_plugin.adapters.runtime import Runtime
    from adaptive_plugin.adapters.state import RequestState

log = logging.getLogger("adaptive_plugin")

T = TypeVar("T")
_CACHE_HITS = ("hit-exact", "hit-semantic")
_OPERATOR_KEY_ID = "master"


@dataclass
class RequestLimits:
    """What one client request holds and has met (on `RequestState.limits`)."""

    admission: Admission | None = None  # the current attempt's reservation
    request_counted: bool = False  # counted against project and environment rpm
    input_tokens: int | None = None  # counted once per request
    refusals: list[Refusal] = field(default_factory=list)  # keys refused by their own limits
    provider_waits: list[float] = field(default_factory=list)  # retry-after of providers' 429s


def request_limits(state: RequestState) -> RequestLimits:
    if state.limits is None:
        state.limits = RequestLimits()
    return state.limits  # type: ignore[no-any-return]


def http_error(exc: AdaptiveError) -> HTTPException:
    """The client's error: status, `{"error", "code"}` detail, and `Retry-After` for limits."""
    headers = exc.headers if isinstance(exc, LimitsError) else None
    return HTTPException(status_code=exc.status_code, detail={"error": exc.message, "code": exc.code}, headers=headers)


def _limited(runtime: Runtime, state: RequestState) -> bool:
    return runtime.ctx.limits is not None and state.principal.api_key_id != _OPERATOR_KEY_ID


# -- before routing ------------------------------------------------------------------------------


async def precheck(runtime: Runtime, state: RequestState) -> None:
    """Raise the LimitsError of a project or environment known to be at a limit."""
    limits = runtime.ctx.limits
    if limits is None or not _limited(runtime, state):
        return
    principal = state.principal
    project_limits = await _guarded(limits.project_limits(principal.project_id))
    if not project_limits.applies(principal.environment):
        return
    refusal = limits.precheck(project_limits, project_id=principal.project_id, project_name=principal.project_name,
                              environment=principal.environment)
    if refusal is not None:
        raise refusal.error()


# -- per attempt ---------------------------------------------------------------------------------


async def choose_key(runtime: Runtime, state: RequestState, kwargs: dict[str, Any], info: DeploymentInfo,
                     provider: str, *, pooled: bool) -> KeyChoice:
    """The attempt's key, admitted by every limit that applies (see the module docstring)."""
    choice = await _admitted_key(runtime, state, kwargs, info, provider, pooled=pooled)
    if choice.key is not None:
        runtime.ctx.resolver.note_call(choice.key)  # the dashboard's view of this process's calls
    return choice


async def _admitted_key(runtime: Runtime, state: RequestState, kwargs: dict[str, Any], info: DeploymentInfo,
                        provider: str, *, pooled: bool) -> KeyChoice:
    resolver = runtime.ctx.resolver
    limits = runtime.ctx.limits
    if limits is None or not _limited(runtime, state):
        return resolver.choose(state.principal, provider, state.keys, pooled_available=pooled)
    held = request_limits(state)
    await _release(runtime, held)  # a previous attempt's, if its failure was never reported
    principal = state.principal
    project_limits = await _guarded(limits.project_limits(principal.project_id))
    while True:
        try:
            choice = resolver.choose(principal, provider, state.keys, pooled_available=pooled)
        except NoKeyAvailableError as exc:
            if held.refusals:  # other deployments of the group may still have a key: retryable
                raise _limit_error(held.refusals, exc.message) from exc
            raise
        key = key_limits(choice.key) if choice.key is not None else None
        if not project_limits.applies(principal.environment) and (key is None or key.empty):
            return choice
        ask = _ask(runtime, state, held, kwargs, info, project_limits, choice, key)
        outcome = await _guarded(limits.reserve(ask, project_limits))
        if not isinstance(outcome, Refusal):
            held.admission = outcome
            held.request_counted = held.request_counted or (outcome is not None and ask.count_request)
            return choice
        if outcome.scope == "key":
            held.refusals.append(outcome)
            state.keys.fallbacks.append({"from": choice.fingerprint or f"pooled:{provider}", "reason": outcome.reason})
            continue
        error = outcome.error()  # the project's or environment's own limit: no other key helps
        state.keys.last_error = error
        state.keys.last_error_retryable = False
        raise error


async def _guarded(work: Awaitable[T]) -> T:
    """Fails closed, without internals: a store that cannot answer refuses the attempt (503);
    the cause is logged for the operator, never sent to the tenant."""
    try:
        return await work
    except LimitsError:
        raise
    except AdaptiveError as exc:
        log.error("adaptive: limits cannot be checked: %s", exc.message)
        raise LimitsUnavailableError("spending caps and rate limits cannot be checked right now; retry shortly") from exc
    except Exception as exc:
        log.exception("adaptive: limits cannot be checked (%s)", type(exc).__name__)
        raise LimitsUnavailableError("spending caps and rate limits cannot be checked right now; retry shortly") from exc


def _ask(runtime: Runtime, state: RequestState, held: RequestLimits, kwargs: dict[str, Any],
         info: DeploymentInfo, project_limits: ProjectLimits, choice: KeyChoice, key: KeyLimits | None) -> Ask:
    principal = state.principal
    amounts = (0, 0, 0)
    assert runtime.ctx.limits is not None
    if runtime.ctx.limits.needs_amounts(project_limits, principal.environment, key):
        if held.input_tokens is None:
            held.input_tokens = count_input_tokens(info.model, kwargs)
        worst = worst_case(
            input_tokens=held.input_tokens,
            max_output_tokens=max_output_tokens(kwargs, info.model, runtime.settings.limits_default_max_output_tokens),
            input_cost_per_token=info.input_cost_per_token, output_cost_per_token=info.output_cost_per_token,
            rates=runtime.ctx.fee_rates, pooled=choice.source == "pooled",
        )
        amounts = (worst.key_cost_micros, worst.bill_micros, worst.tokens)
    return Ask(project_id=principal.project_id, project_name=principal.project_name, environment=principal.environment,
               key=key, key_cost_micros=amounts[0], bill_micros=amounts[1], tokens=amounts[2],
               count_request=not held.request_counted)


def count_input_tokens(model: str, kwargs: dict[str, Any]) -> int:
    """The request's input tokens by LiteLLM's counter for the model; if that fails, its UTF-8
    length (a byte-level tokenizer never makes more tokens than bytes)."""
    messages = kwargs.get("messages") or []
    tools = kwargs.get("tools")
    try:
        return int(litellm.token_counter(model=model, messages=messages, tools=tools or None))
    except Exception as exc:  # noqa: BLE001 - any content the counter cannot read
        log.debug("adaptive: token counter failed (%s); reserving the request's byte length", type(exc).__name__)
        return len(json.dumps([messages, tools], default=str).encode())


def max_output_tokens(kwargs: dict[str, Any], model: str, default: int) -> int:
    """`max_completion_tokens` or `max_tokens`, else the model's output limit, else `default`;
    times `n` (choices)."""
    n = kwargs.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
    for name in ("max_completion_tokens", "max_tokens"):
        value = kwargs.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value * choices
    info = kwargs.get("model_info") or {}
    configured = info.get("max_output_tokens") if isinstance(info, dict) else None
    if isinstance(configured, int) and configured > 0:
        return configured * choices
    return (_model_output_limit(model) or default) * choices


@functools.lru_cache(maxsize=512)
def _model_output_limit(model: str) -> int | None:
    try:
        info = litellm.get_model_info(model)
    except Exception:  # noqa: BLE001 - a model missing from LiteLLM's map
        return None
    value = info.get("max_output_tokens") or info.get("max_tokens")
    return int(value) if value else None


async def attempt_failed(runtime: Runtime, state: RequestState, *, reason: str, retry_after: float | None) -> None:
    """Release the failed attempt's reservation; remember a provider's 429."""
    held = request_limits(state)
    await _release(runtime, held)
    if reason == "rate_limited":
        held.provider_waits.append(retry_after if retry_after and retry_after > 0 else runtime.settings.key_cooldown_seconds)


async def _release(runtime: Runtime, held: RequestLimits) -> None:
    admission, held.admission = held.admission, None
    if admission is not None and runtime.ctx.limits is not None:
        await _fail_open(runtime.ctx.limits.release(admission))


async def _fail_open(work: Awaitable[None]) -> None:
    """Settling and releasing never fail a request: a reservation left behind expires."""
    try:
        await work
    except Exception:
        log.exception("adaptive: a limit reservation was not settled; it expires after ADAPTIVE_LIMITS_HOLD_SECONDS")


# -- after the request ---------------------------------------------------------------------------


async def settle(runtime: Runtime, state: RequestState, *, usage: Usage, fee: Fee, response_cost: Any) -> None:
    """Settle the successful attempt's reservation to what it cost (as its ledger row says)."""
    held = state.limits
    if held is None or held.admission is None or runtime.ctx.limits is None:
        return
    admission, held.admission = held.admission, None
    hit = state.cache_outcome in _CACHE_HITS
    await _fail_open(runtime.ctx.limits.settle(admission, Actual(
        key_cost_micros=0 if hit else usd_to_micros(response_cost),
        bill_micros=fee.total_micros,
        tokens=0 if hit else usage.input_tokens + usage.output_tokens,
        provider_called=not hit,
    )))


async def request_failed(runtime: Runtime, state: RequestState, exc: Exception | None) -> HTTPException | None:
    """Release what is held; the 429 (with Retry-After) the client gets instead of `exc`, if any."""
    held = request_limits(state)
    await _release(runtime, held)
    if exc is None or isinstance(exc, HTTPException):
        return None
    if isinstance(exc, LimitsError):
        return http_error(_unwrapped(exc))
    status = getattr(exc, "status_code", None)
    if not isinstance(exc, NoKeyAvailableError) and status not in (424, 429):
        return None
    wait = _soonest_wait(runtime, state, held)
    if wait is None:
        return None
    reason, seconds = wait
    retry = max(1, math.ceil(seconds))
    if isinstance(exc, AdaptiveError):
        message = f"{_unwrapped(exc).message}; retry in {retry} s"
    else:
        message = f"the provider rate-limited every key that could serve this request; retry in {retry} s"
    cls = SpendCapReachedError if reason == "spend_cap" else RateLimitedError
    return http_error(cls(message, retry_after=retry))


def _unwrapped(exc: AdaptiveError) -> AdaptiveError:
    """The error as raised: LiteLLM's router appends its own sentences to `message` on the way out."""
    if exc.args and isinstance(exc.args[0], str) and exc.args[0] != exc.message:
        exc.message = exc.args[0]
    return exc


def _soonest_wait(runtime: Runtime, state: RequestState, held: RequestLimits) -> tuple[str, float] | None:
    """What this request met (a provider's retry-after is passed on as given), else what this
    process knows of the project's keys (cooling down after a 429, or at their cap)."""
    waits = [(float(r.retry_after), r.reason) for r in held.refusals]
    waits += [(w, "rate_limited") for w in held.provider_waits]
    if not waits:
        hint = runtime.ctx.resolver.wait_hint(state.principal, state.provider or None)
        if hint is not None:
            waits.append((hint[1], hint[0]))
    if not waits:
        return None
    seconds, reason = min(waits)
    return reason, seconds


def _limit_error(refusals: list[Refusal], why: str) -> LimitsError:
    """Every key was held back by its own limits: the soonest one to lift, with the resolver's why."""
    soonest = min(refusals, key=lambda r: r.retry_after)
    cls = SpendCapReachedError if soonest.charge.what == "spend" else RateLimitedError
    return cls(f"{why}; {soonest.message}", retry_after=soonest.retry_after)
