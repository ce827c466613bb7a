"""Overhead-only billing: exact fees and the batched usage ledger."""

from __future__ import annotations

from adaptive_plugin.billing.fees import Fee, FeeRates, Usage, compute_fee, micros_to_usd, usage_from_response, usd_to_micros
from adaptive_plugin.billing.ledger import GROUP_FIELDS, Ledger

__all__ = [
    "GROUP_FIELDS",
    "Fee",
    "FeeRates",
    "Ledger",
    "Usage",
    "compute_fee",
    "micros_to_usd",
    "usage_from_response",
    "usd_to_micros",
]
