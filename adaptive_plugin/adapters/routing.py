"""Model selection for `model: auto` (placeholder until the routing capability is wired)."""

from __future__ import annotations

from typing import Any

from adaptive_plugin.errors import RoutingError


def parse_cost_bias(value: Any, default: float | None) -> float | None:
    if value is None:
        return default
    try:
        bias = float(value)
    except (TypeError, ValueError):
        raise RoutingError(f"cost_bias must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= bias <= 1.0:
        raise RoutingError(f"cost_bias must be between 0 and 1, got {bias}")
    return bias


async def route(hooks: Any, state: Any, data: dict, own: dict, headers: dict) -> None:
    raise RoutingError("model selection is not available yet")


async def explain(hooks: Any, principal: Any, body: dict, headers: dict) -> dict[str, Any]:
    raise RoutingError("model selection is not available yet")
