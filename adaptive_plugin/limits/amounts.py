"""Worst-case amounts of one provider attempt, in exact integer micro-dollars.

    >>> worst_case(input_tokens=1000, max_output_tokens=500, input_cost_per_token=0.15e-6,
    ...            output_cost_per_token=0.6e-6, rates=FeeRates(), pooled=True)
    WorstCase(key_cost_micros=450, bill_micros=650, tokens=1500)

The fee is `billing.compute_fee` of the worst-case usage, so the fee of any real usage (fewer
tokens) is never more than what was reserved. Provider costs round up to the micro-dollar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from adaptive_plugin.billing import FeeRates, Usage, compute_fee


@dataclass(frozen=True, slots=True)
class WorstCase:
    key_cost_micros: int  # what the provider may charge (a provider key's cap counts this)
    bill_micros: int  # what the gateway may bill (project and environment caps count this)
    tokens: int


def cost_micros(tokens: int, usd_per_token: float) -> int:
    """Cost of `tokens` at a price per token, rounded up to the micro-dollar."""
    if tokens <= 0 or usd_per_token <= 0:
        return 0
    return math.ceil(Decimal(tokens) * Decimal(repr(usd_per_token)) * 1_000_000)


def worst_case(*, input_tokens: int, max_output_tokens: int, input_cost_per_token: float,
               output_cost_per_token: float, rates: FeeRates, pooled: bool) -> WorstCase:
    """The most an attempt can cost: all its input tokens (none from a prompt cache) and every
    output token it may generate."""
    input_tokens, max_output_tokens = max(input_tokens, 0), max(max_output_tokens, 0)
    provider = cost_micros(input_tokens, input_cost_per_token) + cost_micros(max_output_tokens, output_cost_per_token)
    fee = compute_fee(Usage(input_tokens=input_tokens, output_tokens=max_output_tokens),
                      key_source="pooled" if pooled else "byok", cache="miss", rates=rates)
    bill = fee.overhead_micros + (provider if pooled else 0)
    return WorstCase(key_cost_micros=provider, bill_micros=bill, tokens=input_tokens + max_output_tokens)
