"""What a counter store answers to a reservation (shared by the database and Redis stores)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Reserved:
    """Every charge fitted and is now counted."""

    window_starts: dict[str, str] = field(default_factory=dict)  # window counter -> start of its window


@dataclass(frozen=True, slots=True)
class Refused:
    """Charge `index` did not fit; nothing was counted.

    Spending counters: `used` settled and `reserved` in flight. Windows: `used` in the window,
    which ends `window_left` seconds after `now`.
    """

    index: int
    used: int
    reserved: int = 0
    window_left: float = 0.0


@dataclass(frozen=True, slots=True)
class Missing:
    """Spending counter `index` does not exist yet (or predates a store switch): seed it."""

    index: int


@dataclass(frozen=True, slots=True)
class CounterValue:
    used: int
    reserved: int
    window_start: float


ReserveResult = Reserved | Refused | Missing
