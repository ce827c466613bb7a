"""Complexity-based model selection: score a request, then pick a model group for it.

    >>> from adaptive_plugin.routing import assess, select, route_request   # doctest: +SKIP
    >>> a = assess(body["messages"], embedding=vec)                        # doctest: +SKIP
    >>> decision = select(route_request(body), candidates, a)              # doctest: +SKIP

Pure logic: no litellm import. See README.md in this directory.
"""

from __future__ import annotations

from adaptive_plugin.routing._assess import (
    Assessment,
    assess,
    complexity_score,
    default_embedder,
    set_keyword_tier_source,
    task_type,
)
from adaptive_plugin.routing._model import ARTIFACT_PATH, ComplexityModel, load_model
from adaptive_plugin.routing._request import RequestFeatures, request_features, route_request
from adaptive_plugin.routing._task import TASK_TYPES, detect_task_type
from adaptive_plugin.routing.quality import apgr, cpt
from adaptive_plugin.routing.selection import Candidate, Decision, RouteRequest, expected_quality, select

__all__ = [
    "ARTIFACT_PATH",
    "TASK_TYPES",
    "Assessment",
    "Candidate",
    "ComplexityModel",
    "Decision",
    "RequestFeatures",
    "RouteRequest",
    "apgr",
    "assess",
    "complexity_score",
    "cpt",
    "default_embedder",
    "detect_task_type",
    "expected_quality",
    "load_model",
    "request_features",
    "route_request",
    "select",
    "set_keyword_tier_source",
    "task_type",
]
