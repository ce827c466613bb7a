"""Key table of the fake provider: `KeySpec`, its validation, and the per-call outcome draw.

A key's *behaviour* says what every call made with it gets; `flaky` draws one of the other
outcomes per call from the key's probabilities, deterministically given the server seed, the
key and how many calls the key has made since the last reset.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "BEHAVIOURS",
    "DEFAULT_SLOW_S",
    "PROVIDERS",
    "KeySpec",
    "draw_outcome",
    "parse_keys",
]

#: Every behaviour a key may have.
BEHAVIOURS: Final = frozenset({"ok", "401", "429", "insufficient_quota", "500", "slow", "reset", "flaky"})
#: Every value of `KeySpec.provider`.
PROVIDERS: Final = frozenset({"openai", "anthropic", "gemini", "groq", "deepseek", "any"})
#: Seconds a `slow` call sleeps when the key gives no `delay_s`.
DEFAULT_SLOW_S: Final = 2.0

Provider = Literal["openai", "anthropic", "gemini", "groq", "deepseek", "any"]


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What the fake provider does for calls made with one API key.

    `behaviour` is one of `BEHAVIOURS`. `provider` restricts the key to one provider's paths
    (a call on another provider's path gets that provider's invalid-key error). `delay_s` is slept
    before answering; for `slow` (and a flaky draw of `slow`) it defaults to `DEFAULT_SLOW_S`.
    `chunk_delay_s` is slept between the chunks of a streamed answer (a slow stream). `retry_after` is the
    `retry-after` header (seconds) sent with a 429. The `p_*` probabilities apply to `flaky` only;
    their sum must not exceed 1, the remainder is `ok`.

    Example:

        KeySpec("primary", "ok", provider="openai")
        KeySpec("noisy", "flaky", p_429=0.1, p_500=0.05, p_reset=0.01)
    """

    label: str
    behaviour: str = "ok"
    provider: Provider = "any"
    delay_s: float | None = None
    chunk_delay_s: float | None = None
    retry_after: int | None = None
    p_429: float = 0.0
    p_500: float = 0.0
    p_reset: float = 0.0
    p_slow: float = 0.0

    def __post_init__(self) -> None:
        behaviour = str(self.behaviour)
        object.__setattr__(self, "behaviour", behaviour)
        if not self.label:
            raise ValueError("KeySpec.label must not be empty")
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; expected one of {sorted(BEHAVIOURS)}")
        if self.provider not in PROVIDERS:
            raise ValueError(f"unknown provider {self.provider!r}; expected one of {sorted(PROVIDERS)}")
        if self.delay_s is not None and self.delay_s < 0:
            raise ValueError("KeySpec.delay_s must be >= 0")
        if self.chunk_delay_s is not None and self.chunk_delay_s < 0:
            raise ValueError("KeySpec.chunk_delay_s must be >= 0")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("KeySpec.retry_after must be >= 0")
        probabilities = (self.p_429, self.p_500, self.p_reset, self.p_slow)
        if any(p < 0 for p in probabilities) or sum(probabilities) > 1.0 + 1e-9:
            raise ValueError("KeySpec probabilities must be >= 0 and sum to at most 1")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KeySpec:
        """Build a spec from a JSON object; unknown fields raise `ValueError`."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown KeySpec fields {sorted(unknown)}")
        if "label" not in data:
            raise ValueError("KeySpec needs a label")
        return cls(**data)

    def serves(self, provider: str) -> bool:
        """Whether this key may be used on `provider`'s paths."""
        return self.provider == "any" or self.provider == provider

    def sleep_for(self, outcome: str) -> float:
        """Seconds to sleep before answering with `outcome`."""
        if outcome == "slow":
            return DEFAULT_SLOW_S if self.delay_s is None else self.delay_s
        return self.delay_s or 0.0


def parse_keys(keys: Mapping[str, KeySpec | Mapping[str, Any]]) -> dict[str, KeySpec]:
    """Validate a key table given as specs or JSON-like objects."""
    table: dict[str, KeySpec] = {}
    for key, spec in keys.items():
        if not isinstance(key, str) or not key:
            raise ValueError("API keys must be non-empty strings")
        table[key] = spec if isinstance(spec, KeySpec) else KeySpec.from_dict(spec)
    return table


def draw_outcome(spec: KeySpec, *, key: str, seed: int, n: int) -> str:
    """The outcome of the `n`-th call made with `key`: the behaviour, or a draw when flaky."""
    if spec.behaviour != "flaky":
        return spec.behaviour
    digest = hashlib.sha256(f"{seed}\x00{key}\x00{n}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    for outcome, p in (("429", spec.p_429), ("500", spec.p_500), ("reset", spec.p_reset), ("slow", spec.p_slow)):
        if u < p:
            return outcome
        u -= p
    return "ok"
