"""Choose a model group for a request: filter what can serve it, then trade quality for price.

Pure logic: the adapters translate LiteLLM's model list into `Candidate`s and the request
into a `RouteRequest`, call `select`, and route to `Decision.chosen` with
`Decision.ordered[1:]` as the fallback order.

    >>> cheap = Candidate("mini", "openai", 1, frozenset(), 1.5e-7, 6e-7, 128_000, True, True, True)
    >>> big = Candidate("large", "anthropic", 3, frozenset({"code"}), 3e-6, 1.5e-5, 200_000, True, True, True)
    >>> req = RouteRequest(messages=[{"role": "user", "content": "hi"}], estimated_input_tokens=10)
    >>> select(req, [cheap, big], Assessment(0.05, "chat", 0.0, True)).chosen.model_group
    'mini'

How the choice is made, among the candidates left after filtering:
* expected quality `q = sigmoid(8 * (capability - score))`, where `capability` is 0.65, 0.85
  and 1.10 for tiers 1, 2 and 3, plus 0.10 when the task type is one of the candidate's
  `strengths`;
* relative price `c` in [0, 1]: the log of the estimated request cost, scaled between the
  cheapest (0) and the dearest (1) candidate;
* utility `q - lambda * c`, where `lambda = 0.3 * ((1 - cost_bias) / cost_bias) ** 1.5`:
  0.3 at the default 0.5 (pay for the dearest model when it adds 30 points of expected
  quality); `cost_bias` 0 picks the cheapest, 1 the best expected quality.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from adaptive_plugin.errors import NoCandidateError, RoutingError
from adaptive_plugin.routing._assess import Assessment

__all__ = ["Candidate", "Decision", "RouteRequest", "expected_quality", "select"]

TIER_CAPABILITY: dict[int, float] = {1: 0.65, 2: 0.85, 3: 1.10}
STRENGTH_BONUS = 0.10
QUALITY_SLOPE = 8.0
PRICE_WEIGHT_AT_HALF = 0.3
DEFAULT_OUTPUT_TOKENS = 512


@dataclass(frozen=True)
class Candidate:
    """One routable model group with what it costs and can do.

    `tier` is 1 (cheap) to 3 (strong); `strengths` holds task types (see `TASK_TYPES`) it is
    especially good at; costs are USD per token; `max_input_tokens` None means unknown.
    """

    model_group: str
    provider: str
    tier: int
    strengths: frozenset[str] = frozenset()
    input_cost_per_token: float = 0.0
    output_cost_per_token: float = 0.0
    max_input_tokens: int | None = None
    supports_tools: bool = False
    supports_vision: bool = False
    supports_json: bool = False

    def __post_init__(self) -> None:
        if self.tier not in TIER_CAPABILITY:
            raise RoutingError(f"model group {self.model_group!r}: tier must be 1, 2 or 3, not {self.tier!r}")
        if self.input_cost_per_token < 0 or self.output_cost_per_token < 0:
            raise RoutingError(f"model group {self.model_group!r}: costs cannot be negative")


@dataclass(frozen=True)
class RouteRequest:
    """What a request needs. `cost_bias` 0 = cheapest, 1 = best; None sets mean "no limit"."""

    messages: list[dict[str, Any]]
    estimated_input_tokens: int = 0
    needs_tools: bool = False
    needs_vision: bool = False
    needs_json: bool = False
    cost_bias: float = 0.5
    allowed_models: frozenset[str] | None = None
    usable_providers: frozenset[str] | None = None
    expected_output_tokens: int = DEFAULT_OUTPUT_TOKENS

    def __post_init__(self) -> None:
        if not 0.0 <= self.cost_bias <= 1.0 or math.isnan(self.cost_bias):
            raise RoutingError(f"cost_bias must be between 0 and 1, not {self.cost_bias!r}")


@dataclass(frozen=True)
class Decision:
    """The ranked candidates (`ordered[0]` is `chosen`, the rest the fallback order) and why."""

    ordered: list[Candidate]
    chosen: Candidate
    score: float
    task_type: str
    reason: str
    expected_quality: dict[str, float] = field(default_factory=dict)


def expected_quality(candidate: Candidate, assessment: Assessment) -> float:
    """Probability-like quality of `candidate` on a request so assessed, in (0, 1)."""
    capability = TIER_CAPABILITY[candidate.tier]
    if assessment.task_type in candidate.strengths:
        capability += STRENGTH_BONUS
    return 1.0 / (1.0 + math.exp(-QUALITY_SLOPE * (capability - assessment.score)))


def select(request: RouteRequest, candidates: Iterable[Candidate], assessment: Assessment) -> Decision:
    """Rank the candidates that can serve `request`; raise `NoCandidateError` if none can."""
    pool = list(candidates)
    usable = _filter(request, pool)
    costs = [_estimated_cost(c, request) for c in usable]
    rel = _relative_costs(costs)
    quality = [expected_quality(c, assessment) for c in usable]
    weight = _price_weight(request.cost_bias)

    def key(i: int) -> tuple[float, ...]:
        if math.isinf(weight):
            return (rel[i], -quality[i], -usable[i].tier)
        utility = quality[i] - weight * rel[i]
        return (-round(utility, 9), costs[i], -usable[i].tier)

    order = sorted(range(len(usable)), key=lambda i: (*key(i), usable[i].model_group))
    ordered = [usable[i] for i in order]
    chosen_i = order[0]
    chosen = usable[chosen_i]
    reason = (
        f"score {assessment.score:.2f} ({assessment.task_type}), cost_bias {request.cost_bias:.2f}: "
        f"chose {chosen.model_group} (tier {chosen.tier}, expected quality {quality[chosen_i]:.2f}, "
        f"relative price {rel[chosen_i]:.2f}) among {len(usable)} of {len(pool)} candidates"
    )
    return Decision(
        ordered=ordered,
        chosen=chosen,
        score=assessment.score,
        task_type=assessment.task_type,
        reason=reason,
        expected_quality={c.model_group: q for c, q in zip(usable, quality, strict=True)},
    )


def _filter(request: RouteRequest, pool: Sequence[Candidate]) -> list[Candidate]:
    """Apply allow-list, providers, context window and capabilities; explain an empty result."""
    left = list(pool)
    if request.allowed_models is not None:
        left = [c for c in left if c.model_group in request.allowed_models]
    if request.usable_providers is not None:
        left = [c for c in left if c.provider in request.usable_providers]
    left = [c for c in left if c.max_input_tokens is None or request.estimated_input_tokens <= c.max_input_tokens]
    if request.needs_tools:
        left = [c for c in left if c.supports_tools]
    if request.needs_vision:
        left = [c for c in left if c.supports_vision]
    if request.needs_json:
        left = [c for c in left if c.supports_json]
    if not left:
        raise NoCandidateError(_no_candidate_message(request, pool))
    return left


def _no_candidate_message(request: RouteRequest, pool: Sequence[Candidate]) -> str:
    if not pool:
        return "no routable model is configured"
    needs = [name for flag, name in ((request.needs_tools, "tools"), (request.needs_vision, "images"),
                                     (request.needs_json, "JSON output")) if flag]
    parts = ["no routable model"]
    if needs:
        parts.append("supports " + " and ".join(needs))
    parts.append(f"within {request.estimated_input_tokens} input tokens")
    if request.allowed_models is not None:
        parts.append(f"among the allowed models ({', '.join(sorted(request.allowed_models)) or 'none'})")
    if request.usable_providers is not None:
        providers = ", ".join(sorted(request.usable_providers)) or "none"
        parts.append(f"for providers you have keys for ({providers})")
    return " ".join(parts)


def _estimated_cost(candidate: Candidate, request: RouteRequest) -> float:
    return (
        max(request.estimated_input_tokens, 1) * candidate.input_cost_per_token
        + request.expected_output_tokens * candidate.output_cost_per_token
    )


def _relative_costs(costs: Sequence[float]) -> list[float]:
    """Log-scaled price in [0, 1] between the cheapest and the dearest (free counts as 1e-12)."""
    logs = [math.log(max(c, 1e-12)) for c in costs]
    low, high = min(logs), max(logs)
    if high - low < 1e-9:
        return [0.0 for _ in logs]
    return [(x - low) / (high - low) for x in logs]


def _price_weight(cost_bias: float) -> float:
    if cost_bias <= 0.0:
        return math.inf
    return PRICE_WEIGHT_AT_HALF * ((1.0 - cost_bias) / cost_bias) ** 1.5
