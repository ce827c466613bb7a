"""Per-attempt key choice: own keys by priority, skipping unhealthy ones, then pooled if allowed."""

from __future__ import annotations

import pytest

from adaptive_plugin.errors import NoKeyAvailableError
from adaptive_plugin.keys import KeyResolver, Principal, RequestKeyState, ResolvedKey, classify_failure
from adaptive_plugin.keys.resolver import QUOTA_COOLDOWN_SECONDS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def principal(*, plan: str = "team", fallback: str = "pooled") -> Principal:
    return Principal(
        project_id="prj_1", project_name="acme", environment="production", plan=plan, fallback=fallback,
        allowed_models=None, cache_enabled=True, default_cost_bias=None, api_key_id="ak_1",
    )


def key(kid: str, provider: str = "openai", priority: int = 100, *, cap: int | None = None, rpm: int | None = None) -> ResolvedKey:
    return ResolvedKey(id=kid, provider=provider, priority=priority, secret=f"sk-{kid}", fingerprint=f"fp-{kid}",
                       spend_cap_micros=cap, spend_cap_period="day" if cap is not None else None, rpm_limit=rpm)


class World:
    """The keys a project has (already in priority order, as KeyService returns them) and their spend."""

    def __init__(self, keys: list[ResolvedKey]) -> None:
        self.keys = keys
        self.spend: dict[str, int] = {}
        self.loads: list[tuple[str, str]] = []
        self.clock = Clock()
        self.resolver = KeyResolver(load_keys=self.load, spend_of=lambda k: self.spend.get(k.id, 0),
                                    default_cooldown=30.0, clock=self.clock)

    def load(self, project_id: str, environment: str) -> list[ResolvedKey]:
        self.loads.append((project_id, environment))
        return list(self.keys)

    def choose(self, p: Principal, provider: str = "openai", state: RequestKeyState | None = None,
               *, pooled: bool = True) -> str:
        c = self.resolver.choose(p, provider, state or RequestKeyState(), pooled_available=pooled)
        return c.key.id if c.key is not None else f"pooled:{c.provider}"


def test_priority_order_then_pooled() -> None:
    w = World([key("a", priority=1), key("b", priority=2)])
    state = RequestKeyState()
    picks = [w.choose(principal(), state=state) for _ in range(3)]
    assert picks == ["a", "b", "pooled:openai"]  # each attempt of one request moves on
    assert state.attempted == ["a", "b", "pooled:openai"]
    assert w.loads[0] == ("prj_1", "production")


def test_a_new_request_starts_again_with_the_best_key() -> None:
    w = World([key("a"), key("b")])
    assert w.choose(principal()) == "a"
    assert w.choose(principal()) == "a"


def test_byok_choice_carries_the_key_and_fingerprint() -> None:
    w = World([key("a")])
    state = RequestKeyState()
    choice = w.resolver.choose(principal(), "openai", state, pooled_available=True)
    assert (choice.source, choice.provider, choice.fingerprint) == ("byok", "openai", "fp-a")
    assert choice.key is not None and choice.key.secret == "sk-a"
    assert state.last_choice == choice


def test_keys_of_another_provider_are_never_offered() -> None:
    w = World([key("claude", provider="anthropic", priority=0), key("gpt", provider="openai")])
    state = RequestKeyState()
    assert w.choose(principal(), "openai", state) == "gpt"
    assert w.choose(principal(), "openai", state) == "pooled:openai"
    with pytest.raises(NoKeyAvailableError):
        w.choose(principal(fallback="byok_only"), "gemini")
    assert w.choose(principal(), "anthropic") == "claude"


def test_developer_plan_uses_only_pooled_keys() -> None:
    w = World([key("a")])
    assert w.choose(principal(plan="developer")) == "pooled:openai"
    assert w.resolver.candidates(principal(plan="developer"), "openai") == []
    with pytest.raises(NoKeyAvailableError, match="no pooled openai key is configured and the developer plan has no own keys"):
        w.choose(principal(plan="developer"), pooled=False)


def test_byok_only_never_falls_back_to_pooled() -> None:
    w = World([key("a")])
    state = RequestKeyState()
    p = principal(fallback="byok_only")
    assert w.choose(p, state=state) == "a"
    with pytest.raises(NoKeyAvailableError) as info:
        w.choose(p, state=state)
    assert str(info.value) == (
        "no usable openai key for project 'acme': project policy is byok_only and no own openai key is usable "
        "(fp-a already failed in this request)"
    )
    assert info.value.status_code == 424 and info.value.code == "no_provider_key"


def test_byok_only_without_any_key_says_so() -> None:
    with pytest.raises(NoKeyAvailableError, match="byok_only and no own openai key is usable \\(no openai key stored for production\\)"):
        World([]).choose(principal(fallback="byok_only"))


def test_pooled_fallback_needs_a_pooled_key() -> None:
    w = World([key("a")])
    w.resolver.report_failure(w.keys[0], "rate_limited")
    with pytest.raises(NoKeyAvailableError, match="the pooled openai key is unavailable \\(fp-a cooling down\\)"):
        w.choose(principal(), pooled=False)


def test_cooling_key_is_skipped_until_its_default_cooldown_ends() -> None:
    w = World([key("a"), key("b")])
    w.resolver.report_failure(w.keys[0], "server_error")
    assert w.choose(principal()) == "b"
    assert w.resolver.cooldowns() == {"a": 30.0}
    w.clock.now += 29.9
    assert w.choose(principal()) == "b"
    w.clock.now += 0.2
    assert w.choose(principal()) == "a"
    assert w.resolver.cooldowns() == {}


def test_retry_after_is_honoured() -> None:
    w = World([key("a"), key("b")])
    w.resolver.report_failure(w.keys[0], "rate_limited", retry_after=5.0)
    assert w.choose(principal()) == "b"
    w.clock.now += 5.01
    assert w.choose(principal()) == "a"
    w.resolver.report_failure(w.keys[0], "rate_limited", retry_after=120.0)
    w.clock.now += 119
    assert w.choose(principal()) == "b"
    w.clock.now += 1.01
    assert w.choose(principal()) == "a"


def test_a_shorter_retry_after_never_shortens_a_cooldown() -> None:
    w = World([key("a"), key("b")])
    w.resolver.report_failure(w.keys[0], "rate_limited", retry_after=60.0)
    w.resolver.report_failure(w.keys[0], "rate_limited", retry_after=1.0)
    w.clock.now += 2
    assert w.choose(principal()) == "b"


def test_quota_cools_for_at_least_ten_minutes() -> None:
    w = World([key("a"), key("b")])
    w.resolver.report_failure(w.keys[0], "quota", retry_after=1.0)
    w.clock.now += QUOTA_COOLDOWN_SECONDS - 1
    assert w.choose(principal()) == "b"
    w.clock.now += 2
    assert w.choose(principal()) == "a"


def test_invalid_key_stays_out_until_forgotten() -> None:
    w = World([key("a"), key("b")])
    w.resolver.report_failure(w.keys[0], "invalid")
    w.clock.now += 86_400
    assert w.choose(principal()) == "b"
    assert not w.resolver.usable_byok(principal(), "openai", exclude=["b"])
    w.resolver.forget("a")
    assert w.choose(principal()) == "a"


def test_over_rpm_key_is_skipped_for_a_minute() -> None:
    w = World([key("a", rpm=2), key("b")])
    assert [w.choose(principal()) for _ in range(3)] == ["a", "a", "b"]
    w.clock.now += 59
    assert w.choose(principal()) == "b"
    w.clock.now += 1.01
    assert w.choose(principal()) == "a"


def test_health_reports_what_choose_skips() -> None:
    """What the dashboard shows for a key: this process's view of its cooldown and rate window."""
    w = World([key("a", rpm=5), key("b")])
    assert w.resolver.health("a") == ("ok", 0.0, 0)
    w.choose(principal())
    assert w.resolver.health("a") == ("ok", 0.0, 1)
    w.resolver.report_failure(w.keys[0], "rate_limited", retry_after=12)
    assert w.resolver.health("a") == ("cooling_down", 12.0, 1)
    w.clock.now += 12
    assert w.resolver.health("a")[0] == "ok"
    w.clock.now += 60
    assert w.resolver.health("a") == ("ok", 0.0, 0)
    w.resolver.report_failure(w.keys[1], "invalid")
    assert w.resolver.health("b")[0] == "invalid"


def test_over_spend_cap_key_is_skipped() -> None:
    w = World([key("a", cap=1_000_000), key("b")])
    w.spend["a"] = 999_999
    assert w.choose(principal()) == "a"
    w.spend["a"] = 1_000_000
    assert w.choose(principal()) == "b"
    with pytest.raises(NoKeyAvailableError, match="fp-a spend cap"):
        w.choose(principal(fallback="byok_only"), state=RequestKeyState(attempted=["b"]))


def test_can_serve_and_usable_byok() -> None:
    w = World([key("a")])
    assert w.resolver.can_serve(principal(fallback="byok_only"), "openai", pooled_available=False)
    assert not w.resolver.can_serve(principal(fallback="byok_only"), "anthropic", pooled_available=True)
    assert w.resolver.can_serve(principal(), "anthropic", pooled_available=True)
    assert not w.resolver.can_serve(principal(), "anthropic", pooled_available=False)
    w.resolver.report_failure(w.keys[0], "timeout")
    assert not w.resolver.usable_byok(principal(), "openai")


def test_explain_lists_every_skipped_key() -> None:
    w = World([key("a"), key("b", rpm=1), key("c", cap=1), key("d")])
    w.spend["c"] = 5
    w.resolver.report_failure(w.keys[0], "server_error")
    w.choose(principal())  # uses b's only call this minute
    w.resolver.report_failure(w.keys[3], "invalid")
    state = RequestKeyState()
    with pytest.raises(NoKeyAvailableError) as info:
        w.choose(principal(fallback="byok_only"), state=state)
    message = str(info.value)
    for part in ("fp-a cooling down", "fp-b rate limit", "fp-c spend cap", "fp-d invalid"):
        assert part in message
    assert "sk-" not in message  # secrets never appear


@pytest.mark.parametrize(
    "status, message, flags, reason",
    [
        (401, "Incorrect API key provided", {}, "invalid"),
        (403, "forbidden", {}, "invalid"),
        (429, "Rate limit reached for requests", {}, "rate_limited"),
        (429, "You exceeded your current quota, please check your plan", {}, "quota"),
        (429, "Error code: 429 - insufficient_quota", {}, "quota"),
        (400, "Your credit balance is too low to access the Anthropic API", {}, "quota"),
        (500, "internal error", {}, "server_error"),
        (503, "overloaded", {}, "server_error"),
        (529, "Overloaded", {}, "server_error"),
        (408, "request timeout", {}, "timeout"),
        (None, "timed out", {"timeout": True}, "timeout"),
        (500, "read timeout", {"timeout": True}, "timeout"),
        (None, "connection refused", {"connection": True}, "connection"),
        (400, "invalid request: messages is required", {}, "request"),
        (404, "model not found", {}, "request"),
        (422, "unprocessable", {}, "request"),
        (413, "request too large", {}, "request"),
        (400, "This model's maximum context length is 8192 tokens", {}, "request"),
        (429, "Quota exceeded for quota metric 'Generate Content API requests per minute'", {}, "rate_limited"),
        (500, "litellm could not transform the request", {"internal": True}, "internal"),
        (None, "something odd", {}, "internal"),
    ],
)
def test_classify_failure(status: int | None, message: str, flags: dict[str, bool], reason: str) -> None:
    assert classify_failure(status, message, **flags) == reason
