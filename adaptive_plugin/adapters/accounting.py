"""Turning a finished request into a fee, a ledger row, metrics and response headers."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from adaptive_plugin import metrics
from adaptive_plugin.adapters.state import RequestState
from adaptive_plugin.billing import Fee, FeeRates, Usage, compute_fee, micros_to_usd, usage_from_response, usd_to_micros

CACHE_HITS = ("hit-exact", "hit-semantic")
# printable ASCII but "%": kept as it is in a header value; anything else is percent-encoded
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def header_value(value: str) -> str:
    """A header value that cannot split a response or carry bytes a client misreads."""
    if value.isascii() and value.isprintable() and "%" not in value:
        return value
    return quote(value, safe=_HEADER_SAFE)


def key_source(state: RequestState) -> str:
    if state.cache_outcome in CACHE_HITS:
        return "cache"
    choice = state.keys.last_choice
    return choice.source if choice is not None else "none"


def fee_for(state: RequestState, usage: Usage, response_cost: Any, rates: FeeRates) -> Fee:
    source = state.keys.last_choice.source if state.keys.last_choice else "pooled"
    return compute_fee(usage, key_source=source, cache=state.cache_outcome, rates=rates, model_cost_usd=response_cost)


def headers_for(state: RequestState, *, model: str | None, fee: Fee | None) -> dict[str, str]:
    """The x-adaptive-* response headers. Never a key: only its fingerprint."""
    out = {
        "x-adaptive-request-id": state.rid,
        "x-adaptive-model-group": state.model_group,
        "x-adaptive-key-source": key_source(state),
        "x-adaptive-cache": state.cache_outcome,
    }
    if state.provider:
        out["x-adaptive-provider"] = state.provider
    if model:
        out["x-adaptive-model"] = model
    choice = state.keys.last_choice
    if choice is not None and choice.fingerprint and key_source(state) == "byok":
        out["x-adaptive-key-fingerprint"] = choice.fingerprint
    if state.similarity is not None:
        out["x-adaptive-cache-similarity"] = f"{state.similarity:.4f}"
    if state.routed:
        out["x-adaptive-routed"] = "true"
        if state.route_score is not None:
            out["x-adaptive-route-score"] = f"{state.route_score:.4f}"
        if state.task_type:
            out["x-adaptive-task-type"] = state.task_type
        if state.route_order:
            out["x-adaptive-route-candidates"] = ",".join(state.route_order)
            if state.model_group and state.model_group != state.route_order[0]:
                out["x-adaptive-route-fallback"] = f"{state.route_order[0]}->{state.model_group}"
    if state.keys.fallbacks:
        out["x-adaptive-fallbacks"] = ",".join(f"{f['from']}:{f['reason']}" for f in state.keys.fallbacks)
    if fee is not None:
        out["x-adaptive-overhead-fee-usd"] = str(micros_to_usd(fee.overhead_micros))
        out["x-adaptive-model-cost-usd"] = str(micros_to_usd(fee.model_cost_micros))
    return {name: header_value(str(value)) for name, value in out.items()}


def ledger_row(
    state: RequestState,
    *,
    usage: Usage,
    fee: Fee,
    model: str,
    response_cost: Any,
    outcome: str = "success",
    status_code: int = 200,
    error_code: str | None = None,
) -> dict[str, Any]:
    """One ledger row as a plain dict with every `UsageRow` column (no ORM object on the hot path)."""
    now = datetime.now(timezone.utc)
    choice = state.keys.last_choice
    source = key_source(state) if outcome == "success" else (choice.source if choice else "none")
    provider_cost = 0 if state.cache_outcome in CACHE_HITS or outcome != "success" else usd_to_micros(response_cost)
    return dict(
        request_id=state.rid,
        ts=now,
        day=now.strftime("%Y-%m-%d"),
        project_id=state.principal.project_id,
        environment=state.principal.environment,
        provider=state.provider,
        model_group=state.model_group,
        model=model,
        key_source=source,
        key_id=choice.key.id if choice is not None and choice.key is not None else None,
        key_fingerprint=choice.fingerprint if choice is not None else None,
        cache=state.cache_outcome,
        input_tokens=usage.input_tokens,
        cached_tokens=usage.cached_tokens,
        output_tokens=usage.output_tokens,
        overhead_fee_micros=fee.overhead_micros,
        model_cost_micros=fee.model_cost_micros,
        provider_cost_micros=provider_cost,
        latency_ms=round((time.perf_counter() - state.started) * 1000, 3),
        outcome=outcome,
        status_code=status_code,
        error_code=error_code,
        fallbacks=json.dumps(state.keys.fallbacks) if state.keys.fallbacks else None,
        routed=state.routed,
        route_score=state.route_score,
        task_type=state.task_type,
    )


def record_metrics(row: dict[str, Any], *, project_labels: bool) -> None:
    extra = {"project": row["project_id"]} if project_labels else {}
    provider = row["provider"] or "unknown"
    metrics.REQUESTS.labels(
        model_group=row["model_group"] or "unknown", provider=provider, key_source=row["key_source"],
        cache=row["cache"], outcome=row["outcome"], **extra,
    ).inc()
    if row["outcome"] != "success":
        return
    for kind, field in (("input", "input_tokens"), ("cached_input", "cached_tokens"), ("output", "output_tokens")):
        if row[field]:
            metrics.TOKENS.labels(provider=provider, key_source=row["key_source"], kind=kind, **extra).inc(row[field])
    # Counters take floats; micro-dollar integers divided once keep sums exact to the micro-dollar
    # for any realistic total (< 2**53 micro-dollars).
    metrics.OVERHEAD_FEE.labels(key_source=row["key_source"], cache=row["cache"], **extra).inc(row["overhead_fee_micros"] / 1e6)
    if row["model_cost_micros"]:
        metrics.MODEL_COST.labels(provider=provider, **extra).inc(row["model_cost_micros"] / 1e6)
    metrics.LEDGER_ROWS.inc()


def usage_of(response: Any) -> Usage:
    usage = getattr(response, "usage", None)
    if usage is None and isinstance(response, dict):
        usage = response.get("usage")
    return usage_from_response(usage)
