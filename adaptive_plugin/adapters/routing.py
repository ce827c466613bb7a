"""Model selection for `model: auto`: LiteLLM's model list and our request state in, a model group out.

The chosen group replaces `model`; the other candidates, best first, become the request's
LiteLLM fallbacks, so a failure of the chosen model moves to the next candidate with
LiteLLM's own retry and fallback machinery.
"""

from __future__ import annotations

import time
from typing import Any

from adaptive_plugin import metrics
from adaptive_plugin.adapters.cache_backend import embed_soon, request_embedding
from adaptive_plugin.adapters.deployments import DeploymentInfo
from adaptive_plugin.adapters.keyword_tier import keyword_tier
from adaptive_plugin.adapters.runtime import Runtime
from adaptive_plugin.adapters.state import RequestState
from adaptive_plugin.embedding import embedding_text, query_text
from adaptive_plugin.errors import RoutingError
from adaptive_plugin.keys import Principal
from adaptive_plugin.routing._assess import Assessment, assess
from adaptive_plugin.routing._request import route_request
from adaptive_plugin.routing.selection import Candidate, Decision, select

COST_BIAS_HEADER = "x-adaptive-cost-bias"


def parse_cost_bias(value: Any, default: float | None) -> float | None:
    if value is None:
        return default
    if isinstance(value, bool):
        raise RoutingError(f"cost_bias must be a number between 0 and 1, got {value!r}")
    try:
        bias = float(value)
    except (TypeError, ValueError):
        raise RoutingError(f"cost_bias must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= bias <= 1.0:
        raise RoutingError(f"cost_bias must be between 0 and 1, got {value!r}")
    return bias


def _candidate(info: DeploymentInfo) -> Candidate:
    return Candidate(
        model_group=info.model_group, provider=info.provider, tier=info.tier, strengths=info.strengths,
        input_cost_per_token=info.input_cost_per_token, output_cost_per_token=info.output_cost_per_token,
        max_input_tokens=info.max_input_tokens, supports_tools=info.supports_tools,
        supports_vision=info.supports_vision, supports_json=info.supports_json,
    )


def _candidates(runtime: Runtime, principal: Principal) -> tuple[list[Candidate], frozenset[str]]:
    """Routable model groups, and the providers this principal can pay for right now."""
    runtime.ensure_strategy()
    groups = runtime.index.groups()
    candidates: list[Candidate] = []
    providers: set[str] = set()
    for group, infos in groups.items():
        routable = [i for i in infos if i.routable]
        if not routable:
            continue
        candidates.append(_candidate(routable[0]))
        for info in routable:
            pooled = runtime.pooled_healthy(info)
            if runtime.ctx.resolver.can_serve(principal, info.provider, pooled_available=pooled):
                providers.add(info.provider)
    if not candidates:
        raise RoutingError("no model in the proxy's model_list is marked routable (model_info.adaptive.routable)")
    return candidates, frozenset(providers)


async def decide(runtime: Runtime, principal: Principal, body: dict[str, Any], headers: dict[str, str],
                 requested_bias: Any = None, state: RequestState | None = None) -> tuple[Decision, Assessment, float]:
    """Score the request once (sharing its embedding through `state`) and rank the candidates.

    `requested_bias` is the body's `cost_bias`; the header, the project's default and the
    setting follow in that order.
    """
    default = principal.default_cost_bias if principal.default_cost_bias is not None else runtime.settings.default_cost_bias
    bias = parse_cost_bias(requested_bias if requested_bias is not None else headers.get(COST_BIAS_HEADER), default)
    assert bias is not None
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RoutingError("messages must be a non-empty list of message objects")
    embedder = runtime.ctx.embedder if runtime.settings.routing_use_embedding else None
    embedding = await request_embedding(state) if state is not None and embedder is not None else None
    if embedding is None and embedder is not None:
        text = query_text(messages)
        if text:
            # the same prefix embedding the cache uses: computed once per request
            embedding = await embed_soon(embedder, embedding_text(text))
            if state is not None:
                state.embedding = embedding
    assessment = assess(messages, embedding=embedding, keyword_tier=keyword_tier(query_text(messages)))
    candidates, providers = _candidates(runtime, principal)
    request = route_request(body, cost_bias=bias, allowed_models=principal.allowed_models, usable_providers=providers)
    return select(request, candidates, assessment), assessment, bias


async def route(runtime: Runtime, state: RequestState, data: dict, own: dict, headers: dict[str, str]) -> None:
    """Rewrite an `auto` request to the chosen model group with the rest as fallbacks."""
    started = time.perf_counter()
    decision, _assessment, _bias = await decide(runtime, state.principal, data, headers, own.get("cost_bias"), state)
    chosen = decision.chosen.model_group
    rest = [c.model_group for c in decision.ordered[1:]]
    data["model"] = chosen
    if rest:
        data["fallbacks"] = [{chosen: rest}]
    state.model_group = chosen
    state.routed = True
    state.route_score = decision.score
    state.task_type = decision.task_type
    state.route_order = [c.model_group for c in decision.ordered]
    metrics.ROUTING_DECISIONS.labels(model_group=chosen, task_type=decision.task_type).inc()
    metrics.PLUGIN_LATENCY_SECONDS.labels(stage="routing").observe(time.perf_counter() - started)


async def explain(runtime: Runtime, principal: Principal, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """The decision `route` would make, for `POST /adaptive/select-model`."""
    body = dict(body)
    decision, assessment, bias = await decide(runtime, principal, body, headers, body.pop("cost_bias", None))
    return {
        "model": decision.chosen.model_group,
        "provider": decision.chosen.provider,
        "fallbacks": [c.model_group for c in decision.ordered[1:]],
        "score": round(decision.score, 4),
        "task_type": decision.task_type,
        "cost_bias": bias,
        "reason": decision.reason,
        "expected_quality": {k: round(v, 4) for k, v in decision.expected_quality.items()},
        "signals": list(assessment.signals),
        "used_embedding": assessment.used_embedding,
    }
