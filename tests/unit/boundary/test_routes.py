"""The route allow-list compares templates and methods, never path prefixes."""

from __future__ import annotations

from adaptive_plugin.boundary import CHAT_ROUTES, PUBLIC_ROUTES, is_public, project_may_call


def test_project_keys_may_post_chat_completions_and_read_the_model_list() -> None:
    for route in CHAT_ROUTES:
        assert project_may_call("POST", route)
        assert not project_may_call("GET", route)
    assert project_may_call("GET", "/v1/models") and project_may_call("get", "/v1/models/{model_id}")
    assert not project_may_call("DELETE", "/v1/models/{model_id}")


def test_look_alike_routes_are_not_allowed() -> None:
    for route in ("/openai/v1/chat/completions", "/openai/{endpoint:path}", "/v1/chat/completions/", "/health",
                  "/v1/messages", "/v1/responses", "/model/info", "/v1/embeddings", "/key/generate", "/settings"):
        assert not project_may_call("POST", route) and not project_may_call("GET", route)


def test_public_routes_are_the_probes_metrics_and_docs_only() -> None:
    assert set(PUBLIC_ROUTES) == {"/health/liveliness", "/health/liveness", "/health/readiness", "/metrics", "/",
                                  "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/swagger"}
    assert not is_public("/sso/key/generate")
    assert is_public("/sso/key/generate", {"/sso/key/generate"})
