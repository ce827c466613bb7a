"""The tenant boundary: what a project key may reach, and what a request body may carry.

Pure policy (no LiteLLM or FastAPI imports): `adapters/guard.py` and `adapters/auth.py` apply
it to the proxy's routes and to each request before LiteLLM acts on it.
"""

from __future__ import annotations

from adaptive_plugin.boundary.request import (
    ALLOWED_LITELLM_FIELDS,
    LIMITS,
    check_chat_body,
    check_model_name,
    forbidden_by_pattern,
)
from adaptive_plugin.boundary.routes import (
    CHAT_ROUTES,
    MODEL_LIST_ROUTES,
    OWN_PREFIX,
    PROJECT_ROUTES,
    PUBLIC_ROUTES,
    is_public,
    project_may_call,
)

__all__ = [
    "ALLOWED_LITELLM_FIELDS",
    "CHAT_ROUTES",
    "LIMITS",
    "MODEL_LIST_ROUTES",
    "OWN_PREFIX",
    "PROJECT_ROUTES",
    "PUBLIC_ROUTES",
    "check_chat_body",
    "check_model_name",
    "forbidden_by_pattern",
    "is_public",
    "project_may_call",
]
