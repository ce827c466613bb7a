"""LiteLLM's keyword complexity tier of a prompt, as a number the router combines with its own score.

`adaptive_plugin.routing` never imports litellm: `adapters/routing.py` computes the tier here
and passes it to `assess(..., keyword_tier=)`; `install()` hands the same function to
`routing.complexity_score` (the package-level `adaptive_plugin.complexity_score` calls it).
The training script (`routing/train.py`) uses this function too, so the model is trained on
exactly what the request path computes.

Only `ComplexityRouter.classify` runs (keyword and length rules, no model call, no router) on
the same window of the query our pattern features read (`routing._task.scan_window`: the first
600 and last 200 characters): its cost grows faster than the text (0.6 ms at 500 characters,
11 ms at 2,000, 430 ms at 100,000 on this machine), so the window bounds it at about 1 ms.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from adaptive_plugin.routing._task import scan_window

logger = logging.getLogger(__name__)

TIER_RANK = {"NON_REASONING": 0, "SIMPLE": 1, "MEDIUM": 2, "COMPLEX": 3, "REASONING": 4}
_PLACEHOLDER_TIERS = {"SIMPLE": "simple", "MEDIUM": "medium", "COMPLEX": "complex", "REASONING": "reasoning"}


@lru_cache(maxsize=1)
def _classifier() -> Any:
    from litellm.router_strategy.complexity_router import ComplexityRouter

    # classify() reads only the built-in keyword configuration; the tier -> model map and the
    # router instance are never used by it.
    return ComplexityRouter(
        model_name="adaptive-keyword-tier",
        litellm_router_instance=None,  # type: ignore[arg-type]
        complexity_router_config={"tiers": dict(_PLACEHOLDER_TIERS)},
    )


def keyword_tier(text: str) -> float | None:
    """LiteLLM's tier of `text` (the query text; its scan window is read) as its rank plus its
    weighted score / 10.

    None for empty text or when LiteLLM's scorer fails (the router then leaves the term out).
    """
    if not text:
        return None
    try:
        tier, score, _signals = _classifier().classify(scan_window(text))
        return TIER_RANK[getattr(tier, "value", str(tier))] + float(score) / 10.0
    except Exception as exc:  # a scorer bug must not fail the request: routing works without it
        logger.warning("LiteLLM keyword tier unavailable (%s); routing without it", type(exc).__name__)
        return None


def install() -> bool:
    """Make `adaptive_plugin.routing.complexity_score` use LiteLLM's keyword tier; False (and
    nothing installed) when litellm is not importable."""
    import importlib.util

    from adaptive_plugin.routing import set_keyword_tier_source

    if importlib.util.find_spec("litellm") is None:
        return False
    set_keyword_tier_source(keyword_tier)
    return True
