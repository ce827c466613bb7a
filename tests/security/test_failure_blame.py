"""Attack class: blame. A request the provider refuses as the request's own fault must not cost
the tenant its healthy key, nor the operator a pooled call.

A provider 400/404/422 reaches the client at once: no retry on the project's other keys, no
cooldown of the key that carried it, no pooled call, no model fallback. Only key and provider
failures (401/403, quota, rate limits, 5xx, timeouts, connection errors) move on.
"""

from __future__ import annotations

import openai
import pytest

from tests.proxy.gateway import Gateway, byok_key, chat

pytestmark = pytest.mark.proxy

FAULTS = [(400, openai.BadRequestError), (404, openai.NotFoundError), (422, openai.UnprocessableEntityError)]


@pytest.mark.parametrize("status, error", FAULTS, ids=[str(s) for s, _ in FAULTS])
def test_provider_refusal_reaches_the_client_at_once_and_blames_no_key(gateway: Gateway, status: int,
                                                                      error: type[Exception]) -> None:
    first, second = byok_key(f"blame-first-{status}"), byok_key(f"blame-second-{status}")
    project = gateway.project(keys=[("openai", first, 1), ("openai", second, 2)])
    client = gateway.client(project.api_key)
    mark = gateway.mark()
    with pytest.raises(error) as err:
        chat(client, f"please fail [fake-provider:{status}]", extra_headers={"Cache-Control": "no-store"})
    assert err.value.status_code == status  # type: ignore[attr-defined]
    calls = gateway.calls_since(mark)
    # one attempt: no next key, no pooled call (LiteLLM itself repeats a 422 once, on the same key,
    # without the parameters the provider named)
    assert {c["key_label"] for c in calls} == {f"blame-first-{status}"} and len(calls) <= (2 if status == 422 else 1)
    mark = gateway.mark()
    _, headers = chat(client, "and now a good request", extra_headers={"Cache-Control": "no-store"})
    assert headers["x-adaptive-key-source"] == "byok"
    assert "x-adaptive-fallbacks" not in headers
    assert [c["key_label"] for c in gateway.calls_since(mark)] == [f"blame-first-{status}"]  # not cooled down
    rows = gateway.ledger_rows(project.id, wait_for=2)
    failed = [r for r in rows if r["outcome"] == "error"]
    assert len(failed) == 1 and failed[0]["status_code"] == status and not failed[0]["fallbacks"]


def test_auto_routing_does_not_fall_back_to_other_models_on_the_requests_fault(gateway: Gateway) -> None:
    project = gateway.project(plan="developer")
    client = gateway.client(project.api_key)
    mark = gateway.mark()
    with pytest.raises(openai.BadRequestError):
        chat(client, "route me, then fail [fake-provider:400]", model="auto",
             extra_headers={"Cache-Control": "no-store"})
    assert len(gateway.calls_since(mark)) == 1


def test_a_key_failure_still_moves_on_to_the_next_key(gateway: Gateway) -> None:
    project = gateway.project(keys=[("openai", byok_key("blame-revoked", "401"), 1),
                                    ("openai", byok_key("blame-good"), 2)])
    _, headers = chat(gateway.client(project.api_key), "the first key is revoked",
                      extra_headers={"Cache-Control": "no-store"})
    assert headers["x-adaptive-key-source"] == "byok"
    assert headers["x-adaptive-fallbacks"].endswith(":invalid")
